//! The two real git hosts (`PlainGit` over git:// and smart HTTP, `Bitbucket` over its
//! REST API) against one real history: `git daemon` and `ci/bitbucket_stub.py` serving
//! the same bare repositories (tests/support/git.rs).  No Docker needed.

use crate::support;

use deploy::artifacts::Secret;
use deploy::githost::bitbucket::Bitbucket;
use deploy::githost::git::PlainGit;
use deploy::githost::{Commit, GitHost};
use support::git::{Change, GitRepos, Server};

const REPO: &str = "PROJ/hello";
const TOKEN: &str = "bb-token-7d1f0c9e";
const WRONG: &str = "wrong-token-5f3a22";

/// A small Python project, seven commits (one with a multi-line message).
fn history() -> Vec<Change<'static>> {
    const TOML: &str = "[project]\nname = \"hello\"\nversion = \"0.1.0\"\n";
    const APP: &str =
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'hi']\n";
    let mut h = vec![Change {
        author: "Jane Doe",
        message: "Start the project",
        files: &[("pyproject.toml", TOML), ("hello/__init__.py", "")],
    }];
    h.push(Change {
        author: "Bo Li",
        message: "Add the WSGI app\n\nIt says hi.",
        files: &[("hello/app.py", APP)],
    });
    for (i, m) in [
        "Pin gunicorn",
        "Log requests",
        "Fix typo",
        "Bump to 0.2.0",
        "Add README",
    ]
    .iter()
    .enumerate()
    {
        let author = if i % 2 == 0 {
            "Jane Doe"
        } else {
            "Émile Zola"
        };
        h.push(Change {
            author,
            message: m,
            files: &[],
        });
    }
    h
}

struct World {
    repos: GitRepos,
    ids: Vec<String>,
    daemon: Server,
    stub: Server,
    cache: tempfile::TempDir,
}

impl World {
    /// Seven commits; tag `v1.0` at the third, branch `release/1.0` at the fifth; the
    /// stub's pages hold two commits.
    fn new() -> World {
        let repos = GitRepos::new();
        let ids = repos.create(REPO, &history());
        repos.tag(REPO, "v1.0", &ids[2]);
        repos.branch(REPO, "release/1.0", &ids[4]);
        let daemon = repos.git_daemon();
        let stub = repos.bitbucket_stub(TOKEN, 2);
        let cache = tempfile::tempdir().expect("cache dir");
        World {
            repos,
            ids,
            daemon,
            stub,
            cache,
        }
    }

    fn git(&self) -> PlainGit {
        PlainGit::new(self.daemon.url.clone(), self.cache.path().join("git"), None)
    }

    fn http(&self, token: &str) -> PlainGit {
        let base = format!("{}/scm", self.stub.url);
        PlainGit::new(
            base,
            self.cache.path().join("http"),
            Some(Secret::new(token)),
        )
    }

    fn bitbucket(&self, token: &str) -> Bitbucket {
        Bitbucket::new(self.stub.url.clone(), Some(Secret::new(token))).expect("client")
    }

    /// The commit `i` as the history made it.
    fn commit(&self, i: usize) -> Commit {
        let c = history()[i];
        Commit {
            id: self.ids[i].clone(),
            author: c.author.to_string(),
            subject: c.message.lines().next().unwrap_or_default().to_string(),
        }
    }

    fn hosts(&self) -> Vec<Box<dyn GitHost>> {
        vec![
            Box::new(self.git()),
            Box::new(self.http(TOKEN)),
            Box::new(self.bitbucket(TOKEN)),
        ]
    }
}

#[tokio::test]
async fn every_host_resolves_branches_tags_and_ids_to_the_same_commit() {
    let w = World::new();
    let short = &w.ids[3][..8];
    let cases = [
        ("main", 6),
        ("v1.0", 2),
        ("release/1.0", 4),
        (w.ids[3].as_str(), 3),
        (short, 3),
        (w.ids[1].as_str(), 1),
    ];
    for host in w.hosts() {
        for (reference, i) in cases {
            let got = host.resolve(REPO, reference).await;
            assert_eq!(
                got,
                Ok(w.commit(i)),
                "{} resolving {reference}",
                host.describe()
            );
        }
    }
}

#[tokio::test]
async fn every_host_lists_the_same_commits_newest_first_across_pages() {
    let w = World::new();
    let all_but_first: Vec<Commit> = (1..7).rev().map(|i| w.commit(i)).collect();
    for host in w.hosts() {
        let d = host.describe();
        let got = host.commits_between(REPO, &w.ids[0], "main").await;
        assert_eq!(got.as_ref(), Ok(&all_but_first), "{d}");
        let got = host.commits_between(REPO, "v1.0", "release/1.0").await;
        assert_eq!(got, Ok(vec![w.commit(4), w.commit(3)]), "{d}");
        let got = host.commits_between(REPO, "main", "main").await;
        assert_eq!(got, Ok(vec![]), "{d}");
        // Not an ancestor: what `to` adds (as git's `from..to`).
        let got = host.commits_between(REPO, "main", "v1.0").await;
        assert_eq!(got, Ok(vec![]), "{d}");
    }
    // Six commits at two a page: Bitbucket's client followed nextPageStart twice.
    let log = w.stub.log();
    for start in ["start=0", "start=2", "start=4"] {
        assert!(
            log.lines()
                .any(|l| l.contains("/commits?") && l.contains(start) && l.ends_with(" 200")),
            "no page at {start} in\n{log}"
        );
    }
    assert!(!log.contains("start=6"), "{log}");
}

