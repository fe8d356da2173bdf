//! SageMaker Model Registry packages: listed after the other kinds (`model_packages` in
//! `resources`), with their own cursor part; each versioned package fetched with its tags (its
//! group's, then its own) and linked to the training job that made its model.
//!
//! ListModelPackages has no modification time, and an approval does not move anything a
//! listing shows but the approval status: a package is listed with a time that stands for what
//! its summary shows (a few milliseconds before its creation, by its approval and package
//! status), which the ledger keeps after the package is worked on; a changed status is a new
//! time, so the next poll reads it, and an unchanged package costs no request. Every group and
//! package is listed on every poll (creation times bound nothing here: a package is approved at
//! any age), one ListModelPackages page (100) per engine page.

use chrono::{DateTime, Utc};
use sagesync_core::{Cursor, JobRef, ListScope, Page, ResourceKind, SyncError, TrainingJob};
use serde_json::{json, Value};

use super::client::map_sdk_error;
use super::convert;
use super::pipelines::{outer_refused, OuterPage, Place, Step};
use super::source::SageMakerSource;
use crate::document::{name_in_arn, package_from_document, package_name, package_parts};

/// The cursor part of the model-package listing.
pub const PACKAGES: &str = "model_packages";

/// ListModelPackageGroups pages read for one engine page at most.
const MAX_GROUP_PAGES_PER_PAGE: usize = 10;

/// Whether a reference names a model package (by its ARN, or by the job it carries).
pub fn is_package(r: &JobRef) -> bool {
    r.job.as_ref().is_some_and(|j| j.lineage.kind == ResourceKind::ModelPackage)
        || package_parts(r.arn.as_deref().unwrap_or(&r.name)).is_some()
}

/// The time a listed package stands for: its creation, less a few milliseconds that say its
/// approval and package status (never the package's own LastModifiedTime, which comes later).
fn listing_time(created: DateTime<Utc>, approval: &str, status: &str) -> Option<DateTime<Utc>> {
    let a = ["PendingManualApproval", "Approved", "Rejected"].iter().position(|s| *s == approval)?;
    let s = ["Pending", "InProgress", "Completed", "Failed", "Deleting"].iter().position(|x| *x == status)?;
    Some(created - chrono::Duration::milliseconds(1 + (a * 5 + s) as i64))
}

/// The training job a model data URL names by SageMaker's output layout
/// (`s3://BUCKET/PREFIX/JOB/output/model.tar.gz`).
fn job_in_url(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("s3://")?.strip_suffix("/output/model.tar.gz")?;
    let name = rest.rsplit('/').next()?;
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    ok.then_some(name)
}

