//! Read and write scopes over the real route table (`oneshot`, no listener): a table of
//! route x token kind -> status, filtered lists, the JSON shape of every refusal, the
//! bounded growth of the database under a flood of unauthenticated requests, and SSE
//! followers that end with their clients and are capped.

use crate::support;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use deploy::gateway::api;
use deploy::gateway::auth;
use deploy::gateway::store::{JobEnd, NewToken, now_ms};
use deploy_wire::api::{ApiError, JobInfo, JobKind, JobState};
use tower::ServiceExt;

struct Api {
    dir: tempfile::TempDir,
    state: api::AppState,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let state =
            support::gateway_state(dir.path(), support::OFFLINE_INVENTORY, "0.1.0", "0.1.0");
        Api { dir, state }
    }

    fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    fn token(
        &self,
        user: &str,
        envs: &[&str],
        read: &[&str],
        admin: bool,
        expires_ms: Option<u64>,
    ) -> String {
        let (id, token) = auth::new_token().unwrap();
        let list = |l: &[&str]| l.iter().map(|e| e.to_string()).collect();
        let new = NewToken {
            id,
            hash: auth::hash(&token),
            user: user.into(),
            envs: list(envs),
            read_envs: list(read),
            admin,
            expires_ms,
            run: false,
        };
        self.state.svc.db().create_token(&new).unwrap();
        token
    }

    /// A job of `env` in the store, finished (or running).
    fn job(&self, id: &str, env: &str, finished: bool) {
        let job = JobInfo {
            id: id.into(),
            kind: JobKind::Deploy,
            app: "hello".into(),
            env: env.into(),
            version: "1.0.0".into(),
            check: false,
            user: "ann".into(),
            state: JobState::Running,
            created_ms: now_ms(),
            finished_ms: None,
            error: None,
            triggered_by: None,
        };
        let db = self.state.svc.db();
        let lease = self.state.svc.jobs().lease();
        db.start_job(&job, &lease).unwrap().unwrap();
        if finished {
            db.finish_job(id, &JobEnd::plain(JobState::Succeeded, None))
                .unwrap();
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let resp = self.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// What the gateway has stored, on either store.
    fn db_bytes(&self) -> u64 {
        support::database_size(self.dir.path())
    }
}

fn req(method: &str, path: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    if method == "POST" {
        r = r.header("content-type", "application/json");
    }
    let body = match path {
        "/v1/deployments" | "/v1/rollbacks" => unreachable!(),
        _ if method == "POST" => "{}".to_string(),
        _ => String::new(),
    };
    r.body(Body::from(body)).unwrap()
}

fn post(path: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).unwrap()
}

/// Builds a route's request for a token.
type MakeReq = Box<dyn Fn(Option<&str>) -> Request<Body>>;

const KINDS: [&str; 5] = ["admin", "staging", "staging-ro", "expired", "qa-only"];

