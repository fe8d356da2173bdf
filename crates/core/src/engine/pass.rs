//! Passes: pages of listed (or given) jobs decided against the ledger, attempted with bounded
//! concurrency as each slot frees up, and committed page by page.

use std::collections::HashMap;
use std::time::Instant;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::dry_run::Quiet;
use super::job::{Ctx, Handled, Item, Work};
use super::observer::{Decision, Event, Observer};
use super::report::{JobReport, ListingFailure, PassReport, RefResult};
use super::steps::{retry, state_call};
use super::{Engine, PassRequest, RefOptions};
use crate::source::{JobRef, ListingProblem};
use crate::state::{JobState, Outcome, StateError};

/// How many jobs a page of due retries or given references holds.
const PAGE: usize = 100;

fn api_delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .into_iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(&k).copied().unwrap_or(0));
            (d > 0).then_some((k, d))
        })
        .collect()
}

impl Engine {
    /// One pass: list `req.scope` page by page from the saved cursor, work on what differs from
    /// the ledger, save the cursor after each fully recorded page; for polls, then re-drive the
    /// failed jobs whose retry time has come. `cancel` stops starting work and interrupts
    /// backoffs; what is interrupted is reported, never recorded.
    pub async fn pass(&self, req: &PassRequest, cancel: &CancellationToken, obs: &dyn Observer) -> PassReport {
        let quiet = Quiet(obs);
        let obs = self.observer(obs, &quiet);
        let started = Instant::now();
        let calls_before = self.source.api_calls();
        let ctx = self.ctx(cancel, &RefOptions { collect: req.collect, ..Default::default() }, obs);
        let mut rep = PassReport { pass: ctx.pass.clone(), key: req.key.clone(), ..Default::default() };
        obs.event(&Event::PassStarted { key: &req.key });
        let mut cursor = match state_call(&self.settings, cancel, || self.state.cursor(&req.key)).await {
            Ok(c) => {
                let mut c = c.unwrap_or_default();
                if let Some(f) = req.floor {
                    if c.watermark.is_none_or(|w| w < f) {
                        c.watermark = Some(f);
                    }
                }
                c
            }
            Err(e) => {
                self.state_failed(&mut rep, &e, obs);
                return self.finish(rep, started, &calls_before, obs);
            }
        };
        let mut committing = true;
        // Cursors this pass has listed from: a source that hands one back again makes no
        // progress, and the pass stops instead of listing the same pages forever.
        let mut visited = std::collections::HashSet::new();
        loop {
            if !visited.insert(crate::digest::of_json(&cursor)) {
                let failure = ListingFailure {
                    message: "the source returned a cursor it had returned before in this pass (no progress); the next pass resumes from the saved cursor".into(),
                    retryable: true,
                    attempts: 1,
                };
                tracing::error!(key = %req.key, "listing made no progress; stopping the pass");
                obs.event(&Event::ListingFailed { key: &req.key, failure: &failure });
                rep.listing_error = Some(failure);
                break;
            }
            if cancel.is_cancelled() {
                rep.cancelled = true;
                break;
            }
            let listed = retry(&self.settings, cancel, None, None, || self.source.list(&req.scope, &cursor)).await;
            let page = match listed {
                Ok((p, _)) => p,
                Err((e, _)) if e.is_cancelled() => {
                    rep.cancelled = true;
                    break;
                }
                Err((e, attempts)) => {
                    let failure = ListingFailure { message: e.chain(), retryable: e.is_retryable(), attempts };
                    tracing::warn!(key = %req.key, error = %failure.message, "listing failed; the next pass resumes from the saved cursor");
                    obs.event(&Event::ListingFailed { key: &req.key, failure: &failure });
                    rep.listing_error = Some(failure);
                    break;
                }
            };
            rep.pages += 1;
            let mut page = page;
            if let Some(f) = req.floor {
                page.jobs.retain(|j| j.last_modified.is_none_or(|t| t >= f));
                if page.next.watermark.is_none_or(|w| w < f) {
                    page.next.watermark = Some(f);
                    page.next.seen_at_watermark.clear();
                }
            }
            let refs = page.jobs.into_iter().map(|r| (None, r)).collect();
            let recorded = self.process_page(refs, page.problems, &ctx, &mut rep).await;
            if recorded && committing {
                match state_call(&self.settings, &CancellationToken::new(), || self.state.save_cursor(&req.key, &page.next)).await {
                    Ok(()) => {
                        crate::crash::reached(crate::crash::Step::AfterCursor);
                        obs.event(&Event::PageCommitted { key: &req.key, cursor: &page.next });
                        rep.cursor = Some(page.next.clone());
                    }
                    Err(e) => {
                        self.state_failed(&mut rep, &e, obs);
                        committing = false;
                    }
                }
            } else {
                committing = false;
            }
            cursor = page.next;
            if page.done {
                break;
            }
        }
        if req.retry_due && !cancel.is_cancelled() {
            self.due_sweep(&ctx, &mut rep).await;
        }
        if cancel.is_cancelled() {
            rep.cancelled = true;
        }
        self.finish(rep, started, &calls_before, obs)
    }

