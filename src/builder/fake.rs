//! A scripted builder for tests: each build runs through the given console lines, one
//! per poll, and ends as told; polls can be made to fail first (retryably or not).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use futures_util::future::BoxFuture;

use super::{BuildRef, BuildRequest, BuildState, Builder, Progress};
use crate::backend::BackendError;

#[derive(Debug, Default)]
pub struct FakeBuilder {
    /// The console lines every build prints, and whether it fails.
    pub script: (Vec<String>, bool),
    /// The file names a successful build reports as archived.
    pub artifacts: Vec<String>,
    /// When set, builds report a [`BuildRef`] numbered by their id under this URL
    /// (`{base}{id}/`); when not, they never say which build they are.
    pub build_urls: Option<String>,
    /// id -> (request, polls so far)
    pub builds: Mutex<BTreeMap<String, (BuildRequest, usize)>>,
    /// What the next polls fail with, in order (a failed poll does not count).
    pub poll_errors: Mutex<VecDeque<BackendError>>,
    /// Builds asked to stop, in order.
    pub cancelled: Mutex<Vec<String>>,
    /// Polls that answer "queued" before a build starts.
    pub queued_polls: usize,
    /// The SHA-256 of each archived file (by name); a file not here cannot be read.
    pub archived: BTreeMap<String, String>,
}

impl FakeBuilder {
    fn builds(&self) -> MutexGuard<'_, BTreeMap<String, (BuildRequest, usize)>> {
        self.builds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Builder for FakeBuilder {
    fn describe(&self) -> String {
        "a fake builder".into()
    }
    fn start<'a>(&'a self, req: &'a BuildRequest) -> BoxFuture<'a, Result<String, BackendError>> {
        let mut b = self.builds();
        let id = (b.len() + 1).to_string();
        b.insert(id.clone(), (req.clone(), 0));
        Box::pin(async move { Ok(id) })
    }
    fn poll<'a>(
        &'a self,
        id: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Progress, BackendError>> {
        let r = (|| {
            if let Some(e) = self.poll_errors.lock().ok().and_then(|mut q| q.pop_front()) {
                return Err(e);
            }
            let mut b = self.builds();
            let (_, polls) = b
                .get_mut(id)
                .ok_or_else(|| BackendError::permanent(format!("no build {id}")))?;
            *polls += 1;
            if *polls <= self.queued_polls {
                return Ok(Progress {
                    state: BuildState::Queued,
                    console: String::new(),
                    next_offset: offset,
                    build: None,
                    artifacts: Vec::new(),
                });
            }
            let (lines, fails) = &self.script;
            let line = lines.get(offset as usize).cloned();
            let state = match (&line, fails) {
                (Some(_), _) => BuildState::Running,
                (None, true) => BuildState::Failed("the tests failed".into()),
                (None, false) => BuildState::Succeeded,
            };
            let artifacts = match state {
                BuildState::Succeeded => self.artifacts.clone(),
                _ => Vec::new(),
            };
            Ok(Progress {
                state,
                console: line.map(|l| format!("{l}\n")).unwrap_or_default(),
                next_offset: offset + 1,
                build: self.build_urls.as_ref().map(|base| BuildRef {
                    number: id.to_string(),
                    url: format!("{base}{id}/"),
                }),
                artifacts,
            })
        })();
        Box::pin(async move { r })
    }
    fn resume(&self, _id: &str, _build: Option<BuildRef>) {}
    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        self.cancelled.lock().unwrap().push(id.to_string());
        Box::pin(async { Ok(()) })
    }
    fn artifact_sha256<'a>(
        &'a self,
        id: &'a str,
        file: &'a str,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        let r = self
            .archived
            .get(file)
            .cloned()
            .ok_or_else(|| BackendError::permanent(format!("build {id} archived no {file}")));
        Box::pin(async move { r })
    }
}