impl SageMakerSource {
    /// One page of the model-package listing: one ListModelPackages page of one group.
    pub(super) async fn list_packages_page(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        let started = cursor.started.unwrap_or_else(Utc::now);
        let mut place = Place::parse(cursor.token.as_deref());
        let group = match place.step(MAX_GROUP_PAGES_PER_PAGE, |token| self.groups_page(token)).await? {
            Step::Inner(g) => g,
            Step::Done | Step::Later => return Ok(self.place_page(scope, cursor, started, &place, Vec::new())),
        };
        self.before("ListModelPackages").await;
        let sent = self
            .clients()
            .await
            .sagemaker
            .list_model_packages()
            .model_package_group_name(&group)
            .model_package_type(aws_sdk_sagemaker::types::ModelPackageType::Versioned)
            .sort_by(aws_sdk_sagemaker::types::ModelPackageSortBy::CreationTime)
            .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
            .max_results(100)
            .set_next_token(place.inner.clone())
            .send()
            .await;
        let (jobs, token) = match sent {
            Ok(p) => {
                let f = &self.settings.filters;
                let jobs = p
                    .model_package_summary_list()
                    .iter()
                    .filter_map(|s| {
                        let arn = s.model_package_arn()?.to_string();
                        let version = s.model_package_version().and_then(|v| u64::try_from(v).ok()).or(package_parts(&arn).map(|(_, v)| v));
                        let name = package_name(s.model_package_group_name().unwrap_or(&group), version);
                        let status = s.model_package_status().map(|x| x.as_str().to_string()).unwrap_or_default();
                        let approval = s.model_approval_status().map(|x| x.as_str()).unwrap_or_default();
                        let created =
                            s.creation_time().and_then(|t| convert::time(t).as_str().and_then(|x| DateTime::parse_from_rfc3339(x).ok()));
                        Some(JobRef {
                            // A backfill reads every package again (what a listing time cannot
                            // show: a description, metadata or tags changed).
                            last_modified: if matches!(scope, ListScope::Range { .. }) {
                                None
                            } else {
                                created.and_then(|c| listing_time(c.with_timezone(&Utc), approval, &status))
                            },
                            name,
                            arn: Some(arn),
                            status: Some(status),
                            ..Default::default()
                        })
                    })
                    .filter(|r| f.name_contains.as_ref().is_none_or(|n| r.name.contains(n.as_str())))
                    .collect::<Vec<_>>();
                (jobs, p.next_token().filter(|t| !t.is_empty()).map(str::to_string))
            }
            Err(e) => match map_sdk_error("ListModelPackages", &group, e) {
                // Deleted while listed: nothing of it to list.
                SyncError::NotFound(_) => (Vec::new(), None),
                err => return Err(err),
            },
        };
        place.advance(token);
        Ok(self.place_page(scope, cursor, started, &place, jobs))
    }

    /// One ListModelPackageGroups page from `token`: the groups, and the next page's token.
    async fn groups_page(&self, token: Option<String>) -> Result<OuterPage, SyncError> {
        self.before("ListModelPackageGroups").await;
        let refused = token.is_some();
        let sent = self
            .clients()
            .await
            .sagemaker
            .list_model_package_groups()
            .max_results(self.settings.page_size)
            .sort_by(aws_sdk_sagemaker::types::ModelPackageGroupSortBy::CreationTime)
            .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
            .set_next_token(token)
            .send()
            .await;
        let page = match sent {
            Ok(p) => p,
            Err(e) => return outer_refused("ListModelPackageGroups", refused, map_sdk_error("ListModelPackageGroups", "", e)),
        };
        let names =
            page.model_package_group_summary_list().iter().filter_map(|g| g.model_package_group_name().map(str::to_string)).collect();
        Ok(Some((names, page.next_token().map(str::to_string))))
    }

    /// A model package in full: DescribeModelPackage, its group's tags and its own (its own
    /// win), and the training job that made its model.
    pub(super) async fn fetch_package(&self, r: &JobRef) -> Result<TrainingJob, SyncError> {
        let arn = r.arn.clone().unwrap_or_else(|| r.name.clone());
        self.before("DescribeModelPackage").await;
        let out = self
            .clients()
            .await
            .sagemaker
            .describe_model_package()
            .model_package_name(&arn)
            .send()
            .await
            .map_err(|e| map_sdk_error("DescribeModelPackage", &format!("model package `{arn}`"), e));
        let out = match out {
            Ok(out) => out,
            // Gone (deleted since it was listed, synced or sent in an event): the engine retracts
            // what the sinks hold of it. Only a versioned package's ARN names what was deleted.
            Err(SyncError::NotFound(why)) => match package_parts(&arn) {
                Some((group, version)) if self.package_is_gone(&arn, group).await? => return Ok(gone_package(&arn, group, version, &why)),
                _ => return Err(SyncError::NotFound(why)),
            },
            Err(e) => return Err(e),
        };
        let mut doc = convert::package_document(&out);
        let pkg_arn = out.model_package_arn().unwrap_or(&arn).to_string();
        let tags = match &r.tags {
            Some(t) => Value::Array(t.iter().map(|t| json!({"Key": t.key, "Value": t.value})).collect()),
            None => {
                let mut all = Vec::new();
                if let Some(group) = out.model_package_group_name() {
                    let group_arn = group_arn(&pkg_arn, group);
                    match self.list_tags(&group_arn).await {
                        Ok(Value::Array(a)) => all.extend(a),
                        Ok(_) => {}
                        // A group the role may not read the tags of: the package's own decide.
                        Err(e) if !e.is_retryable() => tracing::info!(group, error = %e.chain(), "cannot read the package group's tags"),
                        Err(e) => return Err(e),
                    }
                }
                if let Value::Array(a) = self.list_tags(&pkg_arn).await? {
                    all.extend(a);
                }
                Value::Array(all)
            }
        };
        if let Some(o) = doc.as_object_mut() {
            o.insert("Tags".into(), tags);
            let urls: Vec<String> = out
                .inference_specification()
                .map(|s| s.containers().iter().filter_map(|c| c.model_data_url().map(str::to_string)).collect())
                .unwrap_or_default();
            if let Some(link) = self.link_training_job(&urls).await? {
                o.insert("TrainingJob".into(), link);
            }
        }
        let job = package_from_document(&doc)
            .map_err(|e| SyncError::Malformed { origin: format!("model package {pkg_arn}"), message: e.to_string() })?;
        if job.arn.is_empty() || job.status.is_empty() {
            return Err(SyncError::Malformed {
                origin: format!("model package {pkg_arn}"),
                message: "the API returned no ARN or status".into(),
            });
        }
        Ok(job)
    }

