//! The store's contract tests of several gateways on one database: leases, a gateway's id,
//! cancels asked of another process, and racing starts.

use super::super::postgres::Postgres;
use super::super::sql::vals;
use super::super::{Db, Location};
use super::tests::{each, holder, job, job_in, lease, lease_until, sorted};
use super::*;
use deploy_wire::api::JobState;

fn taken(owner: &str, ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| (id.to_string(), owner.into()))
        .collect()
}

#[test]
fn an_expired_lease_is_taken_over_once_frees_the_lock_and_stops_its_renewal() {
    each(|at| {
        // Two gateways: two handles on one database (two pools on PostgreSQL).
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        let short = lease_until("gw-a", 5_000);
        a.start_job(&job("j1", "ann"), &short).unwrap().unwrap();
        b.start_job(&job_in("j2", "production"), &lease("gw-b"))
            .unwrap()
            .unwrap();
        assert_eq!(
            a.renew_leases(&short).unwrap(),
            ["j1"],
            "renewed while alive"
        );
        assert!(
            b.expire_leases(short.until_ms).unwrap().is_empty(),
            "not yet"
        );
        // gw-a stops renewing; both gateways look at once, later than its lease.
        let later = short.until_ms + 1;
        let (ta, tb) = std::thread::scope(|s| {
            let x = s.spawn(|| a.expire_leases(later).unwrap());
            let y = s.spawn(|| b.expire_leases(later).unwrap());
            (x.join().unwrap(), y.join().unwrap())
        });
        assert_eq!([ta, tb].concat(), taken("gw-a", &["j1"]), "once");
        let j1 = b.job("j1").unwrap().unwrap();
        assert_eq!(j1.state, JobState::Interrupted);
        assert!(j1.error.unwrap().contains("gw-a"));
        assert_eq!(b.job("j2").unwrap().unwrap().state, JobState::Running);
        assert!(
            b.start_job(&job("j3", "bob"), &lease("gw-b"))
                .unwrap()
                .is_ok()
        );
        // gw-a wakes up: its renewal no longer holds j1, and its end changes nothing.
        assert!(a.renew_leases(&lease("gw-a")).unwrap().is_empty());
        assert!(
            !a.finish_job("j1", &JobEnd::plain(JobState::Succeeded, None))
                .unwrap()
        );
        assert_eq!(b.job("j1").unwrap().unwrap().state, JobState::Interrupted);
    });
}

#[test]
fn a_renewal_extends_its_gateways_running_jobs_and_claimed_runs_only() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let (a, b) = (lease_until("gw-a", 1_000), lease_until("gw-b", 1_000));
        s.start_job(&job_in("j1", "staging"), &a).unwrap().unwrap();
        s.start_job(&job_in("j2", "production"), &b)
            .unwrap()
            .unwrap();
        s.start_job(&job_in("j3", "qa"), &a).unwrap().unwrap();
        s.start_job(&job_in("j4", "dev"), &a).unwrap().unwrap();
        assert!(
            s.finish_job("j3", &JobEnd::plain(JobState::Succeeded, None))
                .unwrap()
        );
        let claim = |slot: u64, l: Option<&Lease>| {
            let r = ScheduleRun {
                slot_ms: slot,
                state: "running".into(),
                job_id: None,
                reason: "claimed".into(),
                ts_ms: slot,
            };
            assert!(s.claim_run("s1", &r, l).unwrap());
        };
        claim(1, Some(&a));
        claim(2, Some(&b));
        claim(3, None);
        let states = || -> Vec<String> {
            let runs = s.schedule_runs("s1", 10).unwrap();
            runs.into_iter().map(|r| r.state).collect()
        };
        let renewed = s.renew_leases(&lease_until("gw-a", 5_000)).unwrap();
        assert_eq!(sorted(renewed), ["j1", "j4"], "its running jobs");
        assert!(
            s.renew_leases(&lease_until("gw-c", 5_000))
                .unwrap()
                .is_empty()
        );
        assert!(s.expire_leases(1_000).unwrap().is_empty(), "ends at 1 000");
        assert_eq!(s.expire_leases(2_000).unwrap(), taken("gw-b", &["j2"]));
        assert!(s.expire_leases(2_000).unwrap().is_empty(), "once");
        assert_eq!(states(), ["running", "failed", "running"]);
        assert_eq!(s.job("j1").unwrap().unwrap().state, JobState::Running);
        assert_eq!(s.job("j3").unwrap().unwrap().state, JobState::Succeeded);
        let mut after = s.expire_leases(5_001).unwrap();
        after.sort();
        assert_eq!(after, taken("gw-a", &["j1", "j4"]));
        assert_eq!(
            states(),
            ["running", "failed", "failed"],
            "no lease, no end"
        );
        assert!(
            s.start_job(&job_in("j5", "production"), &b)
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            s.job("j4").unwrap().unwrap().state,
            JobState::Interrupted,
            "taken over"
        );
    });
}

#[test]
fn twenty_racing_starts_on_two_handles_take_one_lock() {
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        let won: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let db = if i % 2 == 0 { &a } else { &b };
                    s.spawn(move || {
                        let j = job(&format!("j{i}"), "ann");
                        db.start_job(&j, &lease(&format!("gw{}", i % 2)))
                            .unwrap()
                            .is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let running = a.jobs(100, &Scope::All).unwrap();
        assert_eq!(running.len(), 1, "the losers left no job row");
    });
}

