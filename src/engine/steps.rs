//! The built-in steps: each compares what the host has with what is wanted (facts), then
//! acts only if they differ, and reports ok / changed / skipped / failed.  In check mode a
//! step reports what it *would* change (with a diff for rendered files) and runs only
//! read-only commands.

use std::sync::Arc;
use std::time::Duration;

use deploy_wire::{Event, EventKind, StepStatus, Stream};

use super::{EventSink, IndexAccess, Plan, Rendered, UvTool};
use crate::commands::{self as cmd, AppPaths, RemoteCmd, Tool};
use crate::inventory::{Host, Installer};
use crate::playbook::Step;
use crate::render::{SLOTS, diff, redact_env_file};
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
        Report {
            status: StepStatus::Ok,
            reason: reason.into(),
            diff: None,
        }
    }
    fn changed(reason: impl Into<String>) -> Report {
        Report {
            status: StepStatus::Changed,
            reason: reason.into(),
            diff: None,
        }
    }
    fn skipped(reason: impl Into<String>) -> Report {
        Report {
            status: StepStatus::Skipped,
            reason: reason.into(),
            diff: None,
        }
    }
    fn failed(reason: impl Into<String>) -> Report {
        Report {
            status: StepStatus::Failed,
            reason: reason.into(),
            diff: None,
        }
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
    env_changed: bool,
    /// The slot that runs (or will run) the release, once `start` decided.
    target: Option<usize>,
    /// The slot that was live before, if this job moves traffic away from it.
    pub old_slot: Option<usize>,
    /// The release that was live before this job (for a rollback).
    pub previous: Option<String>,
    /// The uv binary the engine may ship (None: pip only).
    uv: Option<UvTool>,
    /// The installer the `venv` step chose (uv, or pip as the fallback).
    tool: Option<Tool>,
    /// Secrets that must never leave in an event (scrubbed from all output).
    secrets: Vec<String>,
}

impl<'a> HostCtx<'a> {
    pub fn new(
        plan: &'a Plan,
        host: &'a Host,
        rendered: &'a Rendered,
        conn: &'a Connection,
        timeout: Duration,
        sink: Arc<dyn EventSink>,
        uv: Option<UvTool>,
    ) -> Self {
        let secrets = plan
            .index
            .secrets()
            .into_iter()
            .map(|s| s.expose().to_string())
            .filter(|s| s.len() >= 4)
            .collect();
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
            env_changed: false,
            target: None,
            old_slot: None,
            previous: None,
            uv,
            tool: None,
            secrets,
        }
    }

    /// Replaces every secret in `text` with `***`.
    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
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
        let secrets = self.secrets.clone();
        let mut on_line = move |s: Stream, line: &str| {
            if stream {
                sink.emit(Event::now(EventKind::Output {
                    host: host.clone(),
                    step: step.to_string(),
                    stream: s,
                    line: scrub(line, &secrets),
                }));
            }
        };
        let mut out = self
            .conn
            .exec(c, self.timeout, &mut on_line)
            .await
            .map_err(|e| self.scrub(&e.to_string()))?;
        if !self.secrets.is_empty() {
            out.stdout = self.scrub(&out.stdout);
            out.stderr = self.scrub(&out.stderr);
        }
        Ok(out)
    }

    /// Runs a command that must succeed; its failure becomes the step's reason.
    async fn must(&self, c: &RemoteCmd, stream: bool, what: &str) -> Result<Output, String> {
        let out = self.run(c, stream).await?;
        if out.ok() {
            Ok(out)
        } else {
            Err(format!(
                "{what} failed (exit {}): {}",
                out.status,
                out.tail()
            ))
        }
    }

    /// Reads a remote file: None if absent.
    async fn read(&self, path: &str) -> Result<Option<String>, String> {
        let out = self
            .must(&cmd::read_file(path), false, &format!("reading {path}"))
            .await?;
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
        Step::Start => start(ctx).await,
        Step::Switch => switch(ctx).await,
        Step::Health => health(ctx).await,
        Step::Drain => drain(ctx).await,
        Step::Prune => prune(ctx).await,
    };
    r.unwrap_or_else(Report::failed)
}

