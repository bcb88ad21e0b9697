//! The dashboard's pages: each gathers what the signed-in user may read through the job
//! service (the same calls, and so the same scopes, as the API) and renders a template.
//! The job page's live events come over `/ui/jobs/{id}/events`: the job's Server-Sent
//! Events (resumable with `Last-Event-ID`, like the API's), each carrying its line and
//! its host's progress row as HTML rendered here, then the job's end (its state, time
//! and the tally of its hosts' ends).

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use deploy_wire::Event;
use deploy_wire::api::{JobInfo, JobState};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::lines::{self, Progress};
use super::live::version;
use super::view::{self, render};
use super::{PageErr, Viewer, who};
use crate::gateway::api::AppState;
use crate::gateway::events::Tail;
use crate::gateway::store::now_ms;

type Page = Result<Html<String>, PageErr>;

/// Lines the job page shows when it loads (the newest; the rest in its text log).
const PAGE_LINES: usize = 5000;
/// Jobs the history page filters (the newest the user may read).
const HISTORY_SCAN: u32 = 1000;
/// Listed jobs whose hosts' tally the history page reads (the newest shown).
const OUTCOMES: usize = 100;
/// A job's last events among which its `job_finished` is (notices may follow it).
const LAST_EVENTS: u64 = 32;

#[derive(Deserialize)]
pub struct MatrixQuery {
    #[serde(default)]
    live: Option<String>,
}

/// `/ui/`: applications x environments x hosts with the release each host serves, and
/// whether each environment is shut now (a freeze, its deploy windows); jobs running now;
/// with `?live=1` also what every host says.
pub async fn matrix(
    State(st): State<AppState>,
    Viewer(p): Viewer,
    Query(q): Query<MatrixQuery>,
) -> Page {
    let live = q.live.is_some_and(|v| !v.is_empty() && v != "0");
    let mut rows = Vec::new();
    for a in st.svc.apps(&p)? {
        let status = st.svc.status(&p, &a.name, None, live).await?;
        rows.extend(view::matrix(&a.name, &status));
    }
    let which: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.app.as_str(), r.env.as_str()))
        .collect();
    let doors = st.svc.shut_all(&which).await?;
    for (row, shut) in rows.iter_mut().zip(doors) {
        row.shut = shut;
    }
    let jobs = st.svc.jobs_for(&p, 200).await?;
    let running: Vec<&JobInfo> = jobs
        .iter()
        .filter(|j| j.state == JobState::Running)
        .collect();
    let ctx = json!({
        "title": "Matrix", "viewer": who(&p), "rows": rows, "running": running, "live": live,
        "now": now_ms(), "version": version(&jobs),
    });
    Ok(Html(render("matrix.html", ctx)))
}

#[derive(Deserialize, Default)]
pub struct JobFilter {
    app: Option<String>,
    env: Option<String>,
    user: Option<String>,
    state: Option<String>,
}

/// A filter of the history: its name, the value asked for, and the job's value.
type FilterField<'a> = (&'static str, &'a Option<String>, fn(&JobInfo) -> String);

#[derive(Serialize)]
struct Filter {
    name: &'static str,
    values: Vec<String>,
    chosen: String,
}

/// `/ui/jobs`: the newest jobs, filtered by application, environment, user and state.
pub async fn jobs(
    State(st): State<AppState>,
    Viewer(p): Viewer,
    Query(f): Query<JobFilter>,
) -> Page {
    let all = st.svc.jobs_for(&p, HISTORY_SCAN).await?;
    let fields: [FilterField; 4] = [
        ("app", &f.app, |j| j.app.clone()),
        ("env", &f.env, |j| j.env.clone()),
        ("user", &f.user, |j| j.user.clone()),
        ("state", &f.state, |j| j.state.to_string()),
    ];
    let chosen = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let shown: Vec<&JobInfo> = all
        .iter()
        .filter(|j| {
            fields
                .iter()
                .all(|(_, want, get)| chosen(want).is_none_or(|w| get(j) == w))
        })
        .collect();
    let filters: Vec<Filter> = fields
        .iter()
        .map(|(name, want, get)| {
            let mut values: Vec<String> = all.iter().map(get).collect();
            values.sort();
            values.dedup();
            let chosen = chosen(want).unwrap_or_default();
            Filter {
                name,
                values,
                chosen,
            }
        })
        .collect();
    let outcomes = outcomes(&st, &shown).await?;
    let ctx = json!({
        "title": "Jobs", "viewer": who(&p), "jobs": shown, "filters": filters, "scanned": all.len(),
        "now": now_ms(), "version": version(&all), "outcomes": outcomes, "outcomes_of": OUTCOMES,
    });
    Ok(Html(render("jobs.html", ctx)))
}

