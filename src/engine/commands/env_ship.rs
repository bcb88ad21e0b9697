//! Commands of a shipped environment (`share.rs` says why and when): the host's
//! platform line, the environment's hash, packing a built release for the gateway and
//! unpacking it on another host.

use super::release::{locked, report_space};
use super::{AppPaths, MARKER, RemoteCmd};
use crate::shell::quote;

/// The prefix of the platform line [`super::release_state`] prints for a release that
/// is not complete.
pub const PLATFORM_LINE: &str = "platform ";

/// Prints `platform <arch> <libc> <python3's resolved path> <its SHA-256>`: what two
/// hosts must share for one build of a release to run on both.  A host without
/// `python3` prints nothing (it cannot build either; the venv step says why).
pub fn platform() -> String {
    "p=$(command -v python3) && p=$(readlink -f \"$p\") && \
     echo \"platform $(uname -m) $(getconf GNU_LIBC_VERSION 2>/dev/null | tr ' ' - || echo libc-unknown) \
     $p $(sha256sum < \"$p\" | cut -c1-64)\""
        .into()
}

/// A shell expression printing the environment's hash of `release`: the SHA-256 of
/// the sorted `sha256sum` list of every file under `site-packages`, bytecode caches
/// aside (pip compiles them with timestamps).  Equal hashes: equal installed files.
pub fn env_hash(release: &str) -> String {
    format!(
        "$(cd {r} && find . -path '*/site-packages/*' -type f ! -name '*.pyc' -print0 \
         | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum | cut -c1-64)",
        r = quote(release)
    )
}

/// The line an install prints (stdout, last) with the hash it recorded in the marker.
pub const ENV_LINE: &str = "deploy-env ";

/// Writes the release's marker, `<stamp> env=<hash>`, then prints [`ENV_LINE`] and the
/// hash: the end of every build, installed or unpacked.  `expect`: refuse (exit 1, no
/// marker) unless the hash is this one.
pub(super) fn stamp_marker(
    p: &AppPaths,
    version: &str,
    stamp: &str,
    expect: Option<&str>,
) -> String {
    let marker = p.marker(version);
    let tmp = format!("{marker}.tmp");
    let check = match expect {
        Some(want) => format!(
            "if [ \"$h\" != {want} ]; then echo \"unpack: the unpacked environment's hash is $h, not {want}: refused\" >&2; exit 1; fi && ",
            want = quote(want)
        ),
        None => String::new(),
    };
    format!(
        "h={hash} && {check}printf '%s env=%s\\n' {stamp} \"$h\" > {tmp} && mv -f {tmp} {marker} && echo \"{ENV_LINE}$h\"",
        hash = env_hash(&p.release(version)),
        stamp = quote(stamp),
        tmp = quote(&tmp),
        marker = quote(&marker),
    )
}

/// The built release as a tar.gz on stdout (its marker left out: each host writes its
/// own), and the marker's first line on stderr (the hash the build recorded).
pub fn pack(p: &AppPaths, version: &str) -> RemoteCmd {
    let d = quote(&p.release(version));
    RemoteCmd::new(format!(
        "head -n 1 {d}/{MARKER} >&2 && tar -C {d} -I 'gzip -1' -cf - --exclude=./{MARKER} ."
    ))
}

/// Unpacks a packed release (stdin) in place of whatever unfinished build is there,
/// checks its hash is `env_sha256`, then writes the marker: `<stamp> env=<hash>`.
/// Under the build lock; prints `already-complete` if the release became complete
/// meanwhile.  A failure leaves no marker (the caller removes what is there).
pub fn unpack(
    p: &AppPaths,
    version: &str,
    stamp: &str,
    env_sha256: &str,
    archive: bytes::Bytes,
) -> RemoteCmd {
    let d = quote(&p.release(version));
    let m = quote(&p.marker(version));
    let script = format!(
        "if [ -f {m} ]; then echo already-complete; exit 0; fi; rm -rf {d} && mkdir -p {d} \
         && tar -C {d} -xzpf - && {}",
        stamp_marker(p, version, stamp, Some(env_sha256))
    );
    RemoteCmd::with_stdin(report_space(p, &locked(p, &script)), archive)
}

