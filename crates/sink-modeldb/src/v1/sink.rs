//! The `modeldb_v1` sink.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use sagesync_core::{Dataset, RunRecord, Sink, SinkReceipt, Split, SyncError, WriteContext, WriteKind};

use super::client::{Connection, V1Error};
use super::codec::TValue;
use super::messages::*;
use super::package;

/// ModelDB's default experiment; a record with this experiment name uses the project's default
/// experiment.
pub const DEFAULT_EXPERIMENT: &str = "Default_Experiment";

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct ModelDbV1Settings {
    /// Server host name (not a URL).
    pub host: String,
    /// Thrift port.
    pub port: u16,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Per-call timeout.
    pub request_timeout: Duration,
    /// Replay the AWS sample's Light API calls exactly (not idempotent, like the original).
    pub compat: bool,
    /// How long a model package's model waits for its training job's run before the package
    /// gets a run of its own (measured from the package's creation).
    pub package_link_wait: Duration,
}

impl Default for ModelDbV1Settings {
    fn default() -> Self {
        ModelDbV1Settings {
            host: "localhost".into(),
            port: 6543,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            compat: false,
            package_link_wait: Duration::from_secs(3600),
        }
    }
}

/// The sink.
#[derive(Debug, Clone)]
pub struct ModelDbV1Sink {
    settings: ModelDbV1Settings,
}

/// Which data frame a call refers to: a channel, or the Light API's shared empty default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DfKey {
    Channel(String),
    Default,
}

/// Where the job's run was first written, from the ledger's receipt.
enum PreviousProject {
    /// The project id of a committed write.
    Id(i32),
    /// The project name of a write whose commit never happened.
    Name(String),
}

/// What one upsert has written so far, for error messages and receipts.
#[derive(Default)]
struct Progress {
    written: Vec<String>,
    writes: u32,
    run_sent: bool,
    ids: Vec<(&'static str, i32)>,
}

impl Progress {
    fn wrote(&mut self, what: String) {
        self.writes += 1;
        self.written.push(what);
    }
}

/// The experiment a child of a tuning job (or pipeline execution) is run in: its parent's.
fn child_experiment(record: &RunRecord) -> Option<&str> {
    record.lineage.parent.as_ref().map(|p| p.name.as_str()).filter(|n| !n.is_empty())
}

/// The description of a child's experiment, its parent's (so that whichever stores the
/// experiment first, it names the parent's ARN); empty for a job on its own.
fn parent_description(record: &RunRecord) -> String {
    match &record.lineage.parent {
        Some(p) => format!("SageMaker {} {} ({})", p.kind.as_str().replace('_', " "), p.name, p.arn),
        None => String::new(),
    }
}

fn full_df(ds: Option<&Dataset>, compat: bool) -> DataFrame {
    let Some(ds) = ds else {
        return DataFrame { id: -1, tag: String::new(), filepath: String::new(), metadata: Vec::new() };
    };
    let str_type = "<class 'str'>".to_string();
    let metadata = if compat {
        ["CompressionType", "RecordWrapperType"]
            .iter()
            .map(|k| match ds.metadata.get(*k) {
                Some(v) => MetadataKv { key: k.to_string(), value: v.clone(), value_type: str_type.clone() },
                None => MetadataKv { key: k.to_string(), value: "None".into(), value_type: "<class 'NoneType'>".into() },
            })
            .collect()
    } else {
        ds.metadata.iter().map(|(k, v)| MetadataKv { key: k.clone(), value: v.clone(), value_type: str_type.clone() }).collect()
    };
    DataFrame { id: -1, tag: ds.name.clone(), filepath: ds.uri.clone(), metadata }
}

/// Final metrics as the Light API's dict sees them: one per name, last value wins, first
/// position kept.
fn dedup_metrics(record: &RunRecord) -> Vec<(String, f64, Split)> {
    let mut out: Vec<(String, f64, Split)> = Vec::new();
    for m in &record.metrics {
        match out.iter_mut().find(|(n, _, _)| n == &m.name) {
            Some(e) => e.1 = m.value,
            None => out.push((m.name.clone(), m.value, m.split)),
        }
    }
    out
}

fn find_ds<'a>(record: &'a RunRecord, names: &[&str]) -> Option<&'a Dataset> {
    names.iter().find_map(|n| record.datasets.iter().find(|d| d.name.eq_ignore_ascii_case(n)))
}

