//! The store's contract tests: their helpers (`each`), jobs, locks, recovery and events.
//!
//! Every method of the `Store` trait is called by a test asserting what its doc says
//! (`every_store_method_is_named_by_a_contract_test` fails when one is called by none),
//! through `each`: on SQLite always, on PostgreSQL too when `DEPLOY_TEST_PG_URL` names a
//! server (`ci/test.sh` sets it, with `DEPLOY_TEST_PG_PASSWORD`, for its PostgreSQL pass;
//! `DEPLOY_TEST_STORE=postgres` without it is a failure, not a skip).  Instants are
//! given (`at_ms`, `now_ms`, leases, `created_ms`), never waited for.
//!
//! Which test covers which methods:
//! - start_job, finish_job, job: `a_job_reads_back_as_started_and_as_finished_once`;
//!   jobs: `jobs_are_listed_newest_first_within_the_limit_and_the_scope`; locks and
//!   interrupt_running: `one_job_per_app_and_env_and_recovery_frees_the_lock`,
//!   `recovery_of_one_runner_leaves_the_other_runners_jobs_and_locks`;
//! - append_events, last_seq, events_after:
//!   `events_come_back_in_order_after_a_sequence_number_per_job`; shared, watch:
//!   `only_a_shared_store_wakes_followers_with_another_handles_events`;
//! - `store_tests_access.rs`: add_ledger, ledger, live:
//!   `the_ledger_is_newest_first_by_app_and_scope_with_the_file_each_job_installed`,
//!   `live_is_the_newest_good_ledger_entry_of_one_host`; set_live, live_row, add_deploy,
//!   deploy_history:
//!   `the_live_record_is_one_row_per_host_and_the_deploy_history_is_newest_first`;
//!   create_token, add_token, token_by_hash, touch_token:
//!   `tokens_keep_read_scopes_expiry_last_use_and_the_run_right`; tokens, revoke_token:
//!   `a_revoked_token_is_listed_but_never_found_again`; audit, audit_log:
//!   `the_audit_trail_is_newest_first_within_its_limit`; prune:
//!   `retention_prunes_old_finished_jobs_their_events_notifications_and_audit_rows_only`;
//! - `store_tests_pipeline.rs`: add_build, build_of_commit, build_of_version, builds:
//!   `builds_are_found_by_commit_and_by_version_newest_first_per_app`; set_job_artifact,
//!   job_artifact:
//!   `a_jobs_artifact_is_replaced_and_joined_with_the_newest_build_of_its_version`;
//!   version_artifact: `a_versions_artifact_is_the_one_of_its_newest_job_of_that_app`;
//!   set_build_follow, build_follow, adopt_builds, end_build_follow:
//!   `a_followed_build_is_recorded_updated_adopted_once_and_ended`; unfollowed_build:
//!   `a_build_nobody_followed_to_its_end_is_found_by_its_commit`;
//! - `store_tests_schedules.rs`: add_schedule, schedules, set_schedule_next,
//!   set_schedule_paused, remove_schedule:
//!   `a_schedule_reads_back_whole_and_each_change_says_whether_it_found_it`; claim_run,
//!   update_run, schedule_runs: `a_slot_is_claimed_once_and_the_runs_are_listed_newest_slot_first`,
//!   `a_schedule_slot_is_claimed_once_and_a_dead_claimers_run_fails_after_its_lease`;
//!   interrupt_runs: `interrupted_runs_fail_all_or_only_those_their_gateway_claimed`;
//!   set_freeze, lift_freeze, freezes:
//!   `a_freeze_replaces_the_last_one_and_lifting_says_whether_there_was_one`;
//! - `store_tests_leases.rs`: renew_leases, expire_leases:
//!   `an_expired_lease_is_taken_over_once_frees_the_lock_and_stops_its_renewal`,
//!   `a_renewal_extends_its_gateways_running_jobs_and_claimed_runs_only`; hold_identity,
//!   interrupt_owned:
//!   `a_gateway_id_is_held_by_one_live_process_and_its_restart_frees_its_own_jobs`;
//!   check_identity: `a_gateway_id_is_taken_again_after_its_session_is_lost_unless_another_took_it`;
//!   clock_ms: `the_database_clock_is_read_from_the_database`; job_epoch:
//!   `each_job_gets_a_greater_epoch_than_every_job_before_it`; the final event:
//!   `a_jobs_final_event_is_stored_with_its_end_and_nothing_is_stored_after_it`,
//!   `an_interrupted_job_gets_its_final_event_in_the_same_transaction`;
//!   request_cancel, cancel_requests:
//!   `a_cancel_asked_elsewhere_waits_in_the_row_for_the_jobs_own_process`; start_job
//!   raced on two handles: `twenty_racing_starts_on_two_handles_take_one_lock`;
//! - `store_tests_outbox.rs`: add_deliveries, deliveries, claim_deliveries:
//!   `a_notification_is_written_once_per_key_and_claimed_when_due_for_known_routes`;
//!   record_delivery:
//!   `an_attempt_is_recorded_only_by_its_claim_and_a_retry_is_due_again_at_its_time`;
//!   claims of several gateways:
//!   `a_dead_claimers_notification_is_due_again_when_its_claim_ends`,
//!   `a_job_running_elsewhere_keeps_its_notifications_for_its_own_process`,
//!   `racing_claims_on_two_handles_send_each_notification_once`; create_session,
//!   session, end_session, prune_sessions:
//!   `a_session_is_found_by_its_hash_until_it_expires_or_ends_and_stays_bounded`;
//! - `store_tests_sites.rs`: add_part, claim_parts, part, add_part_events,
//!   part_events_after, set_part_state:
//!   `a_part_is_claimed_once_by_its_sites_runners_and_ended_once_by_its_claimer`;
//!   cancel_part, lose_parts_of, parts_running (and parts in renew_leases, cancel_requests):
//!   `a_runners_parts_are_renewed_and_cancelled_with_its_jobs_while_their_job_runs`;
//!   add_ask, claim_asks, answer_ask, ask_answer, drop_ask:
//!   `an_ask_is_claimed_once_by_its_sites_runner_answered_and_forgotten`.