    /// Works on the given jobs (by name, ARN or event), in pages. The report's `refs` holds one
    /// result per reference, in the order given.
    pub async fn sync_refs(&self, refs: Vec<JobRef>, opts: &RefOptions, cancel: &CancellationToken, obs: &dyn Observer) -> PassReport {
        let quiet = Quiet(obs);
        let obs = self.observer(obs, &quiet);
        let started = Instant::now();
        let calls_before = self.source.api_calls();
        let (deadline_token, timer) = with_deadline(cancel, opts.deadline);
        let ctx = self.ctx(&deadline_token, opts, obs);
        let mut rep = PassReport { pass: ctx.pass.clone(), ..Default::default() };
        rep.refs = vec![RefResult::NotStarted { reason: "not reached".into() }; refs.len()];
        obs.event(&Event::PassStarted { key: "" });
        let mut refs = refs.into_iter().enumerate().peekable();
        while refs.peek().is_some() {
            if deadline_token.is_cancelled() {
                // Not started: report them as interrupted so the caller can hand them back.
                for (slot, r) in refs.by_ref() {
                    let mut jr = JobReport::new(r.name.clone(), r.arn.clone(), Outcome::Interrupted);
                    jr.reason = Some("not started: cancelled or out of time".into());
                    self.account(&mut rep, Some(slot), Handled::Report(jr), None, &ctx);
                }
                break;
            }
            let chunk: Vec<(Option<usize>, JobRef)> = refs.by_ref().take(PAGE).map(|(i, r)| (Some(i), r)).collect();
            rep.pages += 1;
            self.process_page(chunk, Vec::new(), &ctx, &mut rep).await;
        }
        if let Some(t) = timer {
            t.abort();
        }
        rep.cancelled = cancel.is_cancelled();
        self.finish(rep, started, &calls_before, obs)
    }

    /// Re-drives the failed jobs whose retry time has come, as a poll does after its listing,
    /// without listing anything: what a deployment without a daemon runs on a schedule (the
    /// Lambda's scheduled invocation). Parking follows the same rule as everywhere (only
    /// `max_job_attempts` permanent failures park a job). Stops starting work at
    /// `opts.deadline`; what is cut short is reported as interrupted and recorded as nothing.
    pub async fn redrive(&self, opts: &RefOptions, cancel: &CancellationToken, obs: &dyn Observer) -> PassReport {
        let quiet = Quiet(obs);
        let obs = self.observer(obs, &quiet);
        let started = Instant::now();
        let calls_before = self.source.api_calls();
        let (deadline_token, timer) = with_deadline(cancel, opts.deadline);
        let ctx = self.ctx(&deadline_token, &RefOptions { force: false, urgent: false, ..opts.clone() }, obs);
        let mut rep = PassReport { pass: ctx.pass.clone(), key: PassRequest::REDRIVE.into(), ..Default::default() };
        obs.event(&Event::PassStarted { key: PassRequest::REDRIVE });
        self.due_sweep(&ctx, &mut rep).await;
        if let Some(t) = timer {
            t.abort();
        }
        rep.cancelled = cancel.is_cancelled();
        self.finish(rep, started, &calls_before, obs)
    }

    /// Unparks failed jobs (the named ones, by name or ARN, or all) and works on them now.
    pub async fn retry(&self, jobs: &[String], cancel: &CancellationToken, obs: &dyn Observer) -> Result<PassReport, StateError> {
        let arns = state_call(&self.settings, cancel, || self.state.unpark(jobs)).await?;
        let refs = arns
            .into_iter()
            .map(|arn| JobRef { name: arn.rsplit('/').next().unwrap_or(&arn).to_string(), arn: Some(arn), ..Default::default() })
            .collect();
        Ok(self.sync_refs(refs, &RefOptions { urgent: true, collect: true, ..Default::default() }, cancel, obs).await)
    }

    /// What the jobs of a pass need to know about it.
    fn ctx<'a>(&self, cancel: &'a CancellationToken, opts: &RefOptions, obs: &'a dyn Observer) -> Ctx<'a> {
        Ctx {
            pass: self.next_pass_id(),
            cancel,
            deadline: opts.deadline,
            force: opts.force,
            urgent: opts.urgent,
            collect: opts.collect,
            lease_wait: opts.lease_wait.unwrap_or(std::time::Duration::from_secs(self.settings.lease_wait_secs)),
            obs,
        }
    }

