//! The CLI's tables: `deploy status`, `versions`, `apps`, `hosts`, `jobs`.  With `--live`, each host's own
//! answer (slot, version, processes) sits beside the gateway's record; a host with flags
//! (the gateway's words for what needs a look: the two disagree, a slot runs that is not
//! live, the live slot fails its health check) is marked `!!`, each flag on a `!!` line
//! of its own under it, and the command exits 8 (`main.rs`).

use deploy_wire::api::{AppInfo, HostInfo, HostRelease, JobInfo, ObservedHost, VersionInfo};

/// The status table; `live`: with what each host says.
pub fn print_status(rows: &[HostRelease], live: bool, when: fn(Option<u64>) -> String) {
    if !live {
        println!(
            "{:<12} {:<14} {:<12} {:<12} DEPLOYED",
            "ENV", "HOST", "VERSION", "BY"
        );
        for r in rows {
            println!(
                "{:<12} {:<14} {:<12} {:<12} {}",
                r.env,
                r.host,
                r.version.as_deref().unwrap_or("-"),
                r.deployed_by.as_deref().unwrap_or("-"),
                when(r.deployed_at_ms)
            );
        }
        return;
    }
    println!(
        "   {:<12} {:<14} {:<12} {:<7} {:<12} {:<7} PROCESSES",
        "ENV", "HOST", "RECORDED", "SLOT", "HOST SAYS", "SLOT"
    );
    for r in rows {
        println!("{}", live_line(r));
        for l in flag_lines(r) {
            println!("{l}");
        }
    }
    let flagged = rows.iter().filter(|r| flagged(r)).count();
    if flagged > 0 {
        println!("!! {flagged} of {} host(s) need a look", rows.len());
    }
}

/// A host `status --live` marks `!!`: it has flags (or, from a gateway older than
/// flags, it disagrees with the record).
pub fn flagged(r: &HostRelease) -> bool {
    r.disagrees || !r.flags.is_empty()
}

/// The lines under a row: one `!!` line per flag.
pub fn flag_lines(r: &HostRelease) -> Vec<String> {
    let older = r.disagrees && r.flags.is_empty();
    let flags = if older {
        vec!["the gateway's record and the host disagree".to_string()]
    } else {
        r.flags.clone()
    };
    flags.iter().map(|f| format!("!!   {f}")).collect()
}

/// One row of `status --live`.
pub fn live_line(r: &HostRelease) -> String {
    let mark = if flagged(r) { "!!" } else { "  " };
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let head = format!(
        "{mark} {:<12} {:<14} {:<12} {:<7}",
        r.env,
        r.host,
        dash(&r.version),
        dash(&r.slot)
    );
    match &r.observed {
        None => format!("{head} (not asked)"),
        Some(ObservedHost {
            unreachable: Some(why),
            ..
        }) => format!("{head} unreachable: {why}"),
        Some(o) => {
            let procs: Vec<String> = o
                .processes
                .iter()
                .map(|p| match (p.pid, &p.release) {
                    (Some(pid), Some(r)) => format!("{} {} {r} ({pid})", p.name, p.state),
                    (Some(pid), None) => format!("{} {} ({pid})", p.name, p.state),
                    _ => format!("{} {}", p.name, p.state),
                })
                .collect();
            // The wheel the live release installed (its SHA-256 as the host keeps it).
            let wheel = match (&o.version, &o.wheel_sha256) {
                (None, _) => String::new(),
                (Some(_), Some(sha)) => format!("  wheel sha256 {sha}"),
                (Some(_), None) => "  wheel unknown".to_string(),
            };
            format!(
                "{head} {:<12} {:<7} {}{wheel}",
                dash(&o.version),
                dash(&o.live_slot),
                if procs.is_empty() {
                    "-".into()
                } else {
                    procs.join(", ")
                }
            )
        }
    }
}

pub fn print_versions(vs: &[VersionInfo]) {
    for v in vs {
        let on = if v.running_on.is_empty() {
            String::new()
        } else {
            format!("  <- {}", v.running_on.join(", "))
        };
        println!("{}{on}", v.version);
    }
}

/// `deploy apps`.
pub fn print_apps(apps: &[AppInfo]) {
    println!("{:<16} {:<14} {:<8} HOSTS", "APP", "ENV", "CONFIRM");
    for a in apps {
        for e in &a.environments {
            let confirm = if e.confirm { "yes" } else { "no" };
            println!(
                "{:<16} {:<14} {confirm:<8} {}",
                a.name,
                e.name,
                e.hosts.join(", ")
            );
        }
    }
}