use super::super::postgres::Postgres;
use super::super::sql::{Backend, vals};
use super::super::sqlite::Sqlite;
use super::super::{Db, Location};
use super::*;
use deploy_wire::api::{JobKind, JobState};

/// A fresh, empty database on PostgreSQL, if the tests have a server: (URL, password).
pub(super) fn pg_database() -> Option<(String, String)> {
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
pub(super) fn each(test: impl Fn(&Location)) {
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

/// The end of a lease that no test reaches (leases are compared with the instants the
/// tests give, never with the clock).
pub(super) const FAR_MS: u64 = 1_000_000_000;

pub(super) fn lease(owner: &str) -> Lease {
    lease_until(owner, FAR_MS)
}

pub(super) fn lease_until(owner: &str, until_ms: u64) -> Lease {
    Lease {
        owner: owner.into(),
        until_ms,
    }
}

/// A running deploy of `hello` 1.0.0 to staging, created at 1 000 ms.
pub(super) fn job(id: &str, user: &str) -> JobInfo {
    JobInfo {
        id: id.into(),
        kind: JobKind::Deploy,
        app: "hello".into(),
        env: "staging".into(),
        version: "1.0.0".into(),
        check: false,
        user: user.into(),
        state: JobState::Running,
        created_ms: 1_000,
        finished_ms: None,
        error: None,
        triggered_by: None,
    }
}

/// `job(id, "ann")` in another environment (so it takes another lock).
pub(super) fn job_in(id: &str, env: &str) -> JobInfo {
    JobInfo {
        env: env.into(),
        ..job(id, "ann")
    }
}

pub(super) fn holder(user: &str, job: &str) -> LockHolder {
    LockHolder {
        holder: user.into(),
        job_id: job.into(),
    }
}

pub(super) fn event(job: &str, seq: u64, data: &str) -> NewEvent {
    NewEvent {
        job: job.into(),
        seq,
        ts_ms: seq * 10,
        data: data.into(),
        note: false,
    }
}

pub(super) fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn ids(jobs: Vec<JobInfo>) -> Vec<String> {
    jobs.into_iter().map(|j| j.id).collect()
}

#[test]
fn every_store_method_is_named_by_a_contract_test() {
    let module = include_str!("mod.rs");
    let code = |text: &'static str| text.lines().filter(|l| !l.trim_start().starts_with("//"));
    let start = module.find("pub trait Store").expect("the trait");
    let end = start + module[start..].find("\n}\n").expect("the trait's end");
    let names: Vec<&str> = code(&module[start..end])
        .filter_map(|l| l.split_once("fn ")?.1.split_once('('))
        .map(|(name, _)| name)
        .collect();
    assert!(
        names.len() > 40 && names.contains(&"start_job") && names.contains(&"prune"),
        "the trait's methods were not found: {names:?}"
    );
    let tests: String = [
        include_str!("store_tests.rs"),
        include_str!("store_tests_access.rs"),
        include_str!("store_tests_pipeline.rs"),
        include_str!("store_tests_schedules.rs"),
        include_str!("store_tests_leases.rs"),
        include_str!("store_tests_outbox.rs"),
        include_str!("store_tests_sites.rs"),
    ]
    .into_iter()
    .flat_map(code)
    .collect::<Vec<_>>()
    .join("\n");
    let untested: Vec<&&str> = names
        .iter()
        .filter(|n| !tests.contains(&format!(".{n}(")))
        .collect();
    assert!(untested.is_empty(), "no contract test calls {untested:?}");
}

#[test]
fn a_job_reads_back_as_started_and_as_finished_once() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert_eq!(s.job("j1").unwrap(), None);
        let started = JobInfo {
            kind: JobKind::Rollback,
            check: true,
            created_ms: 1_234,
            triggered_by: Some("schedule s1".into()),
            ..job("j1", "ann")
        };
        s.start_job(&started, &lease("g")).unwrap().unwrap();
        assert_eq!(s.job("j1").unwrap(), Some(started.clone()));
        assert!(
            s.finish_job("j1", &JobEnd::plain(JobState::Failed, Some("boom")))
                .unwrap()
        );
        let done = s.job("j1").unwrap().unwrap();
        assert!(done.finished_ms.is_some(), "{done:?}");
        let expected = JobInfo {
            state: JobState::Failed,
            error: Some("boom".into()),
            finished_ms: done.finished_ms,
            ..started
        };
        assert_eq!(done, expected);
        // Only a running job ends: a second end, or an unknown job's, changes nothing.
        assert!(
            !s.finish_job("j1", &JobEnd::plain(JobState::Succeeded, None))
                .unwrap()
        );
        assert_eq!(s.job("j1").unwrap(), Some(expected));
        assert!(
            !s.finish_job("nope", &JobEnd::plain(JobState::Succeeded, None))
                .unwrap()
        );
        assert!(s.start_job(&job("j2", "bob"), &lease("g")).unwrap().is_ok());
    });
}

