//! The store itself: one DynamoDB table, one item per job and per cursor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, KeysAndAttributes, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use sagesync_core::{Acquired, CountClass, Cursor, JobState, Lease, LedgerCounts, Outcome, StateError, StateStore, Timestamp};

/// The partition key attribute (a string: `job#<arn>` or `cursor#<key>`).
pub const PK: &str = "pk";
/// The attribute DynamoDB's TTL is enabled on (epoch seconds). Only items that never held a
/// ledger entry (a lease taken on a job that was never recorded) carry a near value: the lease's
/// expiry plus [`LEASE_GC_GRACE`]. Items holding an entry carry [`NEVER`].
pub const TTL_ATTRIBUTE: &str = "lease_ttl";
/// How long after its lease lapsed an entry-less job item may be deleted by TTL.
pub const LEASE_GC_GRACE: Duration = Duration::from_secs(86_400);
/// The TTL value of items holding a ledger entry: 9999-12-31, never reached.
pub const NEVER: i64 = 253_402_300_799;

/// The sparse global secondary index of failed jobs: partition key `failed_pk` (set to
/// [`FAILED_PK_VALUE`] on failed jobs only), sort key `arn`. `due`, `failed` and `unpark` query it.
pub const FAILED_INDEX: &str = "failed-by-arn";
/// The value of `failed_pk` on failed jobs.
pub const FAILED_PK_VALUE: &str = "failed";

const JOB_PREFIX: &str = "job#";
const CURSOR_PREFIX: &str = "cursor#";
/// BatchGetItem's limit of keys per call.
const BATCH_GET_MAX: usize = 100;
/// Rounds of retrying BatchGetItem's unprocessed keys before giving up (retryable).
const UNPROCESSED_ROUNDS: u32 = 10;
/// Pages one scan may read before it is refused (10 000 pages of up to 1 MB).
const MAX_SCAN_PAGES: usize = 10_000;
/// Optimistic retries of unpark's read-modify-write of one entry.
const UNPARK_TRIES: usize = 5;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// The table.
    pub table: String,
    /// Region (else the standard chain).
    pub region: Option<String>,
    /// Endpoint override (`AWS_ENDPOINT_URL_DYNAMODB` also works).
    pub endpoint_url: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// Create the table (on-demand, TTL on [`TTL_ATTRIBUTE`]) when it does not exist.
    pub create_table: bool,
    /// Attempts per request, first included (SDK retries, standard mode).
    pub max_attempts: u32,
    /// First SDK retry backoff.
    pub initial_backoff: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt of a request.
    pub request_timeout: Duration,
    /// Pages a counting scan reads per second (`sagesync status`, a daemon's opted-in recount).
    pub scan_pages_per_second: f64,
}

impl DynamoSettings {
    /// Settings for `table` with the defaults of `[state] type = "dynamodb"`.
    pub fn new(table: impl Into<String>) -> Self {
        DynamoSettings {
            table: table.into(),
            region: None,
            endpoint_url: None,
            profile: None,
            create_table: false,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            scan_pages_per_second: 4.0,
        }
    }

    async fn client(&self) -> Client {
        use aws_config::retry::RetryConfig;
        let retry = RetryConfig::standard()
            .with_max_attempts(self.max_attempts.max(1))
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(Duration::from_secs(5));
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout.max(Duration::from_millis(100)))
            .operation_attempt_timeout(self.request_timeout.max(Duration::from_millis(100)))
            .operation_timeout((self.request_timeout + Duration::from_secs(5)).saturating_mul(self.max_attempts.max(1)))
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry).timeout_config(timeouts);
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_dynamodb::config::Builder::from(&shared);
        if let Some(e) = &self.endpoint_url {
            b = b.endpoint_url(e);
        }
        Client::from_conf(b.build())
    }
}

/// The DynamoDB store. The client is built, and the table checked (or created), on first use.
pub struct DynamoState {
    settings: DynamoSettings,
    client: tokio::sync::OnceCell<Client>,
}

const RETRYABLE_CODES: [&str; 10] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "LimitExceededException",
    "RequestTimeout",
];

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn job_key(arn: &str) -> AttributeValue {
    s(format!("{JOB_PREFIX}{arn}"))
}
fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}
fn ttl_after(now: Timestamp, ttl: Duration) -> Timestamp {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(36_500))
}

