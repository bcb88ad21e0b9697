//! Test support: real git repositories (bare, on disk, made with the `git` CLI), a `git
//! daemon` serving them over git:// and `ci/bitbucket_stub.py` answering Bitbucket
//! Server's REST API (and smart HTTP under `/scm`) from the same repositories.  Both
//! servers listen on free ports of 127.0.0.1 and are killed on drop (test failures too).
//!
//! Layout: repository `KEY/slug` is the bare repository `<root>/KEY/slug.git`, its
//! history made in a work clone beside it and pushed to `main`.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One commit to make: its author, message and the files it writes (path, contents).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub author: &'a str,
    pub message: &'a str,
    pub files: &'a [(&'a str, &'a str)],
}

/// Bare repositories under one temporary root.
pub struct GitRepos {
    dir: tempfile::TempDir,
    /// Commit dates count up from here, one second per commit (a stable order).
    clock: AtomicU64,
}

impl Default for GitRepos {
    fn default() -> Self {
        Self::new()
    }
}

impl GitRepos {
    pub fn new() -> GitRepos {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("repos")).expect("repos dir");
        GitRepos {
            dir,
            clock: AtomicU64::new(1_700_000_000),
        }
    }

    /// The base path: `KEY/slug.git` under it.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    /// The bare repository of `KEY/slug`.
    pub fn bare(&self, repo: &str) -> PathBuf {
        self.root().join(format!("{repo}.git"))
    }

    fn work(&self, repo: &str) -> PathBuf {
        self.dir.path().join("work").join(repo)
    }

    /// Creates `KEY/slug` with `history` (oldest first) on `main`: the commit ids, oldest
    /// first.  Partial clones are allowed (`uploadpack.allowFilter`).
    pub fn create(&self, repo: &str, history: &[Change]) -> Vec<String> {
        let bare = self.bare(repo);
        let work = self.work(repo);
        std::fs::create_dir_all(&work).expect("work dir");
        git(
            &self.root(),
            &["init", "-q", "--bare", "-b", "main", &path_str(&bare)],
        );
        git(&bare, &["config", "uploadpack.allowFilter", "true"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", &path_str(&bare)]);
        history.iter().map(|c| self.push(repo, c)).collect()
    }

    /// Commits `change` on `main` and pushes it: its id.
    pub fn push(&self, repo: &str, change: &Change) -> String {
        let work = self.work(repo);
        for (path, contents) in change.files {
            let p = work.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("file's dir");
            }
            std::fs::write(&p, contents).expect("write file");
        }
        git(&work, &["add", "-A"]);
        let date = format!("@{} +0000", self.clock.fetch_add(1, Ordering::SeqCst));
        let email = format!(
            "{}@example.com",
            change.author.replace(' ', ".").to_lowercase()
        );
        let out = Command::new("git")
            .current_dir(&work)
            .args(["commit", "-q", "--allow-empty", "-m", change.message])
            .envs(isolated())
            .envs([
                ("GIT_AUTHOR_NAME", change.author),
                ("GIT_AUTHOR_EMAIL", &email),
                ("GIT_AUTHOR_DATE", &date),
                ("GIT_COMMITTER_NAME", "CI"),
                ("GIT_COMMITTER_EMAIL", "ci@example.com"),
                ("GIT_COMMITTER_DATE", &date),
            ])
            .output()
            .expect("run git commit");
        assert!(
            out.status.success(),
            "git commit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
        git(&work, &["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Points tag `name` (lightweight) at `id`.
    pub fn tag(&self, repo: &str, name: &str, id: &str) {
        git(&self.bare(repo), &["tag", "-f", name, id]);
    }

    /// Points branch `name` at `id`.
    pub fn branch(&self, repo: &str, name: &str, id: &str) {
        git(&self.bare(repo), &["branch", "-f", name, id]);
    }

    /// `git daemon` serving [`GitRepos::root`] (read-only).
    pub fn git_daemon(&self) -> Server {
        let port = free_port();
        let log = self.dir.path().join(format!("git-daemon-{port}.stderr"));
        let mut cmd = Command::new("git");
        cmd.args([
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--informative-errors",
        ])
        .arg("--listen=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", self.root().display()))
        .envs(isolated());
        Server::start(cmd, port, format!("git://127.0.0.1:{port}"), log)
    }

    /// `ci/bitbucket_stub.py` on [`GitRepos::root`]: requires `Bearer <token>`; pages hold
    /// at most `max_limit` commits.  Smart HTTP is at `<url>/scm/KEY/slug.git`.
    pub fn bitbucket_stub(&self, token: &str, max_limit: u32) -> Server {
        let port = free_port();
        let token_file = self.dir.path().join(format!("bitbucket-{port}.token"));
        std::fs::write(&token_file, token).expect("write token file");
        let log = self.dir.path().join(format!("bitbucket-{port}.log"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/bitbucket_stub.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--repos")
            .arg(self.root())
            .arg("--token-file")
            .arg(&token_file)
            .arg("--log")
            .arg(&log)
            .args(["--max-limit", &max_limit.to_string()])
            .envs(isolated());
        Server::start(cmd, port, format!("http://127.0.0.1:{port}"), log)
    }
}

/// A server process, killed on drop.
pub struct Server {
    child: Child,
    /// `git://127.0.0.1:PORT` or `http://127.0.0.1:PORT`.
    pub url: String,
    /// The stub's access log (`METHOD PATH STATUS` lines), or the daemon's stderr.
    pub log: PathBuf,
}

impl Server {
    fn start(mut cmd: Command, port: u16, url: String, log: PathBuf) -> Server {
        let err = std::fs::File::create(log.with_extension("stderr")).expect("stderr file");
        // Its own process group: `git daemon` runs `git-daemon` (and that, a child per
        // connection), so drop kills the group, not just the process it started.
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start server");
        let mut server = Server { child, url, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = server.child.try_wait().ok().flatten();
            let stderr = std::fs::read_to_string(server.log.with_extension("stderr"));
            assert!(
                exited.is_none(),
                "{} exited ({exited:?}): {stderr:?}",
                server.url
            );
            assert!(
                Instant::now() < deadline,
                "{} did not listen: {stderr:?}",
                server.url
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The access log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// No user or system git config (signing, hooks, default branch) leaks into the tests.
fn isolated() -> [(&'static str, &'static str); 3] {
    [
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_TERMINAL_PROMPT", "0"),
    ]
}

/// Runs git in `dir`: its stdout; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .envs(isolated())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {dir:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
