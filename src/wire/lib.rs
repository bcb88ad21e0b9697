//! deploy-wire: the vocabulary shared by the CLI, the gateway and the engine: events,
//! step and job results, and the validation of names that end up on servers.
//!
//! This crate does no I/O and depends on serde only, so the `deploy` CLI can use it without
//! linking anything of the engine (SSH, templates, YAML).

pub mod event;
pub mod names;

pub use event::{Event, EventKind, HostStatus, JobStatus, StepStatus, Stream};
pub mod api;
pub mod pipeline;
pub mod present;
pub mod schedule;
pub mod url;
