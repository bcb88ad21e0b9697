//! One validation per kind of input, against the real binaries (issue 26): what to deploy
//! is checked alike by `release` and `schedule add`; an unknown environment and one the
//! token may not read get one answer and exit 2 from every command; a bad client version
//! header is a 400; `token create` refuses an environment the inventory lacks; and an
//! inventory error reaches a client with its file, line and field, never a value.

use crate::support::*;

#[test]
fn schedule_add_refuses_what_release_refuses() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    for what in ["<img src=x onerror=alert(1)>", "~root", "=1.0", ">=1.2,"] {
        let release = gw.run(
            Some(&ann),
            &["release", "hello", what, "-e", "staging", "--yes"],
        );
        let schedule = gw.run(
            Some(&ann),
            &[
                "schedule",
                "add",
                "hello",
                what,
                "-e",
                "staging",
                "--cron",
                "0 2 * * *",
            ],
        );
        assert_eq!(release.code, 2, "release {what}: {release:?}");
        assert_eq!(schedule.code, 2, "schedule {what}: {schedule:?}");
        // Over the API too (the CLI may check names before sending).
        let body =
            format!(r#"{{"app":"hello","env":"staging","what":{what:?},"cron":"0 2 * * *"}}"#);
        let (status, _, answer) = gw.http("POST", "/v1/schedules", Some(&ann), Some(&body));
        assert_eq!(status, 400, "{what}: {answer}");
        assert!(answer.contains("\"code\":\"invalid_request\""), "{answer}");
    }
    let (_, _, list) = gw.http("GET", "/v1/schedules", Some(&ann), None);
    assert_eq!(list.trim(), "[]", "nothing was scheduled");
}

#[test]
fn an_unknown_and_an_unreadable_environment_get_one_answer_and_exit_2_everywhere() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let commands: [&[&str]; 5] = [
        &["release", "hello", "1.0.0", "-e", "ENV", "--yes"],
        &["rollback", "hello", "-e", "ENV", "--yes"],
        &["status", "hello", "-e", "ENV"],
        &["restart", "hello", "-e", "ENV", "--yes"],
        &[
            "schedule",
            "add",
            "hello",
            "1.0.0",
            "-e",
            "ENV",
            "--cron",
            "0 2 * * *",
        ],
    ];
    for words in commands {
        let with = |env: &str| {
            let args: Vec<&str> = words
                .iter()
                .map(|w| if *w == "ENV" { env } else { w })
                .collect();
            gw.run(Some(&ann), &args)
        };
        let (unreadable, unknown) = (with("production"), with("nosuch"));
        assert_eq!(
            (unreadable.code, unknown.code),
            (2, 2),
            "{words:?}: {unreadable:?} / {unknown:?}"
        );
        assert_eq!(
            unreadable.stderr.replace("production", "ENV"),
            unknown.stderr.replace("nosuch", "ENV"),
            "{words:?}: one answer"
        );
        assert!(
            unreadable.stderr.contains("that this token may read"),
            "{unreadable:?}"
        );
    }
    for path in [
        "/v1/apps/hello/status?env=ENV",
        "/v1/apps/hello/rollback?env=ENV",
        "/v1/apps/hello/logs?env=ENV",
    ] {
        let (s1, _, b1) = gw.http("GET", &path.replace("ENV", "production"), Some(&ann), None);
        let (s2, _, b2) = gw.http("GET", &path.replace("ENV", "nosuch"), Some(&ann), None);
        assert_eq!((s1, s2), (404, 404), "{path}: {b1} / {b2}");
        assert_eq!(
            b1.replace("production", "ENV"),
            b2.replace("nosuch", "ENV"),
            "{path}"
        );
        assert!(b1.contains("\"code\":\"unknown_environment\""), "{b1}");
    }
    // A token that may read an environment but not act on it knows it exists: 403, exit 4.
    let rita = {
        let mut cmd = gw.command(&["token", "create"]);
        cmd.args(["--user", "rita", "--read", "production"]);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let r = gw.run(
        Some(&rita),
        &["release", "hello", "1.0.0", "-e", "production", "--yes"],
    );
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("may not act"), "{r:?}");
}

#[test]
fn a_garbage_or_v_prefixed_client_version_header_is_a_400_not_426() {
    let gw = Gateway::start(None, "0.1.0", "0.2.0");
    let ann = gw.token("ann", "staging", false);
    let send = |version: &str| {
        let addr = gw.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let req = format!(
            "GET /v1/apps HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {ann}\r\nDeploy-Client-Version: {version}\r\n\r\n"
        );
        use std::io::{Read, Write};
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let status = buf
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (status, buf)
    };
    for bad in ["v0.1.0", "banana", "0.1", ""] {
        let (status, answer) = send(bad);
        assert_eq!(status, "400", "{bad:?}: {answer}");
        assert!(answer.contains("\"code\":\"invalid_request\""), "{answer}");
        assert!(answer.contains("must be a semver version"), "{answer}");
    }
    assert_eq!(send("0.0.9").0, "426", "too old is still 426");
    assert_eq!(send("0.1.0").0, "200");
}

#[test]
fn token_create_refuses_an_environment_the_inventory_does_not_have() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    for flag in ["--env", "--read"] {
        let out = gw
            .command(&["token", "create"])
            .args(["--user", "ann", flag, "stagin"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("no environment stagin"), "{stderr}");
        assert!(out.stdout.is_empty(), "no token printed");
    }
    assert!(gw.token("ann", "staging,production", false).len() > 10);
    let out = gw
        .command(&["token", "create"])
        .args(["--user", "all", "--env", "*"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_inventory_parse_error_reaches_any_token_without_an_env_value() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let rita = {
        let mut cmd = gw.command(&["token", "create"]);
        cmd.args(["--user", "rita", "--read", "staging"]);
        let out = cmd.output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // A value next to the mistake, as the finding's snippet showed it.
    let broken = OFFLINE_INVENTORY.replace(
        "    server_names: [hello.example.test]\n",
        "    server_names: [hello.example.test]\n    env:\n      SECRET_KEY: hunter2-s3cr3t\n      DEBUG: [unclosed\n",
    );
    gw.set_inventory(&broken);
    let (status, _, body) = gw.http(
        "GET",
        "/v1/apps/hello/status?env=staging",
        Some(&rita),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("hunter2"), "{body}");
    assert!(
        body.contains("inventory.yml:"),
        "names the file and line: {body}"
    );
    assert!(
        body.contains("applications.hello.env"),
        "names the field: {body}"
    );
    let r = gw.run(Some(&rita), &["status", "hello", "-e", "staging"]);
    assert!(
        !r.stderr.contains("hunter2") && !r.stdout.contains("hunter2"),
        "{r:?}"
    );
    // A value of the wrong type: the message says what is wrong, not what was there.
    gw.set_inventory(&OFFLINE_INVENTORY.replace("port: 8000", "port: \"s3cr3t-port\""));
    let (status, _, body) = gw.http(
        "GET",
        "/v1/apps/hello/status?env=staging",
        Some(&rita),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("s3cr3t"), "{body}");
    assert!(body.contains("applications.hello.port"), "{body}");
    // The gateway's log has the same redacted text, never the value.
    assert!(!gw.log().contains("s3cr3t") && !gw.log().contains("hunter2"));
    assert!(gw.log().contains("applications.hello.port"), "{}", gw.log());
}
