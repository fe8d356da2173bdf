//! Many AWS accounts and regions in one source: one [`SageMakerSource`] per account × region
//! pair (its own clients and credentials, its own rate budgets, its own cursor), listed
//! concurrently within a bound. A pair that fails (a role that cannot be assumed, a region not
//! enabled) is reported with its pair and does not stop the others; its cursor stays where it
//! was. A job's ARN names its account and region, so the ledger keys stay what they were.
//!
//! The cursor: `parts["<account>/<region>"]` holds each pair's cursor (`own` for the base
//! credentials' account, `default` for the chain's region). While a listing is in progress,
//! `token` holds the pairs already through it (JSON). The top-level `watermark` is never this
//! source's: it is only ever the engine's floor (a daemon's `start_from`), applied to every pair
//! as a lower bound. A pair without a part lists from the start (the ledger makes that cheap):
//! a pair never inherits another's progress. With one pair, the cursor is that pair's own (as
//! a single-account source always had it), taken from its part once after several pairs.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::Utc;
use futures::stream::{self, StreamExt};
use sagesync_core::{ChildSummary, Cursor, JobRef, ListScope, ListingProblem, Page, Source, SyncError, TrainingJob};
use tokio::sync::OnceCell;

use super::config::PairSettings;
use super::source::SageMakerSource;

/// Whether a cursor is this source's composite one (pair parts are keyed `<account>/<region>`;
/// the kinds' parts have no `/`).
fn is_composite(c: &Cursor) -> bool {
    c.parts.keys().any(|k| k.contains('/'))
}

/// Attempts at one pair's page when it fails in a way that may pass (throttling, a timeout).
const PAIR_ATTEMPTS: u32 = 3;

/// One pair and its source.
struct Pair {
    account: Option<String>,
    region: Option<String>,
    source: SageMakerSource,
}

impl Pair {
    fn key(&self) -> String {
        format!("{}/{}", self.account.as_deref().unwrap_or("own"), self.region.as_deref().unwrap_or("default"))
    }
    fn label(&self) -> String {
        format!(
            "account {}, region {}",
            self.account.as_deref().unwrap_or("(own)"),
            self.region.as_deref().unwrap_or("(the credential chain's)")
        )
    }
}

/// The `sagemaker` source over several account × region pairs.
pub struct PairedSource {
    pairs: Vec<Pair>,
    concurrency: usize,
    /// The base credentials' account id (STS GetCallerIdentity, once), to route an ARN of it.
    own: OnceCell<Option<String>>,
}

/// The account and region an ARN names (`arn:<partition>:sagemaker:<region>:<account>:...`).
pub fn arn_account_region(arn: &str) -> Option<(&str, &str)> {
    let (region, account) = sagesync_core::model::arn_region_account(arn)?;
    (account.len() == 12).then_some((account, region))
}

impl PairedSource {
    /// A source over `pairs`, listing at most `concurrency` at once.
    pub fn new(pairs: Vec<PairSettings>, concurrency: usize) -> Self {
        let pairs =
            pairs.into_iter().map(|p| Pair { account: p.account, region: p.region, source: SageMakerSource::new(p.settings) }).collect();
        PairedSource { pairs, concurrency: concurrency.max(1), own: OnceCell::new() }
    }

    /// The account of the base credentials, when a pair of it exists (asked of STS once; a
    /// failure is retried at the next call).
    async fn own_account(&self) -> Result<Option<String>, SyncError> {
        let Some(own) = self.pairs.iter().find(|p| p.account.is_none()) else { return Ok(None) };
        if let Some(a) = self.own.get() {
            return Ok(a.clone());
        }
        let id = own.source.caller_account().await?;
        let _ = self.own.set(Some(id.clone()));
        Ok(Some(id))
    }

    /// The pair that reads `arn`'s account and region; an error naming them when none does.
    /// Accounts named by a role match first; STS is asked for the base account's id only when
    /// none does (and only when a pair of the base account exists).
    async fn pair_of(&self, arn: &str) -> Result<&Pair, SyncError> {
        let Some((account, region)) = arn_account_region(arn) else {
            return Err(SyncError::NotFound(format!("`{arn}` is not an ARN of an account and region")));
        };
        for p in self.pairs.iter().filter(|p| p.account.as_deref() == Some(account)) {
            if p.source.region_in_use().await.as_deref() == Some(region) {
                return Ok(p);
            }
        }
        let named = self.pairs.iter().any(|p| p.account.as_deref() == Some(account));
        if !named && self.pairs.iter().any(|p| p.account.is_none()) && self.own_account().await?.as_deref() == Some(account) {
            for p in self.pairs.iter().filter(|p| p.account.is_none()) {
                if p.source.region_in_use().await.as_deref() == Some(region) {
                    return Ok(p);
                }
            }
        }
        // Not a verdict on the job: this deployment does not read that pair (an event from an
        // account it has no role for, a region it does not list).
        Err(SyncError::setup(format!(
            "{arn}: account {account}, region {region} is not one this source reads (add the account to [[source.accounts]] with a role, or the region to `regions`)"
        )))
    }
}

