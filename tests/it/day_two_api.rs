//! The day-two routes without a listener or servers (`oneshot` on the real router, hosts
//! that refuse connections): the `run` right (403 `forbidden`, audited), a restart of
//! an environment whose hosts run different releases (409 naming them), `app-logs`
//! (read scope, audit row, unknown process, a dead host is a line; a followed log ended
//! by a stopping gateway), and `token create --run` / `token list`.

use crate::support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploy::gateway::api;
use deploy::gateway::auth;
use deploy::gateway::store::{LiveRow, NewToken, now_ms};
use deploy_wire::api::{ApiError, AuditEntry, JobInfo, JobKind, LogLine};
use tower::ServiceExt;

/// Two staging hosts and one production host, all on a port nothing listens on.
const INVENTORY: &str = "\
hosts:
  web1: {address: 127.0.0.1, port: 1, groups: [web]}
  web2: {address: 127.0.0.1, port: 1, groups: [web]}
  prod1: {address: 127.0.0.1, port: 1, groups: [prod]}
applications:
  hello:
    package: hello-app
    index_url: http://127.0.0.1:1/simple/
    wsgi: hello_app:app
    port: 8000
    server_names: [hello.example.test]
    processes:
      worker: {command: python -m worker, count: 2}
    environments:
      staging: {groups: [web]}
      production: {groups: [prod]}
";

struct Api {
    _dir: tempfile::TempDir,
    state: api::AppState,
}

