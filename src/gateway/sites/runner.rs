//! A site's runner loop: claims the queued parts of its site (hosts other processes'
//! jobs handed over), runs each as the engine runs a local host (`run_part`: its own
//! SSH connection, the job's epoch behind the gate of the part's lease), writes the
//! host's events beside the part and, at its end, the host's result.  It also answers
//! the site's asks (what its hosts run: `observe.rs`).  Every gateway
//! process runs this loop for its own site (`site` in its config; none: the parts of
//! hosts with no site); `deploy-gateway runner` runs only this loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy_engine::elsewhere::run_part;
use deploy_engine::share::EnvShare;
use deploy_wire::{Event, EventKind, HostStatus};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::super::jobs::Jobs;
use super::super::store::{Lease, Part, PartState};
use super::{PartResult, decode_pin};
use crate::engine::{self, EventSink, HostResult};

/// Between looks for queued parts (one small query per runner).
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// Parts claimed at one look.
const CLAIM_AT_ONCE: u32 = 8;
/// A job's environment share is dropped when none of its parts ran here for this long.
const SHARE_IDLE: Duration = Duration::from_secs(600);
/// Between writes of a part's events.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Starts the loop that claims and runs this process's site's parts.
pub fn spawn(jobs: Jobs) {
    let site = jobs.site().unwrap_or_default().to_string();
    let shares = Arc::new(Shares::default());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(LOOK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            every.tick().await;
            match claim(&jobs, &site).await {
                Ok(parts) => {
                    failing = false;
                    for (part, at) in parts {
                        let span = tracing::info_span!("part", id = %part.id, site = %site);
                        let (jobs, shares) = (jobs.clone(), shares.clone());
                        tokio::spawn(run(jobs, part, at, shares).instrument(span));
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!("claiming the parts of site {site:?}: {e}");
                }
                Err(_) => {}
            }
            let (s, owner) = (site.clone(), jobs.owner().to_string());
            if let Ok(asks) = jobs.db.call(move |st| st.claim_asks(&s, &owner, 8)).await {
                for (id, app, env) in asks {
                    let jobs = jobs.clone();
                    tokio::spawn(async move { super::observe::answer(&jobs, id, app, env).await });
                }
            }
        }
    });
}

async fn claim(
    jobs: &Jobs,
    site: &str,
) -> Result<Vec<(Part, Instant)>, super::super::store::StoreError> {
    let (owner, lease, site) = (
        jobs.owner().to_string(),
        jobs.lease_time(),
        site.to_string(),
    );
    let at = Instant::now();
    let parts = jobs
        .db
        .call(move |s| {
            let until_ms = s.clock_ms()? + lease.as_millis() as u64;
            s.claim_parts(&site, &Lease { owner, until_ms }, CLAIM_AT_ONCE)
        })
        .await?;
    Ok(parts.into_iter().map(|p| (p, at)).collect())
}

/// One environment share per job, so that a site builds each job's release once.
#[derive(Default)]
struct Shares(Mutex<HashMap<String, (Arc<EnvShare>, Instant)>>);

impl Shares {
    fn of(&self, job: &str) -> Arc<EnvShare> {
        let mut m = self.0.lock().unwrap();
        m.retain(|_, (_, used)| used.elapsed() < SHARE_IDLE);
        let entry = (m.entry(job.to_string())).or_insert_with(|| (Arc::default(), Instant::now()));
        entry.1 = Instant::now();
        entry.0.clone()
    }
}

async fn run(jobs: Jobs, part: Part, claimed_at: Instant, shares: Arc<Shares>) {
    jobs.clock.claimed(&part.id, claimed_at);
    let cancel = jobs.track(&part.id);
    let sink = PartSink::start(jobs.clone(), part.id.clone());
    tracing::info!("running {} for job {}", part.host, part.job_id);
    let result = match plan_and_run(&jobs, &part, sink.clone(), &cancel, &shares).await {
        Ok(r) => r,
        Err(why) => {
            let error = format!("{}: {why}", part.host);
            sink.emit(Event::now(EventKind::HostFinished {
                host: part.host.clone(),
                status: HostStatus::Failed,
                changed: 0,
                elapsed_ms: 0,
                error: Some(error.clone()),
                round_trips: 0,
            }));
            HostResult::untouched(&part.host, HostStatus::Failed, Some(error), Duration::ZERO)
        }
    };
    sink.close().await;
    let text = serde_json::to_string(&PartResult::from(&result)).unwrap_or_default();
    let (id, owner) = (part.id.clone(), jobs.owner().to_string());
    let ended = jobs
        .db
        .call(move |s| {
            s.set_part_state(
                &id,
                PartState::Running,
                PartState::Done,
                Some(&owner),
                Some(&text),
            )
        })
        .await;
    match ended {
        Ok(true) => tracing::info!("{} ended: {:?}", part.host, result.status),
        Ok(false) => tracing::warn!("{}: its part was no longer this runner's", part.host),
        Err(e) => tracing::error!("{}: its result could not be stored: {e}", part.host),
    }
    jobs.untrack(&part.id);
    jobs.clock.forget(&part.id);
}

