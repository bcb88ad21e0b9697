//! The pipeline commands: `build` (a CI build of a ref, its console followed live),
//! `release --ref` (build when the commit has no build yet, then deploy what it made),
//! `changes` (the commits a release adds), `promote` (the very file one environment runs,
//! to another) and `diff` (two environments side by side).

use deploy_wire::EventKind;
use deploy_wire::api::{DeployRequest, JobInfo, StoredEvent};
use deploy_wire::pipeline::{
    BuildRequest, BuildResponse, ChangesResponse, CommitInfo, DiffResponse, EnvRelease,
    PromoteRequest,
};

use crate::client::{CliError, Client, Result};
use crate::display::Mode;
use crate::{confirm, exit, print_json, start_following, urls};

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Builds `reference` (unless built already); the version it made, or the exit code of
/// a build that did not succeed.
async fn build_version(
    c: &Client,
    req: &BuildRequest,
    m: Mode,
) -> Result<std::result::Result<String, u8>> {
    let r: BuildResponse = c.post("/v1/builds", req).await?;
    let app = &req.app;
    match (r.job, r.build) {
        (None, Some(b)) => {
            if m != Mode::Json {
                eprintln!(
                    "{app} at {} ({}) is built already: build {}, {} {} (sha256 {})",
                    short(&r.commit.id),
                    r.commit.subject,
                    b.number,
                    b.file,
                    b.version,
                    b.sha256
                );
            }
            Ok(Ok(b.version))
        }
        (Some(job), _) => {
            let code = start_following(c, &job, m).await?;
            if code != exit::OK {
                return Ok(Err(code));
            }
            built_by(c, &job).await.map(Ok)
        }
        (None, None) => Err(CliError::new(
            exit::FAILED,
            "the gateway neither built nor found a build",
        )),
    }
}

/// The version a finished build job made (its `built` event).
async fn built_by(c: &Client, job: &JobInfo) -> Result<String> {
    let events: Vec<StoredEvent> = c.get(&urls::path(&["/v1/jobs/", &job.id, "/log"])).await?;
    events
        .into_iter()
        .find_map(|e| match e.event.kind {
            EventKind::Built { version, .. } => Some(version),
            _ => None,
        })
        .ok_or_else(|| {
            CliError::new(
                exit::FAILED,
                format!("build job {} recorded no wheel", job.id),
            )
        })
}

pub async fn build(c: &Client, app: &str, reference: &str, m: Mode) -> Result<u8> {
    urls::app(app)?;
    let req = BuildRequest {
        app: app.into(),
        reference: reference.into(),
        env: None,
    };
    Ok(match build_version(c, &req, m).await? {
        Ok(_) => exit::OK,
        Err(code) => code,
    })
}

/// `deploy release APP --ref REF -e ENV`.
pub struct ReleaseRef<'a> {
    pub app: &'a str,
    pub env: &'a str,
    pub reference: &'a str,
    pub check: bool,
    pub yes: bool,
    pub batch: Option<String>,
}

pub async fn release_ref(c: &Client, r: ReleaseRef<'_>, m: Mode) -> Result<u8> {
    let req = BuildRequest {
        app: r.app.into(),
        reference: r.reference.into(),
        env: Some(r.env.into()),
    };
    let version = match build_version(c, &req, m).await? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if !r.check {
        let q = format!(
            "Deploy {} {version} (from {}) to {}?",
            r.app, r.reference, r.env
        );
        confirm(c, r.app, r.env, &q, r.yes).await?;
    }
    let req = DeployRequest {
        app: r.app.into(),
        env: r.env.into(),
        version,
        check: r.check,
        batch: r.batch,
        pre: true,
        force: None,
        if_newer: false,
    };
    let job: JobInfo = c.post("/v1/deployments", &req).await?;
    start_following(c, &job, m).await
}

fn print_commits(commits: &[CommitInfo]) {
    if commits.is_empty() {
        println!("  (no commits)");
    }
    for k in commits {
        println!("  {}  {:<20}  {}", short(&k.id), k.author, k.subject);
    }
}

