//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven through
//! `chromedriver` (`support::browser`), against a real gateway process.  A live deploy to
//! three containers streams to the job page (each event's delay from its making to the
//! page, measured), survives a reload without a duplicated line, and the matrix then shows
//! the release on every host; a job printing 10,000 lines does not leave the page behind;
//! a staging-only sign-in sees nothing of production; without a session cookie every page
//! is the sign-in page; the token is in no URL, page source or log.  `pages.rs`: what the
//! pages show (order, freezes and windows, unreachable hosts, navigation, summaries);
//! `live.rs`: what changes while a page is open (jobs on the list and the matrix, running
//! times); `follow.rs`: the job log following new lines.
//!
//! Screenshots go to `target/tmp/dashboard/` (`CARGO_TARGET_TMPDIR`): `sign-in.png`,
//! `job-live.png` (a deploy in flight), `matrix.png` (after it), `matrix-drift.png` (a host
//! changed behind the gateway's back, seen by the live check), `job-10k.png`,
//! `staging-only.png`.

mod follow;
mod live;
mod pages;

use crate::support;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::browser::Browser;
use support::{Gateway, Testbed};

/// One browser at a time: a second Chromium would skew the latencies measured.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the token must never be found in: every URL the browser was at and every page
/// source it was shown.
#[derive(Default)]
struct Seen {
    urls: Vec<String>,
    sources: Vec<String>,
}

impl Seen {
    fn look(&mut self, b: &Browser) {
        self.urls.push(b.current_url());
        self.sources.push(b.source());
    }

    fn assert_never(&self, token: &str, gw: &Gateway) {
        for u in &self.urls {
            assert!(!u.contains(token), "the token is in a URL: {u}");
        }
        for s in &self.sources {
            assert!(!s.contains(token), "the token is in a page source");
        }
        assert!(
            !gw.log().contains(token),
            "the token is in the gateway's log"
        );
        println!(
            "token absent from {} URLs, {} page sources and the gateway's log ({} bytes)",
            self.urls.len(),
            self.sources.len(),
            gw.log().len()
        );
    }
}

fn post(gw: &Gateway, path: &str, token: &str, body: Value) -> Value {
    let (status, _, body) = gw.http("POST", path, Some(token), Some(&body.to_string()));
    assert_eq!(status, 202, "{path}: {body}\n{}", gw.log());
    serde_json::from_str(&body).unwrap()
}

