//! Input errors: what a user must fix, with the file, line and field it is in.

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

/// Turns a YAML/serde error into an [`InputError`] for `file`.
pub(crate) fn from_yaml(file: &Path, err: serde_saphyr::Error) -> InputError {
    let line = err.location().map(|l| l.line());
    // serde-saphyr says "error: line L column C: message"; we put the line in front.
    let text = err.to_string();
    let message = match text
        .strip_prefix("error: line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((_, msg)) => msg.to_string(),
        None => text,
    };
    InputError::new(file, line, "", message)
}
