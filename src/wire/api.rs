//! The HTTP API's shapes (JSON bodies under `/v1`), its headers and the CLI/gateway version
//! handshake rule.  Used by the gateway (server) and the CLI (client) alike.

use serde::{Deserialize, Serialize};

/// Request header: the CLI's version (semver).
pub const CLIENT_VERSION_HEADER: &str = "deploy-client-version";
/// Response headers: the newest and the oldest CLI versions the gateway supports.
pub const CLI_NEWEST_HEADER: &str = "deploy-cli-newest";
pub const CLI_OLDEST_HEADER: &str = "deploy-cli-oldest";
/// Response header: the exact command that upgrades the CLI to the newest version.
pub const CLI_UPGRADE_HEADER: &str = "deploy-cli-upgrade";

/// Every error body: a stable machine `code` and a human `message`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub code: String,
    pub message: String,
    /// For `cli_too_old`: the exact command that upgrades the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_command: Option<String>,
    /// For `locked`: who holds the lock and with which job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// Stable error codes.
pub mod codes {
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const INVALID: &str = "invalid_request";
    pub const LOCKED: &str = "locked";
    pub const CLI_TOO_OLD: &str = "cli_too_old";
    pub const UPSTREAM: &str = "upstream_error";
    pub const INTERNAL: &str = "internal";
    pub const CONFLICT: &str = "conflict";
    /// The environment is frozen, or outside its deploy windows (the message says until when).
    pub const CLOSED: &str = "closed";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The gateway is at a limit (for example: too many event streams); retry later.
    pub const UNAVAILABLE: &str = "unavailable";
    /// The gateway cannot reach its state database right now (503 with `Retry-After`):
    /// nothing was done; ask again shortly.
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
    /// A deploy with `if_newer` whose version already runs on every host: nothing started.
    pub const UP_TO_DATE: &str = "up_to_date";
    /// 404: the application has no such environment, or the token may not read it (the
    /// same answer for both).
    pub const UNKNOWN_ENVIRONMENT: &str = "unknown_environment";
    /// 429 with `Retry-After`: too many failed sign-ins from this address.
    pub const TOO_MANY_FAILURES: &str = "too_many_failures";
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvironmentInfo {
    pub name: String,
    pub hosts: Vec<String>,
    /// The CLI asks for confirmation before deploying here (unless `--yes`).
    pub confirm: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppInfo {
    pub name: String,
    pub package: String,
    pub environments: Vec<EnvironmentInfo>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostInfo {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub groups: Vec<String>,
    pub pinned: bool,
}

/// Which release runs on which host: the gateway's record, written the moment the host's
/// live pointer changed (a `switched` event), and with `?live=true` what the host says.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostRelease {
    pub env: String,
    pub host: String,
    pub version: Option<String>,
    pub deployed_by: Option<String>,
    pub deployed_at_ms: Option<u64>,
    pub job_id: Option<String>,
    /// The recorded live slot (`blue`/`green`), when the record came from a switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// With `?live=true`: what the host itself says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedHost>,
    /// With `?live=true`: the record and the host disagree (version or slot).
    #[serde(default)]
    pub disagrees: bool,
    /// With `?live=true`: what needs a look on this host, one sentence each (`!!` lines
    /// in `deploy status --live`, which then exits 8): the record and the host disagree,
    /// a slot runs that is not live, the live slot fails its health check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// What a host says it runs (`deploy status --live`), or why it did not answer.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservedHost {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_slot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub processes: Vec<ProcessState>,
    /// The live slot's health check, tried once through the live pointer (none when
    /// nothing is live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// Set when the host could not be asked: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// The SHA-256 of the wheel the live release installed, from the release's marker
    /// (checked against the ledger at install); absent: unknown (installed before the
    /// hosts kept it, or nothing live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wheel_sha256: Option<String>,
    /// The live release's environment hash, from its marker (`env=`): equal on every
    /// host that runs the same build; absent: unknown (built before hosts kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_sha256: Option<String>,
}

/// How the live slot answered its health check (`status --live`).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheck {
    /// It answered the expected status.
    pub ok: bool,
    /// What it answered (`GET /healthz answered 502, expected 200`).
    pub said: String,
}

/// One process of the application on a host.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessState {
    pub name: String,
    /// `running` or `stopped`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The release it runs, read from its own environment on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// `blue` or `green` when it is a web slot's program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
}