async fn plan_and_run(
    jobs: &Jobs,
    part: &Part,
    sink: Arc<dyn EventSink>,
    cancel: &engine::CancelFlag,
    shares: &Shares,
) -> Result<HostResult, String> {
    let job_id = part.job_id.clone();
    let job = match jobs.db.call(move |s| s.job(&job_id)).await {
        Ok(Some(job)) => job,
        Ok(None) => return Err(format!("job {} is not in the database", part.job_id)),
        Err(e) => return Err(format!("reading job {}: {e}", part.job_id)),
    };
    let (app, env) = (job.app.clone(), job.env.clone());
    let mut planned = jobs
        .plan_with(job, None, sink.clone())
        .map_err(|e| format!("this runner cannot plan the job: {}", e.redacted()))?;
    planned.pin(part.wheel.as_deref().and_then(decode_pin));
    let (plan, mut cfg) = planned.into_parts();
    cfg.fence = Some(engine::fence::Fence {
        app,
        env,
        epoch: part.epoch,
        gate: jobs.clock.gate(&part.id),
    });
    let share = shares.of(&part.job_id);
    let rollback = part.rollback_to.as_deref();
    run_part(
        &plan,
        &part.host,
        rollback,
        Arc::new(cfg),
        sink,
        cancel,
        &share,
    )
    .await
}

/// A part's events, numbered here and written beside the part in small batches (the
/// job's process relays them).  [`PartSink::close`] writes what is left, then ends.
struct PartSink(mpsc::UnboundedSender<Msg>);

enum Msg {
    Event(Event),
    Close(tokio::sync::oneshot::Sender<()>),
}

impl PartSink {
    fn start(jobs: Jobs, id: String) -> Arc<PartSink> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        tokio::spawn(async move {
            let mut seq = 0u64;
            let mut closed = None;
            while closed.is_none() {
                let mut batch = Vec::new();
                match rx.recv().await {
                    Some(Msg::Event(e)) => batch.push(e),
                    Some(Msg::Close(ack)) => closed = Some(ack),
                    None => break,
                }
                if closed.is_none() {
                    tokio::time::sleep(FLUSH_EVERY).await;
                }
                while let Ok(m) = rx.try_recv() {
                    match m {
                        Msg::Event(e) => batch.push(e),
                        Msg::Close(ack) => closed = Some(ack),
                    }
                }
                let rows: Vec<(u64, String)> = batch
                    .iter()
                    .filter_map(|e| serde_json::to_string(e).ok())
                    .map(|t| {
                        seq += 1;
                        (seq, t)
                    })
                    .collect();
                if !rows.is_empty() {
                    write(&jobs, &id, rows).await;
                }
            }
            if let Some(ack) = closed {
                let _ = ack.send(());
            }
        });
        Arc::new(PartSink(tx))
    }

    /// Writes the events sent so far and stops the writer.
    async fn close(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        if self.0.send(Msg::Close(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

/// Writes a batch of a part's events, trying again while the database is away (the
/// part's lease ends meanwhile if it stays away).
async fn write(jobs: &Jobs, id: &str, rows: Vec<(u64, String)>) {
    for attempt in 0..20 {
        let (i, r) = (id.to_string(), rows.clone());
        match jobs.db.call(move |s| s.add_part_events(&i, &r)).await {
            Ok(()) => return,
            Err(e) if attempt == 0 => tracing::warn!("part {id}: writing its events: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::error!("part {id}: {} event(s) lost", rows.len());
}

impl EventSink for PartSink {
    fn emit(&self, event: Event) {
        let _ = self.0.send(Msg::Event(event));
    }
}