fn fit_dataset(record: &RunRecord) -> Option<&Dataset> {
    find_ds(record, &["train", "training"]).or_else(|| record.datasets.first())
}

fn split_dataset(record: &RunRecord, split: Split) -> Option<&Dataset> {
    match split {
        Split::Train => find_ds(record, &["train", "training"]),
        Split::Validation => find_ds(record, &["validation", "val", "valid", "validate"]),
        Split::Test => find_ds(record, &["test", "testing"]),
        Split::None => fit_dataset(record),
    }
}

fn key_of(ds: Option<&Dataset>) -> DfKey {
    ds.map(|d| DfKey::Channel(d.name.clone())).unwrap_or(DfKey::Default)
}

fn hp_kind(v: &serde_json::Value) -> (&'static str, String) {
    match v {
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => ("int", n.to_string()),
        serde_json::Value::Number(n) => ("float", n.to_string()),
        serde_json::Value::Bool(b) => ("bool", b.to_string()),
        serde_json::Value::String(s) => ("str", s.clone()),
        other => ("str", other.to_string()),
    }
}

pub use crate::description::run_description;

fn i32_of(v: &TValue, what: &str, method: &str) -> Result<i32, V1Error> {
    v.as_i32().ok_or_else(|| V1Error::Protocol { method: method.into(), message: format!("{what} is not an i32") })
}

fn field_i32(v: &TValue, id: i16, what: &str, method: &str) -> Result<i32, V1Error> {
    v.field(id).and_then(TValue::as_i32).ok_or_else(|| V1Error::Protocol { method: method.into(), message: format!("reply has no {what}") })
}

impl ModelDbV1Sink {
    /// A sink with these settings.
    pub fn new(settings: ModelDbV1Settings) -> Self {
        ModelDbV1Sink { settings }
    }

    async fn connect(&self, cx: &WriteContext) -> Result<Connection, V1Error> {
        Connection::connect(&self.settings.host, self.settings.port, self.settings.connect_timeout, self.settings.request_timeout, cx).await
    }

    /// Stores the project (deduplicated by name and author on the server) and the experiment
    /// (the project's default one, or a named one); returns their ids.
    async fn project_and_experiment(
        &self,
        c: &mut Connection,
        record: &RunRecord,
        experiment: Option<&str>,
        description: &str,
        p: &mut Progress,
    ) -> Result<(i32, i32), V1Error> {
        let m = "storeProjectEvent";
        let r = c.call(m, store_project_event(&record.project.name, &record.project.user, &record.project.description)).await?;
        let pid = field_i32(&r, 1, "projectId", m)?;
        p.ids.push(("project_id", pid));
        let m = "storeExperimentEvent";
        let r = c.call(m, store_experiment_event(pid, experiment.unwrap_or(""), description, experiment.is_none())).await?;
        let eid = field_i32(&r, 1, "experimentId", m)?;
        if eid < 0 {
            return Err(V1Error::ServerLogic { method: m.into(), message: format!("project {pid} has no default experiment") });
        }
        p.ids.push(("experiment_id", eid));
        Ok((pid, eid))
    }

    /// A tuning job (or pipeline execution): the Light API has no parent run, so the parent is a
    /// non-default experiment of its project named after it, described with its ARN; its
    /// children's runs are created in it ([`child_experiment`]). Storing it again finds it.
    async fn parent_experiment(&self, record: &RunRecord, p: &mut Progress, cx: &WriteContext) -> Result<WriteKind, V1Error> {
        let mut c = self.connect(cx).await?;
        let m = "storeProjectEvent";
        let r = c.call(m, store_project_event(&record.project.name, &record.project.user, &record.project.description)).await?;
        let pid = field_i32(&r, 1, "projectId", m)?;
        p.ids.push(("project_id", pid));
        let m = "storeExperimentEvent";
        let r = c.call(m, store_experiment_event(pid, &record.run.name, &run_description(record), false)).await?;
        let eid = field_i32(&r, 1, "experimentId", m)?;
        p.ids.push(("experiment_id", eid));
        // The server finds the experiment by name: the same one as last time wrote nothing new.
        let same = cx.previous.as_ref().and_then(|prev| prev.ids.get("experiment_id")).is_some_and(|e| *e == eid.to_string());
        Ok(if same { WriteKind::Unchanged } else { WriteKind::Created })
    }

