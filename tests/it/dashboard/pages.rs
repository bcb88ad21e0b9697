//! What every dashboard page shows, in a real browser, against a gateway whose hosts
//! cannot be reached (no containers): the matrix in the inventory's order, with a frozen
//! environment and one outside its deploy windows badged until when (the words of the
//! API's refusal), and "Check the hosts" marking unreachable hosts; the navigation on
//! every page and error page; a failed job whose summary, last line and row on the job
//! list say what its hosts' table says.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Seen, get, out_dir, sign_in, wait_until};
use crate::support::browser::Browser;
use crate::support::{Gateway, OFFLINE_INVENTORY};

/// A gateway on `inventory`, a browser signed in as an admin (`root`) or as `ann`.
fn signed_in(inventory: &str, admin: bool) -> (Gateway, String, Browser) {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    gw.set_inventory(inventory);
    let token = if admin {
        gw.token("root", "", true)
    } else {
        gw.token("ann", "*", false)
    };
    let b = Browser::start(&out_dir());
    sign_in(&b, &gw, &token, &mut Seen::default());
    (gw, token, b)
}

fn texts(b: &Browser, script: &str) -> Value {
    b.execute(script, json!([]))
}

#[test]
fn the_matrix_lists_environments_in_the_inventorys_order() {
    let _one = super::ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    // Neither alphabetical nor its reverse.
    let inventory = OFFLINE_INVENTORY
        .replace(
            "      staging: {groups: [web]}\n      production: {groups: [prod]}\n",
            "      staging: {groups: [web]}\n      production: {groups: [prod]}\n      canary: {groups: [can]}\n",
        )
        .replace(
            "  prod1: {address: 127.0.0.1, port: 1, groups: [prod]}\n",
            "  prod1: {address: 127.0.0.1, port: 1, groups: [prod]}\n  can1: {address: 127.0.0.1, port: 1, groups: [can]}\n",
        );
    let (_gw, _, b) = signed_in(&inventory, true);
    let envs = texts(
        &b,
        "return Array.from(document.querySelectorAll('#matrix tr.env-row'), r => r.dataset.env);",
    );
    assert_eq!(
        envs,
        json!(["staging", "production", "canary"]),
        "{}",
        b.source()
    );
}

/// `YYYY-MM-DDTHH:00`, `days` from now (UTC).
fn utc_in_days(days: u32) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("+{days} days"), "+%Y-%m-%dT%H:00"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A day of the week that is not today (UTC), as a window names it.
fn another_day() -> &'static str {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    // 1970-01-01 was a Thursday.
    ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days as usize + 3) % 7]
}

