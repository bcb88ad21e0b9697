//! Unit tests of the store, run on every backend at hand: SQLite always; PostgreSQL
//! too when `DEPLOY_TEST_PG_URL` names a server (`ci/test.sh` sets it, with
//! `DEPLOY_TEST_PG_PASSWORD`, for its PostgreSQL pass; `DEPLOY_TEST_STORE=postgres`
//! without it is a failure, not a skip).  Locks, recovery by runner, leases and
//! claims under contention, event order, enum columns.

use super::super::postgres::Postgres;
use super::super::sql::{Backend, vals};
use super::super::sqlite::Sqlite;
use super::super::{Db, Location};
use super::*;
use deploy_wire::api::JobKind;

/// A fresh, empty database on PostgreSQL, if the tests have a server: (URL, password).
fn pg_database() -> Option<(String, String)> {
    let Ok(base) = std::env::var("DEPLOY_TEST_PG_URL") else {
        assert!(
            std::env::var("DEPLOY_TEST_STORE").as_deref() != Ok("postgres"),
            "DEPLOY_TEST_STORE=postgres needs DEPLOY_TEST_PG_URL (see ci/test.sh)"
        );
        return None;
    };
    let password = std::env::var("DEPLOY_TEST_PG_PASSWORD").unwrap_or_default();
    let (rand, _) = crate::gateway::auth::new_token().unwrap();
    let rand: String = rand
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect::<String>()
        .to_ascii_lowercase();
    let name = format!("deploy_t_unit_{rand}");
    super::super::postgres::create_database(&base, &password, &name).unwrap();
    Some((format!("{base}/{name}"), password))
}

/// Runs `test` once per backend, each time on a fresh database (SQLite's in a
/// temporary directory).
fn each(test: impl Fn(&Location)) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("sqlite", Location::Sqlite(dir.path().join("state.db")))];
    if let Some((url, password)) = pg_database() {
        let password = Some(crate::artifacts::Secret::new(password));
        all.push(("postgres", Location::Postgres { url, password }));
    }
    for (name, at) in all {
        eprintln!("on {name}");
        test(&at);
    }
}

fn lease(owner: &str) -> Lease {
    Lease {
        owner: owner.into(),
        until_ms: now_ms() + 60_000,
    }
}

fn job(id: &str, user: &str) -> JobInfo {
    JobInfo {
        id: id.into(),
        kind: JobKind::Deploy,
        app: "hello".into(),
        env: "staging".into(),
        version: "1.0.0".into(),
        check: false,
        user: user.into(),
        state: JobState::Running,
        created_ms: now_ms(),
        finished_ms: None,
        error: None,
        triggered_by: None,
    }
}

fn holder(user: &str, job: &str) -> LockHolder {
    LockHolder {
        holder: user.into(),
        job_id: job.into(),
    }
}

#[test]
fn one_job_per_app_and_env_and_recovery_frees_the_lock() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let l = lease("g1");
        assert_eq!(s.start_job(&job("j1", "ann"), &l).unwrap(), Ok(()));
        assert_eq!(
            s.start_job(&job("j2", "ann"), &l).unwrap(),
            Err(holder("ann", "j1"))
        );
        drop(s);
        // A restart: the running job is interrupted and the lock is free.
        let s = Db::open(at).unwrap();
        assert_eq!(s.interrupt_running(Orphans::All).unwrap(), ["j1"]);
        assert_eq!(s.job("j1").unwrap().unwrap().state, JobState::Interrupted);
        assert_eq!(s.start_job(&job("j3", "ann"), &l).unwrap(), Ok(()));
        assert!(s.finish_job("j3", JobState::Succeeded, None).unwrap());
        assert_eq!(s.job("j3").unwrap().unwrap().state, JobState::Succeeded);
        assert_eq!(s.start_job(&job("j4", "ann"), &l).unwrap(), Ok(()));
    });
}

