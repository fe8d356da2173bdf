//! Randomised soak test (issue 11, "Tests"): while `sagesyncd` polls moto, jobs are created,
//! modified, re-tagged and untagged; SageMaker calls are throttled at random, the daemon is
//! killed with SIGKILL and restarted, and the ModelDB v1 sink is taken down for a while. At the
//! end every eligible job is in every sink exactly once, matching its latest state, and the file
//! sink holds nothing else.
//!
//! `SAGESYNC_SOAK_SEED` replays a run's sequence of actions (the interleaving with the daemon
//! depends on timing, so a failure may need a few runs to show again); `SAGESYNC_SOAK_SECS`
//! (default 60) sets the length of the run: about 60 % of it mutates, the rest converges (a
//! converging phase may take longer, up to `SAGESYNC_SOAK_CONVERGE_SECS`, default 90).
//!
//! The test keeps its own model of every job (tags, status, final metrics). "Eligible" is what
//! the default validators of the config below let through: `required_tags` (the opt-in tag
//! `MODEL_DB_SYNC` and the five `MODEL_DB_PROJECT_NAME/USER/DESC`, `MODEL_DB_MODEL_NAME/TYPE`
//! tags, non-empty here) and `status` (`Completed`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sagemaker::types::Tag;
use chrono::{DateTime, SubsecRound, Utc};
use sagesync_test_support::bin::private_bin;
use sagesync_test_support::modeldb_v1::Peer;
use sagesync_test_support::moto::{create_job, Moto, SYNC_TAGS, TEST_ENV};
use sagesync_test_support::ports::HeldPort;
use sagesync_test_support::stderr::StderrLog;
use sagesync_test_support::throttle::RandomThrottler as Throttle;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};

const SYNC: &str = "MODEL_DB_SYNC";
const PROJECT: &str = "MODEL_DB_PROJECT_NAME";
const USER: &str = "MODEL_DB_PROJECT_USER";
const DESC: &str = "MODEL_DB_PROJECT_DESC";
const MODEL_NAME: &str = "MODEL_DB_MODEL_NAME";
const MODEL_TYPE: &str = "MODEL_DB_MODEL_TYPE";
/// The tags `required_tags` wants besides the opt-in tag.
const REQUIRED: [&str; 5] = [PROJECT, USER, DESC, MODEL_NAME, MODEL_TYPE];
/// Projects a job moves between. The project user stays `soak`: ModelDB v1 keys a project by
/// name and author, so every project here is one v1 project.
const PROJECTS: [&str; 3] = ["soak-a", "soak-b", "soak-c"];
const METRICS: [&str; 3] = ["validation:auc", "train:loss", "test:f1"];

// --- A gate in front of the ModelDB v1 peer ------------------------------------------------

/// The v1 peer keeps its tables in memory, so it is never killed: the sink is taken down by a
/// TCP gate in front of it instead, which forwards (`Open`), refuses connections (`Refuse`: no
/// socket listens on the port, which a [`HeldPort`] keeps for the gate), or accepts them and
/// never answers (`Blackhole`: the sink's request timeout fires). Leaving `Open` cuts every
/// connection in flight, so a job's write can stop half-way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GateMode {
    Open,
    Refuse,
    Blackhole,
}

struct Gate {
    held: HeldPort,
    upstream: u16,
    mode: tokio::sync::watch::Sender<GateMode>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Gate {
    fn start(upstream: u16) -> Gate {
        let g = Gate { held: HeldPort::new(), upstream, mode: tokio::sync::watch::channel(GateMode::Open).0, accept: Mutex::new(None) };
        g.listen();
        g
    }

    fn port(&self) -> u16 {
        self.held.port
    }

    fn listen(&self) {
        let s = TcpSocket::new_v4().unwrap();
        s.set_reuseport(true).unwrap();
        s.set_reuseaddr(true).unwrap();
        s.bind(([127, 0, 0, 1], self.held.port).into()).unwrap();
        let listener = s.listen(128).unwrap();
        let (upstream, rx) = (self.upstream, self.mode.subscribe());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let mode = *rx.borrow_and_update();
                    match mode {
                        GateMode::Open => {
                            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                            let mut conn = conn;
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut conn, &mut up) => {}
                                _ = rx.changed() => {}
                            }
                        }
                        // Held without a byte until the gate changes, then dropped.
                        GateMode::Blackhole => {
                            let _ = rx.changed().await;
                            drop(conn);
                        }
                        GateMode::Refuse => drop(conn),
                    }
                });
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    fn set(&self, mode: GateMode) {
        if *self.mode.borrow() == mode {
            return;
        }
        self.mode.send_replace(mode);
        let mut accept = self.accept.lock().unwrap();
        match mode {
            GateMode::Refuse => {
                if let Some(t) = accept.take() {
                    t.abort();
                }
            }
            GateMode::Open | GateMode::Blackhole => {
                if accept.is_none() {
                    drop(accept);
                    // The aborted accept loop drops its listener when it is next polled.
                    std::thread::sleep(Duration::from_millis(50));
                    self.listen();
                }
            }
        }
    }
}

