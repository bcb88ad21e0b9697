//! Delivery, one attempt at a time: [`attempt`] sends a notice to one notifier, bounded
//! by a timeout, a panic caught, its error scrubbed of the notifier's secrets; [`Retry`]
//! says how many attempts a delivery gets and how long to wait after each failure;
//! [`DeliveryOutcome`] is what each attempt reports (the gateway makes it a `notified`
//! event of the job).
//!
//! Only a retryable failure is tried again (a timeout, a receiver that is down or
//! answers 5xx/429/408); a permanent one (another 4xx, a panicking notifier) is its
//! delivery's last attempt.  Where deliveries wait between attempts, and who makes them,
//! is the gateway's outbox (`gateway/outbox.rs`): in the store, so that they survive a
//! restart and any gateway on a shared database may make the next one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use super::{Notice, NoticeKind, Notifier, scrub};
use crate::backend::BackendError;

/// Receives each attempt's outcome (the gateway turns them into job events).  It
/// should be quick.
pub type Report = Arc<dyn Fn(DeliveryOutcome) + Send + Sync>;

/// How one attempt to deliver one notice to one notifier went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The notifier's `describe()` (no secret).
    pub notifier: String,
    pub event: NoticeKind,
    pub job_id: String,
    /// The delivery's idempotency key (the same for every attempt, from any gateway).
    pub delivery: String,
    /// 1-based.
    pub attempt: u32,
    /// How many attempts at most.
    pub attempts: u32,
    pub ok: bool,
    /// Why it failed: short and secret-free.
    pub error: Option<String>,
    /// When the next attempt follows; `None` when this was the last one (it succeeded,
    /// failed permanently, or was the last allowed).
    pub retry_in: Option<Duration>,
}

/// Retries: `attempts` in all; after attempt k fails retryably, wait
/// `base_delay * 2^(k-1)`, at most `max_delay` (by default 2 s, 4 s, 8 s, ... up to
/// 10 minutes: ten attempts over about 17 minutes); each attempt as a whole gives up
/// after `timeout` (a retryable failure).  `[notify_retry]` in gateway.toml sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// An attempt's limit (a JIRA notice may make several requests, each also limited
    /// to [`super::REQUEST_TIMEOUT`]).
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 10,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(600),
            timeout: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// The wait after attempt `attempt` (1-based) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// When attempt `attempt`, which ended with `result`, is followed by another: after
    /// a retryable failure that was not the last attempt allowed.
    pub fn next(&self, attempt: u32, result: &Result<(), BackendError>) -> Option<Duration> {
        let again = result.as_ref().is_err_and(BackendError::is_retryable);
        (again && attempt < self.attempts.max(1)).then(|| self.delay_after(attempt))
    }
}

/// One attempt: bounded by `timeout` (retryable); a panicking notifier is a permanent
/// failure (it is a bug, and would panic again); the error's message has the notifier's
/// secrets replaced by `***`.
pub async fn attempt(
    n: &dyn Notifier,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), BackendError> {
    let send = std::panic::AssertUnwindSafe(n.send(notice)).catch_unwind();
    let result = match tokio::time::timeout(timeout, send).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(BackendError::permanent("the notifier panicked")),
        Err(_) => Err(BackendError::retryable(format!(
            "timed out after {timeout:?}"
        ))),
    };
    let secrets = n.secrets();
    result.map_err(|e| e.map_message(|m| scrub(&m, &secrets)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Secret;
    use crate::notify::fake::{FakeNotifier, notice};

    #[test]
    fn backoff_doubles_up_to_its_cap_and_only_retryable_failures_are_retried() {
        let r = Retry::default();
        let d: Vec<_> = (1..=10).map(|a| r.delay_after(a).as_secs()).collect();
        assert_eq!(d, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600]);
        let total: u64 = (1..10).map(|a| r.delay_after(a).as_secs()).sum();
        assert_eq!(total, 1022, "ten attempts over about 17 minutes");
        let down = Err(BackendError::retryable("connection refused"));
        let refused = Err(BackendError::permanent("answered 401 Unauthorized"));
        assert_eq!(r.next(1, &down), Some(Duration::from_secs(2)));
        assert_eq!(r.next(10, &down), None, "the last attempt allowed");
        assert_eq!(r.next(1, &refused), None);
        assert_eq!(r.next(1, &Ok(())), None);
    }

    #[tokio::test]
    async fn an_attempt_is_bounded_scrubbed_and_survives_a_panic() {
        let mut fake = FakeNotifier::new("a").failing(1);
        fake.secret = Some(Secret::new("k3y-value"));
        let n = notice(NoticeKind::Failed, vec![]);
        let e = attempt(&fake, &n, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "told to fail (key ***)");
        assert!(e.is_retryable() && !format!("{e:?}").contains("k3y-value"));
        attempt(&fake, &n, Duration::from_secs(1)).await.unwrap();
        assert_eq!(fake.notices().len(), 1);

        let slow = FakeNotifier {
            delay: Some(Duration::from_secs(5)),
            ..FakeNotifier::new("slow")
        };
        let e = attempt(&slow, &n, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "timed out after 50ms");
        assert!(e.is_retryable());

        let e = attempt(&Panics, &n, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "the notifier panicked");
        assert!(!e.is_retryable());
    }

    #[derive(Debug)]
    struct Panics;

    impl Notifier for Panics {
        fn describe(&self) -> String {
            "panics".into()
        }
        fn send<'a>(
            &'a self,
            _: &'a Notice,
        ) -> futures_util::future::BoxFuture<'a, Result<(), BackendError>> {
            Box::pin(async { panic!("a bug") })
        }
        fn secrets(&self) -> Vec<Secret> {
            vec![]
        }
    }
}
