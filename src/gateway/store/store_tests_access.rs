//! The store's contract tests of what people see and may do: the ledger, the live record,
//! the deploy history, tokens, the audit trail and retention.

use super::super::Db;
use super::tests::{each, event, job, job_in, lease};
use super::*;
use deploy_wire::api::{JobState, LedgerResult};
use deploy_wire::pipeline::ArtifactRef;

fn entry(job_id: &str, app: &str, env: &str, host: &str, version: &str) -> LedgerEntry {
    LedgerEntry {
        job_id: job_id.into(),
        app: app.into(),
        env: env.into(),
        host: host.into(),
        version: version.into(),
        from_version: None,
        result: LedgerResult::Changed,
        user: "ann".into(),
        ts_ms: 1,
        artifact: None,
        env_sha256: None,
    }
}

/// (job, app, env, version) of each entry.
fn summary(entries: Vec<LedgerEntry>) -> Vec<(String, String, String, String)> {
    entries
        .into_iter()
        .map(|e| (e.job_id, e.app, e.env, e.version))
        .collect()
}

fn row(job: &str, app: &str, env: &str, version: &str) -> (String, String, String, String) {
    (job.into(), app.into(), env.into(), version.into())
}

#[test]
fn the_ledger_is_newest_first_by_app_and_scope_with_the_file_each_job_installed() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.ledger(None, 10, &Scope::All).unwrap().is_empty());
        s.start_job(&job("j1", "ann"), &lease("g"))
            .unwrap()
            .unwrap();
        s.set_job_artifact("j1", "hello-1.0.0.whl", "abc").unwrap();
        let first = LedgerEntry {
            from_version: Some("0.9".into()),
            result: LedgerResult::Ok,
            user: "bob".into(),
            ts_ms: 42,
            env_sha256: Some("e5".repeat(32)),
            ..entry("j1", "hello", "staging", "web1", "1.0.0")
        };
        s.add_ledger(&first).unwrap();
        s.add_ledger(&entry("j2", "hello", "production", "web1", "2.0"))
            .unwrap();
        s.add_ledger(&entry("j3", "shop", "staging", "web2", "3.0"))
            .unwrap();
        let all = summary(s.ledger(None, 10, &Scope::All).unwrap());
        assert_eq!(
            all,
            [
                row("j3", "shop", "staging", "3.0"),
                row("j2", "hello", "production", "2.0"),
                row("j1", "hello", "staging", "1.0.0"),
            ]
        );
        assert_eq!(summary(s.ledger(None, 1, &Scope::All).unwrap()), all[..1]);
        let hello = summary(s.ledger(Some("hello"), 10, &Scope::All).unwrap());
        assert_eq!(hello, all[1..]);
        let staging = Scope::Envs(vec!["staging".into()]);
        let seen = summary(s.ledger(None, 10, &staging).unwrap());
        assert_eq!(seen, [all[0].clone(), all[2].clone()]);
        assert_eq!(
            summary(s.ledger(Some("hello"), 10, &staging).unwrap()),
            all[2..]
        );
        assert!(s.ledger(None, 10, &Scope::Envs(vec![])).unwrap().is_empty());
        assert!(s.ledger(Some("nope"), 10, &Scope::All).unwrap().is_empty());
        // The whole entry reads back, with the file its job installed (where recorded).
        let back = s.ledger(Some("hello"), 10, &staging).unwrap().remove(0);
        assert_eq!(
            (
                back.from_version,
                back.result,
                back.user,
                back.ts_ms,
                back.host
            ),
            (
                Some("0.9".into()),
                LedgerResult::Ok,
                "bob".into(),
                42,
                "web1".into()
            )
        );
        let file = ArtifactRef {
            file: "hello-1.0.0.whl".into(),
            sha256: "abc".into(),
            commit: None,
            build: None,
        };
        assert_eq!(back.artifact, Some(file));
        assert_eq!(back.env_sha256, Some("e5".repeat(32)));
        let others = s.ledger(None, 2, &Scope::All).unwrap();
        assert!(others.iter().all(|e| e.artifact.is_none()), "{others:?}");
        assert!(others.iter().all(|e| e.env_sha256.is_none()), "{others:?}");
    });
}

#[test]
fn live_is_the_newest_good_ledger_entry_of_one_host() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.live("hello", "staging", "web1").unwrap().is_none());
        let add = |version: &str, host: &str, result: LedgerResult| {
            let e = LedgerEntry {
                result,
                ..entry(&format!("j{version}"), "hello", "staging", host, version)
            };
            s.add_ledger(&e).unwrap();
        };
        add("1", "web1", LedgerResult::Changed);
        add("2", "web1", LedgerResult::Ok);
        add("3", "web1", LedgerResult::Failed);
        add("4", "web1", LedgerResult::Unreachable);
        add("5", "web1", LedgerResult::Cancelled);
        add("6", "web2", LedgerResult::Failed);
        let live = s.live("hello", "staging", "web1").unwrap().unwrap();
        assert_eq!((live.job_id, live.version), ("j2".into(), "2".into()));
        assert!(
            s.live("hello", "staging", "web2").unwrap().is_none(),
            "never good"
        );
        assert!(s.live("hello", "production", "web1").unwrap().is_none());
        assert!(s.live("shop", "staging", "web1").unwrap().is_none());
    });
}

