//! Job events, stored before they are seen: the one writer (a thread off the async
//! runtime that numbers each job's events, stores them in batches and only then wakes
//! followers), the engine's sink that feeds it, and the follower that tails a job from
//! the store (a live tail and a replay are the same code).
//!
//! The writer never loses events to a database outage: a batch that cannot be stored is
//! tried again (backing off to 2 s) until the database answers, while new events wait
//! in order in the writer's queue behind it.  The queue is bounded: past
//! [`MAX_QUEUED`] events waiting, a job's output lines are dropped (counted in the
//! gateway's log) while every event of its story is still kept.  A batch the database
//! refuses while it answers (bad data) is stored one event at a time, and the events it
//! refuses are logged and dropped, so one bad line never blocks the writer.
//!
//! A note (a notification's attempt, `notified`) of a job this writer does not number is
//! numbered from the store instead, as the next free number: the outboxes of several
//! gateways may write notes of one ended job.
//!
//! A job's `switched` events also update the live record (which release each host serves)
//! in the writer, right after the events are stored and before followers wake, so an
//! interrupted job leaves the truth behind.  Followers are counted (a gauge) and capped;
//! each ends as soon as its client goes away.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use deploy_wire::api::{JobInfo, JobState};
use deploy_wire::{Event, EventKind};
use tokio::sync::{broadcast, oneshot};

use super::store::{Db, LiveRow, NewEvent, StoreError};
use crate::engine::EventSink;

/// At most this many events go into one transaction.
const BATCH: usize = 512;
/// Events waiting for the store beyond which output lines are dropped.
pub const MAX_QUEUED: usize = 100_000;
/// At most this many followers (SSE streams, `apply` tails) at once.
pub const MAX_FOLLOWERS: usize = 256;

/// What the writer needs to turn a job's `switched` events into live rows.
struct JobMeta {
    app: String,
    env: String,
    user: String,
}

enum Msg {
    Event {
        job: String,
        event: Event,
        meta: Option<Arc<JobMeta>>,
    },
    /// Answered once everything sent before it is stored; the job's counter is dropped.
    Close {
        job: String,
        done: oneshot::Sender<()>,
    },
}

/// The handle on the writer thread and on the wake-ups of followers.
#[derive(Clone)]
pub struct Events {
    db: Db,
    tx: Queue,
    /// A job id when it has new events or ended; "" to wake every follower.
    notify: broadcast::Sender<String>,
    /// Followers alive now (the gauge `/v1/health` shows).
    followers: Arc<AtomicUsize>,
}

/// The writer's queue, and how many events wait in it.
#[derive(Clone)]
struct Queue {
    tx: mpsc::Sender<Msg>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Queue {
    fn send(&self, msg: Msg) -> bool {
        if let Msg::Event { event, .. } = &msg {
            let waiting = self.queued.fetch_add(1, Ordering::SeqCst);
            if waiting >= MAX_QUEUED && matches!(event.kind, EventKind::Output { .. }) {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                if self
                    .dropped
                    .fetch_add(1, Ordering::SeqCst)
                    .is_multiple_of(10_000)
                {
                    tracing::error!(
                        "{MAX_QUEUED} events wait for the database: output lines are dropped"
                    );
                }
                return true;
            }
        }
        self.tx.send(msg).is_ok()
    }
}

/// The engine's sink for one job: hands events to the writer, never blocks.
struct WriterSink {
    job: String,
    meta: Option<Arc<JobMeta>>,
    tx: Queue,
}

impl EventSink for WriterSink {
    fn emit(&self, event: Event) {
        super::metrics::get().event(&event.kind);
        let (job, meta) = (self.job.clone(), self.meta.clone());
        if !self.tx.send(Msg::Event { job, event, meta }) {
            tracing::error!(job = %self.job, "the event writer has stopped; an event is lost");
        }
    }
}

/// Too many followers already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Counts one follower while it lives.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a follower sees: each stored event, then the job's end.
#[derive(Debug, Clone, PartialEq)]
pub enum Tail {
    Event { seq: u64, data: String },
    End(JobState),
}

impl Events {
    /// Starts the writer thread; it ends when the last handle and sink are gone.
    pub fn start(db: Db) -> Events {
        let (tx, rx) = mpsc::channel();
        let tx = Queue {
            tx,
            queued: Arc::default(),
            dropped: Arc::default(),
        };
        let (notify, _) = broadcast::channel(1024);
        let (wdb, wnotify, queued) = (db.clone(), notify.clone(), tx.queued.clone());
        // Events other gateways store (a shared database) wake followers here too.
        let remote = notify.clone();
        db.watch(Box::new(move |job| {
            let _ = remote.send(job.to_string());
        }));
        std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || write_loop(wdb, rx, wnotify, queued))
            .expect("spawning the event writer thread");
        let followers = Arc::new(AtomicUsize::new(0));
        Events {
            db,
            tx,
            notify,
            followers,
        }
    }

