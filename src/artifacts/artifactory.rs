//! JFrog Artifactory's PyPI repositories (API paths and authentication schemes).

use reqwest::RequestBuilder;

use super::{ArtifactSource, Auth, Secret, ServerIndex};
use crate::backend::BackendError;

/// JFrog Artifactory's PyPI repositories.  Follows JFrog's published documentation:
/// - "PyPI Repositories" / "Resolve PyPI packages": the simple API of repository `KEY`
///   is `<base>/api/pypi/<KEY>/simple/` (base ends in `/artifactory`);
/// - "Access Tokens": `Authorization: Bearer <token>`, or basic auth with the token as
///   the password (what pip and uv use in direct delivery);
/// - "API Key" (deprecated by JFrog, still common): header `X-JFrog-Art-Api: <key>`, or
///   basic auth with the key as the password.
#[derive(Debug, Clone)]
pub struct Artifactory {
    /// e.g. `https://company.jfrog.io/artifactory`
    pub base: String,
    pub repository: String,
    /// The base as servers reach it, when that differs.
    pub servers_base: Option<String>,
    /// Needed for direct delivery with a token or API key (basic auth on the servers).
    pub user: Option<String>,
    pub auth: Auth,
}

impl Artifactory {
    fn simple_of(&self, base: &str) -> String {
        format!(
            "{}/api/pypi/{}/simple/",
            base.trim_end_matches('/'),
            self.repository
        )
    }
}

impl ArtifactSource for Artifactory {
    fn describe(&self) -> String {
        format!(
            "Artifactory repository {} at {}",
            self.repository, self.base
        )
    }
    fn simple_url(&self) -> String {
        self.simple_of(&self.base)
    }
    fn authorize(&self, req: RequestBuilder) -> RequestBuilder {
        self.auth.apply(req)
    }
    fn servers_index(&self) -> Result<ServerIndex, BackendError> {
        let url = self.simple_of(self.servers_base.as_deref().unwrap_or(&self.base));
        let credentials = match &self.auth {
            Auth::None => None,
            Auth::Basic { user, password } => Some((user.clone(), password.clone())),
            Auth::Bearer(s) | Auth::ApiKey(s) => match &self.user {
                Some(u) => Some((u.clone(), s.clone())),
                None => {
                    return Err(BackendError::permanent(format!(
                        "{}: direct delivery sends the token as a basic-auth password, which needs `username` in the source's config (or use `delivery: relay`)",
                        self.describe()
                    )));
                }
            },
        };
        Ok(ServerIndex { url, credentials })
    }
    fn secrets(&self) -> Vec<Secret> {
        self.auth.secrets()
    }
}
