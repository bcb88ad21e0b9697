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

/// What a release holds about its own host, never shipped: the hooks that ran there,
/// and whether its health check failed there.
const HOST_OWN: [&str; 2] = [".deploy-hooks", ".deploy-failed"];

/// The built release as a tar.gz on stdout (its marker and [`HOST_OWN`] left out: each
/// host writes its own), and the marker's first line on stderr (the hash the build
/// recorded).
pub fn pack(p: &AppPaths, version: &str) -> RemoteCmd {
    let d = quote(&p.release(version));
    let [hooks, failed] = HOST_OWN;
    RemoteCmd::new(format!(
        "head -n 1 {d}/{MARKER} >&2 && tar -C {d} -I 'gzip -1' -cf - --exclude=./{hooks} \
         --exclude=./{failed} --exclude=./{MARKER} ."
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

/// The list a delta carries of every path of the new release (`.`-relative, NUL-ended).
const DELTA_LIST: &str = ".deploy-paths";

/// The exit status of [`unpack_delta`] when the host has no usable base release.
pub const NO_BASE: u32 = 42;

/// The built release `version` as a delta over release `base` on the same host: a
/// tar.gz of every directory and symlink, every regular file whose bytes differ from
/// `base`'s file of that path, and [`DELTA_LIST`] (every path of the release).  The
/// first line of each marker on stderr: `version`'s, then `base`'s (the base's hash,
/// which a host must have to use the delta).  Exits non-zero if `base` is not complete.
pub fn pack_delta(p: &AppPaths, version: &str, base: &str) -> RemoteCmd {
    let n = quote(&p.release(version));
    let b = quote(&p.release(base));
    // Every path below `HOST_OWN`'s is left out (`-prune` stops there; the test that
    // follows it fails for them, so they are not printed).
    let own = format!(
        "\\( -path ./{} -o -path ./{} \\) -prune -o",
        HOST_OWN[0], HOST_OWN[1]
    );
    RemoteCmd::new(format!(
        "head -n 1 {n}/{MARKER} >&2 && head -n 1 {b}/{MARKER} >&2 \
         && t=$(mktemp -d) && trap 'rm -rf \"$t\"' EXIT \
         && (cd {b} && find . {own} -type f ! -name {MARKER} -print0 \
             | xargs -0r sha256sum | LC_ALL=C sort) > \"$t/base\" \
         && (cd {n} && find . {own} -type f ! -name {MARKER} -print0 \
             | xargs -0r sha256sum | LC_ALL=C sort) > \"$t/new\" \
         && LC_ALL=C comm -13 \"$t/base\" \"$t/new\" | cut -c67- | tr '\\n' '\\0' > \"$t/list\" \
         && (cd {n} && find . -mindepth 1 {own} ! -type f -print0 >> \"$t/list\" \
             && find . -mindepth 1 {own} ! -name {MARKER} -print0 | LC_ALL=C sort -z > \"$t/{DELTA_LIST}\") \
         && tar -I 'gzip -1' -cf - --no-recursion -C \"$t\" ./{DELTA_LIST} -C {n} --null -T \"$t/list\""
    ))
}

/// Builds release `version` from the host's release `base` (its files hard-linked: a
/// release's files are never written in place) and a delta of [`pack_delta`] on stdin:
/// the files that changed replace theirs (tar unlinks a file before extracting over
/// it), the paths the new release lacks go; then the hash is checked and the marker
/// written as [`unpack`] does.  Exits [`NO_BASE`], having changed nothing, when `base`
/// is not complete here with `base_env` as its hash; prints `already-complete` if the
/// release became complete meanwhile.
pub fn unpack_delta(
    p: &AppPaths,
    version: &str,
    stamp: &str,
    env_sha256: &str,
    base: (&str, &str),
    delta: bytes::Bytes,
) -> RemoteCmd {
    let (base, base_env) = base;
    let d = quote(&p.release(version));
    let m = quote(&p.marker(version));
    let b = quote(&p.release(base));
    let script = format!(
        "if [ -f {m} ]; then echo already-complete; exit 0; fi; \
         head -n 1 {b}/{MARKER} 2>/dev/null | grep -q -- {env} || exit {NO_BASE}; \
         rm -rf {d} && mkdir -p {d} && cp -al {b}/. {d}/ && rm -f {d}/{MARKER} {d}/.deploy-failed \
         && tar -C {d} -xzpf - && cd {d} && t=$(mktemp) \
         && find . -mindepth 1 ! -name {DELTA_LIST} -print0 | LC_ALL=C sort -z > \"$t\" \
         && LC_ALL=C comm -z -23 \"$t\" {DELTA_LIST} | xargs -0r rm -rf -- \
         && rm -f \"$t\" {DELTA_LIST} && {}",
        stamp_marker(p, version, stamp, Some(env_sha256)),
        env = quote(&format!(" env={base_env}")),
    );
    RemoteCmd::with_stdin(report_space(p, &locked(p, &script)), delta)
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

    /// Runs `line` with `/srv/apps` under `root`, `stdin` on its stdin.
    fn run_at(root: &std::path::Path, line: &str, stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let line = line.replace("/srv/apps", &root.join("srv/apps").display().to_string());
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// A release of `files` (path under the release, contents) with its marker.
    fn release(root: &std::path::Path, version: &str, files: &[(&str, &str)]) -> String {
        let p = AppPaths::new("hello");
        let rel = root.join(format!("srv/apps/hello/releases/{version}"));
        for (f, text) in files {
            let path = rel.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let o = run_at(
            root,
            &stamp_marker(&p, version, &format!("hello {version}"), None),
            b"",
        );
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout)
            .unwrap()
            .trim()
            .strip_prefix(ENV_LINE)
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_delta_rebuilds_the_release_from_a_base_with_links_and_only_the_changed_files() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let p = AppPaths::new("hello");
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let sp = "lib/python3.11/site-packages";
        let v1 = [
            (format!("{sp}/same.py"), "same"),
            (format!("{sp}/changed.py"), "old"),
            (format!("{sp}/gone/x.py"), "gone"),
        ];
        let v1: Vec<(&str, &str)> = v1.iter().map(|(f, c)| (f.as_str(), *c)).collect();
        let v2 = [
            (format!("{sp}/same.py"), "same"),
            (format!("{sp}/changed.py"), "new"),
            (format!("{sp}/added.py"), "added"),
        ];
        let v2: Vec<(&str, &str)> = v2.iter().map(|(f, c)| (f.as_str(), *c)).collect();
        // The builder (a) has 1.0 and built 2.0; the host (b) has its own 1.0.  Hook
        // markers are each host's own: never shipped, never linked.
        let base_env = release(&a, "1.0", &v1);
        let env2 = release(&a, "2.0", &v2);
        assert_eq!(release(&b, "1.0", &v1), base_env);
        for (root, v) in [(&a, "2.0"), (&b, "1.0")] {
            let hooks = root.join(format!("srv/apps/hello/releases/{v}/.deploy-hooks"));
            std::fs::create_dir_all(&hooks).unwrap();
            std::fs::write(hooks.join("migrate"), "").unwrap();
        }
        let packed = run_at(&a, &pack_delta(&p, "2.0", "1.0").line, b"");
        assert!(packed.status.success(), "{packed:?}");
        let stderr = String::from_utf8_lossy(&packed.stderr).to_string();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(marker_env(lines[0]), Some(env2.clone()));
        assert_eq!(marker_env(lines[1]), Some(base_env.clone()));
        let listed = std::process::Command::new("tar")
            .args(["-tzf", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&packed.stdout)?;
                c.wait_with_output()
            })
            .unwrap();
        let listed = String::from_utf8(listed.stdout).unwrap();
        assert!(
            listed.contains("changed.py") && listed.contains("added.py"),
            "{listed}"
        );
        assert!(
            !listed.contains("same.py"),
            "an unchanged file is not shipped: {listed}"
        );

        // A host whose 1.0 has another hash: refused, nothing made.
        let unpack = |base_env: &str| {
            let c = unpack_delta(
                &p,
                "2.0",
                "hello 2.0",
                &env2,
                ("1.0", base_env),
                packed.stdout.clone().into(),
            );
            run_at(&b, &c.line, &c.stdin.unwrap())
        };
        let refused = unpack(&"0".repeat(64));
        assert_eq!(refused.status.code(), Some(NO_BASE as i32), "{refused:?}");
        let rel2 = b.join("srv/apps/hello/releases/2.0");
        assert!(!rel2.exists());
        let ok = unpack(&base_env);
        assert!(ok.status.success(), "{ok:?}");
        assert_eq!(
            String::from_utf8_lossy(&ok.stdout).trim(),
            format!("{ENV_LINE}{env2}")
        );
        let read = |f: &str| std::fs::read_to_string(rel2.join(sp).join(f)).ok();
        assert_eq!(read("same.py").as_deref(), Some("same"));
        assert_eq!(read("changed.py").as_deref(), Some("new"));
        assert_eq!(read("added.py").as_deref(), Some("added"));
        assert_eq!(read("gone/x.py"), None);
        assert!(
            !rel2.join(sp).join("gone").exists(),
            "a directory 2.0 lacks goes too"
        );
        assert!(!rel2.join(DELTA_LIST).exists());
        assert!(
            !rel2.join(".deploy-hooks").exists(),
            "hook markers are the host's own"
        );
        assert!(!listed.contains(".deploy-hooks"), "{listed}");
        let ino = |v: &str, f: &str| {
            std::fs::metadata(b.join(format!("srv/apps/hello/releases/{v}/{sp}/{f}")))
                .unwrap()
                .ino()
        };
        assert_eq!(
            ino("1.0", "same.py"),
            ino("2.0", "same.py"),
            "linked, not copied"
        );
        // The base is untouched.
        let base_changed =
            std::fs::read_to_string(b.join(format!("srv/apps/hello/releases/1.0/{sp}/changed.py")))
                .unwrap();
        assert_eq!(base_changed, "old");
        assert!(
            b.join(format!("srv/apps/hello/releases/1.0/{sp}/gone/x.py"))
                .exists()
        );
        let m = std::fs::read_to_string(rel2.join(MARKER)).unwrap();
        assert_eq!(m, format!("hello 2.0 env={env2}\n"));
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
        std::fs::create_dir_all(rel_a.join(".deploy-hooks")).unwrap();
        std::fs::write(rel_a.join(".deploy-hooks/migrate"), "").unwrap();
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
        assert!(!b.join("srv/apps/hello/releases/1.0/.deploy-hooks").exists());
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
