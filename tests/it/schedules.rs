//! Scheduled rollouts and freezes through the real router and the real scheduler, on
//! hosts that refuse connections (a scheduled run is a normal job: here it fails at
//! the connection, which is enough to see that it started, when and how often).  The
//! scheduler's clock is the test's: `scheduler::tick(svc, now)`.  The last tests kill
//! and restart a real `deploy-gateway` around a schedule's time.

use crate::support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploy::gateway::store::{JobEnd, NewToken, now_ms};
use deploy::gateway::{api, auth, scheduler};
use deploy::schedule::format_local;
use deploy_wire::api::{JobInfo, JobKind, JobState};
use deploy_wire::schedule::ScheduleInfo;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Staging (web1) any time; `windowed` (web2) only in a window that is closed now.
fn inventory() -> String {
    let tomorrow = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        [((now_ms() / 86_400_000 + 4) % 7) as usize];
    format!(
        "hosts:\n  web1: {{address: 127.0.0.1, port: 1, groups: [web]}}\n  web2: {{address: 127.0.0.1, port: 1, groups: [win]}}\n\
         applications:\n  hello:\n    package: hello-app\n    index_url: http://127.0.0.1:1/simple/\n    wsgi: hello_app:app\n    port: 8000\n\
         \x20   server_names: [hello.example.test]\n    environments:\n      staging: {{groups: [web]}}\n\
         \x20     windowed: {{groups: [win], windows: [\"{tomorrow} 09:00-10:00 UTC\"]}}\n"
    )
}

