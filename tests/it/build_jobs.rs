//! Build jobs outlive their follower: a gateway SIGKILLed while its build job follows a
//! Jenkins build (the stub really builds and uploads) starts again, adopts the job and
//! follows the same build to its end: one build on Jenkins, the wheel recorded, no 409
//! from the index; and a build job is cancelled by the user who started it (a token of
//! one environment), which stops the build on Jenkins.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::git::{Change, GitRepos};
use support::jenkins::JenkinsStub;
use support::{Gateway, Testbed};

fn pyproject(version: &str) -> String {
    format!("[project]\nname = \"hello-app\"\nversion = \"{version}\"\n")
}

fn config(tb: &Testbed, daemon: &str, jenkins: &JenkinsStub) -> String {
    format!(
        r#"[sources.pypi]
kind = "simple"
url = "http://127.0.0.1:{index}/simple/"
servers_url = "http://index:8080/simple/"
[git.origin]
kind = "git"
url = "{daemon}"
[builders.ci]
kind = "jenkins"
url = "{jurl}"
user = "{juser}"
token_env = "JENKINS_TOKEN"
[applications.hello]
source = "pypi"
git = "origin"
repository = "PROJ/hello"
builder = "ci"
build_job = "hello-build"
"#,
        index = tb.index_port,
        jurl = jenkins.base_url,
        juser = jenkins.user,
    )
}

fn job_of(gw: &Gateway, token: &str, id: &str) -> Value {
    let (code, _, body) = gw.http("GET", &format!("/v1/jobs/{id}"), Some(token), None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

fn log_lines(gw: &Gateway, token: &str, id: &str) -> Vec<String> {
    let (_, _, body) = gw.http("GET", &format!("/v1/jobs/{id}/log"), Some(token), None);
    let log: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    log.iter()
        .filter(|e| e["event"]["type"] == "output")
        .map(|e| e["event"]["line"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_gateway_killed_mid_build_follows_the_same_build_on_and_its_user_may_cancel_one() {
    let tb = Testbed::up("build-jobs", 1);
    let repos = GitRepos::new();
    let (py1, py2) = (pyproject("5.0.0"), pyproject("5.1.0"));
    let ids = repos.create(
        "PROJ/hello",
        &[
            Change {
                author: "Ann Dev",
                message: "first",
                files: &[
                    ("pyproject.toml", &py1),
                    ("hello_app/__init__.py", "X = 1\n"),
                ],
            },
            Change {
                author: "Ann Dev",
                message: "second",
                files: &[("pyproject.toml", &py2)],
            },
        ],
    );
    let daemon = repos.git_daemon();
    let jenkins = JenkinsStub::start_with(
        &[("hello-build", &format!("{}/PROJ/hello", daemon.url))],
        &format!("http://127.0.0.1:{}/", tb.index_port),
        &["--hold", "6"],
    );
    let env = [("JENKINS_TOKEN", jenkins.token.as_str())];
    let cfg = config(&tb, &daemon.url, &jenkins);
    let mut gw = Gateway::start_with(Some(&tb), "0.1.0", "0.1.0", Some(&cfg), &env);
    let ann = gw.token("ann", "staging", false);

    // A build of c1, through the API; the gateway dies while Jenkins builds it.
    let body = format!(r#"{{"app":"hello","ref":"{}"}}"#, ids[0]);
    let (code, _, resp) = gw.http("POST", "/v1/builds", Some(&ann), Some(&body));
    assert_eq!(code, 202, "{resp}");
    let job = serde_json::from_str::<Value>(&resp).unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(60, "the build to run on Jenkins", || {
        log_lines(&gw, &ann, &job)
            .iter()
            .any(|l| l.starts_with("holding (1/"))
    });
    gw.restart();
    wait_for(120, "the adopted job to end", || {
        job_of(&gw, &ann, &job)["state"] != "running"
    });
    let j = job_of(&gw, &ann, &job);
    assert_eq!(j["state"], "succeeded", "{j}\n{}", gw.log());
    let lines = log_lines(&gw, &ann, &job);
    assert!(
        lines.iter().any(|l| l.contains("followed again")),
        "{lines:?}"
    );
    assert_eq!(
        jenkins.builds().len(),
        1,
        "one build on Jenkins: {:?}",
        jenkins.builds()
    );
    // On record: asking again builds nothing.
    let (code, _, resp) = gw.http("POST", "/v1/builds", Some(&ann), Some(&body));
    assert_eq!(code, 200, "{resp}");

    // A build of c2, cancelled by the user who started it: the build stops on Jenkins.
    let body = format!(r#"{{"app":"hello","ref":"{}"}}"#, ids[1]);
    let (code, _, resp) = gw.http("POST", "/v1/builds", Some(&ann), Some(&body));
    assert_eq!(code, 202, "{resp}");
    let job2 = serde_json::from_str::<Value>(&resp).unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(60, "the second build to run", || {
        log_lines(&gw, &ann, &job2)
            .iter()
            .any(|l| l.starts_with("holding (1/"))
    });
    let (code, _, resp) = gw.http(
        "POST",
        &format!("/v1/jobs/{job2}/cancel"),
        Some(&ann),
        Some("{}"),
    );
    assert!(code < 300, "{code} {resp}");
    wait_for(60, "the cancelled job to end", || {
        job_of(&gw, &ann, &job2)["state"] != "running"
    });
    assert_eq!(job_of(&gw, &ann, &job2)["state"], "cancelled");
    wait_for(30, "Jenkins to stop the build", || {
        jenkins.log().contains("STOP job=hello-build")
    });
    wait_for(30, "the aborted build", || {
        jenkins.builds().iter().any(|b| b.result == "ABORTED")
    });
}
