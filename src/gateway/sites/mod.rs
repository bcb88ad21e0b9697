//! Sites: one front door, many network segments.  A host's inventory `site` names the
//! segment it is in; a gateway process (`site = "…"` in its config, or
//! `deploy-gateway runner --site …`) runs the hosts of its own site only.
//!
//! ```text
//!   deploy (CLI) ──HTTP──> front door (site: none) ──┐
//!                          the job: lock, lease,     │  PostgreSQL: jobs, events,
//!                          batches, events, ledger   │  site_parts, site_events
//!                                                    │
//!          runner --site a <─── claims parts ────────┤────── claims parts ───> runner --site b
//!          reaches web-a*                                                      reaches web-b*
//! ```
//!
//! Decisions:
//! - **One job, one story, one lock.**  The process that claimed the job runs its rollout
//!   (canary, batches, `max_failed`, halt and rollback, cancel) exactly as for local
//!   hosts; a host of another site is handed over as a *part* (`site_parts`) through the
//!   engine's `Elsewhere` seam, and the rollout waits for its result as it waits for a
//!   local host.  The job's events stay one numbered stream: the part's runner writes its
//!   host's events beside the part (`site_events`) and the job's process relays them
//!   into the job's sink, so follow, the dashboard and the live record see one story.
//! - **Runners only reach out**: a runner needs the database (and its artifact
//!   source), never an inbound connection; the front door may reach no server at all.
//! - **A part is run once.**  A runner claims it under a lease renewed with its jobs'
//!   leases, and runs it with the job's fencing epoch behind a gate of that lease.  If
//!   the lease expires while the part runs (the runner was killed or stalled), the job's
//!   process marks the part `lost` and the host fails, saying so; it is not run again by
//!   another runner (the host may be half-way: the next deploy converges it).  A part no
//!   runner of its site takes within `site_wait_secs` is `abandoned`: the host is
//!   reported unreachable, naming the site whose runner is down; nothing was touched.
//! - **Artifacts reach each site once**: each runner keeps one environment share per
//!   job (`engine::share`), so the site's first host builds (through the runner's relay
//!   when the environment says `delivery: relay`) and its other hosts unpack.
//! - A cancel of the job is passed to its running parts (`cancel` on the row; the
//!   runner reads it with its jobs' cancel requests).  A part whose job is no longer
//!   running (its process died and the job was marked interrupted) loses its lease at
//!   the runner's next renewal: its gate closes and it stops.

pub mod observe;
pub mod runner;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_engine::elsewhere::Elsewhere;
use deploy_engine::index::WheelPin;
use deploy_wire::api::JobInfo;
use deploy_wire::{Event, EventKind, HostStatus};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::store::{Db, NewPart, PartState};
use crate::engine::{CancelFlag, EventSink, HostResult};
use crate::inventory::Host;

/// Between looks at a part's events and state: soon at first (a no-op host's part ends
/// within a second), then less often, so that a long part costs the database little.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_millis(500);

/// The job's side: hands hosts of other sites to their runners and waits for them.
pub struct SiteHosts {
    pub db: Db,
    pub job: JobInfo,
    pub epoch: u64,
    pub wheel: Option<WheelPin>,
    /// This process's site.
    pub site: Option<String>,
    /// How long a part may wait for a runner of its site.
    pub wait: Duration,
    pub sink: Arc<dyn EventSink>,
}

impl Elsewhere for SiteHosts {
    fn elsewhere(&self, host: &Host) -> bool {
        host.site != self.site
    }

    fn run<'a>(
        &'a self,
        host: &'a Host,
        rollback_to: Option<&'a str>,
        cancel: &'a CancelFlag,
    ) -> BoxFuture<'a, HostResult> {
        Box::pin(self.run_part(host, rollback_to, cancel))
    }
}

/// What ends a wait for a part, besides its result.
enum Ended {
    Result(HostResult),
    /// Failed, unreachable: the host's status and why.
    Failed(HostStatus, String),
}

