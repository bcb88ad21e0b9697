//! `venv`: the release's virtualenv exists (rebuilt if an earlier build died), made with
//! uv when the application asks for it and the host can run the shipped binary, else
//! with `python3 -m venv`; the reason says which and why.  When the job ships one build
//! to every host of a platform (`share.rs`), the first host builds and the others
//! unpack its build here instead.

use super::{Decided, HostState, View};
use crate::commands::{self as cmd, Tool};
use crate::facts::{Facts, ReleaseState, UvState};
use crate::inventory::Installer;
use crate::ops::{Decision, Op, Report};
use crate::share::{Bundle, Turn};

/// The application asks for uv and the engine has a binary to ship.
pub fn wants_uv(v: &View) -> bool {
    v.plan.app.installer == Installer::Uv && v.uv.is_some()
}

pub fn decide(v: &View, f: &Facts, st: &mut HostState) -> Decided {
    let state = f.release()?;
    let version = v.version();
    if state == ReleaseState::Complete {
        st.env_sha256 = f.release_detail.env_sha256.clone();
        return Ok(Decision::Done(Report::ok(format!(
            "release {version} is complete"
        ))));
    }
    // A rollback or restart builds nothing: an unfinished virtualenv left behind would
    // be one more release on disk to prune.
    if v.plan.spec.no_install {
        return Err(format!(
            "release {version} is not complete on this host; a rollback installs nothing"
        ));
    }
    // One build per platform for the whole job: take this host's turn first.
    let shared = match shares(v, f).then_some(&st.share) {
        Some(None) => return Ok(Decision::Again(vec![Op::JoinShare.into()])),
        Some(Some(Turn::Ship(b))) => return Ok(unpack(v, b)),
        Some(Some(Turn::Build { differs_from })) => match differs_from {
            Some(w) => {
                format!("; its platform differs from {w}'s: built here, for the hosts like it")
            }
            None => "; built here once, for the job's other hosts".to_string(),
        },
        Some(Some(Turn::Alone(why))) => format!("; {why}: built here"),
        None => String::new(),
    };
    let (tool, note) = match choose_tool(v, f, st)? {
        Choice::Ship => return Ok(Decision::Again(vec![Op::ShipUv.into()])),
        Choice::Use(tool, note) => (tool, format!("{note}{shared}")),
    };
    let how = match &tool {
        Tool::Pip => "python3 -m venv",
        Tool::Uv { .. } => "uv venv",
    };
    let partial = state == ReleaseState::Partial;
    let dir = v.paths.release(version);
    st.tool = Some(tool.clone());
    if v.check() {
        st.would_build = true;
        let verb = if partial {
            "rebuild the unfinished"
        } else {
            "create the"
        };
        return Ok(Decision::Done(Report::changed(format!(
            "would {verb} virtualenv {dir} ({how}{note})"
        ))));
    }
    let done = if partial {
        "rebuilt the unfinished"
    } else {
        "created the"
    };
    Ok(Decision::act(
        vec![
            Op::RunOrEnd {
                cmd: cmd::venv_create(v.paths, version, &tool),
                what: how.into(),
                marker: "already-complete",
                then: Report::ok(format!(
                    "release {version} was completed by an earlier build"
                )),
            }
            .or_else(super::install::remove_unfinished(v)),
        ],
        Report::changed(format!("{done} virtualenv {dir} ({how}{note})")),
    ))
}

/// The job may ship one build of the release to its other hosts: it has more than one
/// host (check mode builds nothing), and this one told its platform.
fn shares(v: &View, f: &Facts) -> bool {
    !v.check() && v.plan.hosts.len() > 1 && f.release_detail.platform.is_some()
}

/// Unpacks the build another host made (its hash checked on this host), in place of
/// an installer run; a failure leaves nothing behind.  The operation ends the step with
/// its own report, which says how (the changes over a release the host has, or the
/// whole release, and why); this one stands only for the decision.
fn unpack(v: &View, b: &Bundle) -> Decision {
    Decision::act(
        vec![Op::UnpackEnv.or_else(super::install::remove_unfinished(v))],
        Report::changed(format!("unpacked the environment {} built", b.by)),
    )
}

enum Choice {
    Use(Tool, String),
    /// Ship uv first, then decide again.
    Ship,
}

/// uv when asked for and runnable here (shipped once, kept under its checksum); pip
/// otherwise.  The note says why, or what was shipped.
fn choose_tool(v: &View, f: &Facts, st: &HostState) -> Result<Choice, String> {
    if v.plan.app.installer != Installer::Uv {
        return Ok(Choice::Use(Tool::Pip, String::new()));
    }
    let Some(uv) = v.uv else {
        let why = "; uv asked for, but the gateway has no uv binary configured: pip instead";
        return Ok(Choice::Use(Tool::Pip, why.into()));
    };
    let tool = Tool::Uv {
        sha256: uv.sha256.clone(),
    };
    let short = &uv.sha256[..12.min(uv.sha256.len())];
    match (&st.uv_shipped, f.uv()?) {
        (Some(Ok(shipped)), _) => Ok(Choice::Use(
            tool,
            format!(
                "; shipped {shipped} ({} MB, sha256 {short})",
                uv.bytes.len() / 1_000_000
            ),
        )),
        (Some(Err(why)), _) => Ok(Choice::Use(
            Tool::Pip,
            format!("; shipping uv failed ({why}): pip instead"),
        )),
        (None, UvState::Present) => Ok(Choice::Use(tool, String::new())),
        (None, UvState::Unsupported(arch)) => Ok(Choice::Use(
            Tool::Pip,
            format!("; uv unavailable on {arch}: pip instead"),
        )),
        (None, UvState::Absent) if v.check() => {
            Ok(Choice::Use(tool, format!("; would ship uv {short}")))
        }
        (None, UvState::Absent) => Ok(Choice::Ship),
    }
}
