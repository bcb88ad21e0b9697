//! Tests of the outbox's sender on a real store (SQLite) with fake notifiers: retries
//! with one idempotency key, permanent failures, panics, notices nobody wants, the last
//! attempt allowed, and a delivery whose claimer died sent again by another gateway.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use deploy_wire::api::{JobInfo, JobKind, JobState};

use super::*;
use crate::artifacts::Secret;
use crate::gateway::store::{DeliveryState, Location, NewDelivery};
use crate::notify::fake::FakeNotifier;
use crate::notify::{Filter, Notice, NoticeKind, Notifier, Retry};

type Seen = Arc<Mutex<Vec<DeliveryOutcome>>>;

fn collector() -> (Report, Seen) {
    let seen = Seen::default();
    let s = seen.clone();
    (Arc::new(move |o| s.lock().unwrap().push(o)), seen)
}

fn quick(attempts: u32) -> Retry {
    Retry {
        attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_millis(300),
    }
}

fn route(id: &str, n: Arc<dyn Notifier>, attempts: u32) -> Route {
    Route {
        id: id.into(),
        filter: Filter::default(),
        notifier: n,
        retry: quick(attempts),
    }
}

fn job(id: &str) -> JobInfo {
    JobInfo {
        id: id.into(),
        kind: JobKind::Deploy,
        app: "hello".into(),
        env: "staging".into(),
        version: "1.2.0".into(),
        check: false,
        user: "alice".into(),
        state: JobState::Failed,
        created_ms: 1,
        finished_ms: Some(2),
        error: None,
        triggered_by: None,
    }
}

/// Writes the `failed` notice of `job` for every route of `o`, as `Notices` does.
fn write(db: &Db, o: &Outbox, job_id: &str) {
    let p = Payload::new(&job(job_id), NoticeKind::Failed, None, 3);
    let text = serde_json::to_string(&p).unwrap();
    let rows: Vec<_> = (o.routes().iter())
        .map(|r| NewDelivery {
            id: p.key(&r.id),
            job_id: job_id.into(),
            notice: "failed".into(),
            route: r.id.clone(),
            payload: text.clone(),
            due_ms: 0,
        })
        .collect();
    db.add_deliveries(&rows).unwrap();
}

/// Passes until no delivery of `job` is pending.
async fn drain(o: &Arc<Outbox>, db: &Db, job: &str) {
    for _ in 0..500 {
        for h in o.pass().await.unwrap() {
            h.await.unwrap();
        }
        let rows = db.deliveries(job).unwrap();
        if rows.iter().all(|d| d.state != DeliveryState::Pending) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "deliveries still pending: {:?}",
        db.deliveries(job).unwrap()
    );
}

fn summary(seen: &Seen, notifier: &str) -> Vec<(u32, bool, bool)> {
    (seen.lock().unwrap().iter())
        .filter(|o| o.notifier == format!("fake ({notifier})"))
        .map(|o| (o.attempt, o.ok, o.retry_in.is_some()))
        .collect()
}

#[tokio::test]
async fn retries_until_delivered_with_one_key_every_attempt_reported_and_scrubbed() {
    let db = Db::in_memory().unwrap();
    let mut fake = FakeNotifier::new("a").failing(2);
    fake.secret = Some(Secret::new("k3y-value"));
    let fake = Arc::new(fake);
    let (report, seen) = collector();
    let o = Arc::new(Outbox::new(
        db.clone(),
        vec![route("hook", fake.clone(), 4)],
        "g",
        report,
    ));
    write(&db, &o, "j1");
    drain(&o, &db, "j1").await;
    assert_eq!(
        summary(&seen, "a"),
        [(1, false, true), (2, false, true), (3, true, false)]
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].error.as_deref(), Some("told to fail (key ***)"));
    assert!(!format!("{seen:?}").contains("k3y-value"));
    assert!(
        seen.iter()
            .all(|o| o.delivery == "j1.failed.hook" && o.attempts == 4)
    );
    assert_eq!(
        fake.notices()[0].delivery,
        "j1.failed.hook",
        "the key is sent"
    );
    let row = db.deliveries("j1").unwrap().remove(0);
    assert_eq!((row.state, row.attempts), (DeliveryState::Delivered, 3));
    assert_eq!(row.last_error.as_deref(), Some("told to fail (key ***)"));
    let stored: Payload = serde_json::from_str(&row.payload).unwrap();
    assert_eq!(
        stored.commits,
        Some(vec![]),
        "looked up once, kept for every attempt"
    );
    assert!(o.pass().await.unwrap().is_empty(), "nothing more to send");
}