/// `deploy hosts`.
pub fn print_hosts(hosts: &[HostInfo]) {
    println!(
        "{:<14} {:<24} {:<10} {:<20} PINNED",
        "HOST", "ADDRESS", "USER", "GROUPS"
    );
    for h in hosts {
        let addr = format!("{}:{}", h.address, h.port);
        let pinned = if h.pinned { "yes" } else { "NO" };
        println!(
            "{:<14} {addr:<24} {:<10} {:<20} {pinned}",
            h.name,
            h.user,
            h.groups.join(",")
        );
    }
}

/// `deploy jobs`.
pub fn print_jobs(jobs: &[JobInfo], when: fn(Option<u64>) -> String) {
    println!(
        "{:<24} {:<8} {:<12} {:<12} {:<10} {:<10} {:<12} {:<19} TRIGGERED BY",
        "JOB", "KIND", "APP", "ENV", "VERSION", "USER", "STATE", "CREATED"
    );
    for j in jobs {
        println!(
            "{:<24} {:<8} {:<12} {:<12} {:<10} {:<10} {:<12} {:<19} {}",
            j.id,
            j.kind,
            j.app,
            j.env,
            j.version,
            j.user,
            j.state,
            when(Some(j.created_ms)),
            j.triggered_by.as_deref().unwrap_or("-")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_wire::api::ProcessState;

    #[test]
    fn live_rows_show_the_host_and_mark_disagreement() {
        let r = HostRelease {
            env: "production".into(),
            host: "web1".into(),
            version: Some("2.0".into()),
            slot: Some("blue".into()),
            observed: Some(ObservedHost {
                live_slot: Some("green".into()),
                version: Some("3.0".into()),
                processes: vec![ProcessState {
                    name: "hello-green".into(),
                    state: "running".into(),
                    pid: Some(7),
                    release: Some("1.1.0".into()),
                    slot: Some("green".into()),
                }],
                health: None,
                unreachable: None,
                wheel_sha256: None,
                env_sha256: None,
            }),
            disagrees: true,
            ..HostRelease::default()
        };
        let line = live_line(&r);
        assert!(line.starts_with("!! production"), "{line}");
        assert!(
            line.contains("3.0") && line.contains("hello-green running 1.1.0 (7)"),
            "{line}"
        );
        assert!(line.ends_with("  wheel unknown"), "{line}");
        let mut known = r.clone();
        known.observed.as_mut().unwrap().wheel_sha256 = Some("ab".repeat(32));
        let line = live_line(&known);
        assert!(
            line.ends_with(&format!("  wheel sha256 {}", "ab".repeat(32))),
            "{line}"
        );
        let gone = HostRelease {
            observed: Some(ObservedHost {
                unreachable: Some("not implemented yet".into()),
                ..ObservedHost::default()
            }),
            disagrees: false,
            ..r
        };
        let line = live_line(&gone);
        assert!(line.starts_with("   production"), "{line}");
        assert!(line.ends_with("unreachable: not implemented yet"), "{line}");
    }

    #[test]
    fn each_flag_is_a_line_under_its_host_and_a_flagged_host_is_marked() {
        let ok = HostRelease {
            env: "staging".into(),
            host: "web2".into(),
            version: Some("1.1.0".into()),
            observed: Some(ObservedHost::default()),
            ..HostRelease::default()
        };
        assert!(!flagged(&ok) && flag_lines(&ok).is_empty());
        assert!(
            live_line(&ok).starts_with("   staging"),
            "{}",
            live_line(&ok)
        );
        let web1 = HostRelease {
            host: "web1".into(),
            flags: vec![
                "slot blue runs 1.0.0 (pid 12) but is not live".into(),
                "the live slot green (1.1.0) fails its health check: GET /healthz answered 502, expected 200".into(),
            ],
            ..ok.clone()
        };
        assert!(flagged(&web1));
        assert!(
            live_line(&web1).starts_with("!! staging      web1 "),
            "{}",
            live_line(&web1)
        );
        assert_eq!(
            flag_lines(&web1),
            [
                "!!   slot blue runs 1.0.0 (pid 12) but is not live",
                "!!   the live slot green (1.1.0) fails its health check: GET /healthz answered 502, expected 200",
            ]
        );
        // A gateway from before flags says only that the record and the host disagree.
        let older = HostRelease {
            disagrees: true,
            ..ok
        };
        assert!(flagged(&older));
        assert_eq!(
            flag_lines(&older),
            ["!!   the gateway's record and the host disagree"]
        );
    }
}