// --- The daemon ----------------------------------------------------------------------------

struct Daemon {
    child: Child,
    /// The port of /metrics (0 when the daemon aborted before it served it).
    port: u16,
    /// `SAGESYNC_CRASH_AT`, when this daemon was started with it.
    crash: Option<String>,
}

impl Daemon {
    /// Starts sagesyncd; with `crash`, as `SAGESYNC_CRASH_AT` (it aborts itself at that step,
    /// like `kill -9`).
    fn start(cfg: &Path, dir: &Path, log: &StderrLog, seed: u64, crash: Option<String>) -> Daemon {
        let addr_file = dir.join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = Command::new(private_bin(env!("CARGO_BIN_EXE_sagesyncd")));
        cmd.current_dir(dir)
            .args(["--config", cfg.to_str().unwrap(), "--listen-file", addr_file.to_str().unwrap()])
            .envs(TEST_ENV)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log.stdio());
        if let Some(c) = &crash {
            cmd.env("SAGESYNC_CRASH_AT", c);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(a) = std::fs::read_to_string(&addr_file).ok().and_then(|t| t.trim().parse::<std::net::SocketAddr>().ok()) {
                break a.port();
            }
            if let Some(status) = child.try_wait().unwrap() {
                if crash.is_some() {
                    break 0;
                }
                panic!("seed {seed}: sagesyncd exited ({status}) before it served /healthz");
            }
            assert!(Instant::now() < deadline, "seed {seed}: sagesyncd did not report its address within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        Daemon { child, port, crash }
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One series of /metrics (0 while it does not exist or the daemon does not answer).
    async fn metric(&self, series: &str) -> f64 {
        let Ok(r) = sagesync_test_support::http()
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.sigkill();
    }
}

// --- The test's model of the jobs ----------------------------------------------------------

#[derive(Debug, Clone)]
struct Job {
    name: String,
    arn: String,
    tags: BTreeMap<String, String>,
    status: &'static str,
    /// The final metrics, by name (the shortest decimals of 32-bit floats, as SageMaker reports
    /// them).
    metrics: BTreeMap<String, f64>,
    last_modified: DateTime<Utc>,
    /// Projects in which the job was eligible at some moment (ModelDB v1 may hold a run there).
    eligible_in: BTreeSet<String>,
    history: Vec<String>,
}

impl Job {
    fn eligible(&self) -> bool {
        self.status == "Completed"
            && self.tags.contains_key(SYNC)
            && REQUIRED.iter().all(|k| self.tags.get(*k).is_some_and(|v| !v.is_empty()))
    }
    fn project(&self) -> Option<&str> {
        self.tags.get(PROJECT).map(String::as_str)
    }
    fn note(&mut self, t0: Instant, what: String) {
        if self.eligible() {
            let p = self.project().unwrap().to_string();
            self.eligible_in.insert(p);
        }
        self.history.push(format!(
            "{:>6.1} s {what} -> {}",
            t0.elapsed().as_secs_f64(),
            if self.eligible() { "eligible" } else { "ineligible" }
        ));
    }
}

fn full_tags(rng: &mut fastrand::Rng) -> BTreeMap<String, String> {
    [
        (SYNC, "true".to_string()),
        (PROJECT, PROJECTS[rng.usize(..PROJECTS.len())].to_string()),
        (USER, "soak".to_string()),
        (DESC, "soak test jobs".to_string()),
        (MODEL_NAME, "xgb".to_string()),
        (MODEL_TYPE, "XGBoost".to_string()),
        ("team", format!("team-{}", rng.u32(0..5))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn to_chrono(t: &aws_sdk_sagemaker::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap()
}

struct World {
    seed: u64,
    t0: Instant,
    rng: fastrand::Rng,
    moto: Moto,
    client: aws_sdk_sagemaker::Client,
    jobs: Vec<Job>,
    actions: BTreeMap<&'static str, usize>,
}

impl World {
    /// Creates a job: eligible, without the opt-in tag, opted in but missing a required tag
    /// (rejected), or with no sagesync tag at all.
    async fn create(&mut self) {
        let name = format!("soak-{:04}", self.jobs.len());
        let mut tags = full_tags(&mut self.rng);
        let kind = match self.rng.u32(0..100) {
            0..=59 => "eligible",
            60..=74 => {
                tags.remove(SYNC);
                "no opt-in tag"
            }
            75..=84 => {
                tags.remove(REQUIRED[1 + self.rng.usize(..4)]);
                "a required tag missing"
            }
            _ => {
                tags.retain(|k, _| k == "team");
                "no sagesync tag"
            }
        };
        let list: Vec<(String, String)> = tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        create_job(&self.client, &name, &list).await;
        let d = self.client.describe_training_job().training_job_name(&name).send().await.unwrap();
        let metrics = d
            .final_metric_data_list()
            .iter()
            .filter_map(|m| Some((m.metric_name()?.to_string(), f64::from(m.value()?))))
            .collect::<BTreeMap<_, _>>();
        let mut job = Job {
            name,
            arn: d.training_job_arn().unwrap().to_string(),
            tags,
            status: "Completed",
            metrics,
            last_modified: d.last_modified_time().map(to_chrono).unwrap_or_else(Utc::now),
            eligible_in: BTreeSet::new(),
            history: Vec::new(),
        };
        assert_eq!(d.training_job_status().map(|s| s.as_str()), Some("Completed"), "seed {}: moto completes jobs at once", self.seed);
        job.note(self.t0, format!("created ({kind})"));
        self.jobs.push(job);
        *self.actions.entry("create").or_default() += 1;
    }

    /// Changes a job's final metrics (and now and then its status) and moves its
    /// `LastModifiedTime` to now (strictly later than before, in whole seconds).
    fn modify(&mut self) {
        let i = self.rng.usize(..self.jobs.len());
        let now = Utc::now().trunc_subsecs(0);
        let job = &mut self.jobs[i];
        let lm = now.max(job.last_modified.trunc_subsecs(0) + chrono::Duration::seconds(1));
        let mut metrics = BTreeMap::new();
        for m in METRICS {
            if metrics.is_empty() || self.rng.bool() {
                // SageMaker's metric values are 32-bit floats; what a job shows (console,
                // Describe) is the shortest decimal of one, and that is what every sink records.
                let x = self.rng.f32();
                metrics.insert(m.to_string(), format!("{x}").parse::<f64>().unwrap_or(0.0));
            }
        }
        let mut set = json!({
            "LastModifiedTime": lm.to_rfc3339(),
            "FinalMetricDataList": metrics.iter().map(|(k, v)| json!({"MetricName": k, "Value": v, "Timestamp": lm.to_rfc3339()})).collect::<Vec<_>>(),
        });
        let mut what = format!("modified: metrics {metrics:?}");
        if self.rng.u32(0..100) < 15 {
            let status = if job.status == "Completed" { "Failed" } else { "Completed" };
            set["TrainingJobStatus"] = json!(status);
            job.status = status;
            what.push_str(&format!(", status {status}"));
        }
        self.moto.edit(&job.name, set);
        job.metrics = metrics;
        job.last_modified = lm;
        job.note(self.t0, what);
        *self.actions.entry("modify").or_default() += 1;
    }

    /// Adds or removes tags (AddTags and DeleteTags do not move `LastModifiedTime`).
    async fn retag(&mut self) {
        let i = self.rng.usize(..self.jobs.len());
        let roll = self.rng.u32(0..100);
        let job = &self.jobs[i];
        let mut add: Vec<(String, String)> = Vec::new();
        let mut remove: Vec<String> = Vec::new();
        let what;
        if roll < 25 && !job.eligible() {
            // Opt in: every missing sagesync tag.
            let full = full_tags(&mut self.rng);
            add = full.into_iter().filter(|(k, _)| !job.tags.contains_key(k)).collect();
            what = "opted in";
        } else if roll < 45 && job.tags.contains_key(SYNC) {
            remove.push(SYNC.into());
            what = "opt-in tag removed";
        } else if roll < 55 && job.tags.contains_key(MODEL_TYPE) {
            remove.push(REQUIRED[1 + self.rng.usize(..4)].into());
            what = "a required tag removed";
        } else if roll < 80 && job.tags.contains_key(PROJECT) {
            let others: Vec<&str> = PROJECTS.iter().copied().filter(|p| Some(*p) != job.project()).collect();
            add.push((PROJECT.into(), others[self.rng.usize(..others.len())].into()));
            what = "moved to another project";
        } else {
            add.push(("team".into(), format!("team-{}", self.rng.u32(0..1000))));
            what = "non-identity tag changed";
        }
        let arn = job.arn.clone();
        // SageMaker's AddTags replaces the value of a key the job has; moto appends a second
        // tag instead. Deleting the key first gives SageMaker's result (with a moment between
        // the two calls where the key is missing, as a person editing tags would cause).
        let replaced: Vec<&String> = add.iter().map(|(k, _)| k).filter(|k| job.tags.contains_key(*k)).collect();
        if !replaced.is_empty() {
            let mut req = self.client.delete_tags().resource_arn(&arn);
            for k in replaced {
                req = req.tag_keys(k);
            }
            req.send().await.unwrap_or_else(|e| panic!("seed {}: DeleteTags: {e:?}", self.seed));
        }
        if !add.is_empty() {
            let mut req = self.client.add_tags().resource_arn(&arn);
            for (k, v) in &add {
                req = req.tags(Tag::builder().key(k).value(v).build());
            }
            req.send().await.unwrap_or_else(|e| panic!("seed {}: AddTags: {e:?}", self.seed));
        }
        if !remove.is_empty() {
            let mut req = self.client.delete_tags().resource_arn(&arn);
            for k in &remove {
                req = req.tag_keys(k);
            }
            req.send().await.unwrap_or_else(|e| panic!("seed {}: DeleteTags: {e:?}", self.seed));
        }
        let job = &mut self.jobs[i];
        for (k, v) in &add {
            job.tags.insert(k.clone(), v.clone());
        }
        for k in &remove {
            job.tags.remove(k);
        }
        job.note(self.t0, format!("{what}: +{add:?} -{remove:?}"));
        *self.actions.entry("retag").or_default() += 1;
    }

    /// moto's tags for every job agree with the model (the test's own bookkeeping is right).
    async fn check_moto_tags(&self) {
        for j in &self.jobs {
            let t = self.client.list_tags().resource_arn(&j.arn).send().await.unwrap();
            let got: BTreeMap<String, String> =
                t.tags().iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect();
            assert_eq!(got, j.tags, "seed {}: moto's tags of {} differ from the test's model", self.seed, j.name);
        }
    }
}

// --- The checks ----------------------------------------------------------------------------

/// A document of the file sink.
struct Doc {
    path: PathBuf,
    /// `record.run.external_id`.
    arn: String,
    /// `record.project.name`.
    project: String,
    record: Value,
}

/// Every document of the file sink, and the problems with the other files found.
fn file_documents(out: &Path) -> (Vec<Doc>, Vec<String>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".tmp") {
                problems.push(format!("file sink: a temporary file was left behind: {}", p.display()));
            } else if name.ends_with(".json") && !name.starts_with('.') {
                let parsed: Option<Value> = std::fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok());
                match parsed {
                    Some(doc) => {
                        let arn = doc["record"]["run"]["external_id"].as_str().unwrap_or_default().to_string();
                        let project = doc["record"]["project"]["name"].as_str().unwrap_or_default().to_string();
                        docs.push(Doc { path: p, arn, project, record: doc["record"].clone() });
                    }
                    // A document being replaced is renamed into place whole; a torn one is a bug.
                    None => problems.push(format!("file sink: {} is not a JSON document", p.display())),
                }
            }
        }
    }
    (docs, problems)
}

/// What differs between the sinks (and the ledger) and the model; empty once converged.
fn problems(jobs: &[Job], out: &Path, peer: &Peer, state: &Path) -> Vec<String> {
    let mut out_problems = Vec::new();
    let by_arn: BTreeMap<&str, &Job> = jobs.iter().map(|j| (j.arn.as_str(), j)).collect();

    // The file sink: exactly one document per eligible job, matching its latest state, and
    // nothing else.
    let (docs, mut p) = file_documents(out);
    out_problems.append(&mut p);
    let mut docs_of: BTreeMap<&str, Vec<&Doc>> = BTreeMap::new();
    for d in &docs {
        docs_of.entry(d.arn.as_str()).or_default().push(d);
    }
    for (arn, ds) in &docs_of {
        match by_arn.get(arn) {
            None => out_problems
                .push(format!("file sink: documents of an unknown ARN {arn:?}: {:?}", ds.iter().map(|d| &d.path).collect::<Vec<_>>())),
            Some(j) if !j.eligible() => out_problems.push(format!(
                "file sink: {} is not eligible but has {} document(s): {:?}",
                j.name,
                ds.len(),
                ds.iter().map(|d| &d.path).collect::<Vec<_>>()
            )),
            Some(j) if ds.len() > 1 => out_problems.push(format!(
                "file sink: {} has {} documents: {:?}",
                j.name,
                ds.len(),
                ds.iter().map(|d| &d.path).collect::<Vec<_>>()
            )),
            Some(_) => {}
        }
    }
    for j in jobs.iter().filter(|j| j.eligible()) {
        let Some(ds) = docs_of.get(j.arn.as_str()) else {
            out_problems.push(format!("file sink: no document for eligible {}", j.name));
            continue;
        };
        if ds.len() > 1 {
            continue; // reported above
        }
        let Doc { path, project, record: rec, .. } = ds[0];
        let want_project = j.project().unwrap();
        if project != want_project {
            out_problems.push(format!("file sink: {} is in project {project:?}, not {want_project:?}", j.name));
        }
        if path.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().to_string()).as_deref() != Some(want_project) {
            out_problems.push(format!("file sink: {} is at {}, not under {want_project}/", j.name, path.display()));
        }
        let tags: BTreeMap<String, String> = rec["tags"]
            .as_array()
            .map(|a| {
                a.iter().map(|t| (t["key"].as_str().unwrap_or_default().into(), t["value"].as_str().unwrap_or_default().into())).collect()
            })
            .unwrap_or_default();
        if tags != j.tags {
            out_problems.push(format!("file sink: {} has tags {tags:?}, not {:?}", j.name, j.tags));
        }
        let metrics: BTreeMap<String, f64> = rec["metrics"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| Some((m["name"].as_str()?.to_string(), m["value"].as_f64()?))).collect())
            .unwrap_or_default();
        if metrics != j.metrics {
            out_problems.push(format!("file sink: {} has metrics {metrics:?}, not {:?}", j.name, j.metrics));
        }
        if rec["run"]["status"] != j.status {
            out_problems.push(format!("file sink: {} has status {}, not {}", j.name, rec["run"]["status"], j.status));
        }
    }

    // ModelDB v1 can neither delete nor move a run (guarantees.md): a job that stops being
    // eligible keeps its run (`retract` is a no-op), and a job whose project changed keeps its
    // one run in the project it was first written to. So: every eligible job has exactly one
    // run, in a project where it was eligible at some moment, carrying every final metric name
    // of its latest state (v1 adds the metrics a run lacks, by name; it does not replace a
    // value); no ARN has more than one run; a job that never was eligible has none.
    let st = peer.state();
    if st.is_null() {
        out_problems.push("ModelDB v1: the peer's state is unreadable".into());
        return out_problems;
    }
    let rows = |t: &str| st[t].as_array().cloned().unwrap_or_default();
    let projects: BTreeMap<i64, String> =
        rows("projects").iter().map(|p| (p["id"].as_i64().unwrap(), p["name"].as_str().unwrap().to_string())).collect();
    let exp_project: BTreeMap<i64, i64> =
        rows("experiments").iter().map(|e| (e["id"].as_i64().unwrap(), e["project"].as_i64().unwrap())).collect();
    let mut metric_names: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for m in rows("metric_events") {
        metric_names.entry(m["experimentRun"].as_i64().unwrap()).or_default().insert(m["metricType"].as_str().unwrap_or_default().into());
    }
    // ARN -> project -> run ids.
    let mut runs: BTreeMap<String, BTreeMap<String, Vec<i64>>> = BTreeMap::new();
    for r in rows("runs") {
        let desc = r["description"].as_str().unwrap_or_default();
        let arn = desc.rsplit_once('(').map(|(_, a)| a.trim_end_matches(')').to_string()).unwrap_or_default();
        let project = exp_project.get(&r["experiment"].as_i64().unwrap()).and_then(|p| projects.get(p)).cloned().unwrap_or_default();
        runs.entry(arn).or_default().entry(project).or_default().push(r["id"].as_i64().unwrap());
    }
    for (arn, per_project) in &runs {
        let Some(j) = by_arn.get(arn.as_str()) else {
            out_problems.push(format!("ModelDB v1: runs of an unknown ARN {arn:?}"));
            continue;
        };
        let n: usize = per_project.values().map(Vec::len).sum();
        if n > 1 {
            out_problems.push(format!("ModelDB v1: {} has {n} runs for one ARN (project -> run ids): {per_project:?}", j.name));
        }
        for project in per_project.keys() {
            if !j.eligible_in.contains(project) {
                out_problems.push(format!("ModelDB v1: {} has a run in project {project}, where it never was eligible", j.name));
            }
        }
    }
    for j in jobs.iter().filter(|j| j.eligible()) {
        let ids: Vec<i64> = runs.get(&j.arn).map(|r| r.values().flatten().copied().collect()).unwrap_or_default();
        match ids[..] {
            [] => out_problems.push(format!("ModelDB v1: no run for eligible {}", j.name)),
            [id] => {
                let have = metric_names.get(&id).cloned().unwrap_or_default();
                let missing: Vec<&String> = j.metrics.keys().filter(|m| !have.contains(*m)).collect();
                if !missing.is_empty() {
                    out_problems.push(format!("ModelDB v1: run {id} of {} lacks metrics {missing:?} (has {have:?})", j.name));
                }
            }
            _ => {} // reported above
        }
    }

    // The ledger: every job decided, none failed.
    match ledger(state) {
        None => out_problems.push("ledger: unreadable".into()),
        Some(c) => {
            let eligible = jobs.iter().filter(|j| j.eligible()).count() as u64;
            if c.total() != jobs.len() as u64 || c.synced != eligible || c.failed != 0 || c.parked != 0 {
                out_problems.push(format!(
                    "ledger: {} jobs ({} synced, {} skipped, {} rejected, {} failed, {} parked); the model has {} jobs, {eligible} eligible",
                    c.total(),
                    c.synced,
                    c.skipped,
                    c.rejected,
                    c.failed,
                    c.parked,
                    jobs.len()
                ));
            }
        }
    }
    out_problems
}

