//! The built-in steps: each compares what the host has with what is wanted (facts), then
//! acts only if they differ, and reports ok / changed / skipped / failed.  In check mode a
//! step reports what it *would* change (with a diff for rendered files) and runs only
//! read-only commands.

use std::sync::Arc;
use std::time::Duration;

use deploy_wire::{Event, EventKind, StepStatus, Stream};

use super::{EventSink, Plan, Rendered};
use crate::commands::{self as cmd, AppPaths, RemoteCmd};
use crate::inventory::Host;
use crate::playbook::Step;
use crate::render::{diff, redact_env_file};
use crate::ssh::{Connection, Output};

/// What a step reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: StepStatus,
    pub reason: String,
    pub diff: Option<String>,
}

impl Report {
    fn ok(reason: impl Into<String>) -> Report {
        Report { status: StepStatus::Ok, reason: reason.into(), diff: None }
    }
    fn changed(reason: impl Into<String>) -> Report {
        Report { status: StepStatus::Changed, reason: reason.into(), diff: None }
    }
    fn skipped(reason: impl Into<String>) -> Report {
        Report { status: StepStatus::Skipped, reason: reason.into(), diff: None }
    }
    fn failed(reason: impl Into<String>) -> Report {
        Report { status: StepStatus::Failed, reason: reason.into(), diff: None }
    }
    fn with_diff(mut self, diff: Option<String>) -> Report {
        self.diff = diff;
        self
    }
}

/// Everything a step may use on one host, plus what earlier steps changed (which decides
/// whether `restart` and `nginx` must act).
pub struct HostCtx<'a> {
    plan: &'a Plan,
    host: &'a Host,
    rendered: &'a Rendered,
    conn: &'a Connection,
    paths: AppPaths,
    timeout: Duration,
    sink: Arc<dyn EventSink>,
    step: &'static str,
    /// In check mode: the release would be built (so later read-only facts are stale).
    would_build: bool,
    release_changed: bool,
    env_changed: bool,
    supervisor_changed: bool,
}

impl<'a> HostCtx<'a> {
    pub fn new(
        plan: &'a Plan,
        host: &'a Host,
        rendered: &'a Rendered,
        conn: &'a Connection,
        timeout: Duration,
        sink: Arc<dyn EventSink>,
    ) -> Self {
        HostCtx {
            plan,
            host,
            rendered,
            conn,
            paths: AppPaths::new(&plan.app.name),
            timeout,
            sink,
            step: "",
            would_build: false,
            release_changed: false,
            env_changed: false,
            supervisor_changed: false,
        }
    }

    fn check(&self) -> bool {
        self.plan.spec.check
    }
    fn version(&self) -> &str {
        &self.plan.spec.version
    }

    /// Runs a command; output lines become events only when `stream` is set (long
    /// commands such as pip); otherwise they are just returned.
    async fn run(&self, c: &RemoteCmd, stream: bool) -> Result<Output, String> {
        let (sink, host, step) = (self.sink.clone(), self.host.name.clone(), self.step);
        let mut on_line = move |s: Stream, line: &str| {
            if stream {
                sink.emit(Event::now(EventKind::Output {
                    host: host.clone(),
                    step: step.to_string(),
                    stream: s,
                    line: line.to_string(),
                }));
            }
        };
        self.conn.exec(c, self.timeout, &mut on_line).await.map_err(|e| e.to_string())
    }

    /// Runs a command that must succeed; its failure becomes the step's reason.
    async fn must(&self, c: &RemoteCmd, stream: bool, what: &str) -> Result<Output, String> {
        let out = self.run(c, stream).await?;
        if out.ok() { Ok(out) } else { Err(format!("{what} failed (exit {}): {}", out.status, out.tail())) }
    }

    /// Reads a remote file: None if absent.
    async fn read(&self, path: &str) -> Result<Option<String>, String> {
        let out = self.must(&cmd::read_file(path), false, &format!("reading {path}")).await?;
        match out.stdout.split_once('\n') {
            Some(("present", rest)) => Ok(Some(rest.to_string())),
            _ if out.stdout.trim() == "present" => Ok(Some(String::new())),
            _ => Ok(None),
        }
    }
}

