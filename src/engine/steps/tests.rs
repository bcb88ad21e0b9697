//! Each step's decision from a given snapshot of a host: ok / changed / failed, and
//! which commands it asks for.  Pure: no host, no runtime.

use deploy_wire::StepStatus;

use super::{HostState, View, decide, prune_plan};
use crate::commands::AppPaths;
use crate::facts::{Facts, Live, ReleaseState, Slot};
use crate::ops::{Decision, Op};
use crate::plan::Plan;
use crate::playbook::Step;
use crate::procman::ProcessManager;
use crate::procman::supervisord::Supervisord;
use crate::testbed::{bed, spec};

fn plan(check: bool, no_install: bool) -> Plan {
    let b = bed("{}");
    let mut s = spec("1.1.0");
    s.check = check;
    s.no_install = no_install;
    crate::plan(&b.inv, &b.cfg, &s).unwrap()
}

fn with<R>(plan: &Plan, f: impl FnOnce(&View) -> R) -> R {
    let paths = AppPaths::new("hello");
    let v = View {
        plan,
        host: &plan.hosts[0].0,
        rendered: &plan.hosts[0].1,
        paths: &paths,
        pm: plan.pm.as_ref(),
        uv: None,
    };
    f(&v)
}

/// A host where 1.0.0 runs in blue, unchanged, and everything else is as wanted.
fn settled(plan: &Plan) -> Facts {
    let r = &plan.hosts[0].1;
    Facts {
        layout: Some(true),
        release: Some(ReleaseState::Complete),
        release_detail: Default::default(),
        uv: None,
        env_file: Some(Some(r.env_file.clone())),
        live: Some(Live {
            slot: Some(0),
            version: Some("1.1.0".into()),
            current: Some("1.1.0".into()),
            legacy: false,
        }),
        slots: Some([
            Slot {
                conf: Some(r.slots[0].clone()),
                pid: Some(42),
            },
            Slot::default(),
        ]),
        nginx: Some(Some(r.nginx.clone())),
        releases: Some("1 1.0.0 complete\n2 1.1.0 complete\n".into()),
        hooks: Some(Default::default()),
        processes: Some(vec![]),
        stray_programs: Some(vec![]),
    }
}

fn lines(d: &Decision) -> Vec<String> {
    d.commands().iter().map(|c| c.line.clone()).collect()
}

fn status(d: &Decision) -> StepStatus {
    match d {
        Decision::Done(r) | Decision::Act { report: r, .. } => r.status,
        Decision::Again(_) => panic!("decides again"),
    }
}

#[test]
fn a_settled_host_is_ok_at_every_step_and_runs_nothing() {
    let p = plan(false, false);
    let f = settled(&p);
    let mut st = HostState::default();
    for step in crate::playbook::Step::ALL {
        let d = with(&p, |v| decide(step, v, &f, &mut st));
        // An app without hooks or other processes skips their steps.
        let nothing = [Step::BeforeSwitch, Step::Processes, Step::AfterSwitch];
        assert!(
            matches!(&d, Decision::Done(r) if r.status == StepStatus::Ok)
                || (step == Step::Health && status(&d) == StepStatus::Ok)
                || (nothing.contains(&step) && status(&d) == StepStatus::Skipped),
            "{step:?}: {d:?}"
        );
        if step != Step::Health {
            assert!(lines(&d).is_empty(), "{step:?}");
        }
    }
    assert_eq!(st.target, Some(0));
    assert_eq!(st.old_slot, None);
}

#[test]
fn layout_creates_the_directories_only_when_missing() {
    let p = plan(false, false);
    let mut f = settled(&p);
    f.layout = Some(false);
    let d = with(&p, |v| {
        decide(Step::Layout, v, &f, &mut HostState::default())
    });
    assert_eq!(status(&d), StepStatus::Changed);
    assert!(lines(&d)[0].contains("useradd --system"), "{d:?}");
}

