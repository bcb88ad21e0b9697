//! Tests of the pinned install's commands: the wheel's hash checked by the installer
//! before anything else is installed, credentials on stdin only, the hash in the marker.

use super::*;
use crate::index::{Secret, ServerIndex};

fn p() -> AppPaths {
    AppPaths::new("hello")
}

fn pin() -> WheelPin {
    WheelPin::new("hello_app-1.0.0-py3-none-any.whl", &"AB".repeat(32)).unwrap()
}

fn index() -> ServerIndex {
    ServerIndex {
        url: "http://index:8080/simple/".into(),
        credentials: Some(("u".into(), Secret::new("s3cret"))),
    }
}

/// The end of every build: the environment's hash into the marker after `stamp`
/// (`env_ship.rs` runs it for real).
fn stamped(stamp: &str) -> String {
    let h = "$(cd /srv/apps/hello/releases/1.0.0 && find . -path '*/site-packages/*' -type f \
             ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum | cut -c1-64)";
    format!(
        "h={h} && printf '%s env=%s\\n' '{stamp}' \"$h\" > /srv/apps/hello/releases/1.0.0/.deploy-release.tmp \
         && mv -f /srv/apps/hello/releases/1.0.0/.deploy-release.tmp /srv/apps/hello/releases/1.0.0/.deploy-release \
         && echo \"deploy-env $h\""
    )
}

/// The script `flock` runs, as the remote shell would see it.
fn inner(c: &RemoteCmd) -> String {
    let quoted = c
        .line
        .strip_prefix("{ flock -w 900 /srv/apps/hello/.deploy-build.lock sh -c ")
        .and_then(|l| l.split_once("; } || { rc=$?;"))
        .unwrap()
        .0;
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {quoted}"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_pinned_pip_install_checks_the_hash_before_the_dependencies_and_stamps_the_marker() {
    let c = install(
        &p(),
        &Tool::Pip,
        &index(),
        "hello-app",
        "1.0.0",
        Some(&pin()),
    );
    let pip = "/srv/apps/hello/releases/1.0.0/bin/pip install --no-input --disable-pip-version-check \
               --progress-bar off --no-cache-dir --trusted-host index";
    let sha = "ab".repeat(32);
    assert_eq!(
        inner(&c),
        format!(
            "IFS= read -r PIP_INDEX_URL && export PIP_INDEX_URL \
             && printf '%s\\n' 'hello-app==1.0.0 --hash=sha256:{sha}' > /srv/apps/hello/releases/1.0.0/.deploy-wheel.txt \
             && {{ {pip} --no-deps --require-hashes -r /srv/apps/hello/releases/1.0.0/.deploy-wheel.txt \
             || {{ echo 'install: the index did not serve hello_app-1.0.0-py3-none-any.whl (hello-app==1.0.0) \
             with the SHA-256 the gateway recorded ({sha}): refused' >&2; exit 1; }}; }} \
             && {pip} hello-app==1.0.0 \
             && {marker}",
            marker = stamped(&format!("hello-app 1.0.0 sha256={sha}"))
        )
    );
    assert!(!c.line.contains("s3cret"), "the credential is not in argv");
    assert!(!format!("{c:?}").contains("s3cret"));
    assert_eq!(
        c.stdin.as_deref(),
        Some(&b"http://u:s3cret@index:8080/simple/\n"[..])
    );
}

#[test]
fn a_pinned_uv_install_uses_the_same_two_runs() {
    let uv = Tool::Uv {
        sha256: "0f".repeat(32),
    };
    let c = inner(&install(
        &p(),
        &uv,
        &index(),
        "hello-app",
        "1.0.0",
        Some(&pin()),
    ));
    assert!(c.starts_with("IFS= read -r UV_DEFAULT_INDEX && export UV_DEFAULT_INDEX && "));
    let exact = c.find(
        "--no-cache --no-deps --require-hashes -r /srv/apps/hello/releases/1.0.0/.deploy-wheel.txt",
    );
    let deps = c.find("--no-cache hello-app==1.0.0 &&");
    let marker = c.find("sha256=abab");
    assert!(
        exact.is_some() && exact < deps && deps < marker,
        "exact install, then dependencies, then the marker: {c}"
    );
    assert_eq!(c.matches(".cache/deploy/uv-0f0f").count(), 2, "{c}");
}