    /// Whether a package DescribeModelPackage does not find is gone from where this source
    /// reads, not merely out of its sight: its ARN's region is the source's, and its group is
    /// found in the ARN's account (DescribeModelPackageGroup by ARN), or is gone too. An ARN of
    /// another region (a config pointed elsewhere), or of an account whose group this role
    /// cannot read, is no deletion: the fetch fails as not found.
    async fn package_is_gone(&self, arn: &str, group: &str) -> Result<bool, SyncError> {
        let Some((region, account)) = sagesync_core::model::arn_region_account(arn) else { return Ok(false) };
        if self.region_in_use().await.as_deref() != Some(region) {
            return Ok(false);
        }
        let group_arn = group_arn(arn, group);
        self.before("DescribeModelPackageGroup").await;
        let sent = self.clients().await.sagemaker.describe_model_package_group().model_package_group_name(&group_arn).send().await;
        match sent {
            Ok(g) => Ok(g.model_package_group_arn().and_then(sagesync_core::model::arn_region_account).map(|(_, a)| a) == Some(account)),
            Err(e) => match map_sdk_error("DescribeModelPackageGroup", &group_arn, e) {
                SyncError::NotFound(_) => Ok(true),
                // Refused (another account's group, a role without the permission): no verdict.
                e @ (SyncError::Setup { .. } | SyncError::Permanent { .. }) => {
                    tracing::warn!(package = arn, error = %e.chain(), "cannot read the package's group: a package not found is not taken for deleted (grant sagemaker:DescribeModelPackageGroup)");
                    Ok(false)
                }
                err => Err(err),
            },
        }
    }