fn side(e: &EnvRelease) -> String {
    let v = match (&e.version, e.hosts.is_empty()) {
        (Some(v), _) => v.clone(),
        (None, true) => "nothing recorded".into(),
        (None, false) => {
            let runs: Vec<String> = e.hosts.iter().map(|(h, v)| format!("{h}={v}")).collect();
            format!("mixed: {}", runs.join(", "))
        }
    };
    let commit = e
        .commit
        .as_deref()
        .map(|c| format!(" at {}", short(c)))
        .unwrap_or_default();
    let sha = e
        .sha256
        .as_deref()
        .map(|s| format!(" sha256 {}…", &s[..s.len().min(16)]))
        .unwrap_or_default();
    format!("{}: {v}{commit}{sha}", e.env)
}

/// `changes`: the candidate's version (when built), for `--check`.
pub async fn changes(
    c: &Client,
    app: &str,
    env: &str,
    version: Option<&str>,
    reference: Option<&str>,
    json: bool,
) -> Result<Option<String>> {
    let q = urls::query(&[
        ("env", Some(urls::env(env)?)),
        ("version", version),
        ("ref", reference),
    ]);
    let path = urls::path(&["/v1/apps/", urls::app(app)?, &format!("/changes{q}")]);
    let r: ChangesResponse = c.get(&path).await?;
    if json {
        print_json(&r);
        return Ok(r.version);
    }
    let to = r
        .version
        .as_deref()
        .map(|v| format!("{v} "))
        .unwrap_or_default();
    println!("{app}: {}", side(&r.running));
    let which = match r.candidate.is_empty() {
        true => String::new(),
        false => format!(" ({})", r.candidate),
    };
    println!("candidate: {to}at {}{which}", short(&r.commit));
    println!("{} commit(s) (newest first):", r.commits.len());
    print_commits(&r.commits);
    Ok(r.version)
}

/// `changes --check`: a check deploy of the candidate (its diffs are displayed).
pub async fn check(c: &Client, app: &str, env: &str, version: String, m: Mode) -> Result<u8> {
    let req = DeployRequest {
        app: app.into(),
        env: env.into(),
        version,
        check: true,
        batch: None,
        pre: true,
        force: None,
        if_newer: false,
    };
    let job: JobInfo = c.post("/v1/deployments", &req).await?;
    start_following(c, &job, m).await
}

pub async fn diff(c: &Client, app: &str, a: &str, b: &str, json: bool) -> Result<u8> {
    let q = urls::query(&[("a", Some(urls::env(a)?)), ("b", Some(urls::env(b)?))]);
    let path = urls::path(&["/v1/apps/", urls::app(app)?, &format!("/diff{q}")]);
    let r: DiffResponse = c.get(&path).await?;
    if json {
        print_json(&r);
        return Ok(exit::OK);
    }
    println!("{}", side(&r.a));
    println!("{}", side(&r.b));
    println!("{} has {} commit(s) {} lacks:", a, r.commits.len(), b);
    print_commits(&r.commits);
    Ok(exit::OK)
}

pub struct Promote<'a> {
    pub app: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub check: bool,
    pub yes: bool,
    pub batch: Option<String>,
}

pub async fn promote(c: &Client, p: Promote<'_>, m: Mode) -> Result<u8> {
    urls::app(p.app)?;
    urls::env(p.from)?;
    urls::env(p.to)?;
    if !p.check {
        let q = format!("Promote {} from {} to {}?", p.app, p.from, p.to);
        confirm(c, p.app, p.to, &q, p.yes).await?;
    }
    let req = PromoteRequest {
        app: p.app.into(),
        from: p.from.into(),
        to: p.to.into(),
        check: p.check,
        batch: p.batch,
    };
    let job: JobInfo = c.post("/v1/promotions", &req).await?;
    start_following(c, &job, m).await
}