/// Runs one step; never panics, never returns an error: failures are reports.
pub async fn run(step: Step, ctx: &mut HostCtx<'_>) -> Report {
    ctx.step = step.name();
    let r = match step {
        Step::Layout => layout(ctx).await,
        Step::Venv => venv(ctx).await,
        Step::Install => install(ctx).await,
        Step::EnvFile => env_file(ctx).await,
        Step::Supervisor => supervisor(ctx).await,
        Step::Switch => switch(ctx).await,
        Step::Restart => restart(ctx).await,
        Step::Nginx => nginx(ctx).await,
        Step::Health => health(ctx).await,
        Step::Prune => prune(ctx).await,
    };
    r.unwrap_or_else(Report::failed)
}

type StepResult = Result<Report, String>;

async fn layout(ctx: &mut HostCtx<'_>) -> StepResult {
    let out = ctx.must(&cmd::layout_check(&ctx.paths, &ctx.host.user), false, "checking the layout").await?;
    if out.stdout.trim() == "yes" {
        return Ok(Report::ok(format!("{} exists", ctx.paths.root)));
    }
    if ctx.check() {
        return Ok(Report::changed(format!("would create {}/{{releases,shared}}", ctx.paths.root)));
    }
    ctx.must(&cmd::layout_create(&ctx.paths, &ctx.host.user), false, "creating the layout").await?;
    Ok(Report::changed(format!("created {}/{{releases,shared}}", ctx.paths.root)))
}

async fn release_state(ctx: &HostCtx<'_>) -> Result<String, String> {
    let out = ctx.must(&cmd::release_state(&ctx.paths, ctx.version()), false, "checking the release").await?;
    Ok(out.stdout.trim().to_string())
}

async fn venv(ctx: &mut HostCtx<'_>) -> StepResult {
    let state = release_state(ctx).await?;
    let dir = ctx.paths.release(ctx.version());
    if state == "complete" {
        return Ok(Report::ok(format!("release {} is complete", ctx.version())));
    }
    let verb = if state == "partial" { "rebuild the unfinished" } else { "create the" };
    if ctx.check() {
        ctx.would_build = true;
        return Ok(Report::changed(format!("would {verb} virtualenv {dir}")));
    }
    let out = ctx.must(&cmd::venv_create(&ctx.paths, ctx.version()), true, "python3 -m venv").await?;
    if out.stdout.trim() == "already-complete" {
        return Ok(Report::ok(format!("release {} was completed by an earlier build", ctx.version())));
    }
    let done = if state == "partial" { "rebuilt the unfinished" } else { "created the" };
    Ok(Report::changed(format!("{done} virtualenv {dir}")))
}

async fn install(ctx: &mut HostCtx<'_>) -> StepResult {
    let app = &ctx.plan.app;
    let req = format!("{}=={}", app.package, ctx.version());
    if ctx.would_build {
        return Ok(Report::changed(format!("would install {req} from {}", app.index_url)));
    }
    match release_state(ctx).await?.as_str() {
        "complete" => return Ok(Report::ok(format!("{req} is installed"))),
        "absent" => return Err(format!("release directory {} does not exist (run the venv step first)", ctx.paths.release(ctx.version()))),
        _ => {}
    }
    if ctx.check() {
        return Ok(Report::changed(format!("would install {req} from {}", app.index_url)));
    }
    ctx.must(&cmd::pip_install(&ctx.paths, &app.index_url, &app.package, ctx.version()), true, "pip install").await?;
    Ok(Report::changed(format!("installed {req}")))
}

async fn env_file(ctx: &mut HostCtx<'_>) -> StepResult {
    let path = ctx.paths.env_file();
    let want = &ctx.rendered.env_file;
    let have = ctx.read(&path).await?;
    if have.as_deref() == Some(want.as_str()) {
        return Ok(Report::ok(format!("{path} is up to date")));
    }
    // Values may be secrets: the diff shows names only.
    let d = diff(&path, have.as_deref().map(redact_env_file).as_deref(), &redact_env_file(want));
    ctx.env_changed = true;
    if ctx.check() {
        return Ok(Report::changed(format!("would write {path}")).with_diff(d));
    }
    ctx.must(&cmd::write_file(&path, "0640", false, want.clone().into_bytes()), false, "writing the env file").await?;
    Ok(Report::changed(format!("wrote {path}")).with_diff(d))
}

