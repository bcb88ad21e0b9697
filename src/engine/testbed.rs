//! A test bed of fake servers for rollouts: an inventory of three hosts (`web1`..`web3`,
//! environment `production`), the repository's playbooks and templates, and a [`Fleet`]
//! of [`crate::fake`] servers; for this crate's tests and, with the `fake` feature, other
//! crates' (the gateway's build phase).

use std::sync::Arc;

use deploy_wire::Event;

use crate::fake::Fleet;
use crate::inventory::Inventory;
use crate::{CancelFlag, Collect, EngineConfig, JobResult, JobSpec};

/// A key for tests only; it opens nothing.
const TEST_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCvvtXbjRIrBjj4Of41zMSihPmiPE/I06p4fIlGwtrI4wAAAJC1z86jtc/O
owAAAAtzc2gtZWQyNTUxOQAAACCvvtXbjRIrBjj4Of41zMSihPmiPE/I06p4fIlGwtrI4w
AAAEDkwqHvoXQUPA1lWzPZKFW4usBlQmrVfsNWALAurhI0RK++1duNEisGOPg5/jXMxKKE
+aI8T8jTqnh8iUbC2sjjAAAACXRlc3Qtb25seQECAwQ=
-----END OPENSSH PRIVATE KEY-----
";

pub struct Bed {
    _dir: tempfile::TempDir,
    pub inv: Inventory,
    pub cfg: Arc<EngineConfig>,
    pub fleet: Arc<Fleet>,
}

/// Three hosts in `production` with the given `rollout:` (YAML flow mapping).
pub fn bed(rollout: &str) -> Bed {
    bed_with(rollout, "")
}

/// The same, with more fields for the application (YAML lines indented by 4).
pub fn bed_with(rollout: &str, app_fields: &str) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "hosts:\n  web1: {{address: 10.0.0.1, groups: [web]}}\n  web2: {{address: 10.0.0.2, groups: [web]}}\n  web3: {{address: 10.0.0.3, groups: [web]}}\n\
         applications:\n  hello:\n    package: hello-app\n    index_url: http://index:8080/simple/\n    wsgi: hello_app:app\n    port: 8000\n    server_names: [hello.test]\n\
         \x20   health: {{retries: 2, interval_ms: 1}}\n    keep_releases: 2\n    drain_secs: 0\n{app_fields}\
         \x20   environments:\n      production:\n        groups: [web]\n        rollout: {rollout}\n"
    );
    let path = dir.path().join("inventory.yml");
    std::fs::write(&path, yaml).unwrap();
    let inv = Inventory::load(&path).unwrap();
    let key_path = dir.path().join("key");
    std::fs::write(&key_path, TEST_KEY).unwrap();
    let root = crate::repo_root();
    let cfg = EngineConfig {
        playbooks_dir: root.join("playbooks"),
        templates_dir: root.join("templates"),
        key: Arc::new(crate::ssh::load_key(&key_path).unwrap()),
        pins: Default::default(),
        ssh: Default::default(),
        command_timeout: std::time::Duration::from_secs(5),
        uv: None,
        fence: None,
        elsewhere: None,
    };
    Bed {
        _dir: dir,
        inv,
        cfg: Arc::new(cfg),
        fleet: Arc::new(Fleet::default()),
    }
}

pub fn spec(version: &str) -> JobSpec {
    JobSpec {
        app: "hello".into(),
        env: "production".into(),
        version: version.into(),
        check: false,
        no_install: false,
        restart: false,
        batch: None,
        index: None,
        wheel: None,
    }
}

impl Bed {
    pub async fn run(&self, spec: JobSpec) -> (JobResult, Vec<Event>) {
        let plan = crate::plan(&self.inv, &self.cfg, &spec).unwrap();
        self.run_plan(plan, CancelFlag::default(), Arc::new(Collect::default()))
            .await
    }
    pub async fn run_plan(
        &self,
        plan: crate::Plan,
        cancel: CancelFlag,
        sink: Arc<Collect>,
    ) -> (JobResult, Vec<Event>) {
        let r = crate::run_with(
            plan,
            self.cfg.clone(),
            self.fleet.clone(),
            sink.clone(),
            cancel,
        )
        .await;
        let events = sink.0.lock().unwrap().clone();
        (r, events)
    }
    pub fn serving(&self, host: &str) -> Option<String> {
        self.fleet.server(host).serving()
    }
    pub fn connects(&self) -> Vec<String> {
        std::mem::take(&mut *self.fleet.connects.lock().unwrap())
    }
}

/// The reason `step` finished with on `host` in a job's events, if it ran there.
pub fn step_reason(events: &[Event], host: &str, step: &str) -> Option<String> {
    events.iter().find_map(|e| match &e.kind {
        deploy_wire::EventKind::StepFinished {
            host: h,
            step: s,
            reason,
            ..
        } if h == host && s == step => Some(reason.clone()),
        _ => None,
    })
}
