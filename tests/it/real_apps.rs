//! Real application shapes on real containers, through the gateway and the CLI: the
//! Django sample (tests/django-app: PostgreSQL shared by every host, migrations once,
//! collectstatic on every host, static files through nginx, two workers per host) and the
//! ASGI sample under uvicorn workers; and the wall between the app's own user and
//! everything else (its logs and the deploy user's home included).

use crate::support;

use std::time::{Duration, Instant};

use support::{Gateway, Testbed, exec, http_get};

pub(crate) const SHOP: &str = "shop.example.test";

/// The shop (Django) and asgi applications, added to the test bed's inventory.
pub(crate) fn inventory(tb: &Testbed) -> String {
    let (_, pw) = tb.db.as_ref().unwrap();
    tb.inventory_text()
        + &format!(
            "  shop:
    package: shop-app
    installer: uv
    wsgi: shop_app.wsgi:application
    port: 8300
    server_names: [{SHOP}]
    env:
      DJANGO_SETTINGS_MODULE: shop_app.settings
      SHOP_DB_PASSWORD: {pw}
      SHOP_SECRET_KEY: a-test-secret-key-of-some-length
    processes:
      worker: {{command: python -m django shop_worker, count: 2, stop_secs: 10}}
    hooks:
      before_switch:
        - {{name: migrate, command: python -m django migrate --noinput}}
        - {{name: collectstatic, command: python -m django collectstatic --noinput, scope: every_host}}
    static: {{url: /static/, max_age_secs: 3600}}
    drain_secs: 1
    environments:
      staging:
        groups: [web]
  asgi:
    package: asgi-app
    installer: uv
    wsgi: asgi_app:app
    worker_class: uvicorn.workers.UvicornWorker
    port: 8400
    server_names: [asgi.example.test]
    environments:
      staging:
        groups: [web]
"
        )
}

pub(crate) fn gateway(tb: &Testbed) -> Gateway {
    let sources = format!(
        "[sources.pypi]\nkind = \"simple\"\nurl = \"http://127.0.0.1:{}/simple/\"\nservers_url = \"http://index:8080/simple/\"\n\
         [applications.hello]\nsource = \"pypi\"\n[applications.shop]\nsource = \"pypi\"\n[applications.asgi]\nsource = \"pypi\"\n{}",
        tb.index_port,
        tb.uv_config()
    );
    Gateway::start_with(Some(tb), "0.1.0", "0.1.0", Some(&sources), &[])
}

