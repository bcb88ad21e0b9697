//! What a server needs to reach a package index: its URL and the basic credentials its
//! installer may send ([`ServerIndex`]), and the [`Secret`] type every credential is held
//! in. The sources that list and fetch (Artifactory, PyPI simple indexes) are the
//! gateway's; the engine only hands a server its index.

use std::fmt;

/// A credential.  `Debug` and `Display` print `***`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The index as servers reach it (direct delivery), with the basic credentials their
/// installer may send.  pip and uv speak only basic auth to an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIndex {
    pub url: String,
    pub credentials: Option<(String, Secret)>,
}

impl ServerIndex {
    /// The URL with the credentials in it (percent-encoded), for the installer's
    /// environment.  Never log this.
    pub fn url_with_credentials(&self) -> Secret {
        match &self.credentials {
            None => Secret::new(self.url.clone()),
            Some((user, pw)) => match self.url.split_once("://") {
                Some((scheme, rest)) => Secret::new(format!(
                    "{scheme}://{}:{}@{rest}",
                    percent_encode(user),
                    percent_encode(pw.expose())
                )),
                None => Secret::new(self.url.clone()),
            },
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (URL userinfo, a
/// path segment).
pub fn percent_encode(s: &str) -> String {
    deploy_wire::url::encode_component(s)
}

/// The one file a deploy installs for its release: the name and SHA-256 the index
/// listed when the gateway accepted the job (and the ledger recorded).  Each host's
/// installer must get exactly these bytes (`commands::install`), and the release's
/// marker keeps the hash, so `status --live` can say which file a host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelPin {
    /// The file's name on the index (`hello_app-1.0.0-py3-none-any.whl`), for messages.
    pub file: String,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

impl WheelPin {
    /// A pin, if `sha256` is a SHA-256 in hex (any case); None otherwise.
    pub fn new(file: &str, sha256: &str) -> Option<WheelPin> {
        let ok = sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit());
        ok.then(|| WheelPin {
            file: file.to_string(),
            sha256: sha256.to_ascii_lowercase(),
        })
    }
}
