//! The pipeline's HTTP bodies: builds (`POST /v1/builds`), what a release changes
//! (`GET /v1/apps/{app}/changes`), promotion (`POST /v1/promotions`) and the difference
//! between two environments (`GET /v1/apps/{app}/diff`).  Serde only.

use serde::{Deserialize, Serialize};

use crate::api::JobInfo;

/// One commit, as `deploy changes` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitInfo {
    /// The full hex id.
    pub id: String,
    pub author: String,
    /// The first line of its message.
    pub subject: String,
}

/// The file a job installed (or would), and where it came from when the gateway built it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactRef {
    /// The wheel's file name on the index.
    pub file: String,
    /// Its SHA-256 as the index gave it when the job was accepted (lowercase hex).
    pub sha256: String,
    /// The commit it was built from, when the gateway built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The CI build that made it (`number`), when the gateway built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// A build the gateway ran (or found) for a commit, and what it produced.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildRecord {
    pub app: String,
    pub commit: String,
    /// The CI builder's own number for the build, and its page.
    pub number: String,
    pub url: String,
    /// The version, wheel file and SHA-256 found on the index after the build.
    pub version: String,
    pub file: String,
    pub sha256: String,
    /// The gateway job that ran it.
    pub job_id: String,
    pub ts_ms: u64,
}

/// `POST /v1/builds`: build `reference` (a branch, tag or commit) of `app`, unless a
/// build of that commit is recorded and its file is still on the index.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildRequest {
    pub app: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// The environment the build is for (`deploy release --ref`): authorised on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// The answer to `POST /v1/builds`: the commit the ref means, and either the build
/// already on record (`job` is none) or the job that builds it now.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildResponse {
    pub commit: CommitInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobInfo>,
}

/// One side of a comparison: what an environment runs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvRelease {
    pub env: String,
    /// (host, version) for every host the gateway has a record of.
    pub hosts: Vec<(String, String)>,
    /// The one version every host runs, if they agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The commit that version was built from, when the gateway built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `GET /v1/apps/{app}/changes?env=E[&version=V|&ref=R]`: the commits between what runs
/// on the environment and the candidate (default: the newest candidate: what another
/// environment runs, else the newest build of the default branch; `candidate` says
/// which).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangesResponse {
    pub app: String,
    pub running: EnvRelease,
    /// The candidate's version (when built) and commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub commit: String,
    /// Newest first.
    pub commits: Vec<CommitInfo>,
    /// Which git host answered: "the git host" (users never see which product).
    pub source: String,
    /// Where the candidate came from, in words (`the version given`, `what staging
    /// runs`, `the newest build of the default branch`).
    #[serde(default)]
    pub candidate: String,
}

/// `POST /v1/promotions`: deploy to `to` exactly the file `from` runs.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromoteRequest {
    pub app: String,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub check: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
}

/// `GET /v1/apps/{app}/diff?a=E1&b=E2`: what two environments run, and the commits
/// `b` lacks (newest first), when both versions were built by the gateway.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiffResponse {
    pub app: String,
    pub a: EnvRelease,
    pub b: EnvRelease,
    pub commits: Vec<CommitInfo>,
}