    /// The AWS sample's exact call sequence (a tuner's child's run in its tuner's experiment).
    async fn compat(&self, record: &RunRecord, p: &mut Progress, cx: &WriteContext) -> Result<WriteKind, V1Error> {
        let mut c = self.connect(cx).await?;
        let (_, eid) = self.project_and_experiment(&mut c, record, child_experiment(record), &parent_description(record), p).await?;
        let m = "storeExperimentRunEvent";
        p.run_sent = true;
        let r = c.call(m, store_experiment_run_event(eid, "")).await?;
        let rid = field_i32(&r, 1, "experimentRunId", m)?;
        p.ids.push(("run_id", rid));
        p.wrote(format!("run {rid}"));

        let mut known: HashMap<DfKey, i32> = HashMap::new();
        let train = record.dataset("train");
        let test = record.dataset("test");
        let df_for = |ds: Option<&Dataset>, known: &HashMap<DfKey, i32>| match known.get(&key_of(ds)) {
            Some(id) => DataFrame::known(*id),
            None => full_df(ds, true),
        };
        let fe = FitEvent {
            df: df_for(train, &known),
            spec: TransformerSpec {
                id: -1,
                transformer_type: record.model.model_type.clone(),
                hyperparameters: record
                    .hyperparameters
                    .iter()
                    .map(|h| HyperParameter { name: h.name.clone(), value: h.raw.clone(), kind: "str".into() })
                    .collect(),
                tag: String::new(),
            },
            model: Transformer {
                id: -1,
                transformer_type: record.model.model_type.clone(),
                tag: String::new(),
                filepath: record.model.artifact_uri.clone(),
            },
            experiment_run_id: rid,
            metadata: "{}".into(),
        };
        let m = "storeFitEvent";
        let r = c.call(m, store_fit_event(&fe)).await?;
        known.insert(key_of(train), field_i32(&r, 1, "dfId", m)?);
        let model_id = field_i32(&r, 3, "modelId", m)?;
        p.ids.push(("model_id", model_id));
        p.wrote(format!("fit event {} (model {model_id})", field_i32(&r, 5, "fitEventId", m)?));
        for (name, value, _) in dedup_metrics(record) {
            let me = MetricEvent {
                df: df_for(test, &known),
                model: Transformer::known(model_id),
                metric_type: name.clone(),
                metric_value: value,
                experiment_run_id: rid,
            };
            let m = "storeMetricEvent";
            let r = c.call(m, store_metric_event(&me)).await?;
            known.insert(key_of(test), field_i32(&r, 2, "dfId", m)?);
            p.wrote(format!("metric {name}"));
        }
        Ok(WriteKind::Created)
    }

