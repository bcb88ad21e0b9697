//! The job page's log follows new lines in a real browser, on one container: a one-off
//! command prints a line every 50 ms; the log stays at its bottom as lines come, stays
//! where the reader scrolled up to while more come, and follows again once they scroll
//! back to the bottom.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Seen, get, out_dir, post, sign_in, wait_until};
use crate::support::browser::Browser;
use crate::support::{Gateway, Testbed};

/// The log box: (lines, scrollTop, scrollHeight, clientHeight).
fn log_box(b: &Browser) -> (u64, u64, u64, u64) {
    let v = b.execute(
        "const l = document.getElementById('log'); \
         return [l.childElementCount, Math.round(l.scrollTop), l.scrollHeight, l.clientHeight];",
        json!([]),
    );
    let n = |i: usize| v[i].as_u64().unwrap();
    (n(0), n(1), n(2), n(3))
}

fn at_bottom(b: &Browser) -> bool {
    let (_, top, height, client) = log_box(b);
    height - top - client <= 24
}

fn scroll_to(b: &Browser, top: &str) {
    b.execute(
        &format!("const l = document.getElementById('log'); l.scrollTop = {top};"),
        Value::Null,
    );
}

#[test]
fn the_job_log_follows_new_lines_unless_the_reader_scrolled_up() {
    let _one = super::ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let tb = Testbed::up("dashboard-follow", 1);
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let root = gw.token("root", "", true);
    let deploy = json!({"app": "hello", "env": "staging", "version": "1.0.0"});
    let id = post(&gw, "/v1/deployments", &root, deploy)["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("the deploy", Duration::from_secs(300), || {
        get(&gw, &format!("/v1/jobs/{id}"), &root)["state"] != "running"
    });
    let b = Browser::start(&out_dir());
    sign_in(&b, &gw, &root, &mut Seen::default());

    let script = "for i in $(seq 1 600); do echo \"line $i\"; sleep 0.05; done";
    let body = json!({"app": "hello", "env": "staging", "host": "web1",
                      "command": ["sh", "-c", script]});
    let id = post(&gw, "/v1/runs", &root, body)["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.goto(&format!("{}/ui/jobs/{id}", gw.url));
    wait_until("a log longer than its box", Duration::from_secs(60), || {
        let (_, _, height, client) = log_box(&b);
        height > client + 200
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert!(at_bottom(&b), "not following: {:?}", log_box(&b));
    assert_eq!(b.text("#state").as_deref(), Some("running"));

    // Scrolled up: more lines come, the view stays where the reader is.
    scroll_to(&b, "40");
    let (lines, top, _, _) = log_box(&b);
    std::thread::sleep(Duration::from_millis(1500));
    let (more, still, _, _) = log_box(&b);
    assert!(more > lines + 10, "no lines came: {lines} -> {more}");
    assert_eq!(still, top, "the log moved under the reader");
    assert!(
        b.text("#follow")
            .unwrap_or_default()
            .starts_with("Not following")
    );
    b.screenshot(&out_dir().join("job-scrolled-up.png"));

    // Back at the bottom: it follows again.
    scroll_to(&b, "l.scrollHeight");
    let (lines, _, _, _) = log_box(&b);
    std::thread::sleep(Duration::from_millis(1500));
    let (more, _, _, _) = log_box(&b);
    assert!(more > lines + 10, "no lines came: {lines} -> {more}");
    assert!(at_bottom(&b), "not following again: {:?}", log_box(&b));
    assert_eq!(
        b.text("#state").as_deref(),
        Some("running"),
        "the command ended too soon"
    );
    println!(
        "followed, stayed put while scrolled up, followed again: {:?}",
        log_box(&b)
    );
}
