//! deploy: the gateway. The HTTP API and the job service behind it, the store, the
//! dashboard, schedules, and the backends it alone holds credentials for (artifact
//! sources, git hosts, CI builders, notifiers), on top of `deploy-engine`.
//!
//! The engine's modules are re-exported under their names (`deploy::engine`,
//! `deploy::inventory`, ...), so the gateway and the tests name them as before the split.
//! The `deploy` CLI is a separate package (`src/cli`) that depends on neither; the shared
//! vocabulary (events, names) is in `deploy-wire` (`src/wire`).  See ARCHITECTURE.md.

pub mod artifacts;
pub mod backend;
pub mod builder;
pub mod gateway;
pub mod githost;
pub mod notify;

pub use deploy_engine as engine;
pub use deploy_engine::{
    commands, error, inventory, pins, playbook, procman, random, render, schedule, shell, ssh,
    versions,
};
pub use deploy_wire as wire;
