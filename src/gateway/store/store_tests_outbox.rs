//! The store's contract tests of the notification outbox (written once per key, claimed
//! by one gateway at a time, due again when a claimer died, recorded only by its claim,
//! left to the process that runs its job) and of dashboard sessions.

use super::super::{Attempted, Db, Delivery, DeliveryState, NewDelivery, SessionRow};
use super::tests::{each, job, lease};
use super::*;
use deploy_wire::api::JobState;

/// A notification of `job` to `route`, due at `due_ms`.
fn row(job: &str, notice: &str, route: &str, due_ms: u64) -> NewDelivery {
    NewDelivery {
        id: format!("{job}.{notice}.{route}"),
        job_id: job.into(),
        notice: notice.into(),
        route: route.into(),
        payload: format!("{{\"event\":\"{notice}\"}}"),
        due_ms,
    }
}

fn routes(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn ids(rows: &[Delivery]) -> Vec<&str> {
    rows.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn a_notification_is_written_once_per_key_and_claimed_when_due_for_known_routes() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let rows = [
            row("j1", "started", "hook", 100),
            row("j1", "started", "slack", 100),
            row("j1", "failed", "hook", 300),
        ];
        assert_eq!(s.add_deliveries(&rows).unwrap(), 3);
        let mut again = rows[0].clone();
        again.payload = "{\"changed\":true}".into();
        assert_eq!(
            s.add_deliveries(&[again]).unwrap(),
            0,
            "a key is written once"
        );
        let stored = s.deliveries("j1").unwrap();
        assert_eq!(stored.len(), 3);
        let first = stored.iter().find(|d| d.id == "j1.started.hook").unwrap();
        assert_eq!(
            (
                first.id.as_str(),
                first.notice.as_str(),
                first.route.as_str()
            ),
            ("j1.started.hook", "started", "hook")
        );
        assert_eq!(first.payload, "{\"event\":\"started\"}", "not overwritten");
        assert_eq!((first.state, first.attempts), (DeliveryState::Pending, 0));
        assert_eq!((first.next_ms, first.claimed_by.as_deref()), (100, None));
        assert!(s.deliveries("j2").unwrap().is_empty());

        // Not before it is due; only routes this gateway knows; within the limit.
        let known = routes(&["hook"]);
        assert!(
            s.claim_deliveries("g", &known, 99, 1_099, 10)
                .unwrap()
                .is_empty()
        );
        assert!(
            s.claim_deliveries("g", &[], 1_000, 2_000, 10)
                .unwrap()
                .is_empty()
        );
        let got = s.claim_deliveries("g", &known, 300, 1_300, 1).unwrap();
        assert_eq!(ids(&got), ["j1.started.hook"]);
        assert_eq!((got[0].attempts, got[0].next_ms), (1, 1_300));
        assert_eq!(got[0].claimed_by.as_deref(), Some("g"));
        let got = s.claim_deliveries("g", &known, 300, 1_300, 10).unwrap();
        assert_eq!(ids(&got), ["j1.failed.hook"], "the claimed one is not due");
        let all = routes(&["hook", "slack"]);
        let got = s.claim_deliveries("g", &all, 300, 1_300, 10).unwrap();
        assert_eq!(ids(&got), ["j1.started.slack"]);
    });
}

