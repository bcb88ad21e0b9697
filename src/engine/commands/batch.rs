//! Batches: several remote commands sent as one (one round trip), each keeping its own
//! stdin, exit status, stdout and stderr, run in order and, when asked, stopping at the
//! first that fails.  The script travels on stdin (`sh -s`), so file contents in it
//! (base64 here-documents) never appear in a process list; every part reads its own
//! stdin or `/dev/null`, never the script.
//!
//! Each part's output is framed on both streams by lines carrying a random nonce
//! (`<nonce>:<i>:start` ... `<nonce>:<i>:exit:<status>`), which no command's output can
//! predict; [`Batch::split`] takes the frames apart and [`Demux`] follows them line by
//! line, so a part's lines can still be streamed as they come.

use super::RemoteCmd;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The first line of every batch script (the fake server recognises batches by it).
pub const HEADER: &str = "# deploy batch ";

/// One part's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartOutput {
    pub status: u32,
    pub stdout: String,
    pub stderr: String,
}

/// Several commands as one.
#[derive(Debug, Clone)]
pub struct Batch {
    pub cmd: RemoteCmd,
    pub nonce: String,
    pub parts: usize,
}

impl Batch {
    pub fn new(parts: &[RemoteCmd], stop_on_failure: bool) -> Batch {
        Batch::with_nonce(parts, stop_on_failure, &nonce())
    }

    pub fn with_nonce(parts: &[RemoteCmd], stop_on_failure: bool, nonce: &str) -> Batch {
        let mut s = format!("{HEADER}{nonce}\n");
        for (i, p) in parts.iter().enumerate() {
            let start = format!("{nonce}:{i}:start");
            s.push_str(&format!(
                "printf '%s\\n' '{start}'; printf '%s\\n' '{start}' >&2\n"
            ));
            match &p.stdin {
                Some(bytes) => {
                    s.push_str(&format!("{{ base64 -d <<'{nonce}'\n"));
                    s.push_str(&base64_lines(bytes));
                    s.push_str(&format!("{nonce}\n}} | (\n{}\n)\n", p.line));
                }
                None => s.push_str(&format!("(\n{}\n) </dev/null\n", p.line)),
            }
            s.push_str(&format!(
                "s=$?; printf '\\n%s\\n' \"{nonce}:{i}:exit:$s\"; printf '\\n%s\\n' '{nonce}:{i}:end' >&2\n"
            ));
            if stop_on_failure {
                s.push_str("[ \"$s\" -eq 0 ] || exit 0\n");
            }
        }
        Batch {
            cmd: RemoteCmd::with_stdin("sh -s", s.into_bytes()),
            nonce: nonce.to_string(),
            parts: parts.len(),
        }
    }

    /// Each part's output, in order; `None` for a part that did not run (an earlier one
    /// failed, or the batch was cut short).
    pub fn split(&self, stdout: &str, stderr: &str) -> Vec<Option<PartOutput>> {
        (0..self.parts)
            .map(|i| {
                let start = format!("{}:{i}:start\n", self.nonce);
                let (out, status) = framed(stdout, &start, &format!("\n{}:{i}:exit:", self.nonce))?;
                let status = status.trim().parse().ok()?;
                let err = framed(stderr, &start, &format!("\n{}:{i}:end", self.nonce))
                    .map(|(e, _)| e)
                    .unwrap_or_default();
                Some(PartOutput {
                    status,
                    stdout: out,
                    stderr: err,
                })
            })
            .collect()
    }
}

/// The text between `start` and `end`, and what follows `end` on its line.
fn framed(text: &str, start: &str, end: &str) -> Option<(String, String)> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    let rest = &text[from + len + end.len()..];
    let tail = rest.split('\n').next().unwrap_or_default();
    Some((text[from..from + len].to_string(), tail.to_string()))
}

/// What one part would print inside a batch (for the fake server, which runs the parts
/// itself and answers as the shell would).
pub fn frame(nonce: &str, i: usize, out: &PartOutput) -> (String, String) {
    (
        format!(
            "{nonce}:{i}:start\n{}\n{nonce}:{i}:exit:{}\n",
            out.stdout, out.status
        ),
        format!("{nonce}:{i}:start\n{}\n{nonce}:{i}:end\n", out.stderr),
    )
}

/// Takes a batch script apart again: its nonce, stop-on-failure flag and commands (for
/// the fake server).  `None`: not a batch.
pub fn parse_script(script: &[u8]) -> Option<(String, bool, Vec<RemoteCmd>)> {
    let text = std::str::from_utf8(script).ok()?;
    let mut lines = text.lines().peekable();
    let nonce = lines.next()?.strip_prefix(HEADER)?.to_string();
    let (mut parts, mut stop) = (Vec::new(), false);
    while let Some(l) = lines.next() {
        if !l.starts_with("printf '%s\\n' '") {
            stop |= l.starts_with("[ \"$s\" -eq 0 ]");
            continue;
        }
        let opener = lines.next()?;
        let stdin = if opener.starts_with("{ base64 -d") {
            let mut b64 = String::new();
            for b in lines.by_ref() {
                if b == nonce {
                    break;
                }
                b64.push_str(b);
            }
            lines.next()?; // `} | (`
            Some(bytes::Bytes::from(base64_decode(&b64)?))
        } else {
            None
        };
        let mut body: Vec<&str> = Vec::new();
        for b in lines.by_ref() {
            if b.starts_with("s=$?;") {
                break;
            }
            body.push(b);
        }
        body.pop()?; // `)` or `) </dev/null`
        let line = body.join("\n");
        parts.push(RemoteCmd { line, stdin });
    }
    Some((nonce, stop, parts))
}

