//! What the hosts of every site run.  `deploy status --live`, a rollback's choice of
//! targets and the reading of an interrupted job's hosts ask each host of an
//! environment (`engine::observe`); this process asks the hosts of its own site over SSH
//! and puts the others' question to their site's runners (an *ask*, `site_asks`), which
//! answer with the same view.  A site whose runners give no answer within [`ASK_WAIT`]
//! (or `site_wait_secs`, when shorter) has its hosts reported unreachable, naming the
//! site: never silently left out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_engine::error::{BackendError, ErrorKind};
use deploy_engine::observe::{HostView, Observed, observe_some};
use serde::{Deserialize, Serialize};

use super::super::jobs::Jobs;
use crate::engine::EngineConfig;
use crate::error::InputError;
use crate::inventory::Inventory;

/// How long an ask waits at most for a runner of its site (the runner's own SSH reads
/// time out within this); less when `site_wait_secs` is less.
pub const ASK_WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(200);

/// One host's answer, as a runner stores it.
#[derive(Debug, Serialize, Deserialize)]
struct Answered {
    host: String,
    view: Option<HostView>,
    error: Option<String>,
    retryable: bool,
}

/// Every host of (`app`, `env`), in the inventory's order: this site's asked here, the
/// others' through their runners.
pub async fn observe(
    jobs: &Jobs,
    inv: &Inventory,
    cfg: Arc<EngineConfig>,
    app: &str,
    env: &str,
) -> Result<Vec<Observed>, InputError> {
    let own = jobs.site();
    let (_, hosts) = inv.hosts_for(inv.app(app)?, env)?;
    let mut others: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in hosts.iter().filter(|h| h.site.as_deref() != own) {
        let site = h.site.clone().unwrap_or_default();
        others.entry(site).or_default().push(h.name.clone());
    }
    let keep = |h: &crate::inventory::Host| h.site.as_deref() == own;
    let here = observe_some(inv, cfg, app, env, &keep);
    let there = futures_util::future::join_all(
        (others.iter()).map(|(site, names)| ask(jobs, site, app, env, names)),
    );
    let (here, there) = futures_util::future::join(here, there).await;
    let mut all: Vec<Observed> = here?;
    all.extend(there.into_iter().flatten());
    let order: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    all.sort_by_key(|o| order.iter().position(|n| *n == o.host));
    Ok(all)
}

/// Puts the question to `site`'s runners and waits for the answer.
async fn ask(jobs: &Jobs, site: &str, app: &str, env: &str, names: &[String]) -> Vec<Observed> {
    let id = format!("ask-{}", deploy_engine::random::hex(8));
    let (i, s, a, e) = (
        id.clone(),
        site.to_string(),
        app.to_string(),
        env.to_string(),
    );
    let answer = match jobs.db.call(move |st| st.add_ask(&i, &s, &a, &e)).await {
        Err(e) => Err(format!("the question could not be stored: {e}")),
        Ok(()) => wait(jobs, &id, site).await,
    };
    let i = id.clone();
    let _ = jobs.db.call(move |st| st.drop_ask(&i)).await;
    match answer {
        Ok(answered) => names
            .iter()
            .map(|n| match answered.iter().find(|a| &a.host == n) {
                Some(a) => observed(a),
                None => unreachable(n, &format!("site {site}'s runner did not say")),
            })
            .collect(),
        Err(why) => names.iter().map(|n| unreachable(n, &why)).collect(),
    }
}

async fn wait(jobs: &Jobs, id: &str, site: &str) -> Result<Vec<Answered>, String> {
    let since = Instant::now();
    let limit = ASK_WAIT.min(jobs.site_wait());
    while since.elapsed() < limit {
        tokio::time::sleep(POLL).await;
        let i = id.to_string();
        if let Ok(Some(text)) = jobs.db.call(move |s| s.ask_answer(&i)).await {
            return serde_json::from_str(&text).map_err(|e| format!("an unreadable answer: {e}"));
        }
    }
    Err(format!(
        "no runner of site {site} answered within {} s (is site {site}'s runner up?)",
        limit.as_secs()
    ))
}

fn observed(a: &Answered) -> Observed {
    let view = match (&a.view, &a.error) {
        (Some(v), _) => Ok(v.clone()),
        (None, e) => Err(BackendError::new(
            if a.retryable {
                ErrorKind::Retryable
            } else {
                ErrorKind::Permanent
            },
            e.clone().unwrap_or_default(),
        )),
    };
    Observed {
        host: a.host.clone(),
        view,
    }
}

fn unreachable(host: &str, why: &str) -> Observed {
    Observed {
        host: host.to_string(),
        view: Err(BackendError::retryable(format!("unreachable: {why}"))),
    }
}

/// The runner's side: answers one ask about its site's hosts.
pub async fn answer(jobs: &Jobs, id: String, app: String, env: String) {
    let own = jobs.site().map(str::to_string);
    let seen = match (jobs.inventory(), jobs.engine_config()) {
        (Ok(inv), Ok(cfg)) => {
            let keep = |h: &crate::inventory::Host| h.site == own;
            observe_some(&inv, Arc::new(cfg), &app, &env, &keep).await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let answered: Vec<Answered> = match seen {
        Ok(seen) => seen
            .into_iter()
            .map(|o| match o.view {
                Ok(v) => Answered {
                    host: o.host,
                    view: Some(v),
                    error: None,
                    retryable: false,
                },
                Err(e) => Answered {
                    host: o.host,
                    view: None,
                    retryable: e.is_retryable(),
                    error: Some(e.message().to_string()),
                },
            })
            .collect(),
        Err(e) => {
            tracing::error!("ask {id}: {}", e.redacted());
            Vec::new()
        }
    };
    let text = serde_json::to_string(&answered).unwrap_or_else(|_| "[]".into());
    if let Err(e) = jobs.db.call(move |s| s.answer_ask(&id, &text)).await {
        tracing::error!("answering an ask: {e}");
    }
}
