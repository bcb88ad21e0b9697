//! The pipeline's part of `gateway.toml`: git hosts (`[git.NAME]`), CI builders
//! (`[builders.NAME]`), notifiers (`[[notify]]`), and which of them each application
//! uses (`[applications.APP] git`, `repository`, `builder`, `build_job`).  Credentials come
//! from environment variables or files, like the artifact sources'.
//!
//! Plain git hosts keep a bare partial mirror per repository in `git-cache/` beside
//! the database.
//!
//! Decision: an application names its git host and builder by the name of their table,
//! so moving an application from plain git to Bitbucket is one line of config; the CLI,
//! the API and the ledger never say which product answered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::builder::Builder;
use crate::githost::GitHost;

/// `[git.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGit {
    /// `git` (any remote: SSH, HTTPS, git://) or `bitbucket` (Bitbucket Server / DC).
    kind: String,
    /// git: the base the repository is appended to; bitbucket: the server's base URL.
    url: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

/// `[builders.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuilder {
    /// `jenkins`.
    kind: String,
    url: String,
    user: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

/// The pipeline fields of `[applications.APP]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppPipeline {
    /// The `[git.NAME]` holding its source.
    #[serde(default)]
    pub git: Option<String>,
    /// Its repository there: `name` under a plain git base, `PROJECT/slug` on Bitbucket.
    #[serde(default)]
    pub repository: Option<String>,
    /// The `[builders.NAME]` that builds it.
    #[serde(default)]
    pub builder: Option<String>,
    /// The builder's job for it (Jenkins); default: the application's name.
    #[serde(default)]
    pub build_job: Option<String>,
}

/// The pipeline's backends, built and checked at load.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub git_hosts: BTreeMap<String, Arc<dyn GitHost>>,
    pub builders: BTreeMap<String, Arc<dyn Builder>>,
    pub apps: BTreeMap<String, AppPipeline>,
    pub notify: Vec<crate::notify::Route>,
}

/// What a section's error is: (field suffix, message).
type FieldError = (String, String);

/// Reads a secret from `*_env` or `*_file` (config.rs's rules).
pub(super) type SecretOf<'a> = dyn Fn(
        Option<String>,
        Option<PathBuf>,
        &str,
    ) -> Result<Option<crate::artifacts::Secret>, FieldError>
    + 'a;

impl Pipeline {
    /// The git host and repository of `app`, or why there is none.
    pub fn git_for(&self, app: &str) -> Result<(Arc<dyn GitHost>, String), String> {
        let a = self.apps.get(app);
        match a.and_then(|a| a.git.as_ref().zip(a.repository.as_ref())) {
            Some((g, repo)) => Ok((self.git_hosts[g].clone(), repo.clone())),
            None => Err(format!(
                "application `{app}` has no git host: give it `git = \"NAME\"` and `repository = \"...\"` under [applications.{app}] in gateway.toml"
            )),
        }
    }

    /// The builder of `app`, or why there is none.
    pub fn builder_for(&self, app: &str) -> Result<Arc<dyn Builder>, String> {
        match self.apps.get(app).and_then(|a| a.builder.as_ref()) {
            Some(b) => Ok(self.builders[b].clone()),
            None => Err(format!(
                "application `{app}` has no builder: give it `builder = \"NAME\"` under [applications.{app}] in gateway.toml"
            )),
        }
    }
}

/// Builds the pipeline from its raw tables; errors name the table and field.
pub(super) fn build(
    git: BTreeMap<String, RawGit>,
    builders: BTreeMap<String, RawBuilder>,
    apps: BTreeMap<String, AppPipeline>,
    notify: Option<toml::Value>,
    base: &Path,
    git_cache: &Path,
    secret: &SecretOf<'_>,
) -> Result<Pipeline, (String, FieldError)> {
    let mut p = Pipeline::default();
    for (name, raw) in git {
        let token = secret(raw.token_env, raw.token_file, "token")
            .map_err(|e| (format!("[git.{name}]"), (format!("git.{name}{}", e.0), e.1)))?;
        let host = git_host(&raw.kind, raw.url, token, git_cache.join(&name))
            .map_err(|m| (format!("[git.{name}]"), (format!("git.{name}.kind"), m)))?;
        p.git_hosts.insert(name, host);
    }
    let mut jobs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (app, a) in &apps {
        let at = |f: &str, m: String| {
            (
                format!("[applications.{app}]"),
                (format!("applications.{app}.{f}"), m),
            )
        };
        if let Some(g) = &a.git {
            if !p.git_hosts.contains_key(g) {
                return Err(at("git", known("git host", g, p.git_hosts.keys())));
            }
            if a.repository.is_none() {
                return Err(at(
                    "repository",
                    "a git host needs the repository (e.g. `hello` or `PROJ/hello`)".into(),
                ));
            }
        }
        if let Some(b) = &a.builder {
            if !builders.contains_key(b) {
                return Err(at("builder", known("builder", b, builders.keys())));
            }
            let job = a.build_job.clone().unwrap_or_else(|| app.clone());
            jobs.entry(b.clone()).or_default().insert(app.clone(), job);
        }
    }
    for (name, raw) in builders {
        let token = secret(raw.token_env, raw.token_file, "token").map_err(|e| {
            (
                format!("[builders.{name}]"),
                (format!("builders.{name}{}", e.0), e.1),
            )
        })?;
        let b = builder(
            &raw.kind,
            raw.url,
            raw.user,
            token,
            jobs.remove(&name).unwrap_or_default(),
        )
        .map_err(|e| {
            (
                format!("[builders.{name}]"),
                (format!("builders.{name}{}", e.0), e.1),
            )
        })?;
        p.builders.insert(name, b);
    }
    if let Some(v) = notify {
        p.notify = crate::notify::parse(&v, base)
            .map_err(|m| ("[[notify]]".to_string(), (String::new(), m)))?;
    }
    p.apps = apps;
    Ok(p)
}

