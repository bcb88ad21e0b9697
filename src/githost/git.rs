//! `PlainGit`: any git remote the gateway can fetch (SSH, HTTPS, git://), answered by the
//! `git` CLI from a bare partial mirror per repository in a cache directory.
//!
//! Each question fetches first (`git fetch --prune`, heads and tags), under a per-mirror
//! lock, so answers are never staler than the question.  `git` runs with an argument
//! vector (never a shell), no terminal prompt and a timeout.  A token for HTTPS travels in
//! the environment (`GIT_CONFIG_COUNT` with `http.extraHeader`), never in argv, a URL or
//! a message; redirects are then refused, so the header goes nowhere else.  Running git
//! is [`super::git_process`]'s; a failure there is retryable when git's words say the
//! network failed, else permanent (as are refused references and names).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::git_process::{Ran, auth_hint, configure, failure_kind, last_line, run};
use super::{Commit, GitHost};
use crate::artifacts::Secret;
use crate::backend::BackendError;

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
    async fn sync(&self, url: &str) -> Result<PathBuf, BackendError> {
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
    async fn clone_mirror(&self, url: &str, mirror: &Path) -> Result<(), BackendError> {
        let what = format!("git clone of {}", shown(url));
        std::fs::create_dir_all(&self.cache_dir).map_err(|e| {
            let msg = format!("{what} failed: cannot create {:?}: {e}", self.cache_dir);
            BackendError::permanent(msg)
        })?;
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
        std::fs::rename(&tmp, mirror)
            .map_err(|e| BackendError::permanent(format!("{what} failed: {e}")))
    }

    /// The full id `reference` points at in `mirror`, or a clear error.
    async fn rev_parse(
        &self,
        mirror: &Path,
        url: &str,
        reference: &str,
    ) -> Result<String, BackendError> {
        check_reference(reference)?;
        let spec = format!("{reference}^{{commit}}");
        let args = ["rev-parse", "--verify", "--quiet", spec.as_str()];
        let what = format!("git rev-parse in the mirror of {}", shown(url));
        match self.git(Some(mirror), &args, &what).await {
            Ok(out) if is_full_id(out.trim()) => Ok(out.trim().to_string()),
            _ => Err(BackendError::missing(format!(
                "the git host has no branch, tag or commit {reference}"
            ))),
        }
    }

    /// Commits `git log` lists for `args` (after the format), newest first.
    async fn log(
        &self,
        mirror: &Path,
        url: &str,
        range: &[&str],
    ) -> Result<Vec<Commit>, BackendError> {
        let mut args = vec!["log", "-z", LOG_FORMAT];
        args.extend_from_slice(range);
        let what = format!("git log in the mirror of {}", shown(url));
        let out = self.git(Some(mirror), &args, &what).await?;
        parse_log(&out).map_err(|e| BackendError::permanent(format!("{what}: {e}")))
    }

    /// Runs git (in `dir`, if any); stdout, or `<what> failed: <stderr's last line>`
    /// (retryable when stderr says the network failed), or a timeout (retryable).
    async fn git<S: AsRef<std::ffi::OsStr>>(
        &self,
        dir: Option<&Path>,
        args: &[S],
        what: &str,
    ) -> Result<String, BackendError> {
        let mut cmd = Command::new("git");
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        cmd.args(args);
        configure(&mut cmd, self.token.as_ref());
        let timeout = self.timeout;
        let outcome = tokio::task::spawn_blocking(move || run(cmd, timeout))
            .await
            .map_err(|e| BackendError::permanent(format!("{what} failed: {e}")))?;
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
                let msg = scrub(format!("{what} failed: {line}{}", auth_hint(line)));
                Err(BackendError::new(failure_kind(&stderr), msg))
            }
            Ran::TimedOut => Err(BackendError::retryable(format!(
                "{what} timed out after {} s",
                timeout.as_secs()
            ))),
            Ran::NotStarted(e) => Err(BackendError::permanent(format!(
                "{what} failed: cannot run git: {e}"
            ))),
        }
    }
}

impl GitHost for PlainGit {
    fn describe(&self) -> String {
        // Users never see which product answered (docs/pipeline.md); the config says.
        "the git host".to_string()
    }

    fn resolve<'a>(
        &'a self,
        repo: &'a str,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Commit, BackendError>> {
        Box::pin(async move {
            check_reference(reference)?;
            let url = remote_url(&self.base_url, repo)?;
            let lock = self.lock_of(&self.cache_dir.join(mirror_name(&url)));
            let _held = lock.lock().await;
            let mirror = self.sync(&url).await?;
            let id = self.rev_parse(&mirror, &url, reference).await?;
            let mut commits = self.log(&mirror, &url, &["-1", id.as_str()]).await?;
            commits.pop().ok_or_else(|| {
                let msg = format!("git log in the mirror of {} showed nothing", shown(&url));
                BackendError::permanent(msg)
            })
        })
    }

    fn commits_between<'a>(
        &'a self,
        repo: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Commit>, BackendError>> {
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
pub fn check_reference(reference: &str) -> Result<(), BackendError> {
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
        return Err(BackendError::permanent(format!(
            "{reference:?} is not a branch, tag or commit id this gateway accepts"
        )));
    }
    Ok(())
}

/// `{base}/{repo}`, or `repo` itself when it is a full URL (`scheme://...` or
/// `user@host:path`).  Refuses what could escape the base or read as an option.
pub fn remote_url(base: &str, repo: &str) -> Result<String, BackendError> {
    let refused = |msg: String| Err(BackendError::permanent(msg));
    let bad = repo.is_empty()
        || repo.starts_with('-')
        || repo.chars().any(|c| c.is_whitespace() || c.is_control())
        || repo.split('/').any(|s| s == "..");
    if bad {
        return refused(format!("{repo:?} is not a repository name"));
    }
    if is_full_url(repo) {
        return Ok(repo.to_string());
    }
    if base.is_empty() || base.starts_with('-') {
        return refused(format!(
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

/// Parses `git log -z --format=%H%x1f%an%x1f%B`: newest first, as git printed them.
fn parse_log(out: &str) -> Result<Vec<Commit>, String> {
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

#[cfg(test)]
#[path = "git_tests.rs"]
mod tests;
