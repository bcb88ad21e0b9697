//! The git-host seam: where an application's source lives (a plain git remote, Bitbucket
//! Server).  The gateway asks it what a ref points at and which commits a release adds;
//! users never see which product answered.  Adding one is adding a file here that
//! implements [`GitHost`], plus its arm in the gateway's config.  Every question fails
//! with a [`BackendError`]: retryable when the host could not be reached or was busy,
//! permanent when it said no (unknown ref or repository, refused credentials).

pub mod bitbucket;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod git;
mod git_process;

use futures_util::future::BoxFuture;

use crate::backend::BackendError;

/// One commit, as the release ledger and `deploy changes` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The full hex id.
    pub id: String,
    pub author: String,
    /// The first line of its message.
    pub subject: String,
}

/// How a CI build of a commit stands, as a git host shows it beside the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStatus {
    /// `INPROGRESS`, `SUCCESSFUL` or `FAILED` (Bitbucket's words).
    pub state: &'static str,
    /// The same for every report of one build (the gateway's job id).
    pub key: String,
    /// A short name for people (`deploy: hello build 12`).
    pub name: String,
    /// The CI build's page (never a credential).
    pub url: String,
}

/// One backend role: answers questions about an application's repository.
pub trait GitHost: Send + Sync + std::fmt::Debug {
    /// What it is, for messages (never a credential).
    fn describe(&self) -> String;
    /// The commit a branch, tag or commit id points at now.
    fn resolve<'a>(
        &'a self,
        repo: &'a str,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Commit, BackendError>>;
    /// Commits reachable from `to` but not from `from`, newest first.
    fn commits_between<'a>(
        &'a self,
        repo: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Commit>, BackendError>>;
    /// The commit the repository's default branch points at now (plain git: the
    /// remote's `HEAD`).
    fn default_head<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<Commit, BackendError>> {
        self.resolve(repo, "HEAD")
    }
    /// Shows a build's status beside `commit` (a host without such a thing: nothing).
    fn report_build<'a>(
        &'a self,
        _repo: &'a str,
        _commit: &'a str,
        _status: &'a BuildStatus,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
}
