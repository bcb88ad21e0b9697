//! The door of an environment: freezes (`deploy freeze ENV --until ... --reason ...`,
//! `deploy unfreeze ENV`) and the deploy windows of the inventory (`windows:`).  A
//! deploy, a restart or a scheduled run that finds the door shut is refused with the
//! reason and when it opens; an admin may force it with a reason (audited).  Rollbacks,
//! checks and one-off commands always pass: a freeze must never keep anyone from
//! undoing a bad release.

use deploy_wire::api::JobKind;
use deploy_wire::schedule::{FreezeInfo, FreezeRequest};

use super::{JobService, Order, Result, ServiceError};
use crate::gateway::auth::Principal;
use crate::gateway::store::now_ms;
use crate::schedule::{format_local, parse_at};

/// The zone freezes are shown in when the request names none.
const UTC: &str = "UTC";

impl JobService {
    pub async fn freeze(&self, p: &Principal, req: FreezeRequest) -> Result<FreezeInfo> {
        let tz = req.tz.as_deref().unwrap_or(UTC);
        let target = format!("{} until {} {tz}", req.env, req.until);
        self.visible_env_anywhere(p, &req.env, &target).await?;
        self.authorise(p, "freeze", &req.env, &target).await?;
        let until_ms =
            parse_at(&req.until, tz).map_err(|e| ServiceError::Invalid(format!("--until: {e}")))?;
        if until_ms <= now_ms() {
            return Err(ServiceError::Invalid(format!(
                "--until {} is in the past",
                req.until
            )));
        }
        if req.reason.trim().is_empty() {
            return Err(ServiceError::Invalid(
                "a freeze needs a reason (--reason)".into(),
            ));
        }
        let f = FreezeInfo {
            env: req.env,
            until_ms,
            reason: req.reason,
            user: p.user.clone(),
            created_ms: now_ms(),
        };
        let stored = f.clone();
        self.db().call(move |s| s.set_freeze(&stored)).await?;
        self.audit(
            &p.user,
            "freeze",
            &format!("{target}: {}", f.reason),
            "accepted",
        )
        .await;
        Ok(f)
    }

    pub async fn unfreeze(&self, p: &Principal, env: &str) -> Result<()> {
        self.visible_env_anywhere(p, env, env).await?;
        self.authorise(p, "unfreeze", env, env).await?;
        let e = env.to_string();
        if !self.db().call(move |s| s.lift_freeze(&e)).await? {
            return Err(ServiceError::NotFound(format!("{env} is not frozen")));
        }
        self.audit(&p.user, "unfreeze", env, "accepted").await;
        Ok(())
    }

    /// The freezes in force, of the environments the principal may read.
    pub async fn freezes_for(&self, p: &Principal) -> Result<Vec<FreezeInfo>> {
        let now = now_ms();
        let all = self.db().call(|s| s.freezes()).await?;
        Ok(all
            .into_iter()
            .filter(|f| f.until_ms > now && p.may_read(&f.env))
            .collect())
    }

    /// Refuses an order that the environment's door keeps out (a freeze, or no window
    /// open now), unless an admin forces it with a reason.
    pub(super) async fn through_the_door(&self, p: &Principal, order: &Order) -> Result<()> {
        if !matches!(order.kind, JobKind::Deploy | JobKind::Restart) {
            return Ok(());
        }
        let Some(Shut { why, .. }) = self.shut(&order.app, &order.env).await? else {
            return Ok(());
        };
        let target = order.target();
        match &order.force {
            Some(reason) if p.admin && !reason.trim().is_empty() => {
                self.audit(
                    &p.user,
                    "force",
                    &format!("{target}: {why}"),
                    &format!("forced: {reason}"),
                )
                .await;
                Ok(())
            }
            Some(_) if p.admin => Err(ServiceError::Invalid("--force needs a reason".into())),
            Some(_) => Err(ServiceError::Forbidden(format!(
                "only an admin may force past this: {why}"
            ))),
            None => {
                self.audit(
                    &p.user,
                    order.kind.as_str(),
                    &target,
                    &format!("refused: {why}"),
                )
                .await;
                Err(ServiceError::Closed(why))
            }
        }
    }

    /// Why `env` of `app` is shut now, if it is, and until when: what a deploy there
    /// would be refused with (409 `closed`).
    pub async fn shut(&self, app: &str, env: &str) -> Result<Option<Shut>> {
        let mut one = self.shut_all(&[(app, env)]).await?;
        Ok(one.pop().flatten())
    }