/// The hosts' tally of the newest [`OUTCOMES`] finished jobs of `jobs`, by id: the words
/// of each one's `job_finished` (what its page's last line says).
async fn outcomes(
    st: &AppState,
    jobs: &[&JobInfo],
) -> Result<std::collections::HashMap<String, String>, PageErr> {
    let ids: Vec<String> = jobs
        .iter()
        .filter(|j| j.is_finished())
        .take(OUTCOMES)
        .map(|j| j.id.clone())
        .collect();
    let read = move |s: &dyn crate::gateway::store::Store| {
        let mut found = std::collections::HashMap::new();
        for id in ids {
            let last = s.last_seq(&id)?;
            let rows = s.events_after(&id, last.saturating_sub(LAST_EVENTS), LAST_EVENTS as u32)?;
            let events = rows
                .iter()
                .filter_map(|(_, d)| serde_json::from_str(d).ok());
            if let Some(words) = events.filter_map(|e: Event| lines::outcome(&e)).next_back() {
                found.insert(id, words);
            }
        }
        Ok::<_, crate::gateway::store::StoreError>(found)
    };
    Ok(st.svc.db().call(read).await?)
}

/// The stored events of a job, parsed.
async fn stored(st: &AppState, id: &str) -> Result<Vec<(u64, Event)>, PageErr> {
    let id = id.to_string();
    let rows = st
        .svc
        .db()
        .call(move |s| s.events_after(&id, 0, 10_000_000))
        .await?;
    let parse = |(seq, data): (u64, String)| serde_json::from_str(&data).ok().map(|e| (seq, e));
    Ok(rows.into_iter().filter_map(parse).collect())
}

/// `/ui/jobs/{id}`: the job, each host's progress and its newest lines; live while it runs.
pub async fn job(State(st): State<AppState>, Viewer(p): Viewer, Path(id): Path<String>) -> Page {
    let job = st.svc.job_for(&p, &id).await?;
    let events = stored(&st, &id).await?;
    let mut progress = Progress::default();
    for (_, e) in &events {
        progress.apply(e);
    }
    let earlier = events.len().saturating_sub(PAGE_LINES);
    let lines: Vec<lines::Line> = events[earlier..]
        .iter()
        .map(|(s, e)| lines::line(*s, e))
        .collect();
    let after = events.last().map_or(0, |(s, _)| *s);
    let ctx = json!({
        "title": format!("Job {id}"), "viewer": who(&p), "job": job, "hosts": progress.all(),
        "lines": lines, "earlier": earlier, "after": after, "now": now_ms(),
        "outcome": progress.tally().words(),
    });
    Ok(Html(render("job.html", ctx)))
}

