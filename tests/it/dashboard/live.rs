//! What changes on dashboard pages while they are open, in a real browser: jobs to a host
//! that accepts connections and never answers (`silent_listener`: a job runs for the SSH
//! connect timeout, 10 s, then fails) appear on the job list and the matrix and end there
//! without a reload; a job's running time goes on, and a finished job's time is its end
//! minus its start, on the list and on its page.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Seen, get, out_dir, sign_in, wait_until};
use crate::support::browser::Browser;
use crate::support::{Gateway, inventory_on_port, silent_listener};

/// The gateway's `view::duration`, as the pages must print it.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match () {
        _ if d > 0 => format!("{d}d {h}h"),
        _ if h > 0 => format!("{h}h {m}m"),
        _ if m > 0 => format!("{m}m {s}s"),
        _ => format!("{s}s"),
    }
}

/// Seconds in `1m 12s` or `9s`.
fn seconds(text: &str) -> u64 {
    text.split_whitespace()
        .map(|p| {
            let (n, unit) = p.split_at(p.len() - 1);
            let n: u64 = n.parse().unwrap_or_else(|_| panic!("a duration: {text:?}"));
            n * match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => 86_400,
            }
        })
        .sum()
}

/// Marks the page, so that a reload (which would forget the mark) is seen.
fn mark(b: &Browser) {
    b.execute("window.__not_reloaded = true;", json!([]));
}

fn still_marked(b: &Browser) -> bool {
    b.execute("return window.__not_reloaded === true;", json!([])) == json!(true)
}

/// Waits for the page's change notices to be connected.
fn wait_live(b: &Browser) {
    wait_until("the change notices", Duration::from_secs(10), || {
        b.execute("return document.body.dataset.changes || '';", json!([])) == json!("open")
    });
}

/// A row's state on the job list, or "" when the job is not listed.
fn listed_state(b: &Browser, id: &str) -> String {
    let v = b.execute(
        "const r = document.querySelector('#jobs tr.job[data-id=\"' + arguments[0] + '\"] .state'); \
         return r ? r.textContent : '';",
        json!([id]),
    );
    v.as_str().unwrap_or_default().to_string()
}

#[test]
fn the_job_list_and_the_matrix_show_jobs_start_and_end_without_a_reload() {
    let _one = super::ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (_silent, port) = silent_listener();
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    gw.set_inventory(&inventory_on_port(port));
    let root = gw.token("root", "", true);
    let b = Browser::start(&out_dir());
    sign_in(&b, &gw, &root, &mut Seen::default());

    b.goto(&format!("{}/ui/jobs", gw.url));
    wait_live(&b);
    mark(&b);
    let started = Instant::now();
    let id = gw.start_deploy(&root);
    wait_until("the job on the list", Duration::from_secs(5), || {
        listed_state(&b, &id) == "running"
    });
    let shown_in = started.elapsed();
    b.screenshot(&out_dir().join("jobs-live.png"));
    wait_until("the job's end on the list", Duration::from_secs(40), || {
        !matches!(listed_state(&b, &id).as_str(), "running" | "")
    });
    let ended = get(&gw, &format!("/v1/jobs/{id}"), &root);
    assert_eq!(listed_state(&b, &id), ended["state"].as_str().unwrap());
    assert!(still_marked(&b), "the job list was reloaded");
    println!("job list: the job shown {shown_in:?} after its request, then its end");

    b.goto(&format!("{}/ui/", gw.url));
    wait_live(&b);
    mark(&b);
    let running = |id: &str| {
        b.execute(
            "return !!document.querySelector('#running li[data-id=\"' + arguments[0] + '\"]');",
            json!([id]),
        ) == json!(true)
    };
    let started = Instant::now();
    let id = gw.start_deploy(&root);
    wait_until("the job under Running now", Duration::from_secs(5), || {
        running(&id)
    });
    let shown_in = started.elapsed();
    b.screenshot(&out_dir().join("matrix-running.png"));
    wait_until(
        "the job gone from Running now",
        Duration::from_secs(40),
        || !running(&id),
    );
    assert!(still_marked(&b), "the matrix was reloaded");
    println!("matrix: the job shown {shown_in:?} after its request, gone at its end");
}

#[test]
fn a_jobs_time_runs_on_while_it_runs_and_is_its_end_minus_its_start_after() {
    let _one = super::ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (_silent, port) = silent_listener();
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    gw.set_inventory(&inventory_on_port(port));
    let root = gw.token("root", "", true);
    let b = Browser::start(&out_dir());
    sign_in(&b, &gw, &root, &mut Seen::default());

    let id = gw.start_deploy(&root);
    b.goto(&format!("{}/ui/jobs/{id}", gw.url));
    let took = || b.text("#took").unwrap_or_default();
    let first = took();
    std::thread::sleep(Duration::from_millis(2500));
    let second = took();
    assert_eq!(b.text("#state").as_deref(), Some("running"), "{}", gw.log());
    assert!(
        seconds(&second) >= seconds(&first) + 2,
        "the running time stood still: {first:?} then {second:?}"
    );
    wait_until("the job's end on its page", Duration::from_secs(40), || {
        b.text("#state").as_deref() != Some("running")
    });
    let job = get(&gw, &format!("/v1/jobs/{id}"), &root);
    let (created, finished) = (
        job["created_ms"].as_u64().unwrap(),
        job["finished_ms"].as_u64().unwrap(),
    );
    let want = duration(finished - created);
    std::thread::sleep(Duration::from_millis(1500)); // a ticking time would move on
    assert_eq!(took(), want, "live, at the end");
    b.refresh();
    assert_eq!(took(), want, "the finished job's page");
    b.goto(&format!("{}/ui/jobs", gw.url));
    let listed = b.execute(
        "return document.querySelector('#jobs tr.job[data-id=\"' + arguments[0] + '\"] .took').textContent;",
        json!([id]),
    );
    assert_eq!(listed, json!(want), "the job list");
    println!("running: {first:?} then {second:?}; finished: {want}");
}
