//! The git-host seam: where an application's source lives (a plain git remote, Bitbucket
//! Server).  The gateway asks it what a ref points at and which commits a release adds;
//! users never see which product answered.  Adding one is adding a file here that
//! implements [`GitHost`], plus its arm in the gateway's config.

pub mod bitbucket;
pub mod fake;
pub mod git;

use futures_util::future::BoxFuture;

/// One commit, as the release ledger and `deploy changes` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The full hex id.
    pub id: String,
    pub author: String,
    /// The first line of its message.
    pub subject: String,
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
    ) -> BoxFuture<'a, Result<Commit, String>>;
    /// Commits reachable from `to` but not from `from`, newest first.
    fn commits_between<'a>(
        &'a self,
        repo: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Commit>, String>>;
}
