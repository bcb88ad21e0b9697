//! The front door without servers: tokens (401/403 and the audit trail) and the CLI/API
//! version handshake, through real HTTP and the real `deploy` binary.

use crate::support;

use std::process::Command;

use support::*;

#[test]
fn no_token_is_refused_with_401() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let (status, _, body) = gw.http("GET", "/v1/apps", None, None);
    assert_eq!(status, 401);
    assert!(body.contains("\"code\":\"unauthenticated\""), "{body}");
    let (status, _, _) = gw.http("GET", "/v1/apps", Some("dpl_00000000_bogus"), None);
    assert_eq!(status, 401);
    let r = gw.run(None, &["apps"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("a token is needed"), "{r:?}");
    // A valid token works.
    let t = gw.token("ann", "staging", false);
    let r = gw.run(Some(&t), &["apps"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("hello") && r.stdout.contains("staging"),
        "{r:?}"
    );
}

#[test]
fn a_staging_token_deploying_to_production_is_refused_and_audited() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let r = gw.run(
        Some(&ann),
        &["release", "hello", "1.0.0", "-e", "production", "--yes"],
    );
    // Issue 26: an environment the token may not read is answered as one that does not
    // exist (404, exit 2); refused writes are still audited one row each.
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("application hello has no environment production that this token may read"),
        "{r:?}"
    );
    let (status, _, body) = gw.http(
        "POST",
        "/v1/deployments",
        Some(&ann),
        Some(r#"{"app":"hello","env":"production","version":"1.0.0"}"#),
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"code\":\"unknown_environment\""));
    // The audit trail (admin only) records both refusals, with the user.
    let (status, _, _) = gw.http("GET", "/v1/audit", Some(&ann), None);
    assert_eq!(status, 403);
    let admin = gw.token("root", "", true);
    let (status, _, body) = gw.http("GET", "/v1/audit", Some(&admin), None);
    assert_eq!(status, 200);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let refusals: Vec<_> = entries
        .iter()
        .filter(|e| {
            e["user"] == "ann"
                && e["action"] == "deploy"
                && e["target"] == "hello/production 1.0.0"
                && e["outcome"] == "refused: unknown environment"
        })
        .collect();
    assert_eq!(refusals.len(), 2, "{body}");
    // Nothing was started.
    let (_, _, jobs) = gw.http("GET", "/v1/jobs", Some(&admin), None);
    assert_eq!(jobs.trim(), "[]");
}

#[test]
fn production_needs_yes_without_a_terminal() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let admin = gw.token("root", "", true);
    let r = gw.run(
        Some(&admin),
        &["release", "hello", "1.0.0", "-e", "production"],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("production asks for confirmation; not on a terminal, so pass --yes"),
        "{r:?}"
    );
    let (_, _, jobs) = gw.http("GET", "/v1/jobs", Some(&admin), None);
    assert_eq!(jobs.trim(), "[]", "nothing was started");
    // Staging does not ask.
    let r = gw.run(
        Some(&admin),
        &["release", "hello", "1.0.0", "-e", "staging"],
    );
    assert_eq!(
        r.code, 1,
        "accepted, then fails on the unreachable host: {r:?}"
    );
    assert!(r.stdout.contains("unreachable"), "{r:?}");
}

#[test]
fn a_too_old_cli_prints_the_upgrade_command_and_exits_3() {
    let gw = Gateway::start(None, "9.0.0", "9.1.0");
    let t = gw.token("ann", "staging", false);
    let r = gw.run(Some(&t), &["apps"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr
            .contains("this gateway needs deploy 9.0.0 or newer (you have 0.1.0)"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains(
            "cargo install --locked --git https://git.example.com/deploy deploy-cli --tag v9.1.0"
        ),
        "{r:?}"
    );
    // Every response carries the supported range; the raw 426 names the code.
    let (status, head, body) = gw.http("GET", "/v1/health", None, None);
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase().contains("deploy-cli-oldest: 9.0.0")
            && head.to_lowercase().contains("deploy-cli-newest: 9.1.0"),
        "{head}"
    );
    let _ = body;
}

#[test]
fn an_older_than_newest_cli_prints_one_notice_and_works() {
    let gw = Gateway::start(None, "0.1.0", "0.2.0");
    let t = gw.token("ann", "staging", false);
    let r = gw.run(Some(&t), &["apps"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("hello"));
    let notices: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("a newer CLI is available"))
        .collect();
    assert_eq!(notices.len(), 1, "{r:?}");
    assert!(
        notices[0].contains("0.2.0") && notices[0].contains("--tag v0.2.0"),
        "{r:?}"
    );
    // And a current CLI says nothing.
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let t = gw.token("ann", "staging", false);
    let r = gw.run(Some(&t), &["apps"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{r:?}");
}

#[test]
fn login_saves_the_token_with_mode_0600() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let t = gw.token("ann", "staging", false);
    let mut child = gw
        .cli(None, &["login", &gw.url])
        .env_remove("DEPLOY_GATEWAY")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{t}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&t),
        "the token must not be echoed"
    );
    let saved = gw.dir.path().join("cli-config/deploy/config.json");
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The saved login is used when no flag or variable is given.
    let r = gw
        .cli(None, &["apps"])
        .env_remove("DEPLOY_GATEWAY")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // A wrong token is not saved.
    let mut child = gw
        .cli(None, &["login", &gw.url])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"dpl_bad_token\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(std::fs::read_to_string(&saved).unwrap().contains(&t));
}

#[test]
fn the_gateway_refuses_to_start_on_a_bad_config_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, "database = \"x.db\"\ninventory = \"i.yml\"\nknown_hosts = \"k\"\nssh_key = \"key\"\nlisten = 8700\n[cli]\noldest = \"0.1.0\"\nnewest = \"0.1.0\"\nupgrade_command = \"x\"\n").unwrap();
    let out = std::process::Command::new(gateway_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:5:", cfg.display())) && err.contains("string"),
        "{err}"
    );
}

#[test]
fn cli_arguments_never_reach_another_route_and_bad_names_exit_2_before_sending() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let admin = gw.token("root", "", true);
    for args in [
        &["logs", "../apps/x/status?"][..],
        &["logs", "../apps/hello/status?", "--follow"],
        &["cancel", "x/../../deployments"],
        &["status", "../hosts"],
        &["status", "hello", "-e", "staging&live=true"],
        &["versions", "hello/../../hosts"],
        &["rollback", "hello?", "-e", "staging", "--yes"],
        &["rollback", "hello", "-e", "../production", "--yes"],
    ] {
        let r = gw.run(Some(&admin), args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains("invalid"), "{args:?}: {r:?}");
    }
    // Nothing reached the gateway as another route: no request was logged.
    assert!(!gw.log().contains("/status"), "{}", gw.log());
    assert!(!gw.log().contains("/v1/hosts"), "{}", gw.log());
    // Read-only and expiring tokens from the command line.
    let out = Command::new(gateway_bin())
        .args(["token", "create", "--config"])
        .arg(gw.config())
        .args(["--user", "rita", "--read", "staging", "--expires", "30m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rita = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = gw.run(Some(&rita), &["status", "hello", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = gw.run(Some(&rita), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("(read-only)"), "{r:?}");
    let list = Command::new(gateway_bin())
        .args(["token", "list", "--config"])
        .arg(gw.config())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let line = list.lines().find(|l| l.contains("rita")).unwrap();
    assert!(
        line.contains("staging") && line.ends_with("active"),
        "{list}"
    );
    assert!(
        !line.contains("never never"),
        "expiry and last use shown: {list}"
    );
    assert!(!list.contains(&rita), "never the token");
}