/// Waits until the workers that beat in the last 2 s are `want` copies, all on `release`.
pub(crate) fn workers_on(tb: &Testbed, release: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let q = "SELECT release, count(*) FROM shop_heartbeat \
             WHERE beat_at > now() - interval '2 seconds' GROUP BY release ORDER BY release";
    let expect = format!("{release}|{want}");
    loop {
        let rows = tb.sql(q);
        if rows == expect {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers: expected {expect}, got {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every host serves `version` of the shop: its page reads the migrated table, and its
/// static file comes from nginx with a cache header.
pub(crate) fn shop_serves(tb: &Testbed, version: &str, note: bool) {
    for s in &tb.servers {
        let (status, body) = http_get(s.http_port, SHOP, "/items");
        assert_eq!(status, 200, "{}: {body}", s.name);
        assert!(
            body.starts_with(&format!("items {version}")),
            "{}: {body}",
            s.name
        );
        assert!(body.contains("apple"), "{}: {body}", s.name);
        assert_eq!(
            body.contains("note=added in 2.0.0"),
            note,
            "{}: {body}",
            s.name
        );
        let head = exec(
            &s.container,
            &format!("curl -si -H 'Host: {SHOP}' http://127.0.0.1/static/shop/style.css"),
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", s.name);
        assert!(
            head.contains("Cache-Control: public, max-age=3600"),
            "{}: {head}",
            s.name
        );
        assert!(
            head.contains(&format!("/* shop {version} */")),
            "{}: {head}",
            s.name
        );
    }
}

pub(crate) fn release(gw: &Gateway, token: &str, app: &str, version: &str) -> support::CliRun {
    gw.run(
        Some(token),
        &["release", app, version, "-e", "staging", "--yes"],
    )
}

#[test]
fn a_django_app_migrates_once_serves_static_files_and_its_workers_follow_the_release() {
    let tb = Testbed::up_with_db("real-django", 3);
    tb.set_inventory(&inventory(&tb));
    let gw = gateway(&tb);
    let admin = gw.token("ann", "*", true);

    let r = release(&gw, &admin, "shop", "1.0.0");
    assert_eq!(r.code, 0, "{r:?}");
    let log = gw.run(Some(&admin), &["logs", &r.job_id()]);
    let out = log.stdout.clone() + &log.stderr;
    // The migration ran once, on the first host; collectstatic on every host.
    assert_eq!(
        out.matches("Applying shop.0001_initial... OK").count(),
        1,
        "{out}"
    );
    assert_eq!(
        out.matches("copied to '/srv/apps/shop/releases/1.0.0/static'")
            .count(),
        3,
        "{out}"
    );
    assert_eq!(
        tb.sql("SELECT count(*) FROM django_migrations WHERE app = 'shop'"),
        "1"
    );
    shop_serves(&tb, "1.0.0", false);
    workers_on(&tb, "1.0.0", 6);
    // The env file's secrets never show, not even in a hook's output.
    let (_, pw) = tb.db.as_ref().unwrap();
    assert!(!out.contains(pw.as_str()), "{out}");

    // A re-deploy runs no hook again.
    let r = release(&gw, &admin, "shop", "1.0.0");
    assert_eq!(r.code, 0, "{r:?}");
    let out = gw.run(Some(&admin), &["logs", &r.job_id()]).stdout;
    assert!(
        !out.contains("Applying") && !out.contains("copied"),
        "{out}"
    );
    // ... and changes nothing: no env file written, no slot restarted.
    let steps: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(": env_file ") || l.contains(": start "))
        .collect();
    assert_eq!(steps.len(), 6, "{out}");
    assert!(steps.iter().all(|l| l.contains(" ok ")), "{steps:#?}");

    // An upgrade with a second migration; the workers move to it.
    let r = release(&gw, &admin, "shop", "2.0.0");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        tb.sql("SELECT count(*) FROM django_migrations WHERE app = 'shop'"),
        "2"
    );
    shop_serves(&tb, "2.0.0", true);
    workers_on(&tb, "2.0.0", 6);
    // `status --live` shows every process per host, with the release it really runs.
    let st = gw.run(Some(&admin), &["status", "shop", "-e", "staging", "--live"]);
    assert_eq!(st.code, 0, "{st:?}");
    for s in &tb.servers {
        let row = st
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {} ", s.name)));
        let row = row.unwrap_or_else(|| panic!("no row for {}: {}", s.name, st.stdout));
        for p in ["shop-worker-0 running 2.0.0", "shop-worker-1 running 2.0.0"] {
            assert!(row.contains(p), "{p}: {row}");
        }
        assert!(row.contains("stopped"), "the idle slot: {row}");
    }

    // A release whose migration fails: no host switches, the error is in the log.
    let r = release(&gw, &admin, "shop", "2.1.0");
    assert_eq!(r.code, 1, "{r:?}");
    let log = gw.run(Some(&admin), &["logs", &r.job_id()]);
    let out = log.stdout + &log.stderr;
    assert!(out.contains("migration 0003 fails on purpose"), "{out}");
    shop_serves(&tb, "2.0.0", true);
    workers_on(&tb, "2.0.0", 6);

    // A rollback puts web and workers back (on the newer schema: 0002 only adds a column).
    let r = gw.run(
        Some(&admin),
        &["rollback", "shop", "-e", "staging", "--yes"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    shop_serves(&tb, "1.0.0", false);
    workers_on(&tb, "1.0.0", 6);
}

#[test]
fn an_asgi_app_serves_under_uvicorn_and_each_app_is_walled_off_as_its_own_user() {
    let tb = Testbed::up_with_db("real-asgi", 1);
    tb.set_inventory(&inventory(&tb));
    let gw = gateway(&tb);
    let admin = gw.token("ann", "*", true);
    for app in ["asgi", "hello"] {
        let r = release(&gw, &admin, app, "1.0.0");
        assert_eq!(r.code, 0, "{app}: {r:?}");
    }
    let web1 = tb.server("web1");
    let (status, body) = http_get(web1.http_port, "asgi.example.test", "/");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"server\":\"uvicorn\"") || body.contains("\"server\": \"uvicorn\""),
        "{body}"
    );

    // Every process runs as its app's user.
    let ps = exec(&web1.container, "ps -eo user:20,args | grep [g]unicorn");
    for line in ps.lines() {
        let user = line.split_whitespace().next().unwrap();
        let app = if line.contains("/srv/apps/asgi/") {
            "app-asgi"
        } else {
            "app-hello"
        };
        assert_eq!(user, app, "{ps}");
    }
    // From inside: no sudo, no other app's secrets, no deploy user's keys, and the
    // release is read-only; shared/data is the one place it may write.
    let as_app = |script: &str| -> i32 {
        std::process::Command::new("docker")
            .args([
                "exec",
                "-u",
                "app-asgi",
                &web1.container,
                "sh",
                "-c",
                script,
            ])
            .output()
            .unwrap()
            .status
            .code()
            .unwrap_or(-1)
    };
    assert_ne!(as_app("sudo -n true"), 0, "sudo");
    assert_ne!(
        as_app("cat /srv/apps/hello/shared/env"),
        0,
        "another app's env"
    );
    assert_ne!(
        as_app("ls /srv/apps/hello/releases"),
        0,
        "another app's releases"
    );
    assert_ne!(
        as_app("cat /home/deploy/.ssh/authorized_keys"),
        0,
        "deploy's keys"
    );
    assert_ne!(
        as_app("touch /srv/apps/asgi/releases/1.0.0/x"),
        0,
        "release writable"
    );
    assert_ne!(
        as_app("ln -sfn x /srv/apps/asgi/run/live.sock"),
        0,
        "live pointer"
    );
    assert_eq!(
        as_app("cat /srv/apps/asgi/shared/env >/dev/null"),
        0,
        "its own env"
    );
    assert_eq!(
        as_app("touch /srv/apps/asgi/shared/data/x"),
        0,
        "shared/data"
    );
    assert_ne!(as_app("grep -q . /etc/shadow"), 0, "shadow");
    // Logs: each app's in its own closed directory (issue 26): its own readable, not
    // another's; the deploy user's home is closed; `deploy app-logs` still reads them.
    let root = |script: &str| exec(&web1.container, script);
    assert_eq!(
        root("test -s /srv/apps/hello/logs/hello-blue.log && echo yes"),
        "yes\n",
        "hello's log is there"
    );
    assert_eq!(
        root("ls /var/log/supervisor | grep -c hello || true"),
        "0\n"
    );
    assert_ne!(
        as_app("cat /srv/apps/hello/logs/hello-blue.log"),
        0,
        "another app's log"
    );
    assert_ne!(as_app("ls /srv/apps/hello/logs"), 0, "another app's logs");
    assert_eq!(
        as_app("cat /srv/apps/asgi/logs/asgi-blue.log >/dev/null"),
        0,
        "its own log"
    );
    assert_ne!(as_app("ls /home/deploy"), 0, "the deploy user's home");
    let logs = gw.run(
        Some(&admin),
        &["app-logs", "hello", "-e", "staging", "-n", "5"],
    );
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(logs.stdout.starts_with("web1 | "), "{}", logs.stdout);
}