#[test]
fn venv_builds_an_absent_release_and_check_mode_only_says_so() {
    let p = plan(false, false);
    let mut f = settled(&p);
    f.release = Some(ReleaseState::Absent);
    let mut st = HostState::default();
    let d = with(&p, |v| decide(Step::Venv, v, &f, &mut st));
    assert_eq!(status(&d), StepStatus::Changed);
    assert!(lines(&d)[0].contains("python3 -m venv /srv/apps/hello/releases/1.1.0"));
    let check = plan(true, false);
    let mut st = HostState::default();
    let d = with(&check, |v| decide(Step::Venv, v, &f, &mut st));
    assert!(
        matches!(&d, Decision::Done(r) if r.status == StepStatus::Changed && r.reason.starts_with("would create"))
    );
    assert!(st.would_build);
    // ... and then install says it would install, without a command.
    let d = with(&check, |v| decide(Step::Install, v, &f, &mut st));
    assert!(
        matches!(&d, Decision::Done(r) if r.reason.starts_with("would install hello-app==1.1.0"))
    );
}

#[test]
fn install_runs_on_a_partial_release_and_a_rollback_refuses_one() {
    let p = plan(false, false);
    let mut f = settled(&p);
    f.release = Some(ReleaseState::Partial);
    let d = with(&p, |v| {
        decide(Step::Install, v, &f, &mut HostState::default())
    });
    assert!(
        matches!(&d, Decision::Act { actions, .. } if matches!(actions[0].op, Op::Install { .. }))
    );
    let rollback = plan(false, true);
    let d = with(&rollback, |v| {
        decide(Step::Install, v, &f, &mut HostState::default())
    });
    assert!(
        matches!(&d, Decision::Done(r) if r.status == StepStatus::Failed && r.reason.contains("a rollback installs nothing"))
    );
}

#[test]
fn env_file_writes_on_difference_with_a_diff_that_shows_no_value() {
    let p = plan(false, false);
    let mut f = settled(&p);
    f.env_file = Some(Some("GREETING=old-secret-value\n".into()));
    let mut st = HostState::default();
    let d = with(&p, |v| decide(Step::EnvFile, v, &f, &mut st));
    let Decision::Act { actions, report } = &d else {
        panic!("{d:?}")
    };
    assert!(st.env_changed);
    assert!(
        !report
            .diff
            .clone()
            .unwrap_or_default()
            .contains("old-secret-value")
    );
    assert!(
        !format!("{actions:?}").contains("old-secret-value"),
        "stdin is never printed"
    );
}

#[test]
fn start_uses_the_idle_slot_when_something_changed_and_stops_it_on_failure() {
    let p = plan(false, false);
    let mut f = settled(&p);
    f.live.as_mut().unwrap().version = Some("1.0.0".into());
    f.slots.as_mut().unwrap()[0].conf = Some("old program".into());
    let mut st = HostState::default();
    let d = with(&p, |v| decide(Step::Start, v, &f, &mut st));
    assert_eq!(
        (st.target, st.old_slot, st.previous.as_deref()),
        (Some(1), Some(0), Some("1.0.0"))
    );
    let Decision::Act { actions, report } = &d else {
        panic!("{d:?}")
    };
    assert!(report.reason.contains("in hello-green"), "{report:?}");
    assert!(lines(&d)[0].contains("/etc/supervisor/conf.d/hello-green.conf"));
    assert_eq!(lines(&d)[1], "rm -f /srv/apps/hello/run/green@1.1.0.sock");
    assert!(lines(&d)[2].contains("supervisorctl start hello-green"));
    let probe = actions.last().unwrap();
    assert_eq!(
        probe.op,
        Op::Probe {
            socket: Some("/srv/apps/hello/run/green@1.1.0.sock".into())
        }
    );
    let undo = probe.on_fail.as_ref().unwrap();
    assert!(undo.always.iter().any(
        |o| matches!(o, Op::Run { cmd, .. } if cmd.line.contains("supervisorctl stop hello-green"))
    ));
    // An env change restarts even an unchanged live slot, in the idle one.
    let f = settled(&p);
    let mut st = HostState {
        env_changed: true,
        ..Default::default()
    };
    let d = with(&p, |v| decide(Step::Start, v, &f, &mut st));
    assert_eq!(status(&d), StepStatus::Changed);
    assert_eq!(st.target, Some(1));
}