#[tokio::test]
async fn a_permanent_failure_ends_the_delivery_and_a_retryable_one_is_retried() {
    let db = Db::in_memory().unwrap();
    let refusing = Arc::new(FakeNotifier::new("refusing").refusing(5));
    let flaky = Arc::new(FakeNotifier::new("flaky").failing(1));
    let down = Arc::new(FakeNotifier::new("down").failing(100));
    let routes = vec![
        route("r", refusing.clone(), 3),
        route("f", flaky.clone(), 3),
        route("d", down.clone(), 2),
    ];
    let (report, seen) = collector();
    let o = Arc::new(Outbox::new(db.clone(), routes, "g", report));
    write(&db, &o, "j1");
    drain(&o, &db, "j1").await;
    assert_eq!(
        summary(&seen, "refusing"),
        [(1, false, false)],
        "not asked twice"
    );
    assert_eq!(refusing.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(
        summary(&seen, "flaky"),
        [(1, false, true), (2, true, false)]
    );
    assert_eq!(
        summary(&seen, "down"),
        [(1, false, true), (2, false, false)],
        "the last allowed"
    );
    let states: Vec<_> = (db.deliveries("j1").unwrap().into_iter())
        .map(|d| (d.route, d.state, d.attempts))
        .collect();
    assert!(
        states.contains(&("r".into(), DeliveryState::Failed, 1)),
        "{states:?}"
    );
    assert!(
        states.contains(&("f".into(), DeliveryState::Delivered, 2)),
        "{states:?}"
    );
    assert!(
        states.contains(&("d".into(), DeliveryState::Failed, 2)),
        "{states:?}"
    );
}

#[derive(Debug)]
struct Odd(&'static str);

impl Notifier for Odd {
    fn describe(&self) -> String {
        self.0.into()
    }
    fn wants(&self, _: &Notice) -> bool {
        self.0 != "uninterested"
    }
    fn send<'a>(
        &'a self,
        _: &'a Notice,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::backend::BackendError>> {
        Box::pin(async { panic!("a bug") })
    }
    fn secrets(&self) -> Vec<Secret> {
        vec![]
    }
}

#[tokio::test]
async fn a_panicking_notifier_fails_once_and_an_unwanted_notice_is_skipped_unsent() {
    let db = Db::in_memory().unwrap();
    let routes = vec![
        route("p", Arc::new(Odd("panics")), 3),
        route("u", Arc::new(Odd("uninterested")), 3),
    ];
    let (report, seen) = collector();
    let o = Arc::new(Outbox::new(db.clone(), routes, "g", report));
    write(&db, &o, "j1");
    drain(&o, &db, "j1").await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the unwanted one is not reported: {seen:?}");
    assert_eq!(seen[0].error.as_deref(), Some("the notifier panicked"));
    assert_eq!(seen[0].retry_in, None);
    let states: Vec<_> = (db.deliveries("j1").unwrap().into_iter())
        .map(|d| (d.route, d.state))
        .collect();
    assert!(states.contains(&("p".into(), DeliveryState::Failed)));
    assert!(states.contains(&("u".into(), DeliveryState::Skipped)));
}

#[tokio::test]
async fn a_delivery_whose_sender_died_is_sent_again_by_another_gateway_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let at = Location::Sqlite(dir.path().join("state.db"));
    let (a_db, b_db) = (Db::open(&at).unwrap(), Db::open(&at).unwrap());
    let fake = Arc::new(FakeNotifier::new("hook"));
    let (report, seen) = collector();
    let b = Arc::new(Outbox::new(
        b_db.clone(),
        vec![route("hook", fake.clone(), 3)],
        "b",
        report,
    ));
    write(&a_db, &b, "j1");
    // Gateway `a` claimed it (and maybe sent it) and died before recording anything.
    let now = a_db.clock_ms().unwrap();
    let ids = vec!["hook".to_string()];
    assert_eq!(
        a_db.claim_deliveries("a", &ids, now, now + 200, 10)
            .unwrap()
            .len(),
        1
    );
    assert!(b.pass().await.unwrap().is_empty(), "held by a's claim");
    tokio::time::sleep(Duration::from_millis(250)).await;
    drain(&b, &b_db, "j1").await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!((seen.len(), seen[0].attempt, seen[0].ok), (1, 2, true));
    assert_eq!(fake.notices()[0].delivery, "j1.failed.hook");
    let row = b_db.deliveries("j1").unwrap().remove(0);
    assert_eq!((row.state, row.attempts), (DeliveryState::Delivered, 2));
    // `a` comes back with its outcome: too late, nothing changes.
    let late = a_db.record_delivery("j1.failed.hook", 1, &Attempted::Delivered, None);
    assert!(!late.unwrap());
}