async fn supervisor(ctx: &mut HostCtx<'_>) -> StepResult {
    let path = ctx.paths.supervisor_conf();
    let want = &ctx.rendered.supervisor;
    let have = ctx.read(&path).await?;
    let Some(d) = diff(&path, have.as_deref(), want) else {
        return Ok(Report::ok(format!("{path} is up to date")));
    };
    ctx.supervisor_changed = true;
    if ctx.check() {
        return Ok(Report::changed(format!("would write {path}")).with_diff(Some(d)));
    }
    ctx.must(&cmd::write_file(&path, "0644", true, want.clone().into_bytes()), false, "writing the supervisor config").await?;
    Ok(Report::changed(format!("wrote {path}")).with_diff(Some(d)))
}

async fn switch(ctx: &mut HostCtx<'_>) -> StepResult {
    let want = format!("releases/{}", ctx.version());
    let out = ctx.must(&cmd::read_current(&ctx.paths), false, "reading current").await?;
    let have = out.stdout.trim().to_string();
    if have == want || have == ctx.paths.release(ctx.version()) {
        return Ok(Report::ok(format!("current -> {want}")));
    }
    ctx.release_changed = true;
    let from = if have.is_empty() { "(none)".to_string() } else { have.clone() };
    let d = Some(format!("-current -> {from}\n+current -> {want}\n"));
    if ctx.check() {
        return Ok(Report::changed(format!("would switch current from {from} to {want}")).with_diff(d));
    }
    ctx.must(&cmd::switch_current(&ctx.paths, ctx.version()), false, "switching current").await?;
    Ok(Report::changed(format!("switched current from {from} to {want}")).with_diff(d))
}

/// Parses `supervisorctl status` output: Some(pid) when RUNNING.
pub fn running_pid(status_line: &str) -> Option<u32> {
    let mut words = status_line.split_whitespace();
    let _name = words.next()?;
    if words.next()? != "RUNNING" {
        return None;
    }
    if words.next()? != "pid" {
        return None;
    }
    words.next()?.trim_end_matches(',').parse().ok()
}