#[tokio::test]
async fn unknown_refs_and_repositories_are_clear_errors() {
    let w = World::new();
    for host in w.hosts() {
        let d = host.describe();
        let e = host.resolve(REPO, "no-such-branch").await.unwrap_err();
        assert!(!e.is_retryable(), "{d}: {e}");
        let e = e.to_string();
        assert!(e.contains("no-such-branch"), "{d}: {e}");
        let e = host
            .commits_between(REPO, "no-such-tag", "main")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-tag"), "{d}: {e}");
        let e = host.resolve("PROJ/nothing", "main").await.unwrap_err();
        assert!(!e.is_retryable(), "{d}: {e}");
        let e = e.to_string();
        assert!(e.contains("nothing"), "{d}: {e}");
        for bad in ["-h", "--upload-pack=touch /tmp/x", "main..v1.0", "a b"] {
            let e = host.resolve(REPO, bad).await.unwrap_err().to_string();
            assert!(e.contains("not a branch, tag or commit id"), "{d}: {e}");
        }
    }
    let e = w
        .bitbucket(TOKEN)
        .resolve(REPO, "no-such-branch")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404") && e.contains("does not exist"), "{e}");
    let e = w
        .git()
        .resolve(REPO, "no-such-branch")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no branch, tag or commit no-such-branch"),
        "{e}"
    );
    // Refused before anything was asked.
    assert!(
        !w.stub.log().contains("upload-pack=touch"),
        "{}",
        w.stub.log()
    );
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_error_that_never_shows_the_token() {
    let w = World::new();
    let e = w.bitbucket(WRONG).resolve(REPO, "main").await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("401") && e.contains("Authentication failed"),
        "{e}"
    );
    assert!(!e.contains(WRONG), "{e}");
    let e = w.http(WRONG).resolve(REPO, "main").await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    let e = e.to_string();
    assert!(
        e.starts_with("git clone of http://127.0.0.1:") && e.contains("refused"),
        "{e}"
    );
    assert!(!e.contains(WRONG), "{e}");
    // The right token works over both, then: nothing on disk or in the log shows a token.
    assert!(w.http(TOKEN).resolve(REPO, "main").await.is_ok());
    assert!(w.bitbucket(TOKEN).resolve(REPO, "main").await.is_ok());
    let log = w.stub.log();
    assert!(log.contains(" 401\n") && log.contains(" 200\n"), "{log}");
    for token in [TOKEN, WRONG] {
        assert!(!log.contains(token), "the stub's log shows a token");
        assert!(
            files_containing(w.cache.path(), token).is_empty(),
            "a mirror holds a token"
        );
    }
    // The probe can fail: it finds the token where the test itself put it.
    let found = files_containing(w.repos.root().parent().unwrap(), TOKEN);
    assert!(
        found
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".token")),
        "{found:?}"
    );
    assert!(format!("{:?}", w.bitbucket(TOKEN)).contains("***"));
    assert!(!format!("{:?} {:?}", w.bitbucket(TOKEN), w.http(TOKEN)).contains(TOKEN));
}

#[tokio::test]
async fn plain_git_fetches_before_each_answer() {
    let w = World::new();
    for host in [w.git(), w.http(TOKEN)] {
        assert_eq!(host.resolve(REPO, "main").await, Ok(w.commit(6)));
    }
    let new = w.repos.push(
        REPO,
        &Change {
            author: "Bo Li",
            message: "Add health check",
            files: &[("hello/health.py", "OK = True\n")],
        },
    );
    w.repos.tag(REPO, "v2.0", &new);
    for host in [w.git(), w.http(TOKEN)] {
        let d = host.describe();
        let c = host.resolve(REPO, "main").await.expect("resolve");
        assert_eq!(
            (c.id.as_str(), c.subject.as_str()),
            (new.as_str(), "Add health check"),
            "{d}"
        );
        assert_eq!(
            host.resolve(REPO, "v2.0").await.map(|c| c.id),
            Ok(new.clone()),
            "{d}"
        );
        let between = host
            .commits_between(REPO, &w.ids[6], "main")
            .await
            .expect("between");
        assert_eq!(between.len(), 1, "{d}");
    }
    // A moved tag and a deleted branch are seen too (`fetch --prune`, forced refspecs).
    w.repos.tag(REPO, "v1.0", &w.ids[0]);
    super_git(&w, &["branch", "-D", "release/1.0"]);
    let host = w.git();
    assert_eq!(
        host.resolve(REPO, "v1.0").await.map(|c| c.id),
        Ok(w.ids[0].clone())
    );
    assert!(host.resolve(REPO, "release/1.0").await.is_err());
}

#[tokio::test]
async fn one_mirror_answers_concurrent_questions() {
    let w = World::new();
    let host = w.git();
    let asks = (0..6).map(|i| host.resolve(REPO, &w.ids[i]));
    let got = futures_util::future::join_all(asks).await;
    for (i, c) in got.into_iter().enumerate() {
        assert_eq!(c, Ok(w.commit(i)));
    }
}

fn super_git(w: &World, args: &[&str]) {
    support::git::git(&w.repos.bare(REPO), args);
}

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(p);
            }
        }
    }
    found
}
