//! Tests of the event writer: the live record from `switched` events, and notes of jobs
//! that another writer numbers too.

use super::*;
use deploy_wire::api::JobKind;

fn job(check: bool) -> JobInfo {
    JobInfo {
        id: "j1".into(),
        kind: JobKind::Deploy,
        app: "hello".into(),
        env: "production".into(),
        version: "2.0".into(),
        check,
        user: "ann".into(),
        state: JobState::Running,
        created_ms: 0,
        finished_ms: None,
        error: None,
        triggered_by: None,
    }
}

/// A store holding job `j1`, running (events of other jobs are refused).
fn store_with_job() -> Db {
    let db = Db::in_memory().unwrap();
    let lease = crate::gateway::store::Lease {
        owner: "test".into(),
        until_ms: u64::MAX / 2,
    };
    db.start_job(&job(false), &lease).unwrap().unwrap();
    db
}

fn switched(host: &str, version: &str, slot: &str) -> Event {
    Event::now(EventKind::Switched {
        host: host.into(),
        version: version.into(),
        slot: slot.into(),
    })
}

#[tokio::test]
async fn a_switched_event_records_what_the_host_serves_before_followers_see_it() {
    let db = store_with_job();
    let events = Events::start(db.clone());
    let sink = events.job_sink(&job(false));
    sink.emit(switched("web1", "2.0", "green"));
    // A switch back after a failed health check: the record follows it.
    sink.emit(switched("web2", "2.0", "green"));
    sink.emit(switched("web2", "1.0", "blue"));
    events.close("j1").await; // what `finish` awaits; an interrupted job never gets here
    let web1 = db.live_row("hello", "production", "web1").unwrap().unwrap();
    assert_eq!(
        (
            web1.version.as_str(),
            web1.slot.as_str(),
            web1.job_id.as_str()
        ),
        ("2.0", "green", "j1")
    );
    assert_eq!(web1.user, "ann");
    let web2 = db.live_row("hello", "production", "web2").unwrap().unwrap();
    assert_eq!((web2.version.as_str(), web2.slot.as_str()), ("1.0", "blue"));
    assert_eq!(db.last_seq("j1").unwrap(), 3, "the events are stored too");
}

#[tokio::test]
async fn the_record_is_written_without_waiting_for_the_job_to_end() {
    let db = store_with_job();
    let events = Events::start(db.clone());
    events
        .job_sink(&job(false))
        .emit(switched("web1", "2.0", "green"));
    // No close: poll as a later reader (say, after a crash) would find it.
    let mut found = None;
    for _ in 0..100 {
        found = db.live_row("hello", "production", "web1").unwrap();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(found.map(|r| r.version), Some("2.0".into()));
}

#[tokio::test]
async fn check_mode_and_the_relay_sink_record_nothing() {
    let db = store_with_job();
    let events = Events::start(db.clone());
    events
        .job_sink(&job(true))
        .emit(switched("web1", "2.0", "green"));
    events.sink("j1").emit(switched("web2", "2.0", "green"));
    events.close("j1").await;
    assert_eq!(db.live_row("hello", "production", "web1").unwrap(), None);
    assert_eq!(db.live_row("hello", "production", "web2").unwrap(), None);
}

fn notified(attempt: u32) -> Event {
    Event::now(EventKind::Notified {
        notifier: "webhook (h)".into(),
        event: "job.failed".into(),
        attempt,
        ok: false,
        error: Some("connection refused".into()),
    })
}

#[tokio::test]
async fn notes_of_an_ended_job_from_two_writers_each_take_the_next_free_number() {
    // Two gateways' writers on one database, both sending notifications of job j1
    // after its end: neither may lose a note to a number the other took.
    let db = store_with_job();
    db.append_events(&[NewEvent {
        job: "j1".into(),
        seq: 1,
        ts_ms: 1,
        data: "{}".into(),
        note: false,
    }])
    .unwrap();
    let end = crate::gateway::store::JobEnd::plain(JobState::Failed, None);
    assert!(db.finish_job("j1", &end).unwrap());
    let (a, b) = (Events::start(db.clone()), Events::start(db.clone()));
    // No close between them (a writer would then forget its count anyway): each waits
    // for the other's note to be stored.
    let mut stored = 2;
    for attempt in 1..=3 {
        for w in [&a, &b] {
            w.sink("j1").emit(notified(attempt));
            stored += 1;
            for _ in 0..200 {
                if db.last_seq("j1").unwrap() == stored {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(db.last_seq("j1").unwrap(), stored, "note {attempt} lost");
        }
    }
    let stored = db.events_after("j1", 0, 100).unwrap();
    let seqs: Vec<u64> = stored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=8).collect::<Vec<_>>(),
        "two events, then six notes"
    );
    let notes = stored
        .iter()
        .filter(|(_, d)| d.contains("\"notified\""))
        .count();
    assert_eq!(notes, 6);
}
