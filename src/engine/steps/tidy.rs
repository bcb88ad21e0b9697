//! `tidy`: not a playbook step; the engine runs it after a host failed past `start`, so
//! that a slot that is not live never keeps running (a new release left up by a failed
//! `switch`, say).  It decides like the strays part of [`super::drain`], without waiting.

use super::{HostState, View, drain};
use crate::facts::Facts;
use crate::ops::Decision;

pub fn decide(v: &View, f: &Facts) -> Decision {
    let st = HostState::default();
    drain::decide(v, f, &st).unwrap_or_else(|e| Decision::Done(crate::ops::Report::failed(e)))
}