/// The `env=<hash>` a marker line records, if any.
pub fn marker_env(line: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("env="))
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, dir: &std::path::Path) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap()
    }

    #[test]
    fn the_environments_hash_covers_site_packages_but_not_bytecode_nor_other_files() {
        let t = tempfile::tempdir().unwrap();
        let rel = t.path().join("r");
        let sp = rel.join("lib/python3.11/site-packages/pkg");
        std::fs::create_dir_all(sp.join("__pycache__")).unwrap();
        std::fs::write(sp.join("a.py"), "x = 1\n").unwrap();
        let hash = || {
            let o = sh(
                &format!("echo {}", env_hash(rel.to_str().unwrap())),
                t.path(),
            );
            String::from_utf8(o.stdout).unwrap().trim().to_string()
        };
        let first = hash();
        assert_eq!(first.len(), 64, "{first}");
        std::fs::write(sp.join("__pycache__/a.cpython-311.pyc"), "123").unwrap();
        std::fs::create_dir_all(rel.join("bin")).unwrap();
        std::fs::write(rel.join("bin/x"), "#!/bin/sh").unwrap();
        assert_eq!(hash(), first, "bytecode and bin/ do not count");
        std::fs::write(sp.join("a.py"), "x = 2\n").unwrap();
        assert_ne!(hash(), first, "a changed file does");
    }

    #[test]
    fn a_marker_line_gives_its_env_hash() {
        let h = "ab".repeat(32);
        assert_eq!(
            marker_env(&format!("hello 1.0 sha256={} env={h}", "cd".repeat(32))),
            Some(h)
        );
        assert_eq!(marker_env("hello 1.0 env=zz"), None);
        assert_eq!(marker_env("hello 1.0"), None);
    }

    #[test]
    fn a_packed_release_unpacks_elsewhere_with_the_same_hash_and_a_new_marker() {
        // The real commands, run by sh on two "hosts" (two roots) of one machine:
        // `flock` and GNU tar, as on the servers.
        let t = tempfile::tempdir().unwrap();
        let p = AppPaths::new("hello");
        let builder = |root: &std::path::Path, line: &str| -> std::process::Output {
            sh(
                &line.replace("/srv/apps", &root.join("srv/apps").display().to_string()),
                root,
            )
        };
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let rel_a = a.join("srv/apps/hello/releases/1.0");
        std::fs::create_dir_all(rel_a.join("lib/python3.11/site-packages/m")).unwrap();
        std::fs::write(rel_a.join("lib/python3.11/site-packages/m/x.py"), "1").unwrap();
        let built = builder(&a, &stamp_marker(&p, "1.0", "hello 1.0", None));
        assert!(built.status.success(), "{built:?}");
        let printed = String::from_utf8(built.stdout).unwrap();
        let hash = printed.trim().strip_prefix(ENV_LINE).unwrap().to_string();
        let packed = builder(&a, &pack(&p, "1.0").line);
        assert!(packed.status.success(), "{packed:?}");
        assert!(String::from_utf8_lossy(&packed.stderr).contains(&format!("env={hash}")));

        std::fs::create_dir_all(b.join("srv/apps/hello")).unwrap();
        let run = |expect: &str| {
            let c = unpack(&p, "1.0", "hello 1.0", expect, packed.stdout.clone().into());
            let line = c
                .line
                .replace("/srv/apps", &b.join("srv/apps").display().to_string());
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(line)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            let stdin = c.stdin.clone().unwrap();
            child.stdin.take().unwrap().write_all(&stdin).unwrap();
            child.wait_with_output().unwrap()
        };
        let wrong = run(&"0".repeat(64));
        assert!(!wrong.status.success());
        assert!(String::from_utf8_lossy(&wrong.stderr).contains("refused"));
        let marker_b = b.join("srv/apps/hello/releases/1.0").join(MARKER);
        assert!(!marker_b.exists(), "a refused unpack writes no marker");
        let ok = run(&hash);
        assert!(ok.status.success(), "{ok:?}");
        assert_eq!(
            std::fs::read_to_string(&marker_b).unwrap(),
            format!("hello 1.0 env={hash}\n")
        );
        let x = b.join("srv/apps/hello/releases/1.0/lib/python3.11/site-packages/m/x.py");
        assert_eq!(std::fs::read_to_string(x).unwrap(), "1");
        // Unpacking again finds it complete.
        let again = run(&hash);
        assert_eq!(
            String::from_utf8_lossy(&again.stdout).trim(),
            "already-complete"
        );
    }
}