/// `GET /v1/apps/{app}/rollback?env=E`: what `deploy rollback` without `--to` would
/// choose, before anything starts.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollbackTarget {
    pub app: String,
    pub env: String,
    /// What runs now (the gateway's record).
    pub current: Option<String>,
    /// The release deployed before it.
    pub target: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionInfo {
    pub version: String,
    /// `env/host` names where this version runs now.
    pub running_on: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"app": "hello", "env": "staging", "version": "1.0.0"})))]
pub struct DeployRequest {
    pub app: String,
    pub env: String,
    pub version: String,
    #[serde(default)]
    pub check: bool,
    /// Overrides the environment's batch size: a host count (`2`) or a percentage (`25%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// With `latest` or a specifier (`~=1.4`): let pre-releases count.
    #[serde(default)]
    pub pre: bool,
    /// Past a freeze or outside the environment's windows (admins only): why.  Audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<String>,
    /// Start nothing (409 `up_to_date`) when every host of the environment runs the
    /// resolved version by the gateway's record and none ended its last job failed.
    #[serde(default)]
    pub if_newer: bool,
}

/// `POST /v1/rollbacks`: back to a release still on disk (default: the previous one).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"app": "hello", "env": "staging"})))]
pub struct RollbackRequest {
    pub app: String,
    pub env: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
}

/// `POST /v1/restarts`: the release the environment runs, started afresh on every host
/// (rolling, health-gated, nothing installed).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"app": "hello", "env": "staging"})))]
pub struct RestartRequest {
    pub app: String,
    pub env: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Past a freeze or outside the windows (admins only): why.  Audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<String>,
}

/// `POST /v1/runs`: a one-off command in the live release's environment on one host, as
/// the app user.  Needs the token's `run` right.  The job's final events say the
/// command's exit code (`command_exited`).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"app": "hello", "env": "staging", "command": ["python", "-V"]})))]
pub struct RunRequest {
    pub app: String,
    pub env: String,
    /// Default: the environment's first host by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The command and its arguments, each quoted on its own (never pasted).
    pub command: Vec<String>,
}

/// One `line` event of `GET /v1/apps/{app}/logs` (Server-Sent Events; the stream ends
/// with an `end` event when every host's `tail` ended).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub host: String,
    /// Which copy of a process that runs several (from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<u32>,
    pub line: String,
    /// The line is the gateway's, about the host (unreachable, nothing live, lines
    /// dropped), not the log's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notice: bool,
}

/// Defines a closed set of lowercase words: serde (`rename_all = "lowercase"`), `as_str`,
/// `Display` (padding honoured, for tables) and `FromStr` (for the store).
macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident ($what:literal) { $($(#[$vdoc:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {} `{s}`", $what))
            }
        }
    };
}

word_enum! {
    /// Where a job is in its life.
    JobState ("job state") {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        /// The gateway stopped while the job ran; marked when it started again.
        Interrupted = "interrupted",
    }
}

word_enum! {
    /// What a job does.
    JobKind ("job kind") {
        Deploy = "deploy",
        /// A deploy in check mode: reports what would change, changes nothing.
        Check = "check",
        /// A deploy of a release already on disk: installs nothing.
        Rollback = "rollback",
        /// The live release started afresh (idle slot, then the switch; processes
        /// restarted): installs nothing.
        Restart = "restart",
        /// A one-off command as the app user on one host (`deploy run`).
        Run = "run",
        /// A CI build of a commit (`deploy build`): runs on the builder, touches no host;
        /// its environment is empty.
        Build = "build",
    }
}