type StepResult = Result<Report, String>;

async fn layout(ctx: &mut HostCtx<'_>) -> StepResult {
    let out = ctx
        .must(
            &cmd::layout_check(&ctx.paths, &ctx.host.user),
            false,
            "checking the layout",
        )
        .await?;
    if out.stdout.trim() == "yes" {
        return Ok(Report::ok(format!("{} exists", ctx.paths.root)));
    }
    if ctx.check() {
        return Ok(Report::changed(format!(
            "would create {}/{{releases,shared}}",
            ctx.paths.root
        )));
    }
    ctx.must(
        &cmd::layout_create(&ctx.paths, &ctx.host.user),
        false,
        "creating the layout",
    )
    .await?;
    Ok(Report::changed(format!(
        "created {}/{{releases,shared}}",
        ctx.paths.root
    )))
}

async fn release_state(ctx: &HostCtx<'_>) -> Result<String, String> {
    let out = ctx
        .must(
            &cmd::release_state(&ctx.paths, ctx.version()),
            false,
            "checking the release",
        )
        .await?;
    Ok(out.stdout.trim().to_string())
}

async fn venv(ctx: &mut HostCtx<'_>) -> StepResult {
    let state = release_state(ctx).await?;
    let dir = ctx.paths.release(ctx.version());
    if state == "complete" {
        return Ok(Report::ok(format!("release {} is complete", ctx.version())));
    }
    let verb = if state == "partial" {
        "rebuild the unfinished"
    } else {
        "create the"
    };
    let (tool, note) = choose_tool(ctx).await?;
    let how = match &tool {
        Tool::Pip => "python3 -m venv",
        Tool::Uv { .. } => "uv venv",
    };
    ctx.tool = Some(tool.clone());
    if ctx.check() {
        ctx.would_build = true;
        return Ok(Report::changed(format!(
            "would {verb} virtualenv {dir} ({how}{note})"
        )));
    }
    let out = ctx
        .must(
            &cmd::venv_create(&ctx.paths, ctx.version(), &tool),
            true,
            how,
        )
        .await?;
    if out.stdout.trim() == "already-complete" {
        return Ok(Report::ok(format!(
            "release {} was completed by an earlier build",
            ctx.version()
        )));
    }
    let done = if state == "partial" {
        "rebuilt the unfinished"
    } else {
        "created the"
    };
    Ok(Report::changed(format!(
        "{done} virtualenv {dir} ({how}{note})"
    )))
}

/// uv when the application asks for it and the engine has a binary the server can run
/// (shipped once, kept under its checksum); pip otherwise.  The note says why, or what
/// was shipped.
async fn choose_tool(ctx: &HostCtx<'_>) -> Result<(Tool, String), String> {
    if ctx.plan.app.installer != Installer::Uv {
        return Ok((Tool::Pip, String::new()));
    }
    let Some(uv) = ctx.uv.clone() else {
        return Ok((
            Tool::Pip,
            "; uv asked for, but the gateway has no uv binary configured: pip instead".into(),
        ));
    };
    let tool = Tool::Uv {
        sha256: uv.sha256.clone(),
    };
    let probe = ctx
        .must(&cmd::uv_probe(&uv.sha256), false, "checking for uv")
        .await?;
    let probe = probe.stdout.trim();
    if probe == "present" {
        return Ok((tool, String::new()));
    }
    if let Some(arch) = probe.strip_prefix("unsupported ") {
        return Ok((
            Tool::Pip,
            format!("; uv unavailable on {arch}: pip instead"),
        ));
    }
    if ctx.check() {
        return Ok((tool, format!("; would ship uv {}", &uv.sha256[..12])));
    }
    let up = ctx
        .run(&cmd::uv_upload(&uv.sha256, uv.bytes.to_vec()), false)
        .await?;
    if !up.ok() {
        return Ok((
            Tool::Pip,
            format!("; shipping uv failed ({}): pip instead", up.tail()),
        ));
    }
    Ok((
        tool,
        format!(
            "; shipped {} ({} MB, sha256 {})",
            up.stdout
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            uv.bytes.len() / 1_000_000,
            &uv.sha256[..12]
        ),
    ))
}

