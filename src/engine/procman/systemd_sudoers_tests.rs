//! Every `sudo` call of systemd's commands is allowed by `docs/sudoers-systemd`, and
//! every rule there is used: each command [`Systemd`] builds (for a few apps, slots and
//! processes) runs under `sh` with stubs for `sudo` (which records its command line),
//! `systemctl`, `journalctl`, `tee`, `rm` and `sleep`, in every state its branches look
//! at; each recorded call is matched against the file's `Cmnd_Alias` with sudo's own
//! rules (the command's full path, then its arguments as one string through `fnmatch`
//! without flags: `*` also matches `/` and spaces).

use std::path::Path;

use super::*;

/// `fnmatch(pattern, s, 0)`: `*`, `?`, `[...]` (with `!`/`^` and ranges), `\` escapes.
fn fnmatch(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| fnmatch(&p[1..], &s[i..])),
        Some('?') => !s.is_empty() && fnmatch(&p[1..], &s[1..]),
        Some('[') => {
            let Some(end) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                return s.first() == Some(&'[') && fnmatch(&p[1..], &s[1..]);
            };
            let Some(c) = s.first() else { return false };
            let mut set = &p[1..end];
            let negate = matches!(set.first(), Some('!') | Some('^'));
            if negate {
                set = &set[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= (set[i]..=set[i + 2]).contains(c);
                    i += 3;
                } else {
                    hit |= set[i] == *c;
                    i += 1;
                }
            }
            hit != negate && fnmatch(&p[end + 1..], &s[1..])
        }
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && fnmatch(&p[2..], &s[1..]),
        Some(c) => s.first() == Some(c) && fnmatch(&p[1..], &s[1..]),
    }
}

/// One `Cmnd_Alias` entry: the command's path and its arguments' pattern (None: any).
#[derive(Debug)]
struct Rule {
    path: String,
    args: Option<String>,
}

impl Rule {
    fn allows(&self, path: &str, args: &str) -> bool {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        self.path == path
            && match &self.args {
                None => true,
                Some(a) if a == "\"\"" => args.is_empty(),
                Some(a) => fnmatch(&chars(a), &chars(args)),
            }
    }
}

/// The rules of every `Cmnd_Alias` in a sudoers file (continuation lines joined).
fn rules(text: &str) -> Vec<Rule> {
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let Some(rest) = line.trim().strip_prefix("Cmnd_Alias") else {
            continue;
        };
        let (_, cmds) = rest.split_once('=').expect("Cmnd_Alias NAME = ...");
        for c in cmds.split(", ") {
            let c = c.trim();
            let (path, args) = match c.split_once(' ') {
                Some((p, a)) => (p, Some(a.split_whitespace().collect::<Vec<_>>().join(" "))),
                None => (c, None),
            };
            out.push(Rule {
                path: path.to_string(),
                args,
            });
        }
    }
    out
}

/// Stubs: `sudo` records `$*` and runs the rest; `systemctl` answers `show` and
/// `is-enabled` from `STUB_*`; the others do nothing.
fn stubs(dir: &Path) {
    let files = [
        (
            "sudo",
            "#!/bin/sh\n[ \"$1\" = -n ] || { echo 'sudo without -n' >&2; exit 99; }\nshift\necho \"$*\" >> \"$SUDO_LOG\"\nexec \"$@\"\n",
        ),
        (
            "systemctl",
            r#"#!/bin/sh
case "$1" in
show)
  case "$*" in
  *"-p Id --value"*) printf '%s\n' $STUB_UNITS ;;
  *)
    seen=; for u in "$@"; do [ -n "$seen" ] && printf 'Id=%s\nActiveState=%s\nSubState=%s\nMainPID=42\nNRestarts=0\n\n' "$u" $STUB_STATE; [ "$u" = -- ] && seen=1; done ;;
  esac ;;
is-enabled) echo "$STUB_ENABLED" ;;
esac
exit 0
"#,
        ),
        ("journalctl", "#!/bin/sh\necho 'a journal line'\n"),
        ("tee", "#!/bin/sh\ncat >/dev/null\n"),
        ("rm", "#!/bin/sh\nexit 0\n"),
        ("sleep", "#!/bin/sh\nexit 0\n"),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&path)
            .status()
            .unwrap();
    }
}

