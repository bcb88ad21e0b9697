//! How a job's events are shown: on a terminal, an overall bar and one live line per host
//! with its current step, then a summary table; without a terminal, plain timestamped
//! lines; with `--json`, one JSON event per line.

use std::collections::BTreeMap;
use std::time::Duration;

use deploy_wire::{Event, EventKind, HostStatus, StepStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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

    pub fn event(&mut self, seq: u64, json: &str) {
        if self.mode == Mode::Json {
            println!("{json}");
        }
        let Ok(ev) = serde_json::from_str::<Event>(json) else {
            return;
        };
        let ts = timestamp(ev.ts_ms);
        let plain = self.mode == Mode::Plain;
        match ev.kind {
            EventKind::JobStarted {
                env,
                version,
                hosts,
                check,
                steps,
                app,
            } => {
                // A one-off command (`deploy run`) is a job of one step, `run`.
                let what = match (check, steps.as_slice()) {
                    (true, _) => "check",
                    (false, [one]) if one == "run" => "run",
                    (false, [one]) if one == "build" => "build",
                    _ => "deploy",
                };
                self.job_started(&ts, &app, &env, &version, hosts, what, steps.len())
            }
            EventKind::HostStarted { host } => {
                if let Some(b) = self.bars.get(&host) {
                    b.set_message("connecting");
                }
            }
            EventKind::Connected {
                host, elapsed_ms, ..
            } => {
                if plain {
                    println!("{ts} {host}: connected ({elapsed_ms} ms)");
                }
            }
            EventKind::StepStarted { host, step } => {
                if let Some(b) = self.bars.get(&host) {
                    b.set_message(step);
                }
            }
            EventKind::Output {
                host, step, line, ..
            } if host.is_empty() => {
                // A job-level phase's output (a build's console): shown in full.
                self.job_line(&ts, format!("{step}: | {line}"));
            }
            EventKind::Output {
                host, step, line, ..
            } => {
                if plain {
                    println!("{ts} {host}: {step}: | {line}");
                } else if let Some(b) = self.bars.get(&host) {
                    let short: String = line.chars().take(60).collect();
                    b.set_message(format!("{step}: {short}"));
                }
            }
            EventKind::StepFinished {
                host,
                step,
                status,
                reason,
                diff,
                elapsed_ms,
            } => {
                let text = format!("{step} {} {reason}", status.as_str());
                self.step_finished(&ts, &host, text, status, diff, elapsed_ms)
            }
            EventKind::HostFinished {
                host,
                status,
                changed,
                elapsed_ms,
                error,
                ..
            } => self.host_finished(&ts, host, status, changed, elapsed_ms, error),
            EventKind::Switched {
                host,
                version,
                slot,
            } => {
                if plain {
                    println!("{ts} {host}: now serving {version} ({slot})");
                }
            }
            EventKind::PhaseStarted { phase, host } => {
                let on = host.map(|h| format!(" on {h}")).unwrap_or_default();
                self.job_line(&ts, format!("{phase}{on} started"));
            }
            EventKind::PhaseFinished {
                phase,
                host,
                status,
                reason,
                elapsed_ms,
            } => {
                let on = host.map(|h| format!(" on {h}")).unwrap_or_default();
                let s = status.as_str();
                self.job_line(&ts, format!("{phase}{on} {s} {reason} ({elapsed_ms} ms)"));
            }
            EventKind::Built {
                commit,
                number,
                version,
                file,
                sha256,
                ..
            } => {
                let short = &commit[..commit.len().min(12)];
                let sum = &sha256[..sha256.len().min(16)];
                self.job_line(
                    &ts,
                    format!("built {version} from {short} (build {number}): {file} sha256 {sum}…"),
                );
            }
            EventKind::Notified {
                notifier,
                event,
                attempt,
                ok,
                error,
            } => {
                let how = match (ok, error) {
                    (true, _) => "delivered".to_string(),
                    (false, e) => format!("not delivered: {}", e.unwrap_or_default()),
                };
                self.job_line(&ts, format!("{notifier} {event} (attempt {attempt}) {how}"));
            }
            EventKind::CommandExited { host, exit_code } => {
                if plain {
                    println!("{ts} {host}: the command exited {exit_code}");
                }
            }
            EventKind::JobFinished {
                status, elapsed_ms, ..
            } => {
                if let Some(o) = &self.overall {
                    o.set_position(o.length().unwrap_or(0));
                    o.finish();
                }
                if plain {
                    let secs = elapsed_ms as f64 / 1000.0;
                    println!("{ts} job: {} in {secs:.1}s", status.as_str());
                }
            }
        }
        let _ = seq;
    }

    /// A line about the job as a whole (job-level phases).
    fn job_line(&self, ts: &str, text: String) {
        match self.mode {
            Mode::Plain => println!("{ts} job: {text}"),
            Mode::Tty => self.line(format!("job: {text}")),
            Mode::Json => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn job_started(
        &mut self,
        ts: &str,
        app: &str,
        env: &str,
        version: &str,
        hosts: Vec<String>,
        what: &str,
        steps: usize,
    ) {
        self.steps_per_host = steps.max(1) as u64;
        if self.mode == Mode::Plain {
            println!(
                "{ts} job: {what} {app} {version} to {env} on {} host(s)",
                hosts.len()
            );
        }
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

    fn step_finished(
        &mut self,
        ts: &str,
        host: &str,
        text: String,
        status: StepStatus,
        diff: Option<String>,
        elapsed_ms: u64,
    ) {
        if let Some(o) = &self.overall {
            o.inc(1);
        }
        *self.steps_done.entry(host.to_string()).or_default() += 1;
        if self.mode == Mode::Plain {
            println!("{ts} {host}: {text} ({elapsed_ms} ms)");
            for l in diff.iter().flat_map(|d| d.lines()) {
                println!("{ts} {host}:     {l}");
            }
        } else if self.mode == Mode::Tty && (status == StepStatus::Failed || diff.is_some()) {
            let mut out = format!("{host}: {text}");
            for l in diff.iter().flat_map(|d| d.lines()) {
                out.push_str(&format!("\n    {l}"));
            }
            self.line(out);
        }
    }

    fn host_finished(
        &mut self,
        ts: &str,
        host: String,
        status: HostStatus,
        changed: u32,
        elapsed_ms: u64,
        error: Option<String>,
    ) {
        let secs = elapsed_ms as f64 / 1000.0;
        if self.mode == Mode::Plain {
            let why = error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
            println!(
                "{ts} {host}: {} ({changed} changed, {secs:.1}s){why}",
                status.as_str()
            );
        }
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
                println!("  {h}: {e}");
            }
        }
        println!("job {state}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_iso() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::timestamp(1_795_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
