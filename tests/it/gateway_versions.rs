//! Version requests resolve on the gateway against the real index: `latest`, `~=`,
//! pre-release filtering, and the job records the exact version.

use crate::support;

use support::*;

#[test]
fn latest_and_specifiers_resolve_on_the_gateway() {
    let tb = Testbed::up("gw-versions", 1);
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let started = |args: &[&str]| {
        let r = gw.run(Some(&ann), args);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        r.stderr
            .lines()
            .find(|l| l.contains("started:"))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        started(&["release", "hello", "latest", "-e", "staging", "--check"])
            .ends_with("check hello 1.4.0 to staging")
    );
    assert!(
        started(&["release", "hello", "~=1.1.0", "-e", "staging", "--check"])
            .ends_with("check hello 1.1.0 to staging")
    );
    assert!(
        started(&["release", "hello", "~=1.0", "-e", "staging", "--check"])
            .ends_with("check hello 1.4.0 to staging")
    );
    assert!(
        started(&[
            "release", "hello", "latest", "--pre", "-e", "staging", "--check"
        ])
        .ends_with("check hello 1.5.0rc1 to staging")
    );
    let r = gw.run(Some(&ann), &["release", "hello", ">=1.5", "-e", "staging"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("no version matches") && r.stderr.contains("--pre"),
        "{r:?}"
    );

    // An exact version the index does not have: refused before any job starts.
    let r = gw.run(Some(&ann), &["release", "hello", "9.9.9", "-e", "staging"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("version 9.9.9 of hello is not on its index")
            && r.stderr.contains("1.0.0, 1.1.0"),
        "{r:?}"
    );
    let body = r#"{"app":"hello","env":"staging","version":"9.9.9"}"#;
    let (status, _, body) = gw.http("POST", "/v1/deployments", Some(&ann), Some(body));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"code\":\"invalid_request\""), "{body}");
    let (_, _, jobs) = gw.http("GET", "/v1/jobs", Some(&ann), None);
    assert!(!jobs.contains("9.9.9"), "no job: {jobs}");

    // A real deploy of `latest`: the job and the ledger hold the exact version.
    let r = gw.run(Some(&ann), &["release", "hello", "latest", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(served_version(tb.server("web1")), "1.4.0");
    let (_, _, body) = gw.http("GET", "/v1/jobs?limit=1", Some(&ann), None);
    assert!(body.contains("\"version\":\"1.4.0\""), "{body}");
    let r = gw.run(Some(&ann), &["versions", "hello"]);
    let lines: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0rc1"],
        "PEP 440 order: {}",
        r.stdout
    );
    assert!(r.stdout.contains("1.4.0  <- staging/web1"), "{}", r.stdout);
}