    /// Idempotent sync: find the run by ARN, write only what is missing.
    async fn upsert_default(
        &self,
        record: &RunRecord,
        previous_project: Option<PreviousProject>,
        p: &mut Progress,
        cx: &WriteContext,
    ) -> Result<WriteKind, V1Error> {
        let mut c = self.connect(cx).await?;
        let named = child_experiment(record).or((record.experiment != DEFAULT_EXPERIMENT).then_some(record.experiment.as_str()));
        let (pid, eid) = self.project_and_experiment(&mut c, record, named, &parent_description(record), p).await?;

        // Look for a run that already carries this job's ARN.
        let m = "getRunsAndExperimentsInProject";
        let r = c.call(m, get_runs_and_experiments_in_project(pid)).await?;
        let marker = format!("({})", record.run.external_id);
        let find = |r: &TValue| {
            r.field(3)
                .map(TValue::as_list)
                .unwrap_or(&[])
                .iter()
                .filter(|run| run.str_field(3).contains(&marker))
                .filter_map(|run| Some((run.field(1).and_then(TValue::as_i32)?, run.field(2).and_then(TValue::as_i32))))
                .min_by_key(|(rid, _)| *rid)
        };
        let mut existing = find(&r).map(|(rid, _)| rid);
        // The Light API cannot move or delete a run: a job whose project changed keeps its one
        // run in the project it was first written to (found through the ledger's receipt).
        if existing.is_none() {
            let prev = match previous_project {
                Some(PreviousProject::Id(id)) => Some(id),
                // An earlier write crashed before its ledger commit: its project by name (the
                // server dedups projects by name).
                Some(PreviousProject::Name(name)) if name != record.project.name => {
                    let m = "storeProjectEvent";
                    let r = c.call(m, store_project_event(&name, &record.project.user, &record.project.description)).await?;
                    Some(field_i32(&r, 1, "projectId", m)?)
                }
                _ => None,
            };
            if let Some(prev) = prev.filter(|&prev| prev != pid) {
                let r = c.call(m, get_runs_and_experiments_in_project(prev)).await?;
                if let Some((rid, eid)) = find(&r) {
                    tracing::warn!(
                        job = %record.run.name,
                        project_id = prev,
                        "the job's project changed; ModelDB v1 cannot move runs, so its run stays in the project it was first written to"
                    );
                    p.ids.retain(|(k, _)| *k != "project_id" && *k != "experiment_id");
                    p.ids.push(("project_id", prev));
                    if let Some(eid) = eid {
                        p.ids.push(("experiment_id", eid));
                    }
                    existing = Some(rid);
                }
            }
        }

        let (rid, resume) = match existing {
            Some(rid) => {
                p.ids.push(("run_id", rid));
                let m = "getExperimentRunDetails";
                let d = c.call(m, get_experiment_run_details(rid)).await?;
                // The job's own model: the first one that is not a model package's entry.
                let model = d
                    .field(4)
                    .map(TValue::as_list)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|mr| package::model_owner(&mr.str_field(17)).is_none())
                    .min_by_key(|mr| mr.field(1).and_then(TValue::as_i32).unwrap_or(i32::MAX))
                    .cloned();
                (rid, model)
            }
            None => {
                let m = "storeExperimentRunEvent";
                let r = c.call(m, store_experiment_run_event(eid, &run_description(record))).await?;
                let rid = field_i32(&r, 1, "experimentRunId", m)?;
                p.ids.push(("run_id", rid));
                p.wrote(format!("run {rid}"));
                (rid, None)
            }
        };
        let created = existing.is_none();