async fn install(ctx: &mut HostCtx<'_>) -> StepResult {
    let app = &ctx.plan.app;
    let req = format!("{}=={}", app.package, ctx.version());
    let from = ctx.plan.index.describe();
    if ctx.plan.spec.no_install && (ctx.would_build || release_state(ctx).await? != "complete") {
        return Err(format!(
            "release {} is not complete on this host; a rollback installs nothing",
            ctx.version()
        ));
    }
    if ctx.would_build {
        return Ok(Report::changed(format!("would install {req} from {from}")));
    }
    match release_state(ctx).await?.as_str() {
        "complete" => return Ok(Report::ok(format!("{req} is installed"))),
        "absent" => {
            return Err(format!(
                "release directory {} does not exist (run the venv step first)",
                ctx.paths.release(ctx.version())
            ));
        }
        _ => {}
    }
    if ctx.check() {
        return Ok(Report::changed(format!("would install {req} from {from}")));
    }
    // A partial release whose venv step ran in an earlier job: pip (a uv venv is
    // rebuilt by the venv step, which always runs first in a playbook).
    let tool = ctx.tool.clone().unwrap_or(Tool::Pip);
    let what = match tool {
        Tool::Pip => "pip install",
        Tool::Uv { .. } => "uv pip install",
    };
    // With the relay, the server's index is a remote forward open for this install only.
    let (index, forward) = match ctx.plan.index.clone() {
        IndexAccess::Direct(index) => (index, None),
        IndexAccess::Relay(relay) => {
            let port = ctx
                .conn
                .remote_forward(relay.acceptor(&ctx.host.name))
                .await
                .map_err(|e| e.to_string())?;
            let url = format!("http://127.0.0.1:{port}{}", relay.index_path());
            (
                crate::artifacts::ServerIndex {
                    url,
                    credentials: None,
                },
                Some(port),
            )
        }
    };
    let c = cmd::install(&ctx.paths, &tool, &index, &app.package, ctx.version());
    let r = ctx.must(&c, true, what).await;
    if let Some(port) = forward {
        ctx.conn.cancel_remote_forward(port).await;
    }
    r?;
    Ok(Report::changed(format!(
        "installed {req} from {from} ({what})"
    )))
}

async fn env_file(ctx: &mut HostCtx<'_>) -> StepResult {
    let path = ctx.paths.env_file();
    let want = &ctx.rendered.env_file;
    let have = ctx.read(&path).await?;
    if have.as_deref() == Some(want.as_str()) {
        return Ok(Report::ok(format!("{path} is up to date")));
    }
    // Values may be secrets: the diff shows names only.
    let d = diff(
        &path,
        have.as_deref().map(redact_env_file).as_deref(),
        &redact_env_file(want),
    );
    ctx.env_changed = true;
    if ctx.check() {
        return Ok(Report::changed(format!("would write {path}")).with_diff(d));
    }
    ctx.must(
        &cmd::write_file(&path, "0640", false, want.clone().into_bytes()),
        false,
        "writing the env file",
    )
    .await?;
    Ok(Report::changed(format!("wrote {path}")).with_diff(d))
}

/// Replaces every secret in `text` with `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
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

fn slot_index(name: &str) -> Option<usize> {
    SLOTS.iter().position(|s| *s == name)
}

