//! Dashboard sessions in the store, as real processes on one PostgreSQL database: a
//! session made by signing in on gateway A is accepted by gateway B, survives A's
//! SIGKILL and restart, and signing out on B ends it on A; the database keeps only the
//! session id's hash.  Plain HTTP with the cookie, no browser.  Before, sessions lived
//! in one gateway's memory: B answered the sign-in page, and so did A after a restart.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::{Gateway, pg};

/// A raw HTTP/1.0 exchange with `gw`: (head, body).
fn raw(gw: &Gateway, request: &str) -> (String, String) {
    let addr = gw.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.replace("{addr}", addr).as_bytes())
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    (head.to_string(), body.to_string())
}

/// Signs in on `gw` with `token`: the session cookie (`deploy_session=...`).
fn sign_in(gw: &Gateway, token: &str) -> String {
    let form = format!("token={token}&next=%2Fui%2F");
    let (head, _) = raw(
        gw,
        &format!(
            "POST /ui/sign-in HTTP/1.0\r\nHost: {{addr}}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    assert!(head.starts_with("HTTP/1.0 303"), "{head}");
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(": ")?;
            name.eq_ignore_ascii_case("set-cookie").then_some(value)
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session: {head}"))
        .to_string()
}

/// The matrix page with `cookie`: (status line, body).
fn page(gw: &Gateway, cookie: &str) -> (String, String) {
    let (head, body) = raw(
        gw,
        &format!("GET /ui/ HTTP/1.0\r\nHost: {{addr}}\r\nCookie: {cookie}\r\n\r\n"),
    );
    (head.lines().next().unwrap_or_default().to_string(), body)
}

fn signed_in_as(gw: &Gateway, cookie: &str, user: &str) -> bool {
    let (status, body) = page(gw, cookie);
    status.starts_with("HTTP/1.0 200")
        && body.contains(&format!("<span id=\"viewer\">{user}</span>"))
}

#[test]
fn a_dashboard_session_made_on_one_gateway_works_on_another_and_survives_a_restart() {
    let db = pg::new_database("sessions");
    let mut a = crate::shared_store::gateway(None, &db, "");
    let b = crate::shared_store::gateway(None, &db, "");
    let token = a.token("ann", "staging", false);
    let cookie = sign_in(&a, &token);
    let id = cookie.trim_start_matches("deploy_session=").to_string();
    assert!(!id.is_empty() && !id.contains(&token), "{cookie}");
    assert!(signed_in_as(&a, &cookie, "ann"));
    assert!(
        signed_in_as(&b, &cookie, "ann"),
        "the other gateway knows the session"
    );
    let (status, body) = page(&b, "deploy_session=made-up");
    assert!(
        status.starts_with("HTTP/1.0 401") && body.contains("id=\"sign-in\""),
        "{status}"
    );

    a.restart(); // SIGKILL, then a new process
    assert!(
        signed_in_as(&a, &cookie, "ann"),
        "a restart signs nobody out"
    );

    // Only the hash of the session id is stored, never the id or the token.
    let dump = String::from_utf8_lossy(&pg::dump(&db)).into_owned();
    let hash = deploy::gateway::auth::hash(&id);
    assert!(dump.contains(&hash), "the session's hash is stored");
    assert!(!dump.contains(&id) && !dump.contains(&token));

    // Signing out through B ends the session everywhere.
    let (head, _) = raw(
        &b,
        &format!(
            "POST /ui/sign-out HTTP/1.0\r\nHost: {{addr}}\r\nCookie: {cookie}\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(head.starts_with("HTTP/1.0 303"), "{head}");
    let (status, body) = page(&a, &cookie);
    assert!(
        status.starts_with("HTTP/1.0 401") && body.contains("id=\"sign-in\""),
        "{status}"
    );
}
