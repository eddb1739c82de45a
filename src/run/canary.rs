//! One run of a write-path canary: a write to the canary account, then read-back polls of its
//! recent tracks until the play shows or `visible_within` passes, ending in one
//! [`CanaryResult`].
//!
//! Each request is made like a probe's, through the target's gate and the same classifier, and
//! counts in the per-probe series of its step (`<canary>.write`, `<canary>.read`); none of them
//! moves availability (`lastfm_service_available` answers "can Last.fm be read", and a canary
//! must never page for it). A write is never retried within a run: a second scrobble would be a
//! second play. The run's own series and the write-path conditions are recorded once it ends.
//! A run that a reload overtakes records into the runtime it started on: its series are the
//! same handles when the canary stays, and detached ones when the reload removed it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::canary_state::{CanaryRuntime, LastRun, lock};
use super::log::log_events;
use super::runner::{Mode, Runner, Stop};
use super::runtime::TargetRuntime;
use crate::classify::{
    self, Blame, CanaryResult, Classification, IgnoredCode, RateLimitScope, Sight, Wanted,
    WriteJudgement,
};
use crate::config::{Canary, CanaryKind, Probe, Step};
use crate::health::politeness::SkipReason;
use crate::history::RunRecord;
use crate::history::trace::Trace;
use crate::probe::Recorded;

/// What became of a canary run.
#[derive(Debug)]
pub enum CanaryRun {
    /// The write was not sent, with the reason (counted on the write step).
    Skipped(SkipReason),
    /// Shutdown came first.
    Cancelled,
    /// The run ended with `result`; the history has its records.
    Done {
        /// The result.
        result: CanaryResult,
        /// The record whose trace shows the whole run.
        record: Arc<RunRecord>,
    },
}

/// A write, sent and judged.
struct Written {
    /// The request as sent (a scrobble's with its timestamp).
    write: Probe,
    verdict: Classification,
    judgement: WriteJudgement,
    /// The wall-clock second written as a scrobble's timestamp.
    timestamp: i64,
    latency: Duration,
    trace: Trace,
    /// When the answer came: `visible_within` and the visibility latency count from it.
    accepted_at: Instant,
}

/// A run's facts as it goes, for the trace's heading and the records.
struct Progress {
    steps: Vec<Trace>,
    polls: u32,
    seen_answer: bool,
    last_read: Option<Classification>,
    read_latency: Duration,
}

impl Runner {
    /// One run of canary `index` of `rt`, its write useful until `latest`.
    pub async fn canary(
        &self,
        rt: &TargetRuntime,
        index: usize,
        latest: Instant,
        mode: Mode,
        cancel: &CancellationToken,
    ) -> CanaryRun {
        let (Some(canary), Some(live)) = (rt.target.canaries.get(index), rt.canaries.get(index))
        else {
            return CanaryRun::Cancelled;
        };
        let written = match self
            .write(rt, index, canary, live, latest, mode, cancel)
            .await
        {
            Ok(written) => written,
            Err(stopped) => return stopped,
        };
        let mut progress = Progress {
            steps: vec![written.trace.clone()],
            polls: 0,
            seen_answer: false,
            last_read: None,
            read_latency: Duration::ZERO,
        };
        let ending = match written.judgement {
            WriteJudgement::Rejected => Ending::of(CanaryResult::Rejected),
            WriteJudgement::Failed => Ending::of(CanaryResult::Failed),
            WriteJudgement::Ignored(code) => Ending {
                ignored: Some(IgnoredCode::of(code)),
                ..Ending::of(CanaryResult::Ignored)
            },
            WriteJudgement::Accepted if !rt.target.api.has_read_back() => {
                Ending::of(CanaryResult::Accepted)
            }
            WriteJudgement::Accepted => {
                // The write's record now, so that its trace link works while the read-back goes.
                let w = &written;
                self.keep(rt, &w.write, &w.verdict, &w.trace, w.latency, mode);
                let polled = self
                    .read_back(rt, index, canary, &written, mode, cancel, &mut progress)
                    .await;
                match polled {
                    None => return CanaryRun::Cancelled,
                    Some(Some(after)) => Ending {
                        visible_after: Some(after),
                        ..Ending::of(CanaryResult::Visible)
                    },
                    Some(None) if progress.seen_answer => Ending::of(CanaryResult::NotVisible),
                    Some(None) => Ending::of(CanaryResult::Failed),
                }
            }
        };
        let (record, last) = self.conclude(rt, index, &written, progress, ending, mode);
        self.finish(rt, index, ending, last, mode);
        CanaryRun::Done {
            result: ending.result,
            record,
        }
    }

