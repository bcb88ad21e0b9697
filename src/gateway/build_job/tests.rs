//! Tests of following a build: which failed polls are polled again, the queue's limit,
//! cancel, and builds followed again or adopted from a follower that stopped.

use deploy_wire::api::{JobKind, JobState};

use super::*;
use crate::artifacts::{Auth, SimpleIndex};
use crate::backend::BackendError;
use crate::builder::fake::FakeBuilder;

const WHEEL: &str = "hello_app-1.0.0-py3-none-any.whl";

fn builder(poll_errors: Vec<BackendError>) -> Arc<FakeBuilder> {
    let b = FakeBuilder {
        artifacts: vec![WHEEL.into()],
        ..FakeBuilder::default()
    };
    b.poll_errors.lock().unwrap().extend(poll_errors);
    Arc::new(b)
}

fn order(builder: Arc<FakeBuilder>) -> BuildOrder {
    BuildOrder {
        builder,
        source: Arc::new(SimpleIndex {
            url: "http://127.0.0.1:1/simple".into(),
            servers_url: None,
            auth: Auth::None,
        }),
        package: "hello-app".into(),
        request: BuildRequest {
            app: "hello".into(),
            commit: "0123456789abcdef".into(),
        },
        interval: Duration::from_millis(1),
        http: reqwest::Client::new(),
        git: None,
        queue_limit: Duration::from_secs(60),
        outage: Duration::from_millis(200),
    }
}

fn job() -> JobInfo {
    JobInfo {
        id: "j1".into(),
        kind: JobKind::Build,
        app: "hello".into(),
        env: String::new(),
        version: "0123456789abcdef".into(),
        check: false,
        user: "alice".into(),
        state: JobState::Running,
        created_ms: 0,
        finished_ms: None,
        error: None,
        triggered_by: None,
    }
}

/// Follows a build of `order` for job `j1`, with `db`, from `resumed` if given.
async fn follow_with(
    order: &BuildOrder,
    db: &Db,
    cancel: &CancelFlag,
    resumed: Option<BuildFollow>,
) -> (Ended, Vec<String>) {
    let (job, sink) = (job(), crate::engine::Collect::default());
    let ctx = Ctx {
        order,
        job: &job,
        db,
        sink: &sink,
        cancel,
    };
    let ended = run(&ctx, resumed).await;
    let lines = (sink.0.lock().unwrap().iter())
        .filter_map(|e| match &e.kind {
            EventKind::Output { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect();
    (ended, lines)
}

async fn follow(builder: Arc<FakeBuilder>) -> Ended {
    let db = Db::in_memory().unwrap();
    follow_with(&order(builder), &db, &CancelFlag::default(), None)
        .await
        .0
}

#[tokio::test]
async fn a_retryable_poll_failure_is_polled_again_and_a_permanent_one_ends_the_build() {
    let busy = || BackendError::retryable("Jenkins at x: GET /queue/item/1/api/json answered 503");
    let (_, wheel, _) = follow(builder(vec![busy(), busy()])).await.unwrap();
    assert_eq!(wheel, WHEEL, "two busy answers, then the build");

    // Busy for longer than the outage the order allows (200 ms here).
    let (why, _) = follow(builder(vec![busy(); 100_000])).await.unwrap_err();
    assert!(why.starts_with("lost the build: "), "{why}");

    // A poll after the refusal would have found the build: there was none.
    let refused = BackendError::permanent("Jenkins at x: GET /queue/item/1/api/json answered 401");
    let (why, _) = follow(builder(vec![refused])).await.unwrap_err();
    assert_eq!(
        why,
        "lost the build: Jenkins at x: GET /queue/item/1/api/json answered 401"
    );
}

#[tokio::test]
async fn a_build_that_waits_in_the_queue_past_its_limit_fails_and_its_queue_item_is_cancelled() {
    let b = Arc::new(FakeBuilder {
        queued_polls: usize::MAX,
        ..FakeBuilder::default()
    });
    let mut o = order(b.clone());
    o.queue_limit = Duration::from_millis(50);
    let db = Db::in_memory().unwrap();
    let (why, _) = follow_with(&o, &db, &CancelFlag::default(), None)
        .await
        .0
        .unwrap_err();
    assert!(
        why.contains("waited") && why.contains("build_queue_timeout_secs"),
        "{why}"
    );
    assert!(
        why.ends_with("its queue item was cancelled on a fake builder"),
        "{why}"
    );
    assert_eq!(*b.cancelled.lock().unwrap(), ["1"]);
}

#[tokio::test]
async fn a_cancelled_job_stops_its_build_on_the_builder() {
    let b = builder(Vec::new());
    let cancel = CancelFlag::default();
    cancel.store(true, Ordering::SeqCst);
    let db = Db::in_memory().unwrap();
    let (why, _) = follow_with(&order(b.clone()), &db, &cancel, None)
        .await
        .0
        .unwrap_err();
    assert!(
        why.starts_with("cancelled while building; its queue item was cancelled"),
        "{why}"
    );
    assert_eq!(*b.cancelled.lock().unwrap(), ["1"]);
}

#[tokio::test]
async fn the_build_is_recorded_as_followed_and_one_nobody_followed_to_its_end_is_adopted() {
    let b = builder(Vec::new());
    let db = Db::in_memory().unwrap();
    // A first follower starts build 1 and stops (its job is not running any more).
    let first = follow_with(&order(b.clone()), &db, &CancelFlag::default(), None).await;
    assert!(first.0.is_ok());
    let stored = db.build_follow("j1").unwrap().unwrap();
    assert_eq!(
        (stored.builder_id.as_str(), stored.app.as_str()),
        ("1", "hello")
    );
    assert!(stored.offset > 0, "{stored:?}");
    assert!(
        db.unfollowed_build("hello", "0123456789abcdef")
            .unwrap()
            .is_some(),
        "not ended"
    );
    // A new build of that commit follows build 1 instead of starting another.
    let (ended, lines) = follow_with(&order(b.clone()), &db, &CancelFlag::default(), None).await;
    assert_eq!(ended.unwrap().1, WHEEL);
    assert_eq!(b.builds.lock().unwrap().len(), 1, "no second build");
    assert!(
        lines[0].starts_with("adopting a queued build of this commit, started by job j1"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn an_adopted_job_follows_its_build_on_from_where_its_follower_stopped() {
    let b = Arc::new(FakeBuilder {
        script: (vec!["one".into(), "two".into(), "three".into()], false),
        artifacts: vec![WHEEL.into()],
        ..FakeBuilder::default()
    });
    let id = b
        .start(&BuildRequest {
            app: "hello".into(),
            commit: "0123456789abcdef".into(),
        })
        .await
        .unwrap();
    let left = BuildFollow {
        job_id: "j1".into(),
        app: "hello".into(),
        commit: "0123456789abcdef".into(),
        builder_id: id,
        build: None,
        offset: 2,
        queued_ms: now_ms(),
    };
    let db = Db::in_memory().unwrap();
    let (ended, lines) =
        follow_with(&order(b.clone()), &db, &CancelFlag::default(), Some(left)).await;
    assert_eq!(ended.unwrap().1, WHEEL);
    assert_eq!(
        lines,
        [
            "followed again: the gateway that followed this build stopped",
            "three"
        ]
    );
}
