//! Any PyPI simple index (PEP 503 HTML, PEP 691 JSON): pypiserver, devpi, Nexus, PyPI.

use reqwest::RequestBuilder;

use super::{ArtifactSource, Auth, Secret, ServerIndex, with_slash};
use crate::backend::BackendError;

/// Any PyPI simple index (PEP 503 HTML, PEP 691 JSON): pypiserver, devpi, Nexus, PyPI.
#[derive(Debug, Clone)]
pub struct SimpleIndex {
    pub url: String,
    /// As servers reach it, when that differs from `url`.
    pub servers_url: Option<String>,
    pub auth: Auth,
}

impl ArtifactSource for SimpleIndex {
    fn describe(&self) -> String {
        format!("the index {}", self.url)
    }
    fn simple_url(&self) -> String {
        with_slash(&self.url)
    }
    fn authorize(&self, req: RequestBuilder) -> RequestBuilder {
        self.auth.apply(req)
    }
    fn servers_index(&self) -> Result<ServerIndex, BackendError> {
        let url = with_slash(self.servers_url.as_deref().unwrap_or(&self.url));
        let credentials = match &self.auth {
            Auth::None => None,
            Auth::Basic { user, password } => Some((user.clone(), password.clone())),
            Auth::Bearer(_) | Auth::ApiKey(_) => {
                return Err(BackendError::permanent(format!(
                    "{} uses a bearer token, which pip and uv cannot send to an index; use `delivery: relay` for this environment",
                    self.describe()
                )));
            }
        };
        Ok(ServerIndex { url, credentials })
    }
    fn secrets(&self) -> Vec<Secret> {
        self.auth.secrets()
    }
}