impl SiteHosts {
    async fn run_part(
        &self,
        host: &Host,
        rollback_to: Option<&str>,
        cancel: &CancelFlag,
    ) -> HostResult {
        let started = Instant::now();
        let site = host.site.clone().unwrap_or_default();
        let part = NewPart {
            id: part_id(&self.job.id, &host.name, rollback_to.is_some()),
            job_id: self.job.id.clone(),
            host: host.name.clone(),
            site: site.clone(),
            rollback_to: rollback_to.map(str::to_string),
            wheel: self.wheel.as_ref().map(encode_pin),
            epoch: self.epoch,
        };
        let id = part.id.clone();
        let ended = match self.db.call(move |s| s.add_part(&part)).await {
            Err(e) => Ended::Failed(
                HostStatus::Unreachable,
                format!("it could not be handed to site {site}'s runners: {e}"),
            ),
            Ok(()) => self.wait_for(&id, &site, cancel).await,
        };
        match ended {
            Ended::Result(r) => r,
            Ended::Failed(status, why) => {
                let error = format!("{}: {why}", host.name);
                self.sink.emit(Event::now(EventKind::HostFinished {
                    host: host.name.clone(),
                    status,
                    changed: 0,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    error: Some(error.clone()),
                    round_trips: 0,
                }));
                HostResult::untouched(&host.name, status, Some(error), started.elapsed())
            }
        }
    }

    /// Relays the part's events until it ends; gives up on it when no runner took it in
    /// time or its runner's lease expired.
    async fn wait_for(&self, id: &str, site: &str, cancel: &CancelFlag) -> Ended {
        let since = Instant::now();
        let (mut seen, mut cancel_sent, mut poll) = (0u64, false, POLL_FIRST);
        loop {
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL_MAX);
            seen = self.relay(id, seen).await;
            if !cancel_sent && cancel.load(std::sync::atomic::Ordering::SeqCst) {
                let i = id.to_string();
                cancel_sent = self.db.call(move |s| s.cancel_part(&i)).await.is_ok();
            }
            let i = id.to_string();
            let looked = self
                .db
                .call(move |s| Ok((s.part(&i)?, s.clock_ms()?)))
                .await;
            let (part, now) = match looked {
                Ok((Some(p), now)) => (p, now),
                Ok((None, _)) => {
                    return Ended::Failed(HostStatus::Failed, "its part vanished".into());
                }
                Err(e) => {
                    tracing::warn!("part {id}: reading it: {e}");
                    continue;
                }
            };
            match part.state {
                PartState::Done => {
                    self.relay(id, seen).await;
                    return match part
                        .result
                        .as_deref()
                        .map(serde_json::from_str::<PartResult>)
                    {
                        Some(Ok(r)) => Ended::Result(r.into()),
                        _ => Ended::Failed(HostStatus::Failed, "its runner left no result".into()),
                    };
                }
                PartState::Lost | PartState::Abandoned => {
                    return Ended::Failed(
                        HostStatus::Failed,
                        format!("site {site}'s runner stopped while it ran this host"),
                    );
                }
                _ => {}
            }
            if let Some((from, to, status, why)) = give_up(&part, now, since, self.wait, site)
                && self.set(id, from, to).await
            {
                self.relay(id, seen).await;
                return Ended::Failed(status, why);
            }
        }
    }

    /// Relays the part's events after `seen` into the job's sink; the last one relayed.
    async fn relay(&self, id: &str, seen: u64) -> u64 {
        let i = id.to_string();
        match self.db.call(move |s| s.part_events_after(&i, seen)).await {
            Ok(events) => events.into_iter().fold(seen, |_, (seq, text)| {
                match serde_json::from_str::<Event>(&text) {
                    Ok(e) => self.sink.emit(e),
                    Err(e) => tracing::warn!("part {id}: event {seq} unreadable: {e}"),
                }
                seq
            }),
            Err(e) => {
                tracing::warn!("part {id}: reading its events: {e}");
                seen
            }
        }
    }

    async fn set(&self, id: &str, from: PartState, to: PartState) -> bool {
        let i = id.to_string();
        let moved = self
            .db
            .call(move |s| s.set_part_state(&i, from, to, None, None));
        moved.await.unwrap_or(false)
    }
}