/// `f` with `slot` running (pid 7) from a program file for `release`: a slot an
/// interrupted job left running.
fn left_running(mut f: Facts, slot: usize, release: &str) -> Facts {
    f.slots.as_mut().unwrap()[slot] = Slot {
        conf: Some(format!(
            "[program:hello-x]\ncommand=/bin/sh -c 'export DEPLOY_RELEASE={release} && exec gunicorn'\n"
        )),
        pid: Some(7),
    };
    f
}

#[test]
fn start_stops_a_slot_an_interrupted_job_left_running_and_says_so() {
    // Blue serves 1.1.0 unchanged; green still runs 1.0.0 (the job that switched away
    // from it never drained it).
    let p = plan(false, false);
    let f = left_running(settled(&p), 1, "1.0.0");
    let mut st = HostState::default();
    let d = with(&p, |v| decide(Step::Start, v, &f, &mut st));
    let Decision::Act { report, .. } = &d else {
        panic!("{d:?}")
    };
    assert_eq!(report.status, StepStatus::Changed);
    assert_eq!(
        report.reason,
        "stopped slot green (1.0.0), left running by an interrupted job; \
         hello-blue runs 1.1.0 (pid 42); nothing it depends on changed"
    );
    assert_eq!(lines(&d), [Supervisord.stop("hello-green").line]);
    assert_eq!(
        (st.target, st.old_slot, st.leftovers.clone()),
        (Some(0), None, vec![1])
    );
    // Check mode only says it, once: `drain` does not say it again.
    let check = plan(true, false);
    let mut st = HostState::default();
    let d = with(&check, |v| decide(Step::Start, v, &f, &mut st));
    assert!(
        matches!(&d, Decision::Done(r) if r.status == StepStatus::Changed
            && r.reason.starts_with("would stop slot green (1.0.0), left running by an interrupted job; hello-blue runs")),
        "{d:?}"
    );
    let d = with(&check, |v| decide(Step::Drain, v, &f, &mut st));
    assert!(
        matches!(&d, Decision::Done(r) if r.status == StepStatus::Ok),
        "{d:?}"
    );
}

#[test]
fn a_leftover_in_the_idle_slot_is_stopped_before_the_release_starts_there() {
    // An interrupted deploy of 1.1.0 started it in green and never switched.
    let p = plan(false, false);
    let mut f = left_running(settled(&p), 1, "1.1.0");
    f.live.as_mut().unwrap().version = Some("1.0.0".into());
    f.slots.as_mut().unwrap()[0].conf = Some("old program".into());
    let mut st = HostState::default();
    let d = with(&p, |v| decide(Step::Start, v, &f, &mut st));
    let Decision::Act { report, .. } = &d else {
        panic!("{d:?}")
    };
    assert!(
        report.reason.starts_with(
            "stopped slot green (1.1.0), left running by an interrupted job; started 1.1.0 in hello-green"
        ),
        "{report:?}"
    );
    let l = lines(&d);
    assert_eq!(l[0], Supervisord.stop("hello-green").line, "stopped first");
    assert!(
        l[1].contains("/etc/supervisor/conf.d/hello-green.conf"),
        "{l:?}"
    );
    assert_eq!((st.target, st.old_slot), (Some(1), Some(0)));
    let check = plan(true, false);
    let d = with(&check, |v| {
        decide(Step::Start, v, &f, &mut HostState::default())
    });
    assert!(
        matches!(&d, Decision::Done(r) if r.reason.starts_with(
            "would stop slot green (1.1.0), left running by an interrupted job; would start 1.1.0 in hello-green")),
        "{d:?}"
    );
}