    /// The training job whose `ModelArtifacts.S3ModelArtifacts` is one of `urls`: first the job
    /// SageMaker's output layout names in the URL (DescribeTrainingJob, its artifact compared),
    /// else Search on the artifact (a single match). `None`: no job found.
    async fn link_training_job(&self, urls: &[String]) -> Result<Option<Value>, SyncError> {
        for url in urls {
            if let Some(name) = job_in_url(url) {
                match self.describe(name).await {
                    Ok((job, _)) if job.model_artifact.as_deref() == Some(url.as_str()) => {
                        return Ok(Some(json!({"Arn": job.arn, "Name": job.name, "Status": job.status, "LinkedBy": "artifact"})));
                    }
                    Ok(_) | Err(SyncError::NotFound(_)) => {}
                    // A read refused for now or by the setup is no verdict on the link (the
                    // package may follow that job): the attempt fails as the read did.
                    Err(e) if e.is_retryable() || matches!(e, SyncError::Setup { .. }) => return Err(e),
                    Err(e) => tracing::info!(url, error = %e.chain(), "cannot read the training job the model data URL names"),
                }
            }
        }
        for url in urls {
            use aws_sdk_sagemaker::types::{Filter, Operator, ResourceType, SearchExpression};
            self.before("Search").await;
            let filter = Filter::builder().name("ModelArtifacts.S3ModelArtifacts").operator(Operator::Equals).value(url).build();
            let sent = self
                .clients()
                .await
                .sagemaker
                .search()
                .resource(ResourceType::TrainingJob)
                .search_expression(SearchExpression::builder().filters(filter).build())
                .max_results(2)
                .send()
                .await;
            match sent {
                Ok(page) => {
                    let jobs: Vec<_> = page.results().iter().filter_map(|r| r.training_job()).collect();
                    if let [j] = jobs.as_slice() {
                        let arn = j.training_job_arn().unwrap_or_default();
                        return Ok(Some(json!({
                            "Arn": arn,
                            "Name": j.training_job_name().map(str::to_string).unwrap_or_else(|| name_in_arn(arn).to_string()),
                            "Status": j.training_job_status().map(|s| s.as_str()).unwrap_or_default(),
                            "LinkedBy": "artifact",
                        })));
                    }
                }
                Err(e) => match map_sdk_error("Search", "ModelArtifacts.S3ModelArtifacts", e) {
                    e if e.is_retryable() || matches!(e, SyncError::Setup { .. }) => return Err(e),
                    e => tracing::info!(url, error = %e.chain(), "cannot search training jobs by artifact; the package is not linked"),
                },
            }
        }
        Ok(None)
    }
}

/// A package the source found gone: its name, ARN and group from its ARN, status
/// [`sagesync_core::DELETED_STATUS`] (never written; retracted by the engine).
fn gone_package(arn: &str, group: &str, version: u64, why: &str) -> TrainingJob {
    let mut job = TrainingJob::new(package_name(group, Some(version)), arn, sagesync_core::DELETED_STATUS);
    job.failure_reason = Some(why.to_string());
    job.lineage.kind = ResourceKind::ModelPackage;
    job.lineage.package = Some(sagesync_core::PackageSummary { group: group.to_string(), version: Some(version), ..Default::default() });
    job
}

/// A package group's ARN from one of its packages' ARN.
fn group_arn(package_arn: &str, group: &str) -> String {
    match package_arn.split_once(":model-package/") {
        Some((prefix, _)) => format!("{prefix}:model-package-group/{group}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_data_url_names_its_job_by_sagemakers_layout() {
        assert_eq!(job_in_url("s3://b/out/xgb-1/output/model.tar.gz"), Some("xgb-1"));
        assert_eq!(job_in_url("s3://b/xgb-1/output/model.tar.gz"), Some("xgb-1"));
        assert_eq!(job_in_url("s3://b/out/xgb-1/model.tar.gz"), None);
        assert_eq!(job_in_url("s3://b/out/x_y/output/model.tar.gz"), None);
        assert_eq!(job_in_url("https://b/out/x/output/model.tar.gz"), None);
    }

    #[test]
    fn a_status_change_is_a_new_listing_time() {
        let c = Utc::now();
        let pending = listing_time(c, "PendingManualApproval", "Completed");
        let approved = listing_time(c, "Approved", "Completed");
        assert!(pending.is_some() && approved.is_some() && pending != approved);
        assert!(approved.unwrap() < c, "never the package's own time");
        assert_eq!(listing_time(c, "Whatever", "Completed"), None, "unknown: read each poll");
        assert_eq!(
            group_arn("arn:aws:sagemaker:us-east-1:1:model-package/churn/3", "churn"),
            "arn:aws:sagemaker:us-east-1:1:model-package-group/churn"
        );
        assert!(is_package(&JobRef::by_name("arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3")));
        assert!(!is_package(&JobRef::by_name("arn:aws:sagemaker:us-east-1:123456789012:model-package-group/churn")));
    }
}
