//! A build as a job-level phase: started once per job on the gateway, its console
//! streamed as output lines, the job stopped before any host if it fails.

use std::sync::Arc;
use std::time::Duration;

use deploy_wire::Stream;
use futures_util::future::BoxFuture;

use super::{BuildRequest, BuildState, Builder};
use crate::engine::ops::Report;
use crate::engine::phases::{JobPhase, PhaseCtx, Place, When};

#[derive(Debug)]
pub struct BuildPhase {
    pub builder: Arc<dyn Builder>,
    pub request: BuildRequest,
    /// Between polls.
    pub interval: Duration,
}

impl JobPhase for BuildPhase {
    fn name(&self) -> &str {
        "build"
    }
    fn when(&self) -> When {
        When::BeforeHosts
    }
    fn place(&self) -> Place {
        Place::Gateway
    }
    fn run<'a>(&'a self, ctx: PhaseCtx<'a>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let what = format!("{} at {}", self.request.app, short(&self.request.commit));
            if ctx.check() {
                return Report::changed(format!(
                    "would build {what} on {}",
                    self.builder.describe()
                ));
            }
            let id = match self.builder.start(&self.request).await {
                Ok(id) => id,
                Err(e) => return Report::failed(format!("cannot start the build of {what}: {e}")),
            };
            let mut offset = 0;
            let mut announced = false;
            loop {
                let p = match self.builder.poll(&id, offset).await {
                    Ok(p) => p,
                    Err(e) => return Report::failed(format!("build {id} of {what}: {e}")),
                };
                if let (false, Some(b)) = (announced, &p.build) {
                    ctx.line(Stream::Stdout, &format!("build {}: {}", b.number, b.url));
                    announced = true;
                }
                for line in p.console.lines() {
                    ctx.line(Stream::Stdout, line);
                }
                offset = p.next_offset;
                let name = p.build.as_ref().map_or(id.as_str(), |b| b.number.as_str());
                match p.state {
                    BuildState::Succeeded => {
                        return Report::changed(format!(
                            "built {what} (build {name}){}",
                            made(&p.artifacts)
                        ));
                    }
                    BuildState::Failed(why) => {
                        return Report::failed(format!("build {name} of {what} failed: {why}"));
                    }
                    BuildState::Queued | BuildState::Running => {
                        tokio::time::sleep(self.interval).await
                    }
                }
            }
        })
    }
}

/// `": a.whl, b.whl"`, or nothing when the build archived nothing.
fn made(artifacts: &[String]) -> String {
    if artifacts.is_empty() {
        String::new()
    } else {
        format!(": {}", artifacts.join(", "))
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deploy_engine::testbed::{bed, spec};
    use deploy_engine::{CancelFlag, Collect};
    use deploy_wire::{EventKind, JobStatus};

    use super::BuildPhase;
    use crate::builder::{BuildRequest, fake::FakeBuilder};

    #[tokio::test]
    async fn a_build_phase_streams_its_console_and_a_failed_build_deploys_nothing() {
        for fails in [false, true] {
            let b = bed("{}");
            let builder = Arc::new(FakeBuilder {
                script: (
                    vec!["collecting".into(), "built hello_app-1.0.0.whl".into()],
                    fails,
                ),
                ..Default::default()
            });
            let mut plan = deploy_engine::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
            plan.phases = vec![Arc::new(BuildPhase {
                builder: builder.clone(),
                request: BuildRequest {
                    app: "hello".into(),
                    commit: "0123456789abcdef".into(),
                },
                interval: std::time::Duration::from_millis(1),
            })];
            let (r, events) = b
                .run_plan(plan, CancelFlag::default(), Arc::new(Collect::default()))
                .await;
            let console: Vec<&str> = events
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::Output { step, line, .. } if step == "build" => Some(line.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(console, ["collecting", "built hello_app-1.0.0.whl"]);
            assert_eq!(builder.builds.lock().unwrap().len(), 1, "one build per job");
            if fails {
                assert_eq!(r.status, JobStatus::Failed);
                assert!(b.connects().is_empty());
            } else {
                assert_eq!(r.status, JobStatus::Succeeded);
                assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"));
            }
        }
    }
}
