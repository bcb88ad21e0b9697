//! Calling `deploy` from cron and scripts: `--quiet` (nothing on success, one line on
//! stderr on failure), `--lock-wait` (wait for another job's lock instead of exit 6 at
//! once), the gateway's up-to-date answer to `--if-newer` (exit 0, nothing started), and
//! the token from a file (`--token-file`, `DEPLOY_TOKEN_FILE`).

use std::path::Path;
use std::time::{Duration, Instant};

use deploy_wire::api::JobInfo;
use deploy_wire::{Event, EventKind};
use serde::Serialize;

use crate::client::{CliError, Client, Result, Seen};
use crate::display::Mode;
use crate::exit;

/// How often a command waiting for a lock asks again.
pub const LOCK_POLL: Duration = Duration::from_secs(2);

/// The flags of the commands that start a job (`release`, `rollback`, `restart`).
#[derive(clap::Args, Clone, Default)]
pub struct CronArgs {
    /// Print nothing on success; on failure one line on stderr (what failed, the job,
    /// its error) and the usual exit code.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// When another job holds the application and environment: wait for it up to this
    /// long (30s, 10m, 1h), asking every few seconds, then exit 6.  Default: no waiting.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_wait: Option<Duration>,
}

/// `30s`, `10m`, `1h`: a whole number and one unit.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: a whole number and s, m or h (30s, 10m, 1h)");
    let t = text.trim();
    let split = t.len().saturating_sub(1);
    let (n, unit) = (
        t.get(..split).ok_or_else(bad)?,
        t.get(split..).ok_or_else(bad)?,
    );
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = n.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .filter(|s| *s <= 7 * 24 * 3600)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long (at most 168h)"))
}

