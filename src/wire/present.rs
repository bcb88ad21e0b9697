//! One presentation of a job's events: the words every front end shows (the CLI's lines,
//! `deploy-gateway apply`, the dashboard's job page), so a step, a switch or a host's end
//! reads the same wherever it is seen. Pure: an event in, a [`Line`] out; each front end
//! adds its own timestamp, progress bar, colour or HTML.

use crate::event::{EventKind, HostStatus, Stream};

/// What a line is, for a front end's colour or CSS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A host or a step began: front ends with progress bars show it there, plain ones
    /// not at all; the dashboard shows it as a line.
    Progress,
    /// A command's standard output.
    Output,
    /// A command's standard error.
    ErrorOutput,
    Ok,
    Changed,
    Skipped,
    Failed,
    /// About the job as a whole, neither good nor bad (its start, a phase's start).
    Job,
}

impl Tone {
    /// Its name, also the dashboard's CSS class: `step`, `out`, `err`, `ok`, `changed`,
    /// `skipped`, `failed`, `job`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Progress => "step",
            Tone::Output => "out",
            Tone::ErrorOutput => "err",
            Tone::Ok => "ok",
            Tone::Changed => "changed",
            Tone::Skipped => "skipped",
            Tone::Failed => "failed",
            Tone::Job => "job",
        }
    }
}

/// One event, worded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The host it concerns; `None` for the job as a whole.
    pub host: Option<String>,
    /// What happened, without the host or a timestamp.
    pub text: String,
    /// Lines shown under it (a step's diff), in order.
    pub detail: Vec<String>,
    pub tone: Tone,
}

impl Line {
    /// `web1` or `job`: who the line is about, as the plain front ends prefix it.
    pub fn subject(&self) -> &str {
        self.host.as_deref().unwrap_or("job")
    }
}

/// Seconds with one decimal: `3.2s`.
pub fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// What a job does, from its start event: `check`, `run` (a one-off command), `build` or
/// `deploy`.
pub fn job_kind(check: bool, steps: &[String]) -> &'static str {
    match (check, steps) {
        (true, _) => "check",
        (false, [one]) if one == "run" => "run",
        (false, [one]) if one == "build" => "build",
        _ => "deploy",
    }
}

/// How many hosts of a job ended each way, in the words of their ends (`HostStatus`):
/// the one wording of a job's outcome, so the job's last line, the dashboard's job page
/// and its job list say what its hosts' table says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub changed: u32,
    pub ok: u32,
    pub failed: u32,
    pub unreachable: u32,
    pub cancelled: u32,
}

impl Tally {
    /// Counts one host's end.
    pub fn add(&mut self, status: HostStatus) {
        let n = match status {
            HostStatus::Changed => &mut self.changed,
            HostStatus::Ok => &mut self.ok,
            HostStatus::Failed => &mut self.failed,
            HostStatus::Unreachable => &mut self.unreachable,
            HostStatus::Cancelled => &mut self.cancelled,
        };
        *n += 1;
    }

    /// From a `job_finished` event's counts (`not_ok` includes the unreachable and the
    /// cancelled hosts).
    pub fn of_end(ok: u32, changed: u32, not_ok: u32, unreachable: u32, cancelled: u32) -> Tally {
        Tally {
            changed,
            ok,
            failed: not_ok.saturating_sub(unreachable + cancelled),
            unreachable,
            cancelled,
        }
    }