impl HostCtx<'_> {
    fn program(&self, slot: usize) -> String {
        self.paths.slot_program(SLOTS[slot])
    }
    fn server_name(&self) -> String {
        self.plan.app.server_names[0]
            .trim_start_matches("*.")
            .to_string()
    }
    async fn live_slot(&self) -> Result<Option<usize>, String> {
        let out = self
            .must(&cmd::read_live(&self.paths), false, "reading the live slot")
            .await?;
        Ok(slot_index(out.stdout.trim()))
    }
    async fn pid(&self, slot: usize) -> Result<Option<u32>, String> {
        let out = self
            .run(&cmd::supervisor_status(&self.program(slot)), false)
            .await?;
        Ok(running_pid(out.stdout.trim()))
    }
    async fn current_version(&self) -> Result<Option<String>, String> {
        let out = self
            .must(&cmd::read_current(&self.paths), false, "reading current")
            .await?;
        let t = out.stdout.trim();
        Ok(if t.is_empty() {
            None
        } else {
            t.rsplit('/').next().map(str::to_string)
        })
    }

    /// Probes `port` (a slot directly) or nginx (None) until healthy or out of retries.
    async fn probe(&self, port: Option<u16>) -> Result<String, String> {
        let h = &self.plan.app.health;
        let name = self.server_name();
        let c = cmd::http_probe(port.unwrap_or(80), &name, &h.path, h.timeout_secs);
        let mut last = String::new();
        for attempt in 1..=h.retries {
            let out = self.run(&c, false).await?;
            let code = out.stdout.trim();
            if code == h.expect_status.to_string() {
                return Ok(format!(
                    "GET {} answered {code} (attempt {attempt})",
                    h.path
                ));
            }
            last = if code == "000" || code.is_empty() {
                format!("no answer within {}s", h.timeout_secs)
            } else {
                format!("answered {code}, expected {}", h.expect_status)
            };
            tokio::time::sleep(Duration::from_millis(h.interval_ms as u64)).await;
        }
        let via = port
            .map(|p| format!("slot port {p}"))
            .unwrap_or_else(|| "nginx".into());
        Err(format!(
            "health check GET {} (Host: {name}) via {via}: {last} after {} attempts",
            h.path, h.retries
        ))
    }

    /// Points nginx at `slot` (validated, graceful reload) and records it as live.
    async fn make_live(&self, slot: usize, version: &str) -> Result<bool, String> {
        let path = self.paths.nginx_conf();
        let want = &self.rendered.nginx[slot];
        let have = self.read(&path).await?;
        let changed = have.as_deref() != Some(want.as_str());
        if changed {
            self.must(
                &cmd::nginx_install_validated(&path, want.clone().into_bytes()),
                false,
                "installing the nginx site (nginx -t)",
            )
            .await?;
            self.must(&cmd::nginx_reload(), false, "nginx reload")
                .await?;
        }
        self.must(
            &cmd::set_live(&self.paths, SLOTS[slot], version),
            false,
            "recording the live slot",
        )
        .await?;
        Ok(changed)
    }
}

