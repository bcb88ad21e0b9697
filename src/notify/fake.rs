//! A fake notifier for tests: records every notice it is sent and can be told to fail
//! its first N attempts, retryably or not (or to hang, for timeouts); plus a sample
//! [`notice`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Notice, NoticeKind, Notifier};
use crate::artifacts::Secret;
use crate::backend::BackendError;
use crate::githost::Commit;

/// Records notices; fails the first `fail_first` attempts.
#[derive(Debug, Default)]
pub struct FakeNotifier {
    pub name: String,
    /// Attempts still to fail.
    pub fail_first: AtomicU32,
    /// Whether those failures are permanent (by default they are retryable).
    pub fail_permanently: bool,
    /// Each attempt sleeps this long first (to exercise an attempt's timeout).
    pub delay: Option<Duration>,
    /// A secret it "holds", which its errors mention (to test scrubbing).
    pub secret: Option<Secret>,
    /// Notices of the attempts that succeeded.
    pub delivered: Mutex<Vec<Notice>>,
    /// How many attempts were made.
    pub attempts: AtomicU32,
}

impl FakeNotifier {
    pub fn new(name: &str) -> FakeNotifier {
        FakeNotifier {
            name: name.to_string(),
            ..FakeNotifier::default()
        }
    }

    /// Fails the first `n` attempts.
    pub fn failing(self, n: u32) -> FakeNotifier {
        self.fail_first.store(n, Ordering::SeqCst);
        self
    }

    /// Fails the first `n` attempts with a permanent error.
    pub fn refusing(mut self, n: u32) -> FakeNotifier {
        self.fail_permanently = true;
        self.failing(n)
    }

    /// The notices delivered so far.
    pub fn notices(&self) -> Vec<Notice> {
        self.delivered.lock().map(|d| d.clone()).unwrap_or_default()
    }

    async fn attempt(&self, notice: &Notice) -> Result<(), BackendError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let fail = self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            let leak = self.secret.as_ref().map(Secret::expose).unwrap_or("");
            let msg = format!("told to fail (key {leak})");
            return Err(match self.fail_permanently {
                true => BackendError::permanent(msg),
                false => BackendError::retryable(msg),
            });
        }
        if let Ok(mut d) = self.delivered.lock() {
            d.push(notice.clone());
        }
        Ok(())
    }
}

impl Notifier for FakeNotifier {
    fn describe(&self) -> String {
        format!("fake ({})", self.name)
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.attempt(notice))
    }

    fn secrets(&self) -> Vec<Secret> {
        self.secret.iter().cloned().collect()
    }
}

/// A sample notice: job `abc`, a `deploy` of hello 1.2.0 to staging by alice.
pub fn notice(event: NoticeKind, commits: Vec<Commit>) -> Notice {
    Notice {
        event,
        job_id: "abc".into(),
        job_kind: "deploy".into(),
        app: "hello".into(),
        env: "staging".into(),
        version: "1.2.0".into(),
        user: "alice".into(),
        commits,
        started_ms: 1_764_147_600_000,
        ts_ms: 1_764_147_660_000,
        delivery: String::new(),
    }
}
