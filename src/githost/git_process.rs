//! Running the `git` CLI for [`super::git::PlainGit`]: its environment (no prompt, no
//! inherited repository, a token only in the environment), a process group killed whole
//! at its timeout, and what a failure's stderr says: a hint for refused credentials and
//! whether asking again may help.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::artifacts::Secret;
use crate::backend::ErrorKind;

/// Whether a git command that failed may succeed if run again, from its stderr: the
/// network's failures are retryable (a host that cannot be resolved or reached, a
/// connection refused, reset or timed out, a hang-up, an HTTP 5xx, 429 or 408 from the
/// remote); anything else is not (refused credentials, no such repository or ref).
pub(super) fn failure_kind(stderr: &str) -> ErrorKind {
    let s = stderr.to_ascii_lowercase();
    let http = ["returned error: ", "rpc failed; http "];
    let refused_4xx = http.iter().any(|h| {
        s.split(h).skip(1).any(|rest| {
            rest.starts_with('4') && !rest.starts_with("429") && !rest.starts_with("408")
        })
    });
    if refused_4xx {
        return ErrorKind::Permanent;
    }
    let network = [
        "could not resolve host",
        "temporary failure in name resolution",
        "connection refused",
        "connection reset",
        "timed out",
        "network is unreachable",
        "couldn't connect to server",
        "failed to connect",
        "unable to connect",
        "the remote end hung up unexpectedly",
        "early eof",
        "returned error: 5",
        "returned error: 429",
        "returned error: 408",
        "rpc failed",
    ];
    if network.iter().any(|n| s.contains(n)) {
        ErrorKind::Retryable
    } else {
        ErrorKind::Permanent
    }
}

/// A hint when git's words for a refused credential do not say so.
pub(super) fn auth_hint(line: &str) -> &'static str {
    let refused = [
        "could not read Username",
        "Authentication failed",
        "error: 401",
        "error: 403",
    ];
    match refused.iter().any(|r| line.contains(r)) {
        true => " (the remote refused the gateway's credentials, or needs some)",
        false => "",
    }
}

pub(super) fn last_line(s: &str) -> Option<&str> {
    s.lines().map(str::trim).rev().find(|l| !l.is_empty())
}

/// The environment every git command gets: no prompt, no inherited repository, and the
/// token (if any) as an extra HTTP header with redirects off.
pub(super) fn configure(cmd: &mut Command, token: Option<&Secret>) {
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_CONFIG_PARAMETERS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    cmd.env("GCM_INTERACTIVE", "never");
    cmd.env("LC_ALL", "C");
    match token {
        Some(t) => {
            cmd.env("GIT_CONFIG_COUNT", "2");
            cmd.env("GIT_CONFIG_KEY_0", "http.extraHeader");
            cmd.env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Bearer {}", t.expose()),
            );
            cmd.env("GIT_CONFIG_KEY_1", "http.followRedirects");
            cmd.env("GIT_CONFIG_VALUE_1", "false");
        }
        None => {
            cmd.env("GIT_CONFIG_COUNT", "0");
        }
    }
}

/// What running a command came to.
pub(super) enum Ran {
    Exited {
        ok: bool,
        stdout: String,
        stderr: String,
    },
    TimedOut,
    NotStarted(std::io::Error),
}

/// Runs `cmd` (blocking) in its own process group, killed whole after `timeout`.
pub(super) fn run(mut cmd: Command, timeout: Duration) -> Ran {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ran::NotStarted(e),
    };
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => break None,
        }
    };
    let Some(status) = status else {
        // The group: git's helpers (remote-https, index-pack) hold the pipes too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.kill();
        let _ = child.wait();
        return Ran::TimedOut;
    };
    Ran::Exited {
        ok: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_s_failures_are_retryable_and_refusals_permanent() {
        let retryable = [
            "fatal: unable to access 'https://h/x.git/': Could not resolve host: h",
            "fatal: unable to access 'http://127.0.0.1:1/x/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server",
            "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused",
            "ssh: connect to host h port 22: Connection timed out\nfatal: Could not read from remote repository.",
            "fatal: unable to access 'https://h/x.git/': The requested URL returned error: 503",
            "error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502",
            "fatal: the remote end hung up unexpectedly",
            "fatal: unable to access 'https://h/x.git/': The requested URL returned error: 429",
        ];
        for e in retryable {
            assert_eq!(failure_kind(e), ErrorKind::Retryable, "{e}");
        }
        let permanent = [
            "fatal: Authentication failed for 'https://h/x.git/'",
            "fatal: could not read Username for 'https://h': terminal prompts disabled",
            "fatal: unable to access 'https://h/x.git/': The requested URL returned error: 403",
            "remote: Repository not found.\nfatal: repository 'https://h/x.git/' not found",
            "fatal: ambiguous argument 'nope': unknown revision or path not in the working tree.",
            "error: RPC failed; HTTP 401 curl 22 The requested URL returned error: 401\nfatal: the remote end hung up unexpectedly",
        ];
        for e in permanent {
            assert_eq!(failure_kind(e), ErrorKind::Permanent, "{e}");
        }
    }

    #[test]
    fn the_token_goes_in_the_environment_only() {
        let mut cmd = Command::new("git");
        configure(&mut cmd, Some(&Secret::new("tok-123")));
        assert!(
            cmd.get_args()
                .all(|a| !a.to_string_lossy().contains("tok-123"))
        );
        let header = cmd
            .get_envs()
            .find(|(k, _)| *k == "GIT_CONFIG_VALUE_0")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        assert_eq!(header.as_deref(), Some("Authorization: Bearer tok-123"));
    }

    #[test]
    fn a_command_that_hangs_is_killed() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let t = Instant::now();
        assert!(matches!(
            run(cmd, Duration::from_millis(200)),
            Ran::TimedOut
        ));
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
