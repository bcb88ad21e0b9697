//! An in-memory git host for tests: repositories as lists of commits and named refs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::{Commit, GitHost};
use crate::backend::BackendError;

/// A linear history (oldest first) and refs (name -> commit id).
type Repo = (Vec<Commit>, BTreeMap<String, String>);

/// Repositories by name.
#[derive(Debug, Default)]
pub struct FakeGitHost {
    pub repos: Mutex<BTreeMap<String, Repo>>,
}

impl FakeGitHost {
    /// Appends a commit to `repo`'s history and points `branch` at it.
    pub fn commit(&self, repo: &str, branch: &str, id: &str, subject: &str) {
        let mut repos = self.repos.lock().unwrap();
        let (history, refs) = repos.entry(repo.to_string()).or_default();
        history.push(Commit {
            id: id.to_string(),
            author: "test".into(),
            subject: subject.to_string(),
        });
        refs.insert(branch.to_string(), id.to_string());
    }

    fn position(&self, repo: &str, reference: &str) -> Result<(Vec<Commit>, usize), BackendError> {
        let repos = self.repos.lock().unwrap();
        let (history, refs) = repos
            .get(repo)
            .ok_or_else(|| BackendError::permanent(format!("no repository {repo}")))?;
        let head = history.last().map(|c| c.id.as_str());
        let id = match refs.get(reference) {
            Some(id) => id.as_str(),
            None if reference == "HEAD" => head.unwrap_or(reference),
            None => reference,
        };
        let i = history.iter().position(|c| c.id == id).ok_or_else(|| {
            BackendError::missing(format!("{repo} has no ref or commit {reference}"))
        })?;
        Ok((history.clone(), i))
    }
}

impl GitHost for FakeGitHost {
    fn describe(&self) -> String {
        "a fake git host".into()
    }
    fn resolve<'a>(
        &'a self,
        repo: &'a str,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Commit, BackendError>> {
        let r = self.position(repo, reference).map(|(h, i)| h[i].clone());
        Box::pin(async move { r })
    }
    fn commits_between<'a>(
        &'a self,
        repo: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Commit>, BackendError>> {
        let r = (|| {
            let (h, start) = self.position(repo, from)?;
            let (_, end) = self.position(repo, to)?;
            Ok(h[start + 1..=end.max(start)]
                .iter()
                .rev()
                .cloned()
                .collect())
        })();
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_refs_and_lists_the_commits_a_release_adds() {
        let g = FakeGitHost::default();
        for (id, s) in [("a1", "first"), ("b2", "second"), ("c3", "third")] {
            g.commit("hello", "main", id, s);
        }
        assert_eq!(g.resolve("hello", "main").await.unwrap().id, "c3");
        let ids: Vec<String> = g
            .commits_between("hello", "a1", "main")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["c3", "b2"]);
        let e = g.resolve("hello", "nope").await.unwrap_err();
        assert!(e.to_string().contains("no ref or commit nope") && !e.is_retryable());
    }
}
