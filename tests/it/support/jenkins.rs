//! Test support for builds: the Jenkins stub (`ci/jenkins_stub.py`, which really builds
//! and uploads wheels) on a free 127.0.0.1 port, and a git repository served by
//! `git daemon`, both killed on drop (also when a test fails).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `ci/jenkins_stub.py`.
pub struct JenkinsStub {
    child: Child,
    /// Its root URL, `http://127.0.0.1:PORT` (no trailing `/`).
    pub base_url: String,
    pub user: String,
    /// The API token it accepts (random per stub).
    pub token: String,
    pub dir: tempfile::TempDir,
}

/// One finished build, from the stub's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubBuild {
    pub job: String,
    pub number: u64,
    pub commit: String,
    pub result: String,
}

impl JenkinsStub {
    /// `jobs`: job name -> git URL of the repository it builds; `upload_url`: where
    /// wheels go (a PyPI legacy upload endpoint, e.g. pypiserver's root URL).
    pub fn start(jobs: &[(&str, &str)], upload_url: &str) -> JenkinsStub {
        JenkinsStub::start_with(jobs, upload_url, &[])
    }

    /// [`Self::start`] with more of the stub's options (`--queue-delay S`, `--hold S`).
    pub fn start_with(jobs: &[(&str, &str)], upload_url: &str, options: &[&str]) -> JenkinsStub {
        let dir = tempfile::tempdir().unwrap();
        let token = format!("jt-{}", random_hex(16));
        std::fs::write(dir.path().join("token"), &token).unwrap();
        let jobs: BTreeMap<&str, &str> = jobs.iter().copied().collect();
        std::fs::write(
            dir.path().join("jobs.json"),
            serde_json::to_string(&jobs).unwrap(),
        )
        .unwrap();
        let user = "deploy-ci".to_string();
        let mut child = Command::new("python3")
            .arg(super::root().join("ci/jenkins_stub.py"))
            .args(["--port", "0", "--user", &user, "--upload-url", upload_url])
            .arg("--token-file")
            .arg(dir.path().join("token"))
            .arg("--jobs")
            .arg(dir.path().join("jobs.json"))
            .arg("--workdir")
            .arg(dir.path().join("work"))
            .arg("--log")
            .arg(dir.path().join("access.log"))
            .args(options)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_string);
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the Jenkins stub did not start ({read:?}): {}",
                std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
            );
        };
        JenkinsStub {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            user,
            token,
            dir,
        }
    }

    /// Its log: `METHOD PATH STATUS` per request and a `BUILD ...` line per build.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The builds that finished, in order.
    pub fn builds(&self) -> Vec<StubBuild> {
        self.log()
            .lines()
            .filter_map(|l| l.strip_prefix("BUILD "))
            .map(|l| {
                let f: BTreeMap<&str, &str> =
                    l.split(' ').filter_map(|kv| kv.split_once('=')).collect();
                StubBuild {
                    job: percent_decode(f.get("job").unwrap_or(&"")),
                    number: f.get("number").and_then(|n| n.parse().ok()).unwrap_or(0),
                    commit: f.get("commit").unwrap_or(&"").to_string(),
                    result: f.get("result").unwrap_or(&"").to_string(),
                }
            })
            .collect()
    }
}

impl Drop for JenkinsStub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare git repository with a work tree to commit from, served read-only by
/// `git daemon` on a free 127.0.0.1 port.
pub struct GitServer {
    daemon: Child,
    pub dir: tempfile::TempDir,
    /// `git://127.0.0.1:PORT/<name>.git`
    pub url: String,
}

impl GitServer {
    pub fn start(name: &str) -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join(format!("{name}.git"));
        run(git(dir.path(), &["init", "-q", "--bare", "-b", "main"]).arg(&bare));
        run(&mut git(dir.path(), &["init", "-q", "-b", "main", "work"]));
        let port = free_port();
        // git-daemon itself, not `git daemon`: the `git` wrapper would leave its child
        // running when killed.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8(exec_path.stdout).unwrap();
        let daemon = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args([
                "--export-all",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
            ])
            .arg(format!("--base-path={}", dir.path().display()))
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = GitServer {
            daemon,
            url: format!("git://127.0.0.1:{port}/{name}.git"),
            dir,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("git daemon did not listen on {port}");
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes `files` (path, content) into the work tree, commits them and pushes to the
    /// bare repository; returns the commit id.
    pub fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        let work = self.work();
        for (path, content) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        run(&mut git(&work, &["add", "-A"]));
        run(&mut git(
            &work,
            &[
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.test",
                "commit",
                "-q",
                "-m",
                message,
            ],
        ));
        let bare = self.url.rsplit('/').next().unwrap_or_default().to_string();
        run(git(&work, &["push", "-q"])
            .arg(self.dir.path().join(bare))
            .arg("HEAD:main"));
        let out = git(&work, &["rev-parse", "HEAD"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir).args(args);
    c
}

fn run(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `%XX` escapes decoded (the stub's log encodes job names).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_hex(n: usize) -> String {
    deploy::random::hex(n)
}
