//! `PlainGit`: any git remote the gateway can fetch (SSH, HTTPS, git://), answered by the
//! `git` CLI from a bare partial mirror per repository in a cache directory.
//!
//! Each question fetches first (`git fetch --prune`, heads and tags), under a per-mirror
//! lock, so answers are never staler than the question.  `git` runs with an argument
//! vector (never a shell), no terminal prompt and a timeout.  A token for HTTPS travels in
//! the environment (`GIT_CONFIG_COUNT` with `http.extraHeader`), never in argv, a URL or
//! a message; redirects are then refused, so the header goes nowhere else.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::{Commit, GitHost};
use crate::artifacts::Secret;

/// How long one git command may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The `git log` format: fields split by US (0x1f), records by NUL (`-z`).  The raw
/// message (`%B`), so the subject is its first line, as Bitbucket's `message` gives it.
const LOG_FORMAT: &str = "--format=%H%x1f%an%x1f%B";

/// A git remote, mirrored under `cache_dir`.
#[derive(Debug)]
pub struct PlainGit {
    base_url: String,
    cache_dir: PathBuf,
    token: Option<Secret>,
    timeout: Duration,
    locks: std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl PlainGit {
    /// `base_url`: e.g. `https://git.example.com/scm`, `ssh://git@host/srv`,
    /// `git@host:` or `git://host`; a `repo` is appended as `{base}/{repo}` unless it is
    /// a full URL itself.  `token`: sent as `Authorization: Bearer` to HTTP(S) remotes.
    pub fn new(base_url: String, cache_dir: PathBuf, token: Option<Secret>) -> PlainGit {
        PlainGit {
            base_url,
            cache_dir,
            token,
            timeout: TIMEOUT,
            locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The same host with another timeout per git command.
    pub fn with_timeout(mut self, timeout: Duration) -> PlainGit {
        self.timeout = timeout;
        self
    }

    fn lock_of(&self, mirror: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(mirror.to_path_buf()).or_default().clone()
    }

    /// Brings the mirror of `url` up to date (cloning it the first time): its path.
    async fn sync(&self, url: &str) -> Result<PathBuf, String> {
        let mirror = self.cache_dir.join(mirror_name(url));
        if !mirror.join("objects").is_dir() {
            self.clone_mirror(url, &mirror).await?;
        }
        let args = [
            "fetch",
            "--prune",
            "--quiet",
            "origin",
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ];
        self.git(
            Some(&mirror),
            &args,
            &format!("git fetch of {}", shown(url)),
        )
        .await?;
        Ok(mirror)
    }

    /// `git clone --bare --filter=blob:none` into a temporary name, then renamed.
    async fn clone_mirror(&self, url: &str, mirror: &Path) -> Result<(), String> {
        let what = format!("git clone of {}", shown(url));
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|e| format!("{what} failed: cannot create {:?}: {e}", self.cache_dir))?;
        let tmp = mirror.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(mirror);
        let mut args: Vec<OsString> = ["clone", "--bare", "--quiet", "--filter=blob:none", "--"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(url.into());
        args.push(tmp.clone().into());
        let r = self.git(None, &args, &what).await;
        if r.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            return r.map(|_| ());
        }
        std::fs::rename(&tmp, mirror).map_err(|e| format!("{what} failed: {e}"))
    }

    /// The full id `reference` points at in `mirror`, or a clear error.
    async fn rev_parse(&self, mirror: &Path, url: &str, reference: &str) -> Result<String, String> {
        check_reference(reference)?;
        let spec = format!("{reference}^{{commit}}");
        let args = ["rev-parse", "--verify", "--quiet", spec.as_str()];
        let what = format!("git rev-parse in the mirror of {}", shown(url));
        match self.git(Some(mirror), &args, &what).await {
            Ok(out) if is_full_id(out.trim()) => Ok(out.trim().to_string()),
            _ => Err(format!(
                "{} has no branch, tag or commit {reference}",
                shown(url)
            )),
        }
    }

    /// Commits `git log` lists for `args` (after the format), newest first.
    async fn log(&self, mirror: &Path, url: &str, range: &[&str]) -> Result<Vec<Commit>, String> {
        let mut args = vec!["log", "-z", LOG_FORMAT];
        args.extend_from_slice(range);
        let what = format!("git log in the mirror of {}", shown(url));
        let out = self.git(Some(mirror), &args, &what).await?;
        parse_log(&out).map_err(|e| format!("{what}: {e}"))
    }

    /// Runs git (in `dir`, if any); stdout, or `<what> failed: <stderr's last line>`.
    async fn git<S: AsRef<std::ffi::OsStr>>(
        &self,
        dir: Option<&Path>,
        args: &[S],
        what: &str,
    ) -> Result<String, String> {
        let mut cmd = Command::new("git");
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        cmd.args(args);
        configure(&mut cmd, self.token.as_ref());
        let timeout = self.timeout;
        let outcome = tokio::task::spawn_blocking(move || run(cmd, timeout))
            .await
            .map_err(|e| format!("{what} failed: {e}"))?;
        let scrub = |s: String| match &self.token {
            Some(t) if !t.expose().is_empty() => s.replace(t.expose(), "***"),
            _ => s,
        };
        match outcome {
            Ran::Exited {
                ok: true, stdout, ..
            } => Ok(stdout),
            Ran::Exited { stderr, .. } => {
                let line = last_line(&stderr).unwrap_or("git exited with an error");
                Err(scrub(format!("{what} failed: {line}{}", auth_hint(line))))
            }
            Ran::TimedOut => Err(format!("{what} timed out after {} s", timeout.as_secs())),
            Ran::NotStarted(e) => Err(format!("{what} failed: cannot run git: {e}")),
        }
    }
}

impl GitHost for PlainGit {
    fn describe(&self) -> String {
        format!("git remote {}", shown(&self.base_url))
    }

    fn resolve<'a>(
        &'a self,
        repo: &'a str,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Commit, String>> {
        Box::pin(async move {
            check_reference(reference)?;
            let url = remote_url(&self.base_url, repo)?;
            let lock = self.lock_of(&self.cache_dir.join(mirror_name(&url)));
            let _held = lock.lock().await;
            let mirror = self.sync(&url).await?;
            let id = self.rev_parse(&mirror, &url, reference).await?;
            let mut commits = self.log(&mirror, &url, &["-1", id.as_str()]).await?;
            commits
                .pop()
                .ok_or_else(|| format!("git log in the mirror of {} showed nothing", shown(&url)))
        })
    }

    fn commits_between<'a>(
        &'a self,
        repo: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Commit>, String>> {
        Box::pin(async move {
            check_reference(from)?;
            check_reference(to)?;
            let url = remote_url(&self.base_url, repo)?;
            let lock = self.lock_of(&self.cache_dir.join(mirror_name(&url)));
            let _held = lock.lock().await;
            let mirror = self.sync(&url).await?;
            let from = self.rev_parse(&mirror, &url, from).await?;
            let to = self.rev_parse(&mirror, &url, to).await?;
            let range = format!("{from}..{to}");
            self.log(&mirror, &url, &[range.as_str()]).await
        })
    }
}

/// Refuses a reference that git (or a URL) could read as something else: empty, too
/// long, an option (`-x`), a range (`..`), revision syntax (`~^:@{`), globs, whitespace.
pub fn check_reference(reference: &str) -> Result<(), String> {
    let bad = reference.is_empty()
        || reference.len() > 255
        || reference.starts_with('-')
        || reference.starts_with('/')
        || reference.ends_with('/')
        || reference.contains("..")
        || reference.contains("@{")
        || reference.contains("//")
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
    if bad {
        return Err(format!(
            "{reference:?} is not a branch, tag or commit id this gateway accepts"
        ));
    }
    Ok(())
}

/// `{base}/{repo}`, or `repo` itself when it is a full URL (`scheme://...` or
/// `user@host:path`).  Refuses what could escape the base or read as an option.
pub fn remote_url(base: &str, repo: &str) -> Result<String, String> {
    let bad = repo.is_empty()
        || repo.starts_with('-')
        || repo.chars().any(|c| c.is_whitespace() || c.is_control())
        || repo.split('/').any(|s| s == "..");
    if bad {
        return Err(format!("{repo:?} is not a repository name"));
    }
    if is_full_url(repo) {
        return Ok(repo.to_string());
    }
    if base.is_empty() || base.starts_with('-') {
        return Err(format!(
            "{repo:?} is not a full URL and the git host has no base URL"
        ));
    }
    let repo = repo.trim_start_matches('/');
    if base.ends_with(':') {
        return Ok(format!("{base}{repo}"));
    }
    Ok(format!("{}/{repo}", base.trim_end_matches('/')))
}

fn is_full_url(s: &str) -> bool {
    if s.contains("://") {
        return true;
    }
    // scp-like `user@host:path`: a colon before any slash, after an `@`.
    match (s.find(':'), s.find('/')) {
        (Some(c), slash) => s[..c].contains('@') && slash.is_none_or(|sl| c < sl),
        (None, _) => false,
    }
}

/// `url` for messages: a password in it (`user:pass@`) is shown as `***`.
fn shown(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if rest[..at].contains(':') => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..])
        }
        _ => url.to_string(),
    }
}

