//! The job runner: turns a deploy request into a background engine run whose events are
//! persisted (with a sequence number) before anyone sees them, records the outcome in the
//! release ledger, and frees the (application, environment) lock when it ends.
//!
//! A job does not belong to the HTTP request that made it: a client that goes away
//! changes nothing.  Live followers are woken through a broadcast of job ids and read
//! the events from the store, so a replay and a live tail are the same code path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_wire::api::{DeployRequest, JobInfo, LedgerEntry};
use deploy_wire::{Event, EventKind, JobStatus};
use tokio::sync::broadcast;

use super::config::GatewayConfig;
use super::relay::{Relay, RelayCache};
use super::store::{Store, now_ms};
use crate::engine::{self, CancelFlag, EngineConfig, EventSink, IndexAccess, JobSpec, UvTool};
use crate::error::InputError;
use crate::inventory::Inventory;
use crate::pins::HostKeyPins;
use crate::ssh::{SshKey, SshOptions};

pub enum SubmitError {
    Invalid(InputError),
    Locked { holder: String, job_id: String },
    Internal(String),
}

#[derive(Clone)]
pub struct Jobs {
    pub store: Store,
    cfg: Arc<GatewayConfig>,
    key: Arc<SshKey>,
    notify: broadcast::Sender<String>,
    cancels: Arc<Mutex<HashMap<String, CancelFlag>>>,
    uv: Option<UvTool>,
    http: reqwest::Client,
    relay_cache: Arc<RelayCache>,
}

/// Persists each event with the next sequence number, then wakes followers.
struct StoreSink {
    store: Store,
    job: String,
    seq: Mutex<u64>,
    notify: broadcast::Sender<String>,
}

impl EventSink for StoreSink {
    fn emit(&self, event: Event) {
        let data = serde_json::to_string(&event).expect("events serialize");
        let mut seq = self.seq.lock().unwrap();
        *seq += 1;
        if let Err(e) = self.store.append_event(&self.job, *seq, event.ts_ms, &data) {
            eprintln!(
                "deploy-gateway: cannot store event {} of job {}: {e}",
                *seq, self.job
            );
        }
        drop(seq);
        let _ = self.notify.send(self.job.clone());
    }
}

fn new_job_id() -> String {
    let (id, _) = super::auth::new_token().unwrap_or_default();
    format!("{:x}-{id}", now_ms())
}

impl Jobs {
    pub fn new(
        store: Store,
        cfg: Arc<GatewayConfig>,
        key: Arc<SshKey>,
        uv: Option<UvTool>,
    ) -> Jobs {
        let (notify, _) = broadcast::channel(1024);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Jobs {
            relay_cache: Arc::new(RelayCache::new(cfg.relay_cache.clone())),
            store,
            cfg,
            key,
            notify,
            cancels: Default::default(),
            uv,
            http,
        }
    }

    /// How the servers of `env` reach the application's artifacts.
    fn index_access(
        &self,
        inv: &Inventory,
        app: &str,
        env: &str,
        sink: Arc<dyn EventSink>,
    ) -> Result<Option<IndexAccess>, InputError> {
        let Ok(a) = inv.app(app) else {
            return Ok(None); // plan() reports it
        };
        let Some(e) = a.environments.get(env) else {
            return Ok(None);
        };
        let bad = |m: String| {
            InputError::new(
                &self.cfg.path,
                None,
                format!("applications.{app}.source"),
                m,
            )
        };
        let source = self.cfg.source_for(a).map_err(bad)?;
        Ok(Some(match e.delivery {
            crate::inventory::Delivery::Direct => {
                IndexAccess::Direct(source.servers_index().map_err(bad)?)
            }
            crate::inventory::Delivery::Relay => IndexAccess::Relay(Arc::new(Relay::new(
                source,
                self.http.clone(),
                self.relay_cache.clone(),
                sink,
            ))),
        }))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.notify.subscribe()
    }

    pub fn inventory(&self) -> Result<Inventory, InputError> {
        Inventory::load(&self.cfg.inventory)
    }

    /// Marks jobs of a previous run interrupted (with a final event) and frees their locks.
    pub fn recover(&self) -> Result<Vec<String>, String> {
        let ids = self.store.recover().map_err(|e| e.to_string())?;
        for id in &ids {
            let seq = self.store.last_seq(id).map_err(|e| e.to_string())?;
            let ev = Event::now(EventKind::JobFinished {
                status: JobStatus::Interrupted,
                elapsed_ms: 0,
                hosts_ok: 0,
                hosts_changed: 0,
                hosts_failed: 0,
            });
            let _ = self.store.append_event(
                id,
                seq + 1,
                ev.ts_ms,
                &serde_json::to_string(&ev).unwrap(),
            );
        }
        Ok(ids)
    }

