//! Connections opened ahead (`prefetch.rs`) on [`super::fake`] servers: the next
//! batch's handshakes run while the batch before it works, a handshake that failed ahead
//! is tried again at the host's turn.  (That nothing runs on a host a halt or a cancel
//! stopped is `tests.rs`'s canary and cancel tests.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deploy_wire::{Event, EventKind, HostStatus, JobStatus};
use futures_util::future::BoxFuture;

use super::error::BackendError;
use super::fake::Fleet;
use super::inventory::Host;
use super::testbed::{Bed, bed, spec};
use super::transport::{Connector, Transport};
use super::{CancelFlag, Collect, EventSink};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The fake fleet behind a handshake that takes `delay`, noting when each began.
struct Slow {
    fleet: Arc<Fleet>,
    delay: Duration,
    began_ms: Mutex<HashMap<String, u64>>,
}

impl Connector for Slow {
    fn connect<'a>(
        &'a self,
        host: &'a Host,
    ) -> BoxFuture<'a, Result<Box<dyn Transport>, BackendError>> {
        Box::pin(async move {
            let began = now_ms();
            self.began_ms
                .lock()
                .unwrap()
                .entry(host.name.clone())
                .or_insert(began);
            tokio::time::sleep(self.delay).await;
            self.fleet.connect(host).await
        })
    }
}

/// A run of hello 1.0.0 on `b` through `slow`: its wall time, when each host's first
/// handshake began and when each host finished (Unix ms).
async fn timed(b: &Bed, slow: Arc<Slow>) -> (Duration, HashMap<String, u64>, HashMap<String, u64>) {
    let plan = super::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
    let sink = Arc::new(Collect::default());
    let started = std::time::Instant::now();
    let flag = CancelFlag::default();
    let r = super::run_with(plan, b.cfg.clone(), slow.clone(), sink.clone(), flag).await;
    let wall = started.elapsed();
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    let events = sink.0.lock().unwrap().clone();
    let finished = (events.into_iter())
        .filter_map(|e| match e.kind {
            EventKind::HostFinished { host, .. } => Some((host, e.ts_ms)),
            _ => None,
        })
        .collect();
    let began = slow.began_ms.lock().unwrap().clone();
    (wall, began, finished)
}

fn slow(b: &Bed) -> Arc<Slow> {
    Arc::new(Slow {
        fleet: b.fleet.clone(),
        delay: Duration::from_millis(300),
        began_ms: Mutex::default(),
    })
}

#[tokio::test]
async fn the_next_batchs_handshakes_run_while_the_batch_before_works() {
    let b = bed("{batch: 1}");
    let (wall, began, finished) = timed(&b, slow(&b)).await;
    // web2's handshake began while web1 worked, web3's while web2 did.
    assert!(began["web2"] < finished["web1"], "{began:?} {finished:?}");
    assert!(began["web3"] < finished["web2"], "{began:?} {finished:?}");
    // Three batches one after another, each handshake 300 ms: 900 ms and more without
    // the overlap.
    assert!(wall < Duration::from_millis(850), "{wall:?}");
    eprintln!("3 batches of one host, 300 ms handshakes: {wall:?}");
}

#[tokio::test]
async fn within_a_batch_each_host_that_starts_opens_the_connection_of_the_one_after_it() {
    // One batch of three, one host at a time: each next host's handshake runs while the
    // one before it works; each host is connected to once.
    let b = bed("{}\n        parallel: 1");
    let (wall, began, finished) = timed(&b, slow(&b)).await;
    let mut hosts: Vec<&String> = finished.keys().collect();
    hosts.sort_by_key(|h| finished[*h]);
    assert!(
        began[hosts[1]] < finished[hosts[0]],
        "{began:?} {finished:?}"
    );
    assert!(
        began[hosts[2]] < finished[hosts[1]],
        "{began:?} {finished:?}"
    );
    let mut connects = b.connects();
    connects.sort();
    assert_eq!(connects, ["web1", "web2", "web3"], "one connection each");
    assert!(wall < Duration::from_millis(850), "{wall:?}");
    eprintln!("one batch of 3, parallel 1, 300 ms handshakes: {wall:?}");
}

/// Sets `host` down (its connections close) or up as soon as `after` finishes.
struct WhenFinished {
    after: &'static str,
    host: &'static str,
    down: bool,
    fleet: Arc<Fleet>,
    inner: Collect,
}

impl EventSink for WhenFinished {
    fn emit(&self, event: Event) {
        if let EventKind::HostFinished { host, .. } = &event.kind
            && host == self.after
        {
            self.fleet.server(self.host).state().down = self.down;
        }
        self.inner.emit(event);
    }
}

/// Runs hello 1.0.0 on `b`, setting web2 `down` (or up) once web1 finished;
/// returns web2's end and how many times it was connected to.
async fn web2_after_web1(b: &Bed, down: bool) -> (HostStatus, usize) {
    let sink = Arc::new(WhenFinished {
        after: "web1",
        host: "web2",
        down,
        fleet: b.fleet.clone(),
        inner: Collect::default(),
    });
    let plan = super::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
    let flag = CancelFlag::default();
    let r = super::run_with(plan, b.cfg.clone(), b.fleet.clone(), sink, flag).await;
    let web2 = r.hosts.iter().find(|h| h.host == "web2").unwrap();
    let tries = b.connects().iter().filter(|h| *h == "web2").count();
    (web2.status, tries)
}

#[tokio::test]
async fn a_host_stopped_after_its_handshake_ahead_is_unreachable_at_its_turn_not_failed() {
    let b = bed("{batch: 1, max_failed: 5}");
    let (status, tries) = web2_after_web1(&b, true).await;
    assert_eq!(status, HostStatus::Unreachable);
    assert_eq!(tries, 2, "opened ahead, found closed, tried again");
}

#[tokio::test]
async fn a_handshake_that_failed_ahead_is_tried_again_at_the_hosts_turn() {
    let b = bed("{batch: 1}");
    b.fleet.server("web2").state().down = true;
    let (status, tries) = web2_after_web1(&b, false).await;
    assert_eq!(status, HostStatus::Changed);
    assert_eq!(tries, 2, "refused ahead, then up at its turn");
}
