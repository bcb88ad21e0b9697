//! The Jenkins builder against `ci/jenkins_stub.py`, which really builds: a commit of a
//! real git repository (served by `git daemon`) becomes a wheel on the test bed's
//! pypiserver and an archived artifact, with the console streamed while it runs; a
//! broken pyproject.toml fails the build with the TOML error in the console; a wrong API
//! token is a clear error that never carries the token.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use deploy::artifacts::Secret;
use deploy::builder::jenkins::Jenkins;
use deploy::builder::{BuildRef, BuildRequest, BuildState, Builder, Progress};
use sha2::{Digest, Sha256};
use support::jenkins::{GitServer, JenkinsStub, StubBuild};
use support::*;

const JOB: &str = "demo build";
const WHEEL: &str = "jenkins_demo-0.1.0-py3-none-any.whl";

fn pyproject() -> (&'static str, &'static str) {
    (
        "pyproject.toml",
        "[project]\nname = \"jenkins-demo\"\nversion = \"0.1.0\"\ndescription = \"built by the Jenkins stub\"\nrequires-python = \">=3.8\"\n",
    )
}

fn builder(stub: &JenkinsStub, token: &str) -> Jenkins {
    Jenkins::new(
        format!("{}/", stub.base_url),
        stub.user.clone(),
        Secret::new(token),
        BTreeMap::from([("demo".to_string(), JOB.to_string())]),
    )
    .unwrap()
}

fn request(commit: &str) -> BuildRequest {
    BuildRequest {
        app: "demo".into(),
        commit: commit.into(),
    }
}

/// A build followed to its end, as the build phase does.
struct Followed {
    console: String,
    /// Polls that returned console text while the build was still running.
    chunks_while_running: usize,
    last: Progress,
}