/// (route, request, expected status per token kind in `KINDS` order).
fn table() -> Vec<(&'static str, MakeReq, [u16; 5])> {
    let get = |p: &'static str| Box::new(move |t: Option<&str>| req("GET", p, t)) as MakeReq;
    let posting = |p: &'static str, b: &'static str| {
        Box::new(move |t: Option<&str>| post(p, t, b)) as MakeReq
    };
    vec![
        (
            "GET /v1/apps (filtered)",
            get("/v1/apps"),
            [200, 200, 200, 401, 200],
        ),
        (
            "GET /v1/hosts (filtered)",
            get("/v1/hosts"),
            [200, 200, 200, 401, 200],
        ),
        (
            "GET /v1/jobs (filtered)",
            get("/v1/jobs"),
            [200, 200, 200, 401, 200],
        ),
        (
            "GET /v1/ledger (filtered)",
            get("/v1/ledger"),
            [200, 200, 200, 401, 200],
        ),
        ("GET /v1/audit", get("/v1/audit"), [200, 403, 403, 401, 403]),
        (
            "GET /v1/apps/hello/status (filtered)",
            get("/v1/apps/hello/status"),
            [200, 200, 200, 401, 403],
        ),
        (
            "GET /v1/apps/hello/status?env=production",
            get("/v1/apps/hello/status?env=production"),
            [200, 404, 404, 401, 404],
        ),
        (
            "GET /v1/apps/hello/status?env=staging",
            get("/v1/apps/hello/status?env=staging"),
            [200, 200, 200, 401, 404],
        ),
        (
            "GET /v1/apps/hello/status?env=production&live=true",
            get("/v1/apps/hello/status?env=production&live=true"),
            [200, 404, 404, 401, 404],
        ),
        // 502: the offline index was asked; 403: it was not.
        (
            "GET /v1/apps/hello/versions",
            get("/v1/apps/hello/versions"),
            [502, 502, 502, 401, 403],
        ),
        (
            "GET /v1/apps/hello/rollback?env=production",
            get("/v1/apps/hello/rollback?env=production"),
            [409, 404, 404, 401, 404],
        ),
        (
            "GET /v1/jobs/{production job}",
            get("/v1/jobs/jp"),
            [200, 404, 404, 401, 404],
        ),
        (
            "GET /v1/jobs/{production job}/log",
            get("/v1/jobs/jp/log"),
            [200, 404, 404, 401, 404],
        ),
        (
            "GET /v1/jobs/{production job}/events",
            get("/v1/jobs/jp/events"),
            [200, 404, 404, 401, 404],
        ),
        (
            "GET /v1/jobs/{staging job}/events",
            get("/v1/jobs/js/events"),
            [200, 200, 200, 401, 404],
        ),
        (
            "POST /v1/jobs/{production job}/cancel",
            get_post("/v1/jobs/jp/cancel"),
            [409, 404, 404, 401, 404],
        ),
        (
            "POST /v1/jobs/{staging job}/cancel",
            get_post("/v1/jobs/js/cancel"),
            [409, 409, 403, 401, 404],
        ),
        // An unknown app: the answer of an unknown environment (404), which names no
        // application (issue 26: a token learns nothing of what it may not read).
        (
            "POST /v1/deployments (production)",
            posting(
                "/v1/deployments",
                r#"{"app":"nope","env":"production","version":"1.0.0"}"#,
            ),
            [404, 404, 404, 401, 404],
        ),
        (
            "POST /v1/deployments (staging)",
            posting(
                "/v1/deployments",
                r#"{"app":"nope","env":"staging","version":"1.0.0"}"#,
            ),
            [404, 404, 404, 401, 404],
        ),
        (
            "POST /v1/rollbacks (staging)",
            posting(
                "/v1/rollbacks",
                r#"{"app":"nope","env":"staging","to":"1.0.0"}"#,
            ),
            [404, 404, 404, 401, 404],
        ),
    ]
}

fn get_post(p: &'static str) -> MakeReq {
    Box::new(move |t: Option<&str>| req("POST", p, t))
}

#[tokio::test]
async fn every_route_checks_the_tokens_environments_route_by_token_kind() {
    let api = Api::new();
    api.job("jp", "production", true);
    api.job("js", "staging", true);
    let tokens = [
        api.token("root", &[], &[], true, None),
        api.token("ann", &["staging"], &[], false, None),
        api.token("rita", &[], &["staging"], false, None),
        api.token("old", &["staging"], &[], false, Some(now_ms() - 1)),
        api.token("quinn", &["qa"], &[], false, None),
    ];
    let mut failures = Vec::new();
    let mut printed = format!(
        "| route | {} |\n|---|---|---|---|---|---|\n",
        KINDS.join(" | ")
    );
    for (route, make, want) in table() {
        let mut row = format!("| {route} |");
        for (i, t) in tokens.iter().enumerate() {
            let (status, body) = api.send(make(Some(t))).await;
            row.push_str(&format!(" {} |", status.as_u16()));
            if status.as_u16() != want[i] {
                failures.push(format!(
                    "{route} as {}: {status} (want {}): {body}",
                    KINDS[i], want[i]
                ));
            }
            if !status.is_success() {
                let e: Result<ApiError, _> = serde_json::from_str(&body);
                assert!(
                    e.is_ok_and(|e| !e.message.is_empty()),
                    "{route} as {}: not JSON: {body}",
                    KINDS[i]
                );
            }
        }
        printed.push_str(&row);
        printed.push('\n');
    }
    println!("{printed}");
    assert!(failures.is_empty(), "{}\n{printed}", failures.join("\n"));
}

#[tokio::test]
async fn lists_show_only_the_environments_a_token_may_read() {
    let api = Api::new();
    api.job("jp", "production", true);
    api.job("js", "staging", true);
    let rita = api.token("rita", &[], &["staging"], false, None);
    let (_, body) = api.send(req("GET", "/v1/jobs", Some(&rita))).await;
    let jobs: Vec<JobInfo> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["js"]
    );
    let (_, body) = api.send(req("GET", "/v1/apps", Some(&rita))).await;
    assert!(
        body.contains("\"staging\"") && !body.contains("production"),
        "{body}"
    );
    let (_, body) = api
        .send(req("GET", "/v1/apps/hello/status", Some(&rita)))
        .await;
    assert!(
        body.contains("\"staging\"") && !body.contains("production"),
        "{body}"
    );
    let quinn = api.token("quinn", &["qa"], &[], false, None);
    let (_, body) = api.send(req("GET", "/v1/hosts", Some(&quinn))).await;
    assert_eq!(
        body, "[]",
        "no SSH address for a token that sees no environment"
    );
    let (_, body) = api.send(req("GET", "/v1/apps", Some(&quinn))).await;
    assert_eq!(body, "[]");
}

