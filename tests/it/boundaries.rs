//! Architectural boundaries, checked mechanically (see ARCHITECTURE.md):
//! the `deploy` CLI cannot link SSH code, only `src/ssh.rs` uses russh, the engine, SSH and
//! command building use no HTTP or database crate, and every source
//! file starts with a `//!` line saying what it owns.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn normal_deps(package: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            package,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_cli_does_not_link_russh() {
    let cli = normal_deps("deploy-cli");
    let gateway = normal_deps("deploy");
    // The check can fail: the gateway package does depend on russh.
    assert!(
        gateway.lines().any(|l| l.starts_with("russh ")),
        "expected russh under the gateway:\n{gateway}"
    );
    let ssh: Vec<&str> = cli
        .lines()
        .filter(|l| l.starts_with("russh") || l.starts_with("ssh-") || l.starts_with("deploy "))
        .collect();
    assert!(
        ssh.is_empty(),
        "the deploy CLI must not depend on SSH code or the gateway library: {ssh:?}"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn only_the_ssh_module_talks_to_russh() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let users: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("russh::"))
        .map(|f| f.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        users,
        [PathBuf::from("src/ssh.rs")],
        "only src/ssh.rs may use russh"
    );
}

#[test]
fn every_source_file_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    assert!(files.len() > 10);
    for f in files {
        let first = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        assert!(
            first.starts_with("//! "),
            "{} must start with a `//!` line",
            f.display()
        );
    }
}

#[test]
fn the_engine_ssh_and_command_building_know_nothing_of_http_or_the_store() {
    let mut files = Vec::new();
    for dir in ["src/engine", "src/commands", "src/procman"] {
        rust_files(&root().join(dir), &mut files);
    }
    files.push(root().join("src/ssh.rs"));
    assert!(files.len() > 15, "{files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for krate in ["axum", "reqwest", "rusqlite", "hyper"] {
            if text.contains(&format!("{krate}::")) {
                bad.push(format!(
                    "{} uses {krate}",
                    f.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}
