//! Dashboard sessions: a signed-in browser holds a random session id in an HttpOnly,
//! SameSite=Strict cookie; the gateway keeps, in memory, only the id's hash, the token it
//! was made from and when it ends.  The token itself is never kept, shown or logged.
//!
//! Decisions: a session lasts [`SESSION_MS`] (8 h) or until its token expires, whichever
//! comes first; every request checks the token again, so revoking it ends its sessions at
//! once.  Sessions live in the gateway's memory: a restart signs everyone out, and
//! gateways sharing a database do not share sessions (sign in on each, or route a browser
//! to one gateway).  At most [`MAX_SESSIONS`] are kept; past that the oldest goes.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::gateway::auth;

/// How long a session lasts at most.
pub const SESSION_MS: u64 = 8 * 3_600_000;
/// Sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;
/// The cookie's name.
pub const COOKIE: &str = "deploy_session";

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The id of the token it was made from (never the token).
    pub token_id: String,
    pub expires_ms: u64,
}

#[derive(Default)]
pub struct Sessions {
    /// SHA-256 of the session id -> session.
    by_hash: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `token_id`, ending at `expires_ms`; returns the id for the cookie.
    pub fn create(&self, token_id: &str, expires_ms: u64, now: u64) -> std::io::Result<String> {
        let (_, id) = auth::new_token()?; // 24 random bytes, hex; the `dpl_` form is harmless
        let mut m = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.expires_ms > now);
        if m.len() >= MAX_SESSIONS {
            let oldest = m
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        let session = Session {
            token_id: token_id.to_string(),
            expires_ms,
        };
        m.insert(auth::hash(&id), session);
        Ok(id)
    }

    /// The live session of a cookie's id.
    pub fn get(&self, id: &str, now: u64) -> Option<Session> {
        let m = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&auth::hash(id))
            .filter(|s| s.expires_ms > now)
            .cloned()
    }

    pub fn remove(&self, id: &str) {
        let mut m = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&auth::hash(id));
    }
}

/// The session id from a `Cookie` header.
pub fn from_cookie_header(header: Option<&str>) -> Option<&str> {
    header?
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for a new session (`secure`: the browser reached the gateway
/// over HTTPS, through a proxy that says so).
pub fn set_cookie(id: &str, max_age_ms: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age_ms / 1000
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_it_expires_or_is_removed() {
        let s = Sessions::default();
        let id = s.create("t1", 1_000, 0).unwrap();
        assert_eq!(s.get(&id, 999).unwrap().token_id, "t1");
        assert!(s.get(&id, 1_000).is_none());
        let id2 = s.create("t1", 5_000, 0).unwrap();
        assert_ne!(id, id2);
        s.remove(&id2);
        assert!(s.get(&id2, 1).is_none());
        assert!(s.get("made-up", 1).is_none());
    }

    #[test]
    fn sessions_stay_bounded() {
        let s = Sessions::default();
        for i in 0..(MAX_SESSIONS + 50) {
            s.create("t", 10_000 + i as u64, 0).unwrap();
        }
        assert!(s.by_hash.lock().unwrap().len() <= MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_read_back() {
        let c = set_cookie("abc", 3_600_000, false);
        assert_eq!(
            c,
            "deploy_session=abc; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=3600"
        );
        assert!(set_cookie("abc", 1000, true).ends_with("; Secure"));
        let h = Some("a=1; deploy_session=xyz ; b=2");
        assert_eq!(from_cookie_header(h), Some("xyz"));
        assert_eq!(from_cookie_header(Some("deploy_session=")), None);
        assert_eq!(from_cookie_header(None), None);
    }
}
