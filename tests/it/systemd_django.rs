//! The Django sample (tests/django-app) on servers whose process manager is systemd
//! (`Testbed::up_systemd`: systemd as PID 1), through the gateway and the CLI: migrations
//! once, static files, two workers per host as instances of a templated unit, and an
//! upgrade and a restart under keep-alive load with POSTs, with no failed request.

use std::time::{Duration, Instant};

use crate::real_apps::{SHOP, gateway, inventory, release, shop_serves, workers_on};
use crate::support::load::{KeepAliveLoad, Site};
use crate::support::{Testbed, exec};

/// The shop's pages under load: `/items` reads the database; POSTs go to `/orders`.
const SHOP_SITE: Site = Site {
    host: SHOP,
    get: "/items",
};

/// The real-apps inventory with the shop's environment on systemd too (the test bed
/// puts only the sample app's on it).
fn systemd_inventory(tb: &Testbed) -> String {
    let inv = inventory(tb);
    let shop_env = "    drain_secs: 1\n    environments:\n      staging:\n        groups: [web]\n";
    assert!(inv.contains(shop_env), "{inv}");
    inv.replacen(
        shop_env,
        &format!("{shop_env}        process_manager: systemd\n"),
        1,
    )
}

#[test]
fn a_django_app_on_systemd_migrates_once_and_upgrades_and_restarts_under_load_with_no_failed_request()
 {
    let t = Instant::now();
    let tb = Testbed::up_systemd("sd-django", 2, &["--postgres"]);
    tb.set_inventory(&systemd_inventory(&tb));
    let gw = gateway(&tb);
    let admin = gw.token("ann", "*", true);

    let r = release(&gw, &admin, "shop", "1.0.0");
    assert_eq!(r.code, 0, "{r:?}");
    let log = gw.run(Some(&admin), &["logs", &r.job_id()]);
    let out = log.stdout + &log.stderr;
    assert_eq!(
        out.matches("Applying shop.0001_initial... OK").count(),
        1,
        "{out}"
    );
    shop_serves(&tb, "1.0.0", false);
    workers_on(&tb, "1.0.0", 4);
    for s in &tb.servers {
        // The workers are instances of the templated unit, as the app's user.
        let units = exec(
            &s.container,
            "systemctl list-units --plain --no-legend --state=active 'deploy-shop-worker@*' | awk '{print $1}'",
        );
        assert_eq!(
            units.split_whitespace().collect::<Vec<_>>(),
            [
                "deploy-shop-worker@0.service",
                "deploy-shop-worker@1.service"
            ],
            "{}",
            s.name
        );
        let user = exec(
            &s.container,
            "systemctl show -p User --value deploy-shop-worker@0",
        );
        assert_eq!(user.trim(), "app-shop", "{}", s.name);
    }
    eprintln!("set up and first deploy: {:?}", t.elapsed());

    // An upgrade with a migration, then a restart, while keep-alive clients send GETs
    // (the database) and POSTs to every host.
    let p = Instant::now();
    let load = KeepAliveLoad::on_site(SHOP_SITE, &tb.servers, 2, Duration::from_millis(5));
    let r = release(&gw, &admin, "shop", "2.0.0");
    assert_eq!(r.code, 0, "{r:?}");
    let r = gw.run(Some(&admin), &["restart", "shop", "-e", "staging", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::thread::sleep(Duration::from_millis(500));
    let seen = load.stop();
    seen.assert_no_failure("the upgrade and the restart", p, 100);
    assert_eq!(
        tb.sql("SELECT count(*) FROM django_migrations WHERE app = 'shop'"),
        "2"
    );
    shop_serves(&tb, "2.0.0", true);
    workers_on(&tb, "2.0.0", 4);
    let st = gw.run(Some(&admin), &["status", "shop", "-e", "staging", "--live"]);
    assert_eq!(st.code, 0, "{st:?}");
    eprintln!("whole test: {:?}", t.elapsed());
}
