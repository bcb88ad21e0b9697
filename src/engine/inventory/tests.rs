//! Tests of the inventory: parsing, defaults, and errors with file, line and field.

use super::*;

const GOOD: &str = "\
hosts:
  web1: {address: 10.0.0.1, groups: [web]}
  web2: {address: 10.0.0.2, port: 2222, user: ops, groups: [canary]}
applications:
  hello:
    package: hello-app
    index_url: http://index:8080/simple/
    wsgi: hello_app:app
    port: 8000
    server_names: [hello.example.com]
    env: {GREETING: hi}
    environments:
      staging: {groups: [canary]}
      production: {groups: [web], parallel: 5}
";

fn parse(text: &str) -> Result<Inventory, InputError> {
    Inventory::parse(Path::new("inventory.yml"), text)
}

#[test]
fn parses_hosts_apps_and_defaults() {
    let inv = parse(GOOD).unwrap();
    assert_eq!(inv.hosts["web1"].port, 22);
    assert_eq!(inv.hosts["web1"].user, "deploy");
    assert_eq!(inv.hosts["web2"].user, "ops");
    let app = inv.app("hello").unwrap();
    assert_eq!(app.playbook, "python-web");
    assert_eq!(app.keep_releases, 3);
    assert_eq!(app.health.path, "/healthz");
    let (env, hosts) = inv.hosts_for(app, "staging").unwrap();
    assert_eq!(env.parallel, 10);
    assert_eq!(
        hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["web2"]
    );
    let (env, hosts) = inv.hosts_for(app, "production").unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(env.rollout, Rollout::default());
    assert_eq!(BatchSize::parse("25%").unwrap().of(10), 3);
    assert_eq!(BatchSize::parse("2").unwrap().of(10), 2);
    assert!(BatchSize::parse("0").is_err() && BatchSize::parse("150%").is_err());
    assert!(
        inv.hosts_for(app, "qa")
            .unwrap_err()
            .to_string()
            .contains("no environment `qa`")
    );
}

#[test]
fn environments_are_listed_in_the_files_order() {
    let inv = parse(GOOD).unwrap();
    let names: Vec<&str> = inv.apps["hello"]
        .environments_in_order()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["staging", "production"], "not by name");
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let err = parse("hosts:\n  web1: {address: 10.0.0.1, groups: [web]\n  web2: x\n").unwrap_err();
    assert_eq!(err.file, Path::new("inventory.yml"));
    assert!(err.line.is_some(), "{err}");
    assert!(err.to_string().starts_with("inventory.yml:"), "{err}");
}

#[test]
fn unknown_fields_are_rejected_with_their_line() {
    let text = GOOD.replace("    port: 8000\n", "    port: 8000\n    prot: 9000\n");
    let err = parse(&text).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("prot"), "{msg}");
    assert_eq!(err.line, Some(10), "{msg}");
}

#[test]
fn a_host_in_no_group_is_an_error() {
    let text = GOOD.replace(
        "  web1: {address: 10.0.0.1, groups: [web]}",
        "  web1: {address: 10.0.0.1}",
    );
    let err = parse(&text).unwrap_err();
    assert_eq!(err.field, "hosts.web1.groups");
    assert_eq!(err.line, Some(2));
    assert!(err.message.contains("in no group"), "{err}");
}

#[test]
fn deploy_windows_are_read_and_a_bad_one_names_its_field() {
    let ok = GOOD.replace(
        "staging: {groups: [canary]}",
        "staging: {groups: [canary], windows: [\"Mon-Fri 09:00-16:00 Europe/Amsterdam\"]}",
    );
    let inv = parse(&ok).unwrap();
    let w = &inv.apps["hello"].environments["staging"].windows;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].to_string(), "Mon-Fri 09:00-16:00 Europe/Amsterdam");
    let bad = GOOD.replace(
        "staging: {groups: [canary]}",
        "staging: {groups: [canary], windows: [\"Mon-Fri 16:00-09:00 UTC\"]}",
    );
    let err = parse(&bad).unwrap_err();
    assert_eq!(err.field, "applications.hello.environments.staging.windows");
    assert!(err.message.contains("16:00-09:00"), "{err}");
}

#[test]
fn an_environment_naming_an_unknown_group_is_an_error() {
    let text = GOOD.replace(
        "staging: {groups: [canary]}",
        "staging: {groups: [canary, db]}",
    );
    let err = parse(&text).unwrap_err();
    assert_eq!(err.field, "applications.hello.environments.staging.groups");
    assert_eq!(err.line, Some(13));
    assert!(
        err.message
            .contains("no host is in group `db`; known groups: canary, web"),
        "{err}"
    );
}

