//! Tests of following a build: which failed polls are polled again.

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

async fn follow(builder: Arc<FakeBuilder>) -> Ended {
    let order = BuildOrder {
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
    };
    let job = JobInfo {
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
    };
    let sink = crate::engine::Collect::default();
    run(&order, &job, &sink, &CancelFlag::default()).await
}

#[tokio::test]
async fn a_retryable_poll_failure_is_polled_again_and_a_permanent_one_ends_the_build() {
    let busy = || BackendError::retryable("Jenkins at x: GET /queue/item/1/api/json answered 503");
    let (_, wheel) = follow(builder(vec![busy(), busy()])).await.unwrap();
    assert_eq!(wheel, WHEEL, "two busy answers, then the build");

    let (why, _) = follow(builder(vec![busy(); POLL_ERRORS as usize]))
        .await
        .unwrap_err();
    assert!(
        why.starts_with("lost the build on a fake builder: "),
        "{why}"
    );

    // A poll after the refusal would have found the build: there was none.
    let refused = BackendError::permanent("Jenkins at x: GET /queue/item/1/api/json answered 401");
    let (why, _) = follow(builder(vec![refused])).await.unwrap_err();
    assert_eq!(
        why,
        "lost the build on a fake builder: Jenkins at x: GET /queue/item/1/api/json answered 401"
    );
}
