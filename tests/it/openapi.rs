//! The gateway's OpenAPI document (`GET /v1/openapi.json`) against the gateway itself:
//! schemathesis (from PyPI; `.ci/run` installs it under `~/.cache/deploy/schemathesis`,
//! or `DEPLOY_TEST_SCHEMATHESIS` names its binary) generates requests for every operation
//! of the document, valid and invalid, and sends them to a running `deploy-gateway serve`
//! with an admin token.  Every response must match the document (status, content type,
//! body schema), none may be a 5xx, invalid input must be refused with a 4xx, and every
//! protected operation must refuse a request without the token.  Missing schemathesis is
//! a failure with the command that installs it, never a skip.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::support::{Gateway, GatewayOpts};

/// The schemathesis binary, or a failure saying how to install it.
fn schemathesis() -> PathBuf {
    let path = match std::env::var_os("DEPLOY_TEST_SCHEMATHESIS") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").expect("HOME");
            PathBuf::from(home).join(".cache/deploy/schemathesis/bin/schemathesis")
        }
    };
    assert!(
        path.is_file(),
        "schemathesis is not installed at {}: run `bash ci/schemathesis.sh` (what .ci/run does)",
        path.display()
    );
    path
}

/// The counts in schemathesis' JUnit report: (test cases, failures, errors).
fn junit_counts(xml: &str) -> (u64, u64, u64) {
    let attr = |name: &str| -> u64 {
        let key = format!(" {name}=\"");
        let Some(at) = xml.find(&key) else { return 0 };
        let rest = &xml[at + key.len()..];
        rest[..rest.find('"').unwrap()].parse().unwrap_or(0)
    };
    (attr("tests"), attr("failures"), attr("errors"))
}

/// A PEP 503 index on a loopback port with one wheel of `hello-app` (1.0.0), for the
/// reads that list versions: without one, `GET /v1/apps/hello/versions` answers 502
/// (the index cannot be reached), rightly, and schemathesis counts every 5xx.  Returns
/// its `/simple/` URL; the thread serves until the test process ends.
fn tiny_index() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let page = "<!DOCTYPE html><html><body>\
            <a href=\"hello_app-1.0.0-py3-none-any.whl#sha256=\
            0000000000000000000000000000000000000000000000000000000000000000\">\
            hello_app-1.0.0-py3-none-any.whl</a></body></html>";
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}/simple/")
}

#[test]
fn schemathesis_finds_no_server_error_and_every_response_matches_the_document() {
    let bin = schemathesis();
    // schemathesis sends requests without and with bad tokens on purpose (`ignored_auth`):
    // the sign-in throttle (tests/it/sign_in.rs) would answer everything after the tenth
    // 429, so it is opened wide here.
    let opts = GatewayOpts {
        sources: Some("[sign_in]\nburst = 1000000\nper_minute = 1000000\n".into()),
        ..GatewayOpts::default()
    };
    let gw = Gateway::start_opts(None, opts);
    // The offline inventory, with an index that answers (the gateway reads the inventory
    // afresh for each request); its hosts stay unreachable (port 1).
    let inventory = gw.dir.path().join("inventory.yml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let text = text.replace("http://127.0.0.1:1/simple/", &tiny_index());
    std::fs::write(&inventory, text).unwrap();
    let admin = gw.token("ann", "", true);
    let report = gw.dir.path().join("schemathesis.xml");
    let t = Instant::now();
    let out = Command::new(&bin)
        // Its example database and state (`.hypothesis/`, `.schemathesis/`) go there.
        .current_dir(gw.dir.path())
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/v1/openapi.json", gw.url))
        .args(["--checks", "all"])
        // Left out: the stateful checks, which need links between operations (none are
        // declared); the authorization of another user's objects, which is the scope
        // tests' (gateway_scopes); and "every schema-valid request is accepted": the
        // document states types and shapes, while names (DNS-like), versions (PEP 440 or
        // a specifier), batch sizes and times are the service's rules, refused with 400
        // and a message naming the field (tests/it/input_checks.rs).
        .args([
            "--exclude-checks",
            "use_after_free,ensure_resource_availability,object_level_authorization,positive_data_acceptance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--seed", "7", "--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--header", &format!("Authorization: Bearer {admin}")])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(&admin) && !stderr.contains(&admin),
        "the token leaked into schemathesis' output"
    );
    let xml = std::fs::read_to_string(&report).unwrap_or_default();
    let (cases, failures, errors) = junit_counts(&xml);
    eprintln!(
        "schemathesis: {cases} operations tested, {failures} failures, {errors} errors in {:?}",
        t.elapsed()
    );
    assert!(
        out.status.success() && failures == 0 && errors == 0,
        "schemathesis found problems (exit {:?}):\n{stdout}\n{stderr}\ngateway log:\n{}",
        out.status.code(),
        gw.log()
    );
    assert!(
        cases >= 30,
        "every operation is tested: {cases} in the report"
    );
    // What the gateway answered (its request log: `METHOD PATH -> STATUS`): real work,
    // not only refusals.
    let log = gw.log();
    let mut answers = std::collections::BTreeMap::<String, u32>::new();
    for line in log.lines() {
        if let Some((_, status)) = line.rsplit_once(" -> ") {
            *answers.entry(status.trim().to_string()).or_default() += 1;
        }
    }
    let requests: u32 = answers.values().sum();
    eprintln!("schemathesis: {requests} requests; the gateway answered {answers:?}");
    for ok in ["200", "202", "401", "404"] {
        assert!(answers.contains_key(ok), "no {ok} among {answers:?}");
    }
    assert!(!answers.keys().any(|s| s.starts_with('5')), "{answers:?}");
    assert!(
        !gw.log().contains("panicked"),
        "the gateway panicked:\n{}",
        gw.log()
    );
}
