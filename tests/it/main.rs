//! The integration tests, as one test binary (one build and link of `support` instead of one
//! per file): each file is a module named after its concern. Run one with
//! `cargo nextest run -E "test(/^rollouts::/)"`; the groups that may not share the machine
//! are in `.config/nextest.toml`.

mod support;

mod artifact_identity;
mod artifacts;
mod bad_input;
mod boundaries;
mod build_jobs;
mod check_config;
mod contracts;
mod converge;
mod cron;
mod dashboard;
mod dashboard_sessions;
mod day_two;
mod day_two_api;
mod engine_deploy;
mod engine_failures;
mod faults;
mod followers;
mod full_disk;
mod gateway_api;
mod gateway_auth;
mod gateway_jobs;
mod gateway_lock;
mod gateway_scopes;
mod gateway_versions;
mod githosts;
mod input_checks;
mod jenkins;
mod job_life;
mod notify;
mod notify_outbox;
mod openapi;
mod package;
mod pipeline;
mod real_apps;
mod reboots;
mod rollouts;
mod schedules;
mod shared_store;
mod shipped_envs;
mod sign_in;
mod sites;
mod sites_bench;
mod systemd;
mod systemd_django;
mod watch;
mod wheel_pins;