/// The ledger's counts, read from the daemon's state file.
fn ledger(path: &Path) -> Option<sagesync_core::LedgerCounts> {
    use sagesync_core::StateStore;
    if !path.exists() {
        return None;
    }
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?
            .block_on(async { sagesync_state_sqlite::SqliteState::new(p, 10_000).counts().await.ok() })
    })
    .join()
    .ok()
    .flatten()
}

/// The problems, with the history of every job they name.
fn report(seed: u64, jobs: &[Job], problems: &[String], peer: &Peer) -> String {
    let mut s = format!("seed {seed} (rerun with SAGESYNC_SOAK_SEED={seed}): {} problem(s):\n", problems.len());
    for p in problems.iter().take(60) {
        s.push_str(&format!("  - {p}\n"));
    }
    let named: Vec<&Job> =
        jobs.iter().filter(|j| problems.iter().any(|p| p.contains(&format!("{} ", j.name)) || p.ends_with(&j.name))).collect();
    for j in named.iter().take(20) {
        s.push_str(&format!("history of {} ({}):\n", j.name, j.arn));
        for h in &j.history {
            s.push_str(&format!("    {h}\n"));
        }
    }
    // The ModelDB v1 calls whose arguments name the job of a v1 problem (the run's description
    // carries the job's name), in order.
    let log = peer.rpc_log();
    for j in named.iter().filter(|j| problems.iter().any(|p| p.starts_with("ModelDB v1") && p.contains(&format!("{} ", j.name)))).take(3) {
        s.push_str(&format!("ModelDB v1 calls naming {}:\n", j.name));
        for call in log.iter().filter(|c| c["args"].to_string().contains(&format!("{} (", j.name))) {
            let text = call.to_string();
            s.push_str(&format!("    {}\n", text.chars().take(400).collect::<String>()));
        }
    }
    s
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_random_changes_kills_throttling_and_a_sink_outage_converge_to_exactly_once() {
    let seed = env_u64("SAGESYNC_SOAK_SEED").unwrap_or_else(|| fastrand::u64(..));
    let secs = env_u64("SAGESYNC_SOAK_SECS").unwrap_or(60).max(20);
    let converge_secs = env_u64("SAGESYNC_SOAK_CONVERGE_SECS").unwrap_or(90);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mode = if rng.bool() { "list" } else { "search" };
    let page_size = [3, 10, 100][rng.usize(..3)];
    let base_throttle = rng.u32(50..250);
    let concurrency = [1, 4, 8][rng.usize(..3)];
    eprintln!(
        "soak: seed {seed} (SAGESYNC_SOAK_SEED={seed}), {secs} s, mode {mode}, page_size {page_size}, concurrency {concurrency}, {base_throttle}‰ throttled"
    );

    let t0 = Instant::now();
    let moto = Moto::start();
    let client = moto.client().await;
    let throttle = Throttle::start(moto.port, seed, base_throttle).await;
    let peer = Peer::start(&[]);
    let gate = Gate::start(peer.port);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let state = dir.path().join("state.db");
    let cfg = dir.path().join("sagesyncd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[source]
type = "sagemaker"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{throttle}"
mode = "{mode}"
page_size = {page_size}
max_requests_per_second = 0
max_attempts = 2
initial_backoff_ms = 20
connect_timeout_secs = 2
request_timeout_secs = 10

[[validators]]
type = "required_tags"

[[validators]]
type = "status"

[[sinks]]
type = "file"
dir = "out"

[[sinks]]
type = "modeldb_v1"
host = "127.0.0.1"
port = {gate}
connect_timeout_secs = 1
request_timeout_secs = 2

[pipeline]
concurrency = {concurrency}
max_attempts = 2
initial_backoff_ms = 20
max_backoff_ms = 200
retry_backoff_secs = 1
max_retry_backoff_secs = 2
max_job_attempts = 1000
lease_ttl_secs = 2
lease_wait_secs = 3

[state]
path = "state.db"

[daemon]
poll_interval_secs = 1
reconcile_interval_secs = 4
reconcile_lookback_secs = 86400
listen = "127.0.0.1:0"
shutdown_grace_secs = 5
"#,
            throttle = throttle.port,
            gate = gate.port(),
        ),
    )
    .unwrap();

    let mut w = World { seed, t0, rng, moto, client, jobs: Vec::new(), actions: BTreeMap::new() };
    for _ in 0..25 {
        w.create().await;
    }
    let log = StderrLog::new("sagesyncd (every start)");
    let mut daemon = Some(Daemon::start(&cfg, dir.path(), &log, seed, None));

    // The disruptions, at random moments of the mutating phase.
    let mutate = Duration::from_secs_f64(secs as f64 * 0.6);
    #[derive(Debug)]
    enum Disrupt {
        Kill,
        SinkDown(GateMode, Duration),
        Storm(Duration),
    }
    let mut plan: Vec<(Duration, Disrupt)> = Vec::new();
    let at = |rng: &mut fastrand::Rng| mutate.mul_f64(0.05 + 0.9 * rng.f64());
    for _ in 0..(secs / 20).max(2) {
        plan.push((at(&mut w.rng), Disrupt::Kill));
    }
    for _ in 0..(secs / 30).max(1) {
        let mode = if w.rng.bool() { GateMode::Refuse } else { GateMode::Blackhole };
        plan.push((at(&mut w.rng), Disrupt::SinkDown(mode, Duration::from_millis(w.rng.u64(2000..8000)))));
    }
    for _ in 0..(secs / 30).max(1) {
        plan.push((at(&mut w.rng), Disrupt::Storm(Duration::from_millis(w.rng.u64(1000..4000)))));
    }
    plan.sort_by_key(|(t, _)| *t);
    eprintln!("soak: seed {seed}: plan {plan:?}");
    plan.reverse();

    let start = Instant::now();
    let mut sink_up_at: Option<Instant> = None;
    let mut storm_end: Option<Instant> = None;
    // While the daemon is down (killed, or aborted at its crash step), jobs keep changing.
    let mut restart_at: Option<(Instant, Option<String>)> = None;
    let (mut kills, mut aborts) = (0, 0);
    while start.elapsed() < mutate {
        if daemon.as_mut().is_some_and(Daemon::exited) {
            let d = daemon.take().unwrap();
            aborts += 1;
            eprintln!("soak: {:.1} s: sagesyncd aborted at {:?}", t0.elapsed().as_secs_f64(), d.crash);
            restart_at = Some((Instant::now() + Duration::from_millis(w.rng.u64(0..3000)), None));
        }
        if restart_at.as_ref().is_some_and(|(t, _)| Instant::now() >= *t) {
            let (_, crash) = restart_at.take().unwrap();
            daemon = Some(Daemon::start(&cfg, dir.path(), &log, seed, crash));
        }
        if sink_up_at.is_some_and(|t| Instant::now() >= t) {
            gate.set(GateMode::Open);
            sink_up_at = None;
            eprintln!("soak: {:.1} s: ModelDB v1 back", t0.elapsed().as_secs_f64());
        }
        if storm_end.is_some_and(|t| Instant::now() >= t) {
            throttle.permille.store(base_throttle, Ordering::SeqCst);
            storm_end = None;
        }
        while plan.last().is_some_and(|(t, _)| start.elapsed() >= *t) {
            let (_, d) = plan.pop().unwrap();
            eprintln!("soak: {:.1} s: {d:?}", t0.elapsed().as_secs_f64());
            match d {
                Disrupt::Kill => {
                    if let Some(mut d) = daemon.take() {
                        d.sigkill();
                        kills += 1;
                    }
                    // Half the restarts abort themselves later at a chosen crash point.
                    let crash = w.rng.bool().then(|| {
                        let step = ["after-lease", "after-sink-write", "after-commit", "after-cursor"][w.rng.usize(..4)];
                        format!("{step}:{}", w.rng.u32(1..30))
                    });
                    eprintln!("soak: {:.1} s: restart with SAGESYNC_CRASH_AT={crash:?}", t0.elapsed().as_secs_f64());
                    restart_at = Some((Instant::now() + Duration::from_millis(w.rng.u64(0..3000)), crash));
                }
                Disrupt::SinkDown(mode, dur) => {
                    gate.set(mode);
                    sink_up_at = Some(Instant::now() + dur);
                }
                Disrupt::Storm(dur) => {
                    throttle.permille.store(800, Ordering::SeqCst);
                    storm_end = Some(Instant::now() + dur);
                }
            }
        }
        match w.rng.u32(0..100) {
            0..=24 => w.create().await,
            25..=54 => w.modify(),
            _ => w.retag().await,
        }
        tokio::time::sleep(Duration::from_millis(w.rng.u64(30..300))).await;
    }
    gate.set(GateMode::Open);
    throttle.permille.store(base_throttle, Ordering::SeqCst);
    // Converge with a daemon that runs to the end.
    if daemon.as_mut().is_none_or(|d| d.crash.is_some() || d.exited()) {
        if let Some(mut d) = daemon.take() {
            d.sigkill();
        }
        daemon = Some(Daemon::start(&cfg, dir.path(), &log, seed, None));
    }
    w.check_moto_tags().await;
    assert!(throttle.throttled.load(Ordering::SeqCst) > 0, "seed {seed}: the proxy throttled nothing");
    let eligible = w.jobs.iter().filter(|j| j.eligible()).count();
    eprintln!(
        "soak: seed {seed}: mutations done at {:.1} s: {} jobs ({eligible} eligible), actions {:?}, {kills} SIGKILLs, {aborts} aborts at a crash point, {} SageMaker requests throttled, {} forwarded",
        t0.elapsed().as_secs_f64(),
        w.jobs.len(),
        w.actions,
        throttle.throttled.load(Ordering::SeqCst),
        throttle.forwarded.load(Ordering::SeqCst)
    );

    // Convergence: the next reconciliation passes bring every tag change in.
    let d = daemon.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(converge_secs);
    let mut last;
    loop {
        last = problems(&w.jobs, &out, &peer, &state);
        if last.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            panic!("not converged {converge_secs} s after the last change; {}", report(seed, &w.jobs, &last, &peer));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let converged = t0.elapsed().as_secs_f64();
    // Stable: two more reconciliation passes and a poll change nothing.
    let series = "sagesync_passes_total{key=\"reconcile\"}";
    let before = d.metric(series).await;
    let wait = Instant::now();
    while d.metric(series).await < before + 2.0 {
        assert!(wait.elapsed() < Duration::from_secs(30), "seed {seed}: no reconciliation pass within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = problems(&w.jobs, &out, &peer, &state);
    assert!(after.is_empty(), "converged at {converged:.1} s, then changed: {}", report(seed, &w.jobs, &after, &peer));
    eprintln!(
        "soak: seed {seed}: converged at {converged:.1} s (total {:.1} s): {} jobs, {eligible} eligible in both sinks exactly once",
        t0.elapsed().as_secs_f64(),
        w.jobs.len()
    );
    let mut d = daemon.take().unwrap();
    assert!(Command::new("kill").args(["-TERM", &d.child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "seed {seed}: sagesyncd did not exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "seed {seed}: SIGTERM exits 0");
}

/// What the soak test can hit when a SIGKILL lands between a sink write and the ledger commit
/// and the job then stops being eligible before the daemon runs again (found by the soak test:
/// without a pending delivery in the ledger, nothing retracted the record). Recipe: one eligible job; sagesyncd aborts right after
/// the file sink wrote its document (`SAGESYNC_CRASH_AT=after-sink-write`); the job's opt-in tag
/// is removed; sagesyncd starts again and runs its polls and reconciliation passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_written_just_before_a_crash_is_retracted_when_the_job_turns_ineligible() {
    use std::os::unix::process::ExitStatusExt;
    let moto = Moto::start();
    let names = moto.create_jobs("orphan", 1, &SYNC_TAGS).await;
    let client = moto.client().await;
    let arn = client.describe_training_job().training_job_name(&names[0]).send().await.unwrap().training_job_arn().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sagesyncd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"out\"\n\n[state]\npath = \"state.db\"\n\n[daemon]\npoll_interval_secs = 0.5\nreconcile_interval_secs = 1\nlisten = \"127.0.0.1:0\"\n",
            moto.url()
        ),
    )
    .unwrap();
    let log = StderrLog::new("sagesyncd");
    let docs = || file_documents(&dir.path().join("out")).0.into_iter().map(|d| d.path).collect::<Vec<_>>();
    let mut d = Daemon::start(&cfg, dir.path(), &log, 0, Some("after-sink-write".into()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.exited() {
        assert!(Instant::now() < deadline, "sagesyncd did not reach after-sink-write within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.child.wait().unwrap().signal(), Some(6), "aborted at after-sink-write");
    assert_eq!(docs().len(), 1, "the document was written before the abort");
    client.delete_tags().resource_arn(&arn).tag_keys("MODEL_DB_SYNC").send().await.unwrap();
    let d = Daemon::start(&cfg, dir.path(), &log, 0, None);
    let series = "sagesync_passes_total{key=\"reconcile\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.metric(series).await < 2.0 {
        assert!(Instant::now() < deadline, "no two reconciliation passes within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = ledger(&dir.path().join("state.db")).unwrap();
    assert_eq!((c.synced, c.skipped), (0, 1), "the ledger has the job as skipped");
    assert!(
        docs().is_empty(),
        "the job is no longer eligible, yet the file sink still holds its document {:?} (the ledger never recorded the delivery, so nothing retracts it)",
        docs()
    );
}

/// Another recipe from the soak test: a job synced to ModelDB v1, then not eligible for a while
/// (its opt-in tag removed), then eligible again in another project. v1 cannot move or delete a
/// run, so the job must keep its one run where it was first written; the sink finds that run
/// through the ledger's receipt, which must therefore outlive the job's ineligible spell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_leaves_and_comes_back_in_another_project_keeps_one_modeldb_v1_run() {
    let moto = Moto::start();
    let names = moto.create_jobs("rejoin", 1, &SYNC_TAGS).await;
    let client = moto.client().await;
    let arn = client.describe_training_job().training_job_name(&names[0]).send().await.unwrap().training_job_arn().unwrap().to_string();
    let peer = Peer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sagesyncd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {}\n\n[state]\npath = \"state.db\"\n\n[daemon]\npoll_interval_secs = 0.5\nreconcile_interval_secs = 1\nlisten = \"127.0.0.1:0\"\n",
            moto.url(),
            peer.port
        ),
    )
    .unwrap();
    let runs = || {
        peer.state()["runs"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["description"].as_str().is_some_and(|d| d.contains(&format!("({arn})")))).count())
            .unwrap_or(0)
    };
    let state = dir.path().join("state.db");
    let log = StderrLog::new("sagesyncd");
    let d = Daemon::start(&cfg, dir.path(), &log, 0, None);
    let reconciled = |n: f64| {
        let d = &d;
        async move {
            let series = "sagesync_passes_total{key=\"reconcile\"}";
            let target = d.metric(series).await + n;
            let deadline = Instant::now() + Duration::from_secs(60);
            while d.metric(series).await < target {
                assert!(Instant::now() < deadline, "no reconciliation pass within 60 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs() == 0 || ledger(&state).is_none_or(|c| c.synced != 1) {
        assert!(Instant::now() < deadline, "the job was not synced within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not eligible: v1 keeps the run (it cannot delete).
    client.delete_tags().resource_arn(&arn).tag_keys("MODEL_DB_SYNC").send().await.unwrap();
    reconciled(2.0).await;
    assert_eq!(ledger(&state).unwrap().skipped, 1, "the job is skipped once its opt-in tag is gone");
    // Eligible again, in another project (SageMaker's AddTags replaces a key's value; moto
    // appends, so the old value is deleted first).
    client.delete_tags().resource_arn(&arn).tag_keys("MODEL_DB_PROJECT_NAME").send().await.unwrap();
    client
        .add_tags()
        .resource_arn(&arn)
        .tags(Tag::builder().key("MODEL_DB_PROJECT_NAME").value("elsewhere").build())
        .tags(Tag::builder().key("MODEL_DB_SYNC").value("true").build())
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger(&state).is_none_or(|c| c.synced != 1) {
        assert!(Instant::now() < deadline, "the job was not synced again within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reconciled(2.0).await;
    assert_eq!(runs(), 1, "one job, one ModelDB v1 run: {}", peer.state()["runs"]);
}
