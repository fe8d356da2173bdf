//! The `sagemaker` source.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagesync_core::{Cursor, JobRef, Listing, Source, SyncError, TrainingJob};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::client::{map_sdk_error, CallCounter, ClientSettings, Clients, RateLimiter};
use super::convert;
use crate::document::job_from_document;

/// How jobs are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// ListTrainingJobs with a LastModifiedTime watermark, then Describe + ListTags per job.
    #[default]
    List,
    /// Search(TrainingJob): full records with tags, up to 100 per call.
    Search,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Statuses to list (empty: all).
    pub statuses: Vec<String>,
    /// Name substring.
    pub name_contains: Option<String>,
    /// Created strictly after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created strictly before.
    pub created_before: Option<DateTime<Utc>>,
    /// Modified at or after.
    pub modified_after: Option<DateTime<Utc>>,
    /// Modified strictly before.
    pub modified_before: Option<DateTime<Utc>>,
}

/// Settings of the source.
#[derive(Debug, Clone)]
pub struct SageMakerSettings {
    /// Clients.
    pub client: ClientSettings,
    /// Listing mode.
    pub mode: Mode,
    /// Filters.
    pub filters: Filters,
    /// Calls per second (all operations together); 0 = unlimited.
    pub max_requests_per_second: f64,
    /// Page size (1..=100).
    pub page_size: i32,
    /// List each S3 channel's objects.
    pub dataset_manifests: bool,
    /// Cap on objects listed per channel.
    pub max_manifest_objects: usize,
}

impl SageMakerSettings {
    /// The defaults of the `sagemaker` plugin config in `mode` (standard credential chain, no
    /// endpoint override, 2 calls/s, pages of 100, no manifests).
    pub fn new(mode: Mode) -> Self {
        SageMakerSettings {
            client: ClientSettings { max_attempts: 5, initial_backoff: std::time::Duration::from_secs(1), ..Default::default() },
            mode,
            filters: Filters::default(),
            max_requests_per_second: 2.0,
            page_size: 100,
            dataset_manifests: false,
            max_manifest_objects: 1000,
        }
    }
    /// Sends SageMaker (and S3) calls to `url` in `region` (emulators, VPC endpoints).
    pub fn endpoint(mut self, url: &str, region: &str) -> Self {
        self.client.endpoint_url = Some(url.to_string());
        self.client.s3_endpoint_url = Some(url.to_string());
        self.client.region = Some(region.to_string());
        self
    }
    /// Removes the client-side rate limit.
    pub fn unlimited(mut self) -> Self {
        self.max_requests_per_second = 0.0;
        self
    }
}

/// Jobs from the SageMaker API.
pub struct SageMakerSource {
    settings: SageMakerSettings,
    clients: OnceCell<Clients>,
    limiter: RateLimiter,
    calls: CallCounter,
}

fn aws_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A job name from a name or a training-job ARN.
pub fn job_name(name_or_arn: &str) -> &str {
    match name_or_arn.split_once(":training-job/") {
        Some((prefix, name)) if prefix.starts_with("arn:") => name,
        _ => name_or_arn,
    }
}

impl SageMakerSource {
    /// A source with these settings (clients are built on first use).
    pub fn new(settings: SageMakerSettings) -> Self {
        let limiter = RateLimiter::new(settings.max_requests_per_second);
        SageMakerSource { settings, clients: OnceCell::new(), limiter, calls: CallCounter::default() }
    }

    /// The settings.
    pub fn settings(&self) -> &SageMakerSettings {
        &self.settings
    }

    async fn clients(&self) -> &Clients {
        self.clients.get_or_init(|| self.settings.client.build()).await
    }

    async fn before(&self, op: &str) {
        self.limiter.acquire().await;
        self.calls.count(op);
    }

