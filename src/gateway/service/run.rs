//! `run`: a one-off command as the application's user in the live release's environment
//! on one host (default: the environment's first host by name), as a job: locked like a
//! deploy, audited with its command line, its output stored as events
//! ([`crate::engine::oneoff`]).
//!
//! Who may: a token that may act on the environment *and* has the `run` right (admins
//! always); each refusal is one audit row.  The command is the user's argv, each word
//! quoted on its own ([`crate::shell::join`]): nothing is pasted into a command line.

use deploy_wire::api::{JobInfo, JobKind, JobState, RunRequest};

use super::status::record;
use super::{JobService, Result, ServiceError};
use crate::engine::oneoff::OneOff;
use crate::gateway::auth::Principal;
use crate::gateway::jobs::new_job_id;
use crate::gateway::store::{LockHolder, now_ms};
use crate::inventory::Host;

/// The longest command line accepted (its words quoted).
const MAX_COMMAND: usize = 16 * 1024;
/// How much of the command line an audit row keeps.
const AUDIT_CHARS: usize = 200;

/// The command line of `argv`, or why it cannot be run.
pub fn command_line(argv: &[String]) -> Result<String> {
    if argv.is_empty() || argv[0].is_empty() {
        return Err(ServiceError::Invalid(
            "no command given: `deploy run APP -e ENV -- COMMAND [ARGS...]`".into(),
        ));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(ServiceError::Invalid(
            "the command has a NUL byte, which no shell can pass on".into(),
        ));
    }
    let line = crate::shell::join(argv);
    if line.len() > MAX_COMMAND {
        return Err(ServiceError::Invalid(format!(
            "the command is {} bytes long (at most {MAX_COMMAND})",
            line.len()
        )));
    }
    Ok(line)
}

/// The host asked for, or the environment's first by name; unknown: the known ones.
fn pick<'a>(hosts: &[&'a Host], wanted: Option<&str>, env: &str) -> Result<&'a Host> {
    let found = match wanted {
        Some(w) => hosts.iter().find(|h| h.name == w),
        None => hosts.first(),
    };
    found.copied().ok_or_else(|| {
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        ServiceError::NotFound(format!(
            "environment {env} has no host {}; its hosts: {}",
            wanted.unwrap_or("at all"),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    })
}

/// What an audit row says of a command line: its start.
fn shown(line: &str) -> String {
    match line.char_indices().nth(AUDIT_CHARS) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

impl JobService {
    /// Starts a one-off command job.
    pub async fn run_command(&self, p: &Principal, req: RunRequest) -> Result<JobInfo> {
        let line = command_line(&req.command)?;
        let on = req.host.as_deref().unwrap_or("its first host");
        let asked = format!("{}/{} on {on}: {}", req.app, req.env, shown(&line));
        self.env_to_act_on(p, "run", &req.app, &req.env, &asked)
            .await?;
        self.may_run(p, &asked).await?;
        let inv = self.jobs.inventory()?;
        let app = inv
            .app(&req.app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        let (env, hosts) = inv.hosts_for(app, &req.env)?;
        let host = pick(&hosts, req.host.as_deref(), &req.env)?;
        let recorded = self.recorded(&req.app, &req.env, &host.name).await?;
        let job = JobInfo {
            id: new_job_id(),
            kind: JobKind::Run,
            app: req.app.clone(),
            env: req.env.clone(),
            version: recorded.clone(),
            check: false,
            user: p.user.clone(),
            state: JobState::Running,
            created_ms: now_ms(),
            finished_ms: None,
            error: None,
            triggered_by: None,
        };
        let cfg = self.jobs.engine_config()?;
        let target = format!("{}/{} on {}: {}", job.app, job.env, host.name, shown(&line));
        let claim = match self.jobs.lock(&job).await? {
            Ok(claim) => claim,
            Err(LockHolder { holder, job_id }) => {
                self.audit(&p.user, "run", &target, "refused: locked").await;
                let target = format!("{}/{}", job.app, job.env);
                return Err(ServiceError::Locked {
                    target,
                    holder,
                    job_id,
                });
            }
        };
        let accepted = format!("{target} ({})", job.id);
        self.audit(&p.user, "run", &accepted, "accepted").await;
        let o = OneOff {
            app: app.clone(),
            env: env.clone(),
            host: host.clone(),
            command: line,
            recorded,
        };
        self.jobs.spawn_oneoff(job.clone(), o, cfg, claim);
        Ok(job)
    }

    /// What the gateway's record says `host` serves (`-` if nothing).
    async fn recorded(&self, app: &str, env: &str, host: &str) -> Result<String> {
        let (a, e, h) = (app.to_string(), env.to_string(), host.to_string());
        let rec = self.db().call(move |s| record(s, &a, &e, &h)).await?;
        Ok(rec.version.unwrap_or_else(|| "-".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_command_is_its_words_quoted_and_never_empty_or_nul() {
        let line = command_line(&argv(&["sh", "-c", "echo out; exit 3"])).unwrap();
        assert_eq!(line, "sh -c 'echo out; exit 3'");
        assert!(command_line(&[]).is_err());
        assert!(command_line(&argv(&[""])).is_err());
        assert!(command_line(&argv(&["echo", "a\0b"])).is_err());
        assert!(command_line(&argv(&["echo", &"x".repeat(MAX_COMMAND)])).is_err());
        let long = "é".repeat(300);
        assert_eq!(shown(&long).chars().count(), AUDIT_CHARS + 3);
    }
}
