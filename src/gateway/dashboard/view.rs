//! The dashboard's HTML: the templates (`templates/` beside this file, built into the binary,
//! auto-escaped as HTML), the filters they use, and the matrix model (which release each
//! host serves, and which hosts stand out).  Pure: a page is a template and a context.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use deploy_wire::api::HostRelease;
use minijinja::Environment;
use serde::Serialize;

macro_rules! templates {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),+]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "sign_in.html",
    "matrix.html",
    "jobs.html",
    "job.html",
    "line.html",
    "host.html",
    "ledger.html",
    "audit.html",
    "schedules.html",
    "error.html",
);

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("dashboard template {name}: {e}"));
        }
        env.add_filter("utc", |ms: Option<u64>| match ms {
            Some(ms) => format!("{} UTC", crate::gateway::tokens::utc(ms)),
            None => String::new(),
        });
        env
    })
}

/// Renders `name` with `ctx`.  Templates are part of the binary and unit-tested, so an
/// error here is a bug: it is logged and the page says so, without details.
pub fn render<S: Serialize>(name: &str, ctx: S) -> String {
    let out = env()
        .get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(ctx)));
    out.unwrap_or_else(|e| {
        tracing::error!("rendering dashboard template {name}: {e:#}");
        "<!doctype html><title>error</title><p>This page could not be rendered; see the gateway's log.".into()
    })
}

/// One host's cell in the matrix.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cell {
    pub host: String,
    pub version: Option<String>,
    pub deployed_by: Option<String>,
    pub deployed_at_ms: Option<u64>,
    pub job_id: Option<String>,
    /// Serves another release than most hosts of its environment.
    pub odd: bool,
    /// With a live check: what the host says differs from the record.
    pub drift: bool,
    /// With a live check: the version the host says it serves.
    pub observed: Option<String>,
    /// With a live check: what needs a look on this host, the gateway's words (the
    /// same `!!` lines as `deploy status --live`).
    pub flags: Vec<String>,
}

/// One application's environment in the matrix.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnvRow {
    pub app: String,
    pub env: String,
    /// The release most of its hosts serve.
    pub release: Option<String>,
    pub hosts: Vec<Cell>,
}

/// The matrix of one application: its rows (one per readable environment) from its
/// status, with outliers marked.
pub fn matrix(app: &str, rows: &[HostRelease]) -> Vec<EnvRow> {
    let mut by_env: BTreeMap<&str, Vec<&HostRelease>> = BTreeMap::new();
    for r in rows {
        by_env.entry(r.env.as_str()).or_default().push(r);
    }
    let row = |(env, hosts): (&str, Vec<&HostRelease>)| {
        let release = most_common(hosts.iter().filter_map(|h| h.version.as_deref()));
        let cell = |h: &&HostRelease| Cell {
            host: h.host.clone(),
            version: h.version.clone(),
            deployed_by: h.deployed_by.clone(),
            deployed_at_ms: h.deployed_at_ms,
            job_id: h.job_id.clone(),
            odd: h.version.as_deref() != release.as_deref(),
            drift: h.disagrees,
            observed: h.observed.as_ref().and_then(|o| o.version.clone()),
            flags: h.flags.clone(),
        };
        EnvRow {
            app: app.to_string(),
            env: env.to_string(),
            hosts: hosts.iter().map(cell).collect(),
            release,
        }
    };
    by_env.into_iter().map(row).collect()
}

/// The most common value (ties: the greatest, so the answer does not depend on order).
fn most_common<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let best = counts.iter().max_by_key(|(v, n)| (**n, **v));
    best.map(|(v, _)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(env: &str, host: &str, version: Option<&str>) -> HostRelease {
        HostRelease {
            env: env.into(),
            host: host.into(),
            version: version.map(str::to_string),
            ..HostRelease::default()
        }
    }

    #[test]
    fn a_host_serving_another_release_than_its_environment_is_marked() {
        let rows = [
            rel("production", "web1", Some("2.0")),
            rel("production", "web2", Some("2.0")),
            rel("production", "web3", Some("1.0")),
            rel("staging", "s1", None),
        ];
        let m = matrix("hello", &rows);
        assert_eq!(m.len(), 2);
        let prod = &m[0];
        assert_eq!(
            (prod.env.as_str(), prod.release.as_deref()),
            ("production", Some("2.0"))
        );
        let odd: Vec<_> = prod
            .hosts
            .iter()
            .filter(|c| c.odd)
            .map(|c| &c.host)
            .collect();
        assert_eq!(odd, ["web3"]);
        assert_eq!(m[1].release, None);
        assert!(
            !m[1].hosts[0].odd,
            "a host with nothing, in an environment with nothing"
        );
    }

    #[test]
    fn a_live_check_shows_each_hosts_flags_beside_it() {
        let mut web1 = rel("production", "web1", Some("2.0"));
        web1.flags = vec!["slot blue runs 1.0 (pid 7) but is not live: <left>".into()];
        let rows = [web1, rel("production", "web2", Some("2.0"))];
        let m = matrix("hello", &rows);
        assert_eq!(m[0].hosts[0].flags, rows[0].flags);
        assert!(m[0].hosts[1].flags.is_empty());
        let html = render(
            "matrix.html",
            serde_json::json!({ "rows": m, "running": [], "live": true, "viewer": {} }),
        );
        assert!(
            html.contains("class=\"cell flagged\" data-host=\"web1\""),
            "{html}"
        );
        assert!(
            html.contains(
                "<li class=\"flag\" data-host=\"web1\">!! web1: slot blue runs 1.0 (pid 7) but is not live: &lt;left&gt;</li>"
            ),
            "{html}"
        );
        assert!(!html.contains("data-host=\"web2\">!!"), "{html}");
    }

    #[test]
    fn every_template_renders_and_escapes_what_it_shows() {
        let line = super::super::lines::Line {
            seq: 1,
            ts_ms: 2,
            host: "web1".into(),
            class: "out",
            text: "<script>alert(1)</script>".into(),
            diff: Some("-a\n+<b>".into()),
        };
        let html = render("line.html", serde_json::json!({ "l": line }));
        assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("<details"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }
}