/// Every command `Systemd` builds for one app.
fn commands(app: &str) -> Vec<RemoteCmd> {
    let s = Systemd;
    let logs = format!("/srv/apps/{app}/logs");
    let mut out = vec![s.status_all(), s.app_programs(app)];
    for slot in SLOTS {
        let p = s.program(app, slot);
        out.push(s.write_file(&s.conf_path(app, slot), b"[Unit]\n".to_vec()));
        out.push(s.start_fresh(&p, 3));
        out.push(s.stop(&p));
        out.push(s.at_boot(&p, true));
        out.push(s.at_boot(&p, false));
        out.push(s.read_log(&logs, &p, None, 20, false).cmd);
        out.push(s.read_log(&logs, &p, None, 20, true).cmd);
    }
    for (name, copies) in [("worker", 3), ("beat", 1)] {
        let p = s.program(app, name);
        out.push(s.write_file(&s.conf_path(app, name), b"[Unit]\n".to_vec()));
        out.push(s.apply(&p, copies, true));
        out.push(s.apply(&p, copies, false));
        out.push(s.restart_all(&p, copies));
        out.push(s.watch(&logs, &p, copies, 2));
        out.push(s.remove(&p));
        out.push(s.read_log(&logs, &p, Some(copies), 7, true).cmd);
    }
    out
}

#[test]
fn every_sudo_call_of_systemds_commands_is_allowed_by_the_sudoers_file() {
    let file = crate::repo_root().join("docs/sudoers-systemd");
    let rules = rules(&std::fs::read_to_string(&file).unwrap());
    assert!(rules.len() >= 8, "{rules:?}");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    stubs(&bin);
    let log = dir.path().join("sudo.log");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    for app in ["hello", "shop-api2"] {
        for c in commands(app) {
            for (enabled, state) in [("enabled", "active running"), ("disabled", "failed failed")] {
                // Copies 0..=4 loaded: those past `count` are stopped and unlinked.
                let units: Vec<String> = (0..5)
                    .map(|i| {
                        format!("deploy-{app}-worker@{i}.service deploy-{app}-beat@{i}.service")
                    })
                    .collect();
                let mut child = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(&c.line)
                    .env("PATH", &path)
                    .env("SUDO_LOG", &log)
                    .env("STUB_ENABLED", enabled)
                    .env("STUB_STATE", state)
                    .env("STUB_UNITS", units.join(" "))
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let stdin = c.stdin.clone().unwrap_or_default();
                std::io::Write::write_all(child.stdin.as_mut().unwrap(), &stdin).unwrap();
                drop(child.stdin.take());
                let out = child.wait_with_output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(!err.contains("sudo without -n"), "{}: {err}", c.line);
                assert!(!err.contains("not found"), "{}: {err}", c.line);
            }
        }
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    let mut used = vec![false; rules.len()];
    for call in calls.lines() {
        let (cmd, args) = call.split_once(' ').unwrap_or((call, ""));
        let full = format!("/usr/bin/{cmd}");
        let hit = rules.iter().position(|r| r.allows(&full, args));
        assert!(
            hit.is_some(),
            "not allowed by {}: sudo {call}",
            file.display()
        );
        used[hit.unwrap()] = true;
    }
    for (r, u) in rules.iter().zip(&used) {
        assert!(u, "a right no command uses: {r:?}");
    }
    // The calls the branches reach are all there: extra copies stopped and unlinked,
    // the journal read on a failed settle.
    for want in [
        "systemctl stop deploy-hello-worker@4.service",
        "systemctl disable --no-reload --quiet deploy-hello-worker@3.service",
        "journalctl --no-pager -o short-iso -n 20 -u deploy-hello-blue.service",
        "systemctl enable --no-reload --quiet deploy-hello-green.service",
        "systemctl disable --no-reload --quiet deploy-hello-green.service",
    ] {
        assert!(calls.lines().any(|l| l == want), "{want} not in:\n{calls}");
    }
}

#[test]
fn the_matcher_follows_sudos_wildcard_rules() {
    let r = |a: &str| Rule {
        path: "/usr/bin/systemctl".into(),
        args: Some(a.into()),
    };
    assert!(r("stop deploy-*.service").allows("/usr/bin/systemctl", "stop deploy-a.service"));
    // `*` spans spaces and slashes (as sudo's does: one reason the file is no wall).
    assert!(
        r("stop deploy-*.service").allows("/usr/bin/systemctl", "stop deploy-a.service b.service")
    );
    assert!(!r("stop deploy-*.service").allows("/usr/bin/systemctl", "stop nginx.service"));
    assert!(!r("stop deploy-*.service").allows("/usr/bin/systemctl", "start deploy-a.service"));
    assert!(!r("stop deploy-*.service").allows("/usr/bin/journalctl", "stop deploy-a.service"));
    assert!(r("daemon-reload").allows("/usr/bin/systemctl", "daemon-reload"));
    assert!(!r("daemon-reload").allows("/usr/bin/systemctl", "daemon-reload x"));
    assert!(r("\"\"").allows("/usr/bin/systemctl", ""));
    assert!(!r("\"\"").allows("/usr/bin/systemctl", "x"));
    assert!(r("a[0-9]?\\*").allows("/usr/bin/systemctl", "a7x*"));
    assert!(!r("a[!0-9]").allows("/usr/bin/systemctl", "a7"));
    let none = Rule {
        path: "/usr/bin/systemctl".into(),
        args: None,
    };
    assert!(none.allows("/usr/bin/systemctl", "anything at all"));
}
