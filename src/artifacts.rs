//! Artifact sources: where releases live (any PyPI simple index, or Artifactory's PyPI
//! repositories), how the gateway authenticates to them, and what they list (files with
//! their hashes).  Everything else in the crate says "source", never "Artifactory".
//!
//! A source is a small, synchronous description ([`ArtifactSource`]: URLs and
//! credentials); the HTTP work is shared ([`list_files`], [`list_versions`], [`get`]), so a
//! new kind of repository is one more impl of the trait.  Credentials are [`Secret`]s: they
//! go into request headers, never into URLs, messages or `Debug` output.

use std::fmt;

use reqwest::{RequestBuilder, Url};

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
                    userinfo_encode(user),
                    userinfo_encode(pw.expose())
                )),
                None => Secret::new(self.url.clone()),
            },
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn userinfo_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A repository of Python distributions.
pub trait ArtifactSource: Send + Sync + fmt::Debug {
    /// What it is, for messages (never a credential).
    fn describe(&self) -> String;
    /// The base of its simple API as the gateway reaches it (ends with `/`).
    fn simple_url(&self) -> String;
    /// Adds its credentials to a request to it.
    fn authorize(&self, req: RequestBuilder) -> RequestBuilder;
    /// The index as servers reach it in direct delivery.
    fn servers_index(&self) -> Result<ServerIndex, String>;
    /// Every secret it holds (for scrubbing output).
    fn secrets(&self) -> Vec<Secret>;
}

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
    fn servers_index(&self) -> Result<ServerIndex, String> {
        let url = with_slash(self.servers_url.as_deref().unwrap_or(&self.url));
        let credentials = match &self.auth {
            Auth::None => None,
            Auth::Basic { user, password } => Some((user.clone(), password.clone())),
            Auth::Bearer(_) | Auth::ApiKey(_) => {
                return Err(format!(
                    "{} uses a bearer token, which pip and uv cannot send to an index; use `delivery: relay` for this environment",
                    self.describe()
                ));
            }
        };
        Ok(ServerIndex { url, credentials })
    }
    fn secrets(&self) -> Vec<Secret> {
        self.auth.secrets()
    }
}

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
    fn servers_index(&self) -> Result<ServerIndex, String> {
        let url = self.simple_of(self.servers_base.as_deref().unwrap_or(&self.base));
        let credentials = match &self.auth {
            Auth::None => None,
            Auth::Basic { user, password } => Some((user.clone(), password.clone())),
            Auth::Bearer(s) | Auth::ApiKey(s) => match &self.user {
                Some(u) => Some((u.clone(), s.clone())),
                None => {
                    return Err(format!(
                        "{}: direct delivery sends the token as a basic-auth password, which needs `username` in the source's config (or use `delivery: relay`)",
                        self.describe()
                    ));
                }
            },
        };
        Ok(ServerIndex { url, credentials })
    }
    fn secrets(&self) -> Vec<Secret> {
        self.auth.secrets()
    }
}

fn with_slash(u: &str) -> String {
    format!("{}/", u.trim_end_matches('/'))
}

/// One distribution file a source lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistFile {
    pub filename: String,
    /// Absolute URL.
    pub url: String,
    /// Lowercase hex SHA-256, when the index gives one.
    pub sha256: Option<String>,
    pub requires_python: Option<String>,
    pub yanked: bool,
}

/// PEP 503 name normalisation: lowercase, runs of `-`, `_`, `.` become `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The version in a distribution file name, if it is this project's wheel or sdist.
pub fn version_of(filename: &str, project: &str) -> Option<String> {
    let stem = filename
        .strip_suffix(".whl")
        .or_else(|| filename.strip_suffix(".tar.gz"))
        .or_else(|| filename.strip_suffix(".zip"))?;
    let norm = normalize(project).replace('-', "_");
    let lower = stem.to_ascii_lowercase().replace(['-', '.'], "_");
    if !lower.starts_with(&format!("{norm}_")) {
        return None;
    }
    let rest = &stem[norm.len() + 1..];
    Some(if filename.ends_with(".whl") {
        rest.split('-').next()?.to_string()
    } else {
        rest.to_string()
    })
}

/// Is `name` a plausible distribution file name (no path, no shell or URL syntax)?
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '!'))
}

/// The project's page URL in a source.
pub fn project_url(src: &dyn ArtifactSource, project: &str) -> String {
    format!("{}{}/", src.simple_url(), normalize(project))
}