#[test]
fn recovery_of_one_runner_leaves_the_other_runners_jobs_and_locks() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let l = lease("g1");
        let mut other = job("a1", "apply:root");
        other.env = "production".into();
        s.start_job(&job("g1", "ann"), &l).unwrap().unwrap();
        s.start_job(&other, &l).unwrap().unwrap();
        assert_eq!(s.interrupt_running(Orphans::Gateway).unwrap(), ["g1"]);
        assert_eq!(s.job("a1").unwrap().unwrap().state, JobState::Running);
        other.id = "a2".into();
        assert_eq!(
            s.start_job(&other, &l).unwrap(),
            Err(holder("apply:root", "a1")),
            "the apply job keeps its lock"
        );
        assert_eq!(s.interrupt_running(Orphans::Apply).unwrap(), ["a1"]);
        assert_eq!(s.start_job(&other, &l).unwrap(), Ok(()));
    });
}

#[test]
fn an_expired_lease_is_taken_over_once_frees_the_lock_and_stops_its_renewal() {
    each(|at| {
        // Two gateways: two handles on one database (two pools on PostgreSQL).
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        // (Times are given, not waited for: `expire_leases` takes its instant.)
        let short = Lease {
            owner: "gw-a".into(),
            until_ms: now_ms() + 5_000,
        };
        a.start_job(&job("j1", "ann"), &short).unwrap().unwrap();
        let mut other = job("j2", "bob");
        other.env = "production".into();
        b.start_job(&other, &lease("gw-b")).unwrap().unwrap();
        assert_eq!(
            a.renew_leases(&short).unwrap(),
            ["j1"],
            "renewed while alive"
        );
        assert!(b.expire_leases(now_ms()).unwrap().is_empty(), "not yet");
        // gw-a stops renewing; both gateways look at once, later than its lease.
        let later = short.until_ms + 1;
        let (ta, tb) = std::thread::scope(|s| {
            let x = s.spawn(|| a.expire_leases(later).unwrap());
            let y = s.spawn(|| b.expire_leases(later).unwrap());
            (x.join().unwrap(), y.join().unwrap())
        });
        let mut taken = [ta, tb].concat();
        taken.sort();
        assert_eq!(taken, [("j1".to_string(), "gw-a".to_string())], "once");
        let j1 = b.job("j1").unwrap().unwrap();
        assert_eq!(j1.state, JobState::Interrupted);
        assert!(j1.error.unwrap().contains("gw-a"));
        assert_eq!(b.job("j2").unwrap().unwrap().state, JobState::Running);
        assert_eq!(
            b.start_job(&job("j3", "bob"), &lease("gw-b")).unwrap(),
            Ok(())
        );
        // gw-a wakes up: its renewal no longer holds j1, and its end changes nothing.
        assert!(a.renew_leases(&lease("gw-a")).unwrap().is_empty());
        assert!(!a.finish_job("j1", JobState::Succeeded, None).unwrap());
        assert_eq!(b.job("j1").unwrap().unwrap().state, JobState::Interrupted);
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
fn a_schedule_slot_is_claimed_once_and_a_dead_claimers_run_fails_after_its_lease() {
    use deploy_wire::schedule::ScheduleRun;
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        let run = ScheduleRun {
            slot_ms: 60_000,
            state: "running".into(),
            job_id: None,
            reason: "claimed".into(),
            ts_ms: now_ms(),
        };
        let short = Lease {
            owner: "gw-a".into(),
            until_ms: now_ms() + 5_000,
        };
        let (x, y) = std::thread::scope(|s| {
            let x = s.spawn(|| a.claim_run("s1", &run, Some(&short)).unwrap());
            let y = s.spawn(|| b.claim_run("s1", &run, Some(&lease("gw-b"))).unwrap());
            (x.join().unwrap(), y.join().unwrap())
        });
        assert!(x ^ y, "exactly one claim: {x} {y}");
        b.expire_leases(short.until_ms + 1).unwrap(); // gw-b's lease runs a minute
        let runs = b.schedule_runs("s1", 10).unwrap();
        let expected = if x { "failed" } else { "running" };
        assert_eq!(runs[0].state, expected, "{runs:?}");
    });
}

#[test]
fn events_come_back_in_order_after_a_sequence_number() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let events: Vec<NewEvent> = (1..=5)
            .map(|seq| NewEvent {
                job: "j".into(),
                seq,
                ts_ms: 0,
                data: format!("e{seq}"),
            })
            .collect();
        s.append_events(&events).unwrap();
        let got: Vec<u64> = s
            .events_after("j", 2, 100)
            .unwrap()
            .into_iter()
            .map(|(q, _)| q)
            .collect();
        assert_eq!(got, [3, 4, 5]);
        assert_eq!(s.last_seq("j").unwrap(), 5);
        assert_eq!(s.last_seq("none").unwrap(), 0);
    });
}