    /// [`Self::shut`] of each (application, environment), with one read of the freezes
    /// and of the inventory (the dashboard's matrix).
    pub async fn shut_all(&self, which: &[(&str, &str)]) -> Result<Vec<Option<Shut>>> {
        let freezes = self.db().call(|s| s.freezes()).await?;
        let inv = self.jobs.inventory()?;
        let now = now_ms();
        let door = |(app, env): &(&str, &str)| {
            let e = inv.apps.get(*app).and_then(|a| a.environments.get(*env));
            shut_now(env, &freezes, e, now)
        };
        Ok(which.iter().map(door).collect())
    }
}

/// Why an environment's door is shut, and when it opens.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Shut {
    /// `frozen` or `outside_windows`.
    pub kind: &'static str,
    /// When it opens again (None: not within a week).
    pub until_ms: Option<u64>,
    /// The same sentence as the refusal.
    pub why: String,
}

/// Whether `env` is shut at `now` by a freeze in `freezes` or by its windows (`e`, the
/// inventory's environment, when it has one).  Pure.
pub fn shut_now(
    env: &str,
    freezes: &[FreezeInfo],
    e: Option<&crate::inventory::Environment>,
    now: u64,
) -> Option<Shut> {
    if let Some(f) = freezes.iter().find(|f| f.env == env && f.until_ms > now) {
        let until = format_local(f.until_ms, UTC);
        return Some(Shut {
            kind: "frozen",
            until_ms: Some(f.until_ms),
            why: format!("{env} is frozen until {until} by {}: {}", f.user, f.reason),
        });
    }
    let e = e?;
    if e.windows.is_empty() || e.windows.iter().any(|w| w.contains(now)) {
        return None;
    }
    let next = e.windows.iter().map(|w| w.next_open(now)).min();
    let next = next.filter(|n| *n != u64::MAX);
    let list: Vec<String> = e.windows.iter().map(|w| w.to_string()).collect();
    let opens = next.map_or("not within a week".to_string(), |n| format_local(n, UTC));
    Some(Shut {
        kind: "outside_windows",
        until_ms: next,
        why: format!(
            "{env} is outside its deploy windows ({}); the next opens {opens}",
            list.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    const INVENTORY: &str = "\
hosts:
  web1: {address: 127.0.0.1, port: 1, groups: [web]}
  prod1: {address: 127.0.0.1, port: 1, groups: [prod]}
applications:
  hello:
    package: hello-app
    wsgi: hello_app:app
    port: 8000
    server_names: [hello.example.test]
    environments:
      staging: {groups: [web], windows: [\"Tue 10:00-11:00 UTC\"]}
      production: {groups: [prod]}
";

    #[test]
    fn a_door_is_shut_by_a_freeze_or_outside_its_windows_until_it_opens() {
        let inv = Inventory::parse(std::path::Path::new("inventory.yml"), INVENTORY).unwrap();
        let envs = &inv.apps["hello"].environments;
        let monday_noon = parse_at("2026-12-07T12:00", UTC).unwrap();
        let shut = shut_now("staging", &[], envs.get("staging"), monday_noon).unwrap();
        assert_eq!(shut.kind, "outside_windows");
        assert_eq!(shut.until_ms, parse_at("2026-12-08T10:00", UTC).ok());
        assert!(
            shut.why.ends_with("the next opens 2026-12-08 10:00 UTC"),
            "{}",
            shut.why
        );
        let open = parse_at("2026-12-08T10:30", UTC).unwrap();
        assert_eq!(shut_now("staging", &[], envs.get("staging"), open), None);
        assert_eq!(
            shut_now("production", &[], envs.get("production"), open),
            None
        );

        let freeze = FreezeInfo {
            env: "production".into(),
            until_ms: parse_at("2026-12-24T00:00", UTC).unwrap(),
            reason: "holidays".into(),
            user: "ann".into(),
            created_ms: 0,
        };
        let frozen = shut_now("production", &[freeze], envs.get("production"), open).unwrap();
        assert_eq!(
            (frozen.kind, frozen.until_ms),
            ("frozen", parse_at("2026-12-24T00:00", UTC).ok())
        );
        assert_eq!(
            frozen.why,
            "production is frozen until 2026-12-24 00:00 UTC by ann: holidays"
        );
    }
}
