//! Job events, stored before they are seen: the one writer (a thread off the async
//! runtime that numbers each job's events, stores them in batches and only then wakes
//! followers), the engine's sink that feeds it, and the follower that tails a job from
//! the store (a live tail and a replay are the same code).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use deploy_wire::Event;
use deploy_wire::api::JobState;
use tokio::sync::{broadcast, oneshot};

use super::store::{Db, NewEvent};
use crate::engine::EventSink;

/// At most this many events go into one transaction.
const BATCH: usize = 512;

enum Msg {
    Event {
        job: String,
        event: Event,
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
    tx: mpsc::Sender<Msg>,
    /// A job id when it has new events or ended; "" to wake every follower.
    notify: broadcast::Sender<String>,
}

/// The engine's sink for one job: hands events to the writer, never blocks.
struct WriterSink {
    job: String,
    tx: mpsc::Sender<Msg>,
}

impl EventSink for WriterSink {
    fn emit(&self, event: Event) {
        let job = self.job.clone();
        if self.tx.send(Msg::Event { job, event }).is_err() {
            tracing::error!(job = %self.job, "the event writer has stopped; an event is lost");
        }
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
        let (notify, _) = broadcast::channel(1024);
        let (wdb, wnotify) = (db.clone(), notify.clone());
        std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || write_loop(wdb, rx, wnotify))
            .expect("spawning the event writer thread");
        Events { db, tx, notify }
    }

    pub fn sink(&self, job: &str) -> Arc<dyn EventSink> {
        Arc::new(WriterSink {
            job: job.to_string(),
            tx: self.tx.clone(),
        })
    }

    /// Waits until every event of `job` emitted so far is stored.
    pub async fn close(&self, job: &str) {
        let (done, wait) = oneshot::channel();
        let job = job.to_string();
        if self.tx.send(Msg::Close { job, done }).is_ok() {
            let _ = wait.await;
        }
    }

    /// Wakes every follower (a job ended).
    pub fn wake_all(&self) {
        let _ = self.notify.send(String::new());
    }

    /// Tails `job` from the store: events with `seq > after`, live ones as they are
    /// stored, then its end.  The receiver may be dropped at any time.
    pub fn follow(&self, job: String, after: u64) -> tokio::sync::mpsc::Receiver<Tail> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let (db, wake) = (self.db.clone(), self.notify.subscribe());
        tokio::spawn(async move {
            if let Err(e) = tail(db, wake, job, after, tx).await {
                tracing::warn!("following a job stopped: {e}");
            }
        });
        rx
    }
}

/// The writer: drains what is queued, stores it in one transaction, then wakes.
fn write_loop(db: Db, rx: mpsc::Receiver<Msg>, notify: broadcast::Sender<String>) {
    let mut seqs: HashMap<String, u64> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let (mut batch, mut closes) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event { job, event } => {
                    let seq = seqs.entry(job.clone()).or_default();
                    *seq += 1;
                    let data = serde_json::to_string(&event).expect("events serialize");
                    batch.push(NewEvent {
                        seq: *seq,
                        ts_ms: event.ts_ms,
                        job,
                        data,
                    });
                }
                Msg::Close { job, done } => closes.push((job, done)),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty()
            && let Err(e) = db.append_events(&batch)
        {
            tracing::error!("{} event(s) not stored: {e}", batch.len());
        }
        let jobs: BTreeSet<&str> = batch.iter().map(|e| e.job.as_str()).collect();
        for job in jobs {
            let _ = notify.send(job.to_string());
        }
        for (job, done) in closes {
            seqs.remove(&job);
            let _ = done.send(());
        }
    }
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
            // Wait for news of this job (or poll every second, in case of a lag).
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    match wake.recv().await {
                        Ok(j) if j == job || j.is_empty() => break,
                        Ok(_) => {}
                        Err(_) => break, // lagged or closed: re-read the store
                    }
                }
            })
            .await;
        }
    }
}