fn get(gw: &Gateway, path: &str, token: &str) -> Value {
    let (status, _, body) = gw.http("GET", path, Some(token), None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Signs in through the form; the browser starts on a page that needs a session.
fn sign_in(b: &Browser, gw: &Gateway, token: &str, seen: &mut Seen) {
    b.goto(&format!("{}/ui/", gw.url));
    assert!(
        b.wait_for("#sign-in", Duration::from_secs(10)),
        "{}",
        b.source()
    );
    seen.look(b);
    b.fill("#token", token);
    b.click("#sign-in button");
    assert!(
        b.wait_for("#viewer", Duration::from_secs(10)),
        "not signed in: {}",
        b.source()
    );
    seen.look(b);
}

/// The job page's lines: (seq, event time, when the page showed it (0: came with the
/// page), host, class).
fn page_lines(b: &Browser) -> Vec<(u64, u64, u64, String, String)> {
    let v = b.execute(
        "return Array.from(document.querySelectorAll('#log .ev')).map(e => \
         [Number(e.dataset.seq), Number(e.dataset.ts), Number(e.dataset.shown || 0), \
          e.dataset.host, e.className]);",
        json!([]),
    );
    let row = |r: &Value| {
        (
            r[0].as_u64().unwrap(),
            r[1].as_u64().unwrap(),
            r[2].as_u64().unwrap(),
            r[3].as_str().unwrap().to_string(),
            r[4].as_str().unwrap().to_string(),
        )
    };
    v.as_array().unwrap().iter().map(row).collect()
}

fn state(b: &Browser) -> String {
    b.text("#state").unwrap_or_default()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Delays (page shown - event made) of the lines that arrived live.
fn delays(lines: &[(u64, u64, u64, String, String)]) -> Vec<u64> {
    let mut d: Vec<u64> = lines
        .iter()
        .filter(|l| l.2 > 0)
        .map(|l| l.2.saturating_sub(l.1))
        .collect();
    d.sort();
    d
}

fn no_duplicates(lines: &[(u64, u64, u64, String, String)]) -> Vec<u64> {
    let seqs: Vec<u64> = lines.iter().map(|l| l.0).collect();
    let mut unique = seqs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seqs.len(), "a line shown twice: {seqs:?}");
    assert_eq!(unique, seqs, "lines out of order");
    seqs
}

#[test]
fn a_live_deploy_streams_to_the_job_page_and_a_long_job_keeps_up() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let out = out_dir();
    let tb = Testbed::up("dashboard", 3);
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let root = gw.token("root", "", true);
    let b = Browser::start(&out);
    let mut seen = Seen::default();

    b.goto(&format!("{}/ui/", gw.url));
    b.screenshot(&out.join("sign-in.png"));
    sign_in(&b, &gw, &root, &mut seen);
    let cookies = b.cookies();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "deploy_session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry = session["expiry"].as_u64().expect("the cookie expires");
    assert!(
        expiry > now_s && expiry <= now_s + 8 * 3600 + 60,
        "{session}"
    );

    live_deploy(&tb, &b, &gw, &root, &out, &mut seen);
    ten_thousand_lines(&b, &gw, &root, &out, &mut seen);
    seen.assert_never(&root, &gw);
}

/// A deploy to three hosts, followed live; reloaded mid-job; then the matrix.
fn live_deploy(
    tb: &Testbed,
    b: &Browser,
    gw: &Gateway,
    token: &str,
    out: &std::path::Path,
    seen: &mut Seen,
) {
    let body = json!({"app": "hello", "env": "staging", "version": "1.0.0"});
    let job = post(gw, "/v1/deployments", token, body);
    let id = job["id"].as_str().unwrap().to_string();
    b.goto(&format!("{}/ui/jobs/{id}", gw.url));
    wait_until("live lines", Duration::from_secs(120), || {
        page_lines(b).iter().filter(|l| l.2 > 0).count() >= 5 || state(b) != "running"
    });
    assert_eq!(
        state(b),
        "running",
        "the deploy ended before the page saw it live"
    );
    b.screenshot(&out.join("job-live.png"));
    seen.look(b);
    let before = page_lines(b);
    b.refresh(); // mid-job: the page comes back with what is stored, then live again
    wait_until("the deploy's end", Duration::from_secs(300), || {
        state(b) != "running"
    });
    assert_eq!(state(b), "succeeded", "{}", gw.log());
    seen.look(b);

    let lines = page_lines(b);
    let seqs = no_duplicates(&lines);
    let stored = get(gw, &format!("/v1/jobs/{id}/log"), token);
    let stored: Vec<u64> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs, stored,
        "the page after a reload is not the stored log"
    );
    let mut all = delays(&before);
    all.extend(delays(&lines));
    all.sort();
    for host in ["web1", "web2", "web3"] {
        let live_steps = lines
            .iter()
            .filter(|l| l.2 > 0 && l.3 == host && (l.4.contains("changed") || l.4.contains("ok")))
            .count();
        assert!(live_steps > 0, "{host}: no step result arrived live");
    }
    println!(
        "live deploy: {} lines live ({} before the reload), delay event -> page: median {} ms, p95 {} ms, max {} ms",
        all.len(),
        delays(&before).len(),
        percentile(&all, 0.5),
        percentile(&all, 0.95),
        all.last().unwrap()
    );
    assert!(
        *all.last().unwrap() < 1000,
        "an event took over 1 s to reach the page: {all:?}"
    );
    let host_states = b.texts("#hosts tr.host .state");
    assert_eq!(host_states.len(), 3, "{host_states:?}");
    assert!(
        host_states.iter().all(|s| s == "changed" || s == "ok"),
        "{host_states:?}"
    );

    b.goto(&format!("{}/ui/", gw.url));
    let cells = b.execute(
        "return Array.from(document.querySelectorAll('tr[data-app=hello][data-env=staging] .cell')).map(c => \
         [c.dataset.host, c.dataset.version, c.classList.contains('odd')]);",
        json!([]),
    );
    assert_eq!(
        cells,
        json!([
            ["web1", "1.0.0", false],
            ["web2", "1.0.0", false],
            ["web3", "1.0.0", false]
        ]),
        "{}",
        b.source()
    );
    b.screenshot(&out.join("matrix.png"));
    seen.look(b);

    // Drift: web3's live pointer is changed behind the gateway's back; the record still
    // says 1.0.0, and only the live check (`?live=1`, over SSH) sees the host differ.
    let web3 = tb.server("web3").container.clone();
    support::exec(
        &web3,
        "ln -sfn green@9.9.9.sock /srv/apps/hello/run/live.sock",
    );
    b.goto(&format!("{}/ui/?live=1", gw.url));
    let drift = b.execute(
        "return Array.from(document.querySelectorAll('.cell.drift')).map(c => [c.dataset.host, c.textContent.trim().replace(/\\s+/g, ' ')]);",
        json!([]),
    );
    assert_eq!(
        drift,
        json!([["web3", "web3 1.0.0 (host says 9.9.9) unhealthy"]]),
        "{}",
        b.source()
    );
    // Its live pointer leads nowhere: its health check fails; the others answer theirs.
    let health = b.execute(
        "return Array.from(document.querySelectorAll('tr[data-env=staging] .cell'), c =>          [c.dataset.host, c.querySelector('.health').textContent, c.classList.contains('health-' + c.querySelector('.health').textContent)]);",
        json!([]),
    );
    assert_eq!(
        health,
        json!([
            ["web1", "healthy", true],
            ["web2", "healthy", true],
            ["web3", "unhealthy", true]
        ]),
        "{}",
        b.source()
    );
    b.screenshot(&out.join("matrix-drift.png"));
    seen.look(b);
}