#[test]
fn an_attempt_is_recorded_only_by_its_claim_and_a_retry_is_due_again_at_its_time() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let hook = routes(&["hook"]);
        s.add_deliveries(&[row("j1", "failed", "hook", 0)]).unwrap();
        let claim = |now: u64| {
            s.claim_deliveries("g", &hook, now, now + 1_000, 10)
                .unwrap()
        };
        assert_eq!(claim(10)[0].attempts, 1);
        let retry = Attempted::Retry {
            at_ms: 500,
            error: "answered 503 Service Unavailable".into(),
        };
        let filled = "{\"commits\":[]}";
        assert!(
            s.record_delivery("j1.failed.hook", 1, &retry, Some(filled))
                .unwrap()
        );
        let d = &s.deliveries("j1").unwrap()[0];
        assert_eq!(
            (d.state, d.next_ms, d.done_ms),
            (DeliveryState::Pending, 500, None)
        );
        assert_eq!(
            d.last_error.as_deref(),
            Some("answered 503 Service Unavailable")
        );
        assert_eq!(
            (d.payload.as_str(), d.claimed_by.as_deref()),
            (filled, None)
        );
        assert!(
            !s.record_delivery("j1.failed.hook", 1, &Attempted::Delivered, None)
                .unwrap(),
            "an attempt is recorded once"
        );
        assert!(claim(499).is_empty(), "backing off");
        assert_eq!(claim(500)[0].attempts, 2);
        let failed = Attempted::Failed {
            error: "answered 401 Unauthorized".into(),
        };
        assert!(
            !s.record_delivery("j1.failed.hook", 1, &failed, None)
                .unwrap(),
            "a stale claim"
        );
        assert!(
            s.record_delivery("j1.failed.hook", 2, &failed, None)
                .unwrap()
        );
        let d = &s.deliveries("j1").unwrap()[0];
        assert_eq!((d.state, d.attempts), (DeliveryState::Failed, 2));
        assert_eq!(d.payload, filled, "kept when no new one is given");
        assert!(d.done_ms.is_some());
        assert!(
            claim(10_000).is_empty(),
            "an ended notification is never claimed"
        );
        assert!(
            !s.record_delivery("j1.failed.hook", 2, &Attempted::Delivered, None)
                .unwrap()
        );

        // Delivered and skipped end the row too, without an error.
        s.add_deliveries(&[
            row("j2", "started", "hook", 0),
            row("j3", "started", "hook", 0),
        ])
        .unwrap();
        let got = claim(20);
        assert_eq!(ids(&got), ["j2.started.hook", "j3.started.hook"]);
        assert!(
            s.record_delivery("j2.started.hook", 1, &Attempted::Delivered, None)
                .unwrap()
        );
        assert!(
            s.record_delivery("j3.started.hook", 1, &Attempted::Skipped, None)
                .unwrap()
        );
        let states: Vec<_> = ["j2", "j3"]
            .iter()
            .map(|j| {
                let d = s.deliveries(j).unwrap().remove(0);
                (d.state, d.last_error, d.done_ms.is_some())
            })
            .collect();
        assert_eq!(
            states,
            [
                (DeliveryState::Delivered, None, true),
                (DeliveryState::Skipped, None, true)
            ]
        );
    });
}

#[test]
fn a_dead_claimers_notification_is_due_again_when_its_claim_ends() {
    each(|at| {
        // Two gateways: two handles on one database.
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        let hook = routes(&["hook"]);
        a.add_deliveries(&[row("j1", "succeeded", "hook", 0)])
            .unwrap();
        assert_eq!(
            a.claim_deliveries("a", &hook, 100, 5_100, 10)
                .unwrap()
                .len(),
            1
        );
        assert!(
            b.claim_deliveries("b", &hook, 5_099, 10_099, 10)
                .unwrap()
                .is_empty()
        );
        // `a` died with its claim: at the claim's end the row is `b`'s.
        let got = b.claim_deliveries("b", &hook, 5_100, 10_100, 10).unwrap();
        assert_eq!(
            (got[0].attempts, got[0].claimed_by.as_deref()),
            (2, Some("b"))
        );
        // `a` was only slow: its outcome comes too late and changes nothing.
        assert!(
            !a.record_delivery("j1.succeeded.hook", 1, &Attempted::Delivered, None)
                .unwrap()
        );
        assert!(
            b.record_delivery("j1.succeeded.hook", 2, &Attempted::Delivered, None)
                .unwrap()
        );
        assert_eq!(
            b.deliveries("j1").unwrap()[0].state,
            DeliveryState::Delivered
        );
    });
}

