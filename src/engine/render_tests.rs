//! Tests of rendering: the shipped templates with supervisord's names and quoting, the
//! errors a template's author sees, the env file and diffs.

use super::*;
use crate::inventory::Inventory;
use crate::procman::Supervisord;
use crate::procman::supervisord::{PROCESS_TEMPLATE, SLOT_TEMPLATE as SUPERVISOR_TEMPLATE};

fn fixture() -> (App, Env) {
    let inv = Inventory::parse(
        Path::new("inv.yml"),
        "hosts: {web1: {address: 10.0.0.1, groups: [web]}}\napplications:\n  hello:\n    package: hello-app\n    index_url: http://index/simple/\n    wsgi: hello_app:app\n    port: 8000\n    server_names: [hello.example.com, www.example.com]\n    environments: {staging: {groups: [web]}}\n",
    )
    .unwrap();
    let app = inv.apps["hello"].clone();
    let env = app.environments["staging"].clone();
    (app, env)
}

fn shipped() -> Templates {
    Templates::load(&crate::repo_root().join("templates"), &Supervisord).unwrap()
}

#[test]
fn renders_the_shipped_templates() {
    let (app, env) = fixture();
    let ctx = Context::new(&Supervisord, &app, &env, "deploy", 1, "1.2.0");
    let t = shipped();
    let sup = t.render(SUPERVISOR_TEMPLATE, &ctx).unwrap();
    assert!(sup.contains("[program:hello-green]\n"));
    assert!(sup.contains(
        "&& exec /srv/apps/hello/releases/1.2.0/bin/gunicorn --bind unix:/srv/apps/hello/run/green@1.2.0.sock --umask 0 --workers 2 --timeout 30 --access-logfile - hello_app:app'\n"
    ), "{sup}");
    assert!(sup.contains("command=/bin/sh -c 'cd /srv/apps/hello/shared && set -a && . /srv/apps/hello/shared/env && set +a && export DEPLOY_APP=hello DEPLOY_RELEASE=1.2.0 "), "{sup}");
    assert!(sup.contains("user=app-hello\n"), "{sup}");
    let ngx = t.render(NGINX_TEMPLATE, &ctx).unwrap();
    assert!(ngx.contains("server_name hello.example.com www.example.com;"));
    assert!(
        ngx.contains("server unix:/srv/apps/hello/run/live.sock max_fails=0;\n    server unix:/srv/apps/hello/run/live.sock max_fails=0 backup;"),
        "{ngx}"
    );
    // The same site whatever the slot or release: a switch never reloads nginx.
    assert_eq!(
        ngx,
        t.render(
            NGINX_TEMPLATE,
            &Context::new(&Supervisord, &app, &env, "deploy", 0, "9.9")
        )
        .unwrap()
    );
    assert!(ngx.ends_with("}\n"));
}

#[test]
fn processes_static_files_and_worker_class_render() {
    let (mut app, env) = fixture();
    app.runtime.worker_class = Some("uvicorn.workers.UvicornWorker".into());
    app.runtime.server_args = vec!["--max-requests".into(), "100 %".into()];
    app.runtime.static_files = Some(crate::inventory::StaticFiles {
        url: "/static/".into(),
        dir: "static".into(),
        max_age_secs: 600,
    });
    let worker = Process {
        name: "worker".into(),
        command: "python -m rq worker high".into(),
        count: 2,
        stop_secs: 20,
    };
    let t = shipped();
    let ctx = Context::new(&Supervisord, &app, &env, "deploy", 0, "2.0");
    let sup = t.render(SUPERVISOR_TEMPLATE, &ctx).unwrap();
    // `%` doubled for supervisord; the argument with a space quoted for the shell.
    assert!(
        sup.contains("--worker-class uvicorn.workers.UvicornWorker --timeout 30 --access-logfile - --max-requests '\\''100 %%'\\'' hello_app:app"),
        "{sup}"
    );
    assert!(
        sup.contains("DEPLOY_STATIC_ROOT=/srv/apps/hello/releases/2.0/static "),
        "{sup}"
    );
    let ngx = t.render(NGINX_TEMPLATE, &ctx).unwrap();
    assert!(
        ngx.contains("location ^~ /static/ {\n        alias /srv/apps/hello/current/static/;\n        add_header Cache-Control \"public, max-age=600\" always;"),
        "{ngx}"
    );
    let pctx = ProcessContext::new(&Supervisord, &app, &env, &worker, "2.0");
    let p = t.render(PROCESS_TEMPLATE, &pctx).unwrap();
    assert!(p.contains("[program:hello-worker]\n"), "{p}");
    assert!(
        p.contains("numprocs=2\n") && p.contains("stopwaitsecs=20\n"),
        "{p}"
    );
    assert!(p.contains("user=app-hello\n"), "{p}");
    assert!(
        p.contains("&& exec /bin/sh -c '\\''python -m rq worker high'\\'''\n"),
        "{p}"
    );
}

