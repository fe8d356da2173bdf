//! The ModelDB v1 structs the sink sends, encoded exactly as the Python client (Thrift 0.10
//! generated code) encodes them: ascending field ids, every non-None field written.

use super::codec::{ttype, Writer};

/// `MetadataKV {1: key, 2: value, 3: valueType}`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataKv {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Python type description, e.g. `<class 'str'>`.
    pub value_type: String,
}

/// `DataFrame {1: id, 2: schema, 3: numRows, 4: tag, 5: filepath, 6: metadata}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFrame {
    /// -1 for a new one.
    pub id: i32,
    /// Tag (the channel name).
    pub tag: String,
    /// Location.
    pub filepath: String,
    /// Metadata.
    pub metadata: Vec<MetadataKv>,
}

impl DataFrame {
    /// The short form for a data frame the server already has: `DataFrame(id, [], -1, "", "", [])`.
    pub fn known(id: i32) -> Self {
        DataFrame { id, tag: String::new(), filepath: String::new(), metadata: Vec::new() }
    }
    /// Writes the struct body.
    pub fn encode(&self, w: &mut Writer) {
        w.f_i32(1, self.id);
        w.field(ttype::LIST, 2).list(ttype::STRUCT, 0);
        w.f_i32(3, -1);
        w.f_str(4, &self.tag);
        w.f_str(5, &self.filepath);
        w.field(ttype::LIST, 6).list(ttype::STRUCT, self.metadata.len());
        for kv in &self.metadata {
            w.f_str(1, &kv.key).f_str(2, &kv.value).f_str(3, &kv.value_type).stop();
        }
        w.stop();
    }
}

/// `HyperParameter {1: name, 2: value, 3: type, 4: min, 5: max}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParameter {
    /// Name.
    pub name: String,
    /// Value as text.
    pub value: String,
    /// Python type name (`str`, `int`, `float`, `bool`).
    pub kind: String,
}

/// `TransformerSpec {1: id, 2: transformerType, 3: hyperparameters, 4: tag}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerSpec {
    /// -1 for new.
    pub id: i32,
    /// Model type.
    pub transformer_type: String,
    /// Hyperparameters.
    pub hyperparameters: Vec<HyperParameter>,
    /// Tag.
    pub tag: String,
}

impl TransformerSpec {
    /// Writes the struct body. min/max are Python's `sys.float_info.min`/`max`.
    pub fn encode(&self, w: &mut Writer) {
        w.f_i32(1, self.id).f_str(2, &self.transformer_type);
        w.field(ttype::LIST, 3).list(ttype::STRUCT, self.hyperparameters.len());
        for h in &self.hyperparameters {
            w.f_str(1, &h.name).f_str(2, &h.value).f_str(3, &h.kind).f_f64(4, f64::MIN_POSITIVE).f_f64(5, f64::MAX).stop();
        }
        w.f_str(4, &self.tag).stop();
    }
}

/// `Transformer {1: id, 2: transformerType, 3: tag, 4: filepath (optional)}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transformer {
    /// -1 for new.
    pub id: i32,
    /// Model type.
    pub transformer_type: String,
    /// Tag.
    pub tag: String,
    /// Model artifact; `None` is not written.
    pub filepath: Option<String>,
}

impl Transformer {
    /// The short form for a known model: `Transformer(id, "", "", "")`.
    pub fn known(id: i32) -> Self {
        Transformer { id, transformer_type: String::new(), tag: String::new(), filepath: Some(String::new()) }
    }
    /// Writes the struct body.
    pub fn encode(&self, w: &mut Writer) {
        w.f_i32(1, self.id).f_str(2, &self.transformer_type).f_str(3, &self.tag);
        if let Some(p) = &self.filepath {
            w.f_str(4, p);
        }
        w.stop();
    }
}

/// `FitEvent` (fields 1..9).
#[derive(Debug, Clone, PartialEq)]
pub struct FitEvent {
    /// Training data.
    pub df: DataFrame,
    /// Spec.
    pub spec: TransformerSpec,
    /// Model.
    pub model: Transformer,
    /// Run id.
    pub experiment_run_id: i32,
    /// JSON metadata (stored by the reference server in MongoDB).
    pub metadata: String,
}

/// `MetricEvent` (fields 1..7).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEvent {
    /// Evaluation data.
    pub df: DataFrame,
    /// Model.
    pub model: Transformer,
    /// Metric name.
    pub metric_type: String,
    /// Value.
    pub metric_value: f64,
    /// Run id.
    pub experiment_run_id: i32,
}

