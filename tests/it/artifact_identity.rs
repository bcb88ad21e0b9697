//! Issue 26, items 1 and 2, through the real binaries, two containers (staging: web1,
//! production: web2), `git daemon` and the Bitbucket stub over one repository, and the
//! Jenkins stub as awkward as the findings' fakes (`--skip-existing`: an upload the index
//! already has is skipped, the common pattern; `--console-chunk 300`; `--queue-polls 3`).
//!
//! Findings reproduced: a commit that does not bump the version was "released" (exit 0)
//! and the ledger named it while the hosts ran the older commit's file; `changes -e
//! production` compared with the build run last (an old tag's) and said 0 commits; an
//! unknown ref exited 1 naming "Bitbucket at http://..."; a console line cut at a chunk
//! boundary showed as two lines; a build status was posted with an empty URL.

use crate::support;

use serde_json::Value;
use support::git::{Change, GitRepos};
use support::jenkins::JenkinsStub;
use support::{Gateway, Testbed, served_version};

const BB_TOKEN: &str = "bb-token-26a1f0";

fn pyproject(version: &str) -> String {
    format!(
        "[project]\nname = \"hello-app\"\nversion = \"{version}\"\ndependencies = [\"gunicorn\"]\n"
    )
}

/// The app, saying its version and which commit's code it is.
fn app(mark: &str) -> String {
    format!(
        r#""""hello-app, issue 26's repository."""


def app(environ, start_response):
    from importlib.metadata import version
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ.get("PATH_INFO") == "/healthz":
        return [b"ok\n"]
    return [(version("hello-app") + " {mark}\n").encode()]
"#
    )
}

/// Staging on web1, production on web2.
fn inventory(tb: &Testbed) -> String {
    let inv = tb.inventory_text();
    let at = inv.find("  web2:").expect("web2 in the inventory");
    let (head, tail) = inv.split_at(at);
    let tail = tail.replacen("groups: [web]", "groups: [prod]", 1);
    format!("{head}{tail}").replace(
        "      staging:\n        groups: [web]\n",
        "      staging:\n        groups: [web]\n      production:\n        groups: [prod]\n",
    )
}

fn config(tb: &Testbed, bb: &str, jenkins: &JenkinsStub) -> String {
    format!(
        r#"[sources.pypi]
kind = "simple"
url = "http://127.0.0.1:{index}/simple/"
servers_url = "http://index:8080/simple/"
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
git = "stash"
repository = "PROJ/hello"
builder = "ci"
build_job = "hello-build"
"#,
        index = tb.index_port,
        jurl = jenkins.base_url,
        juser = jenkins.user,
    )
}

