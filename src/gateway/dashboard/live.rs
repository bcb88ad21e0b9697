//! The dashboard's change notices: `/ui/changes`, Server-Sent Events that say `change`
//! whenever the jobs the signed-in user may read start or end (the newest [`WATCHED`]
//! jobs' ids and states, summed up as a version), so that `assets/live.js` fetches its
//! page again and swaps the parts that show jobs (the matrix and its running jobs, the
//! job list).  A page carries the version it was made from (`?since=`): the stream says
//! `change` at once when the jobs moved on in between.  Woken by stored events (another
//! gateway's too, on a shared database), and every few seconds anyway.  A notice carries
//! no job's data: the page is fetched again through the same scoped reads.

use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use deploy_wire::api::JobInfo;
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::Viewer;
use crate::gateway::api::AppState;

/// The newest jobs whose start and end a page follows.
pub const WATCHED: usize = 50;
/// After news, how long to let more of it gather before reading the jobs again.
const QUIET: Duration = Duration::from_millis(250);
/// How often the jobs are read again without news.
const POLL: Duration = Duration::from_secs(5);

/// The version of a list of jobs (newest first): changes when one of the newest
/// [`WATCHED`] starts, ends or is added.
pub fn version(jobs: &[JobInfo]) -> String {
    let mut h = DefaultHasher::new();
    for j in jobs.iter().take(WATCHED) {
        j.id.hash(&mut h);
        j.state.as_str().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

#[derive(Deserialize)]
pub struct Since {
    #[serde(default)]
    since: String,
}

/// `/ui/changes?since=VERSION`: a `change` event (its data: the new version) each time
/// the jobs this user may read differ from the version last said.
pub async fn changes(
    State(st): State<AppState>,
    Viewer(p): Viewer,
    Query(q): Query<Since>,
) -> Response {
    let news = st.svc.job_news();
    let start = (st, p, news, q.since);
    let stream = futures_util::stream::unfold(start, |(st, p, mut news, seen)| async move {
        loop {
            let jobs = match st.svc.jobs_for(&p, WATCHED as u32).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    // The browser connects again by itself.
                    tracing::warn!("the dashboard's change notices stopped: {e}");
                    return None;
                }
            };
            let now = version(&jobs);
            if now != seen {
                let ev = SseEvent::default().event("change").data(now.clone());
                return Some((Ok::<_, Infallible>(ev), (st, p, news, now)));
            }
            wait(&mut news).await;
        }
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(crate::gateway::api::KEEP_ALIVE))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Until there is news (or [`POLL`] passed), then [`QUIET`] more, taking all of it.
async fn wait(news: &mut broadcast::Receiver<String>) {
    match tokio::time::timeout(POLL, news.recv()).await {
        Err(_) | Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
        Ok(Err(broadcast::error::RecvError::Closed)) => tokio::time::sleep(POLL).await,
    }
    tokio::time::sleep(QUIET).await;
    while matches!(news.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_wire::api::{JobKind, JobState};

    fn job(id: &str, state: JobState) -> JobInfo {
        JobInfo {
            id: id.into(),
            kind: JobKind::Deploy,
            app: "hello".into(),
            env: "staging".into(),
            version: "1.0".into(),
            check: false,
            user: "ann".into(),
            state,
            created_ms: 1,
            finished_ms: None,
            error: None,
            triggered_by: None,
        }
    }

    #[test]
    fn the_version_changes_when_a_job_starts_or_ends_and_only_then() {
        let one = [job("j1", JobState::Running)];
        let same = [job("j1", JobState::Running)];
        assert_eq!(version(&one), version(&same));
        let ended = [job("j1", JobState::Failed)];
        assert_ne!(version(&one), version(&ended));
        let started = [job("j2", JobState::Running), job("j1", JobState::Running)];
        assert_ne!(version(&one), version(&started));
        let many: Vec<JobInfo> = (0..WATCHED + 1)
            .map(|i| job(&format!("j{i}"), JobState::Succeeded))
            .collect();
        assert_eq!(version(&many), version(&many[..WATCHED]), "the newest only");
    }
}