        let metrics = dedup_metrics(record);
        let mut known: HashMap<DfKey, i32> = HashMap::new();
        let model_id = match resume {
            Some(model) => {
                let model_id = field_i32(&model, 1, "model id", "getExperimentRunDetails")?;
                p.ids.push(("model_id", model_id));
                if let Some(id) = model.field(5).and_then(|df| df.field(1)).and_then(TValue::as_i32) {
                    known.insert(key_of(fit_dataset(record)), id);
                }
                // Existing metrics: name -> {dfId -> value}.
                let mut have: HashSet<String> = HashSet::new();
                for (k, v) in model.field(11).map(TValue::as_map).unwrap_or(&[]) {
                    let Some(name) = k.as_str() else { continue };
                    if let Some((df, _)) = v.as_map().first() {
                        if let Some(df) = df.as_i32() {
                            let split =
                                metrics.iter().find(|(n, _, _)| n == &name).map(|(_, _, s)| *s).unwrap_or(Split::from_metric_name(&name));
                            known.entry(key_of(split_dataset(record, split))).or_insert(df);
                        }
                    }
                    have.insert(name);
                }
                let missing: Vec<_> = metrics.iter().filter(|(n, _, _)| !have.contains(n)).cloned().collect();
                if missing.is_empty() {
                    return Ok(WriteKind::Unchanged);
                }
                self.write_metrics(&mut c, record, &missing, rid, model_id, &mut known, p).await?;
                return Ok(WriteKind::Updated);
            }
            None => {
                // Channels no call below refers to are stored first, so that an existing model
                // implies they exist too.
                let fit = fit_dataset(record);
                let mut referenced: HashSet<DfKey> = HashSet::new();
                referenced.insert(key_of(fit));
                for (_, _, s) in &metrics {
                    referenced.insert(key_of(split_dataset(record, *s)));
                }
                for ds in &record.datasets {
                    let key = DfKey::Channel(ds.name.clone());
                    if referenced.contains(&key) {
                        continue;
                    }
                    let m = "storeDataFrame";
                    let r = c.call(m, store_data_frame(&full_df(Some(ds), false), rid)).await?;
                    let id = i32_of(&r, "data frame id", m)?;
                    known.insert(key, id);
                    p.wrote(format!("data frame {id} ({})", ds.name));
                }
                let metadata = serde_json::json!({
                    "training_job_name": record.run.name,
                    "training_job_arn": record.run.external_id,
                    "experiment": record.experiment,
                    "status": record.run.status,
                    "attributes": record.attributes,
                    "tags": record.tags.iter().map(|t| (t.key.clone(), serde_json::Value::String(t.value.clone()))).collect::<serde_json::Map<_, _>>(),
                });
                let fe = FitEvent {
                    df: full_df(fit, false),
                    spec: TransformerSpec {
                        id: -1,
                        transformer_type: record.model.model_type.clone(),
                        hyperparameters: record
                            .hyperparameters
                            .iter()
                            .map(|h| {
                                let (kind, value) = hp_kind(&h.value);
                                HyperParameter { name: h.name.clone(), value, kind: kind.into() }
                            })
                            .collect(),
                        tag: record.model.name.clone(),
                    },
                    model: Transformer {
                        id: -1,
                        transformer_type: record.model.model_type.clone(),
                        tag: record.model.name.clone(),
                        filepath: record.model.artifact_uri.clone(),
                    },
                    experiment_run_id: rid,
                    metadata: metadata.to_string(),
                };
                let m = "storeFitEvent";
                let r = c.call(m, store_fit_event(&fe)).await?;
                known.insert(key_of(fit), field_i32(&r, 1, "dfId", m)?);
                let model_id = field_i32(&r, 3, "modelId", m)?;
                p.ids.push(("model_id", model_id));
                p.wrote(format!("fit event {} (model {model_id})", field_i32(&r, 5, "fitEventId", m)?));
                model_id
            }
        };
        self.write_metrics(&mut c, record, &metrics, rid, model_id, &mut known, p).await?;
        Ok(if created { WriteKind::Created } else { WriteKind::Updated })
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_metrics(
        &self,
        c: &mut Connection,
        record: &RunRecord,
        metrics: &[(String, f64, Split)],
        rid: i32,
        model_id: i32,
        known: &mut HashMap<DfKey, i32>,
        p: &mut Progress,
    ) -> Result<(), V1Error> {
        for (name, value, split) in metrics {
            let ds = split_dataset(record, *split);
            let key = key_of(ds);
            let df = match known.get(&key) {
                Some(id) => DataFrame::known(*id),
                None => full_df(ds, false),
            };
            let me = MetricEvent {
                df,
                model: Transformer::known(model_id),
                metric_type: name.clone(),
                metric_value: *value,
                experiment_run_id: rid,
            };
            let m = "storeMetricEvent";
            let r = c.call(m, store_metric_event(&me)).await?;
            known.insert(key, field_i32(&r, 2, "dfId", m)?);
            p.wrote(format!("metric {name}"));
        }
        Ok(())
    }

