//! Building request paths: every path segment and query value is percent-encoded, and
//! names (applications, environments, job ids) are checked before anything is sent, so
//! no argument can reach another route (`deploy logs '../apps/x/status?'`).

use client::{CliError, Result};

use crate::{client, exit};

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    deploy_wire::url::encode_component(s)
}

/// A path from literal parts and encoded segments: `path(&["/v1/jobs/", id, "/log"])`
/// encodes the odd-indexed parts (the values).
pub fn path(parts: &[&str]) -> String {
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| if i % 2 == 1 { encode(p) } else { p.to_string() })
        .collect()
}

/// `?k=v&...` with encoded values, skipping absent ones.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// A gateway's URL as given (`--gateway`, DEPLOY_GATEWAY, `deploy login`), checked
/// before anything is sent: `http://` or `https://`, a host, nothing after the path.
pub fn gateway(url: &str) -> Result<&str> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if !matches!(scheme, "http" | "https") {
        return Err(usage(format!(
            "the gateway URL {url:?} needs its scheme: add http:// or https:// (https://deploy.example.com)"
        )));
    }
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(usage(format!(
            "the gateway URL {url:?} is not one: expected {scheme}://HOST[:PORT][/PATH]"
        )));
    }
    Ok(url)
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::new(exit::USAGE, e.to_string())
}

pub fn app(name: &str) -> Result<&str> {
    deploy_wire::names::check_ident("application", name).map_err(usage)?;
    Ok(name)
}

pub fn env(name: &str) -> Result<&str> {
    deploy_wire::names::check_ident("environment", name).map_err(usage)?;
    Ok(name)
}

/// Job ids: 1 to 64 of `[A-Za-z0-9_-]` (the gateway makes `<hex>-<hex>`).
pub fn job(id: &str) -> Result<&str> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(id)
    } else {
        Err(usage(format!(
            "invalid job id {id:?}: expected letters, digits, - and _ (as `deploy jobs` shows)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_and_cannot_reach_another_route() {
        let p = path(&["/v1/jobs/", "../apps/x/status?", "/log"]);
        assert_eq!(p, "/v1/jobs/..%2Fapps%2Fx%2Fstatus%3F/log");
        assert_eq!(
            query(&[("env", Some("a&b=c d")), ("live", None)]),
            "?env=a%26b%3Dc%20d"
        );
        assert_eq!(query(&[("env", None)]), "");
        assert_eq!(encode("1.4.2_x-y~"), "1.4.2_x-y~");
    }

    #[test]
    fn names_are_checked_before_sending_with_exit_2() {
        assert_eq!(job("19a3f-0a1b2c3d").unwrap(), "19a3f-0a1b2c3d");
        for bad in ["../apps/x/status?", "", "a b", "x/y", &"z".repeat(65)] {
            assert_eq!(job(bad).unwrap_err().code, exit::USAGE, "{bad}");
        }
        assert_eq!(app("Hello/..").unwrap_err().code, exit::USAGE);
        assert_eq!(env("prod?x").unwrap_err().code, exit::USAGE);
        assert!(app("hello").is_ok() && env("production").is_ok());
    }

    #[test]
    fn a_gateway_url_without_its_scheme_says_to_add_it() {
        let e = gateway("deploy.example.com:8700").unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(
            e.message.contains("add http:// or https://"),
            "{}",
            e.message
        );
        assert!(
            gateway("ftp://x")
                .unwrap_err()
                .message
                .contains("add http://")
        );
        assert!(gateway("http://").is_err() && gateway("http://x y").is_err());
        assert_eq!(
            gateway("https://deploy.example.com/").unwrap(),
            "https://deploy.example.com/"
        );
        assert!(gateway("http://127.0.0.1:8700").is_ok());
    }
}