    /// Keeps the run in the history: its whole trace goes with its last request (the write's
    /// when nothing was read), under a heading that says how it ended.
    fn conclude(
        &self,
        rt: &TargetRuntime,
        index: usize,
        written: &Written,
        mut progress: Progress,
        ending: Ending,
        mode: Mode,
    ) -> (Arc<RunRecord>, LastRun) {
        let scope = classify::rate_limit_scope(&written.verdict);
        let step_blame = progress
            .last_read
            .as_ref()
            .map_or(written.verdict.blame, |read| read.blame);
        let blame = classify::canary_blame(ending.result, ending.ignored, scope, step_blame);
        let heading = Heading {
            ending,
            scope,
            blame,
        };
        let head = match rt.target.canaries.get(index) {
            Some(canary) => heading.render(rt, canary, progress.polls),
            None => String::new(),
        };
        let trace = Trace::steps(head, std::mem::take(&mut progress.steps));
        let read_step = rt.target.canaries.get(index).map(|c| &c.read);
        let record = match (progress.last_read.take(), read_step) {
            (Some(read), Some(step)) => {
                self.keep(rt, step, &read, &trace, progress.read_latency, mode)
            }
            _ => self.keep(
                rt,
                &written.write,
                &written.verdict,
                &trace,
                written.latency,
                mode,
            ),
        };
        let last = LastRun {
            result: ending.result,
            ignored: ending.ignored,
            scope,
            blame,
            at: self.clock.now().timestamp(),
            record: record.id,
        };
        (record, last)
    }

