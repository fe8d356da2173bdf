//! The `mlflow` sink: finds or creates the run of a job (by its ARN tag), diffs it against the
//! record and sends only what differs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use sagesync_core::{RunRecord, Sink, SinkReceipt, SyncError, WriteContext, WriteKind};
use serde_json::{json, Value};

use crate::client::{Budget, BuildError, Client, Kind, MlflowError};
use crate::config::{MlflowSettings, OnParamChange};
use crate::keys::{cut_chars, mlflow_key, MAX_TAG_VALUE_CHARS};
use crate::mapping::{
    desired, identity_tag, kind_of_arn, value_bits, Desired, MappingError, Point, ARN_TAG, HISTORY_DIGEST_TAG, HISTORY_PREFIX,
    PARAM_CHANGED_PREFIX,
};
use crate::registry;

/// Items of one `log-batch`, as the server limits them.
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_ITEMS: usize = 1000;
/// Stay under the documented 1 MB request limit, with room for JSON overhead.
const MAX_BATCH_BYTES: usize = 900_000;
/// Tags sent with `runs/create`.
const MAX_CREATE_TAGS: usize = 100;
/// Runs read per search page.
const SEARCH_PAGE: u32 = 100;
/// Points read per `metrics/get-history` page.
const HISTORY_PAGE: u32 = 25_000;
/// Items of a list a receipt names (the rest are counted).
const RECEIPT_CUT_VALUES: usize = 3;
/// Experiment ids per `runs/search` when a retract has to look everywhere.
const EXPERIMENTS_PER_SEARCH: usize = 100;

/// Why an upsert failed.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error(transparent)]
    Api(#[from] MlflowError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("{0}")]
    Content(String),
    #[error("{0}")]
    Retry(String),
    /// The store's state refuses the write (a deleted experiment): not the job's content.
    #[error("{0}")]
    Store(String),
}

/// The sink.
#[derive(Debug)]
pub struct MlflowSink {
    settings: MlflowSettings,
    client: Client,
    experiments: Mutex<HashMap<String, String>>,
}

/// The run being written.
struct Located {
    id: String,
    experiment_id: String,
    /// The run as the server returned it (`info`, `data`, `inputs`), or `None` right after a
    /// create that nobody raced (then it holds exactly the tags it was created with).
    run: Value,
    created: bool,
    adopted: bool,
    deleted: Vec<String>,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn i64_at(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(|x| x.as_i64().or_else(|| x.as_str().and_then(|s| s.parse().ok())))
}

fn kv_map(v: &Value, ptr: &str) -> BTreeMap<String, String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|kv| {
                    Some((kv.get("key")?.as_str()?.to_string(), kv.get("value").and_then(Value::as_str).unwrap_or_default().to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a write did: made the run or version, sent nothing, or updated it.
fn write_kind(created: bool, b: &Budget) -> WriteKind {
    if created {
        WriteKind::Created
    } else if b.writes() == 0 {
        WriteKind::Unchanged
    } else {
        WriteKind::Updated
    }
}

/// A model version's number (`version` is a string in MLflow's answers).
fn version_number(v: &Value) -> u64 {
    match v.get("version") {
        Some(Value::String(s)) => s.parse().unwrap_or(u64::MAX),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(u64::MAX),
        _ => u64::MAX,
    }
}

/// A model version's tag.
fn version_tag<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get("tags")?.as_array()?.iter().find(|t| t.get("key").and_then(Value::as_str) == Some(key))?.get("value")?.as_str()
}

fn tag_of<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run.pointer("/data/tags")?.as_array()?.iter().find(|t| t.get("key").and_then(Value::as_str) == Some(key))?.get("value")?.as_str()
}

/// MLflow's tag that nests a run under another.
const PARENT_TAG: &str = "mlflow.parentRunId";

/// Whether `run` is the run of the job `arn` whose ARN tag is `tag`: the tag holds `arn`, and a
/// parent's run is not one of its children's (which carry a training job's ARN as well).
fn is_run_of(run: &Value, tag: &str, arn: &str) -> bool {
    tag_of(run, tag) == Some(arn) && (tag == ARN_TAG || tag_of(run, ARN_TAG).is_none())
}

/// The order `settle` keeps runs of one job in: finished first, then the earliest start, then
/// the smallest run id.
fn settle_key(r: &Value) -> (bool, i64, String) {
    (
        matches!(str_at(r, "/info/status"), Some("RUNNING" | "SCHEDULED") | None),
        i64_at(r, "/info/start_time").unwrap_or(i64::MAX),
        str_at(r, "/info/run_id").unwrap_or_default().to_string(),
    )
}

fn is_active(run: &Value) -> bool {
    str_at(run, "/info/lifecycle_stage").is_none_or(|s| s == "active")
}

/// Whether a write failed because the run was deleted meanwhile (a concurrent writer settled
/// a create race against us).
fn is_inactive_run(e: &MlflowError) -> bool {
    matches!(e, MlflowError::Status { status: 400, message, .. } if message.contains("active"))
}

/// Whether a write collided with a concurrent writer's identical write inside the server (a
/// SQL store checks, then inserts: two writers of one param both pass the check and one insert
/// fails with a unique-constraint error).
fn is_concurrent_write(e: &MlflowError) -> bool {
    matches!(e, MlflowError::Status { status: 400, message, .. } if message.contains("UNIQUE constraint") || message.contains("IntegrityError") || message.contains("Duplicate entry"))
}

/// MLflow returns metric values as numbers, or `"NaN"`-style strings.
fn metric_value(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(sagesync_core::model::metric_value::parse))
}

impl MlflowSink {
    /// A sink with these settings. Makes no connection and loads no credentials.
    pub fn new(settings: MlflowSettings) -> Result<Self, BuildError> {
        let client = Client::new(&settings)?;
        Ok(MlflowSink { settings, client, experiments: Mutex::new(HashMap::new()) })
    }