async fn start(ctx: &mut HostCtx<'_>) -> StepResult {
    let live = ctx.live_slot().await?;
    ctx.previous = ctx.current_version().await?;
    // Already live and unchanged: nothing to start, nothing to restart.
    if let Some(l) = live {
        let conf = ctx.read(&ctx.paths.slot_conf(SLOTS[l])).await?;
        let pid = ctx.pid(l).await?;
        if conf.as_deref() == Some(ctx.rendered.supervisor[l].as_str())
            && !ctx.env_changed
            && !ctx.would_build
            && let Some(pid) = pid
        {
            ctx.target = Some(l);
            return Ok(Report::ok(format!(
                "{} runs {} (pid {pid}); nothing it depends on changed",
                ctx.program(l),
                ctx.version()
            )));
        }
    }
    let target = match live {
        Some(l) => 1 - l,
        None => 0,
    };
    ctx.target = Some(target);
    ctx.old_slot = live.filter(|l| *l != target);
    let program = ctx.program(target);
    let conf_path = ctx.paths.slot_conf(SLOTS[target]);
    let have = ctx.read(&conf_path).await?;
    let d = diff(
        &conf_path,
        have.as_deref(),
        &ctx.rendered.supervisor[target],
    );
    let port = crate::render::slot_port(&ctx.plan.app, target);
    if ctx.check() {
        return Ok(Report::changed(format!(
            "would start {} in {program} on port {port} and check its health",
            ctx.version()
        ))
        .with_diff(d));
    }
    if d.is_some() {
        ctx.must(
            &cmd::write_file(
                &conf_path,
                "0644",
                true,
                ctx.rendered.supervisor[target].clone().into_bytes(),
            ),
            false,
            "writing the slot config",
        )
        .await?;
    }
    let out = ctx
        .run(&cmd::supervisor_start_fresh(&program), false)
        .await?;
    if !out.ok() {
        let _ = ctx.run(&cmd::supervisor_stop(&program), false).await;
        return Err(format!("{program} did not start: {}", out.tail()));
    }
    match ctx.probe(Some(port)).await {
        Ok(how) => Ok(Report::changed(format!(
            "started {} in {program} on port {port}; {how}",
            ctx.version()
        ))
        .with_diff(d)),
        Err(why) => {
            let _ = ctx.run(&cmd::supervisor_stop(&program), false).await;
            let _ = ctx
                .run(&cmd::mark_failed(&ctx.paths, ctx.version()), false)
                .await;
            Err(format!(
                "{why}; stopped {program}, traffic still goes to the previous release"
            ))
        }
    }
}

async fn switch(ctx: &mut HostCtx<'_>) -> StepResult {
    let target = ctx.target.ok_or("the start step must run before switch")?;
    let program = ctx.program(target);
    let current = ctx.current_version().await?;
    let nginx_have = ctx.read(&ctx.paths.nginx_conf()).await?;
    let nginx_same = nginx_have.as_deref() == Some(ctx.rendered.nginx[target].as_str());
    if ctx.old_slot.is_none()
        && nginx_same
        && current.as_deref() == Some(ctx.version())
        && ctx.live_slot().await? == Some(target)
    {
        return Ok(Report::ok(format!(
            "nginx -> {program}; current -> releases/{}",
            ctx.version()
        )));
    }
    let d = diff(
        &ctx.paths.nginx_conf(),
        nginx_have.as_deref(),
        &ctx.rendered.nginx[target],
    );
    let from = current.clone().unwrap_or_else(|| "(none)".into());
    if ctx.check() {
        return Ok(Report::changed(format!(
            "would point nginx at {program} and current at releases/{} (from {from})",
            ctx.version()
        ))
        .with_diff(d));
    }
    ctx.make_live(target, ctx.version()).await?;
    Ok(Report::changed(format!(
        "nginx -> {program} (graceful reload); current: {from} -> {}",
        ctx.version()
    ))
    .with_diff(d))
}

async fn health(ctx: &mut HostCtx<'_>) -> StepResult {
    if ctx.check() {
        return Ok(Report::skipped("check mode: nothing was started"));
    }
    match ctx.probe(None).await {
        Ok(how) => Ok(Report::ok(how)),
        Err(why) => {
            // Switch back while the previous slot still runs (it has not been drained).
            let (Some(old), Some(prev)) = (ctx.old_slot, ctx.previous.clone()) else {
                return Err(why);
            };
            let target = ctx.target.unwrap_or(1 - old);
            let back = ctx.make_live(old, &prev).await;
            let _ = ctx
                .run(&cmd::supervisor_stop(&ctx.program(target)), false)
                .await;
            let _ = ctx
                .run(&cmd::mark_failed(&ctx.paths, ctx.version()), false)
                .await;
            ctx.old_slot = None;
            match back {
                Ok(_) => Err(format!(
                    "{why}; switched back to {prev} in {}",
                    ctx.program(old)
                )),
                Err(e) => Err(format!("{why}; switching back to {prev} failed too: {e}")),
            }
        }
    }
}

