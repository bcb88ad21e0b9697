//! Commands for releases on a server: the app's directories, virtualenvs, installs
//! (pip or the shipped uv), the build lock, markers, listing and removal.

use super::{AppPaths, MARKER, RemoteCmd};
use crate::index::WheelPin;
use crate::shell::{join, quote};

/// Which installer builds a release, as far as commands care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// `python3 -m venv` and the venv's pip.
    Pip,
    /// The uv binary shipped under its SHA-256 (see [`uv_path`]).
    Uv { sha256: String },
}

/// Prints `complete` and the marker's first line if the release's marker exists;
/// else `partial` if only its directory does, `absent` otherwise, then the host's
/// platform line (`env_ship::platform`: whether another host's build may be shipped
/// here), read only while there is something to build.
pub fn release_state(p: &AppPaths, version: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "if [ -f {m} ]; then echo complete; head -n 1 {m}; exit 0; elif [ -e {d} ]; then echo partial; else echo absent; fi; {platform} || true",
        m = quote(&p.marker(version)),
        d = quote(&p.release(version)),
        platform = super::env_ship::platform(),
    ))
}

/// Builds serialise on a per-app lock file held with `flock`: a build left running on
/// the server by a gateway that died (sshd does not kill it) finishes before the next one
/// touches the release directory.
pub fn build_lock(p: &AppPaths) -> String {
    format!("{}/.deploy-build.lock", p.root)
}

pub(super) fn locked(p: &AppPaths, line: &str) -> String {
    format!(
        "flock -w 900 {} sh -c {}",
        quote(&build_lock(p)),
        quote(line)
    )
}

/// Where a shipped uv lives on a server: in the SSH user's home, under its checksum, so
/// a server keeps one copy per uv version whatever the number of applications.  A shell
/// expression (`$HOME` expands remotely); `sha256` must be hex.
pub fn uv_path(sha256: &str) -> String {
    assert!(sha256.chars().all(|c| c.is_ascii_hexdigit()));
    format!("\"$HOME/.cache/deploy/uv-{sha256}/uv\"")
}

/// Where the stamp of a verified uv lives: `<sha256> <size> <mtime>` of the binary,
/// written when its checksum was last verified.
fn uv_stamp(sha256: &str) -> String {
    format!("\"$HOME/.cache/deploy/uv-{sha256}/verified\"")
}

/// Prints `present` if the server has this uv and can run it, `unsupported <arch>` on a
/// non-x86_64 server, `absent` otherwise.  A binary whose size and mtime match the stamp
/// written when it was verified is not hashed again (44 MB per deploy otherwise); one
/// without a stamp (shipped by an older version) is hashed once and stamped.  The stamp
/// is only a cache of the check: whoever could change the binary could change it too.
pub fn uv_probe(sha256: &str) -> RemoteCmd {
    let f = uv_path(sha256);
    let stamp = uv_stamp(sha256);
    let want = format!("\"{sha256} $(stat -c '%s %Y' {f} 2>/dev/null)\"");
    RemoteCmd::new(format!(
        "a=$(uname -m); if [ \"$a\" != x86_64 ]; then echo \"unsupported $a\"; \
         elif [ -x {f} ] && [ \"$(cat {stamp} 2>/dev/null)\" = {want} ]; then echo present; \
         elif [ -x {f} ] && echo {sha256}'  '{f} | sha256sum -c --status 2>/dev/null \
         && {f} --version >/dev/null 2>&1; then echo {want} > {stamp} 2>/dev/null; echo present; \
         else echo absent; fi"
    ))
}

/// Uploads uv (its bytes on stdin), checks the SHA-256 before making it executable and
/// renames it into place, stamps it as verified, then prints its version.
pub fn uv_upload(sha256: &str, bytes: impl Into<bytes::Bytes>) -> RemoteCmd {
    let f = uv_path(sha256);
    let stamp = uv_stamp(sha256);
    RemoteCmd::with_stdin(
        format!(
            "d=$(dirname {f}) && mkdir -p \"$d\" && t=\"$d/uv.tmp.$$\" && cat > \"$t\" \
             && {{ echo {sha256}'  '\"$t\" | sha256sum -c --status || {{ rm -f \"$t\"; echo 'uv upload: checksum mismatch' >&2; exit 1; }}; }} \
             && chmod 0755 \"$t\" && mv -f \"$t\" {f} && echo \"{sha256} $(stat -c '%s %Y' {f})\" > {stamp} && {f} --version"
        ),
        bytes,
    )
}

/// Environment every uv command runs with: no config files, no Python downloads, copies
/// rather than links from its cache (a release must not share inodes with the cache).
const UV_ENV: &str = "UV_NO_CONFIG=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy";