/// A one-off command printing 10,000 lines in bursts: the page keeps up, and stays small.
fn ten_thousand_lines(
    b: &Browser,
    gw: &Gateway,
    token: &str,
    out: &std::path::Path,
    seen: &mut Seen,
) {
    let script = "sleep 1; seq 1 10000 | while read i; do echo \"line $i of the long job\"; \
                  case $i in *000) sleep 0.3;; esac; done";
    let body = json!({"app": "hello", "env": "staging", "host": "web1",
                      "command": ["sh", "-c", script]});
    let job = post(gw, "/v1/runs", token, body);
    let id = job["id"].as_str().unwrap().to_string();
    b.goto(&format!("{}/ui/jobs/{id}", gw.url));
    let before = b.metrics();
    wait_until("the long job's end", Duration::from_secs(300), || {
        state(b) != "running"
    });
    assert_eq!(state(b), "succeeded", "{}", gw.log());
    let after = b.metrics();
    let lines = page_lines(b);
    no_duplicates(&lines);
    let output = lines.iter().filter(|l| l.4.contains("out")).count();
    assert_eq!(output, 10_000, "output lines on the page");
    let last = lines.last().unwrap();
    assert!(last.2 > 0, "the job's end came with the page, not live");
    let end_delay = last.2.saturating_sub(last.1);
    let d = delays(&lines);
    let mb = |m: &std::collections::HashMap<String, f64>, k: &str| {
        m.get(k).copied().unwrap_or(0.0) / 1e6
    };
    println!(
        "10,000 lines: {} live; delay event -> page: median {} ms, p95 {} ms, max {} ms; the end {} ms after the job's last event; \
         browser JS heap {:.1} MB -> {:.1} MB, DOM nodes {} -> {}",
        d.len(),
        percentile(&d, 0.5),
        percentile(&d, 0.95),
        d.last().unwrap(),
        end_delay,
        mb(&before, "JSHeapUsedSize"),
        mb(&after, "JSHeapUsedSize"),
        before.get("Nodes").copied().unwrap_or(0.0),
        after.get("Nodes").copied().unwrap_or(0.0),
    );
    assert!(
        end_delay < 1000,
        "the page was {end_delay} ms behind at the job's end"
    );
    assert!(
        mb(&after, "JSHeapUsedSize") < 200.0,
        "the page's heap grew past 200 MB: {after:?}"
    );
    b.screenshot(&out.join("job-10k.png"));
    seen.look(b);

    // The finished job loaded afresh: its newest lines, the rest behind a link.
    b.goto(&format!("{}/ui/jobs/{id}", gw.url));
    let load_ms = b.execute(
        "const t = performance.getEntriesByType('navigation')[0]; return Math.round(t.loadEventEnd - t.startTime);",
        json!([]),
    );
    let shown = page_lines(b).len();
    assert_eq!(shown, 5000, "lines the page comes with");
    assert!(
        b.text("#earlier")
            .is_some_and(|t| t.contains("earlier events"))
    );
    println!("the finished 10,000-line job's page: {shown} lines, loaded in {load_ms} ms");
}

