//! Delivery: the [`Dispatcher`] sends a notice to every route that wants it, each in a
//! task of its own, with retries and backoff, and reports every attempt's outcome
//! through a callback.  Only a retryable failure is retried (a timeout, a receiver that
//! is down or answers 5xx/429); a permanent one (a 4xx, a panicking notifier) ends the
//! delivery at once.  It never blocks its caller, never panics on a notifier's
//! failure (or panic) and never fails a job.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::JoinHandle;

use super::{Notice, NoticeKind, Notifier, Route, scrub};
use crate::backend::BackendError;

/// Receives each attempt's outcome (the gateway turns them into job events).  Called
/// from the delivery tasks; it should be quick.
pub type Report = Arc<dyn Fn(DeliveryOutcome) + Send + Sync>;

/// How one attempt to deliver one notice to one notifier went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The notifier's `describe()` (no secret).
    pub notifier: String,
    pub event: NoticeKind,
    pub job_id: String,
    /// The delivery's id (the same for every attempt).
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
/// `base_delay * 2^(k-1)` (0.5 s, 1 s, 2 s by default); each attempt as a whole gives up
/// after `timeout` (a retryable failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub base_delay: Duration,
    /// An attempt's limit (a JIRA notice may make several requests, each also limited
    /// to [`super::REQUEST_TIMEOUT`]).
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// The wait after attempt `attempt` (1-based) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base_delay.saturating_mul(factor)
    }
}

/// The routes and how to retry.
#[derive(Debug, Default)]
pub struct Dispatcher {
    routes: Vec<Route>,
    retry: Retry,
}

impl Dispatcher {
    pub fn new(routes: Vec<Route>) -> Dispatcher {
        Dispatcher {
            routes,
            retry: Retry::default(),
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> Dispatcher {
        self.retry = retry;
        self
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Sends `notice` to every route whose filter matches and whose notifier wants it,
    /// each in a spawned task; returns at once.  The handles are for tests (dropping
    /// them detaches the tasks).  Outside a tokio runtime nothing is sent.
    pub fn dispatch(&self, notice: Notice, report: Report) -> Vec<JoinHandle<()>> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("notifications dropped: no async runtime");
            return Vec::new();
        };
        let mut handles = Vec::new();
        for route in &self.routes {
            if !route.filter.matches(&notice) || !route.notifier.wants(&notice) {
                continue;
            }
            let mut notice = notice.clone();
            notice.delivery = new_delivery_id();
            let (notifier, retry, report) = (route.notifier.clone(), self.retry, report.clone());
            handles.push(rt.spawn(deliver(notifier, notice, retry, report)));
        }
        handles
    }
}

/// Up to `retry.attempts` attempts of one delivery, each reported; a permanent failure
/// is the last.
async fn deliver(notifier: Arc<dyn Notifier>, notice: Notice, retry: Retry, report: Report) {
    let attempts = retry.attempts.max(1);
    let name = notifier.describe();
    for attempt in 1..=attempts {
        let result = attempt_once(notifier.as_ref(), &notice, retry.timeout).await;
        let ok = result.is_ok();
        let again = result.as_ref().is_err_and(BackendError::is_retryable);
        let retry_in = (again && attempt < attempts).then(|| retry.delay_after(attempt));
        let outcome = DeliveryOutcome {
            notifier: name.clone(),
            event: notice.event,
            job_id: notice.job_id.clone(),
            delivery: notice.delivery.clone(),
            attempt,
            attempts,
            ok,
            error: result
                .err()
                .map(|e| scrub(&e.to_string(), &notifier.secrets())),
            retry_in,
        };
        if let Some(e) = &outcome.error {
            tracing::warn!(notifier = %name, attempt, "notification failed: {e}");
        }
        report(outcome);
        match retry_in {
            Some(d) => tokio::time::sleep(d).await,
            None => return,
        }
    }
}

/// One attempt: bounded by `timeout` (retryable); a panicking notifier is a permanent
/// failure (it is a bug, and would panic again).
async fn attempt_once(
    n: &dyn Notifier,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), BackendError> {
    let send = std::panic::AssertUnwindSafe(n.send(notice)).catch_unwind();
    match tokio::time::timeout(timeout, send).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(BackendError::permanent("the notifier panicked")),
        Err(_) => Err(BackendError::retryable(format!(
            "timed out after {timeout:?}"
        ))),
    }
}