#[test]
fn a_cancel_asked_elsewhere_waits_in_the_row_for_the_jobs_own_process() {
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        a.start_job(&job("j1", "ann"), &lease("gw-a"))
            .unwrap()
            .unwrap();
        a.start_job(&job_in("j2", "production"), &lease("gw-a"))
            .unwrap()
            .unwrap();
        assert!(a.cancel_requests("gw-a").unwrap().is_empty());
        assert!(b.request_cancel("j1").unwrap());
        assert!(
            b.request_cancel("j1").unwrap(),
            "asked twice, still running"
        );
        assert!(!b.request_cancel("nope").unwrap());
        assert_eq!(
            a.cancel_requests("gw-a").unwrap(),
            ["j1"],
            "only j1 was asked"
        );
        assert!(
            b.cancel_requests("gw-b").unwrap().is_empty(),
            "only its owner's"
        );
        a.finish_job("j1", &JobEnd::plain(JobState::Cancelled, None))
            .unwrap();
        assert!(a.cancel_requests("gw-a").unwrap().is_empty());
        assert!(!b.request_cancel("j1").unwrap(), "not running any more");
    });
}

/// Waits, on the server, until no session holds the gateway id `owner` (a process's
/// session ends when the server has seen its connection close): an advisory lock on the
/// same key as `Postgres::hold_identity`'s, which blocks until then.
fn wait_until_free(at: &Location, owner: &str) {
    let Location::Postgres { url, password } = at else {
        return;
    };
    let pg = Postgres::open(url, password.as_ref().map(|p| p.expose())).unwrap();
    SqlStore::new(pg)
        .write("waiting for a gateway's id", |c| {
            c.exec("SET LOCAL statement_timeout = 30000", &[])?;
            c.exec(
                "SELECT pg_advisory_xact_lock(7317, hashtext($1))",
                vals![owner],
            )
        })
        .unwrap();
}

#[test]
fn a_gateway_id_is_held_by_one_live_process_and_its_restart_frees_its_own_jobs() {
    each(|at| {
        let a = Db::open(at).unwrap();
        assert!(a.hold_identity("gw-a").unwrap());
        a.start_job(&job("j1", "ann"), &lease("gw-a"))
            .unwrap()
            .unwrap();
        a.start_job(&job_in("j2", "production"), &lease("gw-b"))
            .unwrap()
            .unwrap();
        a.start_job(&job_in("j3", "qa"), &lease("gw-a"))
            .unwrap()
            .unwrap();
        a.finish_job("j3", &JobEnd::plain(JobState::Succeeded, None))
            .unwrap();
        if a.shared() {
            let b = Db::open(at).unwrap();
            assert!(!b.hold_identity("gw-a").unwrap(), "held by a live process");
            assert!(b.hold_identity("gw-b").unwrap());
            drop(a);
            wait_until_free(at, "gw-a");
            let again = Db::open(at).unwrap();
            assert!(
                again.hold_identity("gw-a").unwrap(),
                "a dead process's id is free"
            );
        }
        let s = Db::open(at).unwrap();
        assert!(s.interrupt_owned("gw-c").unwrap().is_empty());
        assert_eq!(
            s.interrupt_owned("gw-a").unwrap(),
            ["j1"],
            "its running jobs"
        );
        assert!(s.interrupt_owned("gw-a").unwrap().is_empty(), "once");
        assert_eq!(s.job("j1").unwrap().unwrap().state, JobState::Interrupted);
        assert_eq!(s.job("j2").unwrap().unwrap().state, JobState::Running);
        assert_eq!(s.job("j3").unwrap().unwrap().state, JobState::Succeeded);
        assert!(
            s.start_job(&job("j4", "ann"), &lease("gw-a"))
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            s.start_job(&job_in("j5", "production"), &lease("gw-a"))
                .unwrap(),
            Err(holder("ann", "j2"))
        );
    });
}

/// Ends the database session that holds `owner`'s id, as a restart of the server does.
fn kill_identity_session(at: &Location, owner: &str) {
    let Location::Postgres { url, password } = at else {
        return;
    };
    let pg = Postgres::open(url, password.as_ref().map(|p| p.expose())).unwrap();
    let killed = SqlStore::new(pg)
        .read("ending a session", |c| {
            c.texts(
                "SELECT CAST(pg_terminate_backend(pid) AS TEXT) FROM pg_locks
                 WHERE locktype = 'advisory' AND CAST(classid AS BIGINT) = 7317
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND CAST(objid AS BIGINT) = (CAST(hashtext($1) AS BIGINT) & 4294967295)",
                vals![owner],
            )
        })
        .unwrap();
    assert_eq!(killed, ["true"], "one session held {owner}");
}

#[test]
fn a_gateway_id_is_taken_again_after_its_session_is_lost_unless_another_took_it() {
    // (Advisory locks are the server's, not one database's: an id of this test only.)
    each(|at| {
        let a = Db::open(at).unwrap();
        assert!(a.hold_identity("gw-relost").unwrap());
        assert!(a.check_identity("gw-relost").unwrap(), "held");
        if !a.shared() {
            return; // SQLite: the lock file beside the database holds the id
        }
        // The database lost the session (a restart): the next check takes it again, and
        // a second process with the same id is refused.
        kill_identity_session(at, "gw-relost");
        assert!(a.check_identity("gw-relost").unwrap(), "taken again");
        let b = Db::open(at).unwrap();
        assert!(
            !b.hold_identity("gw-relost").unwrap(),
            "a duplicate never acts"
        );
        // Lost again, and this time the duplicate is first: the old holder learns it.
        kill_identity_session(at, "gw-relost");
        assert!(b.hold_identity("gw-relost").unwrap());
        assert!(
            !a.check_identity("gw-relost").unwrap(),
            "another process holds it now"
        );
    });
}
