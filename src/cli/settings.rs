//! Where the CLI keeps its gateway URL and token (`deploy login`): a JSON file with mode
//! 0600 in the user's config directory.  Flags and DEPLOY_GATEWAY / DEPLOY_TOKEN win.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Saved {
    pub gateway: Option<String>,
    pub token: Option<String>,
}

pub fn path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("deploy").join("config.json")
}

pub fn load() -> Saved {
    std::fs::read_to_string(path())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn save(s: &Saved) -> std::io::Result<PathBuf> {
    let p = path();
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = p.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(
        serde_json::to_string_pretty(s)
            .expect("serializes")
            .as_bytes(),
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)?;
    Ok(p)
}
