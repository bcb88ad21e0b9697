//! deploy: the gateway side of the deployer: inventory and playbooks, templates, remote
//! command building, the SSH transport and the engine that runs a playbook on hosts.
//!
//! The `deploy` CLI is a separate package (`src/cli`) that never depends on this one; the
//! shared vocabulary (events, names) is in `deploy-wire` (`src/wire`).  See ARCHITECTURE.md.

pub mod artifacts;
pub mod builder;
pub mod commands;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod githost;
pub mod inventory;
pub mod notify;
pub mod pins;
pub mod playbook;
pub mod procman;
pub mod random;
pub mod render;
pub mod schedule;
pub mod shell;
pub mod ssh;
pub mod versions;

pub use deploy_wire as wire;
