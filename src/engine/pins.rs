//! Pinned host keys: the SHA-256 fingerprint each server must present.
//!
//! File format, one per line (`#` comments allowed), keyed like OpenSSH's known_hosts:
//! `[address]:port SHA256:base64`.  Pinning is an explicit act (`deploy-gateway
//! trust-host`); the engine never adds a key by itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::InputError;

#[derive(Debug, Clone, Default)]
pub struct HostKeyPins {
    path: Option<PathBuf>,
    entries: BTreeMap<String, String>,
}

pub fn key(address: &str, port: u16) -> String {
    format!("[{address}]:{port}")
}

impl HostKeyPins {
    /// Loads pins from `path`; a missing file means no pins yet.
    pub fn load(path: &Path) -> Result<HostKeyPins, InputError> {
        let mut pins = HostKeyPins {
            path: Some(path.to_path_buf()),
            entries: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pins),
            Err(e) => {
                return Err(InputError::new(
                    path,
                    None,
                    "",
                    format!("cannot read pinned host keys: {e}"),
                ));
            }
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(host), Some(fp), None)
                    if host.starts_with('[') && fp.starts_with("SHA256:") =>
                {
                    pins.entries.insert(host.to_string(), fp.to_string());
                }
                _ => {
                    return Err(InputError::new(
                        path,
                        Some(i as u64 + 1),
                        "",
                        "expected `[address]:port SHA256:fingerprint`",
                    ));
                }
            }
        }
        Ok(pins)
    }

    pub fn get(&self, address: &str, port: u16) -> Option<&str> {
        self.entries.get(&key(address, port)).map(String::as_str)
    }

    /// Pins (or re-pins) a fingerprint and writes the file.
    pub fn pin(&mut self, address: &str, port: u16, fingerprint: &str) -> std::io::Result<()> {
        self.entries
            .insert(key(address, port), fingerprint.to_string());
        if let Some(path) = &self.path {
            let mut text =
                String::from("# Pinned SSH host keys, written by `deploy-gateway trust-host`.\n");
            for (h, fp) in &self.entries {
                text.push_str(&format!("{h} {fp}\n"));
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(tmp, path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut pins = HostKeyPins::load(&path).unwrap();
        assert_eq!(pins.get("10.0.0.1", 22), None);
        pins.pin("10.0.0.1", 22, "SHA256:abc").unwrap();
        let again = HostKeyPins::load(&path).unwrap();
        assert_eq!(again.get("10.0.0.1", 22), Some("SHA256:abc"));
        std::fs::write(&path, "# c\n[a]:22 SHA256:x\nbogus line here\n").unwrap();
        let err = HostKeyPins::load(&path).unwrap_err();
        assert_eq!(err.line, Some(3));
    }
}