#[test]
fn an_install_without_a_pin_is_as_before_and_its_marker_has_no_hash() {
    let c = inner(&install(
        &p(),
        &Tool::Pip,
        &index(),
        "hello-app",
        "1.0.0",
        None,
    ));
    assert!(
        !c.contains("--require-hashes") && !c.contains(PIN_FILE),
        "{c}"
    );
    assert!(
        c.ends_with(&format!(" && {}", stamped("hello-app 1.0.0"))),
        "{c}"
    );
}

#[test]
fn a_pin_is_a_sha256_in_hex_and_markers_say_theirs() {
    assert!(WheelPin::new("f.whl", "abc").is_none());
    assert!(WheelPin::new("f.whl", &"zz".repeat(32)).is_none());
    assert_eq!(pin().sha256, "ab".repeat(32));
    let sha = "cd".repeat(32);
    assert_eq!(
        marker_sha256(&format!("hello-app 1.0.0 sha256={sha}")),
        Some(sha)
    );
    assert_eq!(
        marker_sha256("hello-app 1.0.0"),
        None,
        "a release from before pins"
    );
    assert_eq!(marker_sha256("hello-app 1.0.0 sha256=nothex"), None);
    // The listing's line of a release gives its wheel's and its environment's hashes.
    let env = "e5".repeat(32);
    let listing = format!(
        "0.9 hello-app 0.9\n1.0.0 hello-app 1.0.0 sha256={} env={env}\n",
        "cd".repeat(32)
    );
    assert_eq!(release_wheel(&listing, "1.0.0"), Some("cd".repeat(32)));
    assert_eq!(release_env(&listing, "1.0.0"), Some(env));
    assert_eq!(
        release_env(&listing, "0.9"),
        None,
        "built before hosts kept it"
    );
}

#[test]
fn release_wheels_prints_each_complete_release_with_its_marker_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("releases");
    for (v, marker) in [
        ("1.0.0", Some("hello-app 1.0.0")),
        ("1.1.0", Some("hello-app 1.1.0 sha256=00ff")),
        ("1.2.0", None),
    ] {
        std::fs::create_dir_all(root.join(v)).unwrap();
        if let Some(m) = marker {
            std::fs::write(root.join(v).join(MARKER), format!("{m}\n")).unwrap();
        }
    }
    let line = release_wheels(&p())
        .line
        .replace(&quote(&p().releases()), &quote(root.to_str().unwrap()));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "1.0.0 hello-app 1.0.0\n1.1.0 hello-app 1.1.0 sha256=00ff\n"
    );
}

fn sh(line: &str) -> (i32, String, String) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn a_failed_build_says_which_filesystem_it_wrote_to_and_keeps_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let p = AppPaths {
        app: "hello".into(),
        root: dir.path().to_str().unwrap().into(),
    };
    let (code, _, err) = sh(&report_space(&p, "sh -c 'echo boom >&2; exit 3'"));
    assert_eq!(code, 3);
    let report = err.lines().nth(1).unwrap();
    let words: Vec<&str> = report.split_whitespace().collect();
    assert_eq!(words[0], crate::failure::SPACE_LINE, "{err}");
    assert!(words[1].starts_with('/'), "a mount point: {err}");
    assert_eq!(words[2], "has", "{err}");
    assert!(words[3].parse::<u64>().is_ok(), "free KiB: {err}");
    assert_eq!(words[4..], ["KiB", "free"], "{err}");
    assert_eq!(
        sh(&report_space(&p, "echo fine")),
        (0, "fine\n".into(), "".into())
    );
}

#[test]
fn an_unfinished_release_is_removed_and_a_complete_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = AppPaths {
        app: "hello".into(),
        root: dir.path().to_str().unwrap().into(),
    };
    for v in ["1.0.0", "1.1.0"] {
        std::fs::create_dir_all(format!("{}/lib/site-packages", p.release(v))).unwrap();
    }
    std::fs::write(p.marker("1.0.0"), "hello-app 1.0.0\n").unwrap();
    for v in ["1.0.0", "1.1.0", "9.9.9"] {
        assert_eq!(sh(&remove_unfinished(&p, v).line).0, 0, "{v}");
    }
    assert!(std::path::Path::new(&p.marker("1.0.0")).exists());
    assert!(!std::path::Path::new(&p.release("1.1.0")).exists());
}
