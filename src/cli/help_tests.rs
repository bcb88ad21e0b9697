//! The command line's own documentation: every command and option says what it is for,
//! and the completion scripts and man pages come from the same definitions.

use clap::CommandFactory;

use crate::Cli;

/// Commands and arguments with no help line, as `deploy release --env`.
fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    let here = format!("{path} {}", cmd.get_name()).trim().to_string();
    if cmd.get_about().is_none() && !cmd.is_hide_set() {
        out.push(here.clone());
    }
    for arg in cmd.get_arguments() {
        let builtin = matches!(arg.get_id().as_str(), "help" | "version");
        if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
            out.push(format!("{here} {}", arg.get_id()));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() != "help" {
            undocumented(sub, &here, out);
        }
    }
}

#[test]
fn every_command_and_argument_has_a_help_line() {
    let mut missing = vec![];
    undocumented(&Cli::command(), "", &mut missing);
    assert!(missing.is_empty(), "no help line: {missing:#?}");
}

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn bash_completes_subcommands_from_the_generated_script() {
    let mut script = vec![];
    clap_complete::generate(
        clap_complete::Shell::Bash,
        &mut Cli::command(),
        "deploy",
        &mut script,
    );
    let dir = tempfile_dir();
    let file = dir.join("deploy.bash");
    std::fs::write(&file, &script).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let probe = format!(
            "source {file}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
             COMP_POINT={point}; _deploy deploy '{last}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file = file.display(),
            words = words.join(" "),
            cword = words.len() - 1,
            point = line.len(),
            last = words[words.len() - 1],
            prev = words[words.len().saturating_sub(2)],
        );
        let out = std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &probe])
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let got = complete("deploy rol");
    assert_eq!(
        got.split_whitespace().collect::<Vec<_>>(),
        ["rollback"],
        "{got}"
    );
    let got = complete("deploy schedule ");
    for sub in ["add", "list", "pause", "resume", "rm", "show"] {
        assert!(
            got.split_whitespace().any(|w| w == sub),
            "{sub} missing in {got}"
        );
    }
    let got = complete("deploy release --ch");
    assert_eq!(
        got.split_whitespace().collect::<Vec<_>>(),
        ["--check"],
        "{got}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn man_pages_are_written_for_every_command() {
    let dir = tempfile_dir();
    assert_eq!(crate::manpages(&dir), std::process::ExitCode::SUCCESS);
    for page in [
        "deploy.1",
        "deploy-release.1",
        "deploy-schedule-add.1",
        "deploy-app-logs.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is no man page");
    }
    let release = std::fs::read_to_string(dir.join("deploy-release.1")).unwrap();
    assert!(release.contains("Report what would change"), "{release}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "deploy-cli-help-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
