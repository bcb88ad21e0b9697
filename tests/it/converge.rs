//! Hosts converge (issue 25, item 6), on real containers: a slot that runs without
//! being live (as an interrupted job leaves it) and a live slot stopped by hand (nginx
//! answers 502) are flagged by `deploy status --live` (`!!` lines, exit 9) and by the
//! dashboard's "Check the hosts"; the next deploy stops the leftover and says so, and
//! then nothing is flagged.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::*;

/// `deploy status hello -e staging --live`.
fn status_live(gw: &Gateway, token: &str) -> CliRun {
    gw.run(Some(token), &["status", "hello", "-e", "staging", "--live"])
}

/// One raw HTTP/1.0 exchange with the gateway: (head, body).
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

/// The dashboard's matrix after "Check the hosts" (`/ui/?live=1`), signed in as `token`.
fn checked_matrix(gw: &Gateway, token: &str) -> String {
    let form = format!("token={token}&next=%2Fui%2F");
    let (head, _) = raw(
        gw,
        &format!(
            "POST /ui/sign-in HTTP/1.0\r\nHost: {{addr}}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    let cookie = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(": ")?;
            name.eq_ignore_ascii_case("set-cookie").then_some(value)
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session: {head}"))
        .to_string();
    let (head, body) = raw(
        gw,
        &format!("GET /ui/?live=1 HTTP/1.0\r\nHost: {{addr}}\r\nCookie: {cookie}\r\n\r\n"),
    );
    assert!(head.starts_with("HTTP/1.0 200"), "{head}\n{body}");
    body
}

#[test]
fn status_live_flags_a_leftover_and_a_dead_live_slot_and_the_next_deploy_stops_the_leftover() {
    let tb = Testbed::up("converge", 2);
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    for v in ["1.0.0", "1.1.0"] {
        let r = gw.run(Some(&ann), &["release", "hello", v, "-e", "staging"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let r = status_live(&gw, &ann);
    assert_eq!(r.code, 0, "nothing to flag after two clean deploys: {r:?}");
    assert!(!r.stdout.contains("!!"), "{}", r.stdout);
    // Both hosts serve 1.1.0 from green.  web1: blue (1.0.0) runs again, as a job
    // interrupted after its switch leaves it.  web2: its live slot is stopped by hand.
    let (web1, web2) = (&tb.servers[0], &tb.servers[1]);
    exec(&web1.container, "supervisorctl start hello-blue");
    exec(&web2.container, "supervisorctl stop hello-green");
    let (status, body) = http_get(web2.http_port, HOST, "/");
    assert_eq!(status, 502, "{body}");

    let r = status_live(&gw, &ann);
    assert_eq!(r.code, 9, "{r:?}");
    let flags: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("!!")).collect();
    eprintln!("{}", r.stdout);
    let row = |host: &str| {
        flags
            .iter()
            .any(|l| l.starts_with("!! staging") && l.contains(&format!(" {host} ")))
    };
    assert!(row("web1") && row("web2"), "{}", r.stdout);
    assert!(
        flags
            .iter()
            .any(|l| l.starts_with("!!   slot blue runs 1.0.0 (pid ")
                && l.contains("but is not live: left running by an interrupted job")),
        "{}",
        r.stdout
    );
    assert!(
        flags.iter().any(|l| l
            .starts_with("!!   the live slot green (1.1.0) fails its health check: GET /healthz")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l == "!! 2 of 2 host(s) need a look"),
        "{}",
        r.stdout
    );
    // `--json` exits the same way and carries the same words.
    let j = gw.run(
        Some(&ann),
        &["--json", "status", "hello", "-e", "staging", "--live"],
    );
    assert_eq!(j.code, 9, "{j:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&j.stdout).unwrap();
    let w2 = rows.iter().find(|h| h["host"] == "web2").unwrap();
    assert_eq!(w2["observed"]["health"]["ok"], false, "{w2}");
    assert_eq!(w2["flags"].as_array().map(Vec::len), Some(1), "{w2}");
    // The dashboard's "Check the hosts" shows the same flags.
    let page = checked_matrix(&gw, &ann);
    // Each host's cell: flagged, and how its live slot answered (web2's does not).
    let cell = |host: &str| -> String {
        let tags = page.split("<span class=\"cell").skip(1);
        let mine = tags.map(|t| t.split('>').next().unwrap_or_default().to_string());
        (mine.into_iter())
            .find(|t| t.contains(&format!("data-host=\"{host}\"")))
            .unwrap_or_else(|| panic!("no cell for {host}: {page}"))
    };
    for host in ["web1", "web2"] {
        assert!(cell(host).contains(" flagged"), "{host}: {}", cell(host));
    }
    assert!(cell("web1").contains("health-healthy"), "{}", cell("web1"));
    assert!(
        cell("web2").contains("health-unhealthy"),
        "{}",
        cell("web2")
    );
    assert!(
        page.contains("<li class=\"flag\" data-host=\"web1\">!! web1: slot blue runs 1.0.0"),
        "{page}"
    );
    assert!(
        page.contains("<li class=\"flag\" data-host=\"web2\">!! web2: the live slot green (1.1.0) fails its health check"),
        "{page}"
    );

    // The next deploy stops the leftover and says so; web2's release starts again in
    // its idle slot and takes the traffic.
    let r = gw.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    let said: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains("left running by an interrupted job"))
        .collect();
    assert_eq!(said.len(), 1, "{}", r.stdout);
    assert!(
        said[0].contains("web1") && said[0].contains("stopped slot blue (1.0.0)"),
        "{}",
        said[0]
    );
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.1.0", "{}", s.name);
    }
    let running = exec(&web1.container, "supervisorctl status || true");
    assert!(
        running
            .lines()
            .any(|l| l.starts_with("hello-blue") && l.contains("STOPPED")),
        "{running}"
    );
    let r = status_live(&gw, &ann);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("!!"), "{}", r.stdout);
}