/// (Re)creates the release's virtualenv, removing what an interrupted build left; prints
/// `already-complete` instead if the release became complete meanwhile.
pub fn venv_create(p: &AppPaths, version: &str, tool: &Tool) -> RemoteCmd {
    let d = quote(&p.release(version));
    let m = quote(&p.marker(version));
    let make = match tool {
        Tool::Pip => format!("python3 -m venv {d}"),
        Tool::Uv { sha256 } => format!(
            "{UV_ENV} {uv} venv --quiet --python python3 {d}",
            uv = uv_path(sha256)
        ),
    };
    RemoteCmd::new(report_space(
        p,
        &locked(
            p,
            &format!("if [ -f {m} ]; then echo already-complete; exit 0; fi; rm -rf {d} && {make}"),
        ),
    ))
}

/// `line` (one command: an `exit` in it would skip the report), and when it fails, one more line on stderr naming the filesystem the app
/// lives on and its free KiB (`deploy-space: /srv has 1024 KiB free`, see
/// [`crate::failure::CommandFailure`]): what a full disk's reason names.  Its exit
/// status is `line`'s.
pub fn report_space(p: &AppPaths, line: &str) -> String {
    format!(
        "{{ {line}; }} || {{ rc=$?; echo \"{tag} $(df -Pk {root} 2>/dev/null | awk 'NR==2 {{print $6, \"has\", $4, \"KiB free\"}}')\" >&2; exit $rc; }}",
        tag = crate::failure::SPACE_LINE,
        root = quote(&p.root),
    )
}

/// Removes `version`'s release directory unless it is complete (its marker exists),
/// under the build lock: what a failed build leaves (a virtualenv, half an install, the
/// installer's temporary files in it) is gone, so a full disk gets its space back and
/// nothing partial stays on the host.  Never fails.
pub fn remove_unfinished(p: &AppPaths, version: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "{} || true",
        locked(
            p,
            &format!(
                "[ -f {m} ] || rm -rf -- {d}",
                m = quote(&p.marker(version)),
                d = quote(&p.release(version))
            )
        )
    ))
}

/// Installs `package==version` into the release, then writes the marker (last, and
/// atomically, so a marker means a complete release).
///
/// The index URL (which may carry credentials) is the first line of stdin: the script
/// reads it into the installer's environment (`PIP_INDEX_URL` / `UV_DEFAULT_INDEX`), so
/// it appears in no command line, process list or file.  With credentials the
/// installer's cache is off, so nothing derived from an authenticated request is kept
/// on disk.
///
/// With a [`WheelPin`] the install is exact, in two runs of the same installer: first
/// the package alone (`--no-deps`) in hash-checking mode from a requirements file
/// (`package==version --hash=sha256:<pin>`, written into the release: no secret), so
/// pip or uv refuses any file of that version whose bytes are not the pinned ones; then
/// `package==version` again, which keeps the installed package and adds its
/// dependencies from the index.  A refusal prints a plain reason and writes no marker.
/// The marker then says `<package> <version> sha256=<pin> env=<hash>`; without a pin
/// `<package> <version> env=<hash>` (a release installed before pins: "unknown"); the
/// environment's hash is `env_ship::env_hash`, printed last as `deploy-env <hash>`.
pub fn install(
    p: &AppPaths,
    tool: &Tool,
    index: &crate::index::ServerIndex,
    package: &str,
    version: &str,
    wheel: Option<&WheelPin>,
) -> RemoteCmd {
    let req = format!("{package}=={version}");
    let release = p.release(version);
    let var = match tool {
        Tool::Pip => "PIP_INDEX_URL",
        Tool::Uv { .. } => "UV_DEFAULT_INDEX",
    };
    let mut steps = vec![format!("IFS= read -r {var} && export {var}")];
    let stamp = marker_stamp(package, version, wheel);
    if let Some(w) = wheel {
        let file = format!("{release}/{PIN_FILE}");
        let pinned = format!("{req} --hash=sha256:{}", w.sha256);
        let why = format!(
            "install: the index did not serve {} ({req}) with the SHA-256 the gateway recorded ({}): refused",
            w.file, w.sha256
        );
        steps.push(format!(
            "printf '%s\\n' {} > {}",
            quote(&pinned),
            quote(&file)
        ));
        let exact = installer(
            p,
            tool,
            index,
            version,
            &["--no-deps", "--require-hashes", "-r", &file],
        );
        steps.push(format!(
            "{{ {exact} || {{ echo {} >&2; exit 1; }}; }}",
            quote(&why)
        ));
    }
    steps.push(installer(p, tool, index, version, &[&req]));
    steps.push(super::env_ship::stamp_marker(p, version, &stamp, None));
    RemoteCmd::with_stdin(
        report_space(p, &locked(p, &steps.join(" && "))),
        format!("{}\n", index.url_with_credentials().expose()).into_bytes(),
    )
}