    /// DescribeTrainingJob: the job without tags, and its document.
    pub async fn describe(&self, name: &str) -> Result<(TrainingJob, Value), SyncError> {
        let name = job_name(name);
        self.before("DescribeTrainingJob").await;
        let out = self.clients().await.sagemaker.describe_training_job().training_job_name(name).send().await.map_err(|e| map_sdk_error("DescribeTrainingJob", &format!("training job `{name}`"), e))?;
        let doc = convert::describe_document(&out);
        let job = job_from_document(&doc).map_err(|e| SyncError::Malformed { origin: format!("DescribeTrainingJob {name}"), message: e.to_string() })?;
        Ok((job, doc))
    }

    /// ListTags on a job, every page.
    pub async fn list_tags(&self, arn: &str) -> Result<Value, SyncError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.before("ListTags").await;
            let out = self.clients().await.sagemaker.list_tags().resource_arn(arn).max_results(100).set_next_token(token.clone()).send().await.map_err(|e| map_sdk_error("ListTags", arn, e))?;
            if let Value::Array(a) = convert::tags(out.tags()) {
                all.extend(a);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(Value::Array(all))
    }

    /// One job by name: Describe + ListTags (+ manifests).
    pub async fn fetch_by_name(&self, name: &str) -> Result<TrainingJob, SyncError> {
        let (_, mut doc) = self.describe(name).await?;
        let arn = doc.get("TrainingJobArn").and_then(Value::as_str).unwrap_or_default().to_string();
        let tags = self.list_tags(&arn).await?;
        if let Some(o) = doc.as_object_mut() {
            o.insert("Tags".into(), tags);
        }
        self.finish(doc).await
    }

    /// Adds manifests (when enabled) and reads the document.
    pub async fn finish(&self, mut doc: Value) -> Result<TrainingJob, SyncError> {
        if self.settings.dataset_manifests {
            self.add_manifests(&mut doc).await?;
        }
        let name = doc.get("TrainingJobName").and_then(Value::as_str).unwrap_or("?").to_string();
        let job = job_from_document(&doc).map_err(|e| SyncError::Malformed { origin: format!("training job {name}"), message: e.to_string() })?;
        if job.arn.is_empty() || job.status.is_empty() {
            return Err(SyncError::Malformed { origin: format!("training job {name}"), message: "the API returned no ARN or status".into() });
        }
        Ok(job)
    }

    async fn add_manifests(&self, doc: &mut Value) -> Result<(), SyncError> {
        let Some(channels) = doc.get_mut("InputDataConfig").and_then(Value::as_array_mut) else { return Ok(()) };
        for ch in channels.iter_mut() {
            let Some(uri) = ch.pointer("/DataSource/S3DataSource/S3Uri").and_then(Value::as_str).map(str::to_string) else { continue };
            let Some((bucket, prefix)) = uri.strip_prefix("s3://").and_then(|r| r.split_once('/').or(Some((r, "")))) else { continue };
            match self.list_objects(bucket, prefix).await {
                Ok(m) => {
                    if let Some(o) = ch.as_object_mut() {
                        o.insert("Manifest".into(), m);
                    }
                }
                Err(e @ SyncError::Transient { .. }) => return Err(e),
                Err(e) => tracing::warn!(uri = %uri, error = %e.chain(), "cannot list the channel's objects; no manifest recorded"),
            }
        }
        Ok(())
    }