#[test]
fn the_live_record_is_one_row_per_host_and_the_deploy_history_is_newest_first() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let row = |host: &str, version: &str, slot: &str| LiveRow {
            app: "hello".into(),
            env: "staging".into(),
            host: host.into(),
            version: version.into(),
            slot: slot.into(),
            job_id: format!("j{version}"),
            user: "ann".into(),
            ts_ms: 7,
        };
        assert_eq!(s.live_row("hello", "staging", "web1").unwrap(), None);
        s.set_live(&[row("web1", "1.0", "blue"), row("web2", "1.0", "blue")])
            .unwrap();
        s.set_live(&[row("web1", "2.0", "green")]).unwrap();
        s.set_live(&[]).unwrap();
        let live = |host: &str| s.live_row("hello", "staging", host).unwrap();
        assert_eq!(live("web1"), Some(row("web1", "2.0", "green")));
        assert_eq!(live("web2"), Some(row("web2", "1.0", "blue")));
        assert_eq!(live("web3"), None);
        assert_eq!(s.live_row("hello", "production", "web1").unwrap(), None);
        assert_eq!(s.live_row("shop", "staging", "web1").unwrap(), None);

        assert!(s.deploy_history("hello", "staging", 10).unwrap().is_empty());
        for v in ["1.0", "2.0", "1.0", "3.0"] {
            s.add_deploy("hello", "staging", v, &format!("j{v}"))
                .unwrap();
        }
        s.add_deploy("hello", "production", "9.0", "jp").unwrap();
        s.add_deploy("shop", "staging", "8.0", "js").unwrap();
        let history = |app: &str, env: &str, limit: u32| s.deploy_history(app, env, limit).unwrap();
        assert_eq!(
            history("hello", "staging", 10),
            ["3.0", "1.0", "2.0", "1.0"]
        );
        assert_eq!(history("hello", "staging", 2), ["3.0", "1.0"]);
        assert_eq!(history("hello", "production", 10), ["9.0"]);
        assert_eq!(history("shop", "staging", 10), ["8.0"]);
        assert!(history("shop", "production", 10).is_empty());
    });
}

#[test]
fn tokens_keep_read_scopes_expiry_last_use_and_the_run_right() {
    each(|at| {
        let s = Db::open(at).unwrap();
        s.create_token(&NewToken {
            id: "t1".into(),
            hash: "h1".into(),
            user: "ann".into(),
            envs: vec!["dev".into(), "qa".into()],
            read_envs: vec!["staging".into()],
            admin: false,
            expires_ms: Some(5),
            run: true,
        })
        .unwrap();
        let t = s.token_by_hash("h1").unwrap().unwrap();
        assert_eq!((t.id.as_str(), t.user.as_str()), ("t1", "ann"));
        assert!(t.run && !t.admin && !t.revoked, "{t:?}");
        assert_eq!(
            (t.envs, t.read_envs, t.expires_ms, t.last_used_ms),
            (
                vec!["dev".to_string(), "qa".to_string()],
                vec!["staging".to_string()],
                Some(5),
                None
            )
        );
        assert!(t.created_ms > 0);
        s.touch_token("t1", 7).unwrap();
        s.touch_token("t1", 9).unwrap();
        s.touch_token("nope", 9).unwrap();
        let t = s.token_by_hash("h1").unwrap().unwrap();
        assert_eq!(t.last_used_ms, Some(9), "an expired token is found too");
        assert!(s.token_by_hash("t1").unwrap().is_none(), "by its hash only");
        // The shape before read scopes: read+write, no expiry, no `run`.
        s.add_token("t2", "h2", "root", &[], true).unwrap();
        let t = s.token_by_hash("h2").unwrap().unwrap();
        assert_eq!((t.id.as_str(), t.user.as_str()), ("t2", "root"));
        assert!(t.admin && !t.run && t.envs.is_empty() && t.read_envs.is_empty());
        assert_eq!((t.expires_ms, t.last_used_ms), (None, None));
        s.add_token("t3", "h3", "bob", &["staging".into()], false)
            .unwrap();
        let t = s.token_by_hash("h3").unwrap().unwrap();
        assert_eq!((t.envs, t.admin), (vec!["staging".to_string()], false));
    });
}