    /// The write of a run, judged and recorded; `Err` with the run's end when it was not sent.
    #[expect(
        clippy::too_many_arguments,
        reason = "the run's context, passed down once"
    )]
    async fn write(
        &self,
        rt: &TargetRuntime,
        index: usize,
        canary: &Canary,
        live: &CanaryRuntime,
        latest: Instant,
        mode: Mode,
        cancel: &CancellationToken,
    ) -> Result<Written, CanaryRun> {
        let skip = |reason: SkipReason| {
            if mode == Mode::Scheduled {
                live.record_skip(reason, 1);
            }
            tracing::debug!(target = %rt.target.name, canary = %canary.name, reason = reason.as_label(), "canary run skipped");
            CanaryRun::Skipped(reason)
        };
        if !rt.canary_gate.backoff_remaining(Instant::now()).is_zero() {
            return Err(skip(SkipReason::RateLimited));
        }
        let mut write = canary.write.clone();
        let timestamp = self.clock.now().timestamp();
        if canary.kind == CanaryKind::Scrobble {
            write
                .params
                .push(("timestamp".to_owned(), timestamp.to_string()));
        }
        let sent = self
            .send(rt, &write, latest, cancel, || {
                if mode == Mode::Scheduled {
                    let now_ms = self.clock.now().timestamp_millis();
                    live.last_sent_ms.store(now_ms, Ordering::Relaxed);
                }
            })
            .await;
        let (sent, recorded) = match sent {
            Ok(sent) => sent,
            Err(Stop::Cancelled) => return Err(CanaryRun::Cancelled),
            Err(Stop::Skipped(reason)) => return Err(skip(reason)),
        };
        let Some(verdict) = self.judged(rt, &write, &recorded, sent, cancel).await else {
            return Err(CanaryRun::Cancelled);
        };
        let body = body_of(&recorded).map(<[u8]>::to_vec);
        let (verdict, judgement) = classify::judge_write(verdict, write.format, body.as_deref());
        let accepted_at = Instant::now();
        let latency = recorded.outcome.elapsed;
        let trace = self.step(rt, Step::Write(index), &write, recorded, &verdict, mode);
        Ok(Written {
            write,
            verdict,
            judgement,
            timestamp,
            latency,
            trace,
            accepted_at,
        })
    }

    /// Polls the canary account's recent tracks every `poll_every` until the play shows or
    /// `visible_within` after the accepted write passes: how long it took, `None` when it never
    /// showed, or `None` from the outside when `cancel` came first.
    #[expect(
        clippy::too_many_arguments,
        reason = "the run's context, passed down once"
    )]
    async fn read_back(
        &self,
        rt: &TargetRuntime,
        index: usize,
        canary: &Canary,
        written: &Written,
        mode: Mode,
        cancel: &CancellationToken,
        progress: &mut Progress,
    ) -> Option<Option<Duration>> {
        let live = rt.canaries.get(index)?;
        let accepted_at = written.accepted_at;
        let wanted = Wanted {
            user: &canary.user,
            artist: &canary.artist,
            track: &canary.track,
            timestamp: (canary.kind == CanaryKind::Scrobble).then_some(written.timestamp),
        };
        let deadline = accepted_at + canary.visible_within;
        let mut poll_at = Instant::now();
        loop {
            let sent = self.send(rt, &canary.read, deadline, cancel, || {}).await;
            match sent {
                Err(Stop::Cancelled) => return None,
                Err(Stop::Skipped(reason)) => {
                    if mode == Mode::Scheduled {
                        if let Some(read) = &live.read {
                            read.record_skip(reason, 1);
                        }
                    }
                }
                Ok((sent, recorded)) => {
                    let verdict = self
                        .judged(rt, &canary.read, &recorded, sent, cancel)
                        .await?;
                    let body = body_of(&recorded).map(<[u8]>::to_vec);
                    let (verdict, sight) =
                        classify::judge_read(verdict, canary.read.format, body.as_deref(), wanted);
                    progress.polls += 1;
                    progress.read_latency = recorded.outcome.elapsed;
                    let trace = self.step(
                        rt,
                        Step::Read(index),
                        &canary.read,
                        recorded,
                        &verdict,
                        mode,
                    );
                    progress.steps.push(trace);
                    progress.last_read = Some(verdict);
                    match sight {
                        Sight::Seen => return Some(Some(accepted_at.elapsed())),
                        Sight::NotYet => progress.seen_answer = true,
                        Sight::Unusable => {}
                    }
                }
            }
            poll_at += canary.poll_every;
            if poll_at > deadline {
                return Some(None);
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep_until(poll_at) => {}
            }
        }
    }

    /// A step's verdict: classified like a probe's request, and a failure our network could
    /// cause held for the references. `None` when `cancel` came first.
    async fn judged(
        &self,
        rt: &TargetRuntime,
        probe: &Probe,
        recorded: &Recorded,
        sent: Instant,
        cancel: &CancellationToken,
    ) -> Option<Classification> {
        let verdict = rt.judge(probe, &recorded.outcome);
        self.localize(Some(Arc::clone(&rt.references)), verdict, sent, cancel)
            .await
    }

    /// Books one request of a step (the gate, the step's series, the conditions it raises,
    /// never availability; one log line); its trace comes back.
    fn step(
        &self,
        rt: &TargetRuntime,
        step: Step,
        probe: &Probe,
        recorded: Recorded,
        verdict: &Classification,
        mode: Mode,
    ) -> Trace {
        self.book(rt, step, probe, &recorded, verdict, mode);
        Trace::new(Arc::clone(&rt.target), step, recorded, verdict.clone())
    }

    /// Keeps a step in the history, its detail scrubbed, with `trace`.
    fn keep(
        &self,
        rt: &TargetRuntime,
        probe: &Probe,
        verdict: &Classification,
        trace: &Trace,
        latency: Duration,
        mode: Mode,
    ) -> Arc<RunRecord> {
        let mut kept = verdict.clone();
        kept.detail = kept
            .detail
            .map(|detail| crate::history::trace::scrub_run(&rt.target, probe, detail));
        let record = RunRecord {
            id: 0,
            target: rt.target.name.clone(),
            probe: probe.name.clone(),
            at: self.clock.now(),
            latency,
            verdict: kept,
            on_demand: mode == Mode::OnDemand,
            trace: trace.clone(),
            // A canary step is not a probe run: the status model reads probe runs only.
            facts: None,
        };
        let id = self.history.record(record.clone());
        self.history.get(id).unwrap_or_else(|| Arc::new(record))
    }

    /// Records the run's result: its series, the write-path conditions, one log line.
    fn finish(&self, rt: &TargetRuntime, index: usize, ending: Ending, last: LastRun, mode: Mode) {
        let Ending {
            result,
            ignored,
            visible_after,
        } = ending;
        let (Some(canary), Some(live)) = (rt.target.canaries.get(index), rt.canaries.get(index))
        else {
            return;
        };
        if mode != Mode::Scheduled {
            return;
        }
        let now_unix = self.clock.now().timestamp_millis() as f64 / 1000.0;
        live.metrics
            .record(result, ignored, visible_after, now_unix);
        *lock(&live.last) = Some(last);
        if result == CanaryResult::Visible {
            *lock(&live.last_visible) = Some(last.at);
        }
        let events = rt.health().observe_canary(index, result, ignored);
        rt.publish(Instant::now());
        log_events(&rt.target, &[], &events);
        let code = ignored.map_or("none", IgnoredCode::as_label);
        if result == CanaryResult::Visible {
            tracing::debug!(target = %rt.target.name, canary = %canary.name, result = result.as_label(), visible_seconds = visible_after.unwrap_or_default().as_secs_f64(), "canary run");
        } else {
            tracing::info!(target = %rt.target.name, canary = %canary.name, result = result.as_label(), ignored_code = code, "canary run");
        }
    }
}

