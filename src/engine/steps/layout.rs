//! `layout`: `/srv/apps/<app>/{releases,shared}` exist and belong to the SSH user.

use super::{Decided, View};
use crate::commands as cmd;
use crate::engine::facts::Facts;
use crate::engine::ops::{Decision, Op, Report};

pub fn decide(v: &View, f: &Facts) -> Decided {
    let root = &v.paths.root;
    if f.layout()? {
        return Ok(Decision::Done(Report::ok(format!("{root} exists"))));
    }
    if v.check() {
        return Ok(Decision::Done(Report::changed(format!(
            "would create {root}/{{releases,shared}}"
        ))));
    }
    Ok(Decision::act(
        vec![
            Op::run(
                cmd::layout_create(v.paths, &v.host.user),
                "creating the layout",
            )
            .into(),
        ],
        Report::changed(format!("created {root}/{{releases,shared}}")),
    ))
}