    /// A model package as a model entry on the run of the training job that made its model
    /// (default mode): found again by the package's ARN in its metadata, its changed fields set
    /// with `createOrUpdateScalarField`. A package whose job has no run here waits for it (up
    /// to `package_link_wait`), then gets a run of its own.
    /// Returns the write's kind and the digest of what the model holds (its fields and run).
    async fn upsert_package(&self, record: &RunRecord, p: &mut Progress, cx: &WriteContext) -> Result<(WriteKind, String), PackageError> {
        let Some(pkg) = record.lineage.package.as_ref() else {
            return Err(PackageError::Content("a model package's record without its package".into()));
        };
        let arn = record.run.external_id.as_str();
        let want = package::desired_metadata(record, pkg);
        if let Some(prev) = cx.previous.as_ref() {
            let known = |k: &str| prev.ids.get(k).and_then(|v| v.parse::<i32>().ok());
            if let (Some(run), Some(_)) = (known("run_id"), known("model_id")) {
                let digest = package::digest(&want, run);
                if prev.ids.get("digest") == Some(&digest) {
                    for k in ["project_id", "experiment_id", "run_id", "model_id"] {
                        if let Some(v) = known(k) {
                            p.ids.push((k, v));
                        }
                    }
                    return Ok((WriteKind::Unchanged, digest));
                }
            }
        }
        let mut c = self.connect(cx).await?;
        let named = (record.experiment != DEFAULT_EXPERIMENT).then_some(record.experiment.as_str());
        let (pid, eid) = self.project_and_experiment(&mut c, record, named, "", p).await?;
        let m = "getRunsAndExperimentsInProject";
        let listed = c.call(m, get_runs_and_experiments_in_project(pid)).await?;
        let run_of = |owner: &str| {
            let marker = format!("({owner})");
            listed
                .field(3)
                .map(TValue::as_list)
                .unwrap_or(&[])
                .iter()
                .filter(|run| run.str_field(3).contains(&marker))
                .filter_map(|run| run.field(1).and_then(TValue::as_i32))
                .min()
        };
        let job_run = pkg.training_job_arn.as_deref().and_then(run_of);
        let own_run = run_of(arn);
        // Where the package's model is, if it was written: on the job's run, or on its own.
        let mut found: Option<(i32, TValue)> = None;
        let mut job_model_df: Option<i32> = None;
        for rid in [job_run, own_run].into_iter().flatten() {
            let m = "getExperimentRunDetails";
            let d = c.call(m, get_experiment_run_details(rid)).await?;
            let models = d.field(4).map(TValue::as_list).unwrap_or(&[]);
            let id_of = |mr: &TValue| mr.field(1).and_then(TValue::as_i32).unwrap_or(i32::MAX);
            if Some(rid) == job_run {
                job_model_df = models
                    .iter()
                    .filter(|mr| package::model_owner(&mr.str_field(17)).is_none())
                    .min_by_key(|mr| id_of(mr))
                    .and_then(|mr| mr.field(5)?.field(1)?.as_i32());
            }
            if let Some(mr) =
                models.iter().filter(|mr| package::model_owner(&mr.str_field(17)).as_deref() == Some(arn)).min_by_key(|mr| id_of(mr))
            {
                found = Some((rid, mr.clone()));
                break;
            }
        }
        let (kind, rid) = match found {
            Some((rid, model)) => {
                let model_id = field_i32(&model, 1, "model id", "getExperimentRunDetails")?;
                p.ids.push(("run_id", rid));
                p.ids.push(("model_id", model_id));
                let changed = package::changed_fields(&want, &model.str_field(17));
                for (key, value) in &changed {
                    let m = "createOrUpdateScalarField";
                    let r = c.call(m, create_or_update_scalar_field(model_id, key, value, "string")).await?;
                    if r.as_bool() != Some(true) {
                        return Err(V1Error::ServerLogic {
                            method: m.into(),
                            message: format!("model {model_id} has no metadata document to update"),
                        }
                        .into());
                    }
                    p.wrote(format!("model {model_id} {key}"));
                }
                if changed.is_empty() {
                    (WriteKind::Unchanged, rid)
                } else {
                    self.settle_duplicates(&mut c, arn, model_id, p).await?;
                    (WriteKind::Updated, rid)
                }
            }
            None => {
                let rid = match (job_run, own_run, &pkg.training_job_arn) {
                    (Some(rid), _, _) => rid,
                    (None, own, Some(job)) => {
                        if record.started_within(self.settings.package_link_wait) {
                            return Err(PackageError::Waiting(format!(
                                "model package {arn}: its training job {job} has no run here yet; the model waits for it (up to package_link_wait_secs)"
                            )));
                        }
                        tracing::warn!(package = %arn, job = %job, "ModelDB v1: the training job's run did not come within package_link_wait_secs; the package gets a run of its own (the job's ARN in its metadata)");
                        match own {
                            Some(rid) => rid,
                            None => self.package_run(&mut c, record, eid, p).await?,
                        }
                    }
                    (None, Some(rid), None) => rid,
                    (None, None, None) => self.package_run(&mut c, record, eid, p).await?,
                };
                p.ids.push(("run_id", rid));
                let tag = match pkg.version {
                    Some(v) => format!("{}/{v}", pkg.group),
                    None => pkg.group.clone(),
                };
                let kind = pkg.framework.clone().unwrap_or_else(|| "SageMakerModelPackage".into());
                let fe = FitEvent {
                    df: job_model_df.map(DataFrame::known).unwrap_or_else(|| full_df(None, false)),
                    spec: TransformerSpec { id: -1, transformer_type: kind.clone(), hyperparameters: Vec::new(), tag: tag.clone() },
                    model: Transformer { id: -1, transformer_type: kind, tag, filepath: pkg.model_data_urls.first().cloned() },
                    experiment_run_id: rid,
                    metadata: package::metadata_json(&want),
                };
                let m = "storeFitEvent";
                let r = c.call(m, store_fit_event(&fe)).await?;
                let made = field_i32(&r, 3, "modelId", m)?;
                p.wrote(format!("package model {made}"));
                let model_id = self.settle_duplicates(&mut c, arn, made, p).await?;
                p.ids.push(("model_id", model_id));
                if model_id == made {
                    (WriteKind::Created, rid)
                } else {
                    // Another writer's model is the package's: brought up to date like any.
                    for (key, value) in package::changed_fields(&want, "") {
                        let m = "createOrUpdateScalarField";
                        c.call(m, create_or_update_scalar_field(model_id, key, value, "string")).await?;
                        p.wrote(format!("model {model_id} {key}"));
                    }
                    (WriteKind::Updated, rid)
                }
            }
        };
        Ok((kind, package::digest(&want, rid)))
    }