#[test]
fn a_job_running_elsewhere_keeps_its_notifications_for_its_own_process() {
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        let hook = routes(&["hook"]);
        a.start_job(&job("j1", "ann"), &lease("a"))
            .unwrap()
            .unwrap();
        a.add_deliveries(&[
            row("j1", "started", "hook", 0),
            row("gone", "started", "hook", 0),
        ])
        .unwrap();
        // `b` may send for a job no process runs (one pruned, or never stored), not j1.
        let got = b.claim_deliveries("b", &hook, 10, 1_010, 10).unwrap();
        assert_eq!(ids(&got), ["gone.started.hook"]);
        let got = a.claim_deliveries("a", &hook, 10, 1_010, 10).unwrap();
        assert_eq!(ids(&got), ["j1.started.hook"], "its runner sends it");
        a.add_deliveries(&[row("j1", "failed", "hook", 0)]).unwrap();
        assert!(
            b.claim_deliveries("b", &hook, 20, 1_020, 10)
                .unwrap()
                .is_empty()
        );
        a.finish_job("j1", &JobEnd::plain(JobState::Failed, None))
            .unwrap();
        let got = b.claim_deliveries("b", &hook, 30, 1_030, 10).unwrap();
        assert_eq!(ids(&got), ["j1.failed.hook"], "after its end, any gateway");
    });
}

#[test]
fn racing_claims_on_two_handles_send_each_notification_once() {
    each(|at| {
        let handles = [Db::open(at).unwrap(), Db::open(at).unwrap()];
        let hook = routes(&["hook"]);
        let rows: Vec<_> = (0..40)
            .map(|i| row(&format!("j{i:02}"), "failed", "hook", 0))
            .collect();
        handles[0].add_deliveries(&rows).unwrap();
        let claimed = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..6 {
                let (s, hook, claimed) = (&handles[t % 2], &hook, &claimed);
                scope.spawn(move || {
                    loop {
                        let got = s
                            .claim_deliveries(&format!("g{t}"), hook, 10, 60_000, 3)
                            .unwrap();
                        if got.is_empty() {
                            break;
                        }
                        claimed
                            .lock()
                            .unwrap()
                            .extend(got.into_iter().map(|d| d.id));
                    }
                });
            }
        });
        let mut claimed = claimed.into_inner().unwrap();
        claimed.sort();
        let want: Vec<_> = rows.iter().map(|r| r.id.clone()).collect();
        assert_eq!(claimed, want, "each row claimed exactly once");
    });
}

#[test]
fn a_session_is_found_by_its_hash_until_it_expires_or_ends_and_stays_bounded() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let session = |token: &str, created_ms: u64, expires_ms: u64| SessionRow {
            token_id: token.into(),
            expires_ms,
            created_ms,
        };
        s.create_session("h1", &session("t1", 100, 1_000), 10)
            .unwrap();
        assert_eq!(
            s.session("h1", 999).unwrap(),
            Some(session("t1", 100, 1_000))
        );
        assert_eq!(s.session("h1", 1_000).unwrap(), None, "expired");
        assert_eq!(s.session("nope", 1).unwrap(), None);
        s.create_session("h2", &session("t2", 200, 5_000), 10)
            .unwrap();
        assert!(s.end_session("h2").unwrap());
        assert!(!s.end_session("h2").unwrap());
        assert_eq!(s.session("h2", 300).unwrap(), None);
        // Retention removes the expired ones only.
        s.create_session("h3", &session("t1", 300, 9_000), 10)
            .unwrap();
        assert_eq!(s.prune_sessions(999).unwrap(), 0);
        assert_eq!(s.prune_sessions(1_000).unwrap(), 1);
        assert_eq!(
            s.session("h3", 1_000).unwrap().map(|r| r.expires_ms),
            Some(9_000)
        );
        // A new session drops expired ones and, past the bound, those that end first.
        s.create_session("h4", &session("t1", 400, 2_000), 2)
            .unwrap();
        s.create_session("h5", &session("t1", 500, 8_000), 2)
            .unwrap();
        assert_eq!(s.session("h4", 500).unwrap(), None, "it ended first");
        assert!(s.session("h3", 500).unwrap().is_some());
        assert!(s.session("h5", 500).unwrap().is_some());
        s.create_session("h6", &session("t1", 10_000, 20_000), 2)
            .unwrap();
        assert_eq!(s.session("h3", 10_000).unwrap(), None);
        assert_eq!(s.session("h5", 10_000).unwrap(), None);
        assert!(s.session("h6", 10_000).unwrap().is_some());
    });
}
