//! `deploy-gateway token create|list` on the bastion: names checked (each environment
//! must be one the inventory has, or `*`: a typo would make a token that can do
//! nothing), only the hash stored, the token printed once; the list shows scopes, rights (admin, run), expiry and
//! last use, never a token.

use super::auth;
use super::store::{Db, NewToken, StoreError, now_ms};

/// Exit codes of the token commands (the binary's).
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// What a new token may do.
pub struct Scopes {
    pub user: String,
    /// Read and act on.
    pub envs: Vec<String>,
    /// Only read.
    pub read: Vec<String>,
    pub admin: bool,
    /// May run one-off commands (`deploy run`) where it may act.
    pub run: bool,
    /// `90d`, `12h`, `30m`.
    pub expires: Option<String>,
}

/// `token create` for an inventory with environments `known`: (exit code, message) on
/// failure.
pub fn create(
    store: &Db,
    s: Scopes,
    known: &std::collections::BTreeSet<String>,
) -> Result<(), (u8, String)> {
    let usage = |e: String| (EXIT_USAGE, e);
    let db = |e: StoreError| (EXIT_FAILED, e.to_string());
    deploy_wire::names::check_ident("user", &s.user).map_err(|e| usage(e.to_string()))?;
    for e in s.envs.iter().chain(&s.read).filter(|e| *e != "*") {
        deploy_wire::names::check_ident("environment", e).map_err(|e| usage(e.to_string()))?;
        if !known.contains(e) {
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            return Err(usage(format!(
                "the inventory has no environment {e} (it has: {}; `*` for all)",
                names.join(", ")
            )));
        }
    }
    let lifetime = s.expires.as_deref().map(auth::parse_lifetime).transpose();
    let expires_ms = lifetime.map_err(usage)?.map(|l| now_ms().saturating_add(l));
    let (id, token) = auth::new_token().map_err(|e| (EXIT_FAILED, e.to_string()))?;
    let new = NewToken {
        id: id.clone(),
        hash: auth::hash(&token),
        user: s.user.clone(),
        envs: s.envs.clone(),
        read_envs: s.read.clone(),
        admin: s.admin,
        expires_ms,
        run: s.run,
    };
    store.create_token(&new).map_err(db)?;
    store
        .audit(
            "admin",
            "token create",
            &format!("{id} for {}", s.user),
            "ok",
        )
        .map_err(db)?;
    let read = if s.read.is_empty() {
        String::new()
    } else {
        format!("; read-only: {}", s.read.join(","))
    };
    let until = expires_ms
        .map(|t| format!("; expires {} UTC", utc(t)))
        .unwrap_or_default();
    let rights = match (s.admin, s.run) {
        (true, _) => ", admin",
        (false, true) => ", run",
        (false, false) => "",
    };
    eprintln!(
        "token {id} for {} (environments: {}{read}{rights}{until}); shown once, store it now:",
        s.user,
        s.envs.join(","),
    );
    println!("{token}");
    Ok(())
}

/// `token list`.
pub fn list(store: &Db) -> Result<(), StoreError> {
    let tokens = store.tokens()?;
    println!(
        "{:<10} {:<16} {:<20} {:<16} {:<6} {:<6} {:<17} {:<17} state",
        "id",
        "user",
        "environments",
        "read-only",
        "admin",
        "run",
        "expires (UTC)",
        "last used (UTC)"
    );
    let now = now_ms();
    for t in tokens {
        let state = match t.expires_ms {
            _ if t.revoked => "revoked",
            Some(e) if e <= now => "expired",
            _ => "active",
        };
        println!(
            "{:<10} {:<16} {:<20} {:<16} {:<6} {:<6} {:<17} {:<17} {state}",
            t.id,
            t.user,
            t.envs.join(","),
            t.read_envs.join(","),
            t.admin,
            t.run,
            t.expires_ms.map(utc).unwrap_or_else(|| "never".into()),
            t.last_used_ms.map(utc).unwrap_or_else(|| "never".into()),
        );
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM` (UTC) of Unix milliseconds.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // The civil date of a day number (Howard Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, min) = (rest / 3600, rest % 3600 / 60);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00");
        assert_eq!(super::utc(1_709_251_199_000), "2024-02-29 23:59");
    }
}
