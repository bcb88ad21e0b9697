//! Tokens: made on the bastion (`deploy-gateway token create`), shown once, stored only as
//! SHA-256 hashes.  A token carries a user name, the environments it may act on
//! (read+write), the environments it may only read, the `run` right (`deploy run`), and an
//! optional expiry.

use sha2::{Digest, Sha256};

use super::store::Scope;

/// Who is calling, from a valid token.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    pub user: String,
    /// Environments it may read and act on.
    pub envs: Vec<String>,
    /// Environments it may only read.
    pub read_envs: Vec<String>,
    pub admin: bool,
    /// May run one-off commands (`deploy run`) where it may act.
    pub run: bool,
    /// Where the request came from (an address, or `local`), for the audit trail.
    pub source: String,
    /// The token's id (none for `apply` on the bastion): a schedule's runs act with the
    /// rights of the token that made it.
    pub token: Option<String>,
}

fn covers(list: &[String], env: &str) -> bool {
    list.iter().any(|e| e == env || e == "*")
}

impl Principal {
    /// May this principal deploy to, roll back or cancel jobs of `env`?
    pub fn may_act_on(&self, env: &str) -> bool {
        self.admin || covers(&self.envs, env)
    }

    /// May this principal run one-off commands (`deploy run`)?  A right of its own, on
    /// top of acting on the environment; admins always may.
    pub fn may_run(&self) -> bool {
        self.admin || self.run
    }

    /// May this principal see jobs, releases and hosts of `env`?
    pub fn may_read(&self, env: &str) -> bool {
        self.may_act_on(env) || covers(&self.read_envs, env)
    }

    /// The environments this principal may read, for filtered lists.
    pub fn read_scope(&self) -> Scope {
        let all = |l: &[String]| l.iter().any(|e| e == "*");
        if self.admin || all(&self.envs) || all(&self.read_envs) {
            return Scope::All;
        }
        Scope::Envs(self.envs.iter().chain(&self.read_envs).cloned().collect())
    }
}

/// Parses a lifetime: `90d`, `12h` or `30m`, in milliseconds.
pub fn parse_lifetime(text: &str) -> Result<u64, String> {
    let bad = || format!("bad lifetime `{text}`: expected a number and d, h or m (90d, 12h, 30m)");
    let t = text.trim();
    let (n, unit) = t.split_at(t.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    n.checked_mul(ms).ok_or_else(bad)
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token and its public id: `dpl_<id>_<secret>`; the id (not secret) names the token
/// in `token list` and `token revoke`.
pub fn new_token() -> std::io::Result<(String, String)> {
    let random = crate::random::hex(28);
    let (id, secret) = random.split_at(8);
    Ok((id.to_string(), format!("dpl_{id}_{secret}")))
}

/// Reads `Authorization: Bearer <token>`.
pub fn bearer(value: Option<&str>) -> Option<&str> {
    value?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_days_hours_or_minutes() {
        assert_eq!(parse_lifetime("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_lifetime("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_lifetime("30m"), Ok(30 * 60_000));
        for bad in ["", "d", "0d", "5s", "-1h", "1.5h", "99999999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (id, t) = new_token().unwrap();
        let (_, t2) = new_token().unwrap();
        assert_ne!(t, t2);
        assert!(t.starts_with(&format!("dpl_{id}_")));
        assert_eq!(hash(&t).len(), 64);
        assert_ne!(hash(&t), hash(&t2));
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
    }

    #[test]
    fn principals_act_only_on_their_environments() {
        let p = Principal {
            user: "ann".into(),
            envs: vec!["staging".into()],
            read_envs: vec!["qa".into()],
            ..Principal::default()
        };
        assert!(p.may_act_on("staging"));
        assert!(!p.may_act_on("production"));
        assert!(!p.may_act_on("qa") && p.may_read("qa") && p.may_read("staging"));
        assert!(!p.may_read("production"));
        assert_eq!(
            p.read_scope(),
            Scope::Envs(vec!["staging".into(), "qa".into()])
        );
        assert!(
            Principal {
                admin: true,
                ..p.clone()
            }
            .may_act_on("production")
        );
    }
}
