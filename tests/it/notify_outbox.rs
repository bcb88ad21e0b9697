//! The notification outbox across a gateway's death, as real processes: a webhook
//! receiver is down when a job starts and ends, so both notices' first attempts fail;
//! the gateway is killed (SIGKILL) before their retries are due; the receiver comes up
//! and the gateway is started again: each notice reaches the receiver, signed, with its
//! idempotency key (`Idempotency-Key`, `X-Deploy-Delivery` and the body's `delivery`,
//! the same for any repeat), and every attempt, the restarted gateway's included, is a
//! `notified` event of the job.  Before the outbox, pending retries lived in the
//! gateway's memory and died with it.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use deploy::gateway::store::{Db, DeliveryState, Location};
use deploy::notify::hmac;
use serde_json::Value;
use support::{Gateway, GatewayOpts, pg};

const HOOK_KEY: &str = "outbox-hook-K3Y";

/// What the receiver got: (Idempotency-Key, X-Deploy-Delivery, X-Deploy-Event, body).
type Seen = Arc<Mutex<Vec<(String, String, String, Value)>>>;

fn header(h: &HeaderMap, name: &str) -> String {
    let v = h.get(name).and_then(|v| v.to_str().ok());
    v.unwrap_or_default().to_string()
}

async fn hook(State(seen): State<Seen>, h: HeaderMap, body: Bytes) -> StatusCode {
    if !hmac::verify(
        HOOK_KEY.as_bytes(),
        &body,
        &header(&h, "x-deploy-signature"),
    ) {
        return StatusCode::UNAUTHORIZED;
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    let got = (
        header(&h, "idempotency-key"),
        header(&h, "x-deploy-delivery"),
        header(&h, "x-deploy-event"),
        json,
    );
    seen.lock().unwrap().push(got);
    StatusCode::NO_CONTENT
}

/// The receiver, up on `port` from now on (a runtime of its own).
fn receiver_on(port: u16) -> Seen {
    let seen = Seen::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(seen.clone());
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    seen
}

/// The gateway's store, opened by the test beside it (SQLite's WAL and PostgreSQL both
/// let another reader in).
fn store_of(gw: &Gateway) -> Db {
    let at = match gw.database_url() {
        Some(url) => Location::Postgres {
            url: url.to_string(),
            password: Some(deploy::artifacts::Secret::new(pg::password())),
        },
        None => Location::Sqlite(gw.dir.path().join("state").join("gateway.db")),
    };
    Db::open(&at).unwrap()
}

fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < end,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The job's `notified` events: (notice, attempt, ok).
fn notified(gw: &Gateway, token: &str, job: &str) -> Vec<(String, u64, bool)> {
    let (status, _, body) = gw.http("GET", &format!("/v1/jobs/{job}/log"), Some(token), None);
    assert_eq!(status, 200, "{body}");
    let log: Vec<Value> = serde_json::from_str(&body).unwrap();
    let mut out: Vec<_> = (log.iter().map(|e| &e["event"]))
        .filter(|e| e["type"] == "notified")
        .map(|e| {
            let notice = e["event"].as_str().unwrap_or_default().to_string();
            (notice, e["attempt"].as_u64().unwrap_or(0), e["ok"] == true)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_notice_pending_when_its_gateway_is_killed_reaches_the_receiver_after_the_restart_with_its_key()
{
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // nobody listens there yet
    // A retry 6 s after a failure: the kill comes well before it.
    let notify = format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
         secret_env = \"HOOK_KEY\"\nretry_ms = 6000\n"
    );
    let mut gw = Gateway::start_opts(
        None,
        GatewayOpts {
            sources: Some(notify),
            env: vec![("HOOK_KEY".into(), HOOK_KEY.into())],
            ..GatewayOpts::default()
        },
    );
    let token = gw.token("admin", "", true);
    let job = gw.start_deploy(&token); // its host is on a closed port: it fails at once
    let store = store_of(&gw);
    wait_until(60, "both notices' first attempts recorded", || {
        let rows = store.deliveries(&job).unwrap();
        rows.len() == 2
            && rows
                .iter()
                .all(|d| d.attempts == 1 && d.claimed_by.is_none())
    });
    let rows = store.deliveries(&job).unwrap();
    for d in &rows {
        assert_eq!(d.state, DeliveryState::Pending, "{d:?}");
        let e = d.last_error.as_deref().unwrap_or_default();
        assert!(!e.is_empty() && !e.contains(HOOK_KEY), "{d:?}");
    }
    assert_eq!(gw.job_state(&token, &job), "failed");
    wait_until(10, "the first attempts' events", || {
        notified(&gw, &token, &job).len() == 2
    });
    gw.kill();

    let seen = receiver_on(port);
    gw.restart();
    wait_until(60, "both notices delivered after the restart", || {
        let rows = store.deliveries(&job).unwrap();
        rows.iter().all(|d| d.state == DeliveryState::Delivered)
    });
    std::thread::sleep(Duration::from_secs(2)); // any repeat would come now
    let seen = seen.lock().unwrap().clone();
    let keys: Vec<&str> = rows.iter().map(|d| d.id.as_str()).collect();
    let route = rows[0].route.clone();
    for notice in ["started", "failed"] {
        let key = format!("{job}.{notice}.{route}");
        assert!(keys.contains(&key.as_str()), "{key} in {keys:?}");
        let got: Vec<_> = seen.iter().filter(|s| s.1 == key).collect();
        // At least once; here exactly once (the first attempts never reached it), and
        // any repeat would carry the same key.
        assert_eq!(got.len(), 1, "{notice}: {seen:?}");
        let (idempotency, _, event, body) = got[0];
        assert_eq!(idempotency, &format!("\"{key}\""));
        assert_eq!(event, &format!("job.{notice}"));
        assert_eq!(
            (body["delivery"].as_str(), body["job_id"].as_str()),
            (Some(key.as_str()), Some(job.as_str()))
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Every attempt is in the job's story, the second ones stored by the new process.
    let events = notified(&gw, &token, &job);
    let want = [
        ("job.failed".to_string(), 1, false),
        ("job.failed".to_string(), 2, true),
        ("job.started".to_string(), 1, false),
        ("job.started".to_string(), 2, true),
    ];
    assert_eq!(events, want);
    let dump = String::from_utf8_lossy(&gw.db_bytes()).into_owned();
    assert!(
        !dump.contains(HOOK_KEY) && !gw.log().contains(HOOK_KEY),
        "a secret leaked"
    );
}

/// A job its gateway dies in gets an end notice too: the restarted gateway marks it
/// interrupted and writes its `failed` notice (the job ended without its work done),
/// which reaches the receiver once, with its key.  Before, only jobs that ended in
/// their own process were notified.
#[test]
fn a_job_interrupted_by_its_gateways_death_gets_its_end_notice_after_the_restart() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let seen = receiver_on(port);
    let notify = format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
         secret_env = \"HOOK_KEY\"\n"
    );
    let mut gw = Gateway::start_opts(
        None,
        GatewayOpts {
            sources: Some(notify),
            env: vec![("HOOK_KEY".into(), HOOK_KEY.into())],
            ..GatewayOpts::default()
        },
    );
    // The host never answers SSH: the job waits in its connect (10 s) when it is killed.
    let (_silent, ssh_port) = support::silent_listener();
    gw.set_inventory(&support::inventory_on_port(ssh_port));
    let token = gw.token("admin", "", true);
    let job = gw.start_deploy(&token);
    let key = |notice: &str| {
        let seen = seen.lock().unwrap();
        (seen.iter())
            .filter(|s| s.3["job_id"] == job.as_str() && s.3["event"] == notice)
            .count()
    };
    wait_until(20, "the started notice", || key("job.started") == 1);
    assert_eq!(gw.job_state(&token, &job), "running");
    gw.kill();
    gw.restart();
    assert_eq!(gw.job_state(&token, &job), "interrupted");
    wait_until(30, "the interrupted job's end notice", || {
        key("job.failed") == 1
    });
    std::thread::sleep(Duration::from_secs(2)); // any repeat would come now
    assert_eq!((key("job.started"), key("job.failed")), (1, 1));
    let seen = seen.lock().unwrap().clone();
    let end = (seen.iter())
        .find(|s| s.3["event"] == "job.failed")
        .unwrap();
    assert!(end.0.starts_with(&format!("\"{job}.failed.")), "{end:?}");
}
