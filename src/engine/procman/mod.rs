//! The process-manager seam: what keeps an application's slots and processes running on
//! a server (supervisord today; systemd would be one more file beside it, and its
//! templates).
//!
//! A process manager *generates* and never executes: it names a slot's program and its
//! config file, says which templates render those files, quotes the command a program
//! runs into them, builds the remote commands that start, stop and query a program, and
//! parses their answer into [`ProgramStatus`].  The engine runs the commands.  Adding
//! one is adding a file here and a variant to [`Kind`].

pub mod supervisord;

use std::sync::Arc;

pub use supervisord::Supervisord;

use crate::commands::RemoteCmd;

/// The process managers an application may name: the inventory's value
/// ([`crate::inventory::ProcessManagerKind`]; the inventory does not depend on this seam).
pub use crate::inventory::ProcessManagerKind as Kind;

/// One backend role: keeps programs running.  Pure: every method builds or parses data.
pub trait ProcessManager: Send + Sync + std::fmt::Debug {
    /// Its name in messages (`supervisord`).
    fn name(&self) -> &'static str;
    /// The template (in `templates/`) that renders one slot's program file.
    fn template(&self) -> &'static str;
    /// The template (in `templates/`) that renders a process's program file (`count`
    /// copies of one command).
    fn process_template(&self) -> &'static str;
    /// The program that runs `slot` of `app`: a slot (`blue`/`green`) or one of its
    /// processes (`worker`).
    fn program(&self, app: &str, slot: &str) -> String;
    /// Where that program's config file lives on the server.
    fn conf_path(&self, app: &str, slot: &str) -> String;
    /// The log files of a program in `log_dir` (the app's, [`crate::commands::AppPaths::logs`],
    /// where its templates send output): a slot's one (`copies` None), or one per copy of
    /// a process that runs `copies` copies, first copy first.  `program` is what
    /// [`Self::program`] gives (`<app>-<slot>`, `<app>-<process>`).
    fn log_files(&self, log_dir: &str, program: &str, copies: Option<u32>) -> Vec<String>;
    /// The command a program file runs (the templates' `slot.command` and
    /// `process.command`): `script`, a POSIX shell script, run by `/bin/sh -c`, quoted
    /// by this process manager's rules for its file.
    fn command_line(&self, script: &str) -> String;
    /// Loads the program's current config and (re)starts it.
    fn start_fresh(&self, program: &str) -> RemoteCmd;
    /// Stops the program gracefully; never fails if it is not running.
    fn stop(&self, program: &str) -> RemoteCmd;
    /// Whether a slot's `program` starts when the host boots (`on`: the live slot) or
    /// not (every other slot), without touching it now: the running program and the
    /// process manager's loaded config are left as they are, only the next boot reads
    /// it.  Never fails for a program that has no file yet.  The engine calls it where
    /// traffic moves (`switch`, and the health check's switch back), so after a
    /// reboot only the live slot comes back.
    fn at_boot(&self, program: &str, on: bool) -> RemoteCmd;
    /// A slot's program file as read from the host, with what [`Self::at_boot`] changes
    /// in it put back as the template renders it, so that a slot whose boot flag was
    /// set still counts as unchanged (supervisord's `autostart=`; the default: as is).
    fn slot_file_as_rendered(&self, file: String) -> String {
        file
    }
    /// Loads the process's current program file: copies whose config changed are
    /// stopped gracefully and started anew; all copies run afterwards.
    fn apply(&self, program: &str) -> RemoteCmd;
    /// Restarts every copy gracefully (TERM, wait, start).
    fn restart_all(&self, program: &str) -> RemoteCmd;
    /// Watches the copies of a process's `program` that were just (re)started until none
    /// is still starting (a copy counts as running once it stayed up the settle time,
    /// the program file's own measure), waiting at most `limit_secs`; exits 0 when every
    /// copy runs, else prints each copy that does not with its state and the last lines
    /// of `logs` (its log files) and exits 1.
    fn watch(&self, program: &str, logs: &[String], limit_secs: u32) -> RemoteCmd;
    /// Prints the programs whose files say they belong to `app` (deploy's header), one a
    /// line: slots, processes, and processes the inventory no longer names.
    fn app_programs(&self, app: &str) -> RemoteCmd;
    /// The program names in the output of [`Self::app_programs`].
    fn parse_app_programs(&self, output: &str) -> Vec<String>;
    /// Stops every copy of `program` and removes it and its file from the process
    /// manager (a process the inventory no longer names).  Idempotent.
    fn remove(&self, program: &str) -> RemoteCmd;
    /// Waits, at most `limit_secs`, while any of `programs` is still starting (brought
    /// up by a boot or a start and not yet up for its settle time); prints nothing and
    /// never fails.  Read-only: `status --live` asks it before it looks, so that a host
    /// that just booted is described once its slots settled rather than while they
    /// come up.  The default waits for nothing.
    fn settled(&self, programs: &[String], limit_secs: u32) -> RemoteCmd {
        let _ = (programs, limit_secs);
        RemoteCmd::new("true")
    }
    /// Prints the state of every program on the host, in one command (one look at the
    /// process manager per snapshot, however many programs the app has); never fails.
    fn status_all(&self) -> RemoteCmd;
    /// Every program (or copy of one) that the output of [`Self::status_all`]
    /// describes, in its order.  What describes none (an error
    /// about a program that does not exist, a process manager that is down) is left out.
    fn parse_status(&self, output: &str) -> Vec<ProgramStatus>;
}

/// The state of one program, or of one copy of a process's program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStatus {
    /// The program, as [`ProcessManager::program`] names it (`hello-blue`,
    /// `hello-worker`).
    pub program: String,
    /// The copy's own name when the program runs copies (`hello-worker-0`).
    pub copy: Option<String>,
    pub state: ProgramState,
    /// Its pid while it runs.
    pub pid: Option<u32>,
}

impl ProgramStatus {
    /// The copy's name, else the program's.
    pub fn name(&self) -> &str {
        self.copy.as_deref().unwrap_or(&self.program)
    }

    pub fn running(&self) -> bool {
        self.state == ProgramState::Running
    }
}

/// Where a program is in its life, in the process manager's own terms mapped onto one
/// vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramState {
    Starting,
    Running,
    /// Failed to start and is being retried.
    Backoff,
    Stopping,
    /// Stopped on request (or never started).
    Stopped,
    /// Ended by itself.
    Exited,
    /// Failed to start and given up on.
    Fatal,
    /// Any other state, as the process manager names it.
    Unknown(String),
}

/// The statuses of `program` (itself, or each of its copies) among `all`.
pub fn status_of<'a>(
    all: &'a [ProgramStatus],
    program: &'a str,
) -> impl Iterator<Item = &'a ProgramStatus> + 'a {
    all.iter().filter(move |s| s.program == program)
}

/// The only `match` on the kind: configuration to implementation.
pub fn for_kind(kind: Kind) -> Arc<dyn ProcessManager> {
    match kind {
        Kind::Supervisord => Arc::new(Supervisord),
    }
}