/// The mirror's directory name: readable tail plus a hash of the whole URL.
fn mirror_name(url: &str) -> String {
    let tail: String = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    let hash = Sha256::digest(url.as_bytes());
    let hex = hex::encode(&hash[..8]);
    format!("{}-{hex}.git", tail.trim_start_matches('.'))
}

fn is_full_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A hint when git's words for a refused credential do not say so.
fn auth_hint(line: &str) -> &'static str {
    let refused = [
        "could not read Username",
        "Authentication failed",
        "error: 401",
        "error: 403",
    ];
    match refused.iter().any(|r| line.contains(r)) {
        true => " (the remote refused the gateway's credentials, or needs some)",
        false => "",
    }
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().map(str::trim).rev().find(|l| !l.is_empty())
}

/// Parses `git log -z --format=%H%x1f%an%x1f%B`: newest first, as git printed them.
pub fn parse_log(out: &str) -> Result<Vec<Commit>, String> {
    out.split('\0')
        .map(|r| r.trim_start_matches('\n'))
        .filter(|r| !r.is_empty())
        .map(|record| {
            let mut fields = record.splitn(3, '\x1f');
            let (Some(id), Some(author), Some(message)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!("unexpected output {record:?}"));
            };
            if !is_full_id(id) {
                return Err(format!("unexpected commit id {id:?}"));
            }
            Ok(Commit {
                id: id.to_string(),
                author: author.to_string(),
                subject: message.lines().next().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// The environment every git command gets: no prompt, no inherited repository, and the
/// token (if any) as an extra HTTP header with redirects off.
fn configure(cmd: &mut Command, token: Option<&Secret>) {
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_CONFIG_PARAMETERS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    cmd.env("GCM_INTERACTIVE", "never");
    cmd.env("LC_ALL", "C");
    match token {
        Some(t) => {
            cmd.env("GIT_CONFIG_COUNT", "2");
            cmd.env("GIT_CONFIG_KEY_0", "http.extraHeader");
            cmd.env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Bearer {}", t.expose()),
            );
            cmd.env("GIT_CONFIG_KEY_1", "http.followRedirects");
            cmd.env("GIT_CONFIG_VALUE_1", "false");
        }
        None => {
            cmd.env("GIT_CONFIG_COUNT", "0");
        }
    }
}

/// What running a command came to.
enum Ran {
    Exited {
        ok: bool,
        stdout: String,
        stderr: String,
    },
    TimedOut,
    NotStarted(std::io::Error),
}

/// Runs `cmd` (blocking) in its own process group, killed whole after `timeout`.
fn run(mut cmd: Command, timeout: Duration) -> Ran {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ran::NotStarted(e),
    };
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => break None,
        }
    };
    let Some(status) = status else {
        // The group: git's helpers (remote-https, index-pack) hold the pipes too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.kill();
        let _ = child.wait();
        return Ran::TimedOut;
    };
    Ran::Exited {
        ok: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_base_and_repo() {
        let j = |b, r| remote_url(b, r).unwrap();
        assert_eq!(
            j("https://git.example.com/scm/", "/PROJ/app"),
            "https://git.example.com/scm/PROJ/app"
        );
        assert_eq!(
            j("git://127.0.0.1:9418", "PROJ/app.git"),
            "git://127.0.0.1:9418/PROJ/app.git"
        );
        assert_eq!(j("git@host:", "team/app.git"), "git@host:team/app.git");
        assert_eq!(j("ssh://git@host/srv", "app"), "ssh://git@host/srv/app");
        assert_eq!(
            j("https://x/scm", "https://other/app.git"),
            "https://other/app.git"
        );
        assert_eq!(j("https://x/scm", "git@other:app.git"), "git@other:app.git");
        assert_eq!(j("", "git@other:app.git"), "git@other:app.git");
        for bad in ["", "-uhack", "a/../b", "a b", "a\nb"] {
            assert!(remote_url("https://x", bad).is_err(), "{bad:?}");
        }
        assert!(remote_url("", "PROJ/app").is_err());
    }

    #[test]
    fn refuses_references_git_could_misread() {
        for ok in ["main", "release/1.0", "v1.0.0", "0123abc", "feature/x_y-z"] {
            assert!(check_reference(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-n",
            "--upload-pack=x",
            "a..b",
            "main~1",
            "a b",
            "HEAD@{1}",
            "x:y",
            "a\tb",
            "/x",
        ] {
            assert!(check_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_log_records() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let out = format!(
            "{a}\x1fJane Doe\x1fAdd login\n\nLonger text.\n\0\n{b}\x1fBo\x1fFirst line\nsecond line\n\0"
        );
        let commits = parse_log(&out).unwrap();
        assert_eq!(commits.len(), 2);
        assert_eq!(
            commits[0],
            Commit {
                id: a,
                author: "Jane Doe".into(),
                subject: "Add login".into()
            }
        );
        assert_eq!(commits[1].subject, "First line");
        assert_eq!(parse_log("").unwrap(), vec![]);
        assert!(parse_log("nonsense").is_err());
        assert!(parse_log("xyz\x1fa\x1fb").is_err());
    }

    #[test]
    fn hides_passwords_and_names_mirrors_safely() {
        assert_eq!(shown("https://u:secret@h/x"), "https://u:***@h/x");
        assert_eq!(shown("ssh://git@h/x"), "ssh://git@h/x");
        let n = mirror_name("https://h/scm/PROJ/my-app.git");
        assert!(n.starts_with("my-app-") && n.ends_with(".git"), "{n}");
        assert_ne!(n, mirror_name("https://other/scm/PROJ/my-app.git"));
        assert!(!mirror_name("git@h:..").contains('/'));
    }

    #[test]
    fn the_token_goes_in_the_environment_only() {
        let mut cmd = Command::new("git");
        configure(&mut cmd, Some(&Secret::new("tok-123")));
        assert!(
            cmd.get_args()
                .all(|a| !a.to_string_lossy().contains("tok-123"))
        );
        let header = cmd
            .get_envs()
            .find(|(k, _)| *k == "GIT_CONFIG_VALUE_0")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        assert_eq!(header.as_deref(), Some("Authorization: Bearer tok-123"));
    }

    #[test]
    fn a_command_that_hangs_is_killed() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let t = Instant::now();
        assert!(matches!(
            run(cmd, Duration::from_millis(200)),
            Ran::TimedOut
        ));
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
