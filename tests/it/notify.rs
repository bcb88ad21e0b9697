//! Notifications over real HTTP: a receiver in this process (a signed webhook that
//! checks the HMAC, a Slack-shaped hook, a JIRA stub with auth and unknown issues, a
//! flaky route), routes parsed from `[[notify]]` TOML, and the outbox's retries (of
//! what may go away: no answer, a 5xx; never of a refusal: a 4xx is asked once), on a
//! store in memory.  Then the outbox across a gateway's restart, as real processes
//! (`notify_outbox.rs`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use deploy::gateway::notices::{Payload, PayloadCommit};
use deploy::gateway::outbox::Outbox;
use deploy::gateway::store::{Db, DeliveryState, NewDelivery};
use deploy::githost::Commit;
use deploy::notify::fake::notice;
use deploy::notify::{DeliveryOutcome, Notice, NoticeKind, Report, Retry, hmac, parse};
use serde_json::{Value, json};

const HOOK_KEY: &str = "hook-K3Y-shared";
const SLACK_SECRET: &str = "T0001/B0001/SLACKSECRETxyz";
const JIRA_USER: &str = "bot@acme.com";
const JIRA_TOKEN: &str = "JIRA-T0KEN-123";
const SECRETS: [&str; 3] = [HOOK_KEY, SLACK_SECRET, JIRA_TOKEN];

#[derive(Default)]
struct Seen {
    /// (X-Deploy-Event, X-Deploy-Delivery, body) of each verified webhook delivery.
    hooks: Vec<(String, String, Value)>,
    /// The `Idempotency-Key` of each.
    keys: Vec<String>,
    bad_signatures: u32,
    slack: Vec<Value>,
    /// (issue key, body) of each comment made.
    comments: Vec<(String, Value)>,
    flaky_calls: u32,
}