#[test]
fn jobs_are_listed_newest_first_within_the_limit_and_the_scope() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.jobs(10, &Scope::All).unwrap().is_empty());
        for (id, env, created_ms) in [
            ("a", "staging", 1),
            ("b", "production", 3),
            ("c", "qa", 2),
            ("d", "dev", 3),
        ] {
            let j = JobInfo {
                created_ms,
                ..job_in(id, env)
            };
            s.start_job(&j, &lease("g")).unwrap().unwrap();
        }
        // Newest first; on the same instant, the greater id first.
        assert_eq!(ids(s.jobs(10, &Scope::All).unwrap()), ["d", "b", "c", "a"]);
        assert_eq!(ids(s.jobs(2, &Scope::All).unwrap()), ["d", "b"]);
        let two = Scope::Envs(vec!["staging".into(), "production".into()]);
        assert_eq!(ids(s.jobs(10, &two).unwrap()), ["b", "a"]);
        assert_eq!(ids(s.jobs(1, &two).unwrap()), ["b"]);
        assert!(s.jobs(10, &Scope::Envs(vec![])).unwrap().is_empty());
        let unknown = Scope::Envs(vec!["nowhere".into()]);
        assert!(s.jobs(10, &unknown).unwrap().is_empty());
    });
}

#[test]
fn one_job_per_app_and_env_and_recovery_frees_the_lock() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let l = lease("g1");
        assert!(s.start_job(&job("j1", "ann"), &l).unwrap().is_ok());
        assert_eq!(
            s.start_job(&job("j2", "bob"), &l).unwrap(),
            Err(holder("ann", "j1"))
        );
        assert_eq!(s.job("j2").unwrap(), None, "the loser left no job");
        let shop = JobInfo {
            app: "shop".into(),
            ..job("s1", "bob")
        };
        assert!(s.start_job(&shop, &l).unwrap().is_ok(), "another app");
        drop(s);
        // A restart: the running jobs are interrupted and their locks are free.
        let s = Db::open(at).unwrap();
        assert_eq!(
            sorted(s.interrupt_running(Orphans::All).unwrap()),
            ["j1", "s1"]
        );
        let j1 = s.job("j1").unwrap().unwrap();
        assert_eq!(j1.state, JobState::Interrupted);
        assert!(j1.finished_ms.is_some() && j1.error.is_some(), "{j1:?}");
        assert!(
            s.interrupt_running(Orphans::All).unwrap().is_empty(),
            "once"
        );
        assert!(s.start_job(&job("j3", "ann"), &l).unwrap().is_ok());
        assert!(
            s.finish_job("j3", &JobEnd::plain(JobState::Succeeded, None))
                .unwrap()
        );
        assert_eq!(s.job("j3").unwrap().unwrap().state, JobState::Succeeded);
        assert!(s.start_job(&job("j4", "ann"), &l).unwrap().is_ok());
    });
}

