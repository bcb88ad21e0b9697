//! The two shapes of error that cross a boundary: [`InputError`] (what a user must fix,
//! with the file, line and field it is in) and [`BackendError`] (what a seam's backend
//! returns when it fails: a transport, an artifact source, a git host, a builder, a
//! notifier), which says whether trying again may help.
//!
//! Decision: an [`InputError`] about a file (the inventory, a playbook, the gateway's
//! config) travels to anyone the gateway answers, so it names the file, line and field and
//! never the file's contents: YAML errors carry no snippet, and [`InputError::redacted`]
//! (what the gateway answers and logs) replaces every quoted value with `***`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with user input (inventory, playbook, template, request), located as
/// precisely as we can: `file:line: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    pub line: Option<u64>,
    /// Dotted path of the offending field, e.g. `applications.hello.environments.prod.groups`.
    pub field: String,
    pub message: String,
}

impl InputError {
    pub fn new(
        file: &Path,
        line: Option<u64>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        InputError {
            file: file.to_path_buf(),
            line: line.filter(|l| *l > 0),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

impl InputError {
    /// `file:line: field: message` with every value the message quotes (`"..."` as Rust's
    /// `{:?}` and serde quote strings, and
    /// serde's `` `5` `` after `integer`, `boolean`, ...) replaced by `***`: what may be
    /// shown to a client or written to a log.
    pub fn redacted(&self) -> String {
        let mut e = self.clone();
        e.message = redact_values(&self.message);
        e.to_string()
    }
}

/// `text` with quoted values replaced by `***` (see [`InputError::redacted`]).
pub fn redact_values(text: &str) -> String {
    const SCALARS: [&str; 4] = ["integer ", "floating point ", "boolean ", "character "];
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let backtick = c == '`' && SCALARS.iter().any(|w| out.ends_with(w));
        if c == '"' || backtick {
            let mut escaped = false;
            for d in chars.by_ref() {
                match d {
                    '\\' if !escaped => escaped = true,
                    d if d == c && !escaped => break,
                    _ => escaped = false,
                }
            }
            out.push_str("***");
        } else {
            out.push(c);
        }
    }
    out
}

/// The dotted path of the mapping keys that lead to line `line` of a block-style YAML
/// `text` (`applications.hello.env`): the field of a YAML error, found from indentation
/// alone, so no value is read.
fn field_at_line(text: &str, line: u64) -> String {
    let mut path: Vec<(usize, String)> = Vec::new();
    for l in text.lines().take(line as usize) {
        let body = l.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = l.len() - body.len();
        let body = body.strip_prefix("- ").unwrap_or(body);
        let key = body.split_once(':').map(|(k, _)| k.trim());
        path.retain(|(i, _)| *i < indent);
        if let Some(k) = key.filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        }) {
            path.push((indent, k.to_string()));
        }
    }
    path.into_iter()
        .map(|(_, k)| k)
        .collect::<Vec<_>>()
        .join(".")
}

/// Turns a YAML/serde error into an [`InputError`] for `file` (whose text is `text`):
/// the line and the field that leads to it, the message without any snippet of the file.
pub(crate) fn from_yaml(file: &Path, text: &str, err: serde_saphyr::Error) -> InputError {
    let line = err.location().map(|l| l.line());
    // serde-saphyr says "error: line L column C: message"; we put the line in front.
    let text_of_error = err.without_snippet().to_string();
    let field = line.map(|l| field_at_line(text, l)).unwrap_or_default();
    let text = text_of_error;
    let message = match text
        .strip_prefix("error: line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((_, msg)) => msg.to_string(),
        None => text,
    };
    InputError::new(file, line, field, message)
}

/// Whether trying the same request again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The other side was unreachable, slow or overloaded: a timeout, a connection
    /// refused, reset or lost, HTTP 5xx, 429 or 408.  Again, later, may work.
    Retryable,
    /// Asking again gets the same answer: HTTP 4xx (credentials refused, not found), an
    /// answer that does not parse, a bad configuration, a refused host key.
    Permanent,
    /// Permanent, and precisely this: what was asked about does not exist there (a git
    /// host without that branch, tag or commit).  The asker's mistake, not the
    /// backend's: the gateway answers it as an unknown name (404, exit 2).
    Missing,
}

/// A backend's failure at a seam ([`crate::transport::Transport`], and the gateway's
/// artifact sources, git hosts, builders and notifiers): what users see (`Display` is the
/// message, exactly) and whether it is worth retrying.  The message is built by the
/// backend from what it may show: never a credential (backends scrub before they
/// construct one), so `Debug` shows nothing secret either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    kind: ErrorKind,
    message: String,
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError {
            kind,
            message: message.into(),
        }
    }

    /// A failure that may go away (see [`ErrorKind::Retryable`]).
    pub fn retryable(message: impl Into<String>) -> BackendError {
        BackendError::new(ErrorKind::Retryable, message)
    }

    /// A failure that will not (see [`ErrorKind::Permanent`]).
    pub fn permanent(message: impl Into<String>) -> BackendError {
        BackendError::new(ErrorKind::Permanent, message)
    }

    /// The thing asked about does not exist (see [`ErrorKind::Missing`]).
    pub fn missing(message: impl Into<String>) -> BackendError {
        BackendError::new(ErrorKind::Missing, message)
    }

    pub fn is_missing(&self) -> bool {
        self.kind == ErrorKind::Missing
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same kind of failure, its message rewritten (context added, secrets scrubbed).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> BackendError {
        BackendError {
            kind: self.kind,
            message: f(self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_quoted_values_and_serde_scalars_but_keeps_names() {
        let m = r#"invalid type: string "hunter2 \"x\"", expected u32; integer `1234`; unknown field `evn`"#;
        assert_eq!(
            redact_values(m),
            "invalid type: string ***, expected u32; integer ***; unknown field `evn`"
        );
        let e = InputError::new(Path::new("inv.yml"), Some(3), "a.b", "bad \"pw\" isn't");
        assert_eq!(e.redacted(), "inv.yml:3: a.b: bad *** isn't");
    }

    #[test]
    fn a_yaml_error_names_its_field_and_shows_no_line_of_the_file() {
        let text =
            "applications:\n  hello:\n    env:\n      SECRET_KEY: s3cr3t-value\n      BAD: [1\n";
        let err = serde_saphyr::from_str::<serde_json::Value>(text).unwrap_err();
        let e = from_yaml(Path::new("inv.yml"), text, err);
        let shown = e.redacted();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(e.to_string().lines().count() == 1, "{e}");
        assert!(e.field.starts_with("applications.hello.env"), "{e:?}");
    }

    #[test]
    fn a_backend_error_prints_its_message_and_keeps_its_kind_through_context() {
        let e = BackendError::retryable("connection refused");
        assert_eq!(e.to_string(), "connection refused");
        assert!(e.is_retryable());
        let e = e.map_message(|m| format!("cannot reach the index: {m}"));
        assert_eq!(e.to_string(), "cannot reach the index: connection refused");
        assert_eq!(e.kind(), ErrorKind::Retryable);
        let p = BackendError::permanent("answered 404 Not Found");
        assert!(!p.is_retryable());
        assert_eq!(p.message(), "answered 404 Not Found");
    }
}
