//! A job's events as the job page shows them: one line per event (deploy-wire's words,
//! its host, a class for its tone, a folded diff) and each host's progress (steps done of
//! the plan, the step running, how it ended) and the tally of their ends (`present::Tally`,
//! the words of the job's last line too), folded from the events in order.  Pure: the
//! page's first render and its live stream both use it, so the page shows the same thing
//! whether an event came with the page or after it.

use std::collections::BTreeMap;

use deploy_wire::{Event, EventKind, HostStatus, present};
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
    /// Each host's last end (a halt rollback may end a host twice).
    ends: BTreeMap<String, HostStatus>,
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
                self.ends.insert(host.clone(), *status);
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

    /// How many hosts ended each way, as their rows say.
    pub fn tally(&self) -> present::Tally {
        let mut t = present::Tally::default();
        for s in self.ends.values() {
            t.add(*s);
        }
        t
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

/// The hosts' tally of a `job_finished` event, in words (`1 failed, 2 cancelled`).
pub fn outcome(ev: &Event) -> Option<String> {
    let EventKind::JobFinished {
        hosts_ok,
        hosts_changed,
        hosts_failed,
        hosts_unreachable,
        hosts_cancelled,
        ..
    } = &ev.kind
    else {
        return None;
    };
    let t = present::Tally::of_end(
        *hosts_ok,
        *hosts_changed,
        *hosts_failed,
        *hosts_unreachable,
        *hosts_cancelled,
    );
    Some(t.words())
}

/// The line of one event, in the words of [`deploy_wire::present`] (the CLI's and
/// `apply`'s words too); the class is its tone.
pub fn line(seq: u64, ev: &Event) -> Line {
    let l = present::line(&ev.kind);
    Line {
        seq,
        ts_ms: ev.ts_ms,
        host: l.host.unwrap_or_default(),
        class: l.tone.as_str(),
        text: l.text,
        diff: (!l.detail.is_empty()).then(|| l.detail.join("\n")),
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
    fn the_hosts_tally_says_what_their_rows_and_the_jobs_last_line_say() {
        use deploy_wire::{HostStatus, JobStatus};
        let mut p = Progress::default();
        let end = |host: &str, status| {
            ev(EventKind::HostFinished {
                host: host.into(),
                status,
                changed: 0,
                elapsed_ms: 0,
                error: None,
                round_trips: 0,
            })
        };
        p.apply(&end("web1", HostStatus::Failed));
        p.apply(&end("web2", HostStatus::Cancelled));
        p.apply(&end("web3", HostStatus::Cancelled));
        let states: Vec<_> = p.all().into_iter().map(|h| h.state).collect();
        assert_eq!(states, ["failed", "cancelled", "cancelled"]);
        assert_eq!(p.tally().words(), "1 failed, 2 cancelled");
        let end = ev(EventKind::JobFinished {
            status: JobStatus::Failed,
            elapsed_ms: 1000,
            hosts_ok: 0,
            hosts_changed: 0,
            hosts_failed: 3,
            hosts_unreachable: 0,
            hosts_cancelled: 2,
        });
        let last = line(9, &end);
        assert_eq!(outcome(&end).as_deref(), Some("1 failed, 2 cancelled"));
        assert_eq!(last.text, "failed in 1.0s: 1 failed, 2 cancelled");
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
        assert_eq!(l.text, "config changed rewritten (250 ms)");
        assert_eq!(l.diff.as_deref(), Some("-a\n+b"));
        let out = ev(EventKind::Output {
            host: "web1".into(),
            step: "hook".into(),
            stream: deploy_wire::Stream::Stderr,
            line: "<b>warning</b>".into(),
        });
        let l = line(5, &out);
        assert_eq!(
            (l.class, l.text.as_str()),
            ("err", "hook: | <b>warning</b>")
        );
    }
}
