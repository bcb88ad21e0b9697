//! The API's front door without a listener: `tower::ServiceExt::oneshot` on the real
//! router over a real SQLite file in a temp dir: tokens on every route, the JSON error
//! shape of rejections and unknown routes, the version handshake, and the lock.

use crate::support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploy::gateway::api::{self, PUBLIC_ROUTES};
use deploy::gateway::auth;
use deploy_wire::api::ApiError;
use tower::ServiceExt;

struct Api {
    /// The gateway's files; removed when the test ends.
    _dir: tempfile::TempDir,
    state: api::AppState,
}

impl Api {
    /// A gateway's state on temp files: the offline inventory (or `inventory`).
    fn new(oldest: &str, newest: &str, inventory: &str) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let state = support::gateway_state(dir.path(), inventory, oldest, newest);
        Api { _dir: dir, state }
    }

    fn offline() -> Api {
        Api::new("0.1.0", "0.1.0", support::OFFLINE_INVENTORY)
    }

    fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// A token for `user` on `envs`, written straight into the store.
    fn token(&self, user: &str, envs: &[&str]) -> String {
        let (id, token) = auth::new_token().unwrap();
        let envs: Vec<String> = envs.iter().map(|e| e.to_string()).collect();
        let db = self.state.svc.db();
        db.add_token(&id, &auth::hash(&token), user, &envs, false)
            .unwrap();
        token
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let resp = self.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

fn request(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path)
}

/// A JSON error body with a non-empty message, or a panic naming what came instead.
fn error_body(what: &str, body: &str) -> ApiError {
    let e: ApiError = serde_json::from_str(body)
        .unwrap_or_else(|err| panic!("{what}: not a JSON error ({err}): {body:?}"));
    assert!(!e.message.is_empty(), "{what}: empty message");
    e
}

#[tokio::test]
async fn every_route_without_a_token_gets_401_json_except_the_public_ones() {
    let api = Api::offline();
    let routes = api::routes();
    for public in PUBLIC_ROUTES {
        assert!(
            routes.iter().any(|(_, p)| p == public),
            "{public} is not a route"
        );
    }
    assert!(routes.len() >= 14, "the route table: {routes:?}");
    for (method, pattern) in routes {
        let path = pattern.replace("{app}", "hello").replace("{id}", "x");
        let what = format!("{method} {path}");
        let (status, body) = api
            .send(request(method.as_str(), &path).body(Body::empty()).unwrap())
            .await;
        if PUBLIC_ROUTES.contains(&pattern) {
            assert_eq!(status, StatusCode::OK, "{what} is public: {body}");
            continue;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(error_body(&what, &body).code, "unauthenticated", "{what}");
        let bogus = request(method.as_str(), &path)
            .header("authorization", "Bearer dpl_00000000_bogus")
            .body(Body::empty())
            .unwrap();
        let (status, body) = api.send(bogus).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{what} with an unknown token: {body}"
        );
        assert_eq!(error_body(&what, &body).code, "unauthenticated");
    }
}

#[tokio::test]
async fn an_unknown_application_is_404_without_naming_the_others() {
    let api = Api::offline();
    let ann = api.token("ann", &["staging"]);
    let req = request("GET", "/v1/apps/nosuch/versions")
        .header("authorization", format!("Bearer {ann}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = api.send(req).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let e = error_body("an unknown application", &body);
    assert!(e.message.contains("nosuch"), "{}", e.message);
    assert!(
        !e.message.contains("hello"),
        "names another application: {}",
        e.message
    );
}

#[tokio::test]
async fn a_malformed_json_body_gets_400_with_code_and_message() {
    let api = Api::offline();
    let ann = api.token("ann", &["staging"]);
    for (what, body, paths) in [
        (
            "cut JSON",
            r#"{"app": "hello", "env":"#,
            &["/v1/deployments", "/v1/rollbacks"][..],
        ),
        (
            "a number for a string",
            r#"{"app": 1, "env": "staging", "version": "1.0.0"}"#,
            &["/v1/deployments", "/v1/rollbacks"],
        ),
        // A rollback needs no version.
        (
            "no version",
            r#"{"app": "hello", "env": "staging"}"#,
            &["/v1/deployments"],
        ),
    ] {
        for path in paths {
            let req = request("POST", path)
                .header("authorization", format!("Bearer {ann}"))
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let (status, text) = api.send(req).await;
            let what = format!("{path} with {what}");
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {text}");
            let e = error_body(&what, &text);
            assert_eq!(e.code, "invalid_request", "{what}");
            assert!(
                e.message.starts_with("bad request body: "),
                "{what}: {}",
                e.message
            );
        }
    }
    let (_, jobs) = api
        .send(
            request("GET", "/v1/jobs")
                .header("authorization", format!("Bearer {ann}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(jobs, "[]", "nothing was started");
}

#[tokio::test]
async fn an_unknown_route_gets_404_json_and_a_wrong_method_405_json() {
    let api = Api::offline();
    let (status, body) = api
        .send(
            request("GET", "/v1/nothing-here")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let e = error_body("unknown route", &body);
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("not_found", "no route GET /v1/nothing-here")
    );
    let (status, body) = api
        .send(request("DELETE", "/v1/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(error_body("wrong method", &body).code, "method_not_allowed");
}

#[tokio::test]
async fn a_too_old_cli_gets_426_with_the_upgrade_command() {
    let api = Api::new("9.0.0", "9.1.0", support::OFFLINE_INVENTORY);
    for path in ["/v1/health", "/v1/apps", "/v1/nothing-here"] {
        let req = request("GET", path)
            .header("deploy-client-version", "0.1.0")
            .body(Body::empty())
            .unwrap();
        let (status, body) = api.send(req).await;
        assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "{path}: {body}");
        let e = error_body(path, &body);
        assert_eq!(e.code, "cli_too_old");
        assert_eq!(
            e.message,
            "this gateway needs deploy 9.0.0 or newer (you have 0.1.0)"
        );
        assert_eq!(
            e.upgrade_command.as_deref(),
            Some("cargo install deploy-cli --tag v9.1.0")
        );
    }
    // A current CLI goes through to the token check.
    let req = request("GET", "/v1/apps")
        .header("deploy-client-version", "9.0.0")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_second_deploy_while_one_runs_gets_409_locked_naming_holder_and_job() {
    let (_listener, port) = support::silent_listener();
    let api = Api::new("0.1.0", "0.1.0", &support::inventory_on_port(port));
    let ann = api.token("ann", &["staging"]);
    let deploy = || {
        request("POST", "/v1/deployments")
            .header("authorization", format!("Bearer {ann}"))
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"app":"hello","env":"staging","version":"1.0.0"}"#,
            ))
            .unwrap()
    };
    let (status, body) = api.send(deploy()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (first["kind"].as_str(), first["state"].as_str()),
        (Some("deploy"), Some("running"))
    );
    let (status, body) = api.send(deploy()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let e = error_body("locked", &body);
    assert_eq!(e.code, "locked");
    assert_eq!(e.holder.as_deref(), Some("ann"));
    assert_eq!(e.job_id.as_deref(), first["id"].as_str());
    let audit = api.state.svc.db().audit_log(10).unwrap();
    assert!(
        audit.iter().any(|a| a.user == "ann"
            && a.outcome == "refused: locked"
            && a.target == "hello/staging 1.0.0"),
        "{audit:?}"
    );
}