/// One page of one pair from its cursor, tried again (briefly) when it fails in a way that may
/// pass: the engine's own retry sees only the whole page, which the other pairs' share.
async fn list_pair<'a>(p: &'a Pair, scope: &ListScope, c: Cursor) -> (&'a Pair, Result<Page, SyncError>) {
    let mut attempt = 1;
    loop {
        match p.source.list(scope, &c).await {
            Err(e) if e.is_retryable() && attempt < PAIR_ATTEMPTS => {
                tracing::debug!(pair = %p.label(), attempt, error = %e.chain(), "listing one account and region failed for now; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(250 * u64::from(attempt))).await;
                attempt += 1;
            }
            r => return (p, r),
        }
    }
}

#[async_trait]
impl Source for PairedSource {
    async fn list(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        let composite = is_composite(cursor);
        // The engine's floor, when the cursor is ours (this source never sets a top-level
        // watermark); a single-account cursor's watermark is that account's progress, which no
        // other pair may inherit.
        let floor = if composite { cursor.watermark } else { None };
        let part_of = |key: &str| {
            let mut c = cursor.parts.get(key).cloned().unwrap_or_default();
            if let Some(f) = floor {
                if c.watermark.is_none_or(|w| w < f) {
                    c.watermark = Some(f);
                    c.seen_at_watermark.clear();
                }
            }
            c
        };
        if let [only] = self.pairs.as_slice() {
            // One pair: its own cursor, as a single-account source always kept it.
            let c = if composite { part_of(&only.key()) } else { cursor.clone() };
            return only.source.list(scope, &c).await;
        }
        let base = if composite { cursor.clone() } else { Cursor::default() };
        let started = base.started.unwrap_or_else(Utc::now);
        let mut through: BTreeSet<String> = base.token.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
        // At most `concurrency` pairs per page: a page holds at most that many pairs' pages.
        let todo: Vec<(&Pair, Cursor)> =
            self.pairs.iter().filter(|p| !through.contains(&p.key())).take(self.concurrency).map(|p| (p, part_of(&p.key()))).collect();
        let futures: Vec<_> = todo.into_iter().map(|(p, c)| list_pair(p, scope, c)).collect();
        let results: Vec<(&Pair, Result<Page, SyncError>)> = stream::iter(futures).buffer_unordered(self.concurrency).collect().await;
        let mut next = base;
        next.started = Some(started);
        let (mut jobs, mut problems) = (Vec::new(), Vec::new());
        for (p, r) in results {
            match r {
                Ok(page) => {
                    jobs.extend(page.jobs);
                    problems.extend(page.problems);
                    next.parts.insert(p.key(), page.next);
                    if page.done {
                        through.insert(p.key());
                    }
                }
                Err(e) if e.is_cancelled() => return Err(e),
                Err(e) => {
                    // This pair's cursor stays (shown by `status` even before its first page);
                    // the others go on, and it is listed again at the next pass.
                    tracing::warn!(pair = %p.label(), error = %e.chain(), "listing one account and region failed; the others go on");
                    next.parts.entry(p.key()).or_default();
                    let mut problem = ListingProblem::at(p.label(), e);
                    problem.lists_again = true;
                    problems.push(problem);
                    through.insert(p.key());
                }
            }
        }
        let done = self.pairs.iter().all(|p| through.contains(&p.key()));
        if done {
            next.started = None;
            next.token = None;
        } else {
            next.token = serde_json::to_string(&through).ok();
        }
        next.seen_at_watermark.clear();
        next.watermark = None;
        Ok(Page { jobs, problems, next, done })
    }

    async fn fetch(&self, job: &JobRef) -> Result<TrainingJob, SyncError> {
        if let [only] = self.pairs.as_slice() {
            if only.account.is_none() {
                // The base account in one region: the source as a single-account one is.
                return only.source.fetch(job).await;
            }
        }
        if let Some(arn) = job.arn.as_deref().or_else(|| job.name.starts_with("arn:").then_some(job.name.as_str())) {
            return self.pair_of(arn).await?.source.fetch(job).await;
        }
        // A bare name: looked up in every pair; more than one answer is ambiguous.
        let mut found: Vec<(String, TrainingJob)> = Vec::new();
        let mut failures: Vec<(String, SyncError)> = Vec::new();
        for p in &self.pairs {
            match p.source.fetch(job).await {
                // The same job reached twice (the base account also reached through a role).
                Ok(j) if found.iter().any(|(_, f)| f.arn == j.arn) => {}
                Ok(j) => found.push((p.label(), j)),
                Err(SyncError::NotFound(_)) => {}
                Err(e) if e.is_cancelled() => return Err(e),
                Err(e) => failures.push((p.label(), e)),
            }
        }
        // A name not looked up everywhere is no answer: a pair that could not be read may hold
        // it too.
        if let Some((label, e)) = failures.into_iter().next() {
            return Err(match e {
                SyncError::Transient { .. } => SyncError::transient(format!("looking `{}` up in {label}: {}", job.name, e.chain())),
                _ => SyncError::setup(format!("looking `{}` up in {label}: {}; give the job's ARN", job.name, e.chain())),
            });
        }
        match found.len() {
            1 => Ok(found.remove(0).1),
            0 => Err(SyncError::NotFound(format!("`{}` in none of the {} accounts and regions read", job.name, self.pairs.len()))),
            _ => Err(SyncError::permanent(format!(
                "`{}` names jobs in several accounts and regions ({}): give its ARN",
                job.name,
                found.iter().map(|(l, j)| format!("{l}: {}", j.arn)).collect::<Vec<_>>().join("; ")
            ))),
        }
    }

    async fn prepare(&self, jobs: &[&JobRef]) {
        if let [only] = self.pairs.as_slice() {
            if only.account.is_none() {
                return only.source.prepare(jobs).await;
            }
        }
        if jobs.is_empty() {
            // The page is done: every pair drops what it kept.
            futures::future::join_all(self.pairs.iter().map(|p| p.source.prepare(&[]))).await;
            return;
        }
        // Each pair reads the page's jobs of its own account and region, the pairs at once.
        let mut by_pair: Vec<(&Pair, Vec<&JobRef>)> = Vec::new();
        for r in jobs {
            let Some(arn) = r.arn.as_deref() else { continue };
            let Ok(p) = self.pair_of(arn).await else { continue };
            match by_pair.iter_mut().find(|(q, _)| std::ptr::eq(*q, p)) {
                Some((_, list)) => list.push(r),
                None => by_pair.push((p, vec![r])),
            }
        }
        futures::future::join_all(by_pair.iter().map(|(p, list)| p.source.prepare(list))).await;
    }

    async fn child(&self, parent: &TrainingJob, child: &ChildSummary) -> Result<TrainingJob, SyncError> {
        if let [only] = self.pairs.as_slice() {
            if only.account.is_none() {
                return only.source.child(parent, child).await;
            }
        }
        let arn = if child.arn.is_empty() { &parent.arn } else { &child.arn };
        self.pair_of(arn).await?.source.child(parent, child).await
    }

    fn api_calls(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for p in &self.pairs {
            for (op, n) in p.source.api_calls() {
                *all.entry(op).or_insert(0) += n;
            }
        }
        all
    }

    fn fingerprint(&self) -> String {
        // What a record holds does not depend on which pair read it: the options are the same.
        self.pairs.first().map(|p| p.source.fingerprint()).unwrap_or_default()
    }

    fn clock_tolerance(&self) -> std::time::Duration {
        self.pairs.iter().map(|p| p.source.clock_tolerance()).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_names_its_account_and_region() {
        assert_eq!(arn_account_region("arn:aws:sagemaker:eu-west-1:111111111111:training-job/x"), Some(("111111111111", "eu-west-1")));
        assert_eq!(arn_account_region("arn:aws:sagemaker:eu-west-1:1:training-job/x"), None);
        assert_eq!(arn_account_region("job-name"), None);
    }

    #[test]
    fn the_external_id_stays_out_of_debug_output() {
        let config: super::super::config::SageMakerSourceConfig = toml::from_str(
            "regions = [\"us-east-1\", \"eu-west-1\"]\n[[accounts]]\nrole_arn = \"arn:aws:iam::111111111111:role/r\"\nexternal_id = \"xid-sekrit-42\"\n",
        )
        .expect("config");
        let pairs = config.pairs().expect("pairs");
        assert_eq!(pairs.len(), 4, "2 accounts x 2 regions");
        for shown in [format!("{config:?}"), format!("{pairs:?}"), format!("{:?}", PairedSource::new(pairs, 2).pairs.len())] {
            assert!(!shown.contains("xid-sekrit-42"), "{shown}");
        }
        assert!(format!("{:?}", config.accounts[0]).contains("role_arn"));
    }
}
