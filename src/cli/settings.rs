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

/// `$XDG_CONFIG_HOME/deploy/config.json`, else `~/.config/deploy/config.json`.  As the
/// XDG spec says, an empty or relative XDG_CONFIG_HOME is ignored (it would write the
/// token under the current directory).
pub fn path() -> PathBuf {
    path_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

fn path_from(xdg: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> PathBuf {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = xdg
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".config")))
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

#[cfg(test)]
mod tests {
    use super::path_from;

    #[test]
    fn an_empty_or_relative_xdg_config_home_is_ignored() {
        let home = Some("/home/ann".into());
        let want = std::path::Path::new("/home/ann/.config/deploy/config.json");
        assert_eq!(path_from(Some("".into()), home.clone()), want);
        assert_eq!(path_from(Some("rel".into()), home.clone()), want);
        assert_eq!(path_from(None, home.clone()), want);
        assert_eq!(
            path_from(Some("/x".into()), home),
            std::path::Path::new("/x/deploy/config.json")
        );
    }
}
