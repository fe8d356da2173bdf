//! The `modeldb_v2` sink: the requests [`super::mapping`] works out, sent through
//! [`super::client`], each reply checked once (`Reply::ok`).

use async_trait::async_trait;
use sagesync_core::{PendingNames, RunRecord, Sink, SinkReceipt, SyncError, WriteContext, WriteKind};
use serde_json::{json, Value};

use super::client::{is_absent, Api, ApiSettings, Call, V2Error};
use super::mapping::{self, desired, field_str, hashed_name, hashed_run_name, kv, manifest_tag, run_owner, Desired, OnConflict, Verb};
use super::registry;

/// A project's id in a getProjectByName (or createProject) reply: the caller's, else the first
/// shared one.
fn project_id_in(b: &Value) -> Option<String> {
    field_str(b, "/project_by_user/id").or_else(|| field_str(b, "/shared_projects/0/id")).or_else(|| field_str(b, "/project/id"))
}

/// Whether a nesting call's reply says nesting cannot be done, which is no failure of the write:
/// the run is gone (404, code 5), or the server does not implement nesting (501, or gRPC code 12
/// UNIMPLEMENTED, as ModelDB's newer run service answers).
fn nesting_unavailable(r: &super::client::Reply) -> bool {
    let code = r.body.get("code").and_then(Value::as_i64);
    is_absent(r) || r.status == 501 || code == Some(12)
}

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct ModelDbV2Settings {
    /// HTTP settings.
    pub api: ApiSettings,
    /// Experiment name override (else the record's).
    pub experiment: Option<String>,
    /// Changed-value policy.
    pub on_conflict: OnConflict,
    /// Create datasets and dataset versions for channels with S3 manifests.
    pub dataset_versions: bool,
    /// The registry's workspace for model packages' registered models.
    pub registry_workspace: String,
    /// Where the registry service lives (`/api/v1/registry` through Verta's web app).
    pub registry_api_prefix: String,
    /// How long a model package's version waits for its training job's run before it is
    /// written unlinked (measured from the package's creation).
    pub package_link_wait: std::time::Duration,
}

/// The sink.
#[derive(Debug, Clone)]
pub struct ModelDbV2Sink {
    settings: ModelDbV2Settings,
    api: Api,
    /// The same server under the registry's prefix.
    registry: Api,
}

impl ModelDbV2Sink {
    /// A sink with these settings.
    pub fn new(settings: ModelDbV2Settings) -> Result<Self, String> {
        let api = Api::new(&settings.api)?;
        let registry = Api::new(&ApiSettings { api_prefix: settings.registry_api_prefix.clone(), ..settings.api.clone() })?;
        Ok(ModelDbV2Sink { settings, api, registry })
    }

    fn sync_error(&self, e: V2Error) -> SyncError {
        let message = format!("ModelDB v2 at {}: {e}", self.settings.api.base_url);
        if e.is_stop() {
            tracing::debug!(error = %e, "ModelDB v2 request not sent");
            SyncError::Cancelled
        } else if e.is_retryable() {
            SyncError::transient_with(message, e)
        } else if e.is_setup() {
            SyncError::setup_with(message, e)
        } else {
            SyncError::permanent_with(message, e)
        }
    }

    fn experiment<'a>(&'a self, r: &'a RunRecord) -> &'a str {
        self.settings.experiment.as_deref().unwrap_or(&r.experiment)
    }

    /// Get-or-create by name: GET; absent → create; 409 → GET again.
    async fn get_or_create(
        &self,
        c: &Call<'_>,
        get: (&str, &[(&str, &str)]),
        create: (&str, Value),
        pick: &(dyn Fn(&Value) -> Option<String> + Send + Sync),
    ) -> Result<(String, bool), V2Error> {
        for round in 0..2 {
            let r = c.get(get.0, get.1).await?;
            if r.status == 200 {
                if let Some(id) = pick(&r.body) {
                    return Ok((id, false));
                }
                return Err(V2Error::Decode { op: get.0.into(), message: "no id in the response".into() });
            }
            if !is_absent(&r) {
                return Err(r.error(get.0));
            }
            if round == 1 {
                break;
            }
            let made = c.post(create.0, &create.1).await?;
            if made.status == 200 {
                if let Some(id) = pick(&made.body) {
                    return Ok((id, true));
                }
                return Err(V2Error::Decode { op: create.0.into(), message: "no id in the response".into() });
            }
            if made.status != 409 {
                return Err(made.error(create.0));
            }
            // Someone else created it meanwhile: fetch again.
        }
        Err(V2Error::Decode { op: get.0.into(), message: "still absent after a 409 on create".into() })
    }

