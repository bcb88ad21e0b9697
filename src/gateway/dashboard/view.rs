//! The dashboard's HTML: the templates (`templates/` beside this file, built into the binary,
//! auto-escaped as HTML), the filters they use (times, durations), and the matrix model
//! (which release each host serves, which hosts stand out, how each answered a live
//! check, and whether its environment's door is shut).  Pure: a page is a template and a
//! context.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use deploy_wire::api::{HostRelease, ObservedHost};
use minijinja::Environment;
use serde::Serialize;

use crate::gateway::service::Shut;

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
    "running.html",
    "jobs_table.html",
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
        // Minutes, in the words of a refusal (`format_local`): `2026-12-07 18:00 UTC`.
        env.add_filter("minute", |ms: Option<u64>| match ms {
            Some(ms) => crate::schedule::format_local(ms, "UTC"),
            None => String::new(),
        });
        env.add_function("took", took);
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

/// How long a job took (`finished - created`), or has run so far (`now - created`).
fn took(created_ms: u64, finished_ms: Option<u64>, now_ms: u64) -> String {
    duration(finished_ms.unwrap_or(now_ms).saturating_sub(created_ms))
}

/// A duration as people say it: `45s`, `1m 12s`, `2h 5m`, `3d 4h` (what `job.js` and
/// `live.js` write too, as a running job's time goes on).
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
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
    /// With a live check: `healthy`, `unhealthy` (its live slot failed its health
    /// check), `unreachable`, or `nothing live`; "" without one.
    pub health: &'static str,
    /// What the health check answered, or why the host could not be asked.
    pub said: Option<String>,
}

/// A host's answer to a live check, in a word and a sentence.
fn health(seen: Option<&ObservedHost>) -> (&'static str, Option<String>) {
    let Some(o) = seen else {
        return ("", None);
    };
    if let Some(why) = &o.unreachable {
        return ("unreachable", Some(why.clone()));
    }
    match &o.health {
        Some(h) if h.ok => ("healthy", Some(h.said.clone())),
        Some(h) => ("unhealthy", Some(h.said.clone())),
        None => ("nothing live", None),
    }
}

/// One application's environment in the matrix.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnvRow {
    pub app: String,
    pub env: String,
    /// The release most of its hosts serve.
    pub release: Option<String>,
    pub hosts: Vec<Cell>,
    /// Why deploys here are refused now (a freeze, or outside its deploy windows), and
    /// until when.
    pub shut: Option<Shut>,
}

/// The matrix of one application: its rows (one per readable environment, in the order
/// the status lists them: the inventory's) from its status, with outliers marked.
pub fn matrix(app: &str, rows: &[HostRelease]) -> Vec<EnvRow> {
    let mut by_env: Vec<(&str, Vec<&HostRelease>)> = Vec::new();
    for r in rows {
        match by_env.iter_mut().find(|(e, _)| *e == r.env) {
            Some((_, hosts)) => hosts.push(r),
            None => by_env.push((r.env.as_str(), vec![r])),
        }
    }
    let row = |(env, hosts): (&str, Vec<&HostRelease>)| {
        let release = most_common(hosts.iter().filter_map(|h| h.version.as_deref()));
        let cell = |h: &&HostRelease| Cell {
            health: health(h.observed.as_ref()).0,
            said: health(h.observed.as_ref()).1,
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
            shut: None,
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
    fn environments_keep_the_order_of_the_status_and_hosts_their_health() {
        use deploy_wire::api::HealthCheck;
        let mut s1 = rel("staging", "s1", Some("1.0"));
        s1.observed = Some(ObservedHost {
            unreachable: Some("connection refused".into()),
            ..ObservedHost::default()
        });
        let mut p1 = rel("production", "p1", Some("1.0"));
        p1.observed = Some(ObservedHost {
            health: Some(HealthCheck {
                ok: false,
                said: "GET /healthz answered 502, expected 200".into(),
            }),
            ..ObservedHost::default()
        });
        let m = matrix("hello", &[s1, p1, rel("production", "p2", None)]);
        let envs: Vec<_> = m.iter().map(|r| r.env.as_str()).collect();
        assert_eq!(envs, ["staging", "production"]);
        assert_eq!(m[0].hosts[0].health, "unreachable");
        assert_eq!(m[1].hosts[0].health, "unhealthy");
        assert_eq!(m[1].hosts[1].health, "", "no live check");
        let mut rows = m;
        rows[1].shut = Some(Shut {
            kind: "frozen",
            until_ms: Some(86_400_000),
            why: "production is frozen until 1970-01-02 00:00 UTC by ann: <why>".into(),
        });
        let html = render(
            "matrix.html",
            serde_json::json!({ "rows": rows, "running": [], "live": true, "viewer": {} }),
        );
        assert!(
            html.contains("!! s1: unreachable: connection refused"),
            "{html}"
        );
        assert!(html.contains("health-unhealthy"), "{html}");
        assert!(
            html.contains("frozen until 1970-01-02 00:00 UTC</span>"),
            "{html}"
        );
        assert!(html.contains("by ann: &lt;why&gt;"), "{html}");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(999), "0s");
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(72_500), "1m 12s");
        assert_eq!(duration(2 * 3_600_000 + 5 * 60_000), "2h 5m");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(took(1_000, Some(73_000), 999_999), "1m 12s");
        assert_eq!(took(1_000, None, 11_000), "10s");
    }

    #[test]
    fn an_error_page_has_the_navigation_of_every_page() {
        let who = serde_json::json!({ "user": "ann", "admin": false });
        let html = render(
            "error.html",
            serde_json::json!({ "title": "Not Found", "message": "no page /ui/x", "viewer": who }),
        );
        for link in ["/ui/\"", "/ui/jobs\"", "/ui/ledger\"", "/ui/schedules\""] {
            assert!(html.contains(&format!("href=\"{link}")), "{link}: {html}");
        }
        assert!(html.contains("id=\"viewer\">ann<"), "{html}");
        assert!(!html.contains("/ui/audit"), "not an admin: {html}");
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
