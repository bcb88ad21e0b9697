//! A scripted builder for tests: each build runs through the given console lines, one
//! per poll, and ends as told.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::{BuildRequest, BuildState, Builder, Progress};

#[derive(Debug, Default)]
pub struct FakeBuilder {
    /// The console lines every build prints, and whether it fails.
    pub script: (Vec<String>, bool),
    /// id -> (request, polls so far)
    pub builds: Mutex<BTreeMap<String, (BuildRequest, usize)>>,
}

impl Builder for FakeBuilder {
    fn describe(&self) -> String {
        "a fake builder".into()
    }
    fn start<'a>(&'a self, req: &'a BuildRequest) -> BoxFuture<'a, Result<String, String>> {
        let mut b = self.builds.lock().unwrap();
        let id = (b.len() + 1).to_string();
        b.insert(id.clone(), (req.clone(), 0));
        Box::pin(async move { Ok(id) })
    }
    fn poll<'a>(&'a self, id: &'a str, offset: u64) -> BoxFuture<'a, Result<Progress, String>> {
        let r = (|| {
            let mut b = self.builds.lock().unwrap();
            let (_, polls) = b.get_mut(id).ok_or_else(|| format!("no build {id}"))?;
            *polls += 1;
            let (lines, fails) = &self.script;
            let line = lines.get(offset as usize).cloned();
            let state = match (&line, fails) {
                (Some(_), _) => BuildState::Running,
                (None, true) => BuildState::Failed("the tests failed".into()),
                (None, false) => BuildState::Succeeded,
            };
            Ok(Progress {
                state,
                console: line.map(|l| format!("{l}\n")).unwrap_or_default(),
                next_offset: offset + 1,
            })
        })();
        Box::pin(async move { r })
    }
}
