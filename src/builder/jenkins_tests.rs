//! Tests of the Jenkins builder's parsing (crumbs, queue items, progressive console,
//! builds), its paths and cookies, its errors (one line, no token, what is retryable).

use super::*;
use crate::builder::jenkins_api::BuildJson;
use reqwest::header::{HeaderMap, HeaderValue};

#[test]
fn crumbs_parse_and_empty_ones_are_refused() {
    let body = r#"{"_class":"hudson.security.csrf.DefaultCrumbIssuer","crumb":"ab12","crumbRequestField":"Jenkins-Crumb"}"#;
    assert_eq!(
        parse_crumb(body),
        Ok(("Jenkins-Crumb".to_string(), "ab12".to_string()))
    );
    assert!(parse_crumb(r#"{"crumb":"","crumbRequestField":"X"}"#).is_err());
    assert!(parse_crumb("<html>").is_err());
}

#[test]
fn queue_items_wait_start_or_are_cancelled() {
    let waiting = r#"{"_class":"hudson.model.Queue$WaitingItem","id":7,"why":"In the quiet period","executable":null}"#;
    assert_eq!(parse_queue_item(waiting), Ok(QueueState::Waiting));
    let started = r#"{"_class":"hudson.model.Queue$LeftItem","id":7,"cancelled":false,
        "executable":{"_class":"hudson.model.FreeStyleBuild","number":42,"url":"http://ci/job/app/42/"}}"#;
    assert_eq!(
        parse_queue_item(started),
        Ok(QueueState::Started(BuildRef {
            number: "42".into(),
            url: "http://ci/job/app/42/".into()
        }))
    );
    let cancelled =
        r#"{"_class":"hudson.model.Queue$LeftItem","id":7,"cancelled":true,"executable":null}"#;
    assert_eq!(parse_queue_item(cancelled), Ok(QueueState::Cancelled(None)));
    assert!(parse_queue_item("[]").is_err());
    assert!(parse_queue_item("<html>").is_err());
}

#[test]
fn progressive_headers_give_the_next_offset_and_whether_more_comes() {
    let mut h = HeaderMap::new();
    h.insert("X-Text-Size", HeaderValue::from_static("1234"));
    h.insert("X-More-Data", HeaderValue::from_static("true"));
    assert_eq!(progressive(&h, 1000, 234), (1234, true));
    h.remove("X-More-Data");
    assert_eq!(progressive(&h, 1000, 234), (1234, false));
    assert_eq!(progressive(&HeaderMap::new(), 10, 5), (15, false));
}

#[test]
fn build_results_map_to_states_with_artifacts_on_success() {
    let ok = r#"{"building":false,"result":"SUCCESS","url":"http://ci/job/a/3/",
        "artifacts":[{"displayPath":"x","fileName":"hello_app-1.0.0-py3-none-any.whl","relativePath":"dist/hello_app-1.0.0-py3-none-any.whl"}]}"#;
    let (s, a) = parse_build(ok).map(BuildJson::outcome).unwrap();
    assert_eq!(s, BuildState::Succeeded);
    assert_eq!(a, ["hello_app-1.0.0-py3-none-any.whl"]);
    let running = r#"{"building":true,"result":null,"artifacts":[]}"#;
    assert_eq!(
        parse_build(running).map(BuildJson::outcome).unwrap().0,
        BuildState::Running
    );
    for r in ["FAILURE", "ABORTED", "UNSTABLE"] {
        let body = format!(r#"{{"building":false,"result":"{r}"}}"#);
        let (s, a) = parse_build(&body).map(BuildJson::outcome).unwrap();
        assert_eq!(s, BuildState::Failed(format!("Jenkins says {r}")));
        assert!(a.is_empty());
    }
    assert!(parse_build("{").is_err());
}

#[test]
fn paths_encode_jobs_and_queue_locations_parse() {
    assert_eq!(job_path("hello app"), "/job/hello%20app");
    assert_eq!(job_path("team/hello"), "/job/team/job/hello");
    assert_eq!(queue_number("http://ci/queue/item/17/"), Some(17));
    assert_eq!(queue_number("http://ci/job/x/"), None);
}

#[test]
fn session_cookies_are_forwarded_without_attributes() {
    let mut h = HeaderMap::new();
    h.append(
        "set-cookie",
        HeaderValue::from_static("JSESSIONID.abc=node01; Path=/; HttpOnly"),
    );
    h.append("set-cookie", HeaderValue::from_static("other=1"));
    assert_eq!(
        session_cookie(&h).as_deref(),
        Some("JSESSIONID.abc=node01; other=1")
    );
    assert_eq!(session_cookie(&HeaderMap::new()), None);
}

#[tokio::test]
async fn an_unreachable_jenkins_is_one_line_naming_the_request() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let j = Jenkins::new(
        format!("http://127.0.0.1:{port}"),
        "svc".into(),
        Secret::new("s3cret-token"),
        BTreeMap::from([("hello".to_string(), "hello-build".to_string())]),
    )
    .unwrap();
    let req = BuildRequest {
        app: "hello".into(),
        commit: "0123abcd".into(),
    };
    let err = j.start(&req).await.unwrap_err();
    assert!(
        err.is_retryable(),
        "nobody listening may be a restart: {err}"
    );
    let e = err.to_string();
    assert!(
        e.starts_with("the CI server: GET /crumbIssuer/api/json: ") && !e.contains("Jenkins"),
        "{e}"
    );
    assert!(
        !e.contains('\n') && !format!("{e} {err:?}").contains("s3cret"),
        "{e}"
    );
}

