//! A Jenkins build's archived file, read back from Jenkins to hash it: the build's
//! `api/json` gives the file's `relativePath`, and `GET /job/NAME/N/artifact/PATH`
//! ("Remote Access API": every archived file is served under the build's `artifact/`)
//! streams it through SHA-256, never held whole in memory.  The gateway compares that
//! hash with the index's file before it records a build.

use std::time::Duration;

use reqwest::Method;
use sha2::{Digest, Sha256};

use super::super::jenkins_api::{job_path, parse_build};
use super::Jenkins;
use crate::backend::BackendError;
use crate::builder::Builder;

/// How long one download of an archived file may take (a wheel of tens of megabytes
/// over a slow link).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

impl Jenkins {
    /// The SHA-256 of `file` as build `id` archived it.
    pub(super) async fn archived_sha256(
        &self,
        id: &str,
        file: &str,
    ) -> Result<String, BackendError> {
        let t = self.known(id)?;
        let build = t.build.ok_or_else(|| {
            BackendError::permanent(format!(
                "{}: build {id} has not left the queue: it archived nothing",
                self.describe()
            ))
        })?;
        let run = format!("{}/{}", job_path(&t.job), build.number);
        let body = self.get_text(&format!("{run}/api/json")).await?;
        let json = parse_build(&body).map_err(|e| self.about(&format!("build {run}"), e))?;
        let rel = json.relative_path(file).ok_or_else(|| {
            BackendError::permanent(format!(
                "{}: build {} archived no {file}",
                self.describe(),
                build.number
            ))
        })?;
        let encoded: Vec<String> = rel
            .split('/')
            .map(crate::artifacts::percent_encode)
            .collect();
        let path = format!("{run}/artifact/{}", encoded.join("/"));
        let what = format!("GET {path}");
        let req = self.request(Method::GET, &path).timeout(DOWNLOAD_TIMEOUT);
        let mut resp = self.send(req, &what).await?;
        let mut hash = Sha256::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.unanswered(&format!("reading {what}"), e))?
        {
            hash.update(&chunk);
        }
        Ok(hex::encode(hash.finalize()))
    }
}
