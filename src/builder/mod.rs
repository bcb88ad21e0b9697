//! The CI-builder seam: what turns a commit into a wheel on the artifact repository
//! (Jenkins).  The gateway starts a build, follows its console and learns its result;
//! [`BuildPhase`] runs that as a job-level phase before the hosts, so a release that
//! needs a build gets it in the same job, with its console streamed like any step's
//! output.  Adding a builder is adding a file here that implements [`Builder`].  Its
//! failures are [`BackendError`]s: a CI server that could not be reached or was busy is
//! retryable, a refusal or an answer that does not parse is not.

#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod jenkins;
mod jenkins_api;
mod phase;

use futures_util::future::BoxFuture;

use crate::backend::BackendError;

pub use phase::BuildPhase;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    pub app: String,
    /// The full commit id.
    pub commit: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildState {
    Queued,
    Running,
    Succeeded,
    Failed(String),
}

/// Which build of the CI server runs a request (known once it has left the queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRef {
    /// The CI server's build number (Jenkins: `executable.number`).
    pub number: String,
    /// The build's page, for people (never carries a credential).
    pub url: String,
}

/// A build's progress since the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub state: BuildState,
    /// Console text after `offset`.
    pub console: String,
    /// Pass this as `offset` next time.
    pub next_offset: u64,
    /// The build, once it has left the queue (`None` while queued).
    pub build: Option<BuildRef>,
    /// The file names the build archived; filled when `state` is `Succeeded`.
    pub artifacts: Vec<String>,
}

/// One backend role: builds releases.
pub trait Builder: Send + Sync + std::fmt::Debug {
    /// What it is, for messages (never a credential).
    fn describe(&self) -> String;
    /// Starts (or queues) a build; returns its id.
    fn start<'a>(&'a self, req: &'a BuildRequest) -> BoxFuture<'a, Result<String, BackendError>>;
    /// The build's state and the console text after `offset`.  A failed poll that is
    /// retryable may be polled again (the build goes on without us); a permanent one
    /// ends the following.
    fn poll<'a>(
        &'a self,
        id: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Progress, BackendError>>;
    /// Follows build `id` that another process (or an earlier life of this one)
    /// started, whose build is `build` when it had left the queue: ids are stored, and
    /// any gateway may poll them after this.
    fn resume(&self, id: &str, build: Option<BuildRef>);
    /// Stops build `id`: its queue item is cancelled while it waits, the build is
    /// aborted once it runs; a build that ended already is left as it is.
    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;
    /// The SHA-256 (lowercase hex) of `file` (a name from [`Progress::artifacts`]) as
    /// build `id` archived it, read from the CI server itself: the gateway compares it
    /// with the index's file of the same name before it records the build.
    fn artifact_sha256<'a>(
        &'a self,
        id: &'a str,
        file: &'a str,
    ) -> BoxFuture<'a, Result<String, BackendError>>;
}
