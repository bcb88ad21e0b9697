//! The process-manager seam: what keeps an application's slots running on a server
//! (supervisord today; systemd is one more file beside it).
//!
//! A process manager *generates* and never executes: it names a slot's program and its
//! config file, says which template renders that file, builds the remote commands that
//! start, stop and query a program, and parses their output.  The engine runs the
//! commands.  Adding one is adding a file here and a variant to [`Kind`].

pub mod supervisord;

use std::sync::Arc;

pub use supervisord::Supervisord;

use crate::commands::RemoteCmd;

/// The process managers an application may name: the inventory's value
/// ([`crate::inventory::ProcessManagerKind`]; the inventory does not depend on this seam).
pub use crate::inventory::ProcessManagerKind as Kind;

/// One backend role: keeps programs running.  Pure: every method builds data.
pub trait ProcessManager: Send + Sync + std::fmt::Debug {
    /// Its name in messages (`supervisord`).
    fn name(&self) -> &'static str;
    /// The template (in `templates/`) that renders one slot's program file.
    fn template(&self) -> &'static str;
    /// The program that runs `slot` (`blue`/`green`) of `app`.
    fn program(&self, app: &str, slot: &str) -> String;
    /// Where the program's config file lives on the server.
    fn conf_path(&self, app: &str, slot: &str) -> String;
    /// The log files of a program: a slot's one (`copies` None), or one per copy of a
    /// process that runs `copies` copies, first copy first.  `program` is what
    /// [`Self::program`] gives (`<app>-<slot>`, `<app>-<process>`).
    fn log_files(&self, program: &str, copies: Option<u32>) -> Vec<String>;
    /// The pid of a running program from its part of [`Self::status_all`]'s text
    /// ([`Self::status_of`]).
    fn pid(&self, status_output: &str) -> Option<u32>;
    /// Loads the program's current config and (re)starts it.
    fn start_fresh(&self, program: &str) -> RemoteCmd;
    /// Stops the program gracefully; never fails if it is not running.
    fn stop(&self, program: &str) -> RemoteCmd;
    /// The template (in `templates/`) that renders a process's program file (`count`
    /// copies of one command).
    fn process_template(&self) -> &'static str;
    /// Prints the state of every copy of a process's program; never fails.
    fn group_status(&self, program: &str) -> RemoteCmd;
    /// Prints the state of every program on the host, in one command (one look at the
    /// process manager per snapshot, however many programs the app has); never fails.
    fn status_all(&self) -> RemoteCmd;
    /// The part of [`Self::status_all`]'s text about `program` (and its copies), as
    /// [`Self::status`] or [`Self::group_status`] would print it.
    fn status_of(&self, all: &str, program: &str) -> String;
    /// How many copies run, from the output of [`Self::group_status`].
    fn running_copies(&self, status_output: &str) -> u32;
    /// Each copy's name and pid (None: not running), from [`Self::group_status`].
    fn copies(&self, status_output: &str) -> Vec<(String, Option<u32>)>;
    /// Loads the process's current program file: copies whose config changed are
    /// stopped gracefully and started anew; all copies run afterwards.
    fn apply(&self, program: &str) -> RemoteCmd;
    /// Restarts every copy gracefully (TERM, wait, start).
    fn restart_all(&self, program: &str) -> RemoteCmd;
}

/// The only `match` on the kind: configuration to implementation.
pub fn for_kind(kind: Kind) -> Arc<dyn ProcessManager> {
    match kind {
        Kind::Supervisord => Arc::new(Supervisord),
    }
}
