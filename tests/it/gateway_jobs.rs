//! The front door with real servers: a deploy through the `deploy` CLI to three
//! containers, status and ledger, the per-(app, env) lock, a CLI killed mid-deploy, `logs
//! --follow`, SSE resume with Last-Event-ID, a gateway killed mid-job, and secrets that
//! must never show.

use crate::support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Waits for a job to be running and returns its id.
fn running_job(gw: &Gateway, token: &str) -> String {
    let mut id = String::new();
    wait_until(30, "a job to run", || {
        let (_, _, body) = gw.http("GET", "/v1/jobs", Some(token), None);
        match json(&body)
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["state"] == "running")
        {
            Some(j) => {
                id = j["id"].as_str().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    id
}

fn job_state(gw: &Gateway, token: &str, id: &str) -> String {
    let (_, _, body) = gw.http("GET", &format!("/v1/jobs/{id}"), Some(token), None);
    json(&body)["state"].as_str().unwrap_or("").to_string()
}

/// Reads a job's SSE stream from `last_id`: at most `max` events (seq, data), and
/// whether the `end` event came.  Dropping out early is the "client went away" case.
fn sse(
    gw: &Gateway,
    token: &str,
    id: &str,
    last_id: u64,
    max: usize,
) -> (Vec<(u64, String)>, bool) {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(format!("{}/v1/jobs/{id}/events", gw.url))
            .bearer_auth(token)
            .header("Last-Event-ID", last_id.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut stream = resp.bytes_stream();
        let (mut buf, mut out) = (String::new(), Vec::new());
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(pos) = buf.find("\n\n") {
                let frame: String = buf.drain(..pos + 2).collect();
                let (mut seq, mut kind, mut data) = (None, "", String::new());
                for l in frame.lines() {
                    if let Some(v) = l.strip_prefix("id: ").or(l.strip_prefix("id:")) {
                        seq = v.trim().parse().ok();
                    } else if let Some(v) = l.strip_prefix("event: ").or(l.strip_prefix("event:")) {
                        kind = if v.trim() == "end" { "end" } else { "event" };
                    } else if let Some(v) = l.strip_prefix("data: ").or(l.strip_prefix("data:")) {
                        data.push_str(v);
                    }
                }
                if kind == "end" {
                    return (out, true);
                }
                if let Some(seq) = seq {
                    out.push((seq, data));
                    if out.len() >= max {
                        return (out, false);
                    }
                }
            }
        }
        (out, false)
    })
}

#[test]
fn cli_deploys_through_the_gateway_with_lock_detach_and_resume() {
    let tb = Testbed::up("gw-jobs", 3);
    const API_KEY: &str = "s3cr3t-api-key-value-7f3a";
    tb.set_inventory(&tb.inventory_text().replace(
        "      GREETING: hello from the inventory\n",
        &format!("      GREETING: hello from the inventory\n      API_KEY: {API_KEY}\n"),
    ));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let admin = gw.token("root", "", true);
    let mut outputs = Vec::new();

    // 1. A deploy through the CLI ends with every server serving it.
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("job succeeded"), "{r:?}");
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0");
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(&s.name) && l.contains("changed")),
            "summary row for {}: {}",
            s.name,
            r.stdout
        );
    }
    outputs.push(r);
    // The bastion's metrics count it: the job, each host's steps; never names or secrets.
    let (code, _, metrics) = gw.http("GET", "/metrics", Some(&ann), None);
    assert_eq!(code, 200, "{metrics}");
    for line in [
        "deploy_jobs_total{kind=\"deploy\",state=\"succeeded\"} 1",
        "deploy_job_duration_seconds_count{kind=\"deploy\"} 1",
        "deploy_step_duration_seconds_count{step=\"switch\",status=\"changed\"} 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("web1") && !metrics.contains("hello"),
        "{metrics}"
    );
    assert_eq!(gw.http("GET", "/metrics", None, None).0, 401);
    // `deploy status` shows the release per host; the ledger records it.
    let r = gw.run(Some(&ann), &["status", "hello", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    for s in &tb.servers {
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains(&s.name))
            .unwrap_or_else(|| panic!("{}", r.stdout));
        assert!(line.contains("1.0.0") && line.contains("ann"), "{line}");
    }
    outputs.push(r);
    let (_, _, body) = gw.http("GET", "/v1/ledger?app=hello", Some(&ann), None);
    let ledger = json(&body);
    assert_eq!(ledger.as_array().unwrap().len(), 3, "{body}");
    for e in ledger.as_array().unwrap() {
        assert_eq!(
            (
                e["version"].as_str(),
                e["user"].as_str(),
                e["result"].as_str()
            ),
            (Some("1.0.0"), Some("ann"), Some("changed"))
        );
        assert!(e["from_version"].is_null());
        // Each row's environment hash is what that host's release marker records (one
        // build, shipped: the same on all three).
        let host = e["host"].as_str().unwrap();
        let marker = exec(
            &tb.server(host).container,
            "cat /srv/apps/hello/releases/1.0.0/.deploy-release",
        );
        let env = e["env_sha256"].as_str().unwrap_or_else(|| panic!("{e}"));
        assert!(
            marker.trim_end().ends_with(&format!("env={env}")),
            "{marker}"
        );
        assert_eq!(env, ledger[0]["env_sha256"].as_str().unwrap(), "{body}");
    }

    // 2. While a deploy runs, a second one is refused naming the holder; killing the CLI
    //    does not stop the job; `logs --follow` replays it.
    let mut child = gw
        .cli(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = running_job(&gw, &ann);
    let r = gw.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(
        r.stderr.contains("a job of ann is running") && r.stderr.contains(&job),
        "{r:?}"
    );
    outputs.push(r);
    child.kill().unwrap();
    let _ = child.wait();
    wait_until(120, "the job to finish without its CLI", || {
        job_state(&gw, &ann, &job) != "running"
    });
    assert_eq!(job_state(&gw, &ann, &job), "succeeded");
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.1.0");
    }
    let r = gw.run(Some(&ann), &["logs", &job, "--follow"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("job: deploy hello 1.1.0 to staging on 3 host(s)"),
        "{}",
        r.stdout
    );
    for s in &tb.servers {
        assert!(
            r.stdout.contains(&format!(
                "{}: switch changed live -> hello-green: 1.0.0 -> 1.1.0 (no reload)",
                s.name
            )),
            "{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains("job succeeded"));
    outputs.push(r);

    // `deploy versions` lists the index's versions and marks where each runs.
    let r = gw.run(Some(&ann), &["versions", "hello"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "1.0.0");
    assert!(
        lines[1].starts_with("1.1.0  <- ")
            && lines[1].contains("staging/web1")
            && lines[1].contains("staging/web3"),
        "{r:?}"
    );
    assert_eq!(lines[2], "1.2.0");

    // Ctrl-C detaches: the CLI says how to re-attach and exits 130; the job goes on.
    let child = gw
        .cli(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job3 = running_job(&gw, &ann);
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("deploy logs {job3} --follow")),
        "{stderr}"
    );
    wait_until(120, "the detached job to finish", || {
        job_state(&gw, &ann, &job3) != "running"
    });
    assert_eq!(job_state(&gw, &ann, &job3), "succeeded");
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0");
    }

    // 3. SSE resume: a client that drops mid-job and reconnects with Last-Event-ID gets
    //    every event exactly once, in order.
    let (status, _, body) = gw.http(
        "POST",
        "/v1/deployments",
        Some(&ann),
        Some(r#"{"app":"hello","env":"staging","version":"1.1.0"}"#),
    );
    assert_eq!(status, 202, "{body}");
    let id2 = json(&body)["id"].as_str().unwrap().to_string();
    let (first, ended) = sse(&gw, &ann, &id2, 0, 5);
    assert!(!ended && first.len() == 5);
    assert_eq!(
        job_state(&gw, &ann, &id2),
        "running",
        "the drop must happen mid-job"
    );
    let last = first.last().unwrap().0;
    let (rest, ended) = sse(&gw, &ann, &id2, last, usize::MAX);
    assert!(ended, "the stream ends with the job");
    let got: Vec<(u64, String)> = first.into_iter().chain(rest).collect();
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    let (_, _, log) = gw.http("GET", &format!("/v1/jobs/{id2}/log"), Some(&ann), None);
    let stored: Vec<u64> = json(&log)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    assert_eq!(seqs, stored);
    assert!(got.last().unwrap().1.contains("\"type\":\"job_finished\""));

    // 4. Secrets never show: not the tokens, not the SSH key, not env values.
    let key = std::fs::read_to_string(tb.path("id_ed25519")).unwrap();
    let key_lines: Vec<&str> = key
        .lines()
        .filter(|l| l.len() > 20 && !l.starts_with("-----"))
        .collect();
    assert!(!key_lines.is_empty());
    assert!(
        exec(
            &tb.server("web1").container,
            "cat /srv/apps/hello/shared/env"
        )
        .contains(API_KEY),
        "the secret is deployed"
    );
    let mut haystacks = vec![
        ("gateway log", gw.log()),
        (
            "state file",
            String::from_utf8_lossy(&gw.db_bytes()).into_owned(),
        ),
    ];
    for id in [&job, &id2] {
        let (_, _, log) = gw.http("GET", &format!("/v1/jobs/{id}/log"), Some(&admin), None);
        haystacks.push(("events", log));
    }
    for r in &outputs {
        haystacks.push(("CLI output", format!("{}{}", r.stdout, r.stderr)));
    }
    let (_, _, audit) = gw.http("GET", "/v1/audit", Some(&admin), None);
    haystacks.push(("audit", audit));
    for (what, text) in &haystacks {
        for secret in [ann.as_str(), admin.as_str(), API_KEY]
            .iter()
            .chain(key_lines.iter())
        {
            assert!(!text.contains(secret), "a secret leaked into the {what}");
        }
    }
    assert!(
        haystacks.iter().any(|(_, t)| t.contains("API_KEY=***")),
        "the env diff shows the key name, masked"
    );
}

#[test]
fn a_gateway_killed_mid_job_marks_it_interrupted_and_frees_the_lock() {
    let tb = Testbed::up("gw-restart", 2);
    let mut gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let (status, _, body) = gw.http(
        "POST",
        "/v1/deployments",
        Some(&ann),
        Some(r#"{"app":"hello","env":"staging","version":"1.0.0"}"#),
    );
    assert_eq!(status, 202, "{body}");
    let id = json(&body)["id"].as_str().unwrap().to_string();
    wait_until(30, "the job to reach pip", || {
        let (_, _, log) = gw.http("GET", &format!("/v1/jobs/{id}/log"), Some(&ann), None);
        log.contains("\"step\":\"install\"")
    });
    gw.restart(); // SIGKILL, then start again on the same state file
    assert_eq!(job_state(&gw, &ann, &id), "interrupted");
    assert!(gw.log().contains(&format!("job {id} was interrupted")));
    let (_, _, log) = gw.http("GET", &format!("/v1/jobs/{id}/log"), Some(&ann), None);
    let last = json(&log).as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["type"], "job_finished");
    assert_eq!(last["event"]["status"], "interrupted");
    // `logs --follow` on it ends at once, with the job-failed code.
    let r = gw.run(Some(&ann), &["logs", &id, "--follow"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("job interrupted"), "{r:?}");
    // The lock is free: a new deploy is accepted and finishes the work.
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0");
    }

    // `deploy cancel`: hosts stop before their next step; each still serves a release.
    let (status, _, body) = gw.http(
        "POST",
        "/v1/deployments",
        Some(&ann),
        Some(r#"{"app":"hello","env":"staging","version":"1.1.0"}"#),
    );
    assert_eq!(status, 202, "{body}");
    let id = json(&body)["id"].as_str().unwrap().to_string();
    let r = gw.run(Some(&ann), &["cancel", &id]);
    assert_eq!(r.code, 0, "{r:?}");
    wait_until(120, "the cancelled job to end", || {
        job_state(&gw, &ann, &id) != "running"
    });
    assert_eq!(job_state(&gw, &ann, &id), "cancelled");
    let r = gw.run(Some(&ann), &["logs", &id]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("cancelled before step"), "{r:?}");
    for s in &tb.servers {
        let v = served_version(s);
        assert!(v == "1.0.0" || v == "1.1.0", "{}: {v}", s.name);
    }
    let r = gw.run(Some(&ann), &["cancel", &id]);
    assert_eq!(r.code, 2, "cancelling a finished job is refused: {r:?}");
}
