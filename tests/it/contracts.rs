//! Contract tests of the Jenkins and Bitbucket clients against stubs made as awkward as
//! the products (issue 26's independent fakes): Jenkins' crumb tied to its session
//! cookie, a queue item that waits several polls, the console in 300-byte chunks, the
//! archived file read back and hashed; Bitbucket's commit lists paged 2 at a time, an
//! unknown ref, and a build status refused without a URL.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use deploy::artifacts::Secret;
use deploy::builder::jenkins::Jenkins;
use deploy::builder::{BuildRequest, BuildState, Builder};
use deploy::githost::bitbucket::Bitbucket;
use deploy::githost::{BuildStatus, GitHost};
use sha2::{Digest, Sha256};
use support::Testbed;
use support::git::{Change, GitRepos};
use support::jenkins::{GitServer, JenkinsStub};

const JOB: &str = "contract build";
const WHEEL: &str = "contract_demo-0.1.0-py3-none-any.whl";
const BB_TOKEN: &str = "bb-contract-token-77";

#[tokio::test]
async fn jenkins_client_follows_a_session_crumb_a_slow_queue_and_300_byte_chunks_to_whole_lines() {
    let tb = Testbed::up("contracts", 0);
    let index = format!("http://127.0.0.1:{}/", tb.index_port);
    let git = GitServer::start("contract");
    // A line longer than a chunk ("adding <this path>"), and characters of two bytes.
    let deep = format!(
        "contract_demo/{}/{}/{}/m.py",
        "a".repeat(90),
        "b".repeat(90),
        "c".repeat(90)
    );
    let commit = git.commit(
        "a project",
        &[
            (
                "pyproject.toml",
                "[project]\nname = \"contract-demo\"\nversion = \"0.1.0\"\n",
            ),
            ("contract_demo/__init__.py", "GREETING = 'héllo wörld'\n"),
            (&deep, "Y = 1\n"),
            ("contract_demo/ünïcode_ñame.py", "Z = 2\n"),
        ],
    );
    let opts = ["--queue-polls", "4", "--console-chunk", "300"];
    let stub = JenkinsStub::start_with(&[(JOB, &git.url)], &index, &opts);
    let b = Jenkins::new(
        stub.base_url.clone(),
        stub.user.clone(),
        Secret::new(&stub.token),
        BTreeMap::from([("demo".to_string(), JOB.to_string())]),
    )
    .unwrap();
    let req = BuildRequest {
        app: "demo".into(),
        commit,
    };
    let id = b
        .start(&req)
        .await
        .expect("started through the session's crumb");
    let (mut offset, mut queued, mut pieces) = (0, 0, Vec::<String>::new());
    let last = loop {
        let p = b.poll(&id, offset).await.unwrap();
        offset = p.next_offset;
        queued += usize::from(p.state == BuildState::Queued);
        if !p.console.is_empty() {
            pieces.push(p.console.clone());
        }
        match p.state {
            BuildState::Queued | BuildState::Running => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            _ => break p,
        }
    };
    assert_eq!(last.state, BuildState::Succeeded, "{pieces:?}");
    assert!(queued >= 4, "the queue item waited {queued} polls");
    let console: String = pieces.concat();
    assert!(console.contains(&format!("adding {deep}")), "{console}");
    assert!(
        !console.contains('\u{fffd}'),
        "a character was cut: {console}"
    );
    assert!(console.ends_with("Finished: SUCCESS\n"), "{console}");
    // Every piece ends at a line's end, but for the pieces of a line longer than a chunk.
    for p in &pieces[..pieces.len() - 1] {
        assert!(p.ends_with('\n') || !p.contains('\n'), "a cut line: {p:?}");
    }
    assert!(pieces.len() > 3, "300-byte chunks: {pieces:?}");
    // The POST went through the crumb of the session it came with.
    let log = stub.log();
    assert!(log.contains("buildWithParameters?COMMIT="), "{log}");
    assert!(!log.contains(" 403"), "{log}");
    // The archived file, read back and hashed, is the file the index serves.
    let sha = b.artifact_sha256(&id, WHEEL).await.unwrap();
    let (code, page) = support::http_get(tb.index_port, "127.0.0.1", "/simple/contract-demo/");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(&format!("{WHEEL}#sha256={sha}")),
        "{sha}: {page}"
    );
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/job/contract%20build/1/artifact/dist/{WHEEL}",
            stub.base_url
        ))
        .basic_auth(&stub.user, Some(&stub.token))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha, hex::encode(Sha256::digest(&raw)));
    let e = b.artifact_sha256(&id, "other-1.0-py3-none-any.whl").await;
    assert!(e.is_err(), "{e:?}");
}

#[tokio::test]
async fn bitbucket_client_pages_two_at_a_time_says_the_git_host_and_sends_statuses_with_a_url() {
    let repos = GitRepos::new();
    let repo = "PROJ/contract";
    let names = ["c0", "c1", "c2", "c3", "c4"];
    let files = names.map(|n| [("f.txt", n)]);
    let history: Vec<Change> = (0..5)
        .map(|i| Change {
            author: "Ann Dev",
            message: names[i],
            files: &files[i],
        })
        .collect();
    let ids = repos.create(repo, &history);
    let stub = repos.bitbucket_stub(BB_TOKEN, 2);
    let bb = Bitbucket::new(stub.url.clone(), Some(Secret::new(BB_TOKEN))).unwrap();

    let got = bb.commits_between(repo, &ids[0], "main").await.unwrap();
    let got: Vec<&str> = got.iter().map(|c| c.id.as_str()).collect();
    let want: Vec<&str> = ids[1..].iter().rev().map(String::as_str).collect();
    assert_eq!(got, want);
    let pages = stub.log().matches("/commits?").count();
    assert!(pages >= 2, "two per page: {}", stub.log());
    assert_eq!(bb.default_head(repo).await.unwrap().id, ids[4]);

    let e = bb.resolve(repo, "no-such-branch").await.unwrap_err();
    assert!(e.is_missing(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("the git host"), "{msg}");
    assert!(
        !msg.contains("Bitbucket") && !msg.contains("http://"),
        "{msg}"
    );

    let mut status = BuildStatus {
        state: "FAILED",
        key: "deploy-j1".into(),
        name: "deploy: contract build".into(),
        url: String::new(),
    };
    let refused = bb.report_build(repo, &ids[4], &status).await;
    assert!(
        refused.is_err(),
        "the stub refuses a status without a URL as Bitbucket does"
    );
    status.url = "http://ci.example.test/job/contract/1/".into();
    bb.report_build(repo, &ids[4], &status).await.unwrap();
}