/// Builds the `storeProjectEvent` call.
pub fn store_project_event(name: &str, author: &str, description: &str) -> Writer {
    let mut w = Writer::call("storeProjectEvent");
    w.field(ttype::STRUCT, 1).field(ttype::STRUCT, 1);
    w.f_i32(1, -1).f_str(2, name).f_str(3, author).f_str(4, description).stop();
    w.stop().stop();
    w
}

/// Builds the `storeExperimentEvent` call.
pub fn store_experiment_event(project_id: i32, name: &str, description: &str, is_default: bool) -> Writer {
    let mut w = Writer::call("storeExperimentEvent");
    w.field(ttype::STRUCT, 1).field(ttype::STRUCT, 1);
    w.f_i32(1, -1).f_i32(2, project_id).f_str(3, name).f_str(4, description).f_bool(5, is_default).stop();
    w.stop().stop();
    w
}

/// Builds the `storeExperimentRunEvent` call (`sha` and `created` unset).
pub fn store_experiment_run_event(experiment_id: i32, description: &str) -> Writer {
    let mut w = Writer::call("storeExperimentRunEvent");
    w.field(ttype::STRUCT, 1).field(ttype::STRUCT, 1);
    w.f_i32(1, -1).f_i32(2, experiment_id).f_str(3, description).stop();
    w.stop().stop();
    w
}

/// Builds the `storeFitEvent` call.
pub fn store_fit_event(fe: &FitEvent) -> Writer {
    let mut w = Writer::call("storeFitEvent");
    w.field(ttype::STRUCT, 1);
    w.field(ttype::STRUCT, 1);
    fe.df.encode(&mut w);
    w.field(ttype::STRUCT, 2);
    fe.spec.encode(&mut w);
    w.field(ttype::STRUCT, 3);
    fe.model.encode(&mut w);
    for id in [4, 5, 6] {
        w.field(ttype::LIST, id).list(ttype::STRING, 0);
    }
    w.f_i32(7, fe.experiment_run_id).f_i32(8, 0).f_str(9, &fe.metadata);
    w.stop().stop();
    w
}

/// Builds the `storeMetricEvent` call.
pub fn store_metric_event(me: &MetricEvent) -> Writer {
    let mut w = Writer::call("storeMetricEvent");
    w.field(ttype::STRUCT, 1);
    w.field(ttype::STRUCT, 1);
    me.df.encode(&mut w);
    w.field(ttype::STRUCT, 2);
    me.model.encode(&mut w);
    w.f_str(3, &me.metric_type).f_f64(4, me.metric_value).f_str(5, "label_col").f_str(6, "prediction_col").f_i32(7, me.experiment_run_id);
    w.stop().stop();
    w
}

/// Builds the `storeDataFrame(df, experimentRunId)` call.
pub fn store_data_frame(df: &DataFrame, experiment_run_id: i32) -> Writer {
    let mut w = Writer::call("storeDataFrame");
    w.field(ttype::STRUCT, 1);
    df.encode(&mut w);
    w.f_i32(2, experiment_run_id).stop();
    w
}

/// Builds `getRunsAndExperimentsInProject(projId)`.
pub fn get_runs_and_experiments_in_project(project_id: i32) -> Writer {
    let mut w = Writer::call("getRunsAndExperimentsInProject");
    w.f_i32(1, project_id).stop();
    w
}

/// Builds `getExperimentRunDetails(experimentRunId)`.
pub fn get_experiment_run_details(run_id: i32) -> Writer {
    let mut w = Writer::call("getExperimentRunDetails");
    w.f_i32(1, run_id).stop();
    w
}

/// Builds `testConnection()`.
pub fn test_connection() -> Writer {
    let mut w = Writer::call("testConnection");
    w.stop();
    w
}

/// Builds `createOrUpdateScalarField(modelId, key, value, valueType)`: sets one field of a
/// model's metadata document (the reference server's MongoDB `$set`, no upsert).
pub fn create_or_update_scalar_field(model_id: i32, key: &str, value: &str, value_type: &str) -> Writer {
    let mut w = Writer::call("createOrUpdateScalarField");
    w.f_i32(1, model_id).f_str(2, key).f_str(3, value).f_str(4, value_type).stop();
    w
}

/// Builds `getModelIds(keyValuePairs)`: the models whose metadata document holds every pair
/// (the reference server's MongoDB query on string values).
pub fn get_model_ids(pairs: &[(&str, &str)]) -> Writer {
    let mut w = Writer::call("getModelIds");
    w.field(ttype::MAP, 1).map(ttype::STRING, ttype::STRING, pairs.len());
    for (k, v) in pairs {
        w.string(k).string(v);
    }
    w.stop();
    w
}