fn corrupt_word<B: Backend>(s: SqlStore<B>) {
    s.start_job(&job("j1", "ann"), &lease("g"))
        .unwrap()
        .unwrap();
    s.write("test", |c| {
        c.exec("UPDATE jobs SET state = $1", vals!["queued"])
    })
    .unwrap();
    let err = s.job("j1").unwrap_err().to_string();
    assert!(
        err.contains("reading a job") && err.contains("unknown job state `queued`"),
        "{err}"
    );
}

#[test]
fn an_unknown_word_in_the_database_is_an_error_naming_the_operation() {
    corrupt_word(SqlStore::new(Sqlite::in_memory().unwrap()));
    if let Some((url, password)) = pg_database() {
        corrupt_word(SqlStore::new(
            Postgres::open(&url, Some(&password)).unwrap(),
        ));
    }
}

#[test]
fn a_password_in_the_url_is_refused_before_connecting_and_not_repeated() {
    let err = Postgres::open("postgres://deploy:s3cret-pw@127.0.0.1:1/x", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("database_password_env"), "{err}");
    assert!(!err.contains("s3cret-pw"), "the password leaked: {err}");
}

#[test]
fn the_live_record_is_one_row_per_host_and_the_deploy_history_is_newest_first() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let row = |version: &str, slot: &str| LiveRow {
            app: "hello".into(),
            env: "staging".into(),
            host: "web1".into(),
            version: version.into(),
            slot: slot.into(),
            job_id: format!("j{version}"),
            user: "ann".into(),
            ts_ms: 1,
        };
        s.set_live(&[row("1.0", "blue")]).unwrap();
        s.set_live(&[row("2.0", "green")]).unwrap();
        assert_eq!(
            s.live_row("hello", "staging", "web1").unwrap(),
            Some(row("2.0", "green"))
        );
        assert_eq!(s.live_row("hello", "production", "web1").unwrap(), None);
        for v in ["1.0", "2.0", "3.0"] {
            s.add_deploy("hello", "staging", v, &format!("j{v}"))
                .unwrap();
        }
        s.add_deploy("hello", "production", "9.0", "jp").unwrap();
        assert_eq!(
            s.deploy_history("hello", "staging", 10).unwrap(),
            ["3.0", "2.0", "1.0"]
        );
    });
}

#[test]
fn retention_prunes_old_finished_jobs_their_events_and_audit_rows_only() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let l = lease("g");
        s.start_job(&job("old", "ann"), &l).unwrap().unwrap();
        s.append_events(&[NewEvent {
            job: "old".into(),
            seq: 1,
            ts_ms: 1,
            data: "{}".into(),
        }])
        .unwrap();
        s.finish_job("old", JobState::Succeeded, None).unwrap();
        let mut running = job("running", "ann");
        running.env = "production".into();
        s.start_job(&running, &l).unwrap().unwrap();
        s.audit("ann", "deploy", "x", "accepted").unwrap();
        let pruned = s.prune(now_ms() + 1).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                jobs: 1,
                events: 1,
                audit: 1
            }
        );
        assert!(s.job("old").unwrap().is_none());
        assert!(s.job("running").unwrap().is_some(), "a running job stays");
        assert_eq!(
            s.prune(1).unwrap(),
            Pruned::default(),
            "nothing that new goes"
        );
    });
}