    /// `1 changed, 1 failed, 2 cancelled`: each end with hosts, in this order; `no host`.
    pub fn words(&self) -> String {
        let parts: Vec<String> = [
            (self.changed, "changed"),
            (self.ok, "ok"),
            (self.failed, "failed"),
            (self.unreachable, "unreachable"),
            (self.cancelled, "cancelled"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, w)| format!("{n} {w}"))
        .collect();
        if parts.is_empty() {
            "no host".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The tone of a status word (`ok`, `changed`, `skipped`, `failed`, or a host's or job's
/// end: `unreachable`, `cancelled`, `succeeded`...).
pub fn tone_of(status: &str) -> Tone {
    match status {
        "ok" | "succeeded" => Tone::Ok,
        "changed" => Tone::Changed,
        "skipped" => Tone::Skipped,
        _ => Tone::Failed,
    }
}

fn on(host: &Option<String>) -> String {
    host.as_ref()
        .map(|h| format!(" on {h}"))
        .unwrap_or_default()
}

/// The line of one event.
pub fn line(kind: &EventKind) -> Line {
    use EventKind as K;
    let job = |tone, text| Line {
        host: None,
        text,
        detail: vec![],
        tone,
    };
    let host = |h: &str, tone, text| Line {
        host: Some(h.to_string()),
        text,
        detail: vec![],
        tone,
    };
    match kind {
        K::JobStarted {
            app,
            env,
            version,
            hosts,
            check,
            steps,
        } => job(
            Tone::Job,
            format!(
                "{} {app} {version} to {env} on {} host(s)",
                job_kind(*check, steps),
                hosts.len()
            ),
        ),
        K::HostStarted { host: h } => host(h, Tone::Progress, "started".into()),
        K::Connected {
            host: h,
            elapsed_ms,
            ..
        } => host(h, Tone::Ok, format!("connected ({elapsed_ms} ms)")),
        K::StepStarted { host: h, step } => host(h, Tone::Progress, format!("{step} ...")),
        K::Output {
            host: h,
            step,
            stream,
            line,
        } => {
            let tone = match stream {
                Stream::Stderr => Tone::ErrorOutput,
                Stream::Stdout => Tone::Output,
            };
            let text = format!("{step}: | {line}");
            if h.is_empty() {
                job(tone, text)
            } else {
                host(h, tone, text)
            }
        }
        K::StepFinished {
            host: h,
            step,
            status,
            reason,
            diff,
            elapsed_ms,
        } => Line {
            detail: diff
                .iter()
                .flat_map(|d| d.lines())
                .map(String::from)
                .collect(),
            ..host(
                h,
                tone_of(status.as_str()),
                format!("{step} {} {reason} ({elapsed_ms} ms)", status.as_str()),
            )
        },
        K::HostFinished {
            host: h,
            status,
            changed,
            elapsed_ms,
            error,
            ..
        } => {
            let why = (error.as_deref())
                .map(|e| format!(": {}", host_error(h, e)))
                .unwrap_or_default();
            let tone = match status {
                HostStatus::Ok => Tone::Ok,
                HostStatus::Changed => Tone::Changed,
                HostStatus::Cancelled => Tone::Skipped,
                _ => Tone::Failed,
            };
            let text = format!(
                "{} ({changed} changed, {}){why}",
                status.as_str(),
                secs(*elapsed_ms)
            );
            host(h, tone, text)
        }
        K::Switched {
            host: h,
            version,
            slot,
        } => host(h, Tone::Changed, format!("now serving {version} ({slot})")),
        // A phase may take minutes (a build): its start is a line of its own everywhere.
        K::PhaseStarted { phase, host: h } => job(Tone::Job, format!("{phase}{} started", on(h))),
        K::PhaseFinished {
            phase,
            host: h,
            status,
            reason,
            elapsed_ms,
        } => job(
            tone_of(status.as_str()),
            format!(
                "{phase}{} {} {reason} ({elapsed_ms} ms)",
                on(h),
                status.as_str()
            ),
        ),
        K::Built {
            commit,
            number,
            version,
            file,
            sha256,
            ..
        } => {
            let short = &commit[..commit.len().min(12)];
            let sum = &sha256[..sha256.len().min(16)];
            job(
                Tone::Changed,
                format!("built {version} from {short} (build {number}): {file} sha256 {sum}…"),
            )
        }
        K::Notified {
            notifier,
            event,
            attempt,
            ok,
            error,
        } => {
            let (tone, how) = match (ok, error) {
                (true, _) => (Tone::Ok, "delivered".to_string()),
                (false, e) => (
                    Tone::Failed,
                    format!("not delivered: {}", e.as_deref().unwrap_or_default()),
                ),
            };
            job(
                tone,
                format!("{notifier} {event} (attempt {attempt}) {how}"),
            )
        }
        K::CommandExited { host: h, exit_code } => {
            let tone = if *exit_code == 0 {
                Tone::Ok
            } else {
                Tone::Failed
            };
            host(h, tone, format!("the command exited {exit_code}"))
        }
        K::JobFinished {
            status,
            elapsed_ms,
            hosts_ok,
            hosts_changed,
            hosts_failed,
            hosts_unreachable,
            hosts_cancelled,
        } => {
            let tally = Tally::of_end(
                *hosts_ok,
                *hosts_changed,
                *hosts_failed,
                *hosts_unreachable,
                *hosts_cancelled,
            );
            let (status, took) = (status.as_str(), secs(*elapsed_ms));
            job(
                tone_of(status),
                format!("{status} in {took}: {}", tally.words()),
            )
        }
    }
}

/// A host's error without the host's own name in front (the engine's errors start with
/// it, `web1: step install failed: ...`; every front end already shows the host).
pub fn host_error<'a>(host: &str, error: &'a str) -> &'a str {
    (error.strip_prefix(host))
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{JobStatus, StepStatus};

    #[test]
    fn a_step_a_switch_and_the_ends_read_the_same_everywhere() {
        let step = line(&EventKind::StepFinished {
            host: "web1".into(),
            step: "switch".into(),
            status: StepStatus::Changed,
            reason: "live -> hello-green: 1.0.0 -> 1.1.0 (no reload)".into(),
            diff: Some("-a\n+b".into()),
            elapsed_ms: 12,
        });
        assert_eq!(step.subject(), "web1");
        assert_eq!(
            step.text,
            "switch changed live -> hello-green: 1.0.0 -> 1.1.0 (no reload) (12 ms)"
        );
        assert_eq!(step.detail, ["-a", "+b"]);
        assert_eq!(step.tone, Tone::Changed);

        let switched = line(&EventKind::Switched {
            host: "web1".into(),
            version: "1.1.0".into(),
            slot: "green".into(),
        });
        assert_eq!(switched.text, "now serving 1.1.0 (green)");

        let host = line(&EventKind::HostFinished {
            host: "web2".into(),
            status: HostStatus::Unreachable,
            changed: 0,
            elapsed_ms: 10_000,
            error: Some("connecting timed out".into()),
            round_trips: 0,
        });
        assert_eq!(
            (host.text.as_str(), host.tone),
            (
                "unreachable (0 changed, 10.0s): connecting timed out",
                Tone::Failed
            )
        );

        let end = line(&EventKind::JobFinished {
            status: JobStatus::Failed,
            elapsed_ms: 3_250,
            hosts_ok: 1,
            hosts_changed: 1,
            hosts_failed: 1,
            hosts_unreachable: 0,
            hosts_cancelled: 0,
        });
        assert_eq!(end.subject(), "job");
        assert_eq!(end.text, "failed in 3.2s: 1 changed, 1 ok, 1 failed");
        let cancelled = line(&EventKind::JobFinished {
            status: JobStatus::Cancelled,
            elapsed_ms: 1_000,
            hosts_ok: 0,
            hosts_changed: 1,
            hosts_failed: 2,
            hosts_unreachable: 0,
            hosts_cancelled: 2,
        });
        assert_eq!(cancelled.text, "cancelled in 1.0s: 1 changed, 2 cancelled");
    }

    #[test]
    fn a_hosts_error_is_not_prefixed_with_the_host_twice() {
        let failed = line(&EventKind::HostFinished {
            host: "web1".into(),
            status: HostStatus::Failed,
            changed: 1,
            elapsed_ms: 2_000,
            error: Some("web1: step install failed: exit 1".into()),
            round_trips: 0,
        });
        assert_eq!(
            failed.text,
            "failed (1 changed, 2.0s): step install failed: exit 1"
        );
        assert_eq!(host_error("web1", "web10: x"), "web10: x");
        assert_eq!(host_error("web1", "timed out"), "timed out");
    }

    #[test]
    fn a_jobs_end_names_its_hosts_ends_as_their_table_does() {
        let end = |failed, unreachable, cancelled| {
            line(&EventKind::JobFinished {
                status: JobStatus::Failed,
                elapsed_ms: 100,
                hosts_ok: 0,
                hosts_changed: 0,
                hosts_failed: failed,
                hosts_unreachable: unreachable,
                hosts_cancelled: cancelled,
            })
            .text
        };
        assert_eq!(end(3, 0, 2), "failed in 0.1s: 1 failed, 2 cancelled");
        assert_eq!(end(3, 1, 2), "failed in 0.1s: 1 unreachable, 2 cancelled");
        // An event stored before the counts existed: all of them failed, as it said.
        assert_eq!(end(3, 0, 0), "failed in 0.1s: 3 failed");
        let mut t = Tally::default();
        for s in [
            HostStatus::Failed,
            HostStatus::Cancelled,
            HostStatus::Cancelled,
        ] {
            t.add(s);
        }
        assert_eq!(t, Tally::of_end(0, 0, 3, 0, 2));
        assert_eq!(t.words(), "1 failed, 2 cancelled");
        assert_eq!(Tally::default().words(), "no host");
    }

    #[test]
    fn a_job_says_what_it_does_and_a_phase_where_it_ran() {
        let started = |check, steps: &[&str]| {
            line(&EventKind::JobStarted {
                app: "hello".into(),
                env: "staging".into(),
                version: "1.0".into(),
                hosts: vec!["web1".into()],
                check,
                steps: steps.iter().map(|s| s.to_string()).collect(),
            })
            .text
        };
        assert_eq!(
            started(false, &["venv", "install"]),
            "deploy hello 1.0 to staging on 1 host(s)"
        );
        assert!(started(true, &["venv"]).starts_with("check "));
        assert!(started(false, &["run"]).starts_with("run "));
        let phase = line(&EventKind::PhaseFinished {
            phase: "migrate".into(),
            host: Some("web1".into()),
            status: StepStatus::Failed,
            reason: "exit 1".into(),
            elapsed_ms: 40,
        });
        assert_eq!(
            (phase.subject(), phase.text.as_str(), phase.tone),
            ("job", "migrate on web1 failed exit 1 (40 ms)", Tone::Failed)
        );
        let out = line(&EventKind::Output {
            host: "web1".into(),
            step: "hook".into(),
            stream: Stream::Stderr,
            line: "<b>warning</b>".into(),
        });
        assert_eq!(
            (out.text.as_str(), out.tone.as_str()),
            ("hook: | <b>warning</b>", "err")
        );
    }
}