/// A fresh delivery id: 32 random hex digits.
pub fn new_delivery_id() -> String {
    crate::random::hex(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Secret;
    use crate::notify::fake::{FakeNotifier, notice};
    use crate::notify::{Filter, Notifier};
    use std::sync::Mutex;

    fn collector() -> (Report, Arc<Mutex<Vec<DeliveryOutcome>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (Arc::new(move |o| s.lock().unwrap().push(o)), seen)
    }

    fn quick() -> Retry {
        Retry {
            attempts: 3,
            base_delay: Duration::from_millis(5),
            timeout: Duration::from_millis(200),
        }
    }

    fn route(n: Arc<dyn Notifier>, filter: Filter) -> Route {
        Route {
            filter,
            notifier: n,
        }
    }

    #[test]
    fn backoff_doubles() {
        let r = Retry::default();
        let d: Vec<_> = (1..=3).map(|a| r.delay_after(a).as_millis()).collect();
        assert_eq!(d, [500, 1000, 2000]);
        assert_ne!(new_delivery_id(), new_delivery_id());
        assert_eq!(new_delivery_id().len(), 32);
    }

    #[tokio::test]
    async fn retries_until_ok_and_scrubs_errors() {
        let mut fake = FakeNotifier::new("a").failing(2);
        fake.secret = Some(Secret::new("k3y-value"));
        let fake = Arc::new(fake);
        assert_eq!(fake.secrets()[0].expose(), "k3y-value");
        let d = Dispatcher::new(vec![route(fake.clone(), Filter::default())]).with_retry(quick());
        let (report, seen) = collector();
        for h in d.dispatch(notice(NoticeKind::Failed, vec![]), report) {
            h.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        let oks: Vec<_> = seen.iter().map(|o| (o.attempt, o.ok)).collect();
        assert_eq!(oks, [(1, false), (2, false), (3, true)]);
        assert_eq!(seen[0].error.as_deref(), Some("told to fail (key ***)"));
        assert!(!format!("{seen:?}").contains("k3y-value"));
        assert_eq!(seen[2].retry_in, None);
        assert_eq!(seen[0].delivery, seen[2].delivery);
        assert_eq!(fake.notices()[0].delivery, seen[0].delivery);
    }

    #[tokio::test]
    async fn a_permanent_failure_ends_the_delivery_and_a_retryable_one_is_retried() {
        let refusing = Arc::new(FakeNotifier::new("refusing").refusing(5));
        let flaky = Arc::new(FakeNotifier::new("flaky").failing(1));
        let d = Dispatcher::new(vec![
            route(refusing.clone(), Filter::default()),
            route(flaky.clone(), Filter::default()),
        ])
        .with_retry(quick());
        let (report, seen) = collector();
        for h in d.dispatch(notice(NoticeKind::Succeeded, vec![]), report) {
            h.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        let of = |name: &str| -> Vec<_> {
            seen.iter()
                .filter(|o| o.notifier == format!("fake ({name})"))
                .map(|o| (o.attempt, o.ok, o.retry_in.is_some()))
                .collect()
        };
        assert_eq!(of("refusing"), [(1, false, false)], "not asked twice");
        assert_eq!(
            refusing.attempts.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        assert_eq!(of("flaky"), [(1, false, true), (2, true, false)]);
        let first = seen
            .iter()
            .find(|o| o.notifier == "fake (refusing)")
            .unwrap();
        assert_eq!(first.error.as_deref(), Some("told to fail (key )"));
        assert_eq!(first.attempts, 3);
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

    #[tokio::test]
    async fn a_panicking_notifier_is_a_permanent_failure() {
        let d =
            Dispatcher::new(vec![route(Arc::new(Panics), Filter::default())]).with_retry(quick());
        let (report, seen) = collector();
        for h in d.dispatch(notice(NoticeKind::Failed, vec![]), report) {
            h.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].error.as_deref(), Some("the notifier panicked"));
        assert_eq!(seen[0].retry_in, None);
    }

    #[tokio::test]
    async fn filters_and_timeouts() {
        let slow = Arc::new(FakeNotifier {
            delay: Some(Duration::from_secs(5)),
            ..FakeNotifier::new("slow")
        });
        let other = Arc::new(FakeNotifier::new("other-app"));
        let only_other = Filter {
            apps: vec!["other".into()],
            ..Filter::default()
        };
        let d = Dispatcher::new(vec![
            route(slow.clone(), Filter::default()),
            route(other.clone(), only_other),
        ])
        .with_retry(Retry {
            attempts: 2,
            ..quick()
        });
        let (report, seen) = collector();
        let handles = d.dispatch(notice(NoticeKind::Started, vec![]), report);
        assert_eq!(handles.len(), 1);
        for h in handles {
            h.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(
            seen.iter()
                .all(|o| o.error.as_deref() == Some("timed out after 200ms"))
        );
        assert_eq!(other.attempts.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn outside_a_runtime_nothing_happens() {
        let d = Dispatcher::new(vec![route(
            Arc::new(FakeNotifier::new("x")),
            Filter::default(),
        )]);
        let (report, _) = collector();
        assert!(
            d.dispatch(notice(NoticeKind::Started, vec![]), report)
                .is_empty()
        );
    }
}