fn known<'a>(what: &str, name: &str, names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    format!(
        "no {what} `{name}`; known: {}",
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    )
}

fn git_host(
    kind: &str,
    url: String,
    token: Option<crate::artifacts::Secret>,
    cache: PathBuf,
) -> Result<Arc<dyn GitHost>, String> {
    match kind {
        "git" => Ok(Arc::new(crate::githost::git::PlainGit::new(
            url, cache, token,
        ))),
        "bitbucket" => Ok(Arc::new(
            crate::githost::bitbucket::Bitbucket::new(url, token).map_err(|e| e.to_string())?,
        )),
        other => Err(format!(
            "unknown git host kind `{other}`; expected git or bitbucket"
        )),
    }
}

fn builder(
    kind: &str,
    url: String,
    user: String,
    token: Option<crate::artifacts::Secret>,
    jobs: BTreeMap<String, String>,
) -> Result<Arc<dyn Builder>, FieldError> {
    match kind {
        "jenkins" => {
            let token = token.ok_or((
                ".token_env".to_string(),
                "Jenkins needs the user's API token (token_env or token_file)".to_string(),
            ))?;
            let j = crate::builder::jenkins::Jenkins::new(url, user, token, jobs)
                .map_err(|m| (".url".to_string(), m.to_string()))?;
            Ok(Arc::new(j))
        }
        other => Err((
            ".kind".into(),
            format!("unknown builder kind `{other}`; expected jenkins"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::GatewayConfig;
    use crate::error::InputError;

    const BASE: &str = "database = \"state/g.db\"\ninventory = \"inv.yml\"\nknown_hosts = \"kh\"\nssh_key = \"k\"\n\
        [cli]\noldest = \"0.1.0\"\nnewest = \"0.1.0\"\nupgrade_command = \"x\"\n";
    const HOSTS: &str = "[git.origin]\nkind = \"git\"\nurl = \"https://git.test/scm\"\n\
        [git.stash]\nkind = \"bitbucket\"\nurl = \"https://stash.test\"\ntoken_file = \"tok\"\n\
        [builders.ci]\nkind = \"jenkins\"\nurl = \"https://ci.test\"\nuser = \"bot\"\ntoken_file = \"tok\"\n";

    fn load(extra: &str) -> Result<GatewayConfig, InputError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gateway.toml");
        std::fs::write(&p, format!("{BASE}{extra}")).unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret-from-file\n").unwrap();
        GatewayConfig::load(&p)
    }

    #[test]
    fn apps_name_their_git_host_and_builder_and_secrets_stay_hidden() {
        let c = load(&format!(
            "{HOSTS}[applications.hello]\ngit = \"stash\"\nrepository = \"PROJ/hello\"\nbuilder = \"ci\"\n\
             [applications.shop]\ngit = \"origin\"\nrepository = \"shop\"\n"
        ))
        .unwrap();
        let p = &c.pipeline;
        let (git, repo) = p.git_for("hello").unwrap();
        assert_eq!(repo, "PROJ/hello");
        // Users never see which product answered: the git host, whatever it is.
        assert_eq!(git.describe(), "the git host");
        assert!(p.builder_for("hello").is_ok());
        let e = p.builder_for("shop").err().unwrap();
        assert!(e.contains("[applications.shop]"), "{e}");
        let e = p.git_for("other").err().unwrap();
        assert!(e.contains("git = \"NAME\""), "{e}");
        assert!(!format!("{p:?}").contains("s3cret"), "{p:?}");
        assert!(
            format!("{BASE}{HOSTS}").contains("tok"),
            "the probe: the secret's file is named"
        );
    }

    #[test]
    fn bad_pipeline_tables_name_the_field_and_line() {
        let e = load(&format!(
            "{HOSTS}[applications.hello]\ngit = \"gitlab\"\nrepository = \"x\"\n"
        ))
        .err()
        .unwrap();
        assert_eq!(e.field, "applications.hello.git");
        assert!(
            e.message
                .contains("no git host `gitlab`; known: origin, stash"),
            "{e}"
        );
        assert_eq!(e.line, Some(21), "the line of [applications.hello]: {e}");
        let e = load(&format!("{HOSTS}[applications.hello]\ngit = \"origin\"\n"))
            .err()
            .unwrap();
        assert_eq!(e.field, "applications.hello.repository");
        let e = load(&format!("{HOSTS}[applications.hello]\nbuilder = \"gh\"\n"))
            .err()
            .unwrap();
        assert!(e.message.contains("no builder `gh`; known: ci"), "{e}");
        let e = load("[git.x]\nkind = \"svn\"\nurl = \"https://x\"\n")
            .err()
            .unwrap();
        assert_eq!(e.field, "git.x.kind");
        let e = load("[builders.ci]\nkind = \"jenkins\"\nurl = \"https://ci\"\nuser = \"u\"\n")
            .err()
            .unwrap();
        assert_eq!(e.field, "builders.ci.token_env");
        let e = load("[builders.ci]\nkind = \"jenkins\"\nurl = \"ftp://ci\"\nuser = \"u\"\ntoken_file = \"tok\"\n")
            .err()
            .unwrap();
        assert_eq!(e.field, "builders.ci.url");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = load("[[notify]]\nkind = \"webhook\"\nurl = \"https://h\"\n")
            .err()
            .unwrap();
        assert!(e.message.contains("notify[0]"), "{e}");
        let e = load(
            "[git.x]\nkind = \"git\"\nurl = \"https://x\"\ntoken_env = \"DEPLOY_TEST_UNSET\"\n",
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "git.x.token_env");
    }
}
