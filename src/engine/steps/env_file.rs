//! `env_file`: `shared/env` holds the application's environment (`deploy:<run_as>`
//! 0640: the app reads it, cannot change it).  Values
//! may be secrets: the diff shows names only.

use super::{Decided, HostState, View};
use crate::commands as cmd;
use crate::facts::Facts;
use crate::ops::{Decision, Op, Report};
use crate::render::{diff, redact_env_file};

pub fn decide(v: &View, f: &Facts, st: &mut HostState) -> Decided {
    let path = v.paths.env_file();
    let want = &v.rendered.env_file;
    let have = f.env_file()?;
    if have == Some(want.as_str()) {
        return Ok(Decision::Done(Report::ok(format!("{path} is up to date"))));
    }
    let d = diff(
        &path,
        have.map(redact_env_file).as_deref(),
        &redact_env_file(want),
    );
    st.env_changed = true;
    if v.check() {
        return Ok(Decision::Done(
            Report::changed(format!("would write {path}")).with_diff(d),
        ));
    }
    let run_as = &v.plan.app.runtime.run_as;
    let write = cmd::app::write_env_file(v.paths, run_as, want.clone().into_bytes());
    Ok(Decision::act(
        vec![Op::run(write, "writing the env file").into()],
        Report::changed(format!("wrote {path}")).with_diff(d),
    ))
}
