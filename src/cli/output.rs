//! What the CLI's output may contain and how it ends: servers' text shown with its
//! control characters escaped (unless `--raw`), diffs only when asked for (`--diff`, or a
//! check), and a closed reader (`deploy logs JOB | head -1`) ending the command quietly
//! with exit 0.
//!
//! The two options are process-wide: they are set once from the command line, before
//! anything is printed, and read wherever a line is printed.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static RAW: AtomicBool = AtomicBool::new(false);
static DIFFS: AtomicBool = AtomicBool::new(false);

/// Sets the options from the command line (`--raw`, `--diff`).
pub fn set(raw: bool, diffs: bool) {
    RAW.store(raw, Ordering::Relaxed);
    DIFFS.store(diffs, Ordering::Relaxed);
}

/// Whether a deploy's diffs are printed under their steps (a check shows them always).
pub fn diffs() -> bool {
    DIFFS.load(Ordering::Relaxed)
}

/// `text` from a server as the terminal may show it: control characters (but tabs) as
/// `\x1b`, so a server's output cannot move the cursor, retitle the terminal or hide
/// the lines around it.  With `--raw`, as it came.
pub fn shown(text: &str) -> Cow<'_, str> {
    escaped(text, RAW.load(Ordering::Relaxed))
}

fn escaped(text: &str, raw: bool) -> Cow<'_, str> {
    let escape = |c: char| c != '\t' && c.is_control();
    if raw || !text.chars().any(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Makes a write to a closed stdout or stderr (`| head -1`) end the process with exit 0
/// and nothing on stderr, instead of `println!`'s panic ("failed printing to stdout:
/// Broken pipe") and exit 101.  The reader wanted no more; nothing failed.  Any other
/// panic keeps the default report.
pub fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_broken_pipe(message) {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn is_broken_pipe(panic_message: &str) -> bool {
    panic_message.starts_with("failed printing to std") && panic_message.contains("Broken pipe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_tabs_and_text_kept() {
        assert_eq!(
            escaped("\x1b]0;pwned\x07red\x1b[31m\tok é", false),
            "\\x1b]0;pwned\\x07red\\x1b[31m\tok é"
        );
        assert_eq!(
            escaped("carriage\rreturn \u{9b}", false),
            "carriage\\x0dreturn \\x9b"
        );
        assert!(matches!(escaped("plain text", false), Cow::Borrowed(_)));
    }

    #[test]
    fn raw_keeps_everything() {
        assert_eq!(escaped("\x1b[2J", true), "\x1b[2J");
    }

    #[test]
    fn only_a_print_to_a_closed_pipe_counts_as_one() {
        assert!(is_broken_pipe(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_broken_pipe("failed printing to stdout: No space left"));
        assert!(!is_broken_pipe("Broken pipe in the job's stream"));
    }
}
