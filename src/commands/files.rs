//! Commands for files on a server: read, write atomically, and the two pointers to the
//! live release (`live-slot`, `current`).

use super::{AppPaths, RemoteCmd, sudo_sh};
use crate::shell::quote;

/// Prints `present` then the file's bytes, or `absent`.
pub fn read_file(path: &str) -> RemoteCmd {
    let q = quote(path);
    RemoteCmd::new(format!(
        "if [ -f {q} ]; then echo present; cat -- {q}; else echo absent; fi"
    ))
}

/// Writes stdin to `path` atomically (temp file, then rename) with `mode`.  With `root`,
/// as root (for `/etc`); otherwise as the SSH user.
pub fn write_file(path: &str, mode: &str, root: bool, contents: Vec<u8>) -> RemoteCmd {
    let script = "umask 077 && cat > \"$1.deploy-new\" && chmod \"$2\" \"$1.deploy-new\" && mv -f \"$1.deploy-new\" \"$1\"";
    let line = if root {
        sudo_sh(script, &[path, mode])
    } else {
        format!("sh -c {} sh {} {}", quote(script), quote(path), quote(mode))
    };
    RemoteCmd::with_stdin(line, contents)
}

/// Prints the target of `current` (relative or absolute as stored), or nothing.
pub fn read_current(p: &AppPaths) -> RemoteCmd {
    RemoteCmd::new(format!("readlink {} || true", quote(&p.current())))
}

/// Points `current` at the release atomically: a new symlink renamed over the old one.
/// Refuses a release without its marker, so `current` never points at a half-built one.
pub fn switch_current(p: &AppPaths, version: &str) -> RemoteCmd {
    let tmp = format!("{}.deploy-new", p.current());
    RemoteCmd::new(format!(
        "test -f {m} || {{ echo 'release {v} is not complete (no marker); refusing to switch' >&2; exit 1; }}; ln -sfn {target} {tmp} && mv -T -f {tmp} {cur}",
        m = quote(&p.marker(version)),
        v = quote(version),
        target = quote(&format!("releases/{version}")),
        tmp = quote(&tmp),
        cur = quote(&p.current())
    ))
}

/// Reads the live slot name (empty if none yet).
pub fn read_live(p: &AppPaths) -> RemoteCmd {
    RemoteCmd::new(format!("cat {} 2>/dev/null || true", quote(&p.live_file())))
}

/// Records the live slot and points `current` at its release, both atomically.
pub fn set_live(p: &AppPaths, slot: &str, version: &str) -> RemoteCmd {
    let live = p.live_file();
    let tmp = format!("{live}.deploy-new");
    RemoteCmd::new(format!(
        "printf '%s\\n' {slot} > {tmp} && mv -f {tmp} {live} && {switch}",
        slot = quote(slot),
        tmp = quote(&tmp),
        live = quote(&live),
        switch = switch_current(p, version).line
    ))
}