#[test]
fn tokens_keep_read_scopes_expiry_and_last_use() {
    each(|at| {
        let s = Db::open(at).unwrap();
        s.create_token(&NewToken {
            id: "t1".into(),
            hash: "h1".into(),
            user: "ann".into(),
            envs: vec![],
            read_envs: vec!["staging".into()],
            admin: false,
            expires_ms: Some(5),
            run: true,
        })
        .unwrap();
        s.touch_token("t1", 7).unwrap();
        let t = s.token_by_hash("h1").unwrap().unwrap();
        assert!(t.run, "the run right is kept");
        assert_eq!(
            (t.envs.len(), t.read_envs, t.expires_ms, t.last_used_ms),
            (0, vec!["staging".to_string()], Some(5), Some(7))
        );
        let mut other = job("j2", "ann");
        other.env = "production".into();
        let l = lease("g");
        s.start_job(&job("j1", "ann"), &l).unwrap().unwrap();
        s.start_job(&other, &l).unwrap().unwrap();
        let scope = Scope::Envs(vec!["staging".into()]);
        let ids: Vec<String> = s
            .jobs(10, &scope)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, ["j1"]);
        assert_eq!(s.jobs(10, &Scope::All).unwrap().len(), 2);
        assert!(s.jobs(10, &Scope::Envs(vec![])).unwrap().is_empty());
    });
}

#[test]
fn listings_with_and_without_their_optional_filter() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let entry = |app: &str| LedgerEntry {
            job_id: "j1".into(),
            app: app.into(),
            env: "staging".into(),
            host: "web1".into(),
            version: "1.0".into(),
            from_version: None,
            result: deploy_wire::api::LedgerResult::Changed,
            user: "ann".into(),
            ts_ms: 1,
            artifact: None,
        };
        s.add_ledger(&entry("hello")).unwrap();
        s.add_ledger(&entry("shop")).unwrap();
        assert_eq!(s.ledger(None, 10, &Scope::All).unwrap().len(), 2);
        let one = s.ledger(Some("shop"), 10, &Scope::All).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].app, "shop");
        assert!(s.schedules(None).unwrap().is_empty());
        assert!(s.schedules(Some("nope")).unwrap().is_empty());
    });
}

#[test]
fn a_cancel_asked_elsewhere_waits_in_the_row_for_the_jobs_own_process() {
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        a.start_job(&job("j1", "ann"), &lease("gw-a"))
            .unwrap()
            .unwrap();
        assert!(a.cancel_requests("gw-a").unwrap().is_empty());
        assert!(b.request_cancel("j1").unwrap());
        assert_eq!(a.cancel_requests("gw-a").unwrap(), ["j1"]);
        assert!(
            b.cancel_requests("gw-b").unwrap().is_empty(),
            "only its owner's"
        );
        a.finish_job("j1", JobState::Cancelled, None).unwrap();
        assert!(a.cancel_requests("gw-a").unwrap().is_empty());
        assert!(!b.request_cancel("j1").unwrap(), "not running any more");
    });
}

#[test]
fn a_gateway_id_is_held_by_one_live_process_and_its_restart_frees_its_own_jobs() {
    each(|at| {
        let a = Db::open(at).unwrap();
        assert!(a.hold_identity("gw-a").unwrap());
        a.start_job(&job("j1", "ann"), &lease("gw-a"))
            .unwrap()
            .unwrap();
        let mut other = job("j2", "bob");
        other.env = "production".into();
        a.start_job(&other, &lease("gw-b")).unwrap().unwrap();
        if a.shared() {
            let b = Db::open(at).unwrap();
            assert!(!b.hold_identity("gw-a").unwrap(), "held by a live process");
            assert!(b.hold_identity("gw-b").unwrap());
            drop(a);
            // The server frees a session's locks when its connection closes.
            let again = Db::open(at).unwrap();
            let held = (0..50).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                again.hold_identity("gw-a").unwrap()
            });
            assert!(held, "a dead process's id is free");
        }
        let s = Db::open(at).unwrap();
        assert_eq!(s.interrupt_owned("gw-a").unwrap(), ["j1"]);
        assert_eq!(s.job("j2").unwrap().unwrap().state, JobState::Running);
        assert_eq!(
            s.start_job(&job("j3", "ann"), &lease("gw-a")).unwrap(),
            Ok(())
        );
    });
}