    async fn project(&self, c: &Call<'_>, r: &RunRecord) -> Result<String, V2Error> {
        let name = r.project.name.as_str();
        let mut body = json!({"name": name, "description": r.project.description});
        if !r.project.user.is_empty() {
            body["attributes"] = json!([kv("owner", &json!(r.project.user))]);
        }
        Ok(self
            .get_or_create(c, ("/project/getProjectByName", &[("name", name)]), ("/project/createProject", body), &project_id_in)
            .await?
            .0)
    }

    async fn experiment_id(&self, c: &Call<'_>, project_id: &str, name: &str) -> Result<String, V2Error> {
        let pick = |b: &Value| field_str(b, "/experiment/id");
        Ok(self
            .get_or_create(
                c,
                ("/experiment/getExperimentByName", &[("project_id", project_id), ("name", name)]),
                ("/experiment/createExperiment", json!({"project_id": project_id, "name": name})),
                &pick,
            )
            .await?
            .0)
    }

    /// Dataset + version for a manifest channel; returns the version id. The version is tagged
    /// with the manifest's fingerprint, so one manifest never makes two versions.
    async fn dataset_version(
        &self,
        c: &Call<'_>,
        ds: &sagesync_core::Dataset,
        m: &sagesync_core::ChannelManifest,
    ) -> Result<String, V2Error> {
        let name = ds.uri.clone();
        let pick = |b: &Value| {
            field_str(b, "/dataset_by_user/id").or_else(|| field_str(b, "/shared_datasets/0/id")).or_else(|| field_str(b, "/dataset/id"))
        };
        let (dataset_id, _) = self
            .get_or_create(
                c,
                ("/dataset/getDatasetByName", &[("name", name.as_str())]),
                (
                    "/dataset/createDataset",
                    json!({"name": name, "dataset_type": "PATH", "description": format!("S3 data of channel {}", ds.name)}),
                ),
                &pick,
            )
            .await?;
        let tag = manifest_tag(m);
        let op = "/dataset-version/getAllDatasetVersionsByDatasetId";
        let r = c.get(op, &[("dataset_id", dataset_id.as_str())]).await?.ok(op)?;
        if let Some(v) = r.body.get("dataset_versions").and_then(Value::as_array).and_then(|vs| {
            vs.iter().find(|v| v.get("tags").and_then(Value::as_array).is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag.as_str()))))
        }) {
            if let Some(id) = field_str(v, "/id") {
                return Ok(id);
            }
        }
        let body = mapping::dataset_version_body(&dataset_id, ds, m);
        let op = "/dataset-version/createDatasetVersion";
        let made = c.post(op, &body).await?.ok(op)?;
        field_str(&made.body, "/dataset_version/id")
            .ok_or_else(|| V2Error::Decode { op: op.into(), message: "no dataset_version.id".into() })
    }

    async fn get_run(&self, c: &Call<'_>, experiment_id: &str, name: &str) -> Result<Option<Value>, V2Error> {
        let op = "/experiment-run/getExperimentRunByName";
        let r = c.get(op, &[("experiment_id", experiment_id), ("name", name)]).await?;
        if r.status == 200 {
            return Ok(r.body.get("experiment_run").cloned());
        }
        if is_absent(&r) {
            return Ok(None);
        }
        Err(r.error(op))
    }

    /// The id of experiment `experiment` of project `project`, when both exist (read only:
    /// nothing is created).
    async fn existing_experiment(&self, c: &Call<'_>, project: &str, experiment: &str) -> Result<Option<String>, V2Error> {
        let op = "/project/getProjectByName";
        let r = c.get(op, &[("name", project)]).await?;
        if is_absent(&r) {
            return Ok(None);
        }
        let Some(project_id) = project_id_in(&r.ok(op)?.body) else { return Ok(None) };
        let op = "/experiment/getExperimentByName";
        let r = c.get(op, &[("project_id", project_id.as_str()), ("name", experiment)]).await?;
        if is_absent(&r) {
            return Ok(None);
        }
        Ok(field_str(&r.ok(op)?.body, "/experiment/id"))
    }

    /// Writes what the stored run lacks ([`mapping::changes`]); returns (writes, kept
    /// conflicts).
    async fn reconcile(&self, c: &Call<'_>, run: &Value, d: &Desired) -> Result<(u32, u32), V2Error> {
        let id = field_str(run, "/id")
            .ok_or_else(|| V2Error::Decode { op: "getExperimentRunByName".into(), message: "run without id".into() })?;
        let todo = mapping::changes(&id, run, d, self.settings.on_conflict);
        for ch in &todo.requests {
            match ch.verb {
                Verb::Post => c.post(ch.op, &ch.body).await?,
                Verb::Delete => c.delete(ch.op, &ch.body).await?,
            }
            .ok(ch.op)?;
        }
        Ok((todo.requests.len() as u32, todo.conflicts))
    }

    /// Deletes the run with `run_id` if it is a run of `arn`; `false` when there was none.
    async fn delete_run_of(&self, c: &Call<'_>, run_id: &str, arn: &str) -> Result<bool, V2Error> {
        let op = "/experiment-run/getExperimentRunById";
        let r = c.get(op, &[("id", run_id)]).await?;
        if is_absent(&r) {
            return Ok(false);
        }
        let r = r.ok(op)?;
        let run = r.body.get("experiment_run").cloned().unwrap_or(Value::Null);
        if run_owner(&run).as_deref() != Some(arn) {
            tracing::warn!(run_id, "ModelDB v2: the run the ledger names now holds another job; left alone");
            return Ok(false);
        }
        let op = "/experiment-run/deleteExperimentRun";
        let d = c.delete(op, &json!({"id": run_id})).await?;
        if is_absent(&d) {
            return Ok(false);
        }
        if d.status != 200 {
            return Err(d.error(op));
        }
        Ok(true)
    }

    /// The ids of the runs an unfinished first write's names (project, experiment, run) lead
    /// to, read only: nothing is created.
    async fn runs_by_pending_names(&self, c: &Call<'_>, names: &PendingNames, arn: &str) -> Result<Vec<String>, V2Error> {
        let (project, run) = (&names.project, &names.run);
        let experiment = self.settings.experiment.clone().unwrap_or_else(|| names.experiment.clone());
        let Some(experiment_id) = self.existing_experiment(c, project, &experiment).await? else { return Ok(Vec::new()) };
        let mut ids = Vec::new();
        for name in [run.clone(), hashed_name(run, arn)] {
            if let Some(found) = self.get_run(c, &experiment_id, &name).await? {
                if run_owner(&found).as_deref() == Some(arn) {
                    ids.extend(field_str(&found, "/id"));
                }
            }
        }
        Ok(ids)
    }

    /// After a move (the job's project, experiment or run name changed), deletes the run the
    /// previous write made, so that the ARN keeps one run.
    async fn remove_previous(&self, c: &Call<'_>, cx: &WriteContext, current_run_id: &str, arn: &str) -> Result<(), V2Error> {
        let Some(old) = cx.previous.as_ref().and_then(|p| p.ids.get("run_id")) else { return Ok(()) };
        if old.is_empty() || old == current_run_id {
            return Ok(());
        }
        if self.delete_run_of(c, old, arn).await? {
            tracing::info!(old_run_id = %old, run_id = current_run_id, "ModelDB v2: the job moved; its previous run was deleted");
        }
        Ok(())
    }

    /// The id of the run of the job `arn` called `name` (or its hashed name) in the experiment.
    async fn run_of(&self, c: &Call<'_>, experiment_id: &str, name: &str, arn: &str) -> Result<Option<String>, V2Error> {
        for n in [name.to_string(), hashed_name(name, arn)] {
            if let Some(run) = self.get_run(c, experiment_id, &n).await? {
                if run_owner(&run).as_deref() == Some(arn) {
                    return Ok(field_str(&run, "/id"));
                }
            }
        }
        Ok(None)
    }

    async fn set_parent(&self, c: &Call<'_>, run_id: &str, parent_id: &str) -> Result<(), V2Error> {
        let op = "/experiment-run/setParentExperimentRunId";
        let r = c.post(op, &json!({"experiment_run_id": run_id, "parent_id": parent_id})).await?;
        if nesting_unavailable(&r) {
            // A run deleted meanwhile (a job that moved), or a server without nesting.
            tracing::info!(run_id, parent_id, status = r.status, "ModelDB v2: the run was not nested");
            return Ok(());
        }
        r.ok(op)?;
        Ok(())
    }

    /// Nests runs as ModelDB v2 does (`parent_id`), whichever of parent and child is written
    /// first: a child's run gets its parent's run id when the parent's run is in the experiment;
    /// a parent's run, after each write, gives its id to its children's runs that exist and lack
    /// it (those already nested are read in one call). Each side writes its own run first.
    async fn link(&self, c: &Call<'_>, r: &RunRecord, experiment_id: &str, run_id: &str, run: Option<&Value>) -> Result<(), V2Error> {
        if let Some(p) = &r.lineage.parent {
            if let Some(parent_id) = self.run_of(c, experiment_id, &p.name, &p.arn).await? {
                if run.and_then(|v| field_str(v, "/parent_id")).as_deref() != Some(parent_id.as_str()) {
                    self.set_parent(c, run_id, &parent_id).await?;
                }
            }
        }
        if r.lineage.kind.is_parent() && !r.lineage.children.is_empty() {
            let op = "/experiment-run/getChildrenExperimentRuns";
            let got = c.get(op, &[("experiment_run_id", run_id)]).await?;
            if nesting_unavailable(&got) {
                tracing::info!(run_id, status = got.status, "ModelDB v2: this server does not nest runs; the children stay flat");
                return Ok(());
            }
            let got = got.ok(op)?;
            let nested: std::collections::BTreeSet<String> =
                got.body.get("experiment_runs").and_then(Value::as_array).into_iter().flatten().filter_map(run_owner).collect();
            for child in r.lineage.children.iter().filter(|ch| !nested.contains(&ch.arn)) {
                if let Some(child_id) = self.run_of(c, experiment_id, &child.name, &child.arn).await? {
                    self.set_parent(c, &child_id, run_id).await?;
                }
            }
        }
        Ok(())
    }

    async fn upsert_inner(&self, c: &Call<'_>, r: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, V2Error> {
        let project_id = self.project(c, r).await?;
        let experiment_id = self.experiment_id(c, &project_id, self.experiment(r)).await?;
        let mut d = desired(r);
        if self.settings.dataset_versions {
            for (i, ds) in r.datasets.iter().enumerate() {
                if let (Some(m), Some(entry)) = (&ds.manifest, d.datasets.get_mut(i)) {
                    let version = self.dataset_version(c, ds, m).await?;
                    entry["linked_artifact_id"] = json!(version);
                }
            }
        }
        let receipt = |run_id: String, kind: WriteKind| {
            SinkReceipt::new(kind).id("project_id", &project_id).id("experiment_id", &experiment_id).id("run_id", run_id)
        };
        // One run per ARN: the plain name unless another job's run holds it (a namesake from
        // another account or region), then the hashed name.
        let arn = r.run.external_id.as_str();
        let names = [r.run.name.clone(), hashed_run_name(r)];
        let mut found: Option<(String, Value)> = None;
        // The job's run under either name first: a run under the hashed name stays there even
        // after the plain name is freed (no flip, no second run).
        for name in &names {
            if let Some(run) = self.get_run(c, &experiment_id, name).await? {
                if run_owner(&run).as_deref() == Some(arn) {
                    found = Some((name.clone(), run));
                    break;
                }
            }
        }
        for name in names.iter().filter(|_| found.is_none()) {
            match self.get_run(c, &experiment_id, name).await? {
                Some(run) if run_owner(&run).as_deref() == Some(arn) => {
                    found = Some((name.clone(), run));
                    break;
                }
                Some(_) => continue,
                None => {}
            }
            let body = mapping::create_body(r, &project_id, &experiment_id, name, &d);
            let op = "/experiment-run/createExperimentRun";
            let made = c.post(op, &body).await?;
            match made.status {
                200 => {
                    let id = field_str(&made.body, "/experiment_run/id")
                        .ok_or_else(|| V2Error::Decode { op: op.into(), message: "no experiment_run.id".into() })?;
                    // The histories, in requests of a bounded size (a creation stays small).
                    for ch in mapping::observation_requests(&id, &d.observations) {
                        c.post(ch.op, &ch.body).await?.ok(ch.op)?;
                    }
                    self.remove_previous(c, cx, &id, arn).await?;
                    self.link(c, r, &experiment_id, &id, None).await?;
                    return Ok(receipt(id, WriteKind::Created));
                }
                409 => {
                    // Another writer created it meanwhile: ours to reconcile, or a namesake's.
                    match self.get_run(c, &experiment_id, name).await? {
                        Some(run) if run_owner(&run).as_deref() == Some(arn) => {
                            found = Some((name.clone(), run));
                            break;
                        }
                        Some(_) => continue,
                        None => return Err(made.error(op)),
                    }
                }
                _ => return Err(made.error(op)),
            }
        }
        let Some((run_name, run)) = found else {
            return Err(V2Error::Decode {
                op: "getExperimentRunByName".into(),
                message: format!("both run names of this job ({}) hold other jobs' runs", names.join(", ")),
            });
        };
        let run_id = field_str(&run, "/id").unwrap_or_default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = if attempt == 1 { run.clone() } else { self.get_run(c, &experiment_id, &run_name).await?.unwrap_or(Value::Null) };
            match self.reconcile(c, &current, &d).await {
                Ok((writes, conflicts)) => {
                    self.remove_previous(c, cx, &run_id, arn).await?;
                    let before = c.writes();
                    self.link(c, r, &experiment_id, &run_id, Some(&current)).await?;
                    let nested = c.writes() > before;
                    let mut rc = receipt(run_id.clone(), if writes == 0 && !nested { WriteKind::Unchanged } else { WriteKind::Updated });
                    if conflicts > 0 {
                        rc = rc.id("kept_conflicts", conflicts);
                    }
                    return Ok(rc);
                }
                // A concurrent writer logged the same key: diff again against the fresh run.
                Err(e) if e.status() == Some(409) && attempt < 3 => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Why a model package's write stopped short of the registry.
enum PackageError {
    /// A request failed.
    Api(V2Error),
    /// The version waits for its training job's run (retried later).
    Waiting(String),
    /// The package's record cannot be written (permanent).
    Content(String),
    /// The server has no registry service (the open-source ModelDB 2.x has none).
    NoRegistry(String),
    /// The setup refuses (a workspace the server does not have).
    Setup(String),
}

impl From<V2Error> for PackageError {
    fn from(e: V2Error) -> Self {
        PackageError::Api(e)
    }
}

/// Whether a reply is the plain `404 Not Found` of a route the server does not serve (the
/// open-source proxy's answer to every registry path), not ModelDB's JSON "absent" (code 5).
fn unrouted(r: &super::client::Reply) -> bool {
    r.status == 404 && r.body.get("code").is_none()
}

impl ModelDbV2Sink {
    fn package_error(&self, e: PackageError) -> SyncError {
        let at = &self.settings.api.base_url;
        match e {
            PackageError::Api(e) => self.sync_error(e),
            PackageError::Waiting(m) => SyncError::transient(format!("ModelDB v2 at {at}: {m}")),
            PackageError::Content(m) => SyncError::permanent(format!("ModelDB v2 at {at}: {m}")),
            PackageError::Setup(m) => SyncError::setup(format!("ModelDB v2 at {at}: {m}")),
            PackageError::NoRegistry(op) => SyncError::setup(format!(
                "ModelDB v2 at {at}: {op}: HTTP 404 on a registry path: this server serves no registry service (the open-source ModelDB 2.x has none; Verta's platform does): leave \"model_packages\" out of [source] resources for this sink"
            )),
        }
    }

    fn registry_base(&self, model: &str) -> String {
        format!("/workspaces/{}/registered_models/{}", seg(&self.settings.registry_workspace), seg(model))
    }

    /// The registered model of a package group, created when absent; its id.
    async fn registered_model(&self, c: &Call<'_>, model: &str) -> Result<String, PackageError> {
        let get = self.registry_base(model);
        let create = format!("/workspaces/{}/registered_models", seg(&self.settings.registry_workspace));
        let pick = |b: &Value| field_str(b, "/registered_model/id");
        for round in 0..2 {
            let r = c.get(&get, &[]).await?;
            if unrouted(&r) {
                return Err(PackageError::NoRegistry(get));
            }
            if r.status == 200 {
                return pick(&r.body).ok_or_else(|| V2Error::Decode { op: get.clone(), message: "no registered_model.id".into() }.into());
            }
            if !is_absent(&r) {
                return Err(r.error(&get).into());
            }
            if round == 1 {
                break;
            }
            let body = json!({"name": model, "description": "SageMaker model package group", "labels": [registry::SAGEMAKER_LABEL]});
            let made = c.post(&create, &body).await?;
            if unrouted(&made) {
                return Err(PackageError::NoRegistry(create));
            }
            if made.status == 200 {
                return pick(&made.body)
                    .ok_or_else(|| V2Error::Decode { op: create.clone(), message: "no registered_model.id".into() }.into());
            }
            if made.status == 404 || made.status == 403 {
                // The workspace is not one this server (or these credentials) has: the setup's.
                let said = made.body.get("message").and_then(Value::as_str).unwrap_or("").to_string();
                return Err(PackageError::Setup(format!(
                    "{create}: HTTP {} ({said}): check `registry_workspace` (\"{}\") and the developer key",
                    made.status, self.settings.registry_workspace
                )));
            }
            if made.status != 409 {
                return Err(made.error(&create).into());
            }
            // Created meanwhile by another writer: read it.
        }
        Err(V2Error::Decode { op: get, message: "still absent after a 409 on create".into() }.into())
    }

    /// The versions of registered model `rm_id` named `name`.
    async fn versions_named(&self, c: &Call<'_>, rm_id: &str, name: &str) -> Result<Vec<Value>, PackageError> {
        let op = format!("/registered_models/{}/model_versions/find", seg(rm_id));
        let body = json!({"predicates": [{"key": "version", "value": name, "operator": "EQ"}]});
        let r = c.post(&op, &body).await?;
        if unrouted(&r) {
            return Err(PackageError::NoRegistry(op));
        }
        if is_absent(&r) {
            // The registered model went meanwhile: the store's state, tried again.
            return Err(PackageError::Api(V2Error::Connection {
                op,
                message: "the registered model is gone (404): tried again later".into(),
            }));
        }
        let r = r.ok(&op)?;
        Ok(r.body.get("model_versions").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// The package's version in registered model `rm_id`: under its plain name or, when another
    /// package's version holds that, its hashed name.
    async fn package_version(&self, c: &Call<'_>, rm_id: &str, names: &[String], arn: &str) -> Result<Option<Value>, PackageError> {
        for name in names {
            if let Some(v) =
                self.versions_named(c, rm_id, name).await?.into_iter().find(|v| registry::version_owner(v).as_deref() == Some(arn))
            {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The run this sink wrote for the training job `job` in the package's project and
    /// experiment (read only: nothing is created).
    async fn job_run(&self, c: &Call<'_>, r: &RunRecord, job: &str) -> Result<Option<String>, V2Error> {
        let Some(experiment_id) = self.existing_experiment(c, &r.project.name, self.experiment(r)).await? else { return Ok(None) };
        // The job's name as the source read it (SageMaker lower-cases the name in an ARN; the
        // run is named after the job's own).
        let name = r
            .lineage
            .children
            .iter()
            .find(|ch| ch.arn == job)
            .map(|ch| ch.name.as_str())
            .unwrap_or_else(|| job.rsplit('/').next().unwrap_or(job));
        self.run_of(c, &experiment_id, name, job).await
    }

    async fn upsert_package(&self, c: &Call<'_>, rg: &Call<'_>, r: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, PackageError> {
        let Some(p) = r.lineage.package.as_ref() else {
            return Err(PackageError::Content("a model package's record without its package".into()));
        };
        let d = registry::desired_version(r, p);
        if d.model.is_empty() {
            return Err(PackageError::Content(format!("model package {}: no group name", d.arn)));
        }
        let prev = cx.previous.as_ref();
        // The run of the training job: found once, it stays the version's.
        let run_id = match (&d.training_job_arn, prev.and_then(|p| p.ids.get("run_id"))) {
            (Some(_), Some(known)) => Some(known.clone()),
            (Some(job), None) => self.job_run(c, r, job).await?,
            (None, _) => None,
        };
        if let (Some(job), None) = (&d.training_job_arn, &run_id) {
            if r.started_within(self.settings.package_link_wait) && prev.is_none_or(|p| !p.ids.contains_key("model_version_id")) {
                return Err(PackageError::Waiting(format!(
                    "model package {}: its training job {job} has no run here yet; the version waits for it (up to package_link_wait_secs)",
                    d.arn
                )));
            }
            tracing::warn!(package = %d.arn, job = %job, "ModelDB v2: the training job's run did not come within package_link_wait_secs; the version is written unlinked (the job's ARN in its readme)");
        }
        let digest = d.digest(run_id.as_deref());
        if let Some(prev) = prev {
            if prev.ids.get("digest") == Some(&digest) && prev.ids.contains_key("model_version_id") {
                let mut rc = prev.clone();
                rc.write = WriteKind::Unchanged;
                rc.writes = 0;
                return Ok(rc);
            }
        }
        let rm_id = self.registered_model(rg, &d.model).await?;
        let names = [d.version.clone(), hashed_name(&d.version, &d.arn)];
        let mut run_id = run_id;
        let mut relooked = false;
        // The version the receipt names, if it is still there (whatever its description says
        // now), else the one the package's names and ARN lead to.
        let mut kind = WriteKind::Unchanged;
        let mut version = match prev.and_then(|p| p.ids.get("model_version_id")) {
            Some(mv) => self.version_by_id(rg, &rm_id, mv).await?,
            None => None,
        };
        if version.is_none() {
            version = self.package_version(rg, &rm_id, &names, &d.arn).await?;
        }
        let mut written_run = run_id.clone();
        loop {
            let sent = match &version {
                None => {
                    let create = format!("{}/model_versions", self.registry_base(&d.model));
                    let mut outcome = None;
                    for name in &names {
                        let made = rg.post(&create, &d.create_body(name, run_id.as_deref())).await?;
                        if made.status == 200 {
                            version = made.body.get("model_version").cloned();
                            kind = WriteKind::Created;
                            outcome = Some(Ok(()));
                            break;
                        }
                        if made.status != 409 {
                            outcome = Some(Err((create.clone(), made)));
                            break;
                        }
                        // The name is taken: by this package (another writer), or by another's.
                        if let Some(v) = self.package_version(rg, &rm_id, std::slice::from_ref(name), &d.arn).await? {
                            version = Some(v);
                            break;
                        }
                    }
                    match outcome {
                        Some(o) => o,
                        // Found another writer's: brought up to date below.
                        None if version.is_some() => continue,
                        None => {
                            return Err(PackageError::Content(format!(
                                "model package {}: both version names ({}) of registered model {} hold other packages' versions",
                                d.arn,
                                names.join(", "),
                                d.model
                            )))
                        }
                    }
                }
                Some(v) if kind != WriteKind::Created => match d.update_body(v, run_id.as_deref()) {
                    Some(body) => {
                        let mv_id = field_str(v, "/id").unwrap_or_default();
                        let op = format!("/registered_models/{}/model_versions/{}", seg(&rm_id), seg(&mv_id));
                        let put = rg.put(&op, &body).await?;
                        if put.status == 200 {
                            kind = WriteKind::Updated;
                            version = Some(put.body.get("model_version").cloned().unwrap_or(body));
                            Ok(())
                        } else {
                            Err((op, put))
                        }
                    }
                    None => Ok(()),
                },
                Some(_) => Ok(()),
            };
            match sent {
                Ok(()) => break,
                // A 404 on a write is the store's state, never the package's content: the run
                // the receipt named may be gone (the job's run moved); it is looked up once
                // again, and otherwise the failure is retried later.
                Err((op, reply)) if reply.status == 404 => {
                    if !relooked {
                        if let Some(job) = &d.training_job_arn {
                            relooked = true;
                            // No run of the job any more: the link the version holds is
                            // dropped (an empty `experiment_run_id`), as a run that is gone
                            // cannot be linked.
                            let fresh = match self.job_run(c, r, job).await? {
                                Some(run) => Some(run),
                                None if run_id.is_some() => Some(String::new()),
                                None => None,
                            };
                            if fresh != run_id {
                                run_id = fresh;
                                written_run = run_id.clone();
                                continue;
                            }
                        }
                    }
                    if unrouted(&reply) {
                        return Err(PackageError::NoRegistry(op));
                    }
                    let said = reply.body.get("message").and_then(Value::as_str).unwrap_or("").to_string();
                    return Err(PackageError::Api(V2Error::Connection {
                        op,
                        message: format!("HTTP 404 on a registry write ({said}): the store's state, tried again later"),
                    }));
                }
                Err((op, reply)) => return Err(reply.error(&op).into()),
            }
        }
        let Some(version) = version else {
            return Err(V2Error::Decode { op: "model version".into(), message: "no model_version in the reply".into() }.into());
        };
        let mv_id = field_str(&version, "/id").ok_or_else(|| V2Error::Decode { op: "model version".into(), message: "no id".into() })?;
        // The run the version holds now: the one this write sent, else the one it kept.
        let held = match written_run {
            Some(run) => Some(run).filter(|x| !x.is_empty()),
            None => field_str(&version, "/experiment_run_id").filter(|x| !x.is_empty()),
        };
        let mut rc = SinkReceipt::new(kind)
            .id("registered_model_id", &rm_id)
            .id("model_version_id", &mv_id)
            .id("version", field_str(&version, "/version").unwrap_or_default())
            .id("digest", d.digest(held.as_deref()));
        if let Some(run) = held {
            rc = rc.id("run_id", run);
        }
        Ok(rc)
    }

    /// The version `mv_id` of registered model `rm_id`, if it is there.
    async fn version_by_id(&self, rg: &Call<'_>, rm_id: &str, mv_id: &str) -> Result<Option<Value>, PackageError> {
        let op = format!("/model_versions/{}", seg(mv_id));
        let got = rg.get(&op, &[]).await?;
        if unrouted(&got) {
            return Err(PackageError::NoRegistry(op));
        }
        if is_absent(&got) {
            return Ok(None);
        }
        let got = got.ok(&op)?;
        Ok(got.body.get("model_version").filter(|v| field_str(v, "/registered_model_id").as_deref() == Some(rm_id)).cloned())
    }

    /// Deletes the registry version of the package `arn`: the one the receipt names, or the
    /// ones its group and version name lead to.
    async fn retract_package(&self, c: &Call<'_>, arn: &str, cx: &WriteContext) -> Result<u32, PackageError> {
        let mut found: Vec<(String, String)> = Vec::new();
        if let Some(prev) = cx.previous.as_ref() {
            if let (Some(rm), Some(mv)) = (prev.ids.get("registered_model_id"), prev.ids.get("model_version_id")) {
                let op = format!("/model_versions/{}", seg(mv));
                let got = c.get(&op, &[]).await?;
                if unrouted(&got) {
                    return Err(PackageError::NoRegistry(op));
                }
                if !is_absent(&got) {
                    let got = got.ok(&op)?;
                    if got.body.get("model_version").and_then(registry::version_owner).as_deref() == Some(arn) {
                        found.push((rm.clone(), mv.clone()));
                    }
                }
            }
        }
        if found.is_empty() {
            if let Some((group, version)) = registry::package_of_arn(arn) {
                let get = self.registry_base(group);
                let r = c.get(&get, &[]).await?;
                if unrouted(&r) {
                    return Err(PackageError::NoRegistry(get));
                }
                if r.status == 200 {
                    if let Some(rm) = field_str(&r.body, "/registered_model/id") {
                        let names = [version.to_string(), hashed_name(version, arn)];
                        if let Some(v) = self.package_version(c, &rm, &names, arn).await? {
                            found.extend(field_str(&v, "/id").map(|mv| (rm.clone(), mv)));
                        }
                    }
                } else if !is_absent(&r) {
                    return Err(r.error(&get).into());
                }
            }
        }
        let mut removed = 0;
        for (rm, mv) in found {
            let op = format!("/registered_models/{}/model_versions/{}", seg(&rm), seg(&mv));
            let d = c.delete_plain(&op).await?;
            if is_absent(&d) {
                continue;
            }
            d.ok(&op)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// A path segment: percent-encoded (a group name is letters, digits and hyphens; a workspace
/// name may hold more).
fn seg(s: &str) -> String {
    sagesync_core::text::percent_encoded(s)
}

#[async_trait]
impl Sink for ModelDbV2Sink {
    async fn upsert(&self, record: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        let c = self.api.call(cx);
        if record.lineage.kind == sagesync_core::ResourceKind::ModelPackage {
            let rg = self.registry.call(cx);
            return match self.upsert_package(&c, &rg, record, cx).await {
                Ok(mut rc) => {
                    rc.writes = c.writes() + rg.writes();
                    Ok(rc)
                }
                Err(e) => Err(self.package_error(e)),
            };
        }
        match self.upsert_inner(&c, record, cx).await {
            Ok(mut rc) => {
                rc.writes = c.writes();
                Ok(rc)
            }
            Err(e) => Err(self.sync_error(e)),
        }
    }

    async fn retract(&self, external_id: &str, cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        let c = &self.api.call(cx);
        let mut rc = SinkReceipt::new(WriteKind::Removed);
        if registry::package_of_arn(external_id).is_some() {
            let rg = &self.registry.call(cx);
            rc.writes = self.retract_package(rg, external_id, cx).await.map_err(|e| self.package_error(e))?;
            return Ok(Some(rc));
        }
        let run_ids = match (&cx.previous, &cx.pending) {
            (Some(previous), _) => {
                for (k, v) in &previous.ids {
                    if k == "project_id" || k == "experiment_id" || k == "run_id" {
                        rc = rc.id(k, v);
                    }
                }
                previous.ids.get("run_id").cloned().into_iter().collect()
            }
            // A write whose outcome the ledger never learned (the process stopped before its
            // commit): the names it was written under lead to the run, if it exists.
            (None, Some(names)) => self.runs_by_pending_names(c, names, external_id).await.map_err(|e| self.sync_error(e))?,
            (None, None) => return Ok(Some(rc)),
        };
        for id in run_ids {
            rc.writes += u32::from(self.delete_run_of(c, &id, external_id).await.map_err(|e| self.sync_error(e))?);
        }
        Ok(Some(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::Reply;
    use super::*;

    #[test]
    fn nesting_is_skipped_where_it_cannot_be_done_and_fails_otherwise() {
        let r = |status: u16, body: Value| Reply { status, body };
        assert!(nesting_unavailable(&r(501, json!({}))), "not implemented");
        assert!(nesting_unavailable(&r(500, json!({"code": 12, "message": "UNIMPLEMENTED"}))), "gRPC UNIMPLEMENTED");
        assert!(nesting_unavailable(&r(404, json!({"code": 5}))), "a run gone meanwhile");
        assert!(!nesting_unavailable(&r(503, json!({"code": 14}))), "unavailable for now: retried");
        assert!(!nesting_unavailable(&r(400, json!({"code": 3}))), "a bad request is a failure");
    }
}
