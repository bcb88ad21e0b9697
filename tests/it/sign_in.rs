//! Sign-in against the real gateway binary (issue 26): failed authentications throttled
//! per client address (429 with `Retry-After`, other addresses untouched: each test client
//! speaks from a loopback address of its own), every failed dashboard sign-in audited,
//! and jobs of environments a token cannot read answered 404 like jobs that do not exist
//! (API, dashboard page and its event stream).

use crate::support::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// One raw HTTP/1.0 request from `source` (127.0.0.x: another client to the gateway):
/// (status, head, body).
fn http_from(
    gw: &Gateway,
    source: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let addr: std::net::SocketAddr = gw.url.trim_start_matches("http://").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
        sock.connect(addr).await.unwrap()
    });
    let mut s = stream.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The audit rows, read by an admin from an address of its own.
fn audit(gw: &Gateway, admin: &str) -> Vec<serde_json::Value> {
    let (status, _, body) = http_from(
        gw,
        "127.0.0.9",
        "GET",
        "/v1/audit?limit=1000",
        &[("Authorization", &bearer(admin))],
        "",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn fifty_bad_tokens_in_a_second_are_throttled_with_429_and_other_clients_are_not() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let admin = gw.token("root", "", true);
    let t0 = Instant::now();
    let mut statuses = Vec::new();
    let mut last = String::new();
    for i in 0..50 {
        let bad = bearer(&format!("dpl_0_bogus{i}"));
        let (status, head, _) = http_from(
            &gw,
            "127.0.0.2",
            "GET",
            "/v1/apps",
            &[("Authorization", &bad)],
            "",
        );
        statuses.push(status);
        last = head;
    }
    let took = t0.elapsed();
    println!("50 bad tokens in {took:?}: {statuses:?}");
    // The default: 10 failures at once, then 10 a minute.
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(throttled >= 38, "{statuses:?} in {took:?}");
    let wait: u64 = header(&last, "retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&wait), "{last}");
    // The throttled address is refused before its token is looked at, even a valid one.
    let (status, _, body) = http_from(
        &gw,
        "127.0.0.2",
        "GET",
        "/v1/apps",
        &[("Authorization", &bearer(&ann))],
        "",
    );
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("\"code\":\"too_many_failures\""), "{body}");
    // Another client: its valid token works, its bad one is a plain 401.
    let (status, _, body) = http_from(
        &gw,
        "127.0.0.3",
        "GET",
        "/v1/apps",
        &[("Authorization", &bearer(&ann))],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let bad = bearer("dpl_0_other");
    let (status, _, _) = http_from(
        &gw,
        "127.0.0.3",
        "GET",
        "/v1/apps",
        &[("Authorization", &bad)],
        "",
    );
    assert_eq!(status, 401);
    // Throttled requests are audited, rate-limited (not one row each).
    let rows = audit(&gw, &admin);
    let throttled_rows = rows
        .iter()
        .filter(|r| r["outcome"] == "refused: too many failed sign-ins")
        .count();
    assert!((1..=2).contains(&throttled_rows), "{rows:?}");
}

#[test]
fn a_throttled_cli_exits_4_and_says_why() {
    let gw = Gateway::start_opts(
        None,
        GatewayOpts {
            sources: Some("[sign_in]\nburst = 2\nper_minute = 1\n".into()),
            ..GatewayOpts::default()
        },
    );
    for want in [4, 4, 4] {
        let r = gw.run(Some("dpl_0_bogus"), &["apps"]);
        assert_eq!(r.code, want, "{r:?}");
    }
    let r = gw.run(Some("dpl_0_bogus"), &["apps"]);
    assert!(r.stderr.contains("too many failed sign-ins"), "{r:?}");
}

#[test]
fn every_failed_dashboard_sign_in_is_audited_and_sign_in_is_throttled_too() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let admin = gw.token("root", "", true);
    let ann = gw.token("ann", "staging", false);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    // An API refusal from the same address first: its audit row used to hide the
    // sign-ins' (one row per source and reason per minute).
    let bad = bearer("dpl_0_api");
    let (status, _, _) = http_from(
        &gw,
        "127.0.0.4",
        "GET",
        "/v1/apps",
        &[("Authorization", &bad)],
        "",
    );
    assert_eq!(status, 401);
    for i in 0..3 {
        let body = format!("token=dpl_0_wrong{i}&next=%2Fui%2F");
        let (status, _, page) = http_from(&gw, "127.0.0.4", "POST", "/ui/sign-in", &form, &body);
        assert_eq!(status, 401, "{page}");
    }
    let rows = audit(&gw, &admin);
    let signins: Vec<_> = rows
        .iter()
        .filter(|r| r["action"] == "sign-in" && r["outcome"] == "refused: unknown or revoked token")
        .collect();
    assert_eq!(signins.len(), 3, "{rows:?}");
    assert!(
        signins
            .iter()
            .all(|r| r["target"] == "dashboard from 127.0.0.4")
    );
    // Past the burst (10 failures with the API's), sign-in is throttled.
    let mut last = (0, String::new());
    for i in 0..8 {
        let body = format!("token=dpl_0_more{i}&next=%2Fui%2F");
        let (status, head, _) = http_from(&gw, "127.0.0.4", "POST", "/ui/sign-in", &form, &body);
        last = (status, head);
    }
    assert_eq!(last.0, 429, "{}", last.1);
    assert!(header(&last.1, "retry-after").is_some(), "{}", last.1);
    // Another address signs in with a valid token.
    let body = format!("token={ann}&next=%2Fui%2F");
    let (status, head, _) = http_from(&gw, "127.0.0.5", "POST", "/ui/sign-in", &form, &body);
    assert_eq!(status, 303, "{head}");
    let rows = audit(&gw, &admin);
    assert!(
        rows.iter()
            .any(|r| r["action"] == "sign-in" && r["user"] == "ann" && r["outcome"] == "ok"),
        "{rows:?}"
    );
}

/// A dashboard session cookie for `token`, signed in from `source`.
fn session(gw: &Gateway, source: &str, token: &str) -> String {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let body = format!("token={token}&next=%2Fui%2F");
    let (status, head, _) = http_from(gw, source, "POST", "/ui/sign-in", &form, &body);
    assert_eq!(status, 303, "{head}");
    let cookie = header(&head, "set-cookie").unwrap();
    cookie.split(';').next().unwrap().to_string()
}

#[test]
fn a_job_of_an_environment_the_token_cannot_read_is_404_like_one_that_does_not_exist() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let admin = gw.token("root", "", true);
    let ann = gw.token("ann", "staging", false);
    let body = r#"{"app":"hello","env":"production","version":"1.0.0"}"#;
    let (status, _, created) = gw.http("POST", "/v1/deployments", Some(&admin), Some(body));
    assert_eq!(status, 202, "{created}");
    let job: serde_json::Value = serde_json::from_str(&created).unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let auth = bearer(&ann);
    let ask = |method: &str, path: &str| {
        let (status, _, body) = http_from(
            &gw,
            "127.0.0.6",
            method,
            path,
            &[("Authorization", &auth)],
            "",
        );
        (status, body)
    };
    for (method, suffix) in [
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/log"),
        ("POST", "/cancel"),
    ] {
        let (status, body) = ask(method, &format!("/v1/jobs/{id}{suffix}"));
        let (none_status, none_body) = ask(method, &format!("/v1/jobs/j0nosuch{suffix}"));
        assert_eq!(
            (status, none_status),
            (404, 404),
            "{suffix}: {body} / {none_body}"
        );
        assert_eq!(
            body.replace(&id, "ID"),
            none_body.replace("j0nosuch", "ID"),
            "{method} {suffix}: the same answer as a job that does not exist"
        );
    }
    let r = gw.run(Some(&ann), &["logs", &id]);
    let none = gw.run(Some(&ann), &["logs", "j0nosuch"]);
    assert_eq!((r.code, none.code), (2, 2), "{r:?} / {none:?}");
    // The dashboard's job page and its live lines.
    let cookie = session(&gw, "127.0.0.6", &ann);
    let page = |path: &str| {
        let (status, _, body) =
            http_from(&gw, "127.0.0.6", "GET", path, &[("Cookie", &cookie)], "");
        (status, body)
    };
    for suffix in ["", "/events", "/log"] {
        let (status, body) = page(&format!("/ui/jobs/{id}{suffix}"));
        assert_eq!(status, 404, "/ui/jobs/ID{suffix}: {body}");
        assert_eq!(page(&format!("/ui/jobs/j0nosuch{suffix}")).0, 404);
    }
    // The admin still reads it.
    let (status, _, _) = gw.http("GET", &format!("/v1/jobs/{id}"), Some(&admin), None);
    assert_eq!(status, 200);
}