#[test]
fn only_a_running_slot_that_is_not_live_is_a_leftover() {
    let p = plan(false, false);
    let f = settled(&p);
    assert_eq!(
        super::start::leftovers(&f),
        Ok(vec![]),
        "the live slot never is"
    );
    let d = with(&p, |v| {
        decide(Step::Start, v, &f, &mut HostState::default())
    });
    assert!(
        matches!(&d, Decision::Done(r) if !r.reason.contains("interrupted")),
        "{d:?}"
    );
    // No live pointer (a first deploy that never switched): whatever runs is left over.
    let mut f = settled(&p);
    f.live = Some(Live::default());
    assert_eq!(super::start::leftovers(&f), Ok(vec![0]));
    // A program file that names no release: the slot is named alone.
    let mut f = left_running(settled(&p), 1, "1.0.0");
    f.slots.as_mut().unwrap()[1].conf = None;
    let d = with(&p, |v| {
        decide(Step::Start, v, &f, &mut HostState::default())
    });
    assert!(
        matches!(&d, Decision::Act { report, .. } if report.reason.starts_with("stopped slot green, left running")),
        "{d:?}"
    );
}

#[test]
fn switch_is_one_rename_of_the_live_pointer_and_never_reloads_nginx() {
    let p = plan(false, false);
    let f = settled(&p);
    let mut st = HostState {
        target: Some(1),
        old_slot: Some(0),
        ..Default::default()
    };
    let d = with(&p, |v| decide(Step::Switch, v, &f, &mut st));
    let Decision::Act { actions, report } = &d else {
        panic!("{d:?}")
    };
    assert_eq!(
        actions[0].op,
        Op::SetLive {
            slot: 1,
            version: "1.1.0".into()
        },
        "the site is unchanged: no nginx -t, no reload"
    );
    // Then only the new live slot starts at boot.
    let boot: Vec<String> = actions[1..]
        .iter()
        .map(|a| match &a.op {
            Op::Run { cmd, .. } => cmd.line.clone(),
            o => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(
        boot,
        [
            Supervisord.at_boot("hello-green", true).line,
            Supervisord.at_boot("hello-blue", false).line
        ]
    );
    assert!(report.reason.contains("no reload"), "{report:?}");
    assert!(st.nginx_before.is_none());
    // A first deploy (or a changed site) installs it, validated, then reloads once, in
    // one command that ignores a dropped connection (install and reload cannot part).
    let mut f = settled(&p);
    f.nginx = Some(Some("old site".into()));
    let d = with(&p, |v| decide(Step::Switch, v, &f, &mut st));
    let l = lines(&d);
    let install = l[0].find("nginx -t").unwrap_or(usize::MAX);
    let reload = l[0].find("nginx -s reload").unwrap_or(0);
    assert!(
        l.len() == 3 && install < reload && l[0].contains(" HUP PIPE"),
        "{l:?}"
    );
    assert_eq!(st.nginx_before, Some(Some("old site".into())));
}

#[test]
fn health_switches_back_to_the_old_slot_when_the_new_one_fails() {
    let p = plan(false, false);
    let f = settled(&p);
    let mut st = HostState {
        target: Some(1),
        old_slot: Some(0),
        previous: Some("1.0.0".into()),
        ..Default::default()
    };
    let d = with(&p, |v| decide(Step::Health, v, &f, &mut st));
    let Decision::Act { actions, .. } = &d else {
        panic!("{d:?}")
    };
    let undo = actions[0].on_fail.as_ref().unwrap();
    assert_eq!(
        undo.attempt,
        [Op::SetLive {
            slot: 0,
            version: "1.0.0".into()
        }]
    );
    assert!(
        undo.note_ok
            .contains("switched back to 1.0.0 in hello-blue")
    );
    assert!(undo.always.iter().any(
        |o| matches!(o, Op::Run { cmd, .. } if cmd.line.contains("supervisorctl stop hello-green"))
    ));
    // Whether the switch back works or not, the old slot is the one a reboot brings back.
    let boots: Vec<&str> = undo
        .always
        .iter()
        .filter_map(|o| match o {
            Op::Run { cmd, .. } if cmd.line.contains("autostart=") => Some(cmd.line.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        boots,
        [
            Supervisord.at_boot("hello-blue", true).line.as_str(),
            Supervisord.at_boot("hello-green", false).line.as_str()
        ]
    );
    // When the switch replaced the site too, the old site goes back first.
    st.nginx_before = Some(Some("old site".into()));
    let d = with(&p, |v| decide(Step::Health, v, &f, &mut st));
    let Decision::Act { actions, .. } = &d else {
        panic!("{d:?}")
    };
    let undo = actions[0].on_fail.as_ref().unwrap();
    assert!(matches!(&undo.attempt[0], Op::Run { cmd, .. } if cmd.line.contains("nginx -t")));
    assert!(matches!(
        undo.attempt.last(),
        Some(Op::SetLive { slot: 0, .. })
    ));
    assert!(with(&plan(true, false), |v| matches!(
        decide(Step::Health, v, &f, &mut st),
        Decision::Done(r) if r.status == StepStatus::Skipped
    )));
}

#[test]
fn drain_stops_the_old_slot_after_the_drain_and_strays_at_once() {
    let p = plan(false, false);
    let mut f = settled(&p);
    f.live.as_mut().unwrap().slot = Some(1);
    f.slots.as_mut().unwrap()[1].pid = Some(43);
    let mut st = HostState {
        target: Some(1),
        old_slot: Some(0),
        ..Default::default()
    };
    let d = with(&p, |v| decide(Step::Drain, v, &f, &mut st));
    let Decision::Act { actions, .. } = &d else {
        panic!("{d:?}")
    };
    assert!(matches!(actions[0].op, Op::Sleep(_)));
    assert_eq!(lines(&d), [Supervisord.stop("hello-blue").line]);
    // A slot left running by an interrupted job, on a no-op deploy: stopped, no wait.
    let mut f = settled(&p);
    f.slots.as_mut().unwrap()[1].pid = Some(99);
    let mut st = HostState {
        target: Some(0),
        ..Default::default()
    };
    let d = with(&p, |v| decide(Step::Drain, v, &f, &mut st));
    let Decision::Act { actions, report } = &d else {
        panic!("{d:?}")
    };
    assert!(!matches!(actions[0].op, Op::Sleep(_)));
    assert!(
        report.reason.contains("hello-green (not live)"),
        "{report:?}"
    );
    // Nothing but the live slot runs: ok.
    let f = settled(&p);
    let d = with(&p, |v| decide(Step::Drain, v, &f, &mut st));
    assert!(matches!(d, Decision::Done(r) if r.status == StepStatus::Ok));
}

#[test]
fn prune_keeps_the_live_and_newest_complete_releases() {
    let listing = "1 0.9 complete\n2 1.0 complete\n3 1.1 partial\n4 1.2 complete\n5 1.3 complete\n";
    // failed releases go and do not count
    assert_eq!(
        prune_plan(
            "1 1.0 complete\n2 1.1 complete\n3 1.2 failed\n4 1.3 complete\n",
            "1.3",
            2,
            "1.3"
        ),
        ["1.0", "1.2"]
    );
    // live is the newest: keep 1.3 and 1.2
    assert_eq!(prune_plan(listing, "1.3", 2, "1.3"), ["0.9", "1.0", "1.1"]);
    // live was rolled back to 1.0: keep it and the newest other
    assert_eq!(prune_plan(listing, "1.0", 2, "1.0"), ["0.9", "1.1", "1.2"]);
    // an unfinished build of the release being deployed is left alone
    assert_eq!(prune_plan(listing, "1.3", 2, "1.1"), ["0.9", "1.0"]);
    assert_eq!(prune_plan(listing, "1.3", 10, "1.3"), ["1.1"]);
    // keep 1 still keeps the live one, never an unfinished build being deployed
    assert_eq!(prune_plan(listing, "1.0", 1, "1.1"), ["0.9", "1.2", "1.3"]);
}