async fn restart(ctx: &mut HostCtx<'_>) -> StepResult {
    let program = ctx.paths.program();
    let status = ctx.run(&cmd::supervisor_status(&ctx.paths), false).await?;
    let pid = running_pid(status.stdout.trim());
    let why = if ctx.supervisor_changed {
        Some("its supervisor config changed")
    } else if ctx.release_changed {
        Some("the release changed")
    } else if ctx.env_changed {
        Some("its environment changed")
    } else if pid.is_none() {
        Some("it was not running")
    } else {
        None
    };
    let Some(why) = why else {
        return Ok(Report::ok(format!("{program} running (pid {}); nothing it depends on changed", pid.unwrap_or(0))));
    };
    if ctx.check() {
        return Ok(Report::changed(format!("would restart {program}: {why}")));
    }
    if ctx.supervisor_changed {
        ctx.must(&cmd::supervisor_update(&ctx.paths), false, "supervisorctl update").await?;
        // `update` restarts a changed program; a new release under an unchanged name
        // still needs an explicit restart if update did not touch it.
        let after = ctx.run(&cmd::supervisor_status(&ctx.paths), false).await?;
        if pid.is_some() && running_pid(after.stdout.trim()) == pid {
            ctx.must(&cmd::supervisor_restart(&ctx.paths), false, "supervisorctl restart").await?;
        }
    } else {
        ctx.must(&cmd::supervisor_restart(&ctx.paths), false, "supervisorctl restart").await?;
    }
    // supervisord reports RUNNING after `startsecs`; wait for it (bounded).
    for _ in 0..40 {
        let s = ctx.run(&cmd::supervisor_status(&ctx.paths), false).await?;
        if let Some(new_pid) = running_pid(s.stdout.trim()) {
            return Ok(Report::changed(format!("restarted {program} (pid {new_pid}): {why}")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let s = ctx.run(&cmd::supervisor_status(&ctx.paths), false).await?;
    Err(format!("{program} is not running after restart: {}", s.stdout.trim()))
}

async fn nginx(ctx: &mut HostCtx<'_>) -> StepResult {
    let path = ctx.paths.nginx_conf();
    let want = &ctx.rendered.nginx;
    let have = ctx.read(&path).await?;
    let Some(d) = diff(&path, have.as_deref(), want) else {
        return Ok(Report::ok(format!("{path} is up to date")));
    };
    if ctx.check() {
        return Ok(Report::changed(format!("would write {path} and reload nginx")).with_diff(Some(d)));
    }
    ctx.must(&cmd::nginx_install_validated(&path, want.clone().into_bytes()), false, "installing the nginx site (nginx -t)").await?;
    ctx.must(&cmd::nginx_reload(), false, "nginx reload").await?;
    Ok(Report::changed(format!("wrote {path}; nginx -t passed; reloaded")).with_diff(Some(d)))
}

async fn health(ctx: &mut HostCtx<'_>) -> StepResult {
    if ctx.check() {
        return Ok(Report::skipped("check mode: nothing was started"));
    }
    let h = &ctx.plan.app.health;
    let server_name = ctx.plan.app.server_names[0].trim_start_matches("*.").to_string();
    let probe = cmd::health_probe(&server_name, &h.path, h.timeout_secs);
    let mut last = String::new();
    for attempt in 1..=h.retries {
        let out = ctx.run(&probe, false).await?;
        let code = out.stdout.trim();
        if code == h.expect_status.to_string() {
            return Ok(Report::ok(format!("GET {} answered {code} (attempt {attempt})", h.path)));
        }
        last = if code == "000" || code.is_empty() {
            format!("no answer within {}s", h.timeout_secs)
        } else {
            format!("answered {code}, expected {}", h.expect_status)
        };
        tokio::time::sleep(Duration::from_millis(h.interval_ms as u64)).await;
    }
    Err(format!("health check GET {} (Host: {server_name}) through nginx: {last} after {} attempts", h.path, h.retries))
}

/// Which releases to remove: keep `keep` complete releases (the live one always among
/// them, then the newest), remove the rest and any unfinished build except `building`.
pub fn prune_plan(listing: &str, current: &str, keep: usize, building: &str) -> Vec<String> {
    let mut complete = Vec::new();
    let mut remove = Vec::new();
    for line in listing.lines() {
        let mut w = line.split_whitespace();
        let (Some(_mtime), Some(name), Some(state)) = (w.next(), w.next(), w.next()) else { continue };
        match state {
            "complete" => complete.push(name.to_string()),
            _ if name != building => remove.push(name.to_string()),
            _ => {}
        }
    }
    // `complete` is oldest first; keep current, then the newest others.
    let mut kept: Vec<&String> = complete.iter().filter(|n| *n == current).collect();
    for n in complete.iter().rev() {
        if kept.len() >= keep {
            break;
        }
        if n != current {
            kept.push(n);
        }
    }
    remove.extend(complete.iter().filter(|n| !kept.contains(n)).cloned());
    remove.sort();
    remove
}

async fn prune(ctx: &mut HostCtx<'_>) -> StepResult {
    let listing = ctx.must(&cmd::list_releases(&ctx.paths), false, "listing releases").await?;
    let cur = ctx.must(&cmd::read_current(&ctx.paths), false, "reading current").await?;
    let current = cur.stdout.trim().trim_start_matches("releases/").rsplit('/').next().unwrap_or("").to_string();
    let keep = ctx.plan.app.keep_releases as usize;
    let remove = prune_plan(&listing.stdout, &current, keep, ctx.version());
    if remove.is_empty() {
        return Ok(Report::ok(format!("at most {keep} releases kept")));
    }
    if ctx.check() {
        return Ok(Report::changed(format!("would remove releases {}", remove.join(", "))));
    }
    ctx.must(&cmd::remove_releases(&ctx.paths, &remove), false, "removing old releases").await?;
    Ok(Report::changed(format!("removed releases {}", remove.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supervisor_status() {
        assert_eq!(running_pid("hello                            RUNNING   pid 42, uptime 0:00:05"), Some(42));
        assert_eq!(running_pid("hello                            STOPPED   Nov 25 05:00 AM"), None);
        assert_eq!(running_pid("hello: ERROR (no such process)"), None);
        assert_eq!(running_pid(""), None);
    }

    #[test]
    fn prune_keeps_the_live_and_newest_complete_releases() {
        let listing = "1 0.9 complete\n2 1.0 complete\n3 1.1 partial\n4 1.2 complete\n5 1.3 complete\n";
        // live is the newest: keep 1.3 and 1.2
        assert_eq!(prune_plan(listing, "1.3", 2, "1.3"), ["0.9", "1.0", "1.1"]);
        // live was rolled back to 1.0: keep it and the newest other
        assert_eq!(prune_plan(listing, "1.0", 2, "1.0"), ["0.9", "1.1", "1.2"]);
        // an unfinished build of the release being deployed is left alone
        assert_eq!(prune_plan(listing, "1.3", 2, "1.1"), ["0.9", "1.0"]);
        assert_eq!(prune_plan(listing, "1.3", 10, "1.3"), ["1.1"]);
    }
}