/// Whether a failed request is a conditional check failure (the lease is not ours).
fn conditional_failed<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
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

    fn loc(&self) -> String {
        format!("dynamodb table {}", self.settings.table)
    }

    fn table(&self) -> &str {
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

    fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(&self, op: &str, e: SdkError<E, HttpResponse>) -> StateError {
        let (retryable, message) = match &e {
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or("unknown error");
                let status = se.raw().status().as_u16();
                let retryable = status >= 500 || RETRYABLE_CODES.contains(&code);
                (retryable, format!("{op}: {code} (HTTP {status}): {}", se.err().message().unwrap_or("no message")))
            }
            SdkError::ConstructionFailure(_) => (false, format!("{op}: {}", DisplayErrorContext(&e))),
            // Timeouts, connection failures, unreadable responses.
            _ => (true, format!("{op}: {}", DisplayErrorContext(&e))),
        };
        if retryable {
            tracing::debug!(table = %self.settings.table, %message, "retryable DynamoDB failure");
        }
        if matches!(&e, SdkError::ServiceError(se) if se.err().code() == Some("ResourceNotFoundException")) {
            return StateError::Unusable {
                location: self.loc(),
                message: format!("{message}. Create the table (docs/state.md) or set [state] create_table = true"),
            };
        }
        StateError::Backend { location: self.loc(), message, retryable }
    }

    fn decode(&self, message: impl Into<String>) -> StateError {
        StateError::Decode { location: self.loc(), message: message.into() }
    }

    async fn ensure_table(&self, c: &Client) -> Result<(), StateError> {
        let unusable = |m: String| StateError::Unusable { location: self.loc(), message: m };
        let described = match c.describe_table().table_name(self.table()).send().await {
            Ok(d) => d.table,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => None,
            Err(e) => return Err(self.err("DescribeTable", e)),
        };
        let table = match described {
            Some(t) => t,
            None if self.settings.create_table => return self.create_table(c).await,
            None => {
                return Err(unusable(
                    "the table does not exist. Create it (see docs/state.md, or the SAM template), or set [state] create_table = true"
                        .into(),
                ))
            }
        };
        let keys: Vec<(String, String)> =
            table.key_schema().iter().map(|k| (k.attribute_name().to_string(), k.key_type().as_str().to_string())).collect();
        if keys != [(PK.to_string(), "HASH".to_string())] {
            return Err(unusable(format!("not a sagesync table: its key schema is {keys:?}, expected a single partition key `{PK}` (string). It was left untouched; point [state] table elsewhere")));
        }
        let pk_type =
            table.attribute_definitions().iter().find(|a| a.attribute_name() == PK).map(|a| a.attribute_type().as_str().to_string());
        if pk_type.as_deref() != Some("S") {
            return Err(unusable(format!("not a sagesync table: `{PK}` is of type {pk_type:?}, expected S. It was left untouched")));
        }
        if !table.global_secondary_indexes().iter().any(|g| g.index_name() == Some(FAILED_INDEX)) {
            return Err(unusable(format!("the table lacks the global secondary index `{FAILED_INDEX}` (partition key failed_pk, sort key arn, both strings) that failed jobs are read from; add it (docs/state.md) or let create_table make a new table")));
        }
        if table.table_status() == Some(&TableStatus::Creating) {
            self.wait_active(c).await?;
        }
        Ok(())
    }

    async fn create_table(&self, c: &Client) -> Result<(), StateError> {
        tracing::info!(table = %self.settings.table, "creating the DynamoDB state table (on-demand, TTL on {TTL_ATTRIBUTE})");
        let build = |e: aws_sdk_dynamodb::error::BuildError| StateError::Unusable {
            location: self.loc(),
            message: format!("CreateTable request: {e}"),
        };
        let created = c
            .create_table()
            .table_name(self.table())
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(KeySchemaElement::builder().attribute_name(PK).key_type(KeyType::Hash).build().map_err(build)?)
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name(PK).attribute_type(ScalarAttributeType::S).build().map_err(build)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name("failed_pk").attribute_type(ScalarAttributeType::S).build().map_err(build)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name("arn").attribute_type(ScalarAttributeType::S).build().map_err(build)?,
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(FAILED_INDEX)
                    .key_schema(KeySchemaElement::builder().attribute_name("failed_pk").key_type(KeyType::Hash).build().map_err(build)?)
                    .key_schema(KeySchemaElement::builder().attribute_name("arn").key_type(KeyType::Range).build().map_err(build)?)
                    // Only what `due` and `failed` read: lease traffic never writes to the index.
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .non_key_attributes("entry")
                            .non_key_attributes("parked")
                            .non_key_attributes("next_at")
                            .build(),
                    )
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another process is creating it at the same moment.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(self.err("CreateTable", e)),
        }
        self.wait_active(c).await?;
        let spec = TimeToLiveSpecification::builder().attribute_name(TTL_ATTRIBUTE).enabled(true).build().map_err(build)?;
        match c.update_time_to_live().table_name(self.table()).time_to_live_specification(spec).send().await {
            Ok(_) => Ok(()),
            // Already enabled (by the racing creator).
            Err(e) if e.code() == Some("ValidationException") && e.message().is_some_and(|m| m.contains("already")) => Ok(()),
            Err(e) => Err(self.err("UpdateTimeToLive", e)),
        }
    }

    /// Waits (the SDK's `TableExists` waiter, up to 300 s) until the table is ACTIVE.
    async fn wait_active(&self, c: &Client) -> Result<(), StateError> {
        use aws_sdk_dynamodb::client::Waiters;
        c.wait_until_table_exists().table_name(self.table()).wait(Duration::from_secs(300)).await.map_err(|e| StateError::Backend {
            location: self.loc(),
            message: format!("the table did not become ACTIVE: {}", DisplayErrorContext(&e)),
            retryable: true,
        })?;
        Ok(())
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
fn names(exprs: &[&str]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for e in exprs {
        let mut rest = *e;
        while let Some(i) = rest.find('#') {
            let tail = &rest[i + 1..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            if end > 0 {
                out.insert(format!("#{}", &tail[..end]), tail[..end].to_string());
            }
            rest = &tail[end..];
        }
    }
    out
}

/// Sets an UpdateItem's update and condition expressions with their attribute names.
trait Exprs {
    fn exprs(self, update: &str, condition: &str) -> Self;
}

impl Exprs for aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    fn exprs(self, update: &str, condition: &str) -> Self {
        self.update_expression(update).condition_expression(condition).set_expression_attribute_names(Some(names(&[update, condition])))
    }
}

fn item_name(item: &HashMap<String, AttributeValue>) -> String {
    match item.get(PK) {
        Some(AttributeValue::S(k)) => k.clone(),
        _ => "an item".into(),
    }
}

fn num(item: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    match item.get(k) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.as_str()),
        _ => None,
    }
}