type Shared = Arc<Mutex<Seen>>;

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn hook(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> StatusCode {
    let sig = header(&h, "x-deploy-signature");
    let mut seen = s.lock().unwrap();
    if !hmac::verify(HOOK_KEY.as_bytes(), &body, &sig) {
        seen.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let (event, delivery) = (
        header(&h, "x-deploy-event"),
        header(&h, "x-deploy-delivery"),
    );
    seen.keys.push(header(&h, "idempotency-key"));
    seen.hooks.push((event, delivery, json));
    StatusCode::NO_CONTENT
}

async fn flaky(State(s): State<Shared>) -> (StatusCode, &'static str) {
    let mut seen = s.lock().unwrap();
    seen.flaky_calls += 1;
    if seen.flaky_calls == 1 {
        (StatusCode::INTERNAL_SERVER_ERROR, "oops\nstack trace here")
    } else {
        (StatusCode::OK, "thanks")
    }
}

async fn slack(
    State(s): State<Shared>,
    UrlPath(rest): UrlPath<String>,
    body: Bytes,
) -> (StatusCode, String) {
    if rest != format!("services/{SLACK_SECRET}") {
        // Like a careless server: the error echoes the path (the secret).
        return (StatusCode::NOT_FOUND, format!("no_service: /slack/{rest}"));
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v["text"].is_string() => {
            s.lock().unwrap().slack.push(v);
            (StatusCode::OK, "ok".into())
        }
        _ => (StatusCode::BAD_REQUEST, "invalid_payload".into()),
    }
}

fn jira_error(status: StatusCode, message: &str) -> (StatusCode, String) {
    let body = json!({"errorMessages": [message], "errors": {}});
    (status, body.to_string())
}

async fn jira(
    State(s): State<Shared>,
    UrlPath(key): UrlPath<String>,
    h: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let basic = format!(
        "Basic {}",
        base64(format!("{JIRA_USER}:{JIRA_TOKEN}").as_bytes())
    );
    if header(&h, "authorization") != basic {
        return jira_error(StatusCode::UNAUTHORIZED, "You are not authenticated.");
    }
    if key != "ACME-12" {
        return jira_error(StatusCode::NOT_FOUND, "Issue Does Not Exist");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return jira_error(StatusCode::BAD_REQUEST, "bad JSON");
    };
    s.lock().unwrap().comments.push((key, v));
    (StatusCode::CREATED, json!({"id": "10000"}).to_string())
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Starts the receiver; returns its base URL and what it saw.
async fn receiver() -> (String, Shared) {
    let seen = Shared::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/flaky", post(flaky))
        .route("/slack/{*rest}", post(slack))
        .route("/rest/api/2/issue/{key}/comment", post(jira))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}"), seen)
}

/// A directory with the secrets in files.
fn secrets_dir(base: &str, jira_token: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let slack_url = format!("{base}/slack/services/{SLACK_SECRET}\n");
    std::fs::write(d.path().join("hook-key"), format!("{HOOK_KEY}\n")).unwrap();
    std::fs::write(d.path().join("slack-url"), slack_url).unwrap();
    std::fs::write(d.path().join("jira-token"), jira_token).unwrap();
    d
}

/// An outbox on a store in memory, over the routes of `toml_text`, each with `retry`.
struct Sender {
    outbox: Arc<Outbox>,
    db: Db,
}

fn dispatcher(toml_text: &str, dir: &Path, retry: Retry, report: Report) -> Sender {
    let value: toml::Value = toml::from_str(toml_text).unwrap();
    let mut routes = parse(&value, dir).unwrap();
    for r in &mut routes {
        r.retry = retry;
    }
    let db = Db::in_memory().unwrap();
    let outbox = Arc::new(Outbox::new(db.clone(), routes, "test", report));
    Sender { outbox, db }
}

fn quick(attempts: u32, base_ms: u64) -> Retry {
    Retry {
        attempts,
        base_delay: Duration::from_millis(base_ms),
        max_delay: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
    }
}

type Outcomes = Arc<Mutex<Vec<(Instant, DeliveryOutcome)>>>;

fn collector() -> (Report, Outcomes) {
    let seen = Outcomes::default();
    let s = seen.clone();
    (
        Arc::new(move |o| s.lock().unwrap().push((Instant::now(), o))),
        seen,
    )
}

/// Writes `notice`'s deliveries to the outbox, one per route whose filter takes it (as
/// the gateway does when a job starts or ends); returns at once.
fn enqueue(d: &Sender, notice: &Notice) {
    let payload = Payload {
        event: notice.event.name().into(),
        job_id: notice.job_id.clone(),
        job_kind: notice.job_kind.clone(),
        app: notice.app.clone(),
        env: notice.env.clone(),
        version: notice.version.clone(),
        user: notice.user.clone(),
        started_ms: notice.started_ms,
        ts_ms: notice.ts_ms,
        before: None,
        commits: Some(
            (notice.commits.iter())
                .map(|c| PayloadCommit {
                    id: c.id.clone(),
                    author: c.author.clone(),
                    subject: c.subject.clone(),
                })
                .collect(),
        ),
    };
    let text = serde_json::to_string(&payload).unwrap();
    let rows: Vec<_> = (d.outbox.routes().iter())
        .filter(|r| r.filter.matches(notice))
        .map(|r| NewDelivery {
            id: payload.key(&r.id),
            job_id: notice.job_id.clone(),
            notice: payload.event.clone(),
            route: r.id.clone(),
            payload: text.clone(),
            due_ms: 0,
        })
        .collect();
    d.db.add_deliveries(&rows).unwrap();
}

/// Sends `notice` and waits until every delivery of its job has ended.
async fn run(d: &Sender, notice: Notice) {
    enqueue(d, &notice);
    drain(d, &notice.job_id).await;
}

async fn drain(d: &Sender, job: &str) {
    let start = Instant::now();
    loop {
        for h in d.outbox.pass().await.unwrap() {
            h.await.unwrap();
        }
        let rows = d.db.deliveries(job).unwrap();
        if rows.iter().all(|r| r.state != DeliveryState::Pending) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{rows:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn outcomes(o: &Outcomes) -> Vec<DeliveryOutcome> {
    o.lock().unwrap().iter().map(|(_, o)| o.clone()).collect()
}

fn assert_no_secret(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "a secret leaked: {text}");
    }
}

fn commits() -> Vec<Commit> {
    let c = |id: &str, subject: &str| Commit {
        id: id.into(),
        author: "Bob".into(),
        subject: subject.into(),
    };
    vec![
        c("c2c2c2c2c2c2", "ACME-12: faster index"),
        c("c1c1c1c1c1c1", "chore: bump deps"),
    ]
}

/// The sample notice's line.
fn line(what: &str) -> String {
    format!("deploy: hello 1.2.0 to staging by alice {what} (job abc)")
}

fn all_three(base: &str) -> String {
    format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{base}/hook\"\nsecret_file = \"hook-key\"\n\
         [[notify]]\nkind = \"slack\"\nurl_file = \"slack-url\"\n\
         [[notify]]\nkind = \"jira\"\nurl = \"{base}\"\nuser = \"{JIRA_USER}\"\ntoken_file = \"jira-token\"\n"
    )
}

#[tokio::test]
async fn every_event_reaches_the_webhook_and_slack_and_ends_reach_jira() {
    let (base, seen) = receiver().await;
    let dir = secrets_dir(&base, JIRA_TOKEN);
    let (report, got) = collector();
    let d = dispatcher(&all_three(&base), dir.path(), quick(2, 10), report);
    for event in NoticeKind::ALL {
        run(&d, notice(event, commits())).await;
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.bad_signatures, 0);
    let events: Vec<_> = seen
        .hooks
        .iter()
        .map(|(e, _, b)| (e.as_str(), b["state"].clone()))
        .collect();
    let want = [
        ("job.started", "running"),
        ("job.succeeded", "succeeded"),
        ("job.failed", "failed"),
        ("job.cancelled", "cancelled"),
    ];
    assert_eq!(events, want.map(|(e, s)| (e, json!(s))));
    let hook = d.outbox.routes()[0].id.clone();
    assert!(hook.starts_with("webhook-"), "{hook}");
    for ((event, delivery, body), key) in seen.hooks.iter().zip(&seen.keys) {
        assert_eq!(
            (&body["event"], &body["delivery"]),
            (&json!(event), &json!(delivery))
        );
        // The idempotency key: the job, the notice, the route; the IETF draft's header
        // is a Structured Field String (quoted).
        let state = event.trim_start_matches("job.");
        assert_eq!(delivery, &format!("abc.{state}.{hook}"));
        assert_eq!(key, &format!("\"{delivery}\""));
        assert_eq!(body["commits"][0]["subject"], "ACME-12: faster index");
    }
    assert_ne!(seen.hooks[0].1, seen.hooks[1].1);
    let texts: Vec<_> = seen.slack.iter().map(|v| v["text"].clone()).collect();
    assert_eq!(texts[1], line("succeeded"));
    assert_eq!(texts[3], line("was cancelled"));
    // JIRA: one comment per end (succeeded, failed; not started nor cancelled), on the
    // issue the commit names.
    let comments: Vec<_> = seen
        .comments
        .iter()
        .map(|(k, c)| (k.as_str(), c["body"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(comments.len(), 2);
    let ((key, first), (_, second)) = (comments[0], comments[1]);
    assert_eq!(key, "ACME-12");
    assert!(first.starts_with(&format!("{}\nCommits:", line("succeeded"))));
    assert!(first.contains("c2c2c2c2c2 ACME-12: faster index (Bob)"));
    assert!(second.starts_with(&line("failed")));
    let outs = outcomes(&got);
    assert_eq!(outs.len(), 10);
    assert!(
        outs.iter()
            .all(|o| o.ok && o.attempt == 1 && o.error.is_none())
    );
    assert_no_secret(&format!("{outs:?} {:?}", d.outbox.routes()));
}

#[tokio::test]
async fn a_webhook_signed_with_another_key_is_refused_by_the_receiver_once() {
    let (base, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k"), "not-the-shared-key").unwrap();
    let text =
        format!("[[notify]]\nkind = \"webhook\"\nurl = \"{base}/hook\"\nsecret_file = \"k\"\n");
    let (report, got) = collector();
    let d = dispatcher(&text, dir.path(), quick(2, 5), report);
    run(&d, notice(NoticeKind::Started, vec![])).await;
    let outs = outcomes(&got);
    // A 401 is permanent: not retried, although two attempts were allowed.
    assert_eq!(outs.iter().map(|o| o.ok).collect::<Vec<_>>(), [false]);
    assert_eq!(outs[0].error.as_deref(), Some("answered 401 Unauthorized"));
    assert_eq!((outs[0].attempts, outs[0].retry_in), (2, None));
    assert!(!format!("{outs:?}").contains("not-the-shared-key"));
    assert_eq!(seen.lock().unwrap().bad_signatures, 1);
}

#[tokio::test]
async fn jira_refuses_bad_credentials_and_unknown_issues() {
    let (base, seen) = receiver().await;
    let jira_only = |base: &str| {
        format!(
            "[[notify]]\nkind = \"jira\"\nurl = \"{base}/\"\nuser = \"{JIRA_USER}\"\ntoken_file = \"jira-token\"\n"
        )
    };
    // A wrong token: 401, not retried (permanent), the token in no outcome.
    let dir = secrets_dir(&base, "wrong-T0KEN");
    let (report, got) = collector();
    let d = dispatcher(&jira_only(&base), dir.path(), quick(2, 5), report);
    run(&d, notice(NoticeKind::Failed, commits())).await;
    let outs = outcomes(&got);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].retry_in, None);
    let e = outs[0].error.as_deref().unwrap();
    assert!(
        e.starts_with("ACME-12: answered 401 Unauthorized: {\"errorMessages\""),
        "{e}"
    );
    assert!(!format!("{outs:?}").contains("wrong-T0KEN"));

    // The right token: ACME-12 is commented once; ACME-99 (unknown: 404, permanent)
    // fails, and the notice is not retried for it.
    let dir = secrets_dir(&base, JIRA_TOKEN);
    let (report, got) = collector();
    let d = dispatcher(&jira_only(&base), dir.path(), quick(3, 5), report);
    let mut cs = commits();
    cs.push(Commit {
        id: "c0".into(),
        author: "Eve".into(),
        subject: "ACME-99 ACME-12 follow-up".into(),
    });
    run(&d, notice(NoticeKind::Succeeded, cs)).await;
    let outs = outcomes(&got);
    assert_eq!(outs.iter().map(|o| o.ok).collect::<Vec<_>>(), [false]);
    assert_eq!(
        outs[0].error.as_deref(),
        Some(
            "ACME-99: answered 404 Not Found: {\"errorMessages\":[\"Issue Does Not Exist\"],\"errors\":{}}"
        )
    );
    assert_eq!(seen.lock().unwrap().comments.len(), 1);
    assert_no_secret(&format!("{outs:?}"));
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_every_attempt_reported_with_growing_delays() {
    // A port nobody listens on.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let dir = secrets_dir("http://127.0.0.1:1", JIRA_TOKEN);
    let text = format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"hook-key\"\n\
         [[notify]]\nkind = \"slack\"\nurl_file = \"slack-url\"\n"
    );
    let (report, got) = collector();
    let d = dispatcher(&text, dir.path(), quick(4, 40), report);
    let started = Instant::now();
    enqueue(&d, &notice(NoticeKind::Started, vec![]));
    // Nothing was sent inline: writing a notice only writes rows.
    assert!(got.lock().unwrap().is_empty(), "writing must not send");
    assert!(started.elapsed() < Duration::from_millis(200));
    drain(&d, "abc").await;
    let all = got.lock().unwrap().clone();
    assert_eq!(all.len(), 8);
    for name in [
        format!("webhook (127.0.0.1:{port})"),
        "slack (127.0.0.1:1)".to_string(),
    ] {
        let mine: Vec<_> = all.iter().filter(|(_, o)| o.notifier == name).collect();
        let attempts: Vec<_> = mine.iter().map(|(_, o)| (o.attempt, o.ok)).collect();
        assert_eq!(
            attempts,
            [(1, false), (2, false), (3, false), (4, false)],
            "{name}"
        );
        let waits: Vec<_> = mine
            .iter()
            .map(|(_, o)| o.retry_in.map(|d| d.as_millis()))
            .collect();
        assert_eq!(waits, [Some(40), Some(80), Some(160), None]);
        for (pair, want) in mine.windows(2).zip([40, 80, 160]) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap >= Duration::from_millis(want),
                "{name}: {gap:?} < {want} ms"
            );
        }
        assert!(
            mine.iter()
                .all(|(_, o)| o.error.as_ref().is_some_and(|e| !e.is_empty()))
        );
    }
    assert_no_secret(&format!("{all:?}"));
}

#[tokio::test]
async fn a_500_then_a_200_is_attempt_1_failed_attempt_2_ok() {
    let (base, seen) = receiver().await;
    let dir = secrets_dir(&base, JIRA_TOKEN);
    let text = format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{base}/flaky\"\nsecret_file = \"hook-key\"\n"
    );
    let (report, got) = collector();
    let d = dispatcher(&text, dir.path(), quick(4, 10), report);
    run(&d, notice(NoticeKind::Succeeded, vec![])).await;
    let outs = outcomes(&got);
    let summary: Vec<_> = outs.iter().map(|o| (o.attempt, o.ok)).collect();
    assert_eq!(summary, [(1, false), (2, true)]);
    let e = outs[0].error.as_deref();
    assert_eq!(e, Some("answered 500 Internal Server Error: oops"));
    assert_eq!(outs[1].error, None);
    assert_eq!(outs[0].delivery, outs[1].delivery);
    assert_eq!(seen.lock().unwrap().flaky_calls, 2);
}

#[tokio::test]
async fn a_slack_error_that_echoes_the_url_is_scrubbed() {
    let (base, _) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/slack/hooks/{SLACK_SECRET}");
    std::fs::write(dir.path().join("slack-url"), &url).unwrap();
    let (report, got) = collector();
    let d = dispatcher(
        "[[notify]]\nkind = \"slack\"\nurl_file = \"slack-url\"\n",
        dir.path(),
        quick(1, 1),
        report,
    );
    assert_eq!(d.outbox.routes()[0].notifier.secrets()[0].expose(), url);
    run(&d, notice(NoticeKind::Failed, vec![])).await;
    let outs = outcomes(&got);
    assert_eq!(
        outs[0].error.as_deref(),
        Some("answered 404 Not Found: no_service: ***")
    );
    assert_no_secret(&format!("{outs:?}"));
}