struct Api {
    dir: tempfile::TempDir,
    state: api::AppState,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let state = support::gateway_state(dir.path(), &inventory(), "0.1.0", "0.1.0");
        Api { dir, state }
    }

    /// The same database and config, as a gateway started again would have them.
    fn restarted(&self) -> api::AppState {
        let cfg =
            deploy::gateway::config::GatewayConfig::load(&self.dir.path().join("gateway.toml"))
                .unwrap();
        deploy::gateway::state(cfg).unwrap()
    }

    fn token(&self, user: &str, envs: &[&str], admin: bool) -> (String, String) {
        let (id, token) = auth::new_token().unwrap();
        let new = NewToken {
            id: id.clone(),
            hash: auth::hash(&token),
            user: user.into(),
            envs: envs.iter().map(|e| e.to_string()).collect(),
            admin,
            ..NewToken::default()
        };
        self.state.svc.db().create_token(&new).unwrap();
        (id, token)
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = api::router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn schedule(&self, token: &str, body: Value) -> ScheduleInfo {
        let (status, v) = self.send("POST", "/v1/schedules", token, body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        serde_json::from_value(v).unwrap()
    }

    /// A one-shot deploy of hello 1.0.0 to staging, `secs` from now; with its time.
    async fn one_shot(&self, token: &str, secs: u64) -> (ScheduleInfo, u64) {
        let (at, t) = at_in(secs);
        let body = json!({"app": "hello", "env": "staging", "what": "1.0.0", "at": at});
        (self.schedule(token, body).await, t)
    }

    async fn show(&self, token: &str, id: &str) -> ScheduleInfo {
        let (status, v) = self
            .send("GET", &format!("/v1/schedules/{id}"), token, Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        serde_json::from_value(v).unwrap()
    }

    fn jobs(&self) -> Vec<JobInfo> {
        self.state
            .svc
            .db()
            .jobs(100, &deploy::gateway::store::Scope::All)
            .unwrap()
    }
}

/// A local wall time in UTC, `secs` from now, to the second (`--at`).
pub(crate) fn at_in(secs: u64) -> (String, u64) {
    let t = (now_ms() / 1000 + secs) * 1000;
    let text = format_local(t, "UTC")
        .trim_end_matches(" UTC")
        .replace(' ', "T");
    // format_local shows minutes; add the seconds.
    let s = (t / 1000) % 60;
    (format!("{text}:{s:02}"), t)
}

async fn tick(state: &api::AppState, now: u64) {
    for h in scheduler::tick(&state.svc, now).await.unwrap() {
        h.await.unwrap();
    }
}

#[tokio::test]
async fn a_one_shot_runs_once_at_its_time_whatever_ticks_and_restarts_follow() {
    let api = Api::new();
    let (_, ann) = api.token("ann", &["staging"], false);
    let (s, t) = api.one_shot(&ann, 120).await;
    assert_eq!(s.next_ms, Some(t), "{s:?}");
    tick(&api.state, t - 1000).await;
    assert!(api.jobs().is_empty(), "nothing before its time");
    tick(&api.state, t + 500).await;
    tick(&api.state, t + 1500).await;
    let again = api.restarted();
    tick(&again, t + 2500).await;
    let jobs = api.jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        jobs[0].triggered_by.as_deref(),
        Some(format!("schedule {}", s.id).as_str())
    );
    assert_eq!(
        (
            jobs[0].user.as_str(),
            jobs[0].kind,
            jobs[0].version.as_str()
        ),
        ("ann", JobKind::Deploy, "1.0.0")
    );
    let shown = api.show(&ann, &s.id).await;
    assert_eq!(shown.runs.len(), 1, "{shown:?}");
    assert_eq!(
        (shown.runs[0].state.as_str(), shown.runs[0].job_id.as_ref()),
        ("started", Some(&jobs[0].id))
    );
    assert_eq!(shown.next_ms, None, "a one-shot has no next slot");
}

#[tokio::test]
async fn a_slot_past_its_grace_is_recorded_missed_and_starts_nothing() {
    let api = Api::new();
    let (_, ann) = api.token("ann", &["staging"], false);
    let (at, t) = at_in(60);
    let s = api
        .schedule(
            &ann,
            json!({"app": "hello", "env": "staging", "what": "latest", "at": at, "grace_secs": 60}),
        )
        .await;
    tick(&api.restarted(), t + 61_000).await;
    tick(&api.restarted(), t + 62_000).await;
    assert!(api.jobs().is_empty());
    let shown = api.show(&ann, &s.id).await;
    assert_eq!(shown.runs.len(), 1, "{shown:?}");
    assert_eq!(shown.runs[0].state, "missed");
    assert!(
        shown.runs[0].reason.contains("grace 60 s"),
        "{:?}",
        shown.runs[0]
    );
}

#[tokio::test]
async fn a_cron_schedule_fires_each_minute_once_and_shows_its_next_times() {
    let api = Api::new();
    let (_, ann) = api.token("ann", &["staging"], false);
    let s = api
        .schedule(&ann, json!({"app": "hello", "env": "staging", "what": "1.0.0", "cron": "* * * * *", "tz": "Europe/Amsterdam"}))
        .await;
    assert_eq!(s.next_local.len(), 3, "{s:?}");
    let first = s.next_ms.unwrap();
    assert_eq!(first % 60_000, 0, "on the minute");
    for (i, now) in [first, first + 30_000, first + 60_000, first + 61_000]
        .into_iter()
        .enumerate()
    {
        tick(&api.state, now).await;
        // Jobs of one app and env run one at a time: let each end (the hosts refuse).
        for j in api.jobs() {
            let _ = ended(&api, &j.id).await;
        }
        let want = [1, 1, 2, 2][i];
        assert_eq!(api.jobs().len(), want, "after tick {i}");
    }
}

async fn ended(api: &Api, id: &str) -> JobInfo {
    for _ in 0..300 {
        let j = api.state.svc.job(id).await.unwrap();
        if j.state != JobState::Running {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not end");
}

#[tokio::test]
async fn a_run_that_meets_a_running_job_waits_for_it_or_records_a_skip() {
    let api = Api::new();
    let (_, ann) = api.token("ann", &["staging"], false);
    let holder = JobInfo {
        id: "held-1".into(),
        kind: JobKind::Deploy,
        app: "hello".into(),
        env: "staging".into(),
        version: "0.9".into(),
        check: false,
        user: "bob".into(),
        state: JobState::Running,
        created_ms: now_ms(),
        finished_ms: None,
        error: None,
        triggered_by: None,
    };
    let db = api.state.svc.db().clone();
    db.start_job(&holder, &api.state.svc.jobs().lease())
        .unwrap()
        .unwrap();
    // A short lock_wait: skipped, naming the job that held the lock.
    let (at, t) = at_in(60);
    let short = api
        .schedule(&ann, json!({"app": "hello", "env": "staging", "what": "1.0.0", "at": at, "lock_wait_secs": 1}))
        .await;
    tick(&api.state, t).await;
    let run = &api.show(&ann, &short.id).await.runs[0];
    assert_eq!(run.state, "skipped", "{run:?}");
    assert!(run.reason.contains("locked by job held-1"), "{run:?}");
    // A longer one: waits until the job ends, then runs.
    let (at, t) = at_in(120);
    let long = api
        .schedule(&ann, json!({"app": "hello", "env": "staging", "what": "1.0.0", "at": at, "lock_wait_secs": 30}))
        .await;
    let handles = scheduler::tick(&api.state.svc, t).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        api.show(&ann, &long.id).await.runs[0].state,
        "running",
        "waiting for the lock"
    );
    db.finish_job("held-1", &JobEnd::plain(JobState::Succeeded, None))
        .unwrap();
    for h in handles {
        h.await.unwrap();
    }
    let run = &api.show(&ann, &long.id).await.runs[0];
    assert_eq!(run.state, "started", "{run:?}");
}

#[tokio::test]
async fn a_freeze_refuses_deploys_and_scheduled_runs_not_rollbacks_and_an_admin_may_force() {
    let api = Api::new();
    let (_, ann) = api.token("ann", &["staging"], false);
    let (_, root) = api.token("root", &[], true);
    let (until, _) = at_in(3600);
    let (status, v) = api
        .send(
            "POST",
            "/v1/freezes",
            &ann,
            json!({"env": "staging", "until": until, "reason": "year-end freeze"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let deploy = json!({"app": "hello", "env": "staging", "version": "1.0.0"});
    let (status, v) = api
        .send("POST", "/v1/deployments", &ann, deploy.clone())
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("closed")),
        "{v}"
    );
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("frozen until") && msg.contains("year-end freeze"),
        "{msg}"
    );
    // A scheduled run is refused the same way, and says so.
    let (s, t) = api.one_shot(&ann, 60).await;
    tick(&api.state, t).await;
    let run = &api.show(&ann, &s.id).await.runs[0];
    assert_eq!(run.state, "skipped");
    assert!(run.reason.contains("year-end freeze"), "{run:?}");
    // Rollbacks go through; --force is an admin's, with a reason, audited.
    let (status, v) = api
        .send(
            "POST",
            "/v1/rollbacks",
            &ann,
            json!({"app": "hello", "env": "staging", "to": "0.9.0"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    ended(&api, v["id"].as_str().unwrap()).await;
    let forced =
        json!({"app": "hello", "env": "staging", "version": "1.0.0", "force": "hotfix INC-7"});
    let (status, _) = api
        .send("POST", "/v1/deployments", &ann, forced.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = api.send("POST", "/v1/deployments", &root, forced).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let audit = api.state.svc.db().audit_log(50).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "force" && a.outcome == "forced: hotfix INC-7"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|a| a.outcome.starts_with("refused: staging is frozen")),
        "{audit:?}"
    );
    ended(&api, v["id"].as_str().unwrap()).await;
    // Unfrozen, the door is open again.
    let (status, _) = api
        .send("DELETE", "/v1/freezes/staging", &ann, Value::Null)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, v) = api.send("POST", "/v1/deployments", &ann, deploy).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
}

#[tokio::test]
async fn outside_its_windows_an_environment_refuses_deploys_and_says_when_it_opens() {
    let api = Api::new();
    let (_, ann) = api.token("ann", &["windowed"], false);
    let (status, v) = api
        .send(
            "POST",
            "/v1/deployments",
            &ann,
            json!({"app": "hello", "env": "windowed", "version": "1.0.0"}),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("closed")),
        "{v}"
    );
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("outside its deploy windows")
            && msg.contains("09:00-10:00 UTC")
            && msg.contains("the next opens"),
        "{msg}"
    );
    let (status, _) = api
        .send(
            "POST",
            "/v1/deployments",
            &ann,
            json!({"app": "hello", "env": "windowed", "version": "1.0.0", "check": true}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a check changes nothing: allowed"
    );
}

#[tokio::test]
async fn a_schedule_stops_when_its_token_is_revoked_and_bad_schedules_are_refused() {
    let api = Api::new();
    let (ann_id, ann) = api.token("ann", &["staging"], false);
    for (body, want) in [
        (
            json!({"app": "hello", "env": "staging", "what": "1.0.0", "cron": "61 * * * *"}),
            "minute",
        ),
        (
            json!({"app": "hello", "env": "staging", "what": "1.0.0", "cron": "* * * * *", "tz": "Mars/Olympus"}),
            "zone",
        ),
        (
            json!({"app": "hello", "env": "staging", "what": "1.0.0", "at": "2001-01-01T00:00"}),
            "in the past",
        ),
        (
            json!({"app": "hello", "env": "staging", "what": "rm -rf /", "at": at_in(60).0}),
            "what:",
        ),
        (
            json!({"app": "hello", "env": "production", "what": "1.0.0", "at": at_in(60).0}),
            "has no environment production that this token may read",
        ),
    ] {
        let (status, v) = api.send("POST", "/v1/schedules", &ann, body.clone()).await;
        assert!(status.is_client_error(), "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(want),
            "{body}: {v}"
        );
    }
    let (s, t) = api.one_shot(&ann, 60).await;
    assert!(api.state.svc.db().revoke_token(&ann_id).unwrap());
    tick(&api.state, t).await;
    let (_, root) = api.token("root", &[], true);
    let run = &api.show(&root, &s.id).await.runs[0];
    assert_eq!(run.state, "failed");
    assert!(run.reason.contains("revoked"), "{run:?}");
    assert!(api.jobs().is_empty());
}

/// Polls `f` for up to 15 s.
fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..150 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 15 s");
}

fn runs(gw: &support::Gateway, t: &str, id: &str) -> Vec<Value> {
    let (_, _, body) = gw.http("GET", &format!("/v1/schedules/{id}"), Some(t), None);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["runs"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_gateway_down_at_the_time_runs_the_slot_on_start_within_grace_else_records_it_missed() {
    support::cli_bin(); // (built first: the schedule's time is seconds away)
    let mut gw = support::Gateway::start(None, "0.1.0", "0.1.0");
    let t = gw.token("ann", "staging", false);
    let (at, slot) = at_in(5);
    let add = |grace: &str| {
        let out = gw.run(
            Some(&t),
            &[
                "--json", "schedule", "add", "hello", "1.0.0", "-e", "staging", "--at", &at,
                "--grace", grace,
            ],
        );
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str::<Value>(&out.stdout).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (kept, late) = (add("10m"), add("1s"));
    let listed = gw.run(Some(&t), &["schedule", "list"]);
    assert!(
        listed.stdout.contains(&kept) && listed.stdout.contains("next: "),
        "{listed:?}"
    );
    gw.kill();
    while now_ms() < slot + 3000 {
        std::thread::sleep(Duration::from_millis(200));
    }
    gw.restart();
    eventually("the slot within grace runs once", || {
        runs(&gw, &t, &kept)
            .first()
            .is_some_and(|r| r["state"] == "started")
    });
    let missed = runs(&gw, &t, &late);
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(missed[0]["state"], "missed", "{missed:?}");
    // Two more restarts: still one run each, one job.
    gw.restart();
    gw.restart();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(runs(&gw, &t, &kept).len(), 1);
    assert_eq!(runs(&gw, &t, &late).len(), 1);
    let jobs = gw.run(Some(&t), &["--json", "jobs"]);
    let jobs: Vec<Value> = serde_json::from_str(&jobs.stdout).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["triggered_by"], format!("schedule {kept}").as_str());
    let shown = gw.run(Some(&t), &["schedule", "show", &kept]);
    assert!(
        shown.stdout.contains("started") && shown.stdout.contains(jobs[0]["id"].as_str().unwrap()),
        "{shown:?}"
    );
}

#[tokio::test]
async fn a_paused_schedule_skips_its_slots_and_resumes_from_now_and_promote_runs_are_checked() {
    let api = Api::new();
    let (_, ann) = api.token("ann", &["staging", "windowed"], false);
    let s = api
        .schedule(
            &ann,
            json!({"app": "hello", "env": "staging", "what": "1.0.0", "cron": "*/5 * * * *"}),
        )
        .await;
    let first = s.next_ms.unwrap();
    let (status, v) = api
        .send(
            "POST",
            &format!("/v1/schedules/{}/pause", s.id),
            &ann,
            Value::Null,
        )
        .await;
    assert_eq!(
        (status, v["paused"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    tick(&api.state, first + 1000).await;
    assert!(api.jobs().is_empty(), "paused: nothing runs");
    let (status, v) = api
        .send(
            "POST",
            &format!("/v1/schedules/{}/resume", s.id),
            &ann,
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v["next_ms"].as_u64().unwrap() > now_ms(),
        "resumed from now: {v}"
    );
    let (status, _) = api
        .send(
            "DELETE",
            &format!("/v1/schedules/{}", s.id),
            &ann,
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, v) = api.send("GET", "/v1/schedules", &ann, Value::Null).await;
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
    // `promote:ENV` goes through promote's checks at run time.
    let (at, t) = at_in(60);
    let p = api
        .schedule(
            &ann,
            json!({"app": "hello", "env": "staging", "what": "promote:windowed", "at": at}),
        )
        .await;
    tick(&api.state, t).await;
    let run = &api.show(&ann, &p.id).await.runs[0];
    assert_eq!(run.state, "failed", "{run:?}");
    assert!(
        run.reason.contains("nothing of hello runs on windowed"),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_run_left_running_by_a_stopped_gateway_is_marked_failed_on_start_and_not_rerun() {
    let api = Api::new();
    let (_, ann) = api.token("ann", &["staging"], false);
    let (s, t) = api.one_shot(&ann, 60).await;
    // A gateway claimed the slot, then died before the run started its job.
    let claimed = deploy_wire::schedule::ScheduleRun {
        slot_ms: t,
        state: "running".into(),
        job_id: None,
        reason: "claimed".into(),
        ts_ms: t,
    };
    let lease = api.state.svc.jobs().lease();
    assert!(
        api.state
            .svc
            .db()
            .claim_run(&s.id, &claimed, Some(&lease))
            .unwrap()
    );
    let again = api.restarted();
    assert_eq!(scheduler::recover(&again.svc).await.unwrap(), 1);
    tick(&again, t + 1000).await;
    let runs = api.show(&ann, &s.id).await.runs;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, "failed");
    assert!(
        runs[0].reason.contains("stopped before this run started"),
        "{runs:?}"
    );
    assert!(api.jobs().is_empty(), "never run twice: not at all");
}
