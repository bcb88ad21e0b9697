//! `env_file`: `shared/env` holds the application's environment (mode 0640).  Values
//! may be secrets: the diff shows names only.

use super::{Decided, HostState, View};
use crate::commands as cmd;
use crate::engine::facts::Facts;
use crate::engine::ops::{Decision, Op, Report};
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
    let write = cmd::write_file(&path, "0640", false, want.clone().into_bytes());
    Ok(Decision::act(
        vec![Op::run(write, "writing the env file").into()],
        Report::changed(format!("wrote {path}")).with_diff(d),
    ))
}
