//! The HTTP every source shares: list a project's files with their hashes (PEP 691
//! JSON or PEP 503 HTML), its versions, and download a listed file; file-name rules.

use reqwest::Url;

use super::ArtifactSource;
use crate::backend::{BackendError, request_kind, status_kind};

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

/// Lists a project's files (an unknown project has none).  Retryable: the index could
/// not be reached or answered 5xx/429; permanent: it refused the credentials, answered
/// another 4xx, or sent what does not parse.
pub async fn list_files(
    http: &reqwest::Client,
    src: &dyn ArtifactSource,
    project: &str,
) -> Result<Vec<DistFile>, BackendError> {
    let url = project_url(src, project);
    let accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1";
    let resp = super::send(http, src, &url, Some(accept)).await?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(BackendError::permanent(format!(
            "{} refused the gateway's credentials ({status}) for {url}",
            src.describe()
        )));
    }
    if !status.is_success() {
        let msg = format!("{} answered {status} for {url}", src.describe());
        return Err(BackendError::new(status_kind(status), msg));
    }
    let json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .contains("json");
    let body = resp.text().await.map_err(|e| {
        let kind = request_kind(&e);
        BackendError::new(kind, format!("reading {url}: {}", e.without_url()))
    })?;
    let base =
        Url::parse(&url).map_err(|e| BackendError::permanent(format!("bad URL {url}: {e}")))?;
    if json {
        parse_json(&body, &base)
            .map_err(|e| BackendError::permanent(format!("bad JSON from {url}: {e}")))
    } else {
        Ok(parse_html(&body, &base))
    }
}

/// A project's versions, oldest first (PEP 440), from its file names.
pub async fn list_versions(
    http: &reqwest::Client,
    src: &dyn ArtifactSource,
    project: &str,
) -> Result<Vec<String>, BackendError> {
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
/// listing may point at a CDN, and a redirect anywhere): see [`super::send`].
pub async fn get(
    http: &reqwest::Client,
    src: &dyn ArtifactSource,
    url: &str,
) -> Result<reqwest::Response, BackendError> {
    let resp = super::send(http, src, url, None)
        .await
        .map_err(|e| e.map_message(|m| format!("cannot download: {m}")))?;
    let status = resp.status();
    if !status.is_success() {
        let msg = format!("{} answered {status} for {url}", src.describe());
        return Err(BackendError::new(status_kind(status), msg));
    }
    Ok(resp)
}

pub(super) fn parse_json(body: &str, base: &Url) -> Result<Vec<DistFile>, serde_json::Error> {
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
pub(super) fn parse_html(body: &str, base: &Url) -> Vec<DistFile> {
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