async fn follow(b: &Jenkins, id: &str) -> Followed {
    let (mut console, mut offset, mut chunks) = (String::new(), 0, 0);
    for _ in 0..600 {
        let p = b.poll(id, offset).await.unwrap();
        console.push_str(&p.console);
        offset = p.next_offset;
        match p.state {
            BuildState::Queued | BuildState::Running => {
                chunks += usize::from(!p.console.is_empty());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => {
                return Followed {
                    console,
                    chunks_while_running: chunks,
                    last: p,
                };
            }
        }
    }
    panic!("the build did not end in a minute; console so far:\n{console}");
}

fn tail(console: &str, n: usize) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[tokio::test]
async fn a_commit_becomes_a_wheel_on_the_index_and_a_broken_pyproject_fails_the_build() {
    let tb = Testbed::up("jenkins", 0);
    let index = format!("http://127.0.0.1:{}", tb.index_port);
    let git = GitServer::start("demo");
    let good = git.commit(
        "a tiny project",
        &[
            pyproject(),
            (
                "jenkins_demo/__init__.py",
                "GREETING = 'built by jenkins'\n",
            ),
            ("jenkins_demo/util.py", "def twice(x):\n    return 2 * x\n"),
        ],
    );
    let stub = JenkinsStub::start(&[(JOB, &git.url)], &format!("{index}/"));
    let b = builder(&stub, &stub.token);

    let id = b.start(&request(&good)).await.unwrap();
    let f = follow(&b, &id).await;
    assert_eq!(f.last.state, BuildState::Succeeded, "{}", f.console);
    assert!(
        f.chunks_while_running > 1,
        "the console came in one piece: {}",
        f.console
    );
    assert_eq!(
        f.last.build,
        Some(BuildRef {
            number: "1".into(),
            url: format!("{}/job/demo%20build/1/", stub.base_url),
        })
    );
    assert_eq!(f.last.artifacts, [WHEEL]);
    assert!(f.console.contains(&format!("checkout --quiet {good}")));
    assert!(f.console.ends_with("Finished: SUCCESS\n"), "{}", f.console);

    let wheel = download(&stub, &format!("job/demo%20build/1/artifact/dist/{WHEEL}")).await;
    let sha = hex(&Sha256::digest(&wheel));
    let page = reqwest::get(format!("{index}/simple/jenkins-demo/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(WHEEL), "{page}");
    assert!(page.contains(&sha), "the index has another file: {page}");
    pip_installs(&wheel);

    let bad = git.commit(
        "break it",
        &[("pyproject.toml", "[project\nname = \"x\"\n")],
    );
    let id = b.start(&request(&bad)).await.unwrap();
    let f = follow(&b, &id).await;
    assert_eq!(
        f.last.state,
        BuildState::Failed("Jenkins says FAILURE".into())
    );
    assert!(f.last.artifacts.is_empty());
    let end = tail(&f.console, 3);
    assert!(
        end.contains("pyproject.toml is not valid TOML") && end.contains("(at line 1"),
        "{end}"
    );
    assert_eq!(
        stub.builds(),
        [
            StubBuild {
                job: JOB.into(),
                number: 1,
                commit: good,
                result: "SUCCESS".into()
            },
            StubBuild {
                job: JOB.into(),
                number: 2,
                commit: bad,
                result: "FAILURE".into()
            }
        ]
    );
}

/// The wheel installs with pip, offline, and its code runs.
fn pip_installs(wheel: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let links = dir.path().join("links");
    std::fs::create_dir(&links).unwrap();
    std::fs::write(links.join(WHEEL), wheel).unwrap();
    let venv = dir.path().join("venv");
    let ok = |c: &mut std::process::Command| {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{c:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv));
    ok(std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--no-index", "--find-links"])
        .arg(&links)
        .arg("jenkins-demo==0.1.0"));
    let out = ok(std::process::Command::new(venv.join("bin/python")).args([
        "-c",
        "import jenkins_demo, jenkins_demo.util as u; print(jenkins_demo.GREETING, u.twice(21))",
    ]));
    assert_eq!(out.trim(), "built by jenkins 42");
}

async fn download(stub: &JenkinsStub, path: &str) -> Vec<u8> {
    let resp = reqwest::Client::new()
        .get(format!("{}/{path}", stub.base_url))
        .basic_auth(&stub.user, Some(&stub.token))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.bytes().await.unwrap().to_vec()
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// No Docker: the stub alone (its builds fail at the clone, nothing listens there).
#[tokio::test]
async fn a_wrong_token_is_a_clear_error_without_the_token_and_the_right_one_builds() {
    let stub = JenkinsStub::start(
        &[(JOB, "git://127.0.0.1:9/nothing.git")],
        "http://127.0.0.1:9/",
    );
    let wrong = "wrong-token-0f1e2d3c";
    assert_ne!(stub.token, wrong);
    assert!(stub.token.starts_with("jt-") && stub.token.len() > 20);
    let b = builder(&stub, wrong);
    assert!(!format!("{b:?}").contains(wrong));

    let err = b.start(&request(&"ab".repeat(20))).await.unwrap_err();
    assert!(!err.is_retryable(), "a 401 is permanent: {err}");
    let err = err.to_string();
    assert!(err.contains("GET /crumbIssuer/api/json"), "{err}");
    assert!(
        err.contains("401") && err.contains("API token is wrong"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    for secret in [wrong, stub.token.as_str()] {
        assert!(!err.contains(secret), "{err}");
        assert!(!stub.log().contains(secret), "{}", stub.log());
    }
    assert!(stub.log().contains("GET /crumbIssuer/api/json 401"));

    let b = builder(&stub, &stub.token);
    let err = b
        .start(&BuildRequest {
            app: "other".into(),
            commit: "ab".repeat(20),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no job for app other"), "{err}");
    assert!(b.poll("nope", 0).await.is_err());

    let id = b.start(&request(&"ab".repeat(20))).await.unwrap();
    assert!(id.starts_with(&format!("{}/queue/item/", stub.base_url)));
    let first = b.poll(&id, 0).await.unwrap();
    assert_eq!((first.state, first.build), (BuildState::Queued, None));
    let f = follow(&b, &id).await;
    assert_eq!(
        f.last.state,
        BuildState::Failed("Jenkins says FAILURE".into())
    );
    assert!(f.console.contains("git clone"), "{}", f.console);
    assert_eq!(stub.builds().len(), 1);
    assert!(!stub.log().contains(&stub.token));
}

/// Polls `id` until it has left the queue; its build.
async fn build_of(b: &Jenkins, id: &str) -> BuildRef {
    for _ in 0..300 {
        if let Some(r) = b.poll(id, 0).await.unwrap().build {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("build {id} never left the queue");
}

#[tokio::test]
async fn a_build_is_followed_by_another_process_and_cancel_stops_a_queue_item_or_a_build() {
    let tb = Testbed::up("jenkins-follow", 0);
    let index = format!("http://127.0.0.1:{}/", tb.index_port);
    let git = GitServer::start("demo");
    let good = git.commit(
        "a tiny project",
        &[pyproject(), ("jenkins_demo/__init__.py", "X = 1\n")],
    );

    // A build started by one process, followed to its end by a new one from its id (the
    // id names the job; the build's number, stored, is handed over too).
    let stub = JenkinsStub::start_with(&[(JOB, &git.url)], &index, &["--hold", "2"]);
    let id = builder(&stub, &stub.token)
        .start(&request(&good))
        .await
        .unwrap();
    let build = build_of(&builder(&stub, &stub.token), &id).await;
    let next = builder(&stub, &stub.token);
    next.resume(&id, Some(build.clone()));
    let f = follow(&next, &id).await;
    assert_eq!(f.last.state, BuildState::Succeeded, "{}", f.console);
    assert_eq!(f.last.build, Some(build));
    assert!(f.console.contains("holding (2/2)"), "{}", f.console);
    assert_eq!(stub.builds().len(), 1, "one build");

    // A queue item that never leaves the queue (no executor) is cancelled.
    let stuck = JenkinsStub::start_with(&[(JOB, &git.url)], &index, &["--queue-delay", "-1"]);
    let b = builder(&stuck, &stuck.token);
    let id = b.start(&request(&good)).await.unwrap();
    assert_eq!(b.poll(&id, 0).await.unwrap().state, BuildState::Queued);
    b.cancel(&id).await.unwrap();
    let p = b.poll(&id, 0).await.unwrap();
    assert_eq!(
        p.state,
        BuildState::Failed("cancelled in the Jenkins queue".into())
    );
    assert!(stuck.log().contains("CANCEL queue=1"), "{}", stuck.log());

    // A running build is stopped: Jenkins ends it ABORTED.
    let slow = JenkinsStub::start_with(&[(JOB, &git.url)], &index, &["--hold", "60"]);
    let b = builder(&slow, &slow.token);
    let id = b.start(&request(&good)).await.unwrap();
    let r = build_of(&b, &id).await;
    b.cancel(&id).await.unwrap();
    let f = follow(&b, &id).await;
    assert_eq!(
        f.last.state,
        BuildState::Failed("Jenkins says ABORTED".into()),
        "{}",
        f.console
    );
    assert!(
        slow.log()
            .contains(&format!("STOP job=demo%20build number={}", r.number)),
        "{}",
        slow.log()
    );
}