#[test]
fn recovery_of_one_runner_leaves_the_other_runners_jobs_and_locks() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let l = lease("g1");
        let mut other = JobInfo {
            user: "apply:root".into(),
            ..job_in("a1", "production")
        };
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
        assert!(s.interrupt_running(Orphans::Gateway).unwrap().is_empty());
        assert_eq!(s.interrupt_running(Orphans::Apply).unwrap(), ["a1"]);
        assert!(s.start_job(&other, &l).unwrap().is_ok());
    });
}

#[test]
fn events_come_back_in_order_after_a_sequence_number_per_job() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert_eq!(s.last_seq("j").unwrap(), 0);
        assert!(s.events_after("j", 0, 100).unwrap().is_empty());
        s.start_job(&job("j", "ann"), &lease("g")).unwrap().unwrap();
        s.start_job(&job_in("k", "production"), &lease("g"))
            .unwrap()
            .unwrap();
        // One batch, two jobs, out of order.
        let batch: Vec<NewEvent> = [5, 1, 3, 2, 4]
            .into_iter()
            .map(|seq| event("j", seq, &format!("e{seq}")))
            .chain([event("k", 1, "k1")])
            .collect();
        s.append_events(&batch).unwrap();
        s.append_events(&[]).unwrap();
        let after = |job: &str, after: u64, limit: u32| s.events_after(job, after, limit).unwrap();
        let seqs = |got: Vec<(u64, String)>| got.into_iter().map(|(q, _)| q).collect::<Vec<_>>();
        assert_eq!(seqs(after("j", 2, 100)), [3, 4, 5]);
        assert_eq!(after("j", 0, 2), [(1, "e1".into()), (2, "e2".into())]);
        assert!(after("j", 5, 100).is_empty());
        assert_eq!(after("k", 0, 100), [(1, "k1".into())]);
        assert_eq!((s.last_seq("j").unwrap(), s.last_seq("k").unwrap()), (5, 1));
        // A number already taken keeps its first event and loses none of the batch's others.
        s.append_events(&[event("j", 5, "again"), event("j", 6, "e6")])
            .unwrap();
        assert_eq!(after("j", 4, 100), [(5, "e5".into()), (6, "e6".into())]);
        assert_eq!(s.last_seq("j").unwrap(), 6);
    });
}