#[test]
fn a_frozen_environment_and_one_outside_its_windows_say_so_until_when() {
    let _one = super::ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let window = format!("{} 10:00-11:00 UTC", another_day());
    let inventory = OFFLINE_INVENTORY.replace(
        "staging: {groups: [web]}",
        &format!("staging: {{groups: [web], windows: [\"{window}\"]}}"),
    );
    let (gw, root, b) = signed_in(&inventory, true);
    let until = utc_in_days(30);
    let freeze =
        json!({"env": "production", "until": until, "tz": "UTC", "reason": "release party"});
    let (status, _, body) = gw.http(
        "POST",
        "/v1/freezes",
        Some(&root),
        Some(&freeze.to_string()),
    );
    assert!((200..300).contains(&status), "{status} {body}");

    // What a deploy to each is refused with: the badge says the same, until the same time.
    let mut refusals = Vec::new();
    for env in ["staging", "production"] {
        let req = json!({"app": "hello", "env": env, "version": "1.0.0"}).to_string();
        let (status, _, body) = gw.http("POST", "/v1/deployments", Some(&root), Some(&req));
        assert_eq!(status, 409, "{env}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        refusals.push(v["message"].as_str().unwrap().to_string());
    }
    b.goto(&format!("{}/ui/", gw.url));
    let badges = texts(
        &b,
        "return Array.from(document.querySelectorAll('#matrix tr.env-row'), r => { \
           const s = r.querySelector('.badge.shut'); \
           return [r.dataset.env, s ? s.textContent.trim() : null, s ? s.title : null]; });",
    );
    println!("badges: {badges}");
    let opens = refusals[0].rsplit("the next opens ").next().unwrap();
    let frozen_until = until.replace('T', " ") + " UTC";
    assert_eq!(
        badges,
        json!([
            [
                "staging",
                format!("outside deploy windows until {opens}"),
                refusals[0]
            ],
            [
                "production",
                format!("frozen until {frozen_until}"),
                refusals[1]
            ],
        ]),
        "{}",
        b.source()
    );
    b.screenshot(&out_dir().join("matrix-shut.png"));
}

#[test]
fn check_the_hosts_marks_a_host_that_cannot_be_reached() {
    let _one = super::ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (gw, _, b) = signed_in(OFFLINE_INVENTORY, false);
    b.goto(&format!("{}/ui/", gw.url));
    let marked = "return Array.from(document.querySelectorAll('.cell.health-unreachable'), \
                  c => [c.dataset.host, c.querySelector('.health').textContent]);";
    assert_eq!(texts(&b, marked), json!([]), "no live check, no mark");
    b.click("#check-hosts");
    assert!(
        b.wait_for(".flag", Duration::from_secs(30)),
        "{}",
        b.source()
    );
    assert_eq!(
        texts(&b, marked),
        json!([["web1", "unreachable"], ["prod1", "unreachable"]]),
        "{}",
        b.source()
    );
    let flags = b.texts(".flag.unreachable");
    assert_eq!(flags.len(), 2, "{flags:?}");
    assert!(flags[0].starts_with("!! web1: unreachable: "), "{flags:?}");
    b.screenshot(&out_dir().join("matrix-unreachable.png"));
}

/// The navigation's links and the user it names.
fn nav(b: &Browser) -> Value {
    texts(
        b,
        "return [Array.from(document.querySelectorAll('header nav a'), a => a.getAttribute('href')), \
         (document.getElementById('viewer') || {}).textContent || null];",
    )
}

#[test]
fn every_page_and_every_error_page_has_the_navigation() {
    let _one = super::ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (gw, _, b) = signed_in(OFFLINE_INVENTORY, false);
    let links = json!(["/ui/", "/ui/jobs", "/ui/ledger", "/ui/schedules"]);
    for (path, message) in [
        ("/ui/", None),
        ("/ui/jobs", None),
        ("/ui/ledger", None),
        ("/ui/schedules", None),
        ("/ui/jobs/no-such-job", Some("no job no-such-job")),
        ("/ui/no/such/page", Some("no page /ui/no/such/page")),
        ("/ui/audit", Some("needs an admin token")),
    ] {
        b.goto(&format!("{}{path}", gw.url));
        assert_eq!(nav(&b), json!([links, "ann"]), "{path}: {}", b.source());
        if let Some(m) = message {
            let shown = b.text("#message").unwrap_or_default();
            assert!(shown.contains(m), "{path}: {shown}");
        }
    }
    b.goto(&format!("{}/ui/no/such/page", gw.url));
    b.screenshot(&out_dir().join("not-found.png"));
    b.click("header nav a[href='/ui/jobs']");
    assert!(
        b.wait_for("#jobs", Duration::from_secs(10)),
        "{}",
        b.source()
    );
}

#[test]
fn a_failed_jobs_summary_names_its_hosts_ends_as_their_table_does() {
    let _one = super::ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    // Three hosts that refuse connections: the canary is unreachable, the rollout halts
    // and the other two are never started (cancelled).
    let inventory = OFFLINE_INVENTORY
        .replace("  web1: {address: 127.0.0.1, port: 1, groups: [web]}\n",
            "  web1: {address: 127.0.0.1, port: 1, groups: [web]}\n  web2: {address: 127.0.0.1, port: 1, groups: [web]}\n  web3: {address: 127.0.0.1, port: 1, groups: [web]}\n");
    let (gw, root, b) = signed_in(&inventory, true);
    let id = gw.start_deploy(&root);
    wait_until("the job's end", Duration::from_secs(60), || {
        get(&gw, &format!("/v1/jobs/{id}"), &root)["state"] != "running"
    });
    b.goto(&format!("{}/ui/jobs/{id}", gw.url));
    let states = b.texts("#hosts tr.host .state");
    let mut counted: Vec<String> = Vec::new();
    for word in ["changed", "ok", "failed", "unreachable", "cancelled"] {
        let n = states.iter().filter(|s| *s == word).count();
        if n > 0 {
            counted.push(format!("{n} {word}"));
        }
    }
    let counted = counted.join(", ");
    assert_eq!(counted, "1 unreachable, 2 cancelled", "{states:?}");
    let outcome = b.text("#outcome").unwrap_or_default();
    let last = b.texts("#log .ev.failed .t").pop().unwrap_or_default();
    println!("hosts: {states:?}; summary: {outcome:?}; last line: {last:?}");
    assert_eq!(outcome, counted);
    assert!(
        last.starts_with("failed in ") && last.ends_with(&format!(": {counted}")),
        "{last}"
    );
    b.screenshot(&out_dir().join("job-summary.png"));
    b.goto(&format!("{}/ui/jobs", gw.url));
    let listed = b.execute(
        "return document.querySelector('#jobs tr.job[data-id=\"' + arguments[0] + '\"] .outcome').textContent;",
        json!([id]),
    );
    assert_eq!(listed, json!(counted), "the job list");
}
