//! Events: the ordered record of a job, as the engine emits it and the CLI shows it.
//!
//! Every step on every host reports one of `ok` (already as wanted), `changed`, `skipped`
//! or `failed`, with a reason, the Ansible module contract.  Events are plain data with a
//! stable JSON form (`{"ts_ms":..,"type":"step_finished",...}`).  They never carry a secret:
//! the engine redacts environment values before they reach an event.

use serde::{Deserialize, Serialize};

/// The outcome of one step on one host.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Already as wanted; nothing done.
    Ok,
    /// Something was changed (or, in check mode, would be).
    Changed,
    /// Not applicable here (for example a health check in check mode).
    Skipped,
    /// Did not reach the wanted state; the host stops here.
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Changed => "changed",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
        }
    }
}

/// The outcome of a whole host.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Every step ok or skipped.
    Ok,
    /// At least one step changed something, none failed.
    Changed,
    /// A step failed.
    Failed,
    /// The host could not be reached (connect, host key or login failed).
    Unreachable,
    /// The job was cancelled before this host finished its steps.
    Cancelled,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Ok => "ok",
            HostStatus::Changed => "changed",
            HostStatus::Failed => "failed",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Cancelled => "cancelled",
        }
    }
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            HostStatus::Failed | HostStatus::Unreachable | HostStatus::Cancelled
        )
    }
}

/// The outcome of a job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Succeeded,
    Failed,
    /// Stopped by `deploy cancel` after the steps in flight.
    Cancelled,
    /// The gateway stopped while the job ran; marked when it started again.
    Interrupted,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }
}

/// Which output stream a remote line came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One event, stamped with the wall-clock time it was made (Unix milliseconds).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub ts_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    JobStarted {
        app: String,
        env: String,
        version: String,
        hosts: Vec<String>,
        check: bool,
        steps: Vec<String>,
    },
    HostStarted {
        host: String,
    },
    /// The host's SSH session is up (one per host per job).
    Connected {
        host: String,
        fingerprint: String,
        elapsed_ms: u64,
    },
    StepStarted {
        host: String,
        step: String,
    },
    Output {
        host: String,
        step: String,
        stream: Stream,
        line: String,
    },
    StepFinished {
        host: String,
        step: String,
        status: StepStatus,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        elapsed_ms: u64,
    },
    HostFinished {
        host: String,
        status: HostStatus,
        changed: u32,
        elapsed_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Remote commands the engine waited for one after another (commands run at the
        /// same time count once): what latency multiplies.
        #[serde(default, skip_serializing_if = "is_zero")]
        round_trips: u32,
    },
    /// Traffic on `host` now goes to `version`, running in `slot` (`blue`/`green`):
    /// emitted the moment the live pointer changed on the server (a switch, a switch
    /// back after a failed health check, a halt rollback), so the gateway records what
    /// serves without waiting for the job's end.
    Switched {
        host: String,
        version: String,
        slot: String,
    },
    /// A job-level phase (once per job, not per host) began; `host` is where it runs,
    /// if on a host.  Its output lines are `output` events with that host (or "").
    PhaseStarted {
        phase: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    PhaseFinished {
        phase: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        status: StepStatus,
        reason: String,
        elapsed_ms: u64,
    },
    /// A one-off command (`deploy run`) ended on `host` with this exit status; the last
    /// event before `job_finished`.  The job succeeded when it is 0.
    CommandExited {
        host: String,
        exit_code: u32,
    },
    /// A build job's result: the commit it built, the builder's build, and the wheel
    /// found on the index (the ledger's link from a commit to a file).
    Built {
        commit: String,
        number: String,
        url: String,
        version: String,
        file: String,
        sha256: String,
    },
    /// One delivery attempt of a notification about this job (webhook, chat, ticket),
    /// recorded when it ended; a failed one never changes the job's result.  May come
    /// after `job_finished` (ends are notified once the job is recorded).
    Notified {
        notifier: String,
        event: String,
        attempt: u32,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    JobFinished {
        status: JobStatus,
        elapsed_ms: u64,
        hosts_ok: u32,
        hosts_changed: u32,
        /// Every host that did not end ok or changed (unreachable and cancelled ones
        /// included, as before those had counts of their own).
        hosts_failed: u32,
        /// Of `hosts_failed`, the hosts that could not be reached (0 in events stored
        /// before this count existed).
        #[serde(default)]
        hosts_unreachable: u32,
        /// Of `hosts_failed`, the hosts cancelled or never started.
        #[serde(default)]
        hosts_cancelled: u32,
    },
}

impl Event {
    pub fn now(kind: EventKind) -> Event {
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Event { ts_ms, kind }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_a_stable_json_form() {
        let ev = Event {
            ts_ms: 5,
            kind: EventKind::StepFinished {
                host: "web1".into(),
                step: "switch".into(),
                status: StepStatus::Changed,
                reason: "current -> releases/1.1.0".into(),
                diff: None,
                elapsed_ms: 3,
            },
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            json,
            r#"{"ts_ms":5,"type":"step_finished","host":"web1","step":"switch","status":"changed","reason":"current -> releases/1.1.0","elapsed_ms":3}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), ev);
    }
}
