//! Jenkins' side of the conversation, pure: job paths, the JSON of crumbs, queue items
//! and builds, the progressive console's headers, the session cookie and one-line
//! reqwest errors.  The HTTP is [`super::jenkins`]'s.  An answer that does not parse is a
//! permanent [`BackendError`] (asking again gets the same answer).

use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::{BuildRef, BuildState};
use crate::backend::BackendError;

/// A job's path: `/job/NAME`, each folder its own `/job/SEGMENT`, percent-encoded.
pub(super) fn job_path(job: &str) -> String {
    job.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/job/{}", crate::artifacts::percent_encode(s)))
        .collect()
}

/// A reqwest error with its causes, on one line (no URL: it is said by the caller).
pub(super) fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// `N` of a `.../queue/item/N/` Location.
pub(super) fn queue_number(location: &str) -> Option<u64> {
    let (_, rest) = location.split_once("/queue/item/")?;
    rest.trim_end_matches('/').parse().ok()
}

/// The `name=value` pairs of `Set-Cookie` headers, as one `Cookie` header value.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let pairs: Vec<&str> = headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .filter(|p| p.contains('='))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Crumb {
    crumb_request_field: String,
    crumb: String,
}

/// `(header name, crumb)` from `/crumbIssuer/api/json`.
pub(super) fn parse_crumb(body: &str) -> Result<(String, String), BackendError> {
    let c: Crumb = serde_json::from_str(body)
        .map_err(|e| BackendError::permanent(format!("not a crumb: {e}")))?;
    if c.crumb_request_field.is_empty() || c.crumb.is_empty() {
        return Err(BackendError::permanent("an empty crumb"));
    }
    Ok((c.crumb_request_field, c.crumb))
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum QueueState {
    Waiting,
    Cancelled(Option<String>),
    Started(BuildRef),
}

#[derive(Deserialize)]
struct QueueItem {
    /// Not used, but every queue item has one (so an unrelated JSON is an error).
    #[serde(rename = "id")]
    _id: u64,
    #[serde(default)]
    cancelled: bool,
    #[serde(default)]
    why: Option<String>,
    #[serde(default)]
    executable: Option<Executable>,
}

#[derive(Deserialize)]
struct Executable {
    number: u64,
    #[serde(default)]
    url: String,
}

pub(super) fn parse_queue_item(body: &str) -> Result<QueueState, BackendError> {
    let q: QueueItem = serde_json::from_str(body)
        .map_err(|e| BackendError::permanent(format!("not a queue item: {e}")))?;
    Ok(match (q.executable, q.cancelled) {
        (Some(e), _) => QueueState::Started(BuildRef {
            number: e.number.to_string(),
            url: e.url,
        }),
        (None, true) => QueueState::Cancelled(q.why),
        (None, false) => QueueState::Waiting,
    })
}

/// From progressiveText's headers: the next offset (`X-Text-Size`; without it, the
/// offset plus what was read) and whether more is coming (`X-More-Data: true`).
pub(super) fn progressive(headers: &HeaderMap, offset: u64, read: usize) -> (u64, bool) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let next = header("X-Text-Size")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(offset + read as u64);
    let more = header("X-More-Data").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    (next, more)
}

/// How many bytes of a console chunk to pass on now: while the build writes, up to the
/// chunk's last newline, or (a chunk without one) its longest prefix that does not end
/// in a cut character; all of it once the build ended.  The rest is asked for again from
/// where it starts, so neither a line nor a character is cut where the CI server cut.
pub(super) fn usable(chunk: &[u8], more: bool) -> usize {
    if !more {
        return chunk.len();
    }
    match chunk.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => match std::str::from_utf8(chunk) {
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            _ => chunk.len(),
        },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    file_name: String,
    #[serde(default)]
    relative_path: String,
}

#[derive(Deserialize)]
pub(super) struct BuildJson {
    #[serde(default)]
    building: bool,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    artifacts: Vec<Artifact>,
}

pub(super) fn parse_build(body: &str) -> Result<BuildJson, BackendError> {
    serde_json::from_str(body).map_err(|e| BackendError::permanent(format!("not a build: {e}")))
}

impl BuildJson {
    /// Where the build archived `file` (its `relativePath`, under `.../artifact/`).
    pub(super) fn relative_path(&self, file: &str) -> Option<&str> {
        self.artifacts
            .iter()
            .find(|a| a.file_name == file && !a.relative_path.is_empty())
            .map(|a| a.relative_path.as_str())
    }

    /// The state this build is in, and its artifacts when it succeeded.
    pub(super) fn outcome(self) -> (BuildState, Vec<String>) {
        match (self.building, self.result.as_deref()) {
            (true, _) | (false, None) => (BuildState::Running, Vec::new()),
            (false, Some("SUCCESS")) => (
                BuildState::Succeeded,
                self.artifacts.into_iter().map(|a| a.file_name).collect(),
            ),
            (false, Some(r)) => (BuildState::Failed(format!("Jenkins says {r}")), Vec::new()),
        }
    }
}
