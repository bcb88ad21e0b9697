//! Throttled sign-in: a token bucket per client address that each failed authentication
//! (a request's bearer token or a dashboard sign-in: none, unknown, revoked, expired)
//! empties by one, refilled at a steady rate.  An address whose bucket is empty is
//! answered 429 with `Retry-After` before its token is even looked at, so guessing gets
//! no faster by sending more.  Valid tokens never take from a bucket, and other
//! addresses have their own: a flood from one address slows down no one else.
//!
//! Decision: defaults of 10 failures at once, then 10 a minute (`[sign_in]` in
//! `gateway.toml`: `burst`, `per_minute`): a person who mistypes a token a few times never
//! meets it; a script with a revoked token is slowed to one try every 6 s.  At most
//! `MAX_SOURCES` addresses are tracked; past it, full buckets are forgotten first, and an
//! address that still finds no room is not throttled (rather than sharing a bucket that
//! would slow down valid clients).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

/// Addresses tracked at once.
const MAX_SOURCES: usize = 4096;

/// `[sign_in]` of `gateway.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignInLimits {
    /// Failed authentications one address may make at once.
    pub burst: u32,
    /// Then this many a minute.
    pub per_minute: u32,
}

impl Default for SignInLimits {
    fn default() -> SignInLimits {
        SignInLimits {
            burst: 10,
            per_minute: 10,
        }
    }
}

impl SignInLimits {
    /// Both at least 1 (a bucket that never fills would lock everyone out for good).
    pub fn check(&self) -> Result<(), String> {
        if self.burst == 0 || self.per_minute == 0 {
            return Err("expected burst and per_minute of at least 1".into());
        }
        Ok(())
    }
}

/// One address's bucket: how many failures it may still make (fractions refill), as of
/// `at_ms`.
struct Bucket {
    left: f64,
    at_ms: u64,
}

pub struct Throttle {
    limits: SignInLimits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttle {
    pub fn new(limits: SignInLimits) -> Throttle {
        Throttle {
            limits,
            buckets: Mutex::default(),
        }
    }

    fn ms_per_failure(&self) -> f64 {
        60_000.0 / f64::from(self.limits.per_minute.max(1))
    }

    fn refill(&self, b: &mut Bucket, now: u64) {
        let gained = now.saturating_sub(b.at_ms) as f64 / self.ms_per_failure();
        b.left = (b.left + gained).min(f64::from(self.limits.burst));
        b.at_ms = now;
    }

    /// Whether `source` may try to authenticate now: Err(seconds to wait) when its
    /// bucket is empty.
    pub fn admit(&self, source: &str, now: u64) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = buckets.get_mut(source) else {
            return Ok(());
        };
        self.refill(b, now);
        if b.left >= 1.0 {
            return Ok(());
        }
        let wait_ms = (1.0 - b.left) * self.ms_per_failure();
        Err((wait_ms / 1000.0).ceil().max(1.0) as u64)
    }

    /// Counts one failed authentication from `source`.
    pub fn failed(&self, source: &str, now: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(source) {
            let burst = f64::from(self.limits.burst);
            let per = self.ms_per_failure();
            buckets.retain(|_, b| b.left + now.saturating_sub(b.at_ms) as f64 / per < burst);
            if buckets.len() >= MAX_SOURCES {
                return;
            }
        }
        let full = Bucket {
            left: f64::from(self.limits.burst),
            at_ms: now,
        };
        let b = buckets.entry(source.to_string()).or_insert(full);
        self.refill(b, now);
        b.left = (b.left - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_steady_rate_per_address_and_others_untouched() {
        let t = Throttle::new(SignInLimits {
            burst: 3,
            per_minute: 6,
        });
        for _ in 0..3 {
            assert_eq!(t.admit("10.0.0.1", 0), Ok(()));
            t.failed("10.0.0.1", 0);
        }
        assert_eq!(t.admit("10.0.0.1", 0), Err(10), "one every 10 s");
        assert_eq!(t.admit("10.0.0.2", 0), Ok(()), "another address");
        assert_eq!(t.admit("10.0.0.1", 4_000), Err(6));
        assert_eq!(t.admit("10.0.0.1", 10_000), Ok(()));
        t.failed("10.0.0.1", 10_000);
        assert!(t.admit("10.0.0.1", 10_001).is_err());
        assert_eq!(t.admit("10.0.0.1", 60_000), Ok(()), "refilled");
    }

    #[test]
    fn the_buckets_stay_bounded_and_an_untracked_address_is_not_throttled() {
        let t = Throttle::new(SignInLimits {
            burst: 1,
            per_minute: 1,
        });
        for i in 0..(MAX_SOURCES + 100) {
            t.failed(&format!("10.{i}"), 0);
        }
        assert!(t.buckets.lock().unwrap().len() <= MAX_SOURCES);
        assert_eq!(t.admit(&format!("10.{}", MAX_SOURCES + 50), 0), Ok(()));
        assert!(t.admit("10.0", 0).is_err());
    }
}
