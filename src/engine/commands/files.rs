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

/// Prints the live pointer's target (`green@1.1.0.sock`, empty if none yet) on the first
/// line and, on the second, the slot a pre-socket deploy recorded (empty if none).
pub fn read_live(p: &AppPaths) -> RemoteCmd {
    RemoteCmd::new(format!(
        "readlink {} || true; echo; cat {} 2>/dev/null || true",
        quote(&p.live_socket()),
        quote(&p.legacy_live_file())
    ))
}

/// The switch: points the live pointer at `slot` running `version` with one rename
/// (nginx's next connection goes there; nothing is reloaded, no connection closed),
/// then `current` at the release (for people and hooks; the pointer is the truth).
/// Refuses a release without its marker.
pub fn set_live(p: &AppPaths, slot: &str, version: &str) -> RemoteCmd {
    let live = p.live_socket();
    let tmp = format!("{live}.deploy-new");
    RemoteCmd::new(format!(
        "test -f {m} || {{ echo 'release {v} is not complete (no marker); refusing to switch' >&2; exit 1; }}; \
         ln -sfn {target} {tmp} && mv -T -f {tmp} {live} && rm -f {legacy} && {current}",
        m = quote(&p.marker(version)),
        v = quote(version),
        target = quote(&super::slot_socket_name(slot, version)),
        tmp = quote(&tmp),
        live = quote(&live),
        legacy = quote(&p.legacy_live_file()),
        current = switch_current(p, version).line
    ))
}
