//! Operations: what a step asks the engine to do on a host, as data.  A step decides
//! from facts and returns a [`Decision`]; the engine ([`super::host`]) runs its actions in
//! order, stops at the first that fails and runs that action's [`Recovery`].

use std::time::Duration;

use deploy_wire::StepStatus;

use crate::commands::{RemoteCmd, Tool};

/// What a step reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub status: StepStatus,
    pub reason: String,
    pub diff: Option<String>,
}

impl Report {
    pub fn ok(reason: impl Into<String>) -> Report {
        Report::new(StepStatus::Ok, reason)
    }
    pub fn changed(reason: impl Into<String>) -> Report {
        Report::new(StepStatus::Changed, reason)
    }
    pub fn skipped(reason: impl Into<String>) -> Report {
        Report::new(StepStatus::Skipped, reason)
    }
    pub fn failed(reason: impl Into<String>) -> Report {
        Report::new(StepStatus::Failed, reason)
    }
    fn new(status: StepStatus, reason: impl Into<String>) -> Report {
        Report {
            status,
            reason: reason.into(),
            diff: None,
        }
    }
    pub fn with_diff(mut self, diff: Option<String>) -> Report {
        self.diff = diff;
        self
    }
}

/// One operation on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A command that must exit 0; else the step fails with
    /// `<what> failed (exit N): <last lines>`.  `stream`: its lines become events.
    Run {
        cmd: RemoteCmd,
        what: String,
        stream: bool,
    },
    /// Like `Run`, but when the command prints exactly `marker` the step ends at once
    /// with `then` (for example: another build completed the release meanwhile).
    RunOrEnd {
        cmd: RemoteCmd,
        what: String,
        marker: &'static str,
        then: Report,
    },
    /// The application's health check, on a slot's socket or (None) through nginx, with
    /// its retries.  On success its description replaces `{probe}` in the report.
    Probe {
        socket: Option<String>,
    },
    /// The switch: the live pointer to `slot` (index into `SLOTS`) running `version`,
    /// with one rename.  On success the engine emits `switched` and remembers what the
    /// host serves.
    SetLive {
        slot: usize,
        version: String,
    },
    Sleep(Duration),
    /// Installs the release's package with `tool` from the job's index; with the relay,
    /// a remote forward is open for this command only.
    Install {
        tool: Tool,
    },
    /// Ships the pinned uv to the host.  Never fails the step: the outcome is kept in
    /// the host's state for the step's next decision (pip is the fallback).
    ShipUv,
    /// Takes this host's turn in the job's shared environments (`share.rs`): build
    /// (first of its platform), or wait for the build and take it.  The turn is kept in
    /// the host's state for the step's next decision.
    JoinShare,
    /// Packs the release this host just built and hands it to the hosts waiting for it.
    /// Never fails the step: a failure sends them to build their own.
    PackEnv,
    /// Unpacks the shipped environment the host's turn gave it (its hash checked, then
    /// the marker written).
    UnpackEnv,
}

/// What to do when an action fails: `attempt` (stop at its first failure), then
/// `always` (failures ignored).  The step's reason becomes the action's error followed
/// by `note_ok`, or by `note_failed` and the attempt's error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    pub attempt: Vec<Op>,
    pub always: Vec<Op>,
    pub note_ok: String,
    pub note_failed: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub op: Op,
    pub on_fail: Option<Recovery>,
}

impl From<Op> for Action {
    fn from(op: Op) -> Action {
        Action { op, on_fail: None }
    }
}

impl Op {
    pub fn run(cmd: RemoteCmd, what: impl Into<String>) -> Op {
        Op::Run {
            cmd,
            what: what.into(),
            stream: false,
        }
    }
    pub fn or_else(self, recovery: Recovery) -> Action {
        Action {
            op: self,
            on_fail: Some(recovery),
        }
    }
}

/// A step's answer to "what should happen on this host?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to run: the report is final (ok, skipped, failed, or what check mode
    /// would change).
    Done(Report),
    /// Run the actions; if all succeed, the step reports `report`.
    Act {
        actions: Vec<Action>,
        report: Report,
    },
    /// Run the actions, then decide again (with the facts they touched read anew).
    Again(Vec<Action>),
}

impl Decision {
    pub fn act(actions: Vec<Action>, report: Report) -> Decision {
        Decision::Act { actions, report }
    }
    /// Every command this decision would run first (for tests and dry runs).
    pub fn commands(&self) -> Vec<&RemoteCmd> {
        let actions = match self {
            Decision::Done(_) => return vec![],
            Decision::Act { actions, .. } | Decision::Again(actions) => actions,
        };
        actions
            .iter()
            .filter_map(|a| match &a.op {
                Op::Run { cmd, .. } | Op::RunOrEnd { cmd, .. } => Some(cmd),
                _ => None,
            })
            .collect()
    }
}