#[test]
fn a_jobs_final_event_is_stored_with_its_end_and_nothing_is_stored_after_it() {
    each(|at| {
        let s = Db::open(at).unwrap();
        s.start_job(&job("j", "ann"), &lease("g")).unwrap().unwrap();
        assert_eq!(
            s.append_events(&[event("j", 1, "e1"), event("j", 2, "e2")])
                .unwrap(),
            0
        );
        assert_eq!(
            s.append_events(&[event("nope", 1, "x")]).unwrap(),
            1,
            "no such job"
        );
        let end = JobEnd::plain(JobState::Succeeded, None);
        assert!(s.finish_job("j", &end).unwrap());
        let stored = s.events_after("j", 0, 100).unwrap();
        assert_eq!(stored.len(), 3, "{stored:?}");
        assert!(stored[2].1.contains("job_finished"), "{stored:?}");
        // A stalled owner's late events, and a second end, are refused.
        assert_eq!(
            s.append_events(&[event("j", 3, "late"), event("j", 4, "late")])
                .unwrap(),
            2
        );
        assert!(!s.finish_job("j", &end).unwrap());
        assert_eq!(s.last_seq("j").unwrap(), 3);
        // A note (a notification's delivery) is still kept.
        let note = NewEvent {
            note: true,
            ..event("j", 4, "notified")
        };
        assert_eq!(s.append_events(&[note]).unwrap(), 0);
        assert_eq!(s.last_seq("j").unwrap(), 4);
    });
}

#[test]
fn an_interrupted_job_gets_its_final_event_in_the_same_transaction() {
    each(|at| {
        let s = Db::open(at).unwrap();
        s.start_job(&job("j", "ann"), &lease("g")).unwrap().unwrap();
        s.append_events(&[event("j", 1, "{}")]).unwrap();
        assert_eq!(s.interrupt_owned("g").unwrap(), ["j"]);
        let stored = s.events_after("j", 0, 100).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored[1].1.contains("interrupted"), "{stored:?}");
        assert_eq!(s.append_events(&[event("j", 3, "late")]).unwrap(), 1);
    });
}

#[test]
fn each_job_gets_a_greater_epoch_than_every_job_before_it() {
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        let e1 = a
            .start_job(&job("j1", "ann"), &lease("g"))
            .unwrap()
            .unwrap();
        let e2 = b
            .start_job(&job_in("j2", "production"), &lease("h"))
            .unwrap()
            .unwrap();
        assert!(e2 > e1, "{e1} {e2}");
        assert!(
            a.finish_job("j1", &JobEnd::plain(JobState::Succeeded, None))
                .unwrap()
        );
        let e3 = b
            .start_job(&job("j3", "ann"), &lease("h"))
            .unwrap()
            .unwrap();
        assert!(e3 > e2, "{e2} {e3}");
        assert_eq!(a.job_epoch("j3").unwrap(), Some(e3));
        assert_eq!(a.job_epoch("nope").unwrap(), None);
        let refused = b.start_job(&job("j4", "bob"), &lease("h")).unwrap();
        assert!(refused.is_err(), "locked");
        let e5 = b
            .start_job(&job_in("j5", "qa"), &lease("h"))
            .unwrap()
            .unwrap();
        assert!(
            e5 > e3,
            "a refused start may use a number, never reuses one"
        );
    });
}

#[test]
fn the_database_clock_is_read_from_the_database() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let (db, here) = (s.clock_ms().unwrap(), now_ms());
        // The test's database runs on this machine: the two clocks agree closely.
        assert!(db.abs_diff(here) < 5_000, "{db} {here}");
    });
}

#[test]
fn only_a_shared_store_wakes_followers_with_another_handles_events() {
    use std::time::Duration;
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        assert_eq!(a.shared(), matches!(at, Location::Postgres { .. }));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        a.watch(Box::new(move |job| {
            let _ = tx.send(job.to_string());
        }));
        b.start_job(&job("j", "ann"), &lease("g")).unwrap().unwrap();
        if !a.shared() {
            b.append_events(&[event("j", 1, "{}")]).unwrap();
            assert!(rx.try_recv().is_err(), "one gateway: nobody to wake");
            return;
        }
        // A bound on a failure, not a pause: each wait ends with the wake it expects.
        let next = || rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(next(), "", "the follower listens, having maybe missed news");
        b.append_events(&[event("j", 1, "{}")]).unwrap();
        while next() != "j" {}
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