    async fn list_objects(&self, bucket: &str, prefix: &str) -> Result<Value, SyncError> {
        let cap = self.settings.max_manifest_objects;
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        let mut truncated = false;
        loop {
            self.before("ListObjectsV2").await;
            let want = (cap - objects.len()).clamp(1, 1000) as i32;
            let out = self
                .clients()
                .await
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .max_keys(want)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("ListObjectsV2", &format!("s3://{bucket}/{prefix}"), e))?;
            for o in out.contents() {
                if objects.len() >= cap {
                    truncated = true;
                    break;
                }
                objects.push(json!({
                    "key": o.key(),
                    "size": o.size().unwrap_or(0).max(0),
                    "etag": o.e_tag().unwrap_or("").trim_matches('"'),
                    "last_modified": o.last_modified().map(convert::time),
                }));
            }
            let more = out.is_truncated().unwrap_or(false);
            if objects.len() >= cap {
                truncated |= more;
                break;
            }
            match out.next_continuation_token() {
                Some(t) if more => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(json!({"objects": objects, "truncated": truncated}))
    }

    fn status_ok(&self, status: &str) -> bool {
        self.settings.filters.statuses.is_empty() || self.settings.filters.statuses.iter().any(|s| s == status)
    }

    fn single_status(&self) -> Option<aws_sdk_sagemaker::types::TrainingJobStatus> {
        match self.settings.filters.statuses.as_slice() {
            [one] => Some(aws_sdk_sagemaker::types::TrainingJobStatus::from(one.as_str())),
            _ => None,
        }
    }

    /// The lower bound on LastModifiedTime for a listing from `cursor`.
    fn modified_from(&self, cursor: &Cursor) -> Option<DateTime<Utc>> {
        match (cursor.watermark, self.settings.filters.modified_after) {
            (Some(w), Some(f)) => Some(w.max(f)),
            (w, f) => w.or(f),
        }
    }

    async fn list_mode(&self, cursor: &Cursor) -> Result<Vec<(String, String, String, Option<DateTime<Utc>>)>, SyncError> {
        let f = &self.settings.filters;
        // ListTrainingJobs' bound is strict; start a second early and let the cursor drop what
        // was already seen at the watermark itself.
        let after = self.modified_from(cursor).map(|t| t - chrono::Duration::seconds(1));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen_tokens = std::collections::HashSet::new();
        loop {
            self.before("ListTrainingJobs").await;
            let page = self
                .clients()
                .await
                .sagemaker
                .list_training_jobs()
                .max_results(self.settings.page_size)
                .sort_by(aws_sdk_sagemaker::types::SortBy::CreationTime)
                .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
                .set_last_modified_time_after(after.map(aws_time))
                .set_last_modified_time_before(f.modified_before.map(aws_time))
                .set_creation_time_after(f.created_after.map(aws_time))
                .set_creation_time_before(f.created_before.map(aws_time))
                .set_name_contains(f.name_contains.clone())
                .set_status_equals(self.single_status())
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("ListTrainingJobs", "", e))?;
            for s in page.training_job_summaries() {
                let lm = s.last_modified_time().or(s.creation_time()).map(|t| convert::time(t)).and_then(|v| v.as_str().and_then(|x| DateTime::parse_from_rfc3339(x).ok()).map(|d| d.with_timezone(&Utc)));
                out.push((s.training_job_name().unwrap_or_default().to_string(), s.training_job_arn().unwrap_or_default().to_string(), s.training_job_status().map(|x| x.as_str().to_string()).unwrap_or_default(), lm));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => {
                    if !seen_tokens.insert(t.to_string()) {
                        return Err(SyncError::permanent(format!("ListTrainingJobs returned the same NextToken twice ({t}); stopping")));
                    }
                    token = Some(t.to_string());
                }
                _ => break,
            }
        }
        Ok(out)
    }