/// The update of a job item that writes `e`: the SET clause, the attributes to REMOVE and the
/// values. Besides the entry itself it writes what the failed-jobs index and the scans read:
/// `outcome`, `parked`, `job`, `next_at` (only with a retry time) and `failed_pk` (only on
/// failed jobs, so the index holds failed jobs alone).
fn entry_update(e: &JobState, json: String) -> (String, Vec<&'static str>, HashMap<String, AttributeValue>) {
    let mut set = String::from(
        "#entry = :entry, #outcome = :outcome, #parked = :parked, #attempts = :attempts, #job = :name, #lease_ttl = :never, #entry_ttl = :never",
    );
    let mut remove = Vec::new();
    let mut values = HashMap::from([
        (":entry".to_string(), s(json)),
        (":outcome".to_string(), s(e.outcome.as_str())),
        (":parked".to_string(), AttributeValue::Bool(e.parked)),
        (":attempts".to_string(), n(e.attempts)),
        (":name".to_string(), s(e.job.clone())),
        (":never".to_string(), n(NEVER)),
    ]);
    match e.next_attempt_at {
        Some(t) => {
            set.push_str(", #next_at = :next");
            values.insert(":next".into(), n(millis(t)));
        }
        None => remove.push("#next_at"),
    }
    if e.outcome == Outcome::Failed {
        set.push_str(", #failed_pk = :failed_pk");
        values.insert(":failed_pk".into(), s(FAILED_PK_VALUE));
    } else {
        remove.push("#failed_pk");
    }
    (set, remove, values)
}

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
            // Read-modify-write of the entry, conditional on it being unchanged.
            let mut current = e;
            for attempt in 0.. {
                if attempt >= UNPARK_TRIES {
                    return Err(StateError::Backend {
                        location: self.loc(),
                        message: format!("job {}: its entry kept changing while it was unparked", current.arn),
                        retryable: true,
                    });
                }
                let old = serde_json::to_string(&current).map_err(|x| self.decode(x.to_string()))?;
                let mut next = current.clone();
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
                    Err(x) if conditional_failed(&x) => {
                        let item = self.get_item(job_key(&next.arn)).await?;
                        match item.as_ref().map(|i| self.entry_of(i)).transpose()?.flatten() {
                            Some(j) if j.outcome == Outcome::Failed => current = j,
                            // Recorded otherwise in the meantime: not a failed job any more.
                            _ => break,
                        }
                    }
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
        let projection = "#outcome, #parked, #attempts";
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
                out.add(CountClass::of(outcome, attempts), matches!(it.get("parked"), Some(AttributeValue::Bool(true))));
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