async fn drain(ctx: &mut HostCtx<'_>) -> StepResult {
    let Some(old) = ctx.old_slot else {
        return Ok(Report::ok("no previous slot to stop"));
    };
    let program = ctx.program(old);
    if ctx.check() {
        return Ok(Report::changed(format!(
            "would stop {program} after {}s",
            ctx.plan.app.drain_secs
        )));
    }
    tokio::time::sleep(Duration::from_secs(ctx.plan.app.drain_secs as u64)).await;
    ctx.must(
        &cmd::supervisor_stop(&program),
        false,
        "stopping the previous slot",
    )
    .await?;
    Ok(Report::changed(format!(
        "stopped {program} after a {}s drain",
        ctx.plan.app.drain_secs
    )))
}

/// Which releases to remove: keep `keep` complete releases (the live one always among
/// them, then the newest), remove the rest and any unfinished build except `building`.
pub fn prune_plan(listing: &str, current: &str, keep: usize, building: &str) -> Vec<String> {
    let mut complete = Vec::new();
    let mut remove = Vec::new();
    for line in listing.lines() {
        let mut w = line.split_whitespace();
        let (Some(_mtime), Some(name), Some(state)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        match state {
            "complete" => complete.push(name.to_string()),
            // Failed releases never count as kept ones; partial ones are dead builds.
            _ if name != building && name != current => remove.push(name.to_string()),
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
    let listing = ctx
        .must(&cmd::list_releases(&ctx.paths), false, "listing releases")
        .await?;
    let current = ctx.current_version().await?.unwrap_or_default();
    let keep = ctx.plan.app.keep_releases as usize;
    let remove = prune_plan(&listing.stdout, &current, keep, ctx.version());
    if remove.is_empty() {
        return Ok(Report::ok(format!("at most {keep} releases kept")));
    }
    if ctx.check() {
        return Ok(Report::changed(format!(
            "would remove releases {}",
            remove.join(", ")
        )));
    }
    ctx.must(
        &cmd::remove_releases(&ctx.paths, &remove),
        false,
        "removing old releases",
    )
    .await?;
    Ok(Report::changed(format!(
        "removed releases {}",
        remove.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supervisor_status() {
        assert_eq!(
            running_pid("hello                            RUNNING   pid 42, uptime 0:00:05"),
            Some(42)
        );
        assert_eq!(
            running_pid("hello                            STOPPED   Nov 25 05:00 AM"),
            None
        );
        assert_eq!(running_pid("hello: ERROR (no such process)"), None);
        assert_eq!(running_pid(""), None);
    }

    #[test]
    fn prune_keeps_the_live_and_newest_complete_releases() {
        let listing =
            "1 0.9 complete\n2 1.0 complete\n3 1.1 partial\n4 1.2 complete\n5 1.3 complete\n";
        // failed releases go and do not count
        assert_eq!(
            prune_plan(
                "1 1.0 complete\n2 1.1 complete\n3 1.2 failed\n4 1.3 complete\n",
                "1.3",
                2,
                "1.3"
            ),
            ["1.0", "1.2"]
        );
        // live is the newest: keep 1.3 and 1.2
        assert_eq!(prune_plan(listing, "1.3", 2, "1.3"), ["0.9", "1.0", "1.1"]);
        // live was rolled back to 1.0: keep it and the newest other
        assert_eq!(prune_plan(listing, "1.0", 2, "1.0"), ["0.9", "1.1", "1.2"]);
        // an unfinished build of the release being deployed is left alone
        assert_eq!(prune_plan(listing, "1.3", 2, "1.1"), ["0.9", "1.0"]);
        assert_eq!(prune_plan(listing, "1.3", 10, "1.3"), ["1.1"]);
    }
}