    /// One model per package: another writer with a ledger of its own (a second process) may
    /// have fitted one too, on this run or on a run of the package's own. The lowest `Active`
    /// model stays the package's; the others are marked `Duplicate` (the Light API deletes
    /// nothing). Returns the model kept.
    async fn settle_duplicates(&self, c: &mut Connection, arn: &str, mine: i32, p: &mut Progress) -> Result<i32, V1Error> {
        let m = "getModelIds";
        let r = c.call(m, get_model_ids(&[(package::PACKAGE_KEY, arn), (package::STATE_KEY, "Active")])).await?;
        let mut ids: Vec<i32> = r.as_list().iter().filter_map(TValue::as_i32).collect();
        ids.sort_unstable();
        ids.dedup();
        let Some(&keep) = ids.first() else { return Ok(mine) };
        for extra in ids.iter().skip(1) {
            let m = "createOrUpdateScalarField";
            c.call(m, create_or_update_scalar_field(*extra, package::STATE_KEY, package::DUPLICATE, "string")).await?;
            p.wrote(format!("model {extra} marked a duplicate of {keep}"));
            tracing::info!(package = %arn, model_id = extra, kept = keep, "ModelDB v1: a second model of the package, marked a duplicate");
        }
        Ok(keep)
    }

    /// A run of the package's own (its training job never got one here), in the package's
    /// experiment, described with the package's ARN.
    async fn package_run(&self, c: &mut Connection, record: &RunRecord, eid: i32, p: &mut Progress) -> Result<i32, V1Error> {
        let m = "storeExperimentRunEvent";
        let r = c.call(m, store_experiment_run_event(eid, &run_description(record))).await?;
        let rid = field_i32(&r, 1, "experimentRunId", m)?;
        p.wrote(format!("run {rid}"));
        Ok(rid)
    }

    /// Marks every model of package `arn` retracted (the Light API deletes nothing): those
    /// whose metadata names the package (`getModelIds`), which finds a write the ledger never
    /// learned of too, and the one the last committed write named.
    async fn retract_package(&self, arn: &str, cx: &WriteContext) -> Result<SinkReceipt, V1Error> {
        let mut rc = SinkReceipt::new(WriteKind::Removed);
        let mut c = self.connect(cx).await?;
        let m = "getModelIds";
        // The package's active models (a duplicate keeps its mark), and the receipt's.
        let r = c.call(m, get_model_ids(&[(package::PACKAGE_KEY, arn), (package::STATE_KEY, "Active")])).await?;
        let mut ids: Vec<i32> = r.as_list().iter().filter_map(TValue::as_i32).collect();
        ids.extend(cx.previous.as_ref().and_then(|p| p.ids.get("model_id")).and_then(|v| v.parse::<i32>().ok()));
        ids.sort_unstable();
        ids.dedup();
        for model_id in &ids {
            let m = "createOrUpdateScalarField";
            let r = c.call(m, create_or_update_scalar_field(*model_id, package::STATE_KEY, "Retracted", "string")).await?;
            if r.as_bool() == Some(true) {
                rc.writes += 1;
            }
        }
        if let Some(first) = ids.first() {
            rc = rc.id("model_id", first);
        }
        Ok(rc)
    }

    /// Calls `testConnection` (the reference server answers 200).
    pub async fn test_connection(&self) -> Result<i32, V1Error> {
        let mut c = self.connect(&WriteContext::new()).await?;
        let r = c.call("testConnection", test_connection()).await?;
        i32_of(&r, "result", "testConnection")
    }
}

