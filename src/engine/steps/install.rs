//! `install`: the release's package is installed from the job's index; the completion
//! marker is written last.  A failed install leaves nothing behind: the unfinished
//! release (its virtualenv, what the installer wrote) is removed at once, so a full
//! disk gets its space back and the next deploy builds the release anew.  With the job's `wheel` pin, the installer installs exactly
//! that file (its SHA-256 checked) and the marker records the hash.  A rollback (`no_install`) installs nothing: the release must
//! already be complete on the host.

use super::{Decided, HostState, View};
use crate::commands::{self as cmd, Tool};
use crate::facts::{Facts, ReleaseState};
use crate::ops::{Decision, Op, Recovery, Report};
use crate::share::Turn;

pub fn decide(v: &View, f: &Facts, st: &HostState) -> Decided {
    let version = v.version();
    let req = format!("{}=={version}", v.plan.app.package);
    let from = v.plan.index.describe();
    let state = f.release()?;
    if v.plan.spec.no_install && (st.would_build || state != ReleaseState::Complete) {
        return Err(format!(
            "release {version} is not complete on this host; a rollback installs nothing"
        ));
    }
    if st.would_build {
        return Ok(Decision::Done(Report::changed(format!(
            "would install {req} from {from}"
        ))));
    }
    let builds = matches!(st.share, Some(Turn::Build { .. }));
    match state {
        // Another job completed it meanwhile: this host's build (none) ships it all
        // the same, so the hosts waiting for it are not kept waiting for nothing.
        ReleaseState::Complete if builds && !v.check() => {
            return Ok(Decision::act(
                vec![Op::PackEnv.into()],
                Report::ok(format!("{req} is installed")),
            ));
        }
        ReleaseState::Complete => {
            return Ok(Decision::Done(Report::ok(format!("{req} is installed"))));
        }
        ReleaseState::Absent => {
            return Err(format!(
                "release directory {} does not exist (run the venv step first)",
                v.paths.release(version)
            ));
        }
        ReleaseState::Partial => {}
    }
    if v.check() {
        return Ok(Decision::Done(Report::changed(format!(
            "would install {req} from {from}"
        ))));
    }
    // A partial release whose venv step ran in an earlier job: pip (a uv venv is rebuilt
    // by the venv step, which always runs first in a playbook).
    let tool = st.tool.clone().unwrap_or(Tool::Pip);
    let what = match tool {
        Tool::Pip => "pip install",
        Tool::Uv { .. } => "uv pip install",
    };
    let mut actions = vec![Op::Install { tool }.or_else(remove_unfinished(v))];
    if builds {
        actions.push(Op::PackEnv.into());
    }
    Ok(Decision::act(
        actions,
        Report::changed(match &v.plan.spec.wheel {
            Some(w) => format!(
                "installed {req} from {from} ({what}), {} sha256 {} verified",
                w.file, w.sha256
            ),
            None => format!("installed {req} from {from} ({what})"),
        }),
    ))
}

/// After a failed build: the release directory goes unless it is complete (said after
/// the failure's reason).  Decision: removed rather than left for `venv` to rebuild or
/// `prune` to remove, because a build that failed for want of space would otherwise
/// keep the space it took, and the live release's logs share that disk.
pub fn remove_unfinished(v: &View) -> Recovery {
    let version = v.version();
    Recovery {
        always: vec![Op::run(
            cmd::remove_unfinished(v.paths, version),
            "removing the unfinished release",
        )],
        note_ok: format!("; the unfinished release {version} was removed"),
        ..Default::default()
    }
}
