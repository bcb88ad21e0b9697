//! How a job's events are shown: on a terminal, an overall bar and one live line per host
//! with its current step, then a summary table; without a terminal, plain timestamped
//! lines; with `--json`, one JSON event per line.

use std::collections::BTreeMap;
use std::time::Duration;

use deploy_wire::present::{self, Tone};
use deploy_wire::{Event, EventKind, HostStatus, StepStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    Json,
}

#[derive(Default, Clone)]
pub struct HostSummary {
    pub status: Option<HostStatus>,
    pub changed: u32,
    pub elapsed_ms: u64,
    pub error: Option<String>,
}

pub struct Display {
    mode: Mode,
    mp: MultiProgress,
    overall: Option<ProgressBar>,
    bars: BTreeMap<String, ProgressBar>,
    steps_per_host: u64,
    steps_done: BTreeMap<String, u64>,
    /// The job is a check: its diffs are what it is for.
    check: bool,
    pub hosts: BTreeMap<String, HostSummary>,
}

/// `YYYY-MM-DDTHH:MM:SSZ` from Unix milliseconds (UTC), without a date library.
pub fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn symbol(s: HostStatus) -> &'static str {
    match s {
        HostStatus::Ok => "✔ ok",
        HostStatus::Changed => "✔ changed",
        HostStatus::Failed => "✘ failed",
        HostStatus::Unreachable => "✘ unreachable",
        HostStatus::Cancelled => "■ cancelled",
    }
}

