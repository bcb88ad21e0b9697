//! Dashboard sessions: a signed-in browser holds a random session id in an HttpOnly,
//! SameSite=Strict cookie; the store keeps only the id's hash, the *id* of the token it
//! was made from, when it ends and when it was made.  The token itself is never kept,
//! shown or logged, and neither is the session id.
//!
//! Decisions: a session lasts [`SESSION_MS`] (8 h) or until its token expires, whichever
//! comes first; every request checks the token again, so revoking it ends its sessions at
//! once.  Sessions live in the store: they survive a gateway's restart, and every gateway
//! on a shared database knows them (a browser may reach any of them).  Expiry is judged
//! by the clock of the gateway that is asked (gateways' clocks are expected to agree to a
//! few seconds; a session lasts hours).  At most [`MAX_SESSIONS`] are kept; past that
//! the ones that end first go.  Expired rows are dropped when a session is made and by
//! the retention pass (`retention.rs`).

use crate::gateway::auth;
use crate::gateway::store::{Db, SessionRow, StoreError};

/// How long a session lasts at most.
pub const SESSION_MS: u64 = 8 * 3_600_000;
/// Sessions kept at once.
pub const MAX_SESSIONS: u32 = 10_000;
/// The cookie's name.
pub const COOKIE: &str = "deploy_session";

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The id of the token it was made from (never the token).
    pub token_id: String,
    pub expires_ms: u64,
}

/// The dashboard's sessions, in the store.
#[derive(Clone)]
pub struct Sessions {
    db: Db,
}

/// A session could not be made: no randomness, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no randomness for a session id: {0}")]
    Random(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Sessions {
    pub fn new(db: Db) -> Sessions {
        Sessions { db }
    }

    /// A new session for `token_id`, ending at `expires_ms`; returns the id for the cookie.
    pub async fn create(
        &self,
        token_id: &str,
        expires_ms: u64,
        now: u64,
    ) -> Result<String, SessionError> {
        let (_, id) = auth::new_token()?; // 24 random bytes, hex; the `dpl_` form is harmless
        let hash = auth::hash(&id);
        let row = SessionRow {
            token_id: token_id.to_string(),
            expires_ms,
            created_ms: now,
        };
        (self.db)
            .call(move |s| s.create_session(&hash, &row, MAX_SESSIONS))
            .await?;
        Ok(id)
    }

    /// The live session of a cookie's id.
    pub async fn get(&self, id: &str, now: u64) -> Result<Option<Session>, StoreError> {
        let hash = auth::hash(id);
        let row = self.db.call(move |s| s.session(&hash, now)).await?;
        Ok(row.map(|r| Session {
            token_id: r.token_id,
            expires_ms: r.expires_ms,
        }))
    }

    /// Ends a session, wherever it was made.
    pub async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let hash = auth::hash(id);
        self.db.call(move |s| s.end_session(&hash)).await?;
        Ok(())
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

    #[tokio::test]
    async fn a_session_ends_when_it_expires_or_is_removed_and_only_its_hash_is_kept() {
        let db = Db::in_memory().unwrap();
        let s = Sessions::new(db.clone());
        let id = s.create("t1", 1_000, 0).await.unwrap();
        assert_eq!(s.get(&id, 999).await.unwrap().unwrap().token_id, "t1");
        assert!(s.get(&id, 1_000).await.unwrap().is_none());
        let id2 = s.create("t1", 5_000, 0).await.unwrap();
        assert_ne!(id, id2);
        // Another handle on the store (another gateway, or this one restarted) knows it.
        let other = Sessions::new(db.clone());
        assert!(other.get(&id2, 1).await.unwrap().is_some());
        assert!(
            db.session(&id2, 1).unwrap().is_none(),
            "kept under its hash only"
        );
        assert!(db.session(&auth::hash(&id2), 1).unwrap().is_some());
        other.remove(&id2).await.unwrap();
        assert!(s.get(&id2, 1).await.unwrap().is_none());
        assert!(s.get("made-up", 1).await.unwrap().is_none());
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