/// The body of a response, if one arrived.
fn body_of(recorded: &Recorded) -> Option<&[u8]> {
    recorded
        .outcome
        .result
        .as_ref()
        .ok()
        .map(|r| r.body.as_slice())
}

/// How a run ended, for its trace's heading.
struct Heading {
    ending: Ending,
    scope: Option<RateLimitScope>,
    blame: Option<Blame>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy)]
struct Ending {
    result: CanaryResult,
    /// The ignore code of an `ignored` run.
    ignored: Option<IgnoredCode>,
    /// From the accepted write to the poll that saw the play, for a `visible` run.
    visible_after: Option<Duration>,
}

impl Ending {
    fn of(result: CanaryResult) -> Self {
        Self {
            result,
            ignored: None,
            visible_after: None,
        }
    }
}

impl Heading {
    /// Labels and numbers only: the heading is not scrubbed.
    fn render(&self, rt: &TargetRuntime, canary: &Canary, polls: u32) -> String {
        let mut head = format!(
            "canary {} of target {} ({}): result {}",
            canary.name,
            rt.target.name,
            canary.kind.as_label(),
            self.ending.result.as_label()
        );
        if let Some(code) = self.ending.ignored {
            head.push_str(", ignored with code ");
            head.push_str(code.as_label());
        }
        if let Some(after) = self.ending.visible_after {
            head.push_str(&format!(", visible after {:.1} s", after.as_secs_f64()));
        }
        if let Some(scope) = self.scope {
            head.push_str(", rate limited, scope ");
            head.push_str(scope.as_label());
        }
        if let Some(blame) = self.blame {
            head.push_str(", blame ");
            head.push_str(blame.as_label());
        }
        head.push_str(&format!(
            "\n1 write, {polls} read-back poll(s) (every {}, for up to {} after an accepted write)",
            humantime::format_duration(canary.poll_every),
            humantime::format_duration(canary.visible_within)
        ));
        if self.scope == Some(RateLimitScope::User) {
            head.push_str(
                "\nthe limit is on the canary account: the canaries back off, the probes go on",
            );
        }
        head
    }
}