impl Display {
    pub fn new(mode: Mode) -> Display {
        let mp = MultiProgress::with_draw_target(if mode == Mode::Tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Display {
            mode,
            mp,
            overall: None,
            bars: BTreeMap::new(),
            steps_per_host: 1,
            steps_done: BTreeMap::new(),
            check: false,
            hosts: BTreeMap::new(),
        }
    }

    fn line(&self, text: String) {
        match self.mode {
            Mode::Tty => {
                let _ = self.mp.println(text);
            }
            Mode::Plain => println!("{text}"),
            Mode::Json => {}
        }
    }

    /// A line about the following itself (the stream lost, re-attached) on stderr, above
    /// the bars on a terminal; never on stdout, which `--json` keeps for events.
    pub fn note(&self, text: &str) {
        let line = format!("deploy: {text}");
        match self.mode {
            Mode::Tty => self.mp.suspend(|| eprintln!("{line}")),
            Mode::Plain | Mode::Json => eprintln!("{line}"),
        }
    }

    pub fn event(&mut self, seq: u64, json: &str) {
        if self.mode == Mode::Json {
            println!("{json}");
        }
        let Ok(ev) = serde_json::from_str::<Event>(json) else {
            return;
        };
        // The words are deploy-wire's (present.rs), shared with `apply` and the dashboard.
        let mut line = present::line(&ev.kind);
        if let EventKind::JobStarted { check, .. } = &ev.kind {
            self.check = *check;
        }
        if !(self.check || output::diffs()) {
            line.detail = diff_summary(&line.detail);
        }
        if self.mode == Mode::Plain && line.tone != Tone::Progress {
            let (ts, who) = (timestamp(ev.ts_ms), line.subject());
            println!("{ts} {who}: {}", output::shown(&line.text));
            for d in &line.detail {
                println!("{ts} {who}:     {}", output::shown(d));
            }
        }
        self.track(ev.kind, &line);
        let _ = seq;
    }

    /// Bars, the summary's bookkeeping, and the lines a terminal shows above its bars.
    fn track(&mut self, kind: EventKind, line: &present::Line) {
        let tty = self.mode == Mode::Tty;
        match kind {
            EventKind::JobStarted {
                version,
                hosts,
                check,
                steps,
                ..
            } => {
                let what = present::job_kind(check, &steps);
                self.job_started(&version, hosts, what, steps.len())
            }
            EventKind::HostStarted { host } => {
                if let Some(b) = self.bars.get(&host) {
                    b.set_message("connecting");
                }
            }
            EventKind::StepStarted { host, step } => {
                if let Some(b) = self.bars.get(&host) {
                    b.set_message(step);
                }
            }
            EventKind::Output {
                host, step, line, ..
            } if !host.is_empty() => {
                if let Some(b) = self.bars.get(&host) {
                    let short: String = output::shown(&line).chars().take(60).collect();
                    b.set_message(format!("{step}: {short}"));
                }
            }
            EventKind::StepFinished { host, status, .. } => {
                if let Some(o) = &self.overall {
                    o.inc(1);
                }
                *self.steps_done.entry(host.clone()).or_default() += 1;
                if tty && (status == StepStatus::Failed || !line.detail.is_empty()) {
                    let mut out = format!("{host}: {}", output::shown(&line.text));
                    for l in &line.detail {
                        out.push_str(&format!("\n    {}", output::shown(l)));
                    }
                    self.line(out);
                }
            }
            EventKind::HostFinished {
                host,
                status,
                changed,
                elapsed_ms,
                error,
                ..
            } => self.host_finished(host, status, changed, elapsed_ms, error),
            // A job-level phase and its output (a build's console), a build, a notice:
            // shown in full above the bars.
            EventKind::Output { .. }
            | EventKind::PhaseStarted { .. }
            | EventKind::PhaseFinished { .. }
            | EventKind::Built { .. }
            | EventKind::Notified { .. } => {
                if tty {
                    self.line(format!("job: {}", output::shown(&line.text)));
                }
            }
            EventKind::JobFinished { .. } => {
                if let Some(o) = &self.overall {
                    o.set_position(o.length().unwrap_or(0));
                    o.finish();
                }
            }
            EventKind::Connected { .. }
            | EventKind::Switched { .. }
            | EventKind::CommandExited { .. } => {}
        }
    }

    fn job_started(&mut self, version: &str, hosts: Vec<String>, what: &str, steps: usize) {
        self.steps_per_host = steps.max(1) as u64;
        if self.mode == Mode::Tty {
            let style = ProgressStyle::with_template(
                "{prefix:>12.bold} [{bar:30.cyan/blue}] {pos}/{len} steps  {elapsed}",
            )
            .unwrap()
            .progress_chars("=> ");
            let overall = self.mp.add(
                ProgressBar::new(hosts.len() as u64 * self.steps_per_host)
                    .with_style(style)
                    .with_prefix(format!("{what} {version}")),
            );
            let host_style =
                ProgressStyle::with_template("{spinner:.green} {prefix:<12} {msg}").unwrap();
            for h in &hosts {
                let bar = self.mp.add(
                    ProgressBar::new_spinner()
                        .with_style(host_style.clone())
                        .with_prefix(h.clone())
                        .with_message("waiting"),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars.insert(h.clone(), bar);
            }
            self.overall = Some(overall);
        }
        for h in hosts {
            self.hosts.entry(h).or_default();
        }
    }

    fn host_finished(
        &mut self,
        host: String,
        status: HostStatus,
        changed: u32,
        elapsed_ms: u64,
        error: Option<String>,
    ) {
        let secs = elapsed_ms as f64 / 1000.0;
        if let Some(b) = self.bars.get(&host) {
            b.finish_with_message(format!(
                "{} ({changed} changed, {secs:.1}s)",
                symbol(status)
            ));
        }
        if let Some(o) = &self.overall {
            // Steps a host did not run still count as done for the overall bar.
            let done = self.steps_done.get(&host).copied().unwrap_or(0);
            o.inc(self.steps_per_host.saturating_sub(done));
        }
        self.hosts.insert(
            host,
            HostSummary {
                status: Some(status),
                changed,
                elapsed_ms,
                error,
            },
        );
    }

    /// The summary table (terminal and plain modes).
    pub fn summary(&mut self, state: &str) {
        for b in self.bars.values() {
            if !b.is_finished() {
                b.finish_with_message("stopped");
            }
        }
        if self.mode == Mode::Json {
            return;
        }
        let _ = self.mp.clear();
        println!();
        println!(
            "{:<16} {:<12} {:>8} {:>8}",
            "HOST", "RESULT", "CHANGED", "TIME"
        );
        for (h, s) in &self.hosts {
            let result = s.status.map(|s| s.as_str()).unwrap_or("not run");
            println!(
                "{h:<16} {result:<12} {:>8} {:>7.1}s",
                s.changed,
                s.elapsed_ms as f64 / 1000.0
            );
        }
        for (h, s) in &self.hosts {
            if let Some(e) = &s.error {
                println!("  {h}: {}", present::host_error(h, e));
            }
        }
        // The hosts' ends in the words of the job's end line (`present::Tally`): a
        // cancelled job says which of its hosts changed before the cancel.
        let mut tally = present::Tally::default();
        (self.hosts.values().filter_map(|s| s.status)).for_each(|s| tally.add(s));
        match tally == present::Tally::default() {
            true => println!("job {state}"),
            false => println!("job {state}: {}", tally.words()),
        }
    }
}

/// A step's diff as one line, `(+3 -1 lines; --diff shows them)`, when diffs are not
/// wanted; nothing when there is none.
fn diff_summary(diff: &[String]) -> Vec<String> {
    if diff.is_empty() {
        return vec![];
    }
    let counted = |sign: &str, header: &str| {
        diff.iter()
            .filter(|l| l.starts_with(sign) && !l.starts_with(header))
            .count()
    };
    let (added, removed) = (counted("+", "+++"), counted("-", "---"));
    vec![format!("(+{added} -{removed} lines; --diff shows them)")]
}

#[cfg(test)]
mod tests {
    use super::diff_summary;

    #[test]
    fn a_diff_becomes_one_line_of_counts() {
        let diff: Vec<String> = ["--- a", "+++ b", "@@ -1 +1,2 @@", "-x", "+y", "+z", " same"]
            .map(String::from)
            .into();
        assert_eq!(diff_summary(&diff), ["(+2 -1 lines; --diff shows them)"]);
        assert!(diff_summary(&[]).is_empty());
    }

    #[test]
    fn timestamps_are_utc_iso() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::timestamp(1_795_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