#[test]
fn names_that_could_smuggle_shell_are_refused() {
    let text = GOOD.replace("  hello:\n", "  \"hello;id\":\n");
    let err = parse(&text).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid application name \"hello;id\""),
        "{err}"
    );
    let text = GOOD.replace("package: hello-app", "package: \"hello-app$(id)\"");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.field, "applications.hello.package");
    assert_eq!(err.line, Some(6));
    let text = GOOD.replace("GREETING: hi", "\"A;B\": hi");
    assert_eq!(parse(&text).unwrap_err().field, "applications.hello.env");
}

#[test]
fn secret_values_are_not_echoed_in_errors() {
    let text = GOOD.replace("GREETING: hi", "PASSWORD: \"s3cr3t\\nline\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("PASSWORD") && !err.contains("s3cr3t"), "{err}");
}

#[test]
fn two_environments_sharing_a_host_are_refused() {
    let text = GOOD.replace("groups: [canary]}", "groups: [canary, web]}");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.field, "applications.hello.environments.staging.groups");
    assert_eq!(err.line, Some(13));
    assert!(
        err.message
            .contains("environments `production` and `staging` both select host `web1`"),
        "{err}"
    );
}

#[test]
fn runtime_fields_parse_with_defaults() {
    let inv = parse(GOOD).unwrap();
    let r = &inv.app("hello").unwrap().runtime;
    assert_eq!(r.run_as, "app-hello");
    assert_eq!((r.timeout_secs, r.worker_class.as_deref()), (30, None));
    assert!(r.processes.is_empty() && r.static_files.is_none());
    let text = GOOD.replace(
            "    env: {GREETING: hi}\n",
            "    env: {GREETING: hi}\n    run_as: shop\n    worker_class: uvicorn.workers.UvicornWorker\n    server_args: [--max-requests, \"100\"]\n    processes:\n      worker: {command: python -m rq worker, count: 2}\n    hooks:\n      before_switch:\n        - {name: migrate, command: python -m django migrate}\n        - {name: static, command: python -m django collectstatic, scope: every_host}\n    static: {url: /static/}\n",
        );
    let inv = parse(&text).unwrap();
    let r = &inv.app("hello").unwrap().runtime;
    assert_eq!(r.run_as, "shop");
    assert_eq!(r.server_args, ["--max-requests", "100"]);
    assert_eq!(
        (r.processes[0].name.as_str(), r.processes[0].count),
        ("worker", 2)
    );
    let b = &r.hooks.before_switch;
    assert_eq!(
        (b[0].scope, b[1].scope),
        (HookScope::Once, HookScope::EveryHost)
    );
    assert_eq!(r.static_files.as_ref().unwrap().dir, "static");
}

#[test]
fn bad_runtime_fields_name_their_line_and_field() {
    let add = |extra: &str| {
        let text = GOOD.replace(
            "    env: {GREETING: hi}\n",
            &format!("    env: {{GREETING: hi}}\n{extra}"),
        );
        parse(&text).unwrap_err()
    };
    let e = add("    processes:\n      worker: {command: celery, cuont: 2}\n");
    assert!(e.message.contains("cuont") && e.line == Some(13), "{e}");
    let e = add("    hooks:\n      before_switch:\n        - {name: migrate}\n");
    assert_eq!(e.field, "applications.hello.hooks.before_switch[0].command");
    assert!(
        e.message.contains("expected a command") && e.line == Some(14),
        "{e}"
    );
    let e = add("    static: {url: static/}\n");
    assert_eq!(
        (e.field.as_str(), e.line),
        ("applications.hello.static.url", Some(12))
    );
    assert!(e.message.contains("leading and a trailing `/`"), "{e}");
    let e = add("    processes:\n      web: {command: gunicorn}\n");
    assert!(e.message.contains("blue/green"), "{e}");
    let e = add("    run_as: root\n");
    assert_eq!(e.field, "applications.hello.run_as");
    let e = add("    processes:\n      w: {command: \"a\\nb\"}\n");
    assert!(e.message.contains("one line"), "{e}");
}

#[test]
fn url_host_extracts_the_host() {
    assert_eq!(url_host("http://index:8080/simple/"), Some("index"));
    assert_eq!(
        url_host("https://u:p@repo.example.com/api/pypi/simple"),
        Some("repo.example.com")
    );
}

#[test]
fn worker_classes_are_dotted_python_names() {
    let with = |w: &str| {
        let line = format!("    env: {{GREETING: hi}}\n    worker_class: \"{w}\"\n");
        parse(&GOOD.replace("    env: {GREETING: hi}\n", &line))
    };
    assert!(with("uvicorn.workers.UvicornWorker").is_ok());
    assert!(with("gthread").is_ok());
    // Issue 26: "." and ".." were accepted.
    for bad in [".", "..", "a..b", ".a", "a.", "1x", ""] {
        let e = with(bad).unwrap_err();
        assert_eq!(e.field, "applications.hello.worker_class", "{bad:?}: {e}");
    }
}

