//! The `Elsewhere` seam on fake servers: a host of another site is never connected to by
//! the rollout; it is handed over in its batch (canary and `max_failed` kept), and a
//! halt's rollback of it goes the same way, with its target.

use std::sync::{Arc, Mutex};

use deploy_wire::{HostStatus, JobStatus};
use futures_util::future::BoxFuture;

use super::elsewhere::Elsewhere;
use super::fake::Fleet;
use super::host::run_host;
use super::plan::{self, Plan};
use super::share::EnvShare;
use super::testbed::{Bed, bed, spec};
use super::{CancelFlag, Collect, EngineConfig, HostResult};
use crate::inventory::Host;

/// Site b: its own fake servers, and what it was asked, in order.
struct SiteB {
    plan: Plan,
    cfg: Arc<EngineConfig>,
    fleet: Arc<Fleet>,
    asked: Mutex<Vec<(String, Option<String>)>>,
}

impl Elsewhere for SiteB {
    fn elsewhere(&self, host: &Host) -> bool {
        host.site.as_deref() == Some("b")
    }

    fn run<'a>(
        &'a self,
        host: &'a Host,
        rollback_to: Option<&'a str>,
        cancel: &'a CancelFlag,
    ) -> BoxFuture<'a, HostResult> {
        let asked = (host.name.clone(), rollback_to.map(str::to_string));
        self.asked.lock().unwrap().push(asked);
        Box::pin(async move {
            let i = (self
                .plan
                .hosts
                .iter()
                .position(|(h, _)| h.name == host.name))
            .unwrap();
            let plan = match rollback_to {
                Some(prev) => plan::for_rollback(&self.plan, &self.cfg, prev).unwrap(),
                None => self.plan.clone(),
            };
            let sink = Arc::new(Collect::default());
            let share = EnvShare::default();
            let conn = self.fleet.as_ref();
            run_host(&plan, i, &self.cfg, conn, sink, cancel, &share).await
        })
    }
}

/// web3 in site b; runs `version`, site b's work on `site_b`'s servers.
async fn run_split(
    b: &mut Bed,
    site_b: &Arc<Fleet>,
    version: &str,
) -> (JobStatus, Arc<SiteB>, Vec<HostResult>) {
    b.inv.hosts.get_mut("web3").unwrap().site = Some("b".into());
    let plain = plan::plan(&b.inv, &b.cfg, &spec(version)).unwrap();
    let site = Arc::new(SiteB {
        plan: plain.clone(),
        cfg: b.cfg.clone(),
        fleet: site_b.clone(),
        asked: Mutex::default(),
    });
    let mut cfg = EngineConfig {
        elsewhere: Some(site.clone()),
        ..clone_cfg(&b.cfg)
    };
    cfg.fence = None;
    let cfg = Arc::new(cfg);
    let plan = plan::plan(&b.inv, &cfg, &spec(version)).unwrap();
    let sink = Arc::new(Collect::default());
    let r = super::run_with(plan, cfg, b.fleet.clone(), sink, CancelFlag::default()).await;
    (r.status, site, r.hosts)
}

fn clone_cfg(c: &EngineConfig) -> EngineConfig {
    EngineConfig {
        playbooks_dir: c.playbooks_dir.clone(),
        templates_dir: c.templates_dir.clone(),
        key: c.key.clone(),
        pins: c.pins.clone(),
        ssh: c.ssh.clone(),
        command_timeout: c.command_timeout,
        uv: c.uv.clone(),
        fence: None,
        elsewhere: None,
    }
}

#[tokio::test]
async fn a_host_of_another_site_is_handed_over_in_its_batch_and_never_connected_here() {
    let mut b = bed("{canary: true, batch: 2}");
    let site_b = Arc::new(Fleet::default());
    let (status, site, hosts) = run_split(&mut b, &site_b, "1.0.0").await;
    assert_eq!(status, JobStatus::Succeeded, "{hosts:?}");
    assert_eq!(*site.asked.lock().unwrap(), [("web3".to_string(), None)]);
    let here = b.connects();
    assert!(!here.iter().any(|h| h == "web3"), "{here:?}");
    assert!(here.iter().any(|h| h == "web1") && here.iter().any(|h| h == "web2"));
    assert_eq!(site_b.server("web3").serving().as_deref(), Some("1.0.0"));
    let web3 = hosts.iter().find(|h| h.host == "web3").unwrap();
    assert_eq!(web3.status, HostStatus::Changed);
}

#[tokio::test]
async fn a_halt_rolls_a_host_of_another_site_back_through_its_site() {
    let mut b = bed("{batch: 3, max_failed: 0, on_halt: rollback}");
    let site_b = Arc::new(Fleet::default());
    assert_eq!(
        run_split(&mut b, &site_b, "1.0.0").await.0,
        JobStatus::Succeeded
    );
    b.fleet.server("web2").state().broken.insert("2.0.0".into());
    let (status, site, _) = run_split(&mut b, &site_b, "2.0.0").await;
    assert_eq!(status, JobStatus::Failed);
    assert_eq!(
        *site.asked.lock().unwrap(),
        [
            ("web3".to_string(), None),
            ("web3".to_string(), Some("1.0.0".to_string()))
        ]
    );
    assert_eq!(site_b.server("web3").serving().as_deref(), Some("1.0.0"));
    assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"));
}