    async fn search_mode(&self, cursor: &Cursor) -> Result<Vec<TrainingJob>, SyncError> {
        use aws_sdk_sagemaker::types::{Filter, Operator, ResourceType, SearchExpression, SearchSortOrder};
        let f = &self.settings.filters;
        let mut filters = Vec::new();
        let filter = |name: &str, op: Operator, value: String| -> Result<Filter, SyncError> { Ok(Filter::builder().name(name).operator(op).value(value).build()) };
        if let Some(t) = self.modified_from(cursor) {
            filters.push(filter("LastModifiedTime", Operator::GreaterThanOrEqualTo, iso(t))?);
        }
        if let Some(t) = f.modified_before {
            filters.push(filter("LastModifiedTime", Operator::LessThan, iso(t))?);
        }
        if let Some(t) = f.created_after {
            filters.push(filter("CreationTime", Operator::GreaterThan, iso(t))?);
        }
        if let Some(t) = f.created_before {
            filters.push(filter("CreationTime", Operator::LessThan, iso(t))?);
        }
        if let Some(n) = &f.name_contains {
            filters.push(filter("TrainingJobName", Operator::Contains, n.clone())?);
        }
        if let [one] = f.statuses.as_slice() {
            filters.push(filter("TrainingJobStatus", Operator::Equals, one.clone())?);
        }
        let expr = if filters.is_empty() { None } else { Some(SearchExpression::builder().set_filters(Some(filters)).build()) };
        let mut jobs = Vec::new();
        let mut token: Option<String> = None;
        let mut seen_tokens = std::collections::HashSet::new();
        loop {
            self.before("Search").await;
            let page = self
                .clients()
                .await
                .sagemaker
                .search()
                .resource(ResourceType::TrainingJob)
                .set_search_expression(expr.clone())
                .sort_by("LastModifiedTime")
                .sort_order(SearchSortOrder::Ascending)
                .max_results(self.settings.page_size)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("Search", "TrainingJob", e))?;
            for r in page.results() {
                if let Some(tj) = r.training_job() {
                    jobs.push(convert::search_document(tj));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => {
                    if !seen_tokens.insert(t.to_string()) {
                        return Err(SyncError::permanent(format!("Search returned the same NextToken twice ({t}); stopping")));
                    }
                    token = Some(t.to_string());
                }
                _ => break,
            }
        }
        let mut out = Vec::with_capacity(jobs.len());
        for doc in jobs {
            out.push(self.finish(doc).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Source for SageMakerSource {
    async fn list(&self, cursor: &Cursor) -> Result<Listing, SyncError> {
        let mut next = cursor.clone();
        let jobs: Vec<JobRef> = match self.settings.mode {
            Mode::List => {
                let mut found: Vec<_> = self.list_mode(cursor).await?.into_iter().filter(|(_, arn, status, lm)| self.status_ok(status) && !cursor.covers(*lm, arn)).collect();
                found.sort_by(|a, b| (a.3, &a.1).cmp(&(b.3, &b.1)));
                found.dedup_by(|a, b| a.1 == b.1);
                found
                    .into_iter()
                    .map(|(name, arn, _, lm)| {
                        next.advance(lm, &arn);
                        JobRef { name, arn: Some(arn), last_modified: lm, origin: None, job: None }
                    })
                    .collect()
            }
            Mode::Search => {
                let mut found: Vec<_> = self.search_mode(cursor).await?.into_iter().filter(|j| self.status_ok(&j.status) && !cursor.covers(j.last_modified_time, &j.arn)).collect();
                found.sort_by(|a, b| (a.last_modified_time, &a.arn).cmp(&(b.last_modified_time, &b.arn)));
                found.dedup_by(|a, b| a.arn == b.arn);
                found
                    .into_iter()
                    .map(|j| {
                        next.advance(j.last_modified_time, &j.arn);
                        JobRef::with_job(j, None)
                    })
                    .collect()
            }
        };
        Ok(Listing { jobs, problems: Vec::new(), next, more: false })
    }

    async fn fetch(&self, job: &JobRef) -> Result<TrainingJob, SyncError> {
        if let Some(j) = &job.job {
            return Ok(Arc::unwrap_or_clone(j.clone()));
        }
        self.fetch_by_name(job.arn.as_deref().map(job_name).unwrap_or(&job.name)).await
    }

    fn api_calls(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_from_arns() {
        assert_eq!(super::job_name("arn:aws:sagemaker:us-east-1:1:training-job/abc-1"), "abc-1");
        assert_eq!(super::job_name("abc-1"), "abc-1");
    }
}
