//! Tokens: made on the bastion (`deploy-gateway token create`), shown once, stored only as
//! SHA-256 hashes.  A token carries a user name and the environments it may act on.

use sha2::{Digest, Sha256};

/// Who is calling, from a valid token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub envs: Vec<String>,
    pub admin: bool,
}

impl Principal {
    /// May this principal deploy to (or cancel jobs of) `env`?
    pub fn may_act_on(&self, env: &str) -> bool {
        self.admin || self.envs.iter().any(|e| e == env || e == "*")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new token and its public id: `dpl_<id>_<secret>`; the id (not secret) names the token
/// in `token list` and `token revoke`.
pub fn new_token() -> std::io::Result<(String, String)> {
    use std::io::Read;
    let mut bytes = [0u8; 28];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let id = hex(&bytes[..4]);
    Ok((id.clone(), format!("dpl_{id}_{}", hex(&bytes[4..]))))
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
            admin: false,
        };
        assert!(p.may_act_on("staging"));
        assert!(!p.may_act_on("production"));
        assert!(
            Principal {
                admin: true,
                ..p.clone()
            }
            .may_act_on("production")
        );
    }
}
