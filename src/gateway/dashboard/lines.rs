//! A job's events as the job page shows them: one line per event (its text, its host, a
//! class for its kind, a folded diff) and each host's progress (steps done of the
//! plan, the step running, how it ended), folded from the events in order.  Pure: the
//! page's first render and its live stream both use it, so the page shows the same thing
//! whether an event came with the page or after it.

use std::collections::BTreeMap;

use deploy_wire::{Event, EventKind, Stream};
use serde::Serialize;

/// One event as a line of the job page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    pub seq: u64,
    pub ts_ms: u64,
    /// The host it concerns ("" for the job).
    pub host: String,
    /// The CSS class: `out`, `err`, `step`, `ok`, `changed`, `skipped`, `failed`, `job`.
    pub class: &'static str,
    pub text: String,
    /// A step's diff, shown folded.
    pub diff: Option<String>,
}

/// One host's progress through the job.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct HostProgress {
    pub host: String,
    /// Steps finished.
    pub done: usize,
    /// Steps in the plan (0 when the job has no step list, e.g. a one-off command).
    pub total: usize,
    /// The step running now.
    pub current: Option<String>,
    /// `running`, or how the host ended (`ok`, `changed`, `failed`, `unreachable`...).
    pub state: String,
    pub changed: usize,
    pub failed: usize,
}

/// The progress of every host of a job, in the order hosts appeared.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    steps: usize,
    hosts: BTreeMap<String, HostProgress>,
    order: Vec<String>,
}

impl Progress {
    /// Applies one event; returns the host whose progress changed.
    pub fn apply(&mut self, ev: &Event) -> Option<String> {
        use EventKind as K;
        let host = match &ev.kind {
            K::JobStarted { hosts, steps, .. } => {
                self.steps = steps.len();
                for h in hosts {
                    self.host(h);
                }
                return None;
            }
            K::HostStarted { host } | K::Connected { host, .. } => host,
            K::StepStarted { host, step } => {
                self.host(host).current = Some(step.clone());
                return Some(host.clone());
            }
            K::StepFinished { host, status, .. } => {
                let h = self.host(host);
                h.done += 1;
                h.current = None;
                match status.as_str() {
                    "changed" => h.changed += 1,
                    "failed" => h.failed += 1,
                    _ => {}
                }
                return Some(host.clone());
            }
            K::HostFinished { host, status, .. } => {
                let h = self.host(host);
                h.state = status.as_str().to_string();
                h.current = None;
                return Some(host.clone());
            }
            K::CommandExited { host, exit_code } => {
                let h = self.host(host);
                h.state = if *exit_code == 0 { "ok" } else { "failed" }.into();
                return Some(host.clone());
            }
            _ => return None,
        };
        self.host(host);
        Some(host.clone())
    }

    fn host(&mut self, name: &str) -> &mut HostProgress {
        if !self.hosts.contains_key(name) {
            self.order.push(name.to_string());
        }
        let total = self.steps;
        let h = self
            .hosts
            .entry(name.to_string())
            .or_insert_with(|| HostProgress {
                host: name.to_string(),
                state: "running".into(),
                ..HostProgress::default()
            });
        h.total = total;
        h
    }

    pub fn get(&self, host: &str) -> Option<&HostProgress> {
        self.hosts.get(host)
    }

