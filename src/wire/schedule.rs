//! The bodies of scheduled rollouts (`/v1/schedules`) and freezes (`/v1/freezes`).
//! Times are Unix milliseconds; the gateway shows them in each schedule's time zone.

use serde::{Deserialize, Serialize};

/// `POST /v1/schedules`: a one-shot (`at`) or recurring (`cron`) rollout.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"app": "hello", "env": "staging", "what": "latest", "cron": "0 2 * * 1-5", "tz": "Europe/Paris"})))]
pub struct ScheduleRequest {
    pub app: String,
    pub env: String,
    /// What to deploy: an exact version, `latest`, a specifier (`~=1.4`), or
    /// `promote:ENV` (the file ENV runs, as `deploy promote --from ENV`).
    pub what: String,
    /// Local wall time in `tz`: `2026-12-01T02:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Five fields: `0 2 * * 1-5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// An IANA zone (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// How long a run waits for a running job's lock (default 10 minutes; at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 86400))]
    pub lock_wait_secs: Option<u64>,
    /// A run whose time passed while the gateway was down still runs this late
    /// (default 15 minutes; at most a day); later, it is recorded as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 86400))]
    pub grace_secs: Option<u64>,
}

/// One run of a schedule: one slot of time, at most once.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleRun {
    /// The slot (the time the schedule named), not when it ran.
    pub slot_ms: u64,
    /// `running` (claimed, waiting or started), `started`, `skipped`, `missed`, `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    pub reason: String,
    pub ts_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleInfo {
    pub id: String,
    pub app: String,
    pub env: String,
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    pub tz: String,
    pub lock_wait_secs: u64,
    pub grace_secs: u64,
    /// Who made it; its runs act with that token's rights.
    pub user: String,
    pub paused: bool,
    pub created_ms: u64,
    /// The next slot, if any (none: a one-shot that ran, or paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_ms: Option<u64>,
    /// The next few slots, as the schedule's zone shows them (`2026-12-01 02:00 CET`).
    #[serde(default)]
    pub next_local: Vec<String>,
    /// Recent runs, newest first (`GET /v1/schedules/{id}` only).
    #[serde(default)]
    pub runs: Vec<ScheduleRun>,
}

/// `POST /v1/freezes`: no deploy, restart or scheduled run on `env` until `until`.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"env": "production", "until": "2030-01-06T09:00", "tz": "UTC", "reason": "year-end freeze"})))]
pub struct FreezeRequest {
    pub env: String,
    /// Local wall time in `tz` (`2026-12-27T00:00`).
    pub until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    pub reason: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreezeInfo {
    pub env: String,
    pub until_ms: u64,
    pub reason: String,
    pub user: String,
    pub created_ms: u64,
}
