//! The store itself: one DynamoDB table, one item per job and per cursor ([`crate::item`]),
//! every lease operation one conditional request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use sagesync_core::{Acquired, CountClass, Cursor, JobState, Lease, LedgerCounts, Outcome, StateError, StateStore, Timestamp};

use crate::client::{conditional_failed, DynamoSettings};
use crate::item::*;

/// The DynamoDB store. The client is built, and the table checked (or created), on first use.
pub struct DynamoState {
    pub(crate) settings: DynamoSettings,
    client: tokio::sync::OnceCell<Client>,
}

impl DynamoState {
    /// Writes `entry` under `lease` in one conditional update; releases the lease too when
    /// `release`.
    async fn write(&self, lease: &Lease, entry: &JobState, release: bool) -> Result<bool, StateError> {
        let c = self.client().await?;
        let json = serde_json::to_string(entry).map_err(|e| self.decode(e.to_string()))?;
        let (set, mut remove, mut values) = entry_update(entry, json);
        if release {
            remove.extend(["#lease_owner", "#lease_expires"]);
        }
        values.insert(":me".into(), s(&lease.owner));
        values.insert(":f".into(), n(lease.fence));
        let r = c
            .update_item()
            .table_name(self.table())
            .key(PK, job_key(&lease.arn))
            .exprs(
                &if remove.is_empty() { format!("SET {set}") } else { format!("SET {set} REMOVE {}", remove.join(", ")) },
                "#lease_owner = :me AND #fence = :f",
            )
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(self.err("UpdateItem", e)),
        }
    }

    /// A store over the table of `settings` (nothing is contacted until first use).
    pub fn new(settings: DynamoSettings) -> Self {
        DynamoState { settings, client: tokio::sync::OnceCell::new() }
    }

    /// The settings.
    pub fn settings(&self) -> &DynamoSettings {
        &self.settings
    }

    pub(crate) fn loc(&self) -> String {
        format!("dynamodb table {}", self.settings.table)
    }

    pub(crate) fn table(&self) -> &str {
        &self.settings.table
    }

    /// Builds the client and checks (or creates) the table now: start-up checks and tests.
    pub async fn open(&self) -> Result<(), StateError> {
        self.client().await.map(|_| ())
    }

    async fn client(&self) -> Result<&Client, StateError> {
        self.client
            .get_or_try_init(|| async {
                let c = self.settings.client().await;
                self.ensure_table(&c).await?;
                Ok::<_, StateError>(c)
            })
            .await
    }

    pub(crate) fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(&self, op: &str, e: SdkError<E, HttpResponse>) -> StateError {
        crate::client::error(self.loc(), &self.settings.table, op, e)
    }

    fn decode(&self, message: impl Into<String>) -> StateError {
        StateError::Decode { location: self.loc(), message: message.into() }
    }

    /// The lease on a job as stored (holder, expiry, fence), whether or not it has expired:
    /// for operators and tests. `None` when no writer holds or held it since the last commit.
    pub async fn lease_of(&self, arn: &str) -> Result<Option<Lease>, StateError> {
        let Some(item) = self.get_item(job_key(arn)).await? else {
            return Ok(None);
        };
        let (Some(owner), Some(exp), Some(fence)) = (text(&item, "lease_owner"), num(&item, "lease_expires"), num(&item, "fence")) else {
            return Ok(None);
        };
        let expires_at =
            DateTime::<Utc>::from_timestamp_millis(exp).ok_or_else(|| self.decode(format!("job {arn}: lease expiry {exp}")))?;
        Ok(Some(Lease { arn: arn.to_string(), owner: owner.to_string(), fence: fence as u64, expires_at }))
    }

    fn entry_of(&self, item: &HashMap<String, AttributeValue>) -> Result<Option<JobState>, StateError> {
        match item.get("entry") {
            None => Ok(None),
            Some(AttributeValue::S(json)) => {
                serde_json::from_str(json).map(Some).map_err(|e| self.decode(format!("ledger entry of {}: {e}", item_name(item))))
            }
            Some(_) => Err(self.decode(format!("ledger entry of {} is not a string", item_name(item)))),
        }
    }

    /// Every item matching `filter`, with `projection`, following pages up to a bound.
    async fn scan(
        &self,
        filter: &str,
        projection: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StateError> {
        let c = self.client().await?;
        let names = names(&[filter, projection]);
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_SCAN_PAGES {
            let req = c
                .scan()
                .table_name(self.table())
                .consistent_read(true)
                .filter_expression(filter)
                .projection_expression(projection)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take());
            let page = req.send().await.map_err(|e| self.err("Scan", e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
        Err(StateError::Backend {
            location: self.loc(),
            message: format!("Scan: more than {MAX_SCAN_PAGES} pages; the table is too large for this store's scans"),
            retryable: false,
        })
    }

    /// Failed jobs' entries (parked or not) in ARN order after `after`, at most `limit`, from the
    /// sparse failed-jobs index (it holds failed jobs only, sorted by ARN); `due_at` keeps only
    /// unparked jobs whose retry time has come by then. Index reads are eventually consistent:
    /// a failure recorded a moment ago may show on the next call (every job is read again under
    /// its lease before it is worked on).
    async fn failed_entries(&self, after: Option<&str>, limit: usize, due_at: Option<Timestamp>) -> Result<Vec<JobState>, StateError> {
        let c = self.client().await?;
        let mut values = HashMap::from([(":failed_pk".to_string(), s(FAILED_PK_VALUE))]);
        let mut key = "#failed_pk = :failed_pk".to_string();
        if let Some(a) = after {
            key.push_str(" AND #arn > :after");
            values.insert(":after".into(), s(a));
        }
        let mut filter = None;
        if let Some(now) = due_at {
            filter = Some("#parked = :no AND (attribute_not_exists(#next_at) OR #next_at <= :now)");
            values.insert(":no".into(), AttributeValue::Bool(false));
            values.insert(":now".into(), n(millis(now)));
        }
        let projection = "#pk, #entry";
        let names = names(&[&key, filter.unwrap_or(""), projection]);
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_SCAN_PAGES {
            if out.len() >= limit {
                break;
            }
            let page = c
                .query()
                .table_name(self.table())
                .index_name(FAILED_INDEX)
                .key_condition_expression(&key)
                .set_filter_expression(filter.map(str::to_string))
                .projection_expression(projection)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .limit(i32::try_from(limit.saturating_sub(out.len()).clamp(1, 1000)).unwrap_or(1000))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Query", e))?;
            for it in page.items() {
                if let Some(e) = self.entry_of(it)? {
                    out.push(e);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn get_item(&self, key: AttributeValue) -> Result<Option<HashMap<String, AttributeValue>>, StateError> {
        let c = self.client().await?;
        let r =
            c.get_item().table_name(self.table()).key(PK, key).consistent_read(true).send().await.map_err(|e| self.err("GetItem", e))?;
        Ok(r.item)
    }
}

/// `ExpressionAttributeNames` for every `#name` in `exprs` (each stands for the attribute `name`):
/// every attribute is referred to by placeholder, so none can collide with a reserved word, and
/// none is declared unused.
#[async_trait]
impl StateStore for DynamoState {
    fn location(&self) -> String {
        self.loc()
    }

    async fn cursor(&self, key: &str) -> Result<Option<Cursor>, StateError> {
        let Some(item) = self.get_item(s(format!("{CURSOR_PREFIX}{key}"))).await? else {
            return Ok(None);
        };
        let json = text(&item, "cursor").ok_or_else(|| self.decode(format!("cursor {key}: no `cursor` attribute")))?;
        serde_json::from_str(json).map(Some).map_err(|e| self.decode(format!("cursor {key}: {e}")))
    }

    async fn save_cursor(&self, key: &str, cursor: &Cursor) -> Result<(), StateError> {
        let json = serde_json::to_string(cursor).map_err(|e| self.decode(e.to_string()))?;
        let c = self.client().await?;
        c.put_item()
            .table_name(self.table())
            .item(PK, s(format!("{CURSOR_PREFIX}{key}")))
            .item("kind", s("cursor"))
            .item("key", s(key))
            .item("cursor", s(json))
            .item("updated_at", s(Utc::now().to_rfc3339()))
            .send()
            .await
            .map_err(|e| self.err("PutItem", e))?;
        Ok(())
    }

    async fn cursors(&self) -> Result<Vec<(String, Cursor)>, StateError> {
        let items = self.scan("#kind = :cursor", "#key, #cursor", HashMap::from([(":cursor".to_string(), s("cursor"))])).await?;
        let mut out = Vec::new();
        for it in &items {
            let (Some(k), Some(json)) = (text(it, "key"), text(it, "cursor")) else {
                return Err(self.decode("a cursor item without `key` or `cursor`"));
            };
            out.push((k.to_string(), serde_json::from_str(json).map_err(|e| self.decode(format!("cursor {k}: {e}")))?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn jobs(&self, arns: &[String]) -> Result<Vec<Option<JobState>>, StateError> {
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.client().await?;
        // BatchGetItem refuses duplicate keys.
        let mut seen = HashSet::new();
        let unique: Vec<&String> = arns.iter().filter(|a| seen.insert(a.as_str())).collect();
        let mut found: BTreeMap<String, JobState> = BTreeMap::new();
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let keys: Vec<HashMap<String, AttributeValue>> = chunk.iter().map(|a| HashMap::from([(PK.to_string(), job_key(a))])).collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .projection_expression("#pk, #entry")
                    .set_expression_attribute_names(Some(names(&["#pk, #entry"])))
                    .build()
                    .map_err(|e| self.decode(format!("BatchGetItem request: {e}")))?,
            );
            let mut round = 0u32;
            while let Some(ka) = pending.take() {
                if round > 0 {
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StateError::Backend {
                            location: self.loc(),
                            message: format!("BatchGetItem: keys still unprocessed after {UNPROCESSED_ROUNDS} retries (throttled)"),
                            retryable: true,
                        });
                    }
                    let backoff = Duration::from_millis((25u64 << round.min(7)).min(2_000));
                    tokio::time::sleep(backoff).await;
                }
                round += 1;
                let r = c.batch_get_item().request_items(self.table(), ka).send().await.map_err(|e| self.err("BatchGetItem", e))?;
                for item in r.responses.and_then(|mut m| m.remove(self.table())).unwrap_or_default() {
                    if let Some(e) = self.entry_of(&item)? {
                        found.insert(e.arn.clone(), e);
                    }
                }
                pending = r.unprocessed_keys.and_then(|mut m| m.remove(self.table())).filter(|k| !k.keys().is_empty());
            }
        }
        Ok(arns.iter().map(|a| found.get(a).cloned()).collect())
    }

    async fn acquire(&self, arn: &str, owner: &str, ttl: Duration) -> Result<Acquired, StateError> {
        let c = self.client().await?;
        for _ in 0..3 {
            let now = Utc::now();
            let expires_at = ttl_after(now, ttl);
            let gc = ttl_after(expires_at, LEASE_GC_GRACE).timestamp();
            let r = c
                .update_item()
                .table_name(self.table())
                .key(PK, job_key(arn))
                // A new item's fence starts from the clock (milliseconds), so that an item deleted by
                // TTL and taken again never hands out a fence it handed out before.
                .exprs("SET #lease_owner = :me, #lease_expires = :exp, #arn = :arn, #kind = :job, #fence = if_not_exists(#fence, :base) + :one, #lease_ttl = if_not_exists(#entry_ttl, :gc)", "attribute_not_exists(#lease_owner) OR #lease_expires < :now")
                .expression_attribute_values(":me", s(owner))
                .expression_attribute_values(":exp", n(millis(expires_at)))
                .expression_attribute_values(":now", n(millis(now)))
                .expression_attribute_values(":arn", s(arn))
                .expression_attribute_values(":job", s("job"))
                .expression_attribute_values(":base", n(millis(now)))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":gc", n(gc))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match r {
                Ok(out) => {
                    let item = out.attributes.unwrap_or_default();
                    let fence = num(&item, "fence").ok_or_else(|| self.decode(format!("job {arn}: no fence after acquire")))?;
                    let state = self.entry_of(&item)?.map(Box::new);
                    return Ok(Acquired::Granted {
                        lease: Lease { arn: arn.to_string(), owner: owner.to_string(), fence: fence as u64, expires_at },
                        state,
                    });
                }
                Err(e) if conditional_failed(&e) => {
                    // The holder comes with the failure (one request); else read it.
                    let old = match e.into_service_error() {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(x) => x.item,
                        _ => None,
                    };
                    let old = match old {
                        Some(i) => Some(i),
                        None => self.get_item(job_key(arn)).await?,
                    };
                    let holder = old.as_ref().and_then(|i| Some((text(i, "lease_owner")?.to_string(), num(i, "lease_expires")?)));
                    if let Some((owner, exp)) = holder {
                        if exp >= millis(Utc::now()) {
                            return Ok(Acquired::Held {
                                owner,
                                expires_at: DateTime::<Utc>::from_timestamp_millis(exp).unwrap_or_else(Utc::now),
                            });
                        }
                    }
                    // Released or lapsed since: try again.
                }
                Err(e) => return Err(self.err("UpdateItem", e)),
            }
        }
        Err(StateError::Backend {
            location: self.loc(),
            message: format!("job {arn}: its lease changed hands during three acquire attempts"),
            retryable: true,
        })
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError> {
        let c = self.client().await?;
        let expires_at = ttl_after(Utc::now(), ttl);
        let r = c
            .update_item()
            .table_name(self.table())
            .key(PK, job_key(&lease.arn))
            .exprs("SET #lease_expires = :exp, #lease_ttl = if_not_exists(#entry_ttl, :gc)", "#lease_owner = :me AND #fence = :f")
            .expression_attribute_values(":exp", n(millis(expires_at)))
            .expression_attribute_values(":gc", n(ttl_after(expires_at, LEASE_GC_GRACE).timestamp()))
            .expression_attribute_values(":me", s(&lease.owner))
            .expression_attribute_values(":f", n(lease.fence))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(self.err("UpdateItem", e)),
        }
    }

    async fn commit(&self, lease: &Lease, entry: &JobState) -> Result<bool, StateError> {
        self.write(lease, entry, true).await
    }

    async fn record(&self, lease: &Lease, entry: &JobState) -> Result<bool, StateError> {
        self.write(lease, entry, false).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StateError> {
        let c = self.client().await?;
        let r = c
            .update_item()
            .table_name(self.table())
            .key(PK, job_key(&lease.arn))
            .exprs("REMOVE #lease_owner, #lease_expires", "#lease_owner = :me AND #fence = :f")
            .expression_attribute_values(":me", s(&lease.owner))
            .expression_attribute_values(":f", n(lease.fence))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(self.err("UpdateItem", e)),
        }
    }

    async fn due(&self, now: Timestamp, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError> {
        self.failed_entries(after, limit, Some(now)).await
    }

    async fn failed(&self, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError> {
        self.failed_entries(after, limit, None).await
    }

    async fn unpark(&self, jobs: &[String]) -> Result<Vec<String>, StateError> {
        let c = self.client().await?;
        let mut out = Vec::new();
        for e in self.failed_entries(None, usize::MAX, None).await? {
            if !(jobs.is_empty() || jobs.iter().any(|j| j == &e.arn || j == &e.job)) {
                continue;
            }
            // Read-modify-write of the entry, conditional on its stored text being unchanged.
            // The text is compared as stored (an entry of the previous release re-serialises
            // differently), so it is read afresh rather than re-encoded.
            for attempt in 0.. {
                if attempt >= UNPARK_TRIES {
                    return Err(StateError::Backend {
                        location: self.loc(),
                        message: format!("job {}: its entry kept changing while it was unparked", e.arn),
                        retryable: true,
                    });
                }
                let Some(item) = self.get_item(job_key(&e.arn)).await? else { break };
                let Some(AttributeValue::S(old)) = item.get("entry").cloned() else { break };
                let Some(current) = self.entry_of(&item)? else { break };
                if current.outcome != Outcome::Failed {
                    // Recorded otherwise in the meantime: not a failed job any more.
                    break;
                }
                let mut next = current;
                next.parked = false;
                next.attempts = 0;
                next.permanent_failures = 0;
                next.next_attempt_at = None;
                let json = serde_json::to_string(&next).map_err(|x| self.decode(x.to_string()))?;
                let (set, remove, mut values) = entry_update(&next, json);
                values.insert(":old".into(), s(old));
                let update = if remove.is_empty() { format!("SET {set}") } else { format!("SET {set} REMOVE {}", remove.join(", ")) };
                let r = c
                    .update_item()
                    .table_name(self.table())
                    .key(PK, job_key(&next.arn))
                    .exprs(&update, "#entry = :old")
                    .set_expression_attribute_values(Some(values))
                    .send()
                    .await;
                match r {
                    Ok(_) => {
                        out.push(next.arn);
                        break;
                    }
                    Err(x) if conditional_failed(&x) => continue,
                    Err(x) => return Err(self.err("UpdateItem", x)),
                }
            }
        }
        Ok(out)
    }

    /// Counts by scanning the table: every item is read (eventually consistent, only the
    /// attributes counted), page by page at `scan_pages_per_second`, and nothing is kept but the
    /// counts. Only `sagesync status` and an opted-in daemon recount call it; it needs
    /// `dynamodb:Scan`.
    async fn counts(&self) -> Result<LedgerCounts, StateError> {
        let c = self.client().await?;
        let filter = "#kind = :job AND attribute_exists(#entry)";
        let projection = "#pk, #outcome, #parked, #attempts";
        let names = names(&[filter, projection]);
        let values = HashMap::from([(":job".to_string(), s("job"))]);
        let mut out = LedgerCounts::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        let pause = Duration::from_secs_f64(1.0 / self.settings.scan_pages_per_second.max(0.01));
        for page_no in 0..MAX_SCAN_PAGES {
            if page_no > 0 {
                tokio::time::sleep(pause).await;
            }
            let page = c
                .scan()
                .table_name(self.table())
                .filter_expression(filter)
                .projection_expression(projection)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Scan", e))?;
            for it in page.items() {
                let outcome = text(it, "outcome").and_then(Outcome::parse).unwrap_or(Outcome::Failed);
                // Items written before `attempts` was stored count as recorded failures.
                let attempts = num(it, "attempts").unwrap_or(1).max(0) as u32;
                let arn = text(it, PK).map(|k| k.strip_prefix(JOB_PREFIX).unwrap_or(k)).unwrap_or("");
                out.add_job(arn, CountClass::of(outcome, attempts), matches!(it.get("parked"), Some(AttributeValue::Bool(true))));
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
        Err(StateError::Backend {
            location: self.loc(),
            message: format!("Scan: more than {MAX_SCAN_PAGES} pages; the table is too large to count"),
            retryable: false,
        })
    }

    fn scans_to_count(&self) -> bool {
        true
    }
}
