//! The `deploy` binary as a shell pipeline uses it: a reader that is gone
//! (`deploy ... | head -1` after head's line) ends it quietly with exit 0.

use std::process::{Command, Stdio};

#[test]
fn a_reader_that_closed_its_pipe_ends_the_command_quietly_with_exit_0() {
    for args in [&["completions", "bash"][..], &["--help"][..]] {
        // A pipe whose reading end is already closed: the first write fails with EPIPE,
        // as it does once `head` has its line and exits.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