/// When the job stops waiting for a part: nobody of its site took it in time
/// (`abandoned`: nothing was done on the host), or its runner's lease expired while it
/// ran (`lost`: the host may be part-way).  The move from the first state to the second,
/// the host's status and why.
fn give_up(
    part: &super::store::Part,
    now_ms: u64,
    since: Instant,
    wait: Duration,
    site: &str,
) -> Option<(PartState, PartState, HostStatus, String)> {
    match part.state {
        PartState::Queued if since.elapsed() >= wait => Some((
            PartState::Queued,
            PartState::Abandoned,
            HostStatus::Unreachable,
            format!(
                "no runner of site {site} took it within {} s (is site {site}'s runner up?); nothing was done on it",
                wait.as_secs()
            ),
        )),
        PartState::Running if part.lease_until.is_some_and(|u| u < now_ms) => Some((
            PartState::Running,
            PartState::Lost,
            HostStatus::Failed,
            format!(
                "site {site}'s runner ({}) stopped renewing its lease while it ran this host; the host may be part-way (the next deploy converges it)",
                part.owner.as_deref().unwrap_or("?")
            ),
        )),
        _ => None,
    }
}

/// Waits (at most `limit`) until no runner runs a part of job `id`: a job whose process
/// stopped has parts that go on until their runners' next renewal drops them (their
/// gates then close), and a command in flight may still change a host until then; the
/// hosts are read after that (`reconcile`).  False if parts still run at the limit.
pub async fn settle(db: &Db, id: &str, limit: Duration) -> bool {
    let since = Instant::now();
    loop {
        let i = id.to_string();
        match db.call(move |s| s.parts_running(&i)).await {
            Ok(0) => return true,
            Ok(_) | Err(_) if since.elapsed() >= limit => return false,
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A part's id: the job's, the host's, and whether it is the host's rollback.
pub fn part_id(job: &str, host: &str, rollback: bool) -> String {
    if rollback {
        format!("{job}/{host}/rollback")
    } else {
        format!("{job}/{host}")
    }
}

/// A pin as stored in a part: `<sha256> <file>`.
pub fn encode_pin(p: &WheelPin) -> String {
    format!("{} {}", p.sha256, p.file)
}

pub fn decode_pin(s: &str) -> Option<WheelPin> {
    let (sha, file) = s.split_once(' ')?;
    WheelPin::new(file, sha)
}

/// A host's result as a part stores it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartResult {
    host: String,
    status: HostStatus,
    changed: u32,
    elapsed_ms: u64,
    error: Option<String>,
    connections: u32,
    channels: u64,
    round_trips: u32,
    previous: Option<String>,
    serving: Option<String>,
    env_sha256: Option<String>,
}

impl From<&HostResult> for PartResult {
    fn from(h: &HostResult) -> PartResult {
        PartResult {
            host: h.host.clone(),
            status: h.status,
            changed: h.changed,
            elapsed_ms: h.elapsed.as_millis() as u64,
            error: h.error.clone(),
            connections: h.connections,
            channels: h.channels,
            round_trips: h.round_trips,
            previous: h.previous.clone(),
            serving: h.serving.clone(),
            env_sha256: h.env_sha256.clone(),
        }
    }
}

impl From<PartResult> for HostResult {
    fn from(p: PartResult) -> HostResult {
        HostResult {
            host: p.host,
            status: p.status,
            changed: p.changed,
            elapsed: Duration::from_millis(p.elapsed_ms),
            error: p.error,
            connections: p.connections,
            channels: p.channels,
            round_trips: p.round_trips,
            previous: p.previous,
            serving: p.serving,
            env_sha256: p.env_sha256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_survives_its_row() {
        let pin = WheelPin::new("hello_app-1.0.0-py3-none-any.whl", &"ab".repeat(32)).unwrap();
        assert_eq!(decode_pin(&encode_pin(&pin)), Some(pin));
        assert_eq!(decode_pin("not-a-pin"), None);
    }

    #[test]
    fn part_ids_name_the_job_the_host_and_a_rollback() {
        assert_eq!(part_id("j1", "web1", false), "j1/web1");
        assert_eq!(part_id("j1", "web1", true), "j1/web1/rollback");
    }
}
