//! Artifact sources: where releases live (any PyPI simple index, or Artifactory's PyPI
//! repositories), how the gateway authenticates to them, and what they list (files with
//! their hashes).  Everything else in the crate says "source", never "Artifactory".
//!
//! A source is a small, synchronous description ([`ArtifactSource`]: URLs and
//! credentials); the HTTP work is shared ([`list_files`], [`list_versions`], [`get`]), so a
//! new kind of repository is one more impl of the trait.  All of it fails with a
//! [`BackendError`]: the network and 5xx/429 are retryable, refusals (4xx), what does not
//! parse and a source that cannot serve direct delivery are not.  Credentials are [`Secret`]s: they
//! go into request headers, never into URLs, messages or `Debug` output.
//!
//! One file per kind of repository: [`simple`] (any PyPI simple index) and
//! [`artifactory`]; [`pypi`] holds the shared HTTP and the PEP 503/691 parsing;
//! [`redirect`] follows redirects so that credentials stay on the source's origin.

mod artifactory;
mod pypi;
mod redirect;
mod simple;

pub use artifactory::Artifactory;
pub use pypi::*;
pub use redirect::{client, same_origin, send};
pub use simple::SimpleIndex;

use std::fmt;

pub use deploy_engine::index::{Secret, ServerIndex, percent_encode};

use reqwest::RequestBuilder;

use crate::backend::BackendError;

/// How the gateway authenticates to a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// HTTP basic (a PyPI index behind basic auth; Artifactory user + password or token).
    Basic {
        user: String,
        password: Secret,
    },
    /// `Authorization: Bearer` (an index behind a token; an Artifactory access token).
    Bearer(Secret),
    /// Artifactory's API key, sent as `X-JFrog-Art-Api`.
    ApiKey(Secret),
}

impl Auth {
    fn apply(&self, req: RequestBuilder) -> RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
            Auth::ApiKey(k) => req.header("X-JFrog-Art-Api", k.expose()),
        }
    }

    /// Every secret this auth holds (for scrubbing output).
    pub fn secrets(&self) -> Vec<Secret> {
        match self {
            Auth::None => vec![],
            Auth::Basic { password, .. } => vec![password.clone()],
            Auth::Bearer(t) | Auth::ApiKey(t) => vec![t.clone()],
        }
    }
}

/// A repository of Python distributions.
pub trait ArtifactSource: Send + Sync + fmt::Debug {
    /// What it is, for messages (never a credential).
    fn describe(&self) -> String;
    /// The base of its simple API as the gateway reaches it (ends with `/`).
    fn simple_url(&self) -> String;
    /// Adds its credentials to a request to it.
    fn authorize(&self, req: RequestBuilder) -> RequestBuilder;
    /// The index as servers reach it in direct delivery; a source that cannot give one
    /// (its credentials cannot travel to a server) is a permanent error.
    fn servers_index(&self) -> Result<ServerIndex, BackendError>;
    /// Every secret it holds (for scrubbing output).
    fn secrets(&self) -> Vec<Secret>;
}

pub(crate) fn with_slash(u: &str) -> String {
    format!("{}/", u.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::pypi::{parse_html, parse_json};
    use super::*;
    use reqwest::Url;

    #[test]
    fn normalizes_and_reads_versions_from_file_names() {
        assert_eq!(normalize("Hello_App"), "hello-app");
        assert_eq!(normalize("hello-app"), "hello-app");
        assert_eq!(normalize("hello.-app"), "hello-app");
        assert_eq!(
            version_of("hello_app-1.2.0-py3-none-any.whl", "Hello_App").as_deref(),
            Some("1.2.0")
        );
        assert_eq!(
            version_of("Hello_App-1.0.tar.gz", "hello-app").as_deref(),
            Some("1.0")
        );
        assert_eq!(
            version_of("gunicorn-27.0.1-py3-none-any.whl", "hello-app"),
            None
        );
    }

    #[test]
    fn parses_pep503_html_with_hashes() {
        let base = Url::parse("http://idx/simple/hello-app/").unwrap();
        let html = r#"<html><body>
<a href="../../packages/hello_app-1.0.0-py3-none-any.whl#sha256=ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789" data-requires-python="&gt;=3.8">hello_app-1.0.0-py3-none-any.whl</a><br/>
<a href='/p/hello_app-0.9.tar.gz' data-yanked="">hello_app-0.9.tar.gz</a>
</body></html>"#;
        let f = parse_html(html, &base);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].filename, "hello_app-1.0.0-py3-none-any.whl");
        assert_eq!(
            f[0].url,
            "http://idx/packages/hello_app-1.0.0-py3-none-any.whl"
        );
        assert_eq!(
            f[0].sha256.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert_eq!(f[0].requires_python.as_deref(), Some(">=3.8"));
        assert!(!f[0].yanked);
        assert_eq!(f[1].url, "http://idx/p/hello_app-0.9.tar.gz");
        assert_eq!(f[1].sha256, None);
        assert!(f[1].yanked);
    }

    #[test]
    fn parses_pep691_json() {
        let base = Url::parse("http://idx/simple/hello-app/").unwrap();
        let json = r#"{"meta":{"api-version":"1.0"},"name":"hello-app","files":[
            {"filename":"hello_app-1.1.0-py3-none-any.whl","url":"../../f/hello_app-1.1.0-py3-none-any.whl",
             "hashes":{"sha256":"00ff"},"requires-python":">=3.9","yanked":false},
            {"filename":"hello_app-1.0.0-py3-none-any.whl","url":"https://cdn/x.whl","hashes":{},"yanked":"bad"}]}"#;
        let f = parse_json(json, &base).unwrap();
        assert_eq!(f[0].url, "http://idx/f/hello_app-1.1.0-py3-none-any.whl");
        assert_eq!(f[0].sha256.as_deref(), Some("00ff"));
        assert_eq!(f[0].requires_python.as_deref(), Some(">=3.9"));
        assert_eq!(f[1].url, "https://cdn/x.whl");
        assert!(f[1].yanked);
    }

    #[test]
    fn artifactory_layout_and_server_credentials() {
        let a = Artifactory {
            base: "https://acme.jfrog.io/artifactory/".into(),
            repository: "pypi-local".into(),
            servers_base: None,
            user: Some("svc".into()),
            auth: Auth::Bearer(Secret::new("t0k/en")),
        };
        assert_eq!(
            a.simple_url(),
            "https://acme.jfrog.io/artifactory/api/pypi/pypi-local/simple/"
        );
        assert_eq!(
            project_url(&a, "Hello_App"),
            "https://acme.jfrog.io/artifactory/api/pypi/pypi-local/simple/hello-app/"
        );
        let s = a.servers_index().unwrap();
        assert_eq!(
            s.url_with_credentials().expose(),
            "https://svc:t0k%2Fen@acme.jfrog.io/artifactory/api/pypi/pypi-local/simple/"
        );
        assert!(!format!("{s:?} {a:?}").contains("t0k"));
        let no_user = Artifactory { user: None, ..a };
        let e = no_user.servers_index().unwrap_err();
        assert!(e.to_string().contains("username") && !e.is_retryable());
        let bearer = SimpleIndex {
            url: "http://idx/simple".into(),
            servers_url: None,
            auth: Auth::Bearer(Secret::new("x")),
        };
        let e = bearer.servers_index().unwrap_err();
        assert!(e.to_string().contains("relay") && !e.is_retryable());
    }
}