/// What a release's marker says before its environment hash: `<package> <version>`,
/// and `sha256=<pin>` for a pinned install.
pub fn marker_stamp(package: &str, version: &str, wheel: Option<&WheelPin>) -> String {
    match wheel {
        Some(w) => format!("{package} {version} sha256={}", w.sha256),
        None => format!("{package} {version}"),
    }
}

/// The requirements file of a pinned install, in the release (name and hash only).
pub const PIN_FILE: &str = ".deploy-wheel.txt";

/// One run of the installer into the release, with `what` (requirements or options and
/// a requirements file) after its options; the index is in its environment already.
fn installer(
    p: &AppPaths,
    tool: &Tool,
    index: &crate::index::ServerIndex,
    version: &str,
    what: &[&str],
) -> String {
    let plain_url = index.url.as_str();
    let with_credentials = index.credentials.is_some();
    let release = p.release(version);
    match tool {
        Tool::Pip => {
            let pip = format!("{release}/bin/pip");
            let mut args = vec![
                pip.as_str(),
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
            ];
            if with_credentials {
                args.push("--no-cache-dir");
            }
            let host;
            if plain_url.starts_with("http://") {
                // A plain-http index was asked for explicitly; pip refuses it without this.
                host = crate::inventory::url_host(plain_url)
                    .unwrap_or_default()
                    .to_string();
                args.extend(["--trusted-host", host.as_str()]);
            }
            args.extend(what);
            join(&args)
        }
        Tool::Uv { sha256 } => {
            let py = format!("{release}/bin/python");
            let mut args = vec!["pip", "install", "--python", py.as_str()];
            if with_credentials {
                args.push("--no-cache");
            }
            args.extend(what);
            format!("{UV_ENV} {uv} {}", join(&args), uv = uv_path(sha256))
        }
    }
}

/// Prints, for each complete release, its name and its marker's first line
/// (`<name> <package> <version> [sha256=<hex>]`): which file each release installed.
pub fn release_wheels(p: &AppPaths) -> RemoteCmd {
    RemoteCmd::new(format!(
        "cd {r} 2>/dev/null || exit 0; for d in */; do d=${{d%/}}; [ -f \"$d/{MARKER}\" ] || continue; \
         printf '%s %s\\n' \"$d\" \"$(head -n 1 \"$d/{MARKER}\")\"; done",
        r = quote(&p.releases())
    ))
}

/// The SHA-256 [`release_wheels`]' answer records for `version`'s release, if any.
pub fn release_wheel(listing: &str, version: &str) -> Option<String> {
    listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(version))
        .and_then(marker_sha256)
}

/// The environment hash [`release_wheels`]' answer records for `version`'s release.
pub fn release_env(listing: &str, version: &str) -> Option<String> {
    listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(version))
        .and_then(super::env_ship::marker_env)
}

/// The SHA-256 a release's marker line records (`sha256=<hex>`), if any.
pub fn marker_sha256(line: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("sha256="))
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_string)
}

/// Marks a release as failed (its health check failed on this host).
pub fn mark_failed(p: &AppPaths, version: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "touch {} 2>/dev/null || true",
        quote(&p.failed_marker(version))
    ))
}

/// Lists release directories, oldest first: `<mtime> <name> complete|partial` per line.
pub fn list_releases(p: &AppPaths) -> RemoteCmd {
    RemoteCmd::new(format!(
        "cd {r} 2>/dev/null || exit 0; for d in */; do d=${{d%/}}; [ \"$d\" = '*' ] && continue; if [ -f \"$d/.deploy-failed\" ]; then echo \"$(stat -c %Y \"$d\") $d failed\"; elif [ -f \"$d/{MARKER}\" ]; then echo \"$(stat -c %Y \"$d/{MARKER}\") $d complete\"; else echo \"$(stat -c %Y \"$d\") $d partial\"; fi; done | sort -n",
        r = quote(&p.releases())
    ))
}

/// Removes the named release directories.
pub fn remove_releases(p: &AppPaths, versions: &[String]) -> RemoteCmd {
    let dirs: Vec<String> = versions.iter().map(|v| p.release(v)).collect();
    RemoteCmd::new(format!("rm -rf -- {}", join(&dirs)))
}

#[cfg(test)]
#[path = "release_tests.rs"]
mod tests;
