//! The rows of version 9 of the schema, as the `Store` trait speaks them: the
//! notification outbox (one row per notice and `[[notify]]` route: [`NewDelivery`],
//! [`Delivery`], how an attempt ended: [`Attempted`]) and dashboard sessions
//! ([`SessionRow`]).  No secret is ever in a row: a delivery's payload is the notice
//! (job, release, user, commits), its error the notifier's scrubbed line; a session is
//! kept under the hash of its id, with the *id* of the token it was made from.

/// A delivery to write when a notice is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The idempotency key: job id, notice and route (`<job>.<notice>.<route>`); the
    /// receiver sees it on every attempt, from whichever gateway.
    pub id: String,
    pub job_id: String,
    /// `started`, `succeeded`, `failed` or `cancelled`.
    pub notice: String,
    /// The `[[notify]]` route's id (`Route::id`).
    pub route: String,
    /// The notice as JSON (see `gateway/notices.rs`).
    pub payload: String,
    /// When its first attempt is due.
    pub due_ms: u64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for an attempt (due at `next_ms`), or claimed by a gateway until then.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Its last attempt failed: permanently, or it was the last one allowed.
    Failed,
    /// The notifier had nothing to say about it (JIRA: no issue key in the commits).
    Skipped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Skipped => "skipped",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<DeliveryState, String> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Skipped,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| format!("unknown delivery state {s:?}"))
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub job_id: String,
    pub notice: String,
    pub route: String,
    pub payload: String,
    pub state: DeliveryState,
    /// Attempts made or under way: each claim counts one (a claimer that died too).
    pub attempts: u32,
    /// Pending: when it is due (a claim moves it to the claim's end, so that a row whose
    /// claimer died is due again then).  Otherwise: when it ended.
    pub next_ms: u64,
    /// The gateway that claimed it last, while a claim may be under way.
    pub claimed_by: Option<String>,
    /// Why the last failed attempt failed (kept once it is delivered): the notifier's
    /// short, secret-free line.
    pub last_error: Option<String>,
    pub created_ms: u64,
    pub done_ms: Option<u64>,
}

/// How an attempt ended, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    Delivered,
    /// A retryable failure: due again at `at_ms`.
    Retry {
        at_ms: u64,
        error: String,
    },
    /// A permanent failure, or the last attempt allowed.
    Failed {
        error: String,
    },
    /// Nothing was sent: the notifier did not want it.
    Skipped,
}

/// A dashboard session as stored (under the SHA-256 of its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The id of the token it was made from (never the token).
    pub token_id: String,
    pub expires_ms: u64,
    pub created_ms: u64,
}
