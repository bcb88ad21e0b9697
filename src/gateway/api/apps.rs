//! Applications and hosts: `/v1/apps`, `/v1/hosts`, an application's status (which
//! release runs where, from the ledger) and its versions (from its artifact source).

use axum::Json;
use axum::extract::State;
use deploy_wire::api::{AppInfo, EnvironmentInfo, HostInfo, HostRelease, VersionInfo};
use serde::Deserialize;

use super::{ApiErr, AppPath, AppQuery, AppState};
use crate::gateway::auth::Principal;
use crate::gateway::service::ServiceError;
use crate::inventory::{App, Inventory};

type ApiResult<T> = Result<Json<T>, ApiErr>;

/// An unknown application: 404 with the inventory's message.
fn app(inv: &Inventory, name: &str) -> Result<App, ServiceError> {
    inv.app(name)
        .cloned()
        .map_err(|e| ServiceError::NotFound(e.message))
}

pub async fn apps(State(st): State<AppState>, _: Principal) -> ApiResult<Vec<AppInfo>> {
    let inv = st.svc.jobs().inventory()?;
    let info = |a: &App| AppInfo {
        name: a.name.clone(),
        package: a.package.clone(),
        environments: a
            .environments
            .values()
            .map(|e| EnvironmentInfo {
                name: e.name.clone(),
                hosts: inv
                    .hosts_for(a, &e.name)
                    .map(|(_, h)| h.iter().map(|h| h.name.clone()).collect())
                    .unwrap_or_default(),
                confirm: e.confirm,
            })
            .collect(),
    };
    Ok(Json(inv.apps.values().map(info).collect()))
}

pub async fn hosts(State(st): State<AppState>, _: Principal) -> ApiResult<Vec<HostInfo>> {
    let inv = st.svc.jobs().inventory()?;
    let pins = crate::pins::HostKeyPins::load(st.svc.jobs().known_hosts())?;
    let info = |h: &crate::inventory::Host| HostInfo {
        name: h.name.clone(),
        address: h.address.clone(),
        port: h.port,
        user: h.user.clone(),
        groups: h.groups.clone(),
        pinned: pins.get(&h.address, h.port).is_some(),
    };
    Ok(Json(inv.hosts.values().map(info).collect()))
}

#[derive(Deserialize)]
pub struct EnvQuery {
    env: Option<String>,
}

/// (environment, host) pairs of an application, of one environment or all.
fn placements(
    inv: &Inventory,
    a: &App,
    env: Option<&str>,
) -> Result<Vec<(String, String)>, ApiErr> {
    let mut pairs = Vec::new();
    for e in a
        .environments
        .values()
        .filter(|e| env.is_none_or(|w| w == e.name))
    {
        let (_, hosts) = inv.hosts_for(a, &e.name)?;
        pairs.extend(hosts.iter().map(|h| (e.name.clone(), h.name.clone())));
    }
    Ok(pairs)
}

pub async fn status(
    State(st): State<AppState>,
    _: Principal,
    AppPath(name): AppPath<String>,
    AppQuery(q): AppQuery<EnvQuery>,
) -> ApiResult<Vec<HostRelease>> {
    let inv = st.svc.jobs().inventory()?;
    let a = app(&inv, &name)?;
    if let Some(env) = &q.env
        && !a.environments.contains_key(env)
    {
        let message = format!("application {name} has no environment {env}");
        return Err(ServiceError::NotFound(message).into());
    }
    let pairs = placements(&inv, &a, q.env.as_deref())?;
    let rows = st
        .svc
        .db()
        .call(move |s| {
            let release = |(env, host): (String, String)| {
                let live = s.live(&name, &env, &host)?;
                Ok(HostRelease {
                    env,
                    host,
                    version: live.as_ref().map(|l| l.version.clone()),
                    deployed_by: live.as_ref().map(|l| l.user.clone()),
                    deployed_at_ms: live.as_ref().map(|l| l.ts_ms),
                    job_id: live.map(|l| l.job_id),
                })
            };
            pairs.into_iter().map(release).collect()
        })
        .await?;
    Ok(Json(rows))
}

pub async fn versions(
    State(st): State<AppState>,
    _: Principal,
    AppPath(name): AppPath<String>,
) -> ApiResult<Vec<VersionInfo>> {
    let inv = st.svc.jobs().inventory()?;
    let a = app(&inv, &name)?;
    let versions = st.svc.available_versions(&a).await?;
    let pairs = placements(&inv, &a, None)?;
    let live: Vec<(String, Option<String>)> = st
        .svc
        .db()
        .call(move |s| {
            let at = |(e, h): (String, String)| {
                Ok((
                    format!("{e}/{h}"),
                    s.live(&name, &e, &h)?.map(|l| l.version),
                ))
            };
            pairs.into_iter().map(at).collect()
        })
        .await?;
    let info = |v: String| VersionInfo {
        running_on: live
            .iter()
            .filter(|(_, lv)| lv.as_deref() == Some(v.as_str()))
            .map(|(n, _)| n.clone())
            .collect(),
        version: v,
    };
    Ok(Json(versions.into_iter().map(info).collect()))
}
