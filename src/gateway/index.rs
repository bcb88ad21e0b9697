//! Lists an application's versions from a PyPI simple index (PEP 691 JSON or PEP 503
//! HTML), as the gateway sees it.

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

/// Orders versions by PEP 440 and drops duplicates.
pub fn sort_versions(v: &mut Vec<String>) {
    crate::versions::sort(v);
    v.dedup();
}

/// Fetches the project's page and returns its versions, oldest first.
pub async fn list_versions(
    client: &reqwest::Client,
    index_url: &str,
    project: &str,
) -> Result<Vec<String>, String> {
    let url = format!(
        "{}/{}/",
        index_url.trim_end_matches('/'),
        normalize(project)
    );
    let resp = client
        .get(&url)
        .header(
            "Accept",
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )
        .send()
        .await
        .map_err(|e| format!("cannot reach the index {url}: {e}"))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if !resp.status().is_success() {
        return Err(format!("the index answered {} for {url}", resp.status()));
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
        .map_err(|e| format!("reading {url}: {e}"))?;
    let names: Vec<String> = if json {
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("bad JSON from {url}: {e}"))?;
        v["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["filename"].as_str().map(str::to_string))
            .collect()
    } else {
        // PEP 503: <a href="...">filename</a>
        body.split("<a ")
            .skip(1)
            .filter_map(|a| a.split_once('>'))
            .map(|(_, r)| r.split('<').next().unwrap_or("").trim().to_string())
            .collect()
    };
    let mut versions: Vec<String> = names
        .iter()
        .filter_map(|n| version_of(n, project))
        .collect();
    sort_versions(&mut versions);
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_reads_versions_from_file_names() {
        assert_eq!(normalize("Hello_App"), "hello-app");
        assert_eq!(normalize("hello.-app"), "hello-app");
        assert_eq!(
            version_of("hello_app-1.2.0-py3-none-any.whl", "hello-app").as_deref(),
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
        let mut v = vec![
            "1.10.0".to_string(),
            "1.9.0".into(),
            "1.0.0".into(),
            "1.9.0".into(),
        ];
        sort_versions(&mut v);
        assert_eq!(v, ["1.0.0", "1.9.0", "1.10.0"]);
    }
}