#[test]
fn a_staging_only_sign_in_sees_no_production_and_no_session_gets_the_sign_in_page() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let out = out_dir();
    let gw = Gateway::start(None, "0.1.0", "0.1.0"); // hello: staging (web1), production (prod1)
    let root = gw.token("root", "", true);
    let ann = gw.token("ann", "staging", false);
    let mut ids = Vec::new();
    for env in ["production", "staging"] {
        let body = json!({"app": "hello", "env": env, "version": "1.0.0"});
        let (status, _, body) = gw.http(
            "POST",
            "/v1/deployments",
            Some(&root),
            Some(&body.to_string()),
        );
        // The offline inventory's index does not answer: the job may be refused at once
        // (502) or fail on its unreachable host; a job with events is what is needed.
        assert_eq!(status, 202, "{body}");
        let job: Value = serde_json::from_str(&body).unwrap();
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (prod, staging) = (ids[0].clone(), ids[1].clone());
    wait_until("both jobs' end", Duration::from_secs(60), || {
        ids.iter()
            .all(|id| get(&gw, &format!("/v1/jobs/{id}"), &root)["state"] != "running")
    });

    // Without a session: every page is the sign-in page (401), with the security headers.
    for path in [
        "/ui/",
        &format!("/ui/jobs/{prod}"),
        &format!("/ui/jobs/{prod}/events"),
        "/ui/audit",
    ] {
        let (status, head, body) = gw.http("GET", path, None, None);
        assert_eq!(status, 401, "{path}: {head}");
        assert!(body.contains("id=\"sign-in\""), "{path}: {body}");
        assert!(
            !body.contains("prod1") && !body.contains("production"),
            "{path}: {body}"
        );
        let head = head.to_ascii_lowercase();
        assert!(head.contains("frame-ancestors 'none'"), "{head}");
        assert!(
            head.contains("script-src 'self'") && !head.contains("unsafe-inline"),
            "{head}"
        );
    }

    let b = Browser::start(&out);
    let mut seen = Seen::default();
    // A wrong token: refused, and not echoed back.
    b.goto(&format!("{}/ui/", gw.url));
    b.fill("#token", "dpl_00000000_not-a-token");
    b.click("#sign-in button");
    assert!(b.wait_for("#message", Duration::from_secs(10)));
    assert!(!b.source().contains("not-a-token"));
    sign_in(&b, &gw, &ann, &mut seen);

    let envs = b.execute(
        "return Array.from(document.querySelectorAll('[data-env]')).map(e => e.dataset.env);",
        json!([]),
    );
    assert_eq!(envs, json!(["staging"]), "{}", b.source());
    for page in ["/ui/", "/ui/jobs", "/ui/ledger", "/ui/schedules"] {
        b.goto(&format!("{}{page}", gw.url));
        seen.look(&b);
        let src = b.source();
        for secret in ["production", "prod1", prod.as_str()] {
            assert!(!src.contains(secret), "{page} shows {secret}: {src}");
        }
    }
    b.goto(&format!("{}/ui/jobs", gw.url));
    assert!(
        b.source().contains(&staging),
        "ann's own environment's job is listed"
    );
    b.screenshot(&out.join("staging-only.png"));
    b.goto(&format!("{}/ui/jobs/{prod}", gw.url));
    seen.look(&b);
    // Issue 26: a job the token may not read is answered as one that does not exist.
    assert!(
        b.source().contains(&format!("no job {prod}")),
        "{}",
        b.source()
    );
    assert!(!b.source().contains("prod1"));
    let status = b.execute(
        "const x = new XMLHttpRequest(); x.open('GET', arguments[0], false); x.send(); return x.status;",
        json!([format!("/ui/jobs/{prod}/events")]),
    );
    assert_eq!(status, json!(404), "the production job's events");
    b.goto(&format!("{}/ui/audit", gw.url));
    assert!(b.source().contains("needs an admin token"));
    b.goto(&format!("{}/ui/jobs/{staging}", gw.url));
    seen.look(&b);
    assert!(b.wait_for("#log .ev", Duration::from_secs(10)));

    // Signing out ends the session: the same browser gets the sign-in page again.
    b.click(".who button");
    assert!(b.wait_for("#sign-in", Duration::from_secs(10)));
    b.goto(&format!("{}/ui/jobs", gw.url));
    assert!(
        b.wait_for("#sign-in", Duration::from_secs(10)),
        "{}",
        b.source()
    );
    seen.assert_never(&ann, &gw);

    // A read-only token signs in too, and revoking it ends its session at once.
    let out = gw
        .command(&["token", "create", "--user", "rita", "--read", "staging"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rita = String::from_utf8(out.stdout).unwrap().trim().to_string();
    sign_in(&b, &gw, &rita, &mut seen);
    b.goto(&format!("{}/ui/jobs", gw.url));
    assert!(b.source().contains(&staging));
    let id = rita.split('_').nth(1).unwrap();
    let st = gw.command(&["token", "revoke", id]).status().unwrap();
    assert!(st.success());
    b.goto(&format!("{}/ui/jobs", gw.url));
    assert!(
        b.wait_for("#sign-in", Duration::from_secs(10)),
        "a revoked token's session still works"
    );
    seen.assert_never(&rita, &gw);

    // A sign-in posted from another site's page is refused (and makes no session).
    let form = format!("token={ann}&next=%2Fui%2F");
    let (status, head) = post_form(&gw, "https://evil.test", &form);
    assert_eq!(status, 403, "{head}");
    assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    let (status, head) = post_form(&gw, &gw.url, &form);
    assert_eq!(
        status, 303,
        "the same form from the gateway's own page: {head}"
    );
}

/// POSTs a sign-in form as a browser on `origin` would: (status, head).
fn post_form(gw: &Gateway, origin: &str, form: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = gw.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let req = format!(
        "POST /ui/sign-in HTTP/1.0\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let head = buf.split("\r\n\r\n").next().unwrap_or_default().to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head)
}