#[test]
fn a_server_name_nginx_would_refuse_is_refused_at_load() {
    // Issue 26: a 140-character server name passed and failed `nginx -t` at deploy time.
    let long = format!("{}.example.com", "a".repeat(140));
    let e = parse(&GOOD.replace("hello.example.com", &long)).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.line),
        ("applications.hello.server_names", Some(10))
    );
    assert!(e.message.contains("at most 63"), "{e}");
    // Labels that fit DNS, but a name longer than nginx's default hash bucket holds
    // (47 characters: `nginx -t` fails on a host with a second site).
    let long = format!("{}.example.com", "a".repeat(35));
    assert_eq!(long.len(), 47);
    let e = parse(&GOOD.replace("hello.example.com", &long)).unwrap_err();
    assert_eq!(e.field, "applications.hello.server_names");
    assert!(e.message.contains("at most 46"), "{e}");
    let fits = format!("{}.example.com", "a".repeat(34));
    parse(&GOOD.replace("hello.example.com", &fits)).unwrap();
}

#[test]
fn a_yaml_error_names_file_line_and_field_and_no_value_of_the_file() {
    // Issue 26: a parse error showed a snippet of the file with an `env:` value.
    let text = GOOD.replace(
        "    env: {GREETING: hi}\n",
        "    env:\n      SECRET_KEY: hunter2-s3cr3t\n      DEBUG: [unclosed\n",
    );
    let e = parse(&text).unwrap_err();
    let shown = e.redacted();
    assert!(
        !shown.contains("hunter2") && !e.to_string().contains("hunter2"),
        "{e}"
    );
    assert!(shown.starts_with("inventory.yml:1"), "{shown}");
    assert!(e.field.starts_with("applications.hello"), "{e:?}");
    let text = GOOD.replace("port: 8000", "port: \"s3cr3t-port\"");
    let e = parse(&text).unwrap_err();
    assert!(!e.redacted().contains("s3cr3t"), "{}", e.redacted());
    assert_eq!(e.field, "applications.hello.port", "{e:?}");
}

#[test]
fn an_environment_picks_its_process_manager_over_the_applications() {
    use ProcessManagerKind::*;
    let inv = parse(GOOD).unwrap();
    let app = inv.app("hello").unwrap();
    assert_eq!(app.process_manager, Supervisord, "the default");
    assert_eq!(app.environments["staging"].process_manager, Supervisord);
    let text = GOOD.replace(
        "      staging: {groups: [canary]}",
        "      staging: {groups: [canary], process_manager: systemd}",
    );
    let inv = parse(&text).unwrap();
    let envs = &inv.app("hello").unwrap().environments;
    assert_eq!(envs["staging"].process_manager, Systemd);
    assert_eq!(envs["production"].process_manager, Supervisord);
    // The application's value is its environments' default; theirs wins.
    let text = GOOD
        .replace(
            "    env: {GREETING: hi}\n",
            "    env: {GREETING: hi}\n    process_manager: systemd\n",
        )
        .replace(
            "      production: {groups: [web], parallel: 5}",
            "      production: {groups: [web], parallel: 5, process_manager: supervisord}",
        );
    let envs = parse(&text).unwrap().apps["hello"].environments.clone();
    assert_eq!(envs["staging"].process_manager, Systemd);
    assert_eq!(envs["production"].process_manager, Supervisord);
}

#[test]
fn an_unknown_process_manager_names_file_line_and_field() {
    let text = GOOD.replace(
        "      staging: {groups: [canary]}",
        "      staging:\n        groups: [canary]\n        process_manager: runit",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line, Some(15), "{e:?}");
    assert_eq!(
        e.field, "applications.hello.environments.staging.process_manager",
        "{e:?}"
    );
    assert!(
        e.message.contains("supervisord") && e.message.contains("systemd"),
        "names the valid values: {e}"
    );
    let text = GOOD.replace(
        "    env: {GREETING: hi}\n",
        "    env: {GREETING: hi}\n    process_manager: upstart\n",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(12), "applications.hello.process_manager"),
        "{e:?}"
    );
}

#[test]
fn the_example_inventory_parses_and_its_production_runs_under_systemd() {
    let inv = Inventory::load(&crate::repo_root().join("inventory/example.yml")).unwrap();
    let envs = &inv.app("hello").unwrap().environments;
    assert_eq!(
        envs["production"].process_manager,
        ProcessManagerKind::Systemd
    );
    assert_eq!(
        envs["staging"].process_manager,
        ProcessManagerKind::Supervisord
    );
}
