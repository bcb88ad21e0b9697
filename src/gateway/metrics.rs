//! The gateway's metrics for the people who run the bastion, served as `GET /metrics` in
//! Prometheus' text format (prometheus-client): jobs ended by kind and state, job and
//! step durations, hosts that failed or were unreachable, lease take-overs, relay bytes,
//! and the followers alive now.
//!
//! Decisions: the metrics are this process's (each gateway of a shared database is
//! scraped on its own, as Prometheus expects), counted where the thing happens (a job's
//! end in `job_life::finish`, steps and hosts as their events reach the writer, take-overs
//! in `job_life::take_over`, bytes in the relay), in one process-wide registry, like
//! Prometheus' own client libraries.  `/metrics` needs a token (any valid one; a scraper
//! gets a read-only one: `token create --user prometheus --read '*'`): the labels name
//! step names, kinds and states, never applications, hosts or users.

use std::sync::LazyLock;

use deploy_wire::EventKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    job_seconds: Histograms<KindLabel>,
    step_seconds: Histograms<StepLabels>,
    hosts_failed: Family<StatusLabel, Counter>,
    takeovers: Counter,
    relay_bytes: Counter,
    followers: Gauge,
}

/// 0.1 s to about 55 min, doubling: a no-op step to a slow fleet-wide deploy.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("deploy");
        let m = Metrics {
            jobs: Family::default(),
            job_seconds: Family::new_with_constructor(seconds),
            step_seconds: Family::new_with_constructor(seconds),
            hosts_failed: Family::default(),
            takeovers: Counter::default(),
            relay_bytes: Counter::default(),
            followers: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "jobs",
            "Jobs this gateway ended, by kind and state",
            m.jobs.clone(),
        );
        r.register(
            "job_duration_seconds",
            "Jobs from creation to end, by kind",
            m.job_seconds.clone(),
        );
        r.register(
            "step_duration_seconds",
            "Steps on hosts, by step and status",
            m.step_seconds.clone(),
        );
        r.register(
            "hosts_failed",
            "Hosts that ended a job failed or unreachable",
            m.hosts_failed.clone(),
        );
        r.register(
            "lease_takeovers",
            "Jobs of expired leases this gateway marked interrupted",
            m.takeovers.clone(),
        );
        r.register(
            "relay_bytes",
            "Bytes the artifact relay fetched from the repository",
            m.relay_bytes.clone(),
        );
        r.register(
            "followers",
            "Clients following a job's events now",
            m.followers.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A job ended (`kind`, `state` as the API words them) `secs` after it was created.
    pub fn job_ended(&self, kind: &str, state: &str, secs: f64) {
        let (kind, state) = (kind.to_string(), state.to_string());
        self.jobs
            .get_or_create(&JobLabels {
                kind: kind.clone(),
                state,
            })
            .inc();
        self.job_seconds
            .get_or_create(&KindLabel { kind })
            .observe(secs);
    }

    /// An event of a job as it reaches the writer: steps' durations, hosts' failures.
    pub fn event(&self, kind: &EventKind) {
        match kind {
            EventKind::StepFinished {
                step,
                status,
                elapsed_ms,
                ..
            } => {
                let labels = StepLabels {
                    step: step.clone(),
                    status: status.as_str().into(),
                };
                self.step_seconds
                    .get_or_create(&labels)
                    .observe(*elapsed_ms as f64 / 1000.0);
            }
            EventKind::HostFinished { status, .. } if status.is_failure() => {
                let status = status.as_str().to_string();
                self.hosts_failed
                    .get_or_create(&StatusLabel { status })
                    .inc();
            }
            _ => {}
        }
    }

    pub fn takeovers(&self, jobs: usize) {
        self.takeovers.inc_by(jobs as u64);
    }

    pub fn relay_bytes(&self, bytes: u64) {
        self.relay_bytes.inc_by(bytes);
    }

    pub fn set_followers(&self, n: usize) {
        self.followers.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text format (`text/plain; version=0.0.4` or OpenMetrics' `# EOF`-ended text).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_wire::{HostStatus, StepStatus};

    #[test]
    fn jobs_steps_and_failures_are_counted_in_the_text_format() {
        let m = Metrics::new();
        m.job_ended("rollback", "succeeded", 3.2);
        m.job_ended("rollback", "succeeded", 1.0);
        m.event(&EventKind::StepFinished {
            host: "web1".into(),
            step: "install".into(),
            status: StepStatus::Changed,
            reason: String::new(),
            diff: None,
            elapsed_ms: 1500,
        });
        m.event(&EventKind::HostFinished {
            host: "web2".into(),
            status: HostStatus::Unreachable,
            changed: 0,
            elapsed_ms: 10,
            error: Some("no route".into()),
            round_trips: 3,
        });
        m.takeovers(2);
        m.relay_bytes(4096);
        let text = m.render();
        for line in [
            "deploy_jobs_total{kind=\"rollback\",state=\"succeeded\"} 2",
            "deploy_job_duration_seconds_count{kind=\"rollback\"} 2",
            "deploy_step_duration_seconds_count{step=\"install\",status=\"changed\"} 1",
            "deploy_hosts_failed_total{status=\"unreachable\"} 1",
            "deploy_lease_takeovers_total 2",
            "deploy_relay_bytes_total 4096",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        assert!(
            !text.contains("web1") && !text.contains("no route"),
            "{text}"
        );
    }
}