    fn state_failed(&self, rep: &mut PassReport, e: &StateError, obs: &dyn Observer) {
        tracing::error!(error = %e, "state store failed");
        obs.event(&Event::StateFailed(e));
        if rep.state_error.is_none() {
            rep.state_error = Some(e.to_string());
        }
    }

    fn finish(
        &self,
        rep: PassReport,
        started: Instant,
        calls_before: &std::collections::BTreeMap<String, u64>,
        obs: &dyn Observer,
    ) -> PassReport {
        let mut rep = self.pass_as_reported(rep);
        rep.api_calls = api_delta(calls_before, self.source.api_calls());
        rep.elapsed_ms = started.elapsed().as_millis() as u64;
        obs.event(&Event::PassFinished(&rep));
        rep
    }

    async fn due_sweep(&self, ctx: &Ctx<'_>, rep: &mut PassReport) {
        let mut after: Option<String> = None;
        loop {
            if ctx.cancel.is_cancelled() {
                return;
            }
            let now = Utc::now();
            let due = match state_call(&self.settings, ctx.cancel, || self.state.due(now, after.as_deref(), PAGE)).await {
                Ok(d) => d,
                Err(e) => {
                    self.state_failed(rep, &e, ctx.obs);
                    return;
                }
            };
            let n = due.len();
            after = due.last().map(|j| j.arn.clone());
            let refs = due
                .into_iter()
                .map(|j| (None, JobRef { name: j.job, arn: Some(j.arn), last_modified: j.basis.last_modified, ..Default::default() }))
                .collect();
            self.process_page(refs, Vec::new(), ctx, rep).await;
            if n < PAGE {
                return;
            }
        }
    }

    /// Decides and works on one page; true when every job on it ended recorded or needed
    /// nothing (so that the page's cursor may be saved). Jobs are attempted `concurrency` at a
    /// time, and each is accounted for as it ends: a slow job holds its own slot, not the
    /// others'.
    pub(crate) async fn process_page(
        &self,
        refs: Vec<(Option<usize>, JobRef)>,
        problems: Vec<ListingProblem>,
        ctx: &Ctx<'_>,
        rep: &mut PassReport,
    ) -> bool {
        let arns: Vec<String> =
            refs.iter().filter_map(|(_, r)| r.arn.clone()).chain(problems.iter().filter_map(|p| p.arn.clone())).collect();
        let states: HashMap<String, JobState> = match state_call(&self.settings, ctx.cancel, || self.state.jobs(&arns)).await {
            Ok(v) => arns.iter().cloned().zip(v).filter_map(|(a, s)| s.map(|s| (a, s))).collect(),
            Err(e) => {
                self.state_failed(rep, &e, ctx.obs);
                // Nothing is known about these jobs: their callers must hand them back.
                for (slot, _) in &refs {
                    set_ref(rep, *slot, RefResult::NotStarted { reason: format!("the state store failed: {e}") });
                }
                return false;
            }
        };
        let now = Utc::now();
        let mut round = Vec::new();
        for (slot, r) in refs {
            let st = r.arn.as_ref().and_then(|a| states.get(a));
            let d = if ctx.force { Decision::Process } else { self.decide_at(&r, st, now, ctx.urgent) };
            ctx.obs.event(&Event::Decided(d));
            match d {
                Decision::Done => {
                    rep.already_done += 1;
                    set_ref(rep, slot, RefResult::AlreadyDone);
                }
                Decision::Later => {
                    rep.deferred += 1;
                    set_ref(rep, slot, RefResult::Deferred);
                }
                Decision::Process => round.push(Work { item: Item::Ref(r), prior: st.cloned(), slot }),
            }
        }
        // One read for the page of what the source batches across jobs; interrupted by a
        // cancel like any other wait (the fetches then read for themselves).
        let prepared: Vec<&JobRef> = round.iter().filter_map(|w| if let Item::Ref(r) = &w.item { Some(r) } else { None }).collect();
        let prepares = prepared.len() > 1;
        if prepares {
            tokio::select! {
                () = self.source.prepare(&prepared) => {}
                () = ctx.cancel.cancelled() => {}
            }
        }
        drop(prepared);
        let mut all_recorded = true;
        for p in problems {
            if p.arn.is_some() {
                let st = p.arn.as_ref().and_then(|a| states.get(a)).cloned();
                round.push(Work { item: Item::Problem(p), prior: st, slot: None });
            } else {
                // Not tied to a job the ledger could hold: reported, and the source lists it
                // again next time (from this page's cursor, unless it keeps its place itself).
                all_recorded &= p.lists_again;
                let mut jr = JobReport::new(p.origin.clone(), None, Outcome::Failed);
                jr.stage = Some(crate::error::Stage::Source);
                jr.retryable = p.error.is_retryable();
                jr.reason = Some(format!("source: {}", p.error.chain()));
                self.account(rep, None, Handled::Report(jr), None, ctx);
            }
        }
        // First round: jobs another writer holds are set aside (they would only occupy a slot
        // while waiting); the second round waits for them, up to the lease wait, which by
        // default outlasts the lease of a writer that died.
        for wait in [false, true] {
            let mut held = Vec::new();
            let mut running = stream::iter(round)
                .map(|w| async move {
                    let slot = w.slot;
                    let prior_in_pass = w.prior.as_ref().filter(|s| s.pass.as_deref() == Some(ctx.pass.as_str())).map(|s| s.outcome);
                    (slot, self.attempt(w, ctx, wait).await, prior_in_pass)
                })
                .buffer_unordered(self.settings.concurrency.max(1));
            while let Some((slot, h, prior)) = running.next().await {
                if let Handled::Held(w) = h {
                    held.push(*w);
                    continue;
                }
                all_recorded &= match &h {
                    Handled::Done => true,
                    Handled::Busy(_) | Handled::Held(..) => false,
                    Handled::Report(r) => r.recorded,
                };
                self.account(rep, slot, h, prior, ctx);
            }
            round = held;
            if round.is_empty() {
                break;
            }
            if prepares {
                // The jobs left wait for their leases: what was read for them before is let go,
                // and each reads afresh under its lease.
                self.source.prepare(&[]).await;
            }
        }
        if prepares {
            // The page is done: what the source kept for it goes (a job it was not fetched for,
            // busy or decided done under its lease, must not find it on a later page).
            self.source.prepare(&[]).await;
        }
        all_recorded
    }