    /// A sink for events of `job` that are not the engine's own (the relay's).
    pub fn sink(&self, job: &str) -> Arc<dyn EventSink> {
        Arc::new(WriterSink {
            job: job.to_string(),
            meta: None,
            tx: self.tx.clone(),
        })
    }

    /// The engine's sink for `job`: its `switched` events also update the live record
    /// (except in check mode, which switches nothing).
    pub fn job_sink(&self, job: &JobInfo) -> Arc<dyn EventSink> {
        let meta = (!job.check).then(|| {
            Arc::new(JobMeta {
                app: job.app.clone(),
                env: job.env.clone(),
                user: job.user.clone(),
            })
        });
        Arc::new(WriterSink {
            job: job.id.clone(),
            meta,
            tx: self.tx.clone(),
        })
    }

    /// Followers alive now.
    pub fn followers(&self) -> usize {
        self.followers.load(Ordering::SeqCst)
    }

    /// Waits until every event of `job` emitted so far is stored.
    pub async fn close(&self, job: &str) {
        let (done, wait) = oneshot::channel();
        let job = job.to_string();
        if self.tx.send(Msg::Close { job, done }) {
            let _ = wait.await;
        }
    }

    /// News of stored events: a job's id for each batch stored (here or, on a shared
    /// database, by another gateway), "" when a job ended.
    pub fn news(&self) -> broadcast::Receiver<String> {
        self.notify.subscribe()
    }

    /// Wakes every follower (a job ended).
    pub fn wake_all(&self) {
        let _ = self.notify.send(String::new());
    }

    /// Tails `job` from the store: events with `seq > after`, live ones as they are
    /// stored, then its end.  Dropping the receiver ends the follower at once.
    /// Err: [`MAX_FOLLOWERS`] are following already.
    pub fn follow(
        &self,
        job: String,
        after: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<Tail>, Busy> {
        let was = self.followers.fetch_add(1, Ordering::SeqCst);
        let counted = Counted(self.followers.clone());
        if was >= MAX_FOLLOWERS {
            return Err(Busy);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let (db, wake) = (self.db.clone(), self.notify.subscribe());
        tokio::spawn(async move {
            let _counted = counted;
            if let Err(e) = tail(db, wake, job, after, tx).await {
                tracing::warn!("following a job stopped: {e}");
            }
        });
        Ok(rx)
    }
}

/// The writer: drains what is queued, stores it in one transaction, then wakes.
fn write_loop(
    db: Db,
    rx: mpsc::Receiver<Msg>,
    notify: broadcast::Sender<String>,
    queued: Arc<AtomicUsize>,
) {
    let mut seqs: HashMap<String, u64> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let (mut batch, mut closes, mut live) = (Vec::new(), Vec::new(), Vec::new());
        let mut notes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event { job, event, meta } => {
                    if let Some(row) = meta.and_then(|m| live_row(&m, &job, &event)) {
                        live.push(row);
                    }
                    let note = matches!(event.kind, EventKind::Notified { .. });
                    if note && !seqs.contains_key(&job) {
                        // A note of a job this writer does not number (it ended, or
                        // started before a restart): another gateway's outbox may be
                        // writing notes of it too, so it is numbered from the store.
                        notes.push((job, event));
                        if batch.len() < BATCH {
                            next = rx.try_recv().ok();
                        }
                        continue;
                    }
                    // A job's first event here: numbered on from what is stored.
                    let seq = match seqs.get_mut(&job) {
                        Some(seq) => seq,
                        None => {
                            let id = job.clone();
                            let last =
                                persist("reading the last event number", || db.last_seq(&id));
                            seqs.entry(job.clone()).or_insert(last.unwrap_or(0))
                        }
                    };
                    *seq += 1;
                    let data = serde_json::to_string(&event).expect("events serialize");
                    batch.push(NewEvent {
                        seq: *seq,
                        ts_ms: event.ts_ms,
                        job,
                        data,
                        note,
                    });
                }
                Msg::Close { job, done } => closes.push((job, done)),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            store_events(&db, &batch);
            queued.fetch_sub(batch.len(), Ordering::SeqCst);
        }
        for (job, event) in &notes {
            store_note(&db, job, event);
        }
        queued.fetch_sub(notes.len(), Ordering::SeqCst);
        if !live.is_empty()
            && persist("recording what hosts serve", || db.set_live(&live)).is_none()
        {
            tracing::error!("the live record of {} host(s) not stored", live.len());
        }
        let noted = notes.iter().map(|(job, _)| job.as_str());
        let jobs: BTreeSet<&str> = batch.iter().map(|e| e.job.as_str()).chain(noted).collect();
        for job in jobs {
            let _ = notify.send(job.to_string());
        }
        for (job, done) in closes {
            // (An event after the close starts from the stored last number.)
            seqs.remove(&job);
            let _ = done.send(());
        }
    }
}

