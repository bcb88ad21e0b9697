//! Unit tests of the SQLite store: locks, recovery by runner, event order, enum columns.

use super::*;
use deploy_wire::api::JobKind;

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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.start_job(&job("j1", "ann")).unwrap(), Ok(()));
    assert_eq!(
        s.start_job(&job("j2", "ann")).unwrap(),
        Err(holder("ann", "j1"))
    );
    drop(s);
    // A restart: the running job is interrupted and the lock is free.
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.interrupt_running(Orphans::All).unwrap(), ["j1"]);
    assert_eq!(s.job("j1").unwrap().unwrap().state, JobState::Interrupted);
    assert_eq!(s.start_job(&job("j3", "ann")).unwrap(), Ok(()));
    s.finish_job("j3", JobState::Succeeded, None).unwrap();
    assert_eq!(s.job("j3").unwrap().unwrap().state, JobState::Succeeded);
    assert_eq!(s.start_job(&job("j4", "ann")).unwrap(), Ok(()));
}

#[test]
fn recovery_of_one_runner_leaves_the_other_runners_jobs_and_locks() {
    let s = SqliteStore::in_memory().unwrap();
    let mut other = job("a1", "apply:root");
    other.env = "production".into();
    s.start_job(&job("g1", "ann")).unwrap().unwrap();
    s.start_job(&other).unwrap().unwrap();
    assert_eq!(s.interrupt_running(Orphans::Gateway).unwrap(), ["g1"]);
    assert_eq!(s.job("a1").unwrap().unwrap().state, JobState::Running);
    other.id = "a2".into();
    assert_eq!(
        s.start_job(&other).unwrap(),
        Err(holder("apply:root", "a1")),
        "the apply job keeps its lock"
    );
    assert_eq!(s.interrupt_running(Orphans::Apply).unwrap(), ["a1"]);
    assert_eq!(s.start_job(&other).unwrap(), Ok(()));
}

#[test]
fn events_come_back_in_order_after_a_sequence_number() {
    let s = SqliteStore::in_memory().unwrap();
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
}

#[test]
fn an_unknown_word_in_the_database_is_an_error_naming_the_operation() {
    let s = SqliteStore::in_memory().unwrap();
    s.start_job(&job("j1", "ann")).unwrap().unwrap();
    s.with("test", |c| c.execute("UPDATE jobs SET state='queued'", []))
        .unwrap();
    let err = s.job("j1").unwrap_err().to_string();
    assert!(
        err.contains("reading a job") && err.contains("unknown job state `queued`"),
        "{err}"
    );
}

#[test]
fn the_live_record_is_one_row_per_host_and_the_deploy_history_is_newest_first() {
    let s = SqliteStore::in_memory().unwrap();
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
}

#[test]
fn retention_prunes_old_finished_jobs_their_events_and_audit_rows_only() {
    let s = SqliteStore::in_memory().unwrap();
    s.start_job(&job("old", "ann")).unwrap().unwrap();
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
    s.start_job(&running).unwrap().unwrap();
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
}

#[test]
fn tokens_keep_read_scopes_expiry_and_last_use() {
    let s = SqliteStore::in_memory().unwrap();
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
    s.start_job(&job("j1", "ann")).unwrap().unwrap();
    s.start_job(&other).unwrap().unwrap();
    let scope = Scope::Envs(vec!["staging".into()]);
    let ids: Vec<String> = s
        .jobs(10, &scope)
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, ["j1"]);
    assert_eq!(s.jobs(10, &Scope::All).unwrap().len(), 2);
}
