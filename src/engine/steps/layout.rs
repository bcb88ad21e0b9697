//! `layout`: the app's own user exists and `/srv/apps/<app>/{releases,shared,run}`
//! exist with the ownership and modes of the wall between it and the deploy user (see
//! [`crate::commands::app`]); a layout from before the app had its user is repaired.

use super::{Decided, View};
use crate::commands as cmd;
use crate::facts::Facts;
use crate::ops::{Decision, Op, Report};

pub fn decide(v: &View, f: &Facts) -> Decided {
    let root = &v.paths.root;
    if f.layout()? {
        return Ok(Decision::Done(Report::ok(format!(
            "{root} exists; the app runs as {}",
            v.plan.app.runtime.run_as
        ))));
    }
    if v.check() {
        return Ok(Decision::Done(Report::changed(format!(
            "would create or repair {root}/{{releases,shared,run}} and user {}",
            v.plan.app.runtime.run_as
        ))));
    }
    Ok(Decision::act(
        vec![
            Op::run(
                cmd::app::layout_create(v.paths, &v.host.user, &v.plan.app.runtime.run_as),
                "creating the layout",
            )
            .into(),
        ],
        Report::changed(format!(
            "{root}/{{releases,shared,run}} ready; the app runs as {}",
            v.plan.app.runtime.run_as
        )),
    ))
}
