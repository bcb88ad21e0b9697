//! The pipeline end to end, on real parts: a real git server (`git daemon`) and the
//! Bitbucket stub over the same repository, the Jenkins stub that really builds (clone,
//! checkout, wheel, upload to the test bed's pypiserver), the gateway and the CLI as
//! processes, four containers (staging: web1-3, production: web4), and a receiver for
//! the webhook and JIRA's comment API in this process.

use crate::support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use deploy::notify::hmac;
use serde_json::Value;
use support::git::{Change, GitRepos, free_port};
use support::jenkins::JenkinsStub;
use support::{Gateway, Testbed, served_version};

const HOOK_KEY: &str = "hook-key-7f3a9c2e41";
const JIRA_TOKEN: &str = "jira-token-55e1d0b7aa";
const BB_TOKEN: &str = "bb-token-c0ffee1234";

fn pyproject(version: &str) -> String {
    format!(
        "[project]\nname = \"hello-app\"\nversion = \"{version}\"\ndependencies = [\"gunicorn\"]\n"
    )
}

const APP: &str = r#""""hello-app, as the pipeline test's repository holds it."""


def app(environ, start_response):
    from importlib.metadata import version
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ.get("PATH_INFO") == "/healthz":
        return [b"ok\n"]
    return [(version("hello-app") + "\n").encode()]
"#;

/// What the receiver saw: verified webhook deliveries and JIRA comments.
#[derive(Default)]
struct Seen {
    /// (X-Deploy-Event, job id, delivery id)
    hooks: Vec<(String, String, String)>,
    bad_signatures: u32,
    /// (issue key, comment body)
    comments: Vec<(String, String)>,
}