#[async_trait]
impl Sink for ModelDbV1Sink {
    async fn upsert(&self, record: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        if record.lineage.kind == sagesync_core::ResourceKind::ModelPackage {
            if self.settings.compat {
                // The setup's choice (compat mode replays the AWS sample, which had no
                // packages), never the package's fault: tried again, never parked for it.
                return Err(SyncError::setup(
                    "sink modeldb_v1 in compat mode records no model packages: leave \"model_packages\" out of [source] resources, or set compat = false",
                ));
            }
            let mut p = Progress::default();
            let at = format!("ModelDB v1 at {}:{}", self.settings.host, self.settings.port);
            return match self.upsert_package(record, &mut p, cx).await {
                Ok((kind, digest)) => {
                    let mut receipt = SinkReceipt::new(kind);
                    for (k, v) in &p.ids {
                        receipt = receipt.id(k, v);
                    }
                    receipt = receipt.id("digest", digest);
                    receipt.writes = p.writes;
                    Ok(receipt)
                }
                Err(PackageError::Api(e)) if e.is_stop() => Err(SyncError::Cancelled),
                Err(PackageError::Api(e)) if e.is_retryable() => Err(SyncError::transient_with(format!("{at}: {e}"), e)),
                Err(PackageError::Api(e)) => Err(SyncError::permanent_with(format!("{at}: {e}"), e)),
                Err(PackageError::Waiting(m)) => Err(SyncError::transient(format!("{at}: {m}"))),
                Err(PackageError::Content(m)) => Err(SyncError::permanent(format!("{at}: {m}"))),
            };
        }
        // Where the job's run was: the project of the last committed write, or the project an
        // earlier attempt's unfinished first write named.
        let previous_project = cx
            .previous
            .as_ref()
            .and_then(|p| p.ids.get("project_id").and_then(|v| v.parse::<i32>().ok()).map(PreviousProject::Id))
            .or_else(|| cx.pending.as_ref().map(|n| PreviousProject::Name(n.project.clone())));
        let mut p = Progress::default();
        let result = if record.lineage.kind.is_parent() {
            self.parent_experiment(record, &mut p, cx).await
        } else if self.settings.compat {
            self.compat(record, &mut p, cx).await
        } else {
            self.upsert_default(record, previous_project, &mut p, cx).await
        };
        match result {
            Ok(kind) => {
                let mut receipt = SinkReceipt::new(kind);
                for (k, v) in &p.ids {
                    receipt = receipt.id(k, v);
                }
                receipt.writes = p.writes;
                Ok(receipt)
            }
            Err(e) => {
                let written =
                    if p.written.is_empty() { "nothing written".to_string() } else { format!("already written: {}", p.written.join(", ")) };
                let message = format!("ModelDB v1 at {}:{}: {e} ({written})", self.settings.host, self.settings.port);
                // Compat mode is not idempotent (like the original): once the run call went out,
                // a retry would create a second run, so only earlier failures are retryable.
                let retryable = e.is_retryable() && (!self.settings.compat || !p.run_sent);
                Err(if e.is_stop() {
                    tracing::debug!(error = %e, "ModelDB v1 call not sent");
                    SyncError::Cancelled
                } else if retryable {
                    SyncError::transient_with(message, e)
                } else {
                    SyncError::permanent_with(message, e)
                })
            }
        }
    }

    /// Training jobs' runs are kept (the Light API deletes nothing); a model package's model
    /// is marked `Retracted` in its metadata.
    async fn retract(&self, external_id: &str, cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        if self.settings.compat || package::package_of_arn(external_id).is_none() {
            return Ok(None);
        }
        match self.retract_package(external_id, cx).await {
            Ok(rc) => Ok(Some(rc)),
            Err(e) if e.is_stop() => Err(SyncError::Cancelled),
            Err(e) => {
                let message = format!("ModelDB v1 at {}:{}: {e}", self.settings.host, self.settings.port);
                Err(if e.is_retryable() { SyncError::transient_with(message, e) } else { SyncError::permanent_with(message, e) })
            }
        }
    }
}

/// Why a model package's write stopped.
enum PackageError {
    /// A call failed.
    Api(V1Error),
    /// The model waits for its training job's run (retried later).
    Waiting(String),
    /// The package's record cannot be written.
    Content(String),
}

impl From<V1Error> for PackageError {
    fn from(e: V1Error) -> Self {
        PackageError::Api(e)
    }
}