#[test]
fn a_revoked_token_is_listed_but_never_found_again() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.tokens().unwrap().is_empty());
        s.add_token("t1", "h1", "ann", &[], false).unwrap();
        s.add_token("t2", "h2", "bob", &[], false).unwrap();
        assert!(!s.revoke_token("nope").unwrap());
        assert!(s.revoke_token("t1").unwrap());
        assert!(!s.revoke_token("t1").unwrap(), "already revoked");
        assert!(s.token_by_hash("h1").unwrap().is_none());
        assert!(s.token_by_hash("h2").unwrap().is_some());
        let mut all: Vec<(String, String, bool)> = s
            .tokens()
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.user, t.revoked))
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                ("t1".to_string(), "ann".to_string(), true),
                ("t2".to_string(), "bob".to_string(), false)
            ]
        );
    });
}

#[test]
fn the_audit_trail_is_newest_first_within_its_limit() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.audit_log(10).unwrap().is_empty());
        s.audit("ann", "deploy", "hello/staging", "accepted")
            .unwrap();
        s.audit("bob", "revoke", "t1", "done").unwrap();
        s.audit("ann", "freeze", "production", "refused").unwrap();
        let log = s.audit_log(10).unwrap();
        let words: Vec<[&str; 4]> = log
            .iter()
            .map(|e| [&*e.user, &*e.action, &*e.target, &*e.outcome])
            .collect();
        assert_eq!(
            words,
            [
                ["ann", "freeze", "production", "refused"],
                ["bob", "revoke", "t1", "done"],
                ["ann", "deploy", "hello/staging", "accepted"],
            ]
        );
        assert!(log.iter().all(|e| e.ts_ms > 0));
        assert_eq!(s.audit_log(1).unwrap()[0].action, "freeze");
    });
}

#[test]
fn retention_prunes_old_finished_jobs_their_events_notifications_and_audit_rows_only() {
    each(|at| {
        let s = Db::open(at).unwrap();
        let l = lease("g");
        s.start_job(&job("old", "ann"), &l).unwrap().unwrap();
        s.append_events(&[event("old", 1, "{}"), event("old", 2, "{}")])
            .unwrap();
        s.finish_job("old", &JobEnd::plain(JobState::Succeeded, None))
            .unwrap();
        s.start_job(&job_in("running", "production"), &l)
            .unwrap()
            .unwrap();
        s.append_events(&[event("running", 1, "{}")]).unwrap();
        let note = |job: &str| super::super::NewDelivery {
            id: format!("{job}.started.hook"),
            job_id: job.into(),
            notice: "started".into(),
            route: "hook".into(),
            payload: "{}".into(),
            due_ms: 0,
        };
        s.add_deliveries(&[note("old"), note("running")]).unwrap();
        s.audit("ann", "deploy", "x", "accepted").unwrap();
        s.add_ledger(&entry("old", "hello", "staging", "web1", "1.0.0"))
            .unwrap();
        s.add_deploy("hello", "staging", "1.0.0", "old").unwrap();
        s.set_live(&[LiveRow {
            app: "hello".into(),
            env: "staging".into(),
            host: "web1".into(),
            version: "1.0.0".into(),
            slot: "blue".into(),
            job_id: "old".into(),
            user: "ann".into(),
            ts_ms: 1,
        }])
        .unwrap();
        // Older than `before_ms` goes, not as old stays: the instants read back.
        let finished = s.job("old").unwrap().unwrap().finished_ms.unwrap();
        let audited = s.audit_log(1).unwrap()[0].ts_ms;
        assert_eq!(
            s.prune(1).unwrap(),
            Pruned::default(),
            "nothing that new goes"
        );
        assert_eq!(s.prune(finished.min(audited)).unwrap(), Pruned::default());
        let pruned = s.prune(finished.max(audited) + 1).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                jobs: 1,
                events: 3, // its two, and the final one its end stored
                audit: 1,
                deliveries: 1,
                sessions: 0,
            }
        );
        assert!(s.job("old").unwrap().is_none());
        assert!(s.deliveries("old").unwrap().is_empty());
        assert_eq!(s.deliveries("running").unwrap().len(), 1);
        assert!(s.events_after("old", 0, 10).unwrap().is_empty());
        assert!(s.audit_log(10).unwrap().is_empty());
        assert!(s.job("running").unwrap().is_some(), "a running job stays");
        assert_eq!(s.events_after("running", 0, 10).unwrap().len(), 1);
        assert_eq!(s.ledger(None, 10, &Scope::All).unwrap().len(), 1, "kept");
        assert_eq!(s.deploy_history("hello", "staging", 10).unwrap(), ["1.0.0"]);
        assert!(s.live_row("hello", "staging", "web1").unwrap().is_some());
        assert!(s.live("hello", "staging", "web1").unwrap().is_some());
        let again = s.prune(finished.max(audited) + 1).unwrap();
        assert_eq!(again, Pruned::default(), "once");
    });
}
