//! Architectural boundaries, checked mechanically (see ARCHITECTURE.md): the walls between
//! packages are Cargo's (`cargo tree`: the `deploy` CLI links neither SSH code nor the
//! engine or gateway; the engine crate has no HTTP or database crate under it), only
//! `src/engine/ssh.rs` uses russh, and every source file starts with a `//!` line saying
//! what it owns.

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
        .filter(|l| {
            l.starts_with("russh")
                || l.starts_with("ssh-")
                || l.starts_with("deploy ")
                || l.starts_with("deploy-engine ")
        })
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
        [PathBuf::from("src/engine/ssh.rs")],
        "only src/engine/ssh.rs may use russh"
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

/// The engine crate (engine, commands, SSH, process managers, inventory, templates) can
/// name no HTTP or database crate: none is under it. The check can fail: the gateway,
/// which depends on the engine, does have them.
#[test]
fn the_engine_crate_depends_on_no_http_or_database_crate() {
    const FORBIDDEN: [&str; 7] = [
        "axum",
        "hyper",
        "hyper-util",
        "reqwest",
        "rusqlite",
        "postgres",
        "tokio-postgres",
    ];
    let has = |tree: &str, krate: &str| tree.lines().any(|l| l.starts_with(&format!("{krate} ")));
    let gateway = normal_deps("deploy");
    for krate in ["axum", "reqwest", "rusqlite", "postgres"] {
        assert!(has(&gateway, krate), "expected {krate} under the gateway");
    }
    let engine = normal_deps("deploy-engine");
    assert!(
        has(&engine, "russh"),
        "expected russh under the engine:\n{engine}"
    );
    let bad: Vec<&str> = FORBIDDEN.into_iter().filter(|k| has(&engine, k)).collect();
    assert!(bad.is_empty(), "deploy-engine depends on {bad:?}");
}
