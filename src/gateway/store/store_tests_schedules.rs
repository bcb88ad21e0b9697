//! The store's contract tests of time: schedules, their runs (one per slot, claimed once)
//! and freezes.

use super::super::{Db, ScheduleRow};
use super::tests::{each, lease, lease_until};
use super::*;

/// A one-off schedule of a deploy at 5 000 ms.
fn schedule(id: &str, created_ms: u64) -> ScheduleRow {
    ScheduleRow {
        id: id.into(),
        app: "hello".into(),
        env: "staging".into(),
        what: "deploy 1.0.0".into(),
        at_ms: Some(5_000),
        cron: None,
        tz: "UTC".into(),
        lock_wait_secs: 60,
        grace_secs: 900,
        user: "ann".into(),
        token_id: "t1".into(),
        paused: false,
        created_ms,
        next_ms: Some(5_000),
    }
}

fn run(slot_ms: u64, state: &str, reason: &str, ts_ms: u64) -> ScheduleRun {
    ScheduleRun {
        slot_ms,
        state: state.into(),
        job_id: None,
        reason: reason.into(),
        ts_ms,
    }
}

fn freeze(env: &str, until_ms: u64, reason: &str) -> FreezeInfo {
    FreezeInfo {
        env: env.into(),
        until_ms,
        reason: reason.into(),
        user: "ann".into(),
        created_ms: 10,
    }
}

#[test]
fn a_schedule_reads_back_whole_and_each_change_says_whether_it_found_it() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.schedules(None).unwrap().is_empty());
        assert!(s.schedules(Some("nope")).unwrap().is_empty());
        let nightly = ScheduleRow {
            app: "shop".into(),
            env: "production".into(),
            what: "restart".into(),
            at_ms: None,
            cron: Some("0 3 * * *".into()),
            tz: "Europe/Paris".into(),
            paused: true,
            next_ms: None,
            ..schedule("s2", 1)
        };
        let once = schedule("s1", 2);
        s.add_schedule(&once).unwrap();
        s.add_schedule(&nightly).unwrap();
        // Oldest first.
        let all = s.schedules(None).unwrap();
        assert_eq!(all, [nightly.clone(), once.clone()]);
        assert_eq!(
            s.schedules(Some("s1")).unwrap(),
            std::slice::from_ref(&once)
        );

        assert!(s.set_schedule_next("s2", Some(9_000)).unwrap());
        assert!(s.set_schedule_next("s1", None).unwrap());
        assert!(s.set_schedule_paused("s2", false).unwrap());
        assert!(s.set_schedule_paused("s1", true).unwrap());
        let expected = [
            ScheduleRow {
                next_ms: Some(9_000),
                paused: false,
                ..nightly
            },
            ScheduleRow {
                next_ms: None,
                paused: true,
                ..once
            },
        ];
        assert_eq!(s.schedules(None).unwrap(), expected);
        assert!(!s.set_schedule_next("nope", Some(1)).unwrap());
        assert!(!s.set_schedule_paused("nope", true).unwrap());
        assert!(!s.remove_schedule("nope", 100).unwrap());

        // A removed schedule is gone for every change, and for a second removal.
        assert!(s.remove_schedule("s1", 100).unwrap());
        assert!(!s.remove_schedule("s1", 200).unwrap());
        assert!(!s.set_schedule_next("s1", Some(1)).unwrap());
        assert!(!s.set_schedule_paused("s1", false).unwrap());
        assert!(s.schedules(Some("s1")).unwrap().is_empty());
        assert_eq!(s.schedules(None).unwrap(), expected[..1]);
    });
}