/// Lists a project's files (an unknown project has none).
pub async fn list_files(
    http: &reqwest::Client,
    src: &dyn ArtifactSource,
    project: &str,
) -> Result<Vec<DistFile>, String> {
    let url = project_url(src, project);
    let resp = src
        .authorize(http.get(&url))
        .header(
            "Accept",
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )
        .send()
        .await
        .map_err(|e| format!("cannot reach {}: {}", src.describe(), e.without_url()))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(format!(
            "{} refused the gateway's credentials ({status}) for {url}",
            src.describe()
        ));
    }
    if !status.is_success() {
        return Err(format!("{} answered {status} for {url}", src.describe()));
    }
    let json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .contains("json");
    let body = resp
        .text()
        .await
        .map_err(|e| format!("reading {url}: {}", e.without_url()))?;
    let base = Url::parse(&url).map_err(|e| format!("bad URL {url}: {e}"))?;
    if json {
        parse_json(&body, &base).map_err(|e| format!("bad JSON from {url}: {e}"))
    } else {
        Ok(parse_html(&body, &base))
    }
}

/// A project's versions, oldest first (PEP 440), from its file names.
pub async fn list_versions(
    http: &reqwest::Client,
    src: &dyn ArtifactSource,
    project: &str,
) -> Result<Vec<String>, String> {
    let files = list_files(http, src, project).await?;
    let mut v: Vec<String> = files
        .iter()
        .filter(|f| !f.yanked)
        .filter_map(|f| version_of(&f.filename, project))
        .collect();
    crate::versions::sort(&mut v);
    v.dedup();
    Ok(v)
}

/// GETs a file a source listed.  Credentials go only to the source's own origin (a
/// listing may point at a CDN).
pub async fn get(
    http: &reqwest::Client,
    src: &dyn ArtifactSource,
    url: &str,
) -> Result<reqwest::Response, String> {
    let same_origin = match (Url::parse(url), Url::parse(&src.simple_url())) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    };
    let req = http.get(url);
    let req = if same_origin { src.authorize(req) } else { req };
    let resp = req.send().await.map_err(|e| {
        format!(
            "cannot download from {}: {}",
            src.describe(),
            e.without_url()
        )
    })?;
    if !resp.status().is_success() {
        return Err(format!(
            "{} answered {} for {url}",
            src.describe(),
            resp.status()
        ));
    }
    Ok(resp)
}

fn parse_json(body: &str, base: &Url) -> Result<Vec<DistFile>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(body)?;
    Ok(v["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let filename = f["filename"].as_str()?.to_string();
            let url = base.join(f["url"].as_str()?).ok()?.to_string();
            Some(DistFile {
                sha256: f["hashes"]["sha256"].as_str().map(str::to_ascii_lowercase),
                requires_python: f["requires-python"].as_str().map(str::to_string),
                yanked: match &f["yanked"] {
                    serde_json::Value::Bool(b) => *b,
                    serde_json::Value::String(_) => true,
                    _ => false,
                },
                filename,
                url: strip_fragment(&url),
            })
        })
        .collect())
}

fn strip_fragment(u: &str) -> String {
    u.split('#').next().unwrap_or(u).to_string()
}

/// PEP 503: `<a href="URL#sha256=HEX" data-requires-python="..." data-yanked>NAME</a>`.
fn parse_html(body: &str, base: &Url) -> Vec<DistFile> {
    let mut out = Vec::new();
    for chunk in body.split("<a ").skip(1) {
        let Some((attrs, rest)) = chunk.split_once('>') else {
            continue;
        };
        let filename = unescape(rest.split('<').next().unwrap_or("").trim());
        let Some(href) = attr(attrs, "href") else {
            continue;
        };
        let Ok(url) = base.join(&href) else { continue };
        let sha256 = url.fragment().and_then(|f| {
            f.strip_prefix("sha256=")
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        });
        out.push(DistFile {
            filename,
            url: strip_fragment(url.as_str()),
            sha256,
            requires_python: attr(attrs, "data-requires-python"),
            yanked: attrs.contains("data-yanked"),
        });
    }
    out
}

fn attr(attrs: &str, name: &str) -> Option<String> {
    let i = attrs.find(&format!("{name}="))? + name.len() + 1;
    let rest = &attrs[i..];
    let q = rest.chars().next()?;
    let v = if q == '"' || q == '\'' {
        rest[1..].split(q).next()?
    } else {
        rest.split([' ', '>']).next()?
    };
    Some(unescape(v))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// HTML-escapes text for an attribute or element.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(no_user.servers_index().unwrap_err().contains("username"));
        let bearer = SimpleIndex {
            url: "http://idx/simple".into(),
            servers_url: None,
            auth: Auth::Bearer(Secret::new("x")),
        };
        assert!(bearer.servers_index().unwrap_err().contains("relay"));
    }
}