    /// Every host, in the order they appeared.
    pub fn all(&self) -> Vec<HostProgress> {
        self.order
            .iter()
            .filter_map(|h| self.hosts.get(h))
            .cloned()
            .collect()
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// The line of one event.
pub fn line(seq: u64, ev: &Event) -> Line {
    use EventKind as K;
    let mk = |host: &str, class: &'static str, text: String| Line {
        seq,
        ts_ms: ev.ts_ms,
        host: host.to_string(),
        class,
        text,
        diff: None,
    };
    match &ev.kind {
        K::JobStarted {
            app,
            env,
            version,
            hosts,
            check,
            ..
        } => {
            let mode = if *check { " (check)" } else { "" };
            let text = format!("{app} {version} to {env}{mode}: {}", hosts.join(", "));
            mk("", "job", text)
        }
        K::HostStarted { host } => mk(host, "step", "started".into()),
        K::Connected {
            host, elapsed_ms, ..
        } => mk(host, "step", format!("connected in {}", secs(*elapsed_ms))),
        K::StepStarted { host, step } => mk(host, "step", format!("{step} ...")),
        K::Output {
            host,
            step,
            stream,
            line,
        } => {
            let class = if *stream == Stream::Stderr {
                "err"
            } else {
                "out"
            };
            let prefix = if step.is_empty() {
                String::new()
            } else {
                format!("{step}| ")
            };
            mk(host, class, format!("{prefix}{line}"))
        }
        K::StepFinished {
            host,
            step,
            status,
            reason,
            diff,
            elapsed_ms,
        } => {
            let mut l = mk(
                host,
                status.as_str(),
                format!(
                    "{step}: {} ({}) {}",
                    status.as_str(),
                    secs(*elapsed_ms),
                    reason
                ),
            );
            l.diff = diff.clone().filter(|d| !d.is_empty());
            l
        }
        K::HostFinished {
            host,
            status,
            changed,
            error,
            ..
        } => {
            let error = error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            let class = if status.is_failure() { "failed" } else { "ok" };
            mk(
                host,
                class,
                format!("host {}, {changed} changed{error}", status.as_str()),
            )
        }
        K::Switched {
            host,
            version,
            slot,
        } => mk(
            host,
            "changed",
            format!("traffic switched to {version} ({slot})"),
        ),
        K::PhaseStarted { phase, host } => mk(
            host.as_deref().unwrap_or(""),
            "step",
            format!("{phase} ..."),
        ),
        K::PhaseFinished {
            phase,
            host,
            status,
            reason,
            elapsed_ms,
        } => mk(
            host.as_deref().unwrap_or(""),
            status.as_str(),
            format!(
                "{phase}: {} ({}) {reason}",
                status.as_str(),
                secs(*elapsed_ms)
            ),
        ),
        K::CommandExited { host, exit_code } => {
            let class = if *exit_code == 0 { "ok" } else { "failed" };
            mk(host, class, format!("exited with {exit_code}"))
        }
        K::Built {
            commit,
            number,
            version,
            file,
            ..
        } => mk(
            "",
            "changed",
            format!("built {version} ({file}) from {commit}, build {number}"),
        ),
        K::Notified {
            notifier,
            event,
            attempt,
            ok,
            error,
        } => {
            let how = if *ok {
                "delivered".to_string()
            } else {
                format!("failed: {}", error.as_deref().unwrap_or("?"))
            };
            let class = if *ok { "ok" } else { "failed" };
            mk(
                "",
                class,
                format!("notify {notifier} ({event}, attempt {attempt}): {how}"),
            )
        }
        K::JobFinished {
            status,
            elapsed_ms,
            hosts_ok,
            hosts_changed,
            hosts_failed,
        } => {
            let class = match status.as_str() {
                "succeeded" => "ok",
                _ => "failed",
            };
            let text = format!(
                "job {} in {}: {hosts_ok} ok, {hosts_changed} changed, {hosts_failed} failed",
                status.as_str(),
                secs(*elapsed_ms)
            );
            mk("", class, text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_wire::StepStatus;

    fn ev(kind: EventKind) -> Event {
        Event { ts_ms: 7, kind }
    }

    #[test]
    fn progress_counts_each_hosts_steps_of_the_plan() {
        let mut p = Progress::default();
        p.apply(&ev(EventKind::JobStarted {
            app: "hello".into(),
            env: "staging".into(),
            version: "1.0".into(),
            hosts: vec!["web1".into(), "web2".into()],
            check: false,
            steps: vec!["venv".into(), "install".into()],
        }));
        let started = EventKind::StepStarted {
            host: "web2".into(),
            step: "venv".into(),
        };
        assert_eq!(p.apply(&ev(started)).as_deref(), Some("web2"));
        assert_eq!(p.get("web2").unwrap().current.as_deref(), Some("venv"));
        p.apply(&ev(EventKind::StepFinished {
            host: "web2".into(),
            step: "venv".into(),
            status: StepStatus::Changed,
            reason: "made".into(),
            diff: Some("+x".into()),
            elapsed_ms: 1200,
        }));
        let web2 = p.get("web2").unwrap();
        assert_eq!((web2.done, web2.total, web2.changed), (1, 2, 1));
        assert_eq!(web2.current, None);
        let order: Vec<_> = p.all().into_iter().map(|h| h.host).collect();
        assert_eq!(order, ["web1", "web2"]);
        assert_eq!(p.get("web1").unwrap().state, "running");
    }

    #[test]
    fn lines_say_what_happened_and_fold_diffs() {
        let finished = ev(EventKind::StepFinished {
            host: "web1".into(),
            step: "config".into(),
            status: StepStatus::Changed,
            reason: "rewritten".into(),
            diff: Some("-a\n+b".into()),
            elapsed_ms: 250,
        });
        let l = line(4, &finished);
        assert_eq!((l.seq, l.ts_ms, l.class), (4, 7, "changed"));
        assert_eq!(l.text, "config: changed (0.2s) rewritten");
        assert_eq!(l.diff.as_deref(), Some("-a\n+b"));
        let out = ev(EventKind::Output {
            host: "web1".into(),
            step: "hook".into(),
            stream: Stream::Stderr,
            line: "<b>warning</b>".into(),
        });
        let l = line(5, &out);
        assert_eq!((l.class, l.text.as_str()), ("err", "hook| <b>warning</b>"));
    }
}
