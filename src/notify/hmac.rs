//! The webhook signature: `X-Deploy-Signature: sha256=<hex>`, HMAC-SHA256 of the body (the
//! `hmac` crate), and its constant-time check for receivers.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length (a long one is hashed first): this cannot fail.
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(body);
    mac
}

/// The `X-Deploy-Signature` value of `body`: `sha256=<hex>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(key, body).finalize().into_bytes())
    )
}

/// Does `header` (`sha256=<hex>`) sign `body` under `key`?  Compares in constant time
/// (for receivers, such as the tests' one).
pub fn verify(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(sig) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    mac(key, body).verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 section 4, test case 2, through the header format.
    #[test]
    fn rfc4231_vector_as_a_header() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signs_and_verifies() {
        let sig = signature(b"key", b"{}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"key", b"{}", &sig));
        assert!(!verify(b"other", b"{}", &sig));
        assert!(!verify(b"key", b"{} ", &sig));
        assert!(!verify(b"key", b"{}", "sha256=00"));
        assert!(!verify(b"key", b"{}", "sha256=zz"));
    }
}