/// What a token may do, for [`Api::token`].
#[derive(Default)]
struct Rights<'a> {
    envs: &'a [&'a str],
    read: &'a [&'a str],
    admin: bool,
    run: bool,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let state = support::gateway_state(dir.path(), INVENTORY, "0.1.0", "0.1.0");
        Api { _dir: dir, state }
    }

    fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    fn token(&self, user: &str, r: Rights) -> String {
        let (id, token) = auth::new_token().unwrap();
        let list = |l: &[&str]| l.iter().map(|e| e.to_string()).collect();
        let new = NewToken {
            id,
            hash: auth::hash(&token),
            user: user.into(),
            envs: list(r.envs),
            read_envs: list(r.read),
            admin: r.admin,
            expires_ms: None,
            run: r.run,
        };
        self.state.svc.db().create_token(&new).unwrap();
        token
    }

    fn live(&self, host: &str, version: &str) {
        let row = LiveRow {
            app: "hello".into(),
            env: "staging".into(),
            host: host.into(),
            version: version.into(),
            slot: "blue".into(),
            job_id: "j0".into(),
            user: "ann".into(),
            ts_ms: now_ms(),
        };
        self.state.svc.db().set_live(&[row]).unwrap();
    }

    fn audit(&self) -> Vec<AuditEntry> {
        self.state.svc.db().audit_log(100).unwrap()
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Waits for a job to end; its record.
    async fn ended(&self, id: &str) -> JobInfo {
        for _ in 0..200 {
            let job = self.state.svc.job(id).await.unwrap();
            if job.state.as_str() != "running" {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("job {id} did not end");
    }
}

fn error(body: &str) -> ApiError {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

const RUN: &str = r#"{"app":"hello","env":"staging","command":["id","-un"]}"#;

#[tokio::test]
async fn run_needs_the_run_right_besides_the_environment_and_refusals_are_audited() {
    let api = Api::new();
    let ann = api.token(
        "ann",
        Rights {
            envs: &["staging"],
            ..Rights::default()
        },
    );
    let (status, body) = api.send("POST", "/v1/runs", &ann, RUN).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let e = error(&body);
    assert_eq!(e.code, "forbidden");
    assert!(e.message.contains("lacks the `run` right"), "{}", e.message);
    let rows = api.audit();
    let refused = rows
        .iter()
        .find(|r| r.action == "run" && r.outcome == "refused: no run right")
        .unwrap_or_else(|| panic!("no audit row: {rows:?}"));
    assert_eq!(refused.user, "ann");
    assert!(refused.target.contains("hello/staging") && refused.target.contains("id -un"));
    assert!(
        api.state
            .svc
            .jobs_for(&admin_principal(), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The right alone does not open an environment the token may not act on.
    let rita = api.token(
        "rita",
        Rights {
            read: &["staging"],
            run: true,
            ..Rights::default()
        },
    );
    let (status, body) = api.send("POST", "/v1/runs", &rita, RUN).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        error(&body)
            .message
            .contains("may not act on environment staging")
    );

    // Both: a job of kind `run` on the first host by name; here it cannot connect.
    let ops = api.token(
        "ops",
        Rights {
            envs: &["staging"],
            run: true,
            ..Rights::default()
        },
    );
    let (status, body) = api.send("POST", "/v1/runs", &ops, RUN).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job: JobInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(job.kind, JobKind::Run);
    let job = api.ended(&job.id).await;
    assert_eq!(job.state.as_str(), "failed");
    assert!(
        api.audit().iter().any(|r| r.action == "run"
            && r.outcome == "accepted"
            && r.target.starts_with("hello/staging on web1: id -un")),
        "{:?}",
        api.audit()
    );
    let (status, body) = api
        .send(
            "POST",
            "/v1/runs",
            &ops,
            r#"{"app":"hello","env":"staging","host":"prod1","command":["id"]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error(&body).message.contains("its hosts: web1, web2"));
    let (status, _) = api
        .send(
            "POST",
            "/v1/runs",
            &ops,
            r#"{"app":"hello","env":"staging","command":[]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn admin_principal() -> auth::Principal {
    auth::Principal {
        user: "root".into(),
        admin: true,
        ..auth::Principal::default()
    }
}

#[tokio::test]
async fn a_restart_is_refused_when_the_hosts_run_different_releases_or_nothing() {
    let api = Api::new();
    let ann = api.token(
        "ann",
        Rights {
            envs: &["staging"],
            ..Rights::default()
        },
    );
    let body = r#"{"app":"hello","env":"staging"}"#;
    let (status, text) = api.send("POST", "/v1/restarts", &ann, body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(
        error(&text)
            .message
            .starts_with("nothing of hello runs on staging")
    );

    api.live("web1", "1.0.0");
    api.live("web2", "1.1.0");
    let (status, text) = api.send("POST", "/v1/restarts", &ann, body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    let e = error(&text);
    assert_eq!(e.code, "conflict");
    assert!(
        e.message.contains("1.0.0 on web1; 1.1.0 on web2"),
        "{}",
        e.message
    );

    api.live("web2", "1.0.0");
    let (status, text) = api.send("POST", "/v1/restarts", &ann, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let job: JobInfo = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (job.kind, job.version.as_str()),
        (JobKind::Restart, "1.0.0")
    );
    api.ended(&job.id).await;

    let ro = api.token(
        "rob",
        Rights {
            read: &["staging"],
            ..Rights::default()
        },
    );
    let (status, _) = api.send("POST", "/v1/restarts", &ro, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The `line` events of a finished log stream, and whether it ended with `end`.
fn log_lines(sse: &str) -> (Vec<LogLine>, bool) {
    let mut lines = Vec::new();
    let mut ended = false;
    for frame in sse.split("\n\n") {
        let kind = frame.lines().find_map(|l| l.strip_prefix("event: "));
        let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
        match (kind, data) {
            (Some("line"), Some(d)) => lines.push(serde_json::from_str(d).unwrap()),
            (Some("end"), _) => ended = true,
            _ => {}
        }
    }
    (lines, ended)
}

#[tokio::test]
async fn app_logs_need_the_read_scope_are_audited_and_say_which_hosts_are_down() {
    let api = Api::new();
    let rob = api.token(
        "rob",
        Rights {
            read: &["staging"],
            ..Rights::default()
        },
    );
    let (status, body) = api
        .send("GET", "/v1/apps/hello/logs?env=staging&lines=5", &rob, "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (lines, ended) = log_lines(&body);
    assert!(ended, "{body}");
    let mut hosts: Vec<&str> = lines.iter().map(|l| l.host.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["web1", "web2"], "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.notice && l.line.starts_with("unreachable: "))
    );
    assert!(
        api.audit().iter().any(|r| r.user == "rob"
            && r.action == "app-logs"
            && r.target == "hello/staging web on web1,web2 (-n 5)"),
        "{:?}",
        api.audit()
    );

    let (status, body) = api
        .send(
            "GET",
            "/v1/apps/hello/logs?env=staging&process=celery",
            &rob,
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        error(&body).message,
        "application hello has no process `celery`; its processes: web, worker"
    );
    let (status, _) = api
        .send("GET", "/v1/apps/hello/logs?env=production", &rob, "")
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "unreadable is unknown (issue 26)"
    );
    let (status, _) = api
        .send(
            "GET",
            "/v1/apps/hello/logs?env=staging&host=prod1",
            &rob,
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn token_create_run_is_listed_with_its_right() {
    let dir = tempfile::tempdir().unwrap();
    let _state = support::gateway_state(dir.path(), INVENTORY, "0.1.0", "0.1.0");
    let gw = |args: &[&str]| {
        let out = std::process::Command::new(support::gateway_bin())
            .args(["token"])
            .args(args)
            .arg("--config")
            .arg(dir.path().join("gateway.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (_, said) = gw(&["create", "--user", "ops", "--env", "staging", "--run"]);
    assert!(said.contains("(environments: staging, run)"), "{said}");
    gw(&["create", "--user", "ann", "--env", "staging"]);
    let (list, _) = gw(&["list"]);
    let head = list.lines().next().unwrap();
    assert!(head.contains(" run "), "{list}");
    let row = |user: &str| {
        let l = list.lines().find(|l| l.contains(user)).unwrap();
        l.split_whitespace().nth(4).unwrap().to_string()
    };
    assert_eq!(
        (row("ops"), row("ann")),
        ("true".into(), "false".into()),
        "{list}"
    );
}

#[tokio::test]
async fn followed_logs_end_when_the_gateway_stops() {
    // A host that accepts TCP and never speaks SSH: its log would be awaited for long.
    let (_silent, port) = support::silent_listener();
    let dir = tempfile::tempdir().unwrap();
    let inventory = INVENTORY.replace("port: 1,", &format!("port: {port},"));
    let state = support::gateway_state(dir.path(), &inventory, "0.1.0", "0.1.0");
    let req = deploy::gateway::service::LogsRequest {
        env: "staging".into(),
        follow: true,
        ..Default::default()
    };
    let mut logs = state
        .svc
        .app_logs(&admin_principal(), "hello", req)
        .await
        .unwrap();
    state.svc.end_log_streams();
    let said = tokio::time::timeout(std::time::Duration::from_secs(5), logs.next())
        .await
        .expect("the stream ends at once")
        .unwrap();
    assert!(
        said.notice && said.line.contains("the gateway is stopping"),
        "{said:?}"
    );
    assert_eq!(logs.next().await, None);
}