/// A duration as a person writes it (`90s`, `10m`, `1h`).
pub fn show(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The token of a file (`--token-file`, else `DEPLOY_TOKEN_FILE`): read and trimmed.  A
/// missing, unreadable or empty file is a usage error naming the file, never its content.
pub fn token_from_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let why = e.kind().to_string();
        CliError::new(
            exit::USAGE,
            format!("cannot read the token file {}: {why}", path.display()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        let message = format!("the token file {} is empty", path.display());
        return Err(CliError::new(exit::USAGE, message));
    }
    Ok(token.to_string())
}

/// Sends the request that starts a job (waiting for the lock if asked) and follows the
/// job: as usual, or quietly.  `what` names the request in a quiet failure's line
/// (`release hello 1.4 to staging`).  The gateway's `up_to_date` answer is exit 0.
pub async fn run_job<B: Serialize>(
    c: &Client,
    a: &CronArgs,
    what: &str,
    path: &str,
    body: &B,
    mode: Mode,
) -> Result<u8> {
    let job = match post_waiting(c, a, path, body).await {
        Ok(job) => job,
        Err(e) if e.code == exit::OK => {
            if !a.quiet {
                eprintln!("deploy: {}", e.message);
            }
            return Ok(exit::OK);
        }
        Err(e) if a.quiet => return Err(one_line(e.code, format!("{what}: {}", e.message))),
        Err(e) => return Err(e),
    };
    if !a.quiet {
        return crate::start_following(c, &job, mode).await;
    }
    follow_quietly(c, &job, what).await
}

/// POSTs `body`; on `locked`, asks again every [`LOCK_POLL`] until `--lock-wait` has
/// passed (the holder said once unless quiet), then gives the last refusal (exit 6).
async fn post_waiting<B: Serialize>(
    c: &Client,
    a: &CronArgs,
    path: &str,
    body: &B,
) -> Result<JobInfo> {
    let wait = a.lock_wait.unwrap_or_default();
    let deadline = Instant::now() + wait;
    let mut said = false;
    loop {
        let e = match c.post(path, body).await {
            Ok(job) => return Ok(job),
            Err(e) => e,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if e.code != exit::LOCKED || a.lock_wait.is_none() {
            return Err(e);
        }
        if left.is_zero() {
            let message = format!("{}; gave up after waiting {}", e.message, show(wait));
            return Err(CliError::new(exit::LOCKED, message));
        }
        if !a.quiet && !said {
            eprintln!(
                "deploy: {}; waiting up to {} for it to end",
                e.message,
                show(wait)
            );
            said = true;
        }
        tokio::time::sleep(left.min(LOCK_POLL)).await;
    }
}

/// Follows a job printing nothing; a job that did not succeed is one error line: what,
/// the job id, its state and the hosts' errors (else the job's).
async fn follow_quietly(c: &Client, job: &JobInfo, what: &str) -> Result<u8> {
    let mut errors: Vec<String> = Vec::new();
    let followed = {
        // Notes (a lost and re-attached stream) are not failures: not a word of them.
        let mut seen = |s: Seen| {
            let Seen::Event { data, .. } = s else { return };
            if let Ok(Event {
                kind:
                    EventKind::HostFinished {
                        host,
                        error: Some(e),
                        ..
                    },
                ..
            }) = serde_json::from_str::<Event>(data)
            {
                // The engine's errors usually name their host already.
                let named = e.starts_with(&format!("{host}:"));
                errors.push(if named { e } else { format!("{host}: {e}") });
            }
        };
        tokio::select! {
            r = c.follow(&job.id, 0, &mut seen) => Some(r),
            _ = crate::interrupt::pressed() => None,
        }
    };
    let id = &job.id;
    let state = match followed {
        None => {
            let message = format!("{what}: detached; job {id} goes on");
            return Err(CliError::new(exit::DETACHED, message));
        }
        Some(Err(e)) => {
            return Err(one_line(
                e.code,
                format!("{what} (job {id}): {}", e.message),
            ));
        }
        Some(Ok(state)) if state == "succeeded" => return Ok(exit::OK),
        Some(Ok(state)) => state,
    };
    let why = if errors.is_empty() {
        let info: Option<JobInfo> = c.get(&format!("/v1/jobs/{id}")).await.ok();
        info.and_then(|i| i.error)
            .unwrap_or_else(|| "no error recorded".into())
    } else {
        errors.join("; ")
    };
    Err(one_line(
        exit::FAILED,
        format!("{what} {state} (job {id}): {why}"),
    ))
}

/// An error whose message is a single line.
fn one_line(code: u8, message: String) -> CliError {
    let line: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    CliError::new(code, line.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "", "s", "10", "10x", "-5m", "1.5h", "1h30m", "m10", "é", "10é",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
        let e = parse_duration("99999999999999999999h").unwrap_err();
        assert!(e.contains("not a duration"), "{e}");
        assert!(parse_duration("169h").unwrap_err().contains("too long"));
        assert_eq!(parse_duration("168h"), Ok(Duration::from_secs(168 * 3600)));
    }

    #[test]
    fn durations_show_as_written() {
        for text in ["1s", "90s", "2m", "10m", "1h", "3h"] {
            assert_eq!(show(parse_duration(text).unwrap()), text);
        }
        assert_eq!(show(Duration::from_secs(3660)), "61m");
    }

    #[test]
    fn a_token_file_is_trimmed_and_a_missing_or_empty_one_is_named() {
        let dir = std::env::temp_dir().join(format!("deploy-cron-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "  s3cret\n").unwrap();
        assert_eq!(token_from_file(&f).unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        let e = token_from_file(&f).unwrap_err();
        assert_eq!(
            (e.code, e.message.contains("is empty")),
            (exit::USAGE, true)
        );
        let gone = dir.join("gone");
        let e = token_from_file(&gone).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(
            e.message.contains(&gone.display().to_string()),
            "{}",
            e.message
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_message_becomes_one_line() {
        let e = one_line(2, "a\n  b\n\nc".into());
        assert_eq!((e.code, e.message.as_str()), (2, "a; b; c"));
    }
}