    fn account(&self, rep: &mut PassReport, slot: Option<usize>, h: Handled, prior_in_pass: Option<Outcome>, ctx: &Ctx<'_>) {
        match h {
            Handled::Done => {
                rep.already_done += 1;
                set_ref(rep, slot, RefResult::AlreadyDone);
            }
            Handled::Held(..) => {
                rep.busy += 1;
                set_ref(rep, slot, RefResult::Busy);
            }
            Handled::Busy(arn) => {
                rep.busy += 1;
                set_ref(rep, slot, RefResult::Busy);
                ctx.obs.event(&Event::Busy { arn: &arn });
                if rep.busy_jobs.len() < PassReport::MAX_KEPT {
                    rep.busy_jobs.push(arn);
                }
            }
            Handled::Report(r) => {
                rep.store_writes += r.receipts.iter().map(|rc| u64::from(rc.writes)).sum::<u64>();
                let recorded = r.recorded;
                let r = self.as_reported(r);
                ctx.obs.event(&Event::Job(&r));
                // A job seen again in the same pass (it changed while the pass listed) counts
                // once, with its latest outcome.
                if let Some(prev) = prior_in_pass {
                    if recorded {
                        rep.count(prev, -1);
                        if let Some(i) = rep.jobs.iter().position(|j| j.arn == r.arn) {
                            rep.jobs.remove(i);
                        }
                    }
                }
                rep.count(r.outcome, 1);
                if slot.is_some() {
                    set_ref(rep, slot, RefResult::Worked(r.clone()));
                }
                let wanted = ctx.collect || matches!(r.outcome, Outcome::Failed | Outcome::Interrupted);
                let room = if ctx.collect { PassReport::MAX_COLLECTED } else { PassReport::MAX_KEPT };
                if wanted && rep.jobs.len() < room {
                    rep.jobs.push(r);
                } else if wanted {
                    rep.jobs_omitted += 1;
                }
            }
        }
    }
}

/// Records the result of the reference in `slot`, if the pass answers references.
fn set_ref(rep: &mut PassReport, slot: Option<usize>, r: RefResult) {
    if let Some(s) = slot.and_then(|i| rep.refs.get_mut(i)) {
        *s = r;
    }
}

/// A child of `cancel` that also fires at `deadline`, and the timer task that fires it.
fn with_deadline(cancel: &CancellationToken, deadline: Option<Instant>) -> (CancellationToken, Option<tokio::task::JoinHandle<()>>) {
    let token = cancel.child_token();
    let timer = deadline.map(|d| {
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
            t.cancel();
        })
    });
    (token, timer)
}