    /// Validates and plans the request, takes the lock, and starts the job in the
    /// background.  Returns at once.
    pub async fn submit(
        &self,
        user: &str,
        req: DeployRequest,
        rollback: bool,
    ) -> Result<JobInfo, SubmitError> {
        let inv = self.inventory().map_err(SubmitError::Invalid)?;
        let pins = HostKeyPins::load(&self.cfg.known_hosts).map_err(SubmitError::Invalid)?;
        let engine_cfg = EngineConfig {
            playbooks_dir: self.cfg.playbooks.clone(),
            templates_dir: self.cfg.templates.clone(),
            key: self.key.clone(),
            pins,
            ssh: SshOptions::default(),
            command_timeout: Duration::from_secs(self.cfg.command_timeout_secs),
            uv: self.uv.clone(),
        };
        let batch = match &req.batch {
            Some(b) => Some(crate::inventory::BatchSize::parse(b).map_err(|m| {
                SubmitError::Invalid(InputError::new(
                    std::path::Path::new("<request>"),
                    None,
                    "batch",
                    m,
                ))
            })?),
            None => None,
        };
        let spec = JobSpec {
            app: req.app.clone(),
            env: req.env.clone(),
            version: req.version.clone(),
            check: req.check,
            no_install: rollback,
            batch,
            index: None,
        };
        let id = new_job_id();
        let sink = Arc::new(StoreSink {
            store: self.store.clone(),
            job: id.clone(),
            seq: Mutex::new(0),
            notify: self.notify.clone(),
        });
        let spec = JobSpec {
            index: self
                .index_access(&inv, &req.app, &req.env, sink.clone())
                .map_err(SubmitError::Invalid)?,
            ..spec
        };
        let plan = engine::plan(&inv, &engine_cfg, &spec).map_err(SubmitError::Invalid)?;
        let job = JobInfo {
            id,
            kind: if req.check {
                "check".into()
            } else if rollback {
                "rollback".into()
            } else {
                "deploy".into()
            },
            app: req.app,
            env: req.env,
            version: req.version,
            check: req.check,
            user: user.to_string(),
            state: "running".into(),
            created_ms: now_ms(),
            finished_ms: None,
            error: None,
        };
        let j = job.clone();
        match self.store.call(move |s| s.start_job(&j)).await {
            Err(e) => return Err(SubmitError::Internal(e.to_string())),
            Ok(Err((holder, job_id))) => return Err(SubmitError::Locked { holder, job_id }),
            Ok(Ok(())) => {}
        }
        let cancel = CancelFlag::default();
        self.cancels
            .lock()
            .unwrap()
            .insert(job.id.clone(), cancel.clone());
        let this = self.clone();
        let j = job.clone();
        tokio::spawn(async move {
            let result = engine::run_cancellable(plan, Arc::new(engine_cfg), sink, cancel).await;
            this.finish(&j, result).await;
        });
        Ok(job)
    }

    async fn finish(&self, job: &JobInfo, result: engine::JobResult) {
        let store = self.store.clone();
        let job = job.clone();
        let cancels = self.cancels.clone();
        let _ = store
            .call(move |s| {
                if !job.check {
                    for h in &result.hosts {
                        let from = s.live(&job.app, &job.env, &h.host)?.map(|e| e.version);
                        s.add_ledger(&LedgerEntry {
                            job_id: job.id.clone(),
                            app: job.app.clone(),
                            env: job.env.clone(),
                            host: h.host.clone(),
                            version: job.version.clone(),
                            from_version: from,
                            result: h.status.as_str().to_string(),
                            user: job.user.clone(),
                            ts_ms: now_ms(),
                        })?;
                    }
                }
                let error = result.hosts.iter().find_map(|h| h.error.clone());
                s.audit(
                    &job.user,
                    &format!("{} finished", job.kind),
                    &format!("{}/{} {} ({})", job.app, job.env, job.version, job.id),
                    result.status.as_str(),
                )?;
                s.finish_job(&job.id, result.status.as_str(), error.as_deref())?;
                cancels.lock().unwrap().remove(&job.id);
                Ok(())
            })
            .await
            .map_err(|e| eprintln!("deploy-gateway: cannot record the end of a job: {e}"));
        let _ = self.notify.send(String::new());
    }

    /// Asks a running job to stop after the steps in flight.  False if it is not running here.
    pub fn cancel(&self, id: &str) -> bool {
        match self.cancels.lock().unwrap().get(id) {
            Some(flag) => {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                true
            }
            None => false,
        }
    }
}