fn get_json(gw: &Gateway, token: &str, path: &str) -> Value {
    let (code, _, body) = gw.http("GET", path, Some(token), None);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The output lines of the newest build job.
fn build_lines(gw: &Gateway, token: &str) -> Vec<String> {
    let jobs = get_json(gw, token, "/v1/jobs?limit=50");
    let job = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "build")
        .expect("a build job");
    let log = get_json(
        gw,
        token,
        &format!("/v1/jobs/{}/log", job["id"].as_str().unwrap()),
    );
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "output")
        .map(|e| e["event"]["line"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The console of Jenkins build `n` of `hello-build`, read whole from the stub.
fn jenkins_console(j: &JenkinsStub, n: u64) -> String {
    block(async {
        let mut text = Vec::new();
        let http = reqwest::Client::new();
        for _ in 0..1000 {
            let resp = http
                .get(format!(
                    "{}/job/hello-build/{n}/logText/progressiveText?start={}",
                    j.base_url,
                    text.len()
                ))
                .basic_auth(&j.user, Some(&j.token))
                .send()
                .await
                .unwrap();
            let more = resp.headers().contains_key("X-More-Data");
            text.extend_from_slice(&resp.bytes().await.unwrap());
            if !more {
                return String::from_utf8(text).unwrap();
            }
        }
        panic!("the console of build {n} did not end");
    })
}

/// The build statuses the stub holds for `commit` (newest first).
fn statuses(bb: &support::git::Server, commit: &str) -> Vec<Value> {
    block(async {
        let resp = reqwest::Client::new()
            .get(format!("{}/rest/build-status/1.0/commits/{commit}", bb.url))
            .bearer_auth(BB_TOKEN)
            .send()
            .await
            .unwrap();
        let page: Value = resp.json().await.unwrap();
        page["values"].as_array().cloned().unwrap_or_default()
    })
}

#[test]
fn issue26_an_unbumped_commit_fails_its_build_the_ledger_names_what_runs_and_changes_sees_staging()
{
    let tb = Testbed::up("artifact-identity", 2);
    tb.set_inventory(&inventory(&tb));
    let repos = GitRepos::new();
    let repo = "PROJ/hello";
    let (v23, v24, v25) = (pyproject("2.3.0"), pyproject("2.4.0"), pyproject("2.5.0"));
    let (one, two, three) = (app("one"), app("two"), app("three"));
    let ids = repos.create(
        repo,
        &[
            Change {
                author: "Ann Dev",
                message: "ACME-1 the old line",
                files: &[("pyproject.toml", &v23), ("hello_app/__init__.py", &one)],
            },
            Change {
                author: "Ann Dev",
                message: "ACME-2 2.4.0",
                files: &[("pyproject.toml", &v24)],
            },
            Change {
                author: "Bob Dev",
                message: "ACME-3 new code, version not bumped",
                files: &[("hello_app/__init__.py", &two)],
            },
            Change {
                author: "Cy Dev",
                message: "ACME-4 2.5.0",
                files: &[("pyproject.toml", &v25), ("hello_app/__init__.py", &three)],
            },
        ],
    );
    let (c0, c1, c2, c3) = (
        ids[0].as_str(),
        ids[1].as_str(),
        ids[2].as_str(),
        ids[3].as_str(),
    );
    repos.tag(repo, "v2.3.0", c0);
    let daemon = repos.git_daemon();
    let bb = repos.bitbucket_stub(BB_TOKEN, 2);
    let jenkins = JenkinsStub::start_with(
        &[("hello-build", &format!("{}/{repo}", daemon.url))],
        &format!("http://127.0.0.1:{}/", tb.index_port),
        &[
            "--skip-existing",
            "--console-chunk",
            "300",
            "--queue-polls",
            "3",
        ],
    );
    let env = [
        ("JENKINS_TOKEN", jenkins.token.as_str()),
        ("BB_TOKEN", BB_TOKEN),
    ];
    let cfg = config(&tb, &bb.url, &jenkins);
    let gw = Gateway::start_with(Some(&tb), "0.1.0", "0.1.0", Some(&cfg), &env);
    let admin = gw.token("admin", "", true);
    let t = Some(admin.as_str());
    let (web1, web2) = (&tb.servers[0], &tb.servers[1]);

    // c1 (2.4.0) to staging and production.
    let out = gw.run(t, &["release", "hello", "--ref", c1, "-e", "staging"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(served_version(web1), "2.4.0 one");
    // The console arrived in 300-byte chunks: every line of the job is a whole line of
    // Jenkins' console, in order (a line cut at a chunk's end is not two lines).
    let console = jenkins_console(&jenkins, 1);
    let lines = build_lines(&gw, &admin);
    let whole: Vec<&str> = console.lines().collect();
    let shown: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| whole.contains(l))
        .collect();
    assert_eq!(shown, whole, "job lines: {lines:#?}");
    assert!(console.len() > 300, "several chunks: {console}");
    let out = gw.run(
        t,
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

    // c2 changes the code without bumping 2.4.0; Jenkins skips the upload (the index has
    // 2.4.0) and archives its own wheel: the build fails, plainly, and nothing deploys.
    let out = gw.run(t, &["release", "hello", "--ref", c2, "-e", "staging", "-y"]);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        all.contains("the index already holds 2.4.0 with different contents: bump the version"),
        "{out:?}"
    );
    assert!(jenkins.log().contains("Skipping") || console_of_last(&jenkins).contains("Skipping"));
    assert!(
        !all.contains("started: deploy"),
        "nothing deployed: {out:?}"
    );
    assert_eq!(served_version(web1), "2.4.0 one", "staging runs c1's code");
    // The ledger links staging 2.4.0 to c1, whose file runs there, never to c2.
    let ledger = get_json(&gw, &admin, "/v1/ledger?app=hello");
    for r in ledger.as_array().unwrap() {
        assert_eq!(r["artifact"]["commit"], c1, "{r}");
    }
    let diff = get_json(&gw, &admin, "/v1/apps/hello/diff?a=staging&b=production");
    assert_eq!(diff["a"]["commit"], c1, "{diff}");
    // Bitbucket shows c2's build failed, with the build's page as its URL.
    let st = statuses(&bb, c2);
    assert!(!st.is_empty(), "a status for c2: {}", bb.log());
    assert_eq!(st[0]["state"], "FAILED", "{st:?}");
    assert!(st[0]["url"].as_str().unwrap().starts_with("http"), "{st:?}");

    // c3 bumps to 2.5.0: staging gets it.  Then an old tag is built last (2.3.0).
    let out = gw.run(t, &["release", "hello", "--ref", c3, "-e", "staging", "-y"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(served_version(web1), "2.5.0 three");
    let out = gw.run(t, &["build", "hello", "--ref", "v2.3.0"]);
    assert_eq!(out.code, 0, "{out:?}");
    // changes -e production: against what staging runs (c3), not the build run last.
    let ch = gw.run(t, &["--json", "changes", "hello", "-e", "production"]);
    assert_eq!(ch.code, 0, "{ch:?}");
    let ch: Value = serde_json::from_str(&ch.stdout).unwrap();
    let commits: Vec<&str> = ch["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(commits, [c3, c2], "{ch}");
    assert_eq!(ch["candidate"], "what staging runs", "{ch}");
    let text = gw.run(t, &["changes", "hello", "-e", "production"]);
    assert!(text.stdout.contains("(what staging runs)"), "{text:?}");
    // ... and for staging (nothing newer elsewhere): the newest build of main, c3.
    let ch = gw.run(t, &["--json", "changes", "hello", "-e", "staging"]);
    let ch: Value = serde_json::from_str(&ch.stdout).unwrap();
    assert_eq!(ch["commit"], c3, "{ch}");
    assert_eq!(
        ch["candidate"], "the newest build of the default branch",
        "{ch}"
    );

    // An unknown ref: exit 2, in the gateway's words (never the product or its URL).
    let out = gw.run(
        t,
        &[
            "release",
            "hello",
            "--ref",
            "no-such-branch",
            "-e",
            "staging",
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("the git host"), "{out:?}");
    for word in ["Bitbucket", "http://", "Jenkins"] {
        assert!(!out.stderr.contains(word), "{word} in {out:?}");
    }
    let _ = c0;
    assert_eq!(served_version(web2), "2.4.0 one");
}

/// The console of the stub's newest build.
fn console_of_last(j: &JenkinsStub) -> String {
    let n = j.builds().last().map(|b| b.number).unwrap_or(1);
    jenkins_console(j, n)
}

#[test]
fn issue26_a_build_that_cannot_start_posts_no_status_without_a_url() {
    let repos = GitRepos::new();
    let ids = repos.create(
        "PROJ/hello",
        &[Change {
            author: "Ann Dev",
            message: "first",
            files: &[("pyproject.toml", &pyproject("9.0.0"))],
        }],
    );
    let bb = repos.bitbucket_stub(BB_TOKEN, 2);
    // A Jenkins that is not there: the build cannot start.
    let dead = support::git::free_port();
    let cfg = format!(
        r#"[sources.pypi]
kind = "simple"
url = "http://127.0.0.1:{dead}/simple/"
[git.stash]
kind = "bitbucket"
url = "{bb}"
token_env = "BB_TOKEN"
[builders.ci]
kind = "jenkins"
url = "http://127.0.0.1:{dead}"
user = "u"
token_env = "JENKINS_TOKEN"
[applications.hello]
source = "pypi"
git = "stash"
repository = "PROJ/hello"
builder = "ci"
"#,
        bb = bb.url
    );
    let env = [("JENKINS_TOKEN", "jt-x"), ("BB_TOKEN", BB_TOKEN)];
    let gw = Gateway::start_with(None, "0.1.0", "0.1.0", Some(&cfg), &env);
    let admin = gw.token("admin", "", true);
    let out = gw.run(Some(&admin), &["build", "hello", "--ref", ids[0].as_str()]);
    assert_eq!(out.code, 1, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("cannot start the build"), "{out:?}");
    assert!(
        all.contains("the CI server") && !all.contains("Jenkins"),
        "{out:?}"
    );
    // No status with an empty URL was offered to Bitbucket (it answers 400 to one).
    let log = bb.log();
    assert!(
        !log.contains("build-status/1.0/commits/") || !log.contains(" 400"),
        "{log}"
    );
    assert!(statuses(&bb, &ids[0]).is_empty(), "{log}");
}