type Shared = Arc<Mutex<Seen>>;

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn hook(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = s.lock().unwrap();
    if !hmac::verify(
        HOOK_KEY.as_bytes(),
        &body,
        &header(&h, "x-deploy-signature"),
    ) {
        seen.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    let job = json["job"]["id"]
        .as_str()
        .or(json["job_id"].as_str())
        .unwrap_or_default()
        .to_string();
    seen.hooks.push((
        header(&h, "x-deploy-event"),
        job,
        header(&h, "x-deploy-delivery"),
    ));
    StatusCode::NO_CONTENT
}

/// JIRA's `POST /rest/api/2/issue/{key}/comment` (basic auth with the API token).
async fn jira(
    State(s): State<Shared>,
    UrlPath(key): UrlPath<String>,
    h: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let auth = header(&h, "authorization");
    let decoded = auth.strip_prefix("Basic ").map(b64).unwrap_or_default();
    if decoded != format!("bot@acme.test:{JIRA_TOKEN}") {
        return StatusCode::UNAUTHORIZED;
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = json["body"].as_str().unwrap_or_default().to_string();
    s.lock().unwrap().comments.push((key, text));
    StatusCode::CREATED
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The receiver on a free port, served by a runtime of its own.
fn receiver() -> (u16, Shared) {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/jira/rest/api/2/issue/{key}/comment", post(jira))
        .with_state(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (port, seen)
}

/// Staging on web1-3, production on web4.
fn inventory(tb: &Testbed) -> String {
    let inv = tb.inventory_text();
    let at = inv.find("  web4:").expect("web4 in the inventory");
    let (head, tail) = inv.split_at(at);
    let tail = tail.replacen("groups: [web]", "groups: [prod]", 1);
    format!("{head}{tail}").replace(
        "      staging:\n        groups: [web]\n",
        "      staging:\n        groups: [web]\n      production:\n        groups: [prod]\n",
    )
}

fn config(
    tb: &Testbed,
    daemon: &str,
    bb: &str,
    jenkins: &JenkinsStub,
    rx: u16,
    dead: u16,
) -> String {
    format!(
        r#"[sources.pypi]
kind = "simple"
url = "http://127.0.0.1:{index}/simple/"
servers_url = "http://index:8080/simple/"
[git.origin]
kind = "git"
url = "{daemon}"
[git.stash]
kind = "bitbucket"
url = "{bb}"
token_env = "BB_TOKEN"
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
[[notify]]
kind = "webhook"
url = "http://127.0.0.1:{rx}/hook"
secret_env = "HOOK_KEY"
[[notify]]
kind = "webhook"
url = "http://127.0.0.1:{dead}/hook"
secret_env = "HOOK_KEY"
apps = ["hello"]
events = ["succeeded", "failed"]
attempts = 4
retry_ms = 500
[[notify]]
kind = "jira"
url = "http://127.0.0.1:{rx}/jira"
user = "bot@acme.test"
token_env = "JIRA_TOKEN"
"#,
        index = tb.index_port,
        jurl = jenkins.base_url,
        juser = jenkins.user,
    )
}

fn json(out: &support::CliRun) -> Value {
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

fn commit_ids(v: &Value) -> Vec<String> {
    v["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// The index's SHA-256 of a file, from pypiserver's simple page.
fn index_sha(tb: &Testbed, file: &str) -> String {
    let (code, page) = support::http_get(tb.index_port, "127.0.0.1", "/simple/hello-app/");
    assert_eq!(code, 200, "{page}");
    let at = page
        .find(file)
        .unwrap_or_else(|| panic!("{file} not on the index: {page}"));
    let frag = &page[at..];
    let s = frag.find("#sha256=").expect("a hash in the link") + 8;
    frag[s..s + 64].to_string()
}

#[test]
fn a_commit_is_built_once_deployed_promoted_and_its_trail_written() {
    let tb = Testbed::up("pipeline", 4);
    tb.set_inventory(&inventory(&tb));
    let repos = GitRepos::new();
    let hello = "PROJ/hello";
    // Two commits on main: c1 (3.0.0), c2 (3.1.0).
    let (py1, py2) = (pyproject("3.0.0"), pyproject("3.1.0"));
    let ids = repos.create(
        hello,
        &[
            Change {
                author: "Ann Dev",
                message: "ACME-10 first release",
                files: &[("pyproject.toml", &py1), ("hello_app/__init__.py", APP)],
            },
            Change {
                author: "Bob Dev",
                message: "ACME-12 say hello in 3.1",
                files: &[("pyproject.toml", &py2)],
            },
        ],
    );
    let c1 = ids[0].clone();
    let c2 = ids[1].clone();
    let daemon = repos.git_daemon();
    let bb = repos.bitbucket_stub(BB_TOKEN, 2);
    let jenkins = JenkinsStub::start(
        &[("hello-build", &format!("{}/{hello}", daemon.url))],
        &format!("http://127.0.0.1:{}/", tb.index_port),
    );
    let (rx, seen) = receiver();
    let dead = free_port();
    let env = [
        ("JENKINS_TOKEN", jenkins.token.as_str()),
        ("BB_TOKEN", BB_TOKEN),
        ("HOOK_KEY", HOOK_KEY),
        ("JIRA_TOKEN", JIRA_TOKEN),
    ];
    let cfg = config(&tb, &daemon.url, &bb.url, &jenkins, rx, dead);
    let mut gw = Gateway::start_with(Some(&tb), "0.1.0", "0.1.0", Some(&cfg), &env);
    let admin = gw.token("admin", "", true);
    let t = Some(admin.as_str());
    let outputs = std::cell::RefCell::new(String::new());
    let run = |gw: &Gateway, args: &[&str]| {
        let out = gw.run(t, args);
        outputs
            .borrow_mut()
            .push_str(&format!("{}{}", out.stdout, out.stderr));
        out
    };

    // 1. release --ref: one build, the wheel on the index, three hosts serve it.
    let out = run(
        &gw,
        &["release", "hello", "--ref", &c1[..10], "-e", "staging"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("built 3.0.0") || out.stdout.contains("built 3.0.0"),
        "{out:?}"
    );
    let builds = jenkins.builds();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(
        (builds[0].commit.as_str(), builds[0].result.as_str()),
        (c1.as_str(), "SUCCESS")
    );
    let sha1 = index_sha(&tb, "hello_app-3.0.0-py3-none-any.whl");
    for s in &tb.servers[..3] {
        assert_eq!(served_version(s), "3.0.0", "{}", s.name);
    }
    // The ledger names commit, build and the wheel's SHA-256 for every host.
    let (code, _, body) = gw.http("GET", "/v1/ledger?app=hello", t, None);
    assert_eq!(code, 200, "{body}");
    let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
    let staged: Vec<&Value> = rows.iter().filter(|r| r["env"] == "staging").collect();
    assert_eq!(staged.len(), 3, "{body}");
    for r in &staged {
        let a = &r["artifact"];
        assert_eq!(a["commit"], c1.as_str(), "{r}");
        assert_eq!(a["build"], builds[0].number.to_string().as_str(), "{r}");
        assert_eq!(a["sha256"], sha1.as_str(), "{r}");
        assert_eq!(a["file"], "hello_app-3.0.0-py3-none-any.whl", "{r}");
    }

    // 2. promote: production gets the very file staging runs.
    let out = run(
        &gw,
        &[
            "promote",
            "hello",
            "--from",
            "staging",
            "--to",
            "production",
            "-y",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(served_version(&tb.servers[3]), "3.0.0");
    let (_, _, body) = gw.http("GET", "/v1/ledger?app=hello", t, None);
    let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
    let prod = rows
        .iter()
        .find(|r| r["env"] == "production")
        .expect("a production row");
    assert_eq!(
        prod["artifact"]["sha256"],
        sha1.as_str(),
        "the very file staging runs: {prod}"
    );

    // 3. the next commit through `main`; the same commit again builds nothing.
    let out = run(&gw, &["release", "hello", "--ref", "main", "-e", "staging"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = run(&gw, &["release", "hello", "--ref", &c2, "-e", "staging"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("is built already"), "{out:?}");
    assert_eq!(jenkins.builds().len(), 2, "{:?}", jenkins.builds());
    for s in &tb.servers[..3] {
        assert_eq!(served_version(s), "3.1.0", "{}", s.name);
    }

    // 4. changes and diff read the same commits from plain git and from Bitbucket.
    let by_git = json(&gw.run(t, &["--json", "changes", "hello", "-e", "production"]));
    assert_eq!(commit_ids(&by_git), [c2.as_str()], "{by_git}");
    let diff = json(&gw.run(t, &["--json", "diff", "hello", "staging", "production"]));
    assert_eq!(commit_ids(&diff), [c2.as_str()], "{diff}");
    let text = gw.run(t, &["changes", "hello", "-e", "production"]);
    assert!(
        text.stdout.contains("ACME-12 say hello in 3.1") && text.stdout.contains("Bob Dev"),
        "{text:?}"
    );
    assert_eq!(text.code, 0, "{text:?}");
    // ... with the config diffs of a check beneath.
    let checked = run(&gw, &["changes", "hello", "-e", "production", "--check"]);
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(
        checked.stdout.contains("ACME-12") && checked.stderr.contains("started: check hello 3.1.0"),
        "{checked:?}"
    );
    std::fs::write(
        gw.config(),
        std::fs::read_to_string(gw.config())
            .unwrap()
            .replace("git = \"origin\"", "git = \"stash\""),
    )
    .unwrap();
    gw.restart();
    let by_bb = json(&gw.run(t, &["--json", "changes", "hello", "-e", "production"]));
    assert_eq!(
        by_git["commits"], by_bb["commits"],
        "git: {by_git}\nbitbucket: {by_bb}"
    );
    let text_bb = gw.run(t, &["changes", "hello", "-e", "production"]);
    assert_eq!(
        text.stdout, text_bb.stdout,
        "the same output through either git host"
    );
    // A release through Bitbucket: the ref resolves there, the build is on record.
    let out = run(&gw, &["release", "hello", "--ref", "main", "-e", "staging"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("is built already"), "{out:?}");
    assert!(
        bb.log()
            .contains("/rest/api/1.0/projects/PROJ/repos/hello/commits"),
        "{}",
        bb.log()
    );

    // 5. a broken pyproject.toml: the build fails with its console's last lines, nothing deploys.
    let c3 = repos.push(
        hello,
        &Change {
            author: "Cy Dev",
            message: "ACME-13 break the build",
            files: &[("pyproject.toml", "[project\nname = ")],
        },
    );
    let out = run(&gw, &["release", "hello", "--ref", &c3, "-e", "staging"]);
    assert_eq!(out.code, 1, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("pyproject.toml"),
        "the TOML error reaches the user: {out:?}"
    );
    assert_eq!(
        jenkins.builds().last().map(|b| b.result.clone()).as_deref(),
        Some("FAILURE")
    );
    assert!(
        !all.contains("deploy hello"),
        "nothing was deployed: {out:?}"
    );
    for s in &tb.servers[..3] {
        assert_eq!(served_version(s), "3.1.0", "{}", s.name);
    }

    // 6. promote is refused while staging's hosts disagree.
    support::exec(&tb.servers[2].container, "pkill -STOP -x sshd || true");
    let out = run(&gw, &["release", "hello", "3.0.0", "-e", "staging"]);
    support::exec(&tb.servers[2].container, "pkill -CONT -x sshd || true");
    assert_eq!(out.code, 1, "web3 could not be reached: {out:?}");
    let out = run(
        &gw,
        &[
            "promote",
            "hello",
            "--from",
            "staging",
            "--to",
            "production",
            "-y",
        ],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("staging does not run one release")
            || out.stderr.contains("fix it before promoting"),
        "{out:?}"
    );
    assert_eq!(served_version(&tb.servers[3]), "3.0.0");

    // 7. notifications: one signed delivery per job start and end; the dead receiver's
    // failures and retries are in the job's events; one comment on ACME-12.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.bad_signatures, 0);
    let (code, _, body) = gw.http("GET", "/v1/jobs?limit=50", t, None);
    assert_eq!(code, 200);
    let jobs: Vec<Value> = serde_json::from_str(&body).unwrap();
    let notified: Vec<&Value> = jobs.iter().filter(|j| j["kind"] != "check").collect();
    let deliveries: BTreeSet<&str> = seen.hooks.iter().map(|h| h.2.as_str()).collect();
    assert_eq!(
        deliveries.len(),
        seen.hooks.len(),
        "each delivery once: {:?}",
        seen.hooks
    );
    assert_eq!(
        seen.hooks.len(),
        2 * notified.len(),
        "{:?} for {} jobs",
        seen.hooks,
        notified.len()
    );
    let acme12: Vec<_> = seen.comments.iter().filter(|c| c.0 == "ACME-12").collect();
    assert_eq!(acme12.len(), 1, "{:?}", seen.comments);
    // The newest job: the deploy web3 missed (its dead receiver's route allows 4
    // attempts, 0.5 s, 1 s and 2 s apart).
    let last = &jobs[0];
    assert_eq!(
        (&last["kind"], &last["state"]),
        (&Value::from("deploy"), &Value::from("failed")),
        "{last}"
    );
    let id = last["id"].as_str().unwrap();
    let (_, _, log) = gw.http("GET", &format!("/v1/jobs/{id}/log"), t, None);
    let dead_tries = log.matches(&format!("127.0.0.1:{dead}")).count();
    assert_eq!(
        dead_tries, 4,
        "the failed delivery and its 3 retries are recorded: {log}"
    );
    assert!(
        log.contains("\"event\":\"job.failed\",\"attempt\":4,\"ok\":false"),
        "{log}"
    );

    // 8. no credential anywhere: events, the gateway's log, the database, the CLI's output.
    let mut events = String::new();
    for j in &jobs {
        let (_, _, l) = gw.http(
            "GET",
            &format!("/v1/jobs/{}/log", j["id"].as_str().unwrap()),
            t,
            None,
        );
        events.push_str(&l);
    }
    let db = String::from_utf8_lossy(&gw.db_bytes()).into_owned();
    let places = [
        ("events", &events),
        ("gateway log", &gw.log()),
        ("database", &db),
        ("CLI output", &outputs.borrow().clone()),
    ];
    let secrets = [jenkins.token.as_str(), BB_TOKEN, HOOK_KEY, JIRA_TOKEN];
    // The probe can fail: it finds each secret where it really is (the stub's token
    // file, and the environment the gateway got).
    let token_file = std::fs::read_to_string(jenkins.dir.path().join("token")).unwrap();
    assert!(token_file.contains(&jenkins.token));
    assert!(
        secrets
            .iter()
            .all(|s| env.iter().any(|(_, v)| v.contains(s)))
    );
    for (what, text) in places {
        assert!(!text.is_empty(), "{what} is empty");
        for s in secrets {
            assert!(!text.contains(s), "a secret leaked into the {what}");
        }
    }
}