    /// The REST client (to swap the SigV4 signer's credentials, for instance).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The experiment's id, from the cache, or got or created (safely under races: a
    /// `RESOURCE_ALREADY_EXISTS` on create means another writer won, so read it again).
    async fn experiment_id(&self, name: &str, b: &Budget) -> Result<String, SinkError> {
        if let Some(id) = self.experiments.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(id);
        }
        let mut id = None;
        for _ in 0..2 {
            match self.client.get("experiments/get-by-name", &[("experiment_name", name)], b).await {
                Ok(v) => {
                    if str_at(&v, "/experiment/lifecycle_stage") == Some("deleted") {
                        // The store's state, not the job's: the job is tried again after its
                        // backoff and resumes by itself once the experiment is restored.
                        return Err(SinkError::Store(format!(
                            "experiment `{name}` is deleted in MLflow; restore it, or purge it, or change `experiment`"
                        )));
                    }
                    id = str_at(&v, "/experiment/experiment_id").map(str::to_string);
                    if id.is_none() {
                        return Err(MlflowError::Decode { op: "experiments/get-by-name", message: "no experiment_id".into() }.into());
                    }
                    break;
                }
                Err(e) if e.is_absent() => {}
                Err(e) => return Err(e.into()),
            }
            let body = json!({"name": name, "tags": [{"key": "sagesync.created_by", "value": "sagesync"}]});
            match self.client.post("experiments/create", &body, Kind::Create, b).await {
                Ok(v) => {
                    id = str_at(&v, "/experiment_id").map(str::to_string);
                    break;
                }
                Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let id = id.ok_or_else(|| SinkError::Retry(format!("experiment `{name}` neither found nor created")))?;
        if let Ok(mut m) = self.experiments.lock() {
            m.insert(name.to_string(), id.clone());
        }
        Ok(id)
    }

    fn forget_experiment(&self, name: &str) {
        if let Ok(mut m) = self.experiments.lock() {
            m.remove(name);
        }
    }

    async fn get_run(&self, run_id: &str, b: &Budget) -> Result<Option<Value>, MlflowError> {
        match self.client.get("runs/get", &[("run_id", run_id)], b).await {
            Ok(v) => Ok(v.get("run").cloned().filter(is_active)),
            Err(e) if e.is_absent() || e.error_code() == Some("INVALID_PARAMETER_VALUE") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Active runs of the job `arn` in these experiments: those carrying its ARN under `tag`
    /// (its kind's, see [`identity_tag`]), and (a parent's) not a child's, which carries the
    /// parent's ARN too.
    async fn search(&self, experiment_ids: &[String], tag: &str, arn: &str, b: &Budget) -> Result<Vec<Value>, MlflowError> {
        let runs = self.search_tag(experiment_ids, tag, arn, b).await?;
        Ok(runs.into_iter().filter(|r| is_run_of(r, tag, arn)).collect())
    }

    /// Active runs whose tag `tag` is `value`, in these experiments.
    async fn search_tag(&self, experiment_ids: &[String], tag: &str, value: &str, b: &Budget) -> Result<Vec<Value>, MlflowError> {
        let body = json!({
            "experiment_ids": experiment_ids,
            "filter": format!("tags.`{tag}` = '{value}'"),
            "run_view_type": "ACTIVE_ONLY",
            "max_results": SEARCH_PAGE,
        });
        self.paged("runs/search", body, "runs", b).await
    }

    /// Nests runs under their parents, whichever came first: a child's run gets
    /// `mlflow.parentRunId` when its parent's run is there, and a parent's run, after its write,
    /// gives it to every child's run of its experiment that lacks it. Each side writes its run
    /// before it looks for the other, so when two write at once, at least one finds the other.
    async fn link(&self, d: &Desired, at: &Located, b: &Budget) -> Result<(), MlflowError> {
        let exp = [at.experiment_id.clone()];
        if let Some((tag, parent_arn)) = &d.parent {
            let parents = self.search_tag(&exp, tag, parent_arn, b).await?;
            // The run `settle` keeps, should there be more than one.
            let Some(parent) = parents.iter().filter(|r| is_run_of(r, tag, parent_arn)).min_by_key(|r| settle_key(r)) else {
                return Ok(());
            };
            let pid = str_at(parent, "/info/run_id").unwrap_or_default();
            if tag_of(&at.run, PARENT_TAG) != Some(pid) && !pid.is_empty() {
                self.set_tag(&at.id, PARENT_TAG, pid, b).await?;
            }
        }
        if d.id_tag != ARN_TAG {
            for child in self.search_tag(&exp, d.id_tag, &d.arn, b).await? {
                let Some(cid) = str_at(&child, "/info/run_id") else { continue };
                if tag_of(&child, ARN_TAG).is_some() && tag_of(&child, PARENT_TAG) != Some(at.id.as_str()) {
                    self.set_tag(cid, PARENT_TAG, &at.id, b).await?;
                }
            }
        }
        Ok(())
    }

    async fn set_tag(&self, run_id: &str, key: &str, value: &str, b: &Budget) -> Result<(), MlflowError> {
        match self.client.post("runs/set-tag", &json!({"run_id": run_id, "key": key, "value": value}), Kind::IdempotentWrite, b).await {
            Ok(_) => Ok(()),
            // A child's run deleted meanwhile (a duplicate settled): nothing to nest.
            Err(e) if is_inactive_run(&e) || e.is_absent() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every item of `list` over the pages of a search (`page_token` / `next_page_token`).
    async fn paged(&self, op: &'static str, mut body: Value, list: &str, b: &Budget) -> Result<Vec<Value>, MlflowError> {
        let mut items = Vec::new();
        loop {
            let v = self.client.post(op, &body, Kind::Read, b).await?;
            items.extend(v.get(list).and_then(Value::as_array).cloned().unwrap_or_default());
            match v.get("next_page_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                Some(t) => body["page_token"] = json!(t),
                None => return Ok(items),
            }
        }
    }

    /// Deletes runs (soft delete); a run already gone is not an error.
    async fn delete_runs(&self, ids: &[String], b: &Budget) -> Result<(), MlflowError> {
        for id in ids {
            match self.client.post("runs/delete", &json!({"run_id": id}), Kind::IdempotentWrite, b).await {
                Ok(_) => {
                    tracing::info!(run_id = %id, "deleted a duplicate or superseded MLflow run")
                }
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::warn!(run_id = %id, error = %e, "could not delete an MLflow run")
                }
            }
        }
        Ok(())
    }

    /// The winner among runs of one job: a finished run (`FINISHED`, `FAILED`, `KILLED`) before
    /// one still being written, then the earliest start time, then the smallest run id; every
    /// writer that sees the same runs picks the same one. The others are deleted (whoever
    /// created them: a writer still writing into a loser fails on its next write and finds the
    /// winner).
    async fn settle(&self, mut runs: Vec<Value>, b: &Budget) -> Result<(Value, Vec<String>), MlflowError> {
        runs.sort_by_key(settle_key);
        let mut it = runs.into_iter();
        let winner = it.next().unwrap_or(Value::Null);
        let losers: Vec<String> = it.filter_map(|r| str_at(&r, "/info/run_id").map(str::to_string)).collect();
        if !losers.is_empty() {
            tracing::warn!(winner = str_at(&winner, "/info/run_id").unwrap_or_default(), losers = ?losers, "more than one MLflow run for one job; keeping the earliest");
            self.delete_runs(&losers, b).await?;
        }
        Ok((winner, losers))
    }

    async fn locate(
        &self,
        d: &Desired,
        experiment_id: &str,
        cx: &WriteContext,
        use_previous: bool,
        b: &Budget,
    ) -> Result<Located, SinkError> {
        let found = |run: Value, adopted: bool| Located {
            id: str_at(&run, "/info/run_id").unwrap_or_default().to_string(),
            experiment_id: str_at(&run, "/info/experiment_id").unwrap_or(experiment_id).to_string(),
            run,
            created: false,
            adopted,
            deleted: vec![],
        };
        if self.settings.adopt_native_runs {
            if let Some(native) = &d.native_run_id {
                match self.get_run(native, b).await? {
                    Some(run) => return Ok(found(run, true)),
                    None => {
                        tracing::warn!(run_id = %native, "the job's native MLflow run is not on this server; syncing into a run of its own")
                    }
                }
            }
        }
        let prev = cx.previous.as_ref().filter(|_| use_previous);
        if let (Some(run_id), Some(prev_exp)) = (prev.and_then(|p| p.ids.get("run_id")), prev.and_then(|p| p.ids.get("experiment_id"))) {
            if prev_exp == experiment_id && prev.and_then(|p| p.ids.get("adopted")).is_none() {
                if let Some(run) = self.get_run(run_id, b).await? {
                    if is_run_of(&run, d.id_tag, &d.arn) {
                        return Ok(found(run, false));
                    }
                }
            }
        }
        // The first write the ledger knows of goes straight to the create: the search after it
        // finds any run that was there already (a crash before the ledger row, another tool)
        // and settles the two, so a new job costs one search, not two. A second look (after
        // losing a race) searches first.
        if !(cx.first_write && use_previous) {
            let runs = self.search(&[experiment_id.to_string()], d.id_tag, &d.arn, b).await?;
            if !runs.is_empty() {
                let (winner, deleted) = self.settle(runs, b).await?;
                return Ok(Located { deleted, ..found(winner, false) });
            }
        }
        // Create, with as many tags as one request takes (the ARN tag first).
        let tags: Vec<Value> = d.tags.iter().take(MAX_CREATE_TAGS).map(|(k, v)| json!({"key": k, "value": v})).collect();
        let mut body = json!({"experiment_id": experiment_id, "run_name": d.run_name, "tags": tags});
        if let Some(t) = d.start_ms {
            body["start_time"] = json!(t);
        }
        let created = match self.client.post("runs/create", &body, Kind::Create, b).await {
            Ok(v) => v,
            Err(e) if e.is_absent() || e.error_code() == Some("INVALID_STATE") => {
                self.forget_experiment(&d.experiment);
                return Err(SinkError::Retry(format!("experiment `{}` vanished while creating the run: {e}", d.experiment)));
            }
            Err(e) => return Err(e.into()),
        };
        let mine = str_at(&created, "/run/info/run_id")
            .ok_or_else(|| MlflowError::Decode { op: "runs/create", message: "no run.info.run_id".into() })?
            .to_string();
        // Catch a concurrent create of the same job, or (first writes) a run made earlier.
        let runs = self.search(&[experiment_id.to_string()], d.id_tag, &d.arn, b).await?;
        if runs.len() <= 1 {
            let run = created.get("run").cloned().unwrap_or(Value::Null);
            return Ok(Located { created: true, ..found(run, false) });
        }
        let (winner, deleted) = self.settle(runs, b).await?;
        let won = str_at(&winner, "/info/run_id") == Some(mine.as_str());
        Ok(Located { created: won, deleted, ..found(winner, false) })
    }

    /// Sends what the run lacks; returns what was reported along the way.
    async fn reconcile(&self, d: &Desired, at: &Located, b: &Budget) -> Result<Notes, SinkError> {
        let run = &at.run;
        let mut notes = Notes::default();
        let stored_params = kv_map(run, "/data/params");
        let stored_tags = kv_map(run, "/data/tags");

        let mut params = Vec::new();
        let mut extra_tags: Vec<(String, String)> = Vec::new();
        for (k, v) in &d.params {
            match stored_params.get(k) {
                None => params.push((k.clone(), v.clone())),
                Some(s) if s == v => {}
                Some(s) => match self.settings.on_param_change {
                    OnParamChange::Fail => {
                        return Err(SinkError::Content(format!("param `{k}` is logged as `{}` but the job now says `{}`; MLflow cannot change a logged param (on_param_change = \"fail\")", cut_chars(s, 80).0, cut_chars(v, 80).0)));
                    }
                    OnParamChange::Tag => {
                        tracing::warn!(run_id = %at.id, param = %k, "hyperparameter changed; keeping the logged param, new value in a tag");
                        notes.param_changes += 1;
                        extra_tags.push((mlflow_key(&format!("{PARAM_CHANGED_PREFIX}.{k}")), cut_chars(v, MAX_TAG_VALUE_CHARS).0));
                    }
                },
            }
        }
        // A key whose run already holds another kind of series (CloudWatch's by time, another
        // statistic) keeps it: MLflow cannot delete points, and two kinds under one key would be
        // one curve of mixed points. A run written before series said their kind is taken to
        // hold CloudWatch's one-minute points, the default period then.
        let mut kept_series: BTreeSet<String> = BTreeSet::new();
        if !at.created {
            for (key, kind) in &d.history_kinds {
                let tag = d.history_tags.get(key).cloned().unwrap_or_else(|| format!("{HISTORY_PREFIX}.{key}"));
                let stored = stored_tags.get(&tag).map(|l| l.split(';').next().unwrap_or_default().to_string());
                let other = match stored {
                    Some(k) => k != *kind,
                    None => stored_tags.contains_key(HISTORY_DIGEST_TAG) && !kind.starts_with(LEGACY_HISTORY_KIND),
                };
                if other {
                    tracing::warn!(run_id = %at.id, key = %key, kind = %kind, "the run holds another kind of series under this key; keeping it");
                    kept_series.insert(key.clone());
                }
            }
        }
        let mut tags: Vec<(String, String)> = d
            .tags
            .iter()
            .chain(extra_tags.iter())
            .filter(|(k, v)| stored_tags.get(k) != Some(v))
            .filter(|(k, _)| !kept_series.iter().any(|key| d.history_tags.get(key) == Some(k)))
            .cloned()
            .collect();
        tags.dedup_by(|a, b| a.0 == b.0);
        notes.kept_series = kept_series.len() as u32;

        // Final metrics: the run's latest value per key says whether ours is there.
        let latest: BTreeMap<String, (i64, i64, u64)> = run
            .pointer("/data/metrics")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| {
                        Some((
                            m.get("key")?.as_str()?.to_string(),
                            (i64_at(m, "/timestamp")?, i64_at(m, "/step").unwrap_or(0), value_bits(metric_value(m.get("value")?)?)),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut metrics: Vec<Point> = d.metrics.iter().filter(|p| latest.get(&p.key) != Some(&p.identity())).cloned().collect();
        // A key whose run keeps another kind of series gets its final value as before the
        // series by iteration: after the run's own series, once.
        for key in &kept_series {
            let Some(fin) = d.held_finals.get(key) else { continue };
            let have = self.history(&at.id, key, b).await?;
            if have.iter().any(|(ts, _, bits)| *ts == fin.timestamp && *bits == value_bits(fin.value)) {
                continue;
            }
            let step = have.iter().map(|(_, s, _)| *s).max().map_or(0, |s| s + 1);
            metrics.push(Point { step, ..fin.clone() });
        }
        let history_due = !d.history_digest.is_empty() && stored_tags.get(HISTORY_DIGEST_TAG) != Some(&d.history_digest);
        if history_due {
            for (key, points) in d.history.iter().filter(|(k, _)| !kept_series.contains(k)) {
                let have = if at.created { BTreeSet::new() } else { self.history(&at.id, key, b).await? };
                // A point by iteration number is there when its step and value are, whatever
                // time it was stamped with.
                let by_step: BTreeSet<(i64, u64)> = have.iter().map(|(_, step, bits)| (*step, *bits)).collect();
                metrics.extend(
                    points
                        .iter()
                        .filter(
                            |p| if p.timeless { !by_step.contains(&(p.step, value_bits(p.value))) } else { !have.contains(&p.identity()) },
                        )
                        .cloned(),
                );
            }
        }
        let batches = batches(&params, &tags, &metrics, history_due.then_some(d.history_digest.as_str()));
        for batch in batches {
            let mut body = batch;
            body["run_id"] = json!(at.id);
            self.client.post("runs/log-batch", &body, Kind::IdempotentWrite, b).await?;
        }

        // Dataset inputs, by (name, digest).
        let stored_inputs: BTreeSet<(String, String)> = run
            .pointer("/inputs/dataset_inputs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|i| Some((str_at(i, "/dataset/name")?.to_string(), str_at(i, "/dataset/digest")?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let inputs: Vec<Value> =
            d.inputs.iter().filter(|i| !stored_inputs.contains(&(i.name.clone(), i.digest.clone()))).map(|i| i.json()).collect();
        for chunk in inputs.chunks(100) {
            self.client.post("runs/log-inputs", &json!({"run_id": at.id, "datasets": chunk}), Kind::IdempotentWrite, b).await?;
        }

        // Status, end time and name last: a FINISHED run is a complete one.
        let mut update = serde_json::Map::new();
        if str_at(run, "/info/status").unwrap_or("RUNNING") != d.status {
            update.insert("status".into(), json!(d.status));
        }
        if let Some(end) = d.end_ms {
            if i64_at(run, "/info/end_time") != Some(end) {
                update.insert("end_time".into(), json!(end));
                update.insert("status".into(), json!(d.status));
            }
        }
        if !at.adopted && str_at(run, "/info/run_name").is_some_and(|n| n != d.run_name) {
            update.insert("run_name".into(), json!(d.run_name));
        }
        if !update.is_empty() {
            update.insert("run_id".into(), json!(at.id));
            self.client.post("runs/update", &Value::Object(update), Kind::IdempotentWrite, b).await?;
        }
        Ok(notes)
    }

    /// The points already logged for `key`.
    async fn history(&self, run_id: &str, key: &str, b: &Budget) -> Result<BTreeSet<(i64, i64, u64)>, MlflowError> {
        let mut have = BTreeSet::new();
        let mut token = String::new();
        let page = HISTORY_PAGE.to_string();
        loop {
            let mut q = vec![("run_id", run_id), ("metric_key", key), ("max_results", page.as_str())];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let v = self.client.get("metrics/get-history", &q, b).await?;
            for m in v.get("metrics").and_then(Value::as_array).into_iter().flatten() {
                if let (Some(ts), Some(val)) = (i64_at(m, "/timestamp"), m.get("value").and_then(metric_value)) {
                    have.insert((ts, i64_at(m, "/step").unwrap_or(0), value_bits(val)));
                }
            }
            token = v.get("next_page_token").and_then(Value::as_str).unwrap_or_default().to_string();
            if token.is_empty() {
                return Ok(have);
            }
        }
    }

    async fn upsert_inner(&self, r: &RunRecord, cx: &WriteContext, b: &Budget) -> Result<SinkReceipt, SinkError> {
        if r.lineage.kind == sagesync_core::ResourceKind::ModelPackage {
            return self.upsert_package(r, cx, b).await;
        }
        let d = desired(r, &self.settings)?;
        let digest = d.digest(&self.settings);
        if let Some(prev) = &cx.previous {
            if prev.ids.get("digest") == Some(&digest) && prev.ids.contains_key("run_id") {
                let mut rc = prev.clone();
                rc.write = WriteKind::Unchanged;
                rc.writes = 0;
                return Ok(rc);
            }
        }
        for cut in d.cut_values.iter().take(RECEIPT_CUT_VALUES) {
            tracing::warn!(job = %d.run_name, value = %cut, "value longer than MLflow stores; the first part is logged and the full length and hash are in a sagesync.truncated.* tag");
        }
        if d.cut_values.len() > RECEIPT_CUT_VALUES {
            tracing::warn!(job = %d.run_name, more = d.cut_values.len() - RECEIPT_CUT_VALUES, "more values longer than MLflow stores");
        }
        let experiment_id = self.experiment_id(&d.experiment, b).await?;
        let mut use_previous = true;
        let mut round = 0;
        let mut created = false;
        loop {
            round += 1;
            let at = self.locate(&d, &experiment_id, cx, use_previous, b).await?;
            created |= at.created;
            let reconciled = match self.reconcile(&d, &at, b).await {
                Ok(notes) => self.link(&d, &at, b).await.map(|()| notes).map_err(SinkError::from),
                Err(e) => Err(e),
            };
            match reconciled {
                Ok(notes) => {
                    // A run this write created may have lost a race it could not see (the
                    // other writer's create came after this one's search, and that writer
                    // settled on its own run): read once more, and if it is gone, the winner is
                    // found and written, so that both writers report one run.
                    if at.created && round < 3 {
                        let gone = match self.get_run(&at.id, b).await {
                            Ok(run) => run.is_none(),
                            // A run too large to read back (thousands of long params): its
                            // writes went through; nothing says it lost a race.
                            Err(MlflowError::TooLarge { .. }) => false,
                            Err(e) => return Err(e.into()),
                        };
                        if gone {
                            tracing::info!(run_id = %at.id, "the run this write created was settled away by a concurrent writer; finding the winner");
                            use_previous = false;
                            continue;
                        }
                    }
                    let mut deleted = at.deleted.clone();
                    // The job moved to another experiment: its old run goes.
                    if let Some(prev) = &cx.previous {
                        if let (Some(old_run), Some(old_exp)) = (prev.ids.get("run_id"), prev.ids.get("experiment_id")) {
                            if *old_exp != at.experiment_id && *old_run != at.id && !prev.ids.contains_key("adopted") {
                                self.delete_runs(std::slice::from_ref(old_run), b).await?;
                                deleted.push(old_run.clone());
                            }
                        }
                    }
                    let mut rc = SinkReceipt::new(write_kind(created, b))
                        .id("experiment_id", &at.experiment_id)
                        .id("run_id", &at.id)
                        .id("digest", &digest);
                    if at.adopted {
                        rc = rc.id("adopted", "true");
                    }
                    if !d.cut_values.is_empty() {
                        // A receipt holds counts, not lists that grow with the job: the first
                        // few, and how many in all (every one is in its sagesync.truncated.* tag).
                        let mut listed = d.cut_values.iter().take(RECEIPT_CUT_VALUES).cloned().collect::<Vec<_>>().join("; ");
                        if d.cut_values.len() > RECEIPT_CUT_VALUES {
                            listed.push_str(&format!("; and {} more", d.cut_values.len() - RECEIPT_CUT_VALUES));
                        }
                        rc = rc.id("cut_values", listed).id("cut_value_count", d.cut_values.len());
                    }
                    if notes.param_changes > 0 {
                        rc = rc.id("param_changes", notes.param_changes);
                    }
                    if notes.kept_series > 0 {
                        rc = rc.id("kept_series", notes.kept_series);
                    }
                    if !deleted.is_empty() {
                        rc = rc.id("deleted_runs", deleted.iter().take(RECEIPT_CUT_VALUES).cloned().collect::<Vec<_>>().join(","));
                        if deleted.len() > RECEIPT_CUT_VALUES {
                            rc = rc.id("deleted_run_count", deleted.len());
                        }
                    }
                    return Ok(rc);
                }
                Err(SinkError::Api(e)) if is_concurrent_write(&e) && round < 3 => {
                    tracing::info!(run_id = %at.id, "a concurrent writer wrote the same values; reading the run again");
                    use_previous = false;
                }
                Err(SinkError::Api(e)) if is_inactive_run(&e) && round < 3 => {
                    tracing::info!(run_id = %at.id, "the run was deleted while writing (a concurrent create was settled); finding the winner");
                    use_previous = false;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A model package as a model version of the registered model of its group, linked to the
    /// run of its training job (docs/mapping.md, "Model packages").
    async fn upsert_package(&self, r: &RunRecord, cx: &WriteContext, b: &Budget) -> Result<SinkReceipt, SinkError> {
        let Some(p) = r.lineage.package.as_ref() else {
            return Err(SinkError::Content("a model package's record without its package".into()));
        };
        let d = registry::desired_version(r, p);
        if d.source.is_empty() {
            return Err(SinkError::Content(
                "the model package has no model data URL (InferenceSpecification): MLflow's version needs a source".into(),
            ));
        }
        if !registry::filter_safe(&d.model) || !registry::filter_safe(&d.arn) {
            return Err(SinkError::Content(format!(
                "model package {}: its group or ARN holds characters a registry search cannot quote",
                d.arn
            )));
        }
        let prev = cx.previous.as_ref();
        // The run of the training job, by its ARN tag: found once, it stays the version's.
        let run_id = match (&d.training_job_arn, prev.and_then(|p| p.ids.get("run_id"))) {
            (Some(_), Some(known)) => Some(known.clone()),
            (Some(job), None) => self.run_of_job(job, b).await?,
            (None, _) => None,
        };
        if let (Some(job), None) = (&d.training_job_arn, &run_id) {
            // Measured from the package's creation; a package without one does not wait.
            if r.started_within(self.settings.package_link_wait) && prev.is_none_or(|p| !p.ids.contains_key("version")) {
                // MLflow cannot change a version's run later: wait for the job's run.
                return Err(SinkError::Retry(format!(
                    "model package {}: its training job {job} has no run here yet; the version waits for it (up to package_link_wait_secs)",
                    d.arn
                )));
            }
            tracing::warn!(package = %d.arn, job = %job, "the training job's run did not come within package_link_wait_secs; the version is written unlinked, the job's ARN in its tags");
        }
        let digest = d.digest(run_id.as_deref());
        if let Some(prev) = prev {
            if prev.ids.get("digest") == Some(&digest) && prev.ids.contains_key("version") {
                let mut rc = prev.clone();
                rc.write = WriteKind::Unchanged;
                rc.writes = 0;
                return Ok(rc);
            }
        }
        self.ensure_registered_model(&d, b).await?;
        let mut created = false;
        let version = match self.versions_of(&d.arn, Some(&d.model), b).await?.into_iter().min_by_key(version_number) {
            Some(v) => v,
            None => {
                let mut body = json!({
                    "name": d.model,
                    "source": d.source,
                    "description": d.description,
                    "tags": d.tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                });
                if let Some(run) = &run_id {
                    body["run_id"] = json!(run);
                }
                let made = self.client.post("model-versions/create", &body, Kind::Create, b).await?;
                let mine = made.get("model_version").map(version_number);
                // Another writer (a lost ledger, a second process) may have made one too: the
                // lowest version stays, the others go.
                let mut all = self.versions_of(&d.arn, Some(&d.model), b).await?;
                all.sort_by_key(version_number);
                for extra in all.iter().skip(1) {
                    let n = version_number(extra).to_string();
                    match self.client.delete("model-versions/delete", &json!({"name": d.model, "version": n}), b).await {
                        Ok(_) => tracing::info!(model = %d.model, version = %n, "deleted a duplicate model version"),
                        Err(e) if e.is_retryable() => return Err(e.into()),
                        Err(e) => tracing::warn!(model = %d.model, version = %n, error = %e, "could not delete a duplicate model version"),
                    }
                }
                let kept = all
                    .into_iter()
                    .next()
                    .ok_or_else(|| SinkError::Retry(format!("model version of {} not found after its create", d.arn)))?;
                // Ours only when the version kept is the one this write made; another's is
                // brought up to date below like any found version.
                created = mine == Some(version_number(&kept));
                kept
            }
        };
        let number = version_number(&version).to_string();
        if !created {
            for (k, v) in &d.tags {
                if version_tag(&version, k) != Some(v.as_str()) {
                    let body = json!({"name": d.model, "version": number, "key": k, "value": v});
                    self.client.post("model-versions/set-tag", &body, Kind::IdempotentWrite, b).await?;
                }
            }
            if str_at(&version, "/description").unwrap_or("") != d.description {
                let body = json!({"name": d.model, "version": number, "description": d.description});
                self.client.patch("model-versions/update", &body, b).await?;
            }
        }
        self.settle_alias(&d.model, b).await?;
        let mut rc = SinkReceipt::new(write_kind(created, b)).id("registered_model", &d.model).id("version", &number).id("digest", &digest);
        // The run the version is linked to, as MLflow holds it.
        if let Some(run) = str_at(&version, "/run_id").filter(|r| !r.is_empty()).map(str::to_string).or(if created { run_id } else { None })
        {
            rc = rc.id("run_id", run);
        }
        Ok(rc)
    }

    /// Points the `approved` alias of `model` at its newest approved package (by the package's
    /// version in SageMaker), or removes it when none is approved: the result of the registry's
    /// state, whatever order writers came in.
    async fn settle_alias(&self, model: &str, b: &Budget) -> Result<(), SinkError> {
        let filter = format!("name='{model}' AND tags.`{}` = 'Approved'", registry::APPROVAL_TAG);
        // Read again after a refusal: two writers at once (a duplicate version deleted
        // meanwhile, the alias set by the other) settle on the registry's state.
        for _ in 0..3 {
            let approved = self.search_versions(&filter, b).await?;
            let newest = approved
                .iter()
                .max_by_key(|v| (version_tag(v, "sagemaker.model_package_version").and_then(|x| x.parse::<u64>().ok()), version_number(v)))
                .map(|v| version_number(v).to_string());
            let held = self.client.get("registered-models/get", &[("name", model)], b).await?;
            let holder = held
                .pointer("/registered_model/aliases")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| str_at(x, "/alias") == Some(registry::APPROVED_ALIAS)))
                .and_then(|x| str_at(x, "/version").map(str::to_string));
            let sent = match (newest, holder) {
                (Some(n), h) if h.as_deref() != Some(n.as_str()) => {
                    let body = json!({"name": model, "alias": registry::APPROVED_ALIAS, "version": n});
                    self.client.post("registered-models/alias", &body, Kind::IdempotentWrite, b).await
                }
                (None, Some(_)) => {
                    self.client.delete("registered-models/alias", &json!({"name": model, "alias": registry::APPROVED_ALIAS}), b).await
                }
                _ => return Ok(()),
            };
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if e.status() == Some(400) || e.is_absent() => {
                    tracing::info!(model, error = %e, "the approved alias changed under a concurrent writer; reading it again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(SinkError::Retry(format!("registered model {model}: the `approved` alias keeps changing under concurrent writers")))
    }

    /// The registered model of `d`, created when missing (with the group's tag).
    async fn ensure_registered_model(&self, d: &registry::DesiredVersion, b: &Budget) -> Result<(), MlflowError> {
        match self.client.get("registered-models/get", &[("name", &d.model)], b).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_absent() => {}
            Err(e) => return Err(e),
        }
        let body = json!({"name": d.model, "tags": [{"key": "sagemaker.model_package_group", "value": d.model}]});
        match self.client.post("registered-models/create", &body, Kind::Create, b).await {
            // Another writer may have made it meanwhile.
            Ok(_) => Ok(()),
            Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The model versions holding the package `arn` (by its tag, searched on the server), in
    /// `model` or in any registered model.
    async fn versions_of(&self, arn: &str, model: Option<&str>, b: &Budget) -> Result<Vec<Value>, MlflowError> {
        let by_tag = format!("tags.`{}` = '{arn}'", registry::PACKAGE_TAG);
        let filter = match model {
            Some(m) => format!("name='{m}' AND {by_tag}"),
            None => by_tag,
        };
        let found = self.search_versions(&filter, b).await?;
        Ok(found.into_iter().filter(|v| version_tag(v, registry::PACKAGE_TAG) == Some(arn)).collect())
    }

    /// Every model version `filter` selects (a few pages at most: a page short of the end is a
    /// retryable failure, never taken as "not there").
    async fn search_versions(&self, filter: &str, b: &Budget) -> Result<Vec<Value>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10 {
            let mut q: Vec<(&str, &str)> = vec![("filter", filter), ("max_results", "200")];
            if let Some(t) = &token {
                q.push(("page_token", t.as_str()));
            }
            let v = self.client.get("model-versions/search", &q, b).await?;
            out.extend(v.get("model_versions").and_then(Value::as_array).cloned().unwrap_or_default());
            match v.get("next_page_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
        Err(MlflowError::Request { op: "model-versions/search", message: format!("more than 2000 model versions match `{filter}`") })
    }

    /// The run this sink wrote for the training job `arn` (the one `settle` keeps), in any
    /// experiment.
    async fn run_of_job(&self, arn: &str, b: &Budget) -> Result<Option<String>, MlflowError> {
        if !registry::filter_safe(arn) {
            return Ok(None);
        }
        let experiments = self.all_experiments(b).await?;
        let mut runs = Vec::new();
        for chunk in experiments.chunks(EXPERIMENTS_PER_SEARCH) {
            runs.extend(self.search(chunk, ARN_TAG, arn, b).await?);
        }
        Ok(runs.iter().min_by_key(|r| settle_key(r)).and_then(|r| str_at(r, "/info/run_id")).map(str::to_string))
    }

    /// Deletes the model versions of the package `arn`: the one the receipt names, and any
    /// other carrying its ARN tag in any registered model (a group's name is not its ARN's, which
    /// SageMaker lower-cases); then the alias of each model touched is settled again.
    async fn retract_package(&self, arn: &str, cx: &WriteContext, b: &Budget) -> Result<Vec<String>, SinkError> {
        let mut found: Vec<(String, String)> = Vec::new();
        if registry::filter_safe(arn) {
            for v in self.versions_of(arn, None, b).await? {
                if let Some(name) = str_at(&v, "/name") {
                    found.push((name.to_string(), version_number(&v).to_string()));
                }
            }
        }
        if let Some(prev) = cx.previous.as_ref() {
            if let (Some(m), Some(v)) = (prev.ids.get("registered_model"), prev.ids.get("version")) {
                if !found.iter().any(|(fm, fv)| fm == m && fv == v) {
                    let got = self.client.get("model-versions/get", &[("name", m), ("version", v)], b).await;
                    match got {
                        Ok(mv) if mv.get("model_version").and_then(|x| version_tag(x, registry::PACKAGE_TAG)) == Some(arn) => {
                            found.push((m.clone(), v.clone()))
                        }
                        Ok(_) => {}
                        Err(e) if e.is_absent() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        let mut removed = Vec::new();
        for (m, v) in &found {
            match self.client.delete("model-versions/delete", &json!({"name": m, "version": v}), b).await {
                Ok(_) => removed.push(format!("{m}/{v}")),
                Err(e) if e.is_absent() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut models: Vec<&String> = found.iter().map(|(m, _)| m).collect();
        models.dedup();
        for m in models {
            if registry::filter_safe(m) {
                self.settle_alias(m, b).await?;
            }
        }
        Ok(removed)
    }

    async fn retract_inner(&self, arn: &str, cx: &WriteContext, b: &Budget) -> Result<Vec<String>, MlflowError> {
        // Only the ARN is known here: its kind is read from it.
        let tag = identity_tag(kind_of_arn(arn));
        let mut ids: Vec<String> = Vec::new();
        let prev = cx.previous.as_ref();
        if let Some(run_id) = prev.and_then(|p| p.ids.get("run_id")) {
            if let Some(run) = self.get_run(run_id, b).await? {
                if is_run_of(&run, tag, arn) {
                    ids.push(run_id.clone());
                }
            }
        }
        let experiment_ids: Vec<String> = match prev.and_then(|p| p.ids.get("experiment_id")) {
            Some(e) => vec![e.clone()],
            None => self.all_experiments(b).await?,
        };
        for chunk in experiment_ids.chunks(EXPERIMENTS_PER_SEARCH) {
            for run in self.search(chunk, tag, arn, b).await? {
                if let Some(id) = str_at(&run, "/info/run_id") {
                    if !ids.iter().any(|x| x == id) {
                        ids.push(id.to_string());
                    }
                }
            }
        }
        self.delete_runs(&ids, b).await?;
        Ok(ids)
    }

    async fn all_experiments(&self, b: &Budget) -> Result<Vec<String>, MlflowError> {
        let body = json!({"max_results": 1000, "view_type": "ACTIVE_ONLY"});
        let experiments = self.paged("experiments/search", body, "experiments", b).await?;
        Ok(experiments.iter().filter_map(|e| str_at(e, "/experiment_id").map(str::to_string)).collect())
    }

    fn sync_error(&self, e: SinkError) -> SyncError {
        let at = &self.settings.endpoint.base;
        match e {
            SinkError::Api(e) if e.is_stop() => {
                tracing::debug!(error = %e, "MLflow request not sent");
                SyncError::Cancelled
            }
            SinkError::Api(e) if e.is_retryable() => SyncError::transient_with(format!("MLflow at {at}: {e}"), e),
            SinkError::Api(e) if e.is_setup() => SyncError::setup_with(format!("MLflow at {at}: {e}"), e),
            SinkError::Api(e) => SyncError::permanent_with(format!("MLflow at {at}: {e}"), e),
            SinkError::Mapping(e) => SyncError::permanent_with(format!("MLflow: {e}"), e),
            SinkError::Content(m) => SyncError::permanent(format!("MLflow at {at}: {m}")),
            SinkError::Retry(m) => SyncError::transient(format!("MLflow at {at}: {m}")),
            SinkError::Store(m) => SyncError::setup(format!("MLflow at {at}: {m}")),
        }
    }
}

/// The kind of series a run written before series said their kind holds: CloudWatch's
/// one-minute points (the default period then; the statistic was the config's, and goes on).
const LEGACY_HISTORY_KIND: &str = "cloudwatch, 60 s,";

#[derive(Debug, Default)]
struct Notes {
    param_changes: u32,
    /// Keys whose run keeps another kind of series than the record's.
    kept_series: u32,
}

/// Splits params, tags and metrics into `log-batch` bodies within the server's limits; the
/// history digest tag (if any) goes into the last batch, after every point.
fn batches(params: &[(String, String)], tags: &[(String, String)], metrics: &[Point], digest: Option<&str>) -> Vec<Value> {
    let kv = |k: &str, v: &str| json!({"key": k, "value": v});
    let mut out: Vec<Value> = Vec::new();
    let (mut p, mut t, mut m) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0usize;
    let flush = |p: &mut Vec<Value>, t: &mut Vec<Value>, m: &mut Vec<Value>, bytes: &mut usize, out: &mut Vec<Value>| {
        if !(p.is_empty() && t.is_empty() && m.is_empty()) {
            out.push(json!({"params": std::mem::take(p), "tags": std::mem::take(t), "metrics": std::mem::take(m)}));
        }
        *bytes = 0;
    };
    let mut items: Vec<(u8, Value)> = Vec::new();
    items.extend(params.iter().map(|(k, v)| (0, kv(k, v))));
    items.extend(tags.iter().map(|(k, v)| (1, kv(k, v))));
    items.extend(metrics.iter().map(|x| (2, x.json())));
    if let Some(dg) = digest {
        items.push((1, kv(HISTORY_DIGEST_TAG, dg)));
    }
    for (kind, item) in items {
        let size = item.to_string().len() + 1;
        let full = p.len() + t.len() + m.len() >= MAX_BATCH_ITEMS
            || bytes + size > MAX_BATCH_BYTES
            || match kind {
                0 => p.len() >= MAX_BATCH_PARAMS,
                1 => t.len() >= MAX_BATCH_TAGS,
                _ => m.len() >= MAX_BATCH_METRICS,
            };
        if full {
            flush(&mut p, &mut t, &mut m, &mut bytes, &mut out);
        }
        bytes += size;
        match kind {
            0 => p.push(item),
            1 => t.push(item),
            _ => m.push(item),
        }
    }
    flush(&mut p, &mut t, &mut m, &mut bytes, &mut out);
    out
}

#[async_trait]
impl Sink for MlflowSink {
    async fn upsert(&self, record: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        let b = Budget::new(cx);
        match self.upsert_inner(record, cx, &b).await {
            Ok(mut rc) => {
                rc.writes = b.writes();
                Ok(rc)
            }
            Err(e) => Err(self.sync_error(e)),
        }
    }

    async fn retract(&self, external_id: &str, cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        let b = Budget::new(cx);
        if external_id.contains('\'') || external_id.contains('\\') || external_id.trim().is_empty() {
            return Err(self.sync_error(MappingError::BadArn(external_id.to_string()).into()));
        }
        if external_id.contains(":model-package/") {
            let versions = self.retract_package(external_id, cx, &b).await.map_err(|e| self.sync_error(e))?;
            let mut rc = SinkReceipt::new(if versions.is_empty() { WriteKind::Unchanged } else { WriteKind::Removed });
            if !versions.is_empty() {
                rc = rc.id("version", versions.join(","));
            }
            rc.writes = b.writes();
            return Ok(Some(rc));
        }
        let ids = self.retract_inner(external_id, cx, &b).await.map_err(|e| self.sync_error(e.into()))?;
        let mut rc = SinkReceipt::new(if ids.is_empty() { WriteKind::Unchanged } else { WriteKind::Removed });
        if !ids.is_empty() {
            rc = rc.id("run_id", ids.join(","));
        }
        if let Some(e) = cx.previous.as_ref().and_then(|p| p.ids.get("experiment_id")) {
            rc = rc.id("experiment_id", e);
        }
        rc.writes = b.writes();
        Ok(Some(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_every_limit() {
        let params: Vec<(String, String)> = (0..250).map(|i| (format!("p{i}"), "v".into())).collect();
        let tags: Vec<(String, String)> = (0..150).map(|i| (format!("t{i}"), "v".into())).collect();
        let metrics: Vec<Point> =
            (0..2500).map(|i| Point { key: "m".into(), value: i as f64, timestamp: i, step: i, timeless: false }).collect();
        let out = batches(&params, &tags, &metrics, Some("abc"));
        let count = |b: &Value, k: &str| b[k].as_array().map_or(0, Vec::len);
        let (mut np, mut nt, mut nm) = (0, 0, 0);
        for b in &out {
            assert!(count(b, "params") <= 100 && count(b, "tags") <= 100 && count(b, "metrics") <= 1000);
            assert!(count(b, "params") + count(b, "tags") + count(b, "metrics") <= 1000);
            assert!(b.to_string().len() < 1_000_000);
            np += count(b, "params");
            nt += count(b, "tags");
            nm += count(b, "metrics");
        }
        assert_eq!((np, nt, nm), (250, 151, 2500));
        let last = out.last().and_then(|b| b["tags"].as_array()).and_then(|t| t.last()).cloned().unwrap_or_default();
        assert_eq!(last["key"], HISTORY_DIGEST_TAG, "the digest is written after every point");
        assert!(batches(&[], &[], &[], None).is_empty());
    }

    #[test]
    fn big_values_split_by_size() {
        let params: Vec<(String, String)> = (0..100).map(|i| (format!("p{i}"), "x".repeat(6000))).collect();
        let tags: Vec<(String, String)> = (0..100).map(|i| (format!("t{i}"), "y".repeat(8000))).collect();
        let out = batches(&params, &tags, &[], None);
        assert!(out.len() >= 2);
        assert!(out.iter().all(|b| b.to_string().len() < 1_000_000));
    }
}