#[test]
fn a_slot_is_claimed_once_and_the_runs_are_listed_newest_slot_first() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.schedule_runs("s1", 10).unwrap().is_empty());
        let first = run(60_000, "running", "claimed", 60_001);
        assert!(s.claim_run("s1", &first, Some(&lease("gw-a"))).unwrap());
        let again = run(60_000, "skipped", "claimed again", 60_002);
        assert!(
            !s.claim_run("s1", &again, None).unwrap(),
            "a slot runs once"
        );
        assert_eq!(
            s.schedule_runs("s1", 10).unwrap(),
            std::slice::from_ref(&first)
        );
        let missed = run(120_000, "missed", "the gateway was down", 200_000);
        assert!(s.claim_run("s1", &missed, None).unwrap());
        assert!(s.claim_run("s2", &first, None).unwrap(), "per schedule");
        let started = ScheduleRun {
            state: "started".into(),
            job_id: Some("j1".into()),
            reason: "deploy started".into(),
            ts_ms: 60_500,
            ..first.clone()
        };
        s.update_run("s1", &started).unwrap();
        // An update of a slot never claimed claims nothing.
        s.update_run("s1", &run(180_000, "failed", "no", 1))
            .unwrap();
        assert_eq!(
            s.schedule_runs("s1", 10).unwrap(),
            [missed.clone(), started]
        );
        assert_eq!(s.schedule_runs("s1", 1).unwrap(), [missed]);
        assert_eq!(s.schedule_runs("s2", 10).unwrap(), [first]);
    });
}

#[test]
fn interrupted_runs_fail_all_or_only_those_their_gateway_claimed() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let claim = |slot: u64, state: &str, owner: Option<&str>| {
            let l = owner.map(lease);
            let r = run(slot, state, "claimed", slot);
            assert!(s.claim_run("s1", &r, l.as_ref()).unwrap());
        };
        claim(1, "running", Some("gw-a"));
        claim(2, "running", Some("gw-b"));
        claim(3, "running", None);
        claim(4, "started", Some("gw-a"));
        assert_eq!(
            s.interrupt_runs("gw-a restarted", 777, Some("gw-a"))
                .unwrap(),
            1
        );
        assert_eq!(s.interrupt_runs("again", 778, Some("gw-a")).unwrap(), 0);
        assert_eq!(s.interrupt_runs("stopped", 888, None).unwrap(), 2);
        assert_eq!(s.interrupt_runs("stopped", 889, None).unwrap(), 0);
        let runs = s.schedule_runs("s1", 10).unwrap();
        assert_eq!(
            runs,
            [
                run(4, "started", "claimed", 4),
                run(3, "failed", "stopped", 888),
                run(2, "failed", "stopped", 888),
                run(1, "failed", "gw-a restarted", 777),
            ]
        );
    });
}

#[test]
fn a_schedule_slot_is_claimed_once_and_a_dead_claimers_run_fails_after_its_lease() {
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        let run = run(60_000, "running", "claimed", 60_000);
        let short = lease_until("gw-a", 5_000);
        let (x, y) = std::thread::scope(|s| {
            let x = s.spawn(|| a.claim_run("s1", &run, Some(&short)).unwrap());
            let y = s.spawn(|| b.claim_run("s1", &run, Some(&lease("gw-b"))).unwrap());
            (x.join().unwrap(), y.join().unwrap())
        });
        assert!(x ^ y, "exactly one claim: {x} {y}");
        assert!(b.expire_leases(short.until_ms).unwrap().is_empty());
        assert_eq!(b.schedule_runs("s1", 10).unwrap()[0].state, "running");
        b.expire_leases(short.until_ms + 1).unwrap(); // gw-b's lease runs on
        let runs = b.schedule_runs("s1", 10).unwrap();
        let expected = if x { "failed" } else { "running" };
        assert_eq!(runs[0].state, expected, "{runs:?}");
    });
}

#[test]
fn a_freeze_replaces_the_last_one_and_lifting_says_whether_there_was_one() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.freezes().unwrap().is_empty());
        assert!(!s.lift_freeze("production").unwrap());
        s.set_freeze(&freeze("staging", 1, "long over")).unwrap();
        s.set_freeze(&freeze("production", 50_000, "release week"))
            .unwrap();
        let replaced = FreezeInfo {
            user: "bob".into(),
            created_ms: 20,
            ..freeze("production", 90_000, "incident")
        };
        s.set_freeze(&replaced).unwrap();
        // By environment, expired ones too.
        assert_eq!(
            s.freezes().unwrap(),
            [replaced, freeze("staging", 1, "long over")]
        );
        assert!(s.lift_freeze("production").unwrap());
        assert!(!s.lift_freeze("production").unwrap(), "lifted already");
        assert_eq!(s.freezes().unwrap(), [freeze("staging", 1, "long over")]);
    });
}