#[tokio::test]
async fn status_live_shows_what_each_host_says_or_why_not() {
    let api = Api::new();
    let ann = api.token("ann", &["staging"], &[], false, None);
    let (status, body) = api
        .send(req(
            "GET",
            "/v1/apps/hello/status?env=staging&live=true",
            Some(&ann),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<deploy_wire::api::HostRelease> = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.len(), 1);
    let seen = rows[0].observed.as_ref().expect("the host was asked");
    assert!(seen.unreachable.is_some(), "{body}");
    assert!(
        !rows[0].disagrees,
        "an unreachable host is not a disagreement"
    );
    let (_, plain) = api
        .send(req("GET", "/v1/apps/hello/status?env=staging", Some(&ann)))
        .await;
    assert!(!plain.contains("observed"), "{plain}");
}

#[tokio::test]
async fn ten_thousand_unauthenticated_requests_grow_the_database_by_a_bounded_amount() {
    let api = Api::new();
    let router = api.router();
    // 10 sources x 2 reasons (no token, an unknown one).
    let before = api.db_bytes();
    for i in 0..10_000u32 {
        let mut r = req(
            "GET",
            "/v1/apps",
            if (i / 10) % 2 == 0 {
                None
            } else {
                Some("dpl_0_bogus")
            },
        );
        let source = std::net::SocketAddr::from(([10, 0, 0, (i % 10) as u8], 4000));
        r.extensions_mut().insert(ConnectInfo(source));
        let resp = router.clone().oneshot(r).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let after = api.db_bytes();
    let rows = api.state.svc.db().audit_log(100_000).unwrap();
    println!(
        "10000 unauthenticated requests: database {before} -> {after} bytes (+{}), {} audit rows",
        after - before,
        rows.len()
    );
    assert_eq!(rows.len(), 20, "one row per (source, reason): {rows:?}");
    assert!(after - before < 1 << 20, "{before} -> {after}");
}

async fn wait_followers(api: &Api, want: usize) -> usize {
    let mut n = usize::MAX;
    for _ in 0..200 {
        n = api.state.svc.jobs().events.followers();
        if n == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    n
}

#[tokio::test]
async fn sse_followers_end_with_their_clients_and_are_capped() {
    let api = Api::new();
    api.job("jr", "staging", false); // runs forever: its followers would wait forever
    let ann = api.token("ann", &["staging"], &[], false, None);
    let router = api.router();
    for _ in 0..1000 {
        let resp = router
            .clone()
            .oneshot(req("GET", "/v1/jobs/jr/events", Some(&ann)))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        drop(resp); // the client goes away
    }
    let left = wait_followers(&api, 0).await;
    println!("1000 SSE clients connected and vanished: {left} follower(s) left");
    assert_eq!(left, 0);
    let mut held = Vec::new();
    for _ in 0..deploy::gateway::events::MAX_FOLLOWERS {
        let resp = router
            .clone()
            .oneshot(req("GET", "/v1/jobs/jr/events", Some(&ann)))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        held.push(resp);
    }
    let (status, body) = api.send(req("GET", "/v1/jobs/jr/events", Some(&ann))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let e: ApiError = serde_json::from_str(&body).unwrap();
    assert_eq!(e.code, "unavailable");
    let (_, health) = api.send(req("GET", "/v1/health", None)).await;
    assert!(
        health.contains(&format!("\"followers\":{}", held.len())),
        "{health}"
    );
    drop(held);
    assert_eq!(wait_followers(&api, 0).await, 0);
}

#[tokio::test]
async fn bad_paths_and_queries_answer_json_on_every_route() {
    let api = Api::new();
    let root = api.token("root", &[], &[], true, None);
    for path in [
        "/v1/jobs?limit=x",
        "/v1/jobs/nope",
        "/v1/jobs/nope/events",
        "/v1/jobs/nope/events?after=x",
        "/v1/jobs/nope/log?after=-1",
        "/v1/ledger?limit=-5",
        "/v1/apps/nope/status",
        "/v1/apps/hello/status?live=maybe",
        "/v1/apps/hello/status?env=nope",
        "/v1/apps/hello/rollback",
        "/v1/apps/nope/versions",
    ] {
        let (status, body) = api.send(req("GET", path, Some(&root))).await;
        assert!(status.is_client_error(), "{path}: {status} {body}");
        let e: ApiError = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body}"));
        assert!(!e.code.is_empty() && !e.message.is_empty(), "{path}");
    }
}