/// `/ui/jobs/{id}/log`: every line of a job, as text.
pub async fn job_log(
    State(st): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageErr> {
    st.svc.job_for(&p, &id).await?;
    let mut text = String::new();
    for (seq, e) in stored(&st, &id).await? {
        let l = lines::line(seq, &e);
        text.push_str(&format!("{:>6} {:<12} {}\n", l.seq, l.host, l.text));
        if let Some(d) = l.diff {
            text.push_str(&d);
            text.push('\n');
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[derive(Deserialize)]
pub struct After {
    after: Option<u64>,
}

/// One live message of the job page.
#[derive(Serialize)]
struct LiveLine {
    line: String,
    host: String,
    /// The host's progress row, when this event changed it.
    host_row: Option<String>,
}

/// `/ui/jobs/{id}/events`: the job's events after `Last-Event-ID` (or `?after=`), each
/// as its rendered line and host row, then `end` with the job's state, how long it took
/// and its hosts' tally (what a reload of the page says).
pub async fn job_events(
    State(st): State<AppState>,
    Viewer(p): Viewer,
    Path(id): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Response, PageErr> {
    st.svc.job_for(&p, &id).await?;
    let after = crate::gateway::api::resume_after(&headers, q.after);
    // From the first event: the progress rows need every event before `after` too.
    let tail = st.svc.follow_events(id.clone(), 0)?;
    let stream = futures_util::stream::unfold(
        (tail, Progress::default()),
        move |(mut rx, mut progress)| {
            let (st, id) = (st.clone(), id.clone());
            async move {
                loop {
                    let msg = match rx.recv().await? {
                        Tail::Event { seq, data } => {
                            let Ok(ev) = serde_json::from_str::<Event>(&data) else {
                                continue;
                            };
                            let changed = progress.apply(&ev);
                            if seq <= after {
                                continue;
                            }
                            live_event(seq, &ev, changed.and_then(|h| progress.get(&h).cloned()))
                        }
                        Tail::End(state) => end_event(&st, &id, state, &progress).await,
                    };
                    return Some((Ok::<_, Infallible>(msg), (rx, progress)));
                }
            }
        },
    );
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(crate::gateway::api::KEEP_ALIVE))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// The job page's `end`: the job's state, how long it took, its hosts' tally.
async fn end_event(st: &AppState, id: &str, state: JobState, progress: &Progress) -> SseEvent {
    let took = match st.svc.job(id).await {
        Ok(j) => view::duration(
            j.finished_ms
                .unwrap_or_else(now_ms)
                .saturating_sub(j.created_ms),
        ),
        Err(_) => String::new(),
    };
    let data =
        json!({ "state": state.as_str(), "took": took, "outcome": progress.tally().words() });
    SseEvent::default().event("end").data(data.to_string())
}

fn live_event(seq: u64, ev: &Event, host: Option<lines::HostProgress>) -> SseEvent {
    let l = lines::line(seq, ev);
    let msg = LiveLine {
        line: render("line.html", json!({ "l": l })),
        host: l.host.clone(),
        host_row: host.map(|h| render("host.html", json!({ "h": h }))),
    };
    let data = serde_json::to_string(&msg).unwrap_or_default();
    SseEvent::default()
        .id(seq.to_string())
        .event("event")
        .data(data)
}

#[derive(Deserialize)]
pub struct LedgerQuery {
    app: Option<String>,
}

/// `/ui/ledger`: what was deployed where, newest first (of one application, or all).
pub async fn ledger(
    State(st): State<AppState>,
    Viewer(p): Viewer,
    Query(q): Query<LedgerQuery>,
) -> Page {
    let app = q.app.filter(|a| !a.is_empty());
    let entries = st.svc.ledger_for(&p, app.clone(), 500).await?;
    let apps: Vec<String> = st.svc.apps(&p)?.into_iter().map(|a| a.name).collect();
    let ctx = json!({ "title": "Ledger", "viewer": who(&p), "entries": entries, "apps": apps, "app": app });
    Ok(Html(render("ledger.html", ctx)))
}

/// `/ui/audit`: the audit trail (admins only, as in the API).
pub async fn audit(State(st): State<AppState>, Viewer(p): Viewer) -> Page {
    let entries = st.svc.audit_for(&p, 500).await?;
    let ctx = json!({ "title": "Audit", "viewer": who(&p), "entries": entries });
    Ok(Html(render("audit.html", ctx)))
}

/// `/ui/schedules`: schedules and freezes in force, of the environments the user may read.
pub async fn schedules(State(st): State<AppState>, Viewer(p): Viewer) -> Page {
    let schedules = st.svc.schedules_for(&p).await?;
    let freezes = st.svc.freezes_for(&p).await?;
    let ctx = json!({ "title": "Schedules", "viewer": who(&p), "schedules": schedules, "freezes": freezes });
    Ok(Html(render("schedules.html", ctx)))
}