#[test]
fn a_missing_variable_names_template_line_and_expression() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(SUPERVISOR_TEMPLATE),
        "[program:{{ app.name }}]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(NGINX_TEMPLATE),
        "# ok\nserver_name {{ app.server_names | join(' ') }};\nlisten {{ app.listen_port }};\n",
    )
    .unwrap();
    let t = Templates::load(dir.path(), &Supervisord).unwrap();
    let (app, env) = fixture();
    let err = t
        .render(
            NGINX_TEMPLATE,
            &Context::new(&Supervisord, &app, &env, "deploy", 0, "1.0.0"),
        )
        .unwrap_err();
    assert_eq!(err.file, dir.path().join(NGINX_TEMPLATE));
    assert_eq!(err.line, Some(3));
    assert!(err.message.contains("undefined"), "{err}");
    assert!(err.message.contains("app.listen_port"), "{err}");
}

#[test]
fn env_file_is_quoted_and_redactable() {
    let mut vars = BTreeMap::new();
    vars.insert("GREETING".to_string(), "it's $HOME".to_string());
    vars.insert("TOKEN".to_string(), "s3cr3t".to_string());
    let text = env_file(&vars);
    assert!(text.contains("GREETING='it'\\''s $HOME'\n"));
    let red = redact_env_file(&text);
    assert!(!red.contains("s3cr3t") && !red.contains("HOME"));
    assert!(red.contains("TOKEN=***\n"));
}

#[test]
fn diff_is_none_when_equal_and_unified_otherwise() {
    assert_eq!(diff("/etc/x", Some("a\n"), "a\n"), None);
    let d = diff("/etc/x", Some("a\nb\n"), "a\nc\n").unwrap();
    assert!(
        d.contains("--- a/etc/x")
            && d.contains("+++ b/etc/x")
            && d.contains("-b\n")
            && d.contains("+c\n"),
        "{d}"
    );
    let d = diff("/etc/x", None, "a\n").unwrap();
    assert!(d.contains("--- /dev/null"), "{d}");
}

#[test]
fn renders_systemds_units_with_the_same_user_env_and_stop_as_supervisords() {
    use crate::procman::Systemd;
    use crate::procman::systemd::{PROCESS_TEMPLATE as UNIT_PROCESS, SLOT_TEMPLATE as UNIT_SLOT};
    let (app, env) = fixture();
    let t = Templates::load(&crate::repo_root().join("templates"), &Systemd).unwrap();
    let ctx = Context::new(&Systemd, &app, &env, "deploy", 1, "1.2.0");
    let unit = t.render(UNIT_SLOT, &ctx).unwrap();
    assert!(
        unit.starts_with("# Managed by deploy for hello (staging), slot green: "),
        "app_programs reads this header: {unit}"
    );
    for line in [
        "User=app-hello",
        "WorkingDirectory=/srv/apps/hello/shared",
        "Type=exec",
        "Restart=always",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
        "SyslogIdentifier=deploy-hello-green",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/srv/apps/hello/shared/data /srv/apps/hello/run",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} not in:\n{unit}");
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    assert!(
        exec.starts_with(
            "/bin/sh -c \"cd /srv/apps/hello/shared && set -a && . /srv/apps/hello/shared/env && "
        ),
        "{exec}"
    );
    assert!(exec.contains("exec /srv/apps/hello/releases/1.2.0/bin/gunicorn --bind unix:/srv/apps/hello/run/green@1.2.0.sock "), "{exec}");
    let worker = Process {
        name: "worker".into(),
        command: "python -m rq worker \"high\" $QUEUE 100%".into(),
        count: 3,
        stop_secs: 20,
    };
    let pctx = ProcessContext::new(&Systemd, &app, &env, &worker, "2.0");
    let p = t.render(UNIT_PROCESS, &pctx).unwrap();
    assert!(
        p.starts_with("# Managed by deploy for hello (staging), process worker: "),
        "{p}"
    );
    for line in [
        "User=app-hello",
        "WorkingDirectory=/",
        "TimeoutStopSec=20",
        "SyslogIdentifier=deploy-hello-worker-%i",
        "ReadWritePaths=/srv/apps/hello/shared/data",
        "ProtectSystem=strict",
    ] {
        assert!(p.lines().any(|l| l == line), "{line} not in:\n{p}");
    }
    // `$` and `%` doubled, `"` escaped: systemd expands neither in the command.
    assert!(
        p.contains(r#"&& exec /bin/sh -c 'python -m rq worker \"high\" $$QUEUE 100%%'""#),
        "{p}"
    );
    assert!(
        p.contains("(instances\n# @0 to @2)") || p.contains("@0 to @2"),
        "{p}"
    );
}