/// Stores a batch, through any outage; events the database refuses while it answers
/// are logged and dropped, one by one.
fn store_events(db: &Db, batch: &[NewEvent]) {
    let refused = match persist("storing events", || db.append_events(batch)) {
        Some(refused) => refused,
        None => batch
            .iter()
            .map(|e| {
                persist("storing an event", || db.append_events(std::slice::from_ref(e)))
                    .unwrap_or_else(|| {
                        tracing::error!(job = %e.job, seq = e.seq, "an event the database refuses is dropped");
                        1
                    })
            })
            .sum(),
    };
    if refused > 0 {
        tracing::warn!(
            "{refused} event(s) not stored: their job had already ended (its final event is final)"
        );
    }
}

/// Stores a note as the next number of its job's stored events; if another writer took
/// that number meanwhile, with the next one (a few times).
fn store_note(db: &Db, job: &str, event: &Event) {
    let data = serde_json::to_string(event).expect("events serialize");
    for _ in 0..5 {
        let Some(last) = persist("reading the last event number", || db.last_seq(job)) else {
            return;
        };
        let note = NewEvent {
            job: job.to_string(),
            seq: last + 1,
            ts_ms: event.ts_ms,
            data: data.clone(),
            note: true,
        };
        match persist("storing a note", || {
            db.append_events(std::slice::from_ref(&note))
        }) {
            Some(0) | None => return,
            Some(_) => {} // the number was taken: read the last one again
        }
    }
    tracing::warn!(
        job,
        "a note was not stored: other writers kept taking its number"
    );
}

/// Runs `f` until it succeeds while the database cannot be reached (backing off up to
/// 2 s); None once it failed three times while the database answered (the operation
/// itself is refused).
fn persist<T>(doing: &str, f: impl Fn() -> Result<T, StoreError>) -> Option<T> {
    let (mut wait, mut refused, mut said) = (Duration::from_millis(100), 0, false);
    loop {
        match f() {
            Ok(v) => {
                if said {
                    tracing::info!("{doing}: the database answers again; nothing was lost");
                }
                return Some(v);
            }
            Err(e) if e.is_unavailable() => {
                if !said {
                    tracing::error!(
                        "{doing}: {e}; kept, and tried again until the database answers"
                    );
                    said = true;
                }
            }
            Err(e) => {
                refused += 1;
                if refused >= 3 {
                    tracing::error!("{doing}: {e}");
                    return None;
                }
            }
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// The live row a `switched` event of a job means.
fn live_row(meta: &JobMeta, job: &str, event: &Event) -> Option<LiveRow> {
    let EventKind::Switched {
        host,
        version,
        slot,
    } = &event.kind
    else {
        return None;
    };
    Some(LiveRow {
        app: meta.app.clone(),
        env: meta.env.clone(),
        host: host.clone(),
        version: version.clone(),
        slot: slot.clone(),
        job_id: job.to_string(),
        user: meta.user.clone(),
        ts_ms: event.ts_ms,
    })
}

async fn tail(
    db: Db,
    mut wake: broadcast::Receiver<String>,
    job: String,
    mut after: u64,
    tx: tokio::sync::mpsc::Sender<Tail>,
) -> Result<(), super::store::StoreError> {
    loop {
        let id = job.clone();
        // The job first: once it reads finished, every event of it is already stored.
        let (info, rows) = db
            .call(move |s| Ok((s.job(&id)?, s.events_after(&id, after, 500)?)))
            .await?;
        let Some(info) = info else { return Ok(()) };
        let empty = rows.is_empty();
        for (seq, data) in rows {
            after = seq;
            if tx.send(Tail::Event { seq, data }).await.is_err() {
                return Ok(()); // the follower went away; the job goes on
            }
        }
        if empty && info.is_finished() {
            let _ = tx.send(Tail::End(info.state)).await;
            return Ok(());
        }
        if empty {
            // Wait for news of this job (or poll every second, in case of a lag), and
            // stop at once when the follower goes away.
            let news = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    match wake.recv().await {
                        Ok(j) if j == job || j.is_empty() => break,
                        Ok(_) => {}
                        Err(_) => break, // lagged or closed: re-read the store
                    }
                }
            });
            tokio::select! {
                _ = news => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
