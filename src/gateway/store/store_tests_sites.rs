//! The store's contract tests of sites: parts of jobs handed to other sites' runners
//! (claimed once, leased with the runner's jobs, ended once) and asks.

use super::super::{Db, NewPart, PartState};
use super::tests::{each, job, lease, lease_until};
use super::*;
use deploy_wire::api::JobState;

fn part(job: &str, host: &str, site: &str) -> NewPart {
    NewPart {
        id: format!("{job}/{host}"),
        job_id: job.into(),
        host: host.into(),
        site: site.into(),
        rollback_to: None,
        wheel: Some(format!(
            "{} hello_app-1.0.0-py3-none-any.whl",
            "ab".repeat(32)
        )),
        epoch: 7,
    }
}

#[test]
fn a_part_is_claimed_once_by_its_sites_runners_and_ended_once_by_its_claimer() {
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        a.start_job(&job("j1", "ann"), &lease("front"))
            .unwrap()
            .unwrap();
        for (host, site) in [("web1", "a"), ("web2", "a"), ("web4", "b")] {
            a.add_part(&part("j1", host, site)).unwrap();
        }
        // Two runners of site a race: each part goes to one of them.
        let (x, y) = std::thread::scope(|s| {
            let x = s.spawn(|| a.claim_parts("a", &lease("runner-a1"), 8).unwrap());
            let y = s.spawn(|| b.claim_parts("a", &lease("runner-a2"), 8).unwrap());
            (x.join().unwrap(), y.join().unwrap())
        });
        let mut ids: Vec<String> = x.iter().chain(&y).map(|p| p.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["j1/web1", "j1/web2"]);
        let p = x.iter().chain(&y).find(|p| p.host == "web1").unwrap();
        assert_eq!(
            (p.state, p.epoch, p.site.as_str()),
            (PartState::Running, 7, "a")
        );
        assert_eq!(p.wheel, part("j1", "web1", "a").wheel);
        let owner = p.owner.clone().unwrap();
        assert!(
            a.claim_parts("a", &lease("runner-a3"), 8)
                .unwrap()
                .is_empty()
        );
        // Events in order, after a sequence number.
        let ev = |n: u64| (n, format!("{{\"n\":{n}}}"));
        a.add_part_events("j1/web1", &[ev(1), ev(2)]).unwrap();
        a.add_part_events("j1/web1", &[ev(3)]).unwrap();
        assert_eq!(b.part_events_after("j1/web1", 1).unwrap(), [ev(2), ev(3)]);
        // Only its claimer ends it, once; its result is kept.
        assert!(
            !b.set_part_state(
                "j1/web1",
                PartState::Running,
                PartState::Done,
                Some("other"),
                Some("{}")
            )
            .unwrap()
        );
        assert!(
            b.set_part_state(
                "j1/web1",
                PartState::Running,
                PartState::Done,
                Some(&owner),
                Some("{\"ok\":1}")
            )
            .unwrap()
        );
        assert!(
            !b.set_part_state("j1/web1", PartState::Running, PartState::Lost, None, None)
                .unwrap()
        );
        let done = b.part("j1/web1").unwrap().unwrap();
        assert_eq!(
            (done.state, done.result.as_deref()),
            (PartState::Done, Some("{\"ok\":1}"))
        );
        // A queued part nobody took is abandoned once; a claim then skips it.
        assert!(
            a.set_part_state(
                "j1/web4",
                PartState::Queued,
                PartState::Abandoned,
                None,
                None
            )
            .unwrap()
        );
        assert!(
            b.claim_parts("b", &lease("runner-b"), 8)
                .unwrap()
                .is_empty()
        );
        assert_eq!(a.part("nope").unwrap(), None);
    });
}

#[test]
fn a_runners_parts_are_renewed_and_cancelled_with_its_jobs_while_their_job_runs() {
    each(|at| {
        let s = Db::open(at).unwrap();
        s.start_job(&job("j1", "ann"), &lease("front"))
            .unwrap()
            .unwrap();
        s.add_part(&part("j1", "web4", "b")).unwrap();
        s.add_part(&NewPart {
            id: "j1/web5".into(),
            host: "web5".into(),
            ..part("j1", "web5", "b")
        })
        .unwrap();
        let short = lease_until("runner-b", 5_000);
        assert_eq!(s.parts_running("j1").unwrap(), 0);
        assert_eq!(s.claim_parts("b", &short, 8).unwrap().len(), 2);
        assert_eq!(s.parts_running("j1").unwrap(), 2);
        let mut held = s.renew_leases(&lease("runner-b")).unwrap();
        held.sort();
        assert_eq!(held, ["j1/web4", "j1/web5"]);
        assert!(s.part("j1/web4").unwrap().unwrap().lease_until.unwrap() > 5_000);
        // The job's process asks one part to stop: the runner reads it with its jobs'.
        s.cancel_part("j1/web4").unwrap();
        assert!(s.part("j1/web4").unwrap().unwrap().cancel);
        assert_eq!(s.cancel_requests("runner-b").unwrap(), ["j1/web4"]);
        // The job ends (its process died and it was interrupted): no part is held.
        assert!(
            s.finish_job("j1", &JobEnd::plain(JobState::Interrupted, None))
                .unwrap()
        );
        assert!(s.renew_leases(&lease("runner-b")).unwrap().is_empty());
        // A runner's restart marks its previous life's running parts lost.
        let mut lost = s.lose_parts_of("runner-b").unwrap();
        lost.sort();
        assert_eq!(lost, ["j1/web4", "j1/web5"]);
        assert_eq!(s.part("j1/web5").unwrap().unwrap().state, PartState::Lost);
        assert_eq!(s.parts_running("j1").unwrap(), 0);
        // Parts of a job no longer running are never claimed.
        s.add_part(&NewPart {
            id: "j1/web6".into(),
            host: "web6".into(),
            ..part("j1", "web6", "b")
        })
        .unwrap();
        assert!(
            s.claim_parts("b", &lease("runner-b"), 8)
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn an_ask_is_claimed_once_by_its_sites_runner_answered_and_forgotten() {
    each(|at| {
        let (a, b) = (Db::open(at).unwrap(), Db::open(at).unwrap());
        a.add_ask("q1", "b", "hello", "staging").unwrap();
        assert!(a.claim_asks("a", "runner-a", 8).unwrap().is_empty());
        assert_eq!(a.ask_answer("q1").unwrap(), None);
        let (x, y) = std::thread::scope(|s| {
            let x = s.spawn(|| a.claim_asks("b", "runner-b1", 8).unwrap());
            let y = s.spawn(|| b.claim_asks("b", "runner-b2", 8).unwrap());
            (x.join().unwrap(), y.join().unwrap())
        });
        let claimed = [x, y].concat();
        assert_eq!(
            claimed,
            [("q1".to_string(), "hello".to_string(), "staging".to_string())]
        );
        b.answer_ask("q1", "[]").unwrap();
        assert_eq!(a.ask_answer("q1").unwrap().as_deref(), Some("[]"));
        a.drop_ask("q1").unwrap();
        assert_eq!(a.ask_answer("q1").unwrap(), None);
    });
}