/// Follows a batch's output line by line: which part a line belongs to, with the frame
/// lines (and the newline the frame adds) left out.
#[derive(Debug)]
pub struct Demux {
    nonce: String,
    /// Per stream (stdout, stderr): the part being printed, and an empty line held back
    /// (it may be the frame's own newline).
    part: [Option<usize>; 2],
    held: [bool; 2],
}

impl Demux {
    pub fn new(batch: &Batch) -> Demux {
        Demux {
            nonce: batch.nonce.clone(),
            part: [None; 2],
            held: [false; 2],
        }
    }

    /// The lines to pass on for one line of `stream` (0: stdout, 1: stderr), each with
    /// its part.
    pub fn line(&mut self, stream: usize, line: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        if let Some(rest) = line
            .strip_prefix(&self.nonce)
            .and_then(|r| r.strip_prefix(':'))
        {
            let mut f = rest.split(':');
            let i = f.next().and_then(|x| x.parse::<usize>().ok());
            match (i, f.next()) {
                (Some(i), Some("start")) => self.part[stream] = Some(i),
                _ => self.part[stream] = None,
            }
            self.held[stream] = false;
            return out;
        }
        let Some(i) = self.part[stream] else {
            return out;
        };
        if self.held[stream] {
            out.push((i, String::new()));
            self.held[stream] = false;
        }
        if line.is_empty() {
            self.held[stream] = true;
        } else {
            out.push((i, line.to_string()));
        }
        out
    }
}

/// 128 random bits, hex: unpredictable to whatever a server prints.
fn nonce() -> String {
    crate::random::hex(16)
}

/// Base64 in lines of 76 characters, each ending with a newline (as `base64 -d` reads).
fn base64_lines(bytes: &[u8]) -> String {
    let enc = BASE64.encode(bytes);
    let mut out = String::with_capacity(enc.len() + enc.len() / 76 + 1);
    for chunk in enc.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// The bytes of [`base64_lines`]' text (line breaks ignored); `None` if it is not base64.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let joined: String = s.split_ascii_whitespace().collect();
    BASE64.decode(joined).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Vec<RemoteCmd> {
        vec![
            RemoteCmd::new("echo one; echo err >&2"),
            RemoteCmd::with_stdin("cat > /dev/null; cat; printf 'no newline'", b"x".to_vec()),
            RemoteCmd::with_stdin("wc -c", b"secret=1\n\xffbin".to_vec()),
            RemoteCmd::new("exit 3 # a comment"),
            RemoteCmd::new("echo never"),
        ]
    }

    /// Runs a batch with the local shell, as a server would.
    fn run(b: &Batch) -> (String, String) {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let script = b.cmd.stdin.clone().unwrap();
        child.stdin.take().unwrap().write_all(&script).unwrap();
        let o = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    }

    #[test]
    fn each_part_keeps_its_stdin_status_and_output_and_a_failure_stops_the_rest() {
        let b = Batch::new(&parts(), true);
        assert_eq!(b.cmd.line, "sh -s");
        let (out, err) = run(&b);
        let r = b.split(&out, &err);
        let p0 = r[0].as_ref().unwrap();
        assert_eq!(
            (p0.status, p0.stdout.as_str(), p0.stderr.as_str()),
            (0, "one\n", "err\n")
        );
        // Its own stdin (empty after the first cat), never the script.
        assert_eq!(r[1].as_ref().unwrap().stdout, "no newline");
        assert_eq!(r[2].as_ref().unwrap().stdout.trim(), "13");
        assert_eq!(r[3].as_ref().unwrap().status, 3);
        assert!(r[4].is_none(), "{out}");
    }

    #[test]
    fn without_stop_on_failure_every_part_runs() {
        let b = Batch::new(&parts(), false);
        let (out, err) = run(&b);
        let r = b.split(&out, &err);
        assert_eq!(r[4].as_ref().unwrap().stdout, "never\n");
    }

    #[test]
    fn file_contents_are_not_in_the_command_line() {
        let b = Batch::new(&parts(), true);
        assert!(!b.cmd.line.contains("secret"));
        let script = String::from_utf8(b.cmd.stdin.clone().unwrap().to_vec()).unwrap();
        assert!(!script.contains("secret"), "base64 on stdin");
    }

    #[test]
    fn the_script_parses_back_into_its_parts_and_frames_match_the_shell() {
        let b = Batch::with_nonce(&parts(), true, "abc123");
        let (nonce, stop, back) = parse_script(b.cmd.stdin.as_ref().unwrap()).unwrap();
        assert_eq!((nonce.as_str(), stop), ("abc123", true));
        assert_eq!(back, parts());
        let (out, err) = run(&b);
        let r = b.split(&out, &err);
        let (fo, fe) = frame("abc123", 0, r[0].as_ref().unwrap());
        assert!(out.starts_with(&fo), "{out:?} vs {fo:?}");
        assert!(err.starts_with(&fe), "{err:?} vs {fe:?}");
    }

    #[test]
    fn demux_gives_each_line_its_part_without_the_frames() {
        let b = Batch::with_nonce(&parts(), true, "n1");
        let (out, _) = run(&b);
        let mut d = Demux::new(&b);
        let lines: Vec<(usize, String)> = out.lines().flat_map(|l| d.line(0, l)).collect();
        assert_eq!(
            lines,
            vec![
                (0, "one".to_string()),
                (1, "no newline".to_string()),
                (2, "13".to_string())
            ]
        );
    }

    #[test]
    fn base64_round_trips() {
        for s in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"\x00\xff\x10 long enough to wrap the line at seventy-six characters, surely",
        ] {
            assert_eq!(base64_decode(&base64_lines(s)).unwrap(), s);
        }
    }
}
