//! Job-level phases: work that runs once per job rather than on every host, before the
//! host batches (a build, a database migration) or after them (a notification, a cache
//! purge), either on the gateway itself or on one chosen host over its connection.
//!
//! A phase is a trait object in [`super::Plan::phases`]; the caller (the gateway, later
//! a schedule) adds them after planning.  Events: `phase_started` / `phase_finished`
//! carry the phase's name and, when it ran on a host, that host.  A `before` phase that
//! fails stops the job before any host is touched; `after` phases run only when every
//! host succeeded.

use std::sync::Arc;

use deploy_wire::{Event, EventKind, Stream};
use futures_util::future::BoxFuture;

use super::EventSink;
use super::ops::Report;
use super::plan::Plan;
use super::transport::Transport;
use crate::inventory::Host;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    BeforeHosts,
    AfterHosts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// On the gateway: no host connection.
    Gateway,
    /// On the environment's first host (the canary when there is one).
    FirstHost,
}

/// What a phase may use.
pub struct PhaseCtx<'a> {
    pub plan: &'a Plan,
    /// With [`Place::FirstHost`]: the host and its open connection.
    pub host: Option<(&'a Host, &'a dyn Transport)>,
    sink: Arc<dyn EventSink>,
    name: &'a str,
}

impl<'a> PhaseCtx<'a> {
    pub fn new(
        plan: &'a Plan,
        host: Option<(&'a Host, &'a dyn Transport)>,
        sink: Arc<dyn EventSink>,
        name: &'a str,
    ) -> Self {
        PhaseCtx {
            plan,
            host,
            sink,
            name,
        }
    }
    /// In check mode a phase only reads and reports what it would do.
    pub fn check(&self) -> bool {
        self.plan.spec.check
    }
    /// Streams one line of the phase's output (already scrubbed of secrets).
    pub fn line(&self, stream: Stream, line: &str) {
        self.sink.emit(Event::now(EventKind::Output {
            host: self.host.map(|(h, _)| h.name.clone()).unwrap_or_default(),
            step: self.name.to_string(),
            stream,
            line: line.to_string(),
        }));
    }
}

/// One phase.  Its report uses the step vocabulary (ok / changed / skipped / failed).
pub trait JobPhase: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    fn when(&self) -> When;
    fn place(&self) -> Place;
    fn run<'a>(&'a self, ctx: PhaseCtx<'a>) -> BoxFuture<'a, Report>;
}