/// A Jenkins that answers every request with this status line and no body.
async fn answering(status: &'static str) -> Jenkins {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await;
            let answer =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    let jobs = BTreeMap::from([("hello".to_string(), "hello-build".to_string())]);
    Jenkins::new(
        format!("http://127.0.0.1:{port}"),
        "svc".into(),
        Secret::new("s3cret-token"),
        jobs,
    )
    .unwrap()
}

#[tokio::test]
async fn a_busy_jenkins_is_retryable_and_a_refusal_or_unknown_build_is_not() {
    let req = |app: &str| BuildRequest {
        app: app.into(),
        commit: "0123abcd".into(),
    };
    for busy in [
        "503 Service Unavailable",
        "502 Bad Gateway",
        "429 Too Many Requests",
    ] {
        let e = answering(busy)
            .await
            .start(&req("hello"))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{busy}: {e}");
        assert!(
            e.to_string()
                .ends_with(&format!("GET /crumbIssuer/api/json answered {busy}"))
        );
    }
    let j = answering("401 Unauthorized").await;
    let e = j.start(&req("hello")).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(
        e.to_string()
            .ends_with("answered 401 Unauthorized (the user or API token is wrong)")
    );
    let e = j.start(&req("other")).await.unwrap_err();
    assert!(
        !e.is_retryable() && e.to_string().contains("no job for app other"),
        "{e}"
    );
    // An id that does not name its job cannot be followed (by any process).
    let e = j.poll("http://nowhere/queue/item/1/", 0).await.unwrap_err();
    assert!(
        !e.is_retryable() && e.to_string().contains("is not a build id of this builder"),
        "{e}"
    );
    let Err(e) = parse_build("<html>") else {
        panic!("parsed <html> as a build")
    };
    assert!(
        !e.is_retryable() && e.to_string().starts_with("not a build: "),
        "{e}"
    );
}

#[test]
fn the_token_stays_out_of_debug_and_needs_a_job() {
    let j = Jenkins::new(
        "http://ci.example/".into(),
        "svc".into(),
        Secret::new("s3cret-token"),
        BTreeMap::new(),
    )
    .unwrap();
    assert!(!format!("{j:?} {}", j.describe()).contains("s3cret"));
    assert!(Jenkins::new("ci".into(), "u".into(), Secret::new("t"), BTreeMap::new()).is_err());
}

#[test]
fn a_console_chunk_is_passed_on_to_its_last_newline_until_the_build_ends() {
    use super::super::jenkins_api::usable;
    // Cut in a line: the line waits for its end.
    assert_eq!(usable(b"one\ntw", true), 4);
    // Cut in a character of a line longer than the chunk: up to the whole characters.
    let e_acute = "ab\u{e9}".as_bytes();
    assert_eq!(usable(&e_acute[..3], true), 2);
    assert_eq!(usable(b"no newline yet", true), 14);
    // The build ended: everything.
    assert_eq!(usable(b"one\ntw", false), 6);
    assert_eq!(usable(b"", true), 0);
}