word_enum! {
    /// How one host ended in a job (the ledger's `result`).
    LedgerResult ("ledger result") {
        Ok = "ok",
        Changed = "changed",
        Failed = "failed",
        Unreachable = "unreachable",
        Cancelled = "cancelled",
    }
}

impl LedgerResult {
    /// The host runs the job's release (it did not fail).
    pub fn is_good(self) -> bool {
        matches!(self, LedgerResult::Ok | LedgerResult::Changed)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobInfo {
    pub id: String,
    pub kind: JobKind,
    pub app: String,
    pub env: String,
    pub version: String,
    pub check: bool,
    pub user: String,
    pub state: JobState,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub error: Option<String>,
    /// What started it when not a request of `user`: `schedule <id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
}

impl JobInfo {
    pub fn is_finished(&self) -> bool {
        self.state != JobState::Running
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerEntry {
    pub job_id: String,
    pub app: String,
    pub env: String,
    pub host: String,
    pub version: String,
    pub from_version: Option<String>,
    pub result: LedgerResult,
    pub user: String,
    pub ts_ms: u64,
    /// The file the job installed, with its SHA-256, commit and build where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<crate::pipeline::ArtifactRef>,
    /// The release's environment hash on this host, as the host reported it: the
    /// SHA-256 of its `site-packages` files' `sha256sum` list (bytecode aside); equal
    /// on every host that runs the same build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_sha256: Option<String>,
}

/// One stored event of a job, as `GET /v1/jobs/{id}/log` returns it.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredEvent {
    pub seq: u64,
    pub event: crate::Event,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub ts_ms: u64,
    pub user: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
}

/// The handshake verdict for a client version against the gateway's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// At least the newest: nothing to say.
    Current,
    /// Supported but older than the newest: a one-line notice.
    Outdated,
    /// Older than the oldest supported: refused with 426.
    TooOld,
    /// The client's version is not a semver version: a bad request (400), not an old CLI.
    Unparseable,
}

/// Is `v` a semver version (as the handshake needs)?
pub fn is_semver(v: &str) -> bool {
    semver::Version::parse(v).is_ok()
}

/// Compares `client` with `oldest..=newest` as semver.
pub fn handshake(client: &str, oldest: &str, newest: &str) -> Handshake {
    let (Ok(c), Ok(o), Ok(n)) = (
        semver::Version::parse(client),
        semver::Version::parse(oldest),
        semver::Version::parse(newest),
    ) else {
        return Handshake::Unparseable;
    };
    if c < o {
        Handshake::TooOld
    } else if c < n {
        Handshake::Outdated
    } else {
        Handshake::Current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_compares_as_semver() {
        assert_eq!(handshake("0.1.0", "0.1.0", "0.1.0"), Handshake::Current);
        assert_eq!(
            handshake("0.10.0", "0.9.0", "0.9.1"),
            Handshake::Current,
            "not string order"
        );
        assert_eq!(handshake("0.1.0", "0.1.0", "0.2.0"), Handshake::Outdated);
        assert_eq!(handshake("0.1.0", "0.2.0", "0.3.0"), Handshake::TooOld);
        assert_eq!(
            handshake("1.0.0-rc.1", "1.0.0", "1.0.0"),
            Handshake::TooOld,
            "a pre-release is older"
        );
        assert_eq!(
            handshake("banana", "0.1.0", "0.1.0"),
            Handshake::Unparseable
        );
    }

    #[test]
    fn closed_sets_are_lowercase_words_on_the_wire() {
        for s in JobState::ALL {
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
            assert_eq!(s.as_str().parse::<JobState>(), Ok(*s));
        }
        assert_eq!(
            serde_json::to_string(&JobKind::Rollback).unwrap(),
            "\"rollback\""
        );
        assert_eq!(
            serde_json::to_string(&LedgerResult::Unreachable).unwrap(),
            "\"unreachable\""
        );
        assert_eq!(format!("{:<9}|", JobKind::Check), "check    |");
        assert!("queued".parse::<JobState>().is_err());
    }
}
