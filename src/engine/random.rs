//! Random identifiers (nonces, token secrets, delivery ids) from the OS's source
//! (`getrandom`).

/// `n` random bytes as `2n` lower-case hex digits. Should the OS source fail (it does not
/// on Linux), a hash of the clock, a counter and the process id stands in: still unknown
/// to a server or a receiver, never a panic.
pub fn hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        use sha2::Digest;
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut seed = Vec::new();
        let mut block = 0u64;
        while seed.len() < n {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let c = COUNTER.fetch_add(1, Ordering::Relaxed);
            let line = format!("{t}:{c}:{block}:{}", std::process::id());
            seed.extend_from_slice(&sha2::Sha256::digest(line));
            block += 1;
        }
        bytes.copy_from_slice(&seed[..n]);
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_has_the_length_asked_and_differs_each_time() {
        let a = super::hex(16);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(a, super::hex(16));
        assert_eq!(super::hex(40).len(), 80);
    }
}
