//! `deploy`: the command users install.  It talks HTTP to the gateway only and never
//! links SSH code (tests/boundaries.rs checks its dependency graph).  This first version
//! knows its own version; the gateway commands (login, release, status, logs...) arrive
//! with the gateway API.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "deploy",
    version,
    about = "Ship Python web applications through the deploy gateway",
    long_about = "Ship Python web applications through the deploy gateway.\n\n\
                  The gateway API and the commands that use it (login, apps, release, status, logs) \
                  are not built yet; on the bastion, `deploy-gateway apply` runs the engine directly."
)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("deploy: no gateway commands yet; see `deploy --help`");
    std::process::exit(2);
}
