//! `tidy`: not a playbook step; the engine runs it after a host failed past `start`, so
//! that a slot that is not live never keeps running (a new release left up by a failed
//! `switch`, say).  It decides like the strays part of [`super::drain`], without waiting.

use super::{HostState, View, drain};
use crate::engine::facts::Facts;
use crate::engine::ops::Decision;

pub fn decide(v: &View, f: &Facts) -> Decision {
    let st = HostState::default();
    drain::decide(v, f, &st)
        .unwrap_or_else(|e| Decision::Done(crate::engine::ops::Report::failed(e)))
}
