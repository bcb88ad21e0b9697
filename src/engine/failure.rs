//! What a failed command on a host means, typed: a full disk (ENOSPC: "No space left
//! on device", errno 28) said plainly with the filesystem it hit, or any other failure
//! with its exit code and last lines.  Pure: it reads a command's output, and the line
//! [`crate::commands::report_space`] adds to it when a command that writes much fails.
//!
//! Decision: a full disk is recognised from the failing command's own words (pip's
//! `[Errno 28]`, uv's `(os error 28)`, the shell's and coreutils' "No space left on
//! device"), not from a `df` taken afterwards: space freed meanwhile (the engine removes
//! an unfinished release at once) would hide it, and a disk nearly full when something
//! else failed would be blamed wrongly.

use std::fmt;

use crate::transport::Output;

/// The line a command prints (on stderr) when it failed: the mount point and the free
/// KiB of the filesystem it writes to (see [`crate::commands::report_space`]).
pub const SPACE_LINE: &str = "deploy-space:";

/// The longest excerpt of the installer's words a reason carries.
const EXCERPT: usize = 240;

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandFailure {
    /// The disk it wrote to is full.
    NoSpace {
        /// What was being done, as a phrase after "while" (`installing hello-app==1.1.0`).
        doing: String,
        /// The mount point of the filesystem, when the command said it (`/srv`).
        mount: Option<String>,
        /// The first line that says so, shortened.
        line: String,
    },
    /// Any other failure.
    Exit {
        /// What ran (`uv pip install`).
        what: String,
        status: u32,
        /// Its last lines, ` | `-joined.
        tail: String,
    },
}

impl CommandFailure {
    /// Reads a failed command's output; `doing` names it in a sentence ("installing
    /// hello-app==1.1.0"), `what` in the usual "<what> failed (exit N)".
    pub fn of(what: &str, doing: &str, out: &Output) -> CommandFailure {
        let all = || out.stderr.lines().chain(out.stdout.lines());
        let full = all().find(|l| is_no_space(l));
        let mount = all()
            .find_map(|l| l.trim().strip_prefix(SPACE_LINE))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string);
        match full {
            Some(line) => CommandFailure::NoSpace {
                doing: doing.to_string(),
                mount,
                line: shorten(line.trim()),
            },
            None => CommandFailure::Exit {
                what: what.to_string(),
                status: out.status,
                tail: tail_without_space_line(out),
            },
        }
    }

    pub fn is_no_space(&self) -> bool {
        matches!(self, CommandFailure::NoSpace { .. })
    }
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandFailure::NoSpace { doing, mount, line } => {
                let on = mount.as_deref().unwrap_or("the server's disk");
                write!(f, "no space left on {on} while {doing}: {line}")
            }
            CommandFailure::Exit { what, status, tail } => {
                write!(f, "{what} failed (exit {status}): {tail}")
            }
        }
    }
}

/// Whether a line reports ENOSPC, in the words of the shell, coreutils, pip or uv.
fn is_no_space(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("no space left on device") || l.contains("os error 28") || l.contains("errno 28")
}

fn shorten(line: &str) -> String {
    if line.chars().count() <= EXCERPT {
        return line.to_string();
    }
    let cut: String = line.chars().take(EXCERPT).collect();
    format!("{cut}...")
}

/// [`Output::tail`] without the space report.
fn tail_without_space_line(out: &Output) -> String {
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.trim().starts_with(SPACE_LINE))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    Output {
        status: out.status,
        stdout: strip(&out.stdout),
        stderr: strip(&out.stderr),
    }
    .tail()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(stdout: &str, stderr: &str) -> Output {
        Output {
            status: 2,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn uv_out_of_space_is_said_plainly_with_its_filesystem() {
        let uv = "Resolved 3 packages in 12ms\n\
            error: Failed to install: gunicorn-27.0.1-py3-none-any.whl (gunicorn==27.0.1)\n  \
            Caused by: failed to write to file `/srv/apps/hello/releases/1.1.0/lib/python3.11/site-packages/gunicorn/app/base.py`: No space left on device (os error 28)\n\
            deploy-space: /srv has 0 KiB free\n";
        let f = CommandFailure::of(
            "uv pip install",
            "installing hello-app==1.1.0",
            &failed("", uv),
        );
        assert!(f.is_no_space());
        let said = f.to_string();
        assert!(
            said.starts_with("no space left on /srv while installing hello-app==1.1.0: Caused by: failed to write to file `/srv/apps/hello/releases/1.1.0/"),
            "{said}"
        );
        assert!(said.len() < 300, "one short line: {said}");
        assert!(!said.contains("Resolved"), "{said}");
    }

    #[test]
    fn pip_and_the_shell_are_recognised_too() {
        for line in [
            "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",
            "sh: 1: cannot create /srv/apps/hello/releases/1.1.0/.deploy-complete.tmp: No space left on device",
            "cp: error writing 'x': No space left on device",
        ] {
            let f = CommandFailure::of("pip install", "installing a 1.0", &failed(line, ""));
            assert!(f.is_no_space(), "{line}");
            // Without the mount point, the disk is named generically.
            assert!(
                f.to_string()
                    .starts_with("no space left on the server's disk while installing a 1.0: "),
                "{f}"
            );
        }
    }

    #[test]
    fn other_failures_keep_their_exit_and_last_lines_without_the_space_line() {
        let f = CommandFailure::of(
            "uv pip install",
            "installing hello-app==9.9.9",
            &failed(
                "",
                "error: No solution found\n  hello-app==9.9.9 is unavailable\ndeploy-space: /srv has 51200 KiB free\n",
            ),
        );
        assert_eq!(
            f.to_string(),
            "uv pip install failed (exit 2): error: No solution found |   hello-app==9.9.9 is unavailable"
        );
    }

    #[test]
    fn a_long_line_is_shortened() {
        let long = format!("No space left on device: {}", "x".repeat(1000));
        let f = CommandFailure::of("w", "writing", &failed(&long, ""));
        assert!(f.to_string().len() < 300 && f.to_string().ends_with("..."));
    }
}
