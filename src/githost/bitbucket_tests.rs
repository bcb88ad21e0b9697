//! Tests of `Bitbucket`: API URLs, pages, error messages, what is retryable, and that
//! the token stays out of `Debug`.

use super::*;
use serde_json::json;

#[test]
fn builds_api_urls() {
    let b = Bitbucket::new("https://bb.example.com/bitbucket/".into(), None).unwrap();
    let u = b.commits_url("PROJ/my-app", Some("release/1.0")).unwrap();
    assert_eq!(
        u.as_str(),
        "https://bb.example.com/bitbucket/rest/api/1.0/projects/PROJ/repos/my-app/commits/release%2F1.0"
    );
    let u = b.commits_url("~jdoe/app", None).unwrap();
    assert!(
        u.as_str().ends_with("/projects/~jdoe/repos/app/commits"),
        "{u}"
    );
    for bad in ["PROJ", "PROJ/a/b", "../x", "P/..", "P/a b", "/x"] {
        assert!(b.commits_url(bad, None).is_err(), "{bad}");
    }
    assert!(Bitbucket::new("not a url".into(), None).is_err());
}

#[test]
fn parses_commits_and_pages() {
    let page = json!({
        "size": 2, "limit": 2, "isLastPage": false, "start": 0, "nextPageStart": 2,
        "values": [
            {"id": "a1", "displayId": "a1", "author": {"name": "jdoe", "displayName": "Jane Doe"},
             "message": "Add login\n\nmore"},
            {"id": "b2", "author": {"name": "Bo Li", "emailAddress": "bo@x"}, "message": "Fix"}
        ]
    });
    let p = parse_page(&page).unwrap();
    assert_eq!(p.next_start, Some(2));
    assert_eq!(
        p.values[0],
        Commit {
            id: "a1".into(),
            author: "Jane Doe".into(),
            subject: "Add login".into()
        }
    );
    assert_eq!(p.values[1].author, "Bo Li");
    let last = json!({"size": 0, "isLastPage": true, "values": []});
    assert_eq!(
        parse_page(&last).unwrap(),
        Page {
            values: vec![],
            next_start: None
        }
    );
    assert!(parse_page(&json!({"isLastPage": false, "values": []})).is_err());
    assert!(parse_page(&json!({"values": [{"message": "x"}], "isLastPage": true})).is_err());
    assert!(parse_page(&json!({"errors": []})).is_err());
}

#[test]
fn errors_carry_bitbucket_messages() {
    let body = r#"{"errors":[{"context":null,"message":"Commit 'nope' does not exist in repository 'app'.","exceptionName":"x"}]}"#;
    let m = error_message(
        "Bitbucket at h",
        "commit nope of P/app",
        StatusCode::NOT_FOUND,
        body,
    );
    assert_eq!(
        m,
        "Bitbucket at h answered 404 Not Found for commit nope of P/app: Commit 'nope' does not exist in repository 'app'."
    );
    let m = error_message("B", "x", StatusCode::UNAUTHORIZED, "<html>");
    assert_eq!(
        m,
        "B answered 401 Unauthorized for x (check the gateway's token)"
    );
}

#[test]
fn debug_hides_the_token() {
    let b = Bitbucket::new("https://h".into(), Some(Secret::new("tok-123"))).unwrap();
    assert!(!format!("{b:?}").contains("tok-123"));
}

/// A Bitbucket that answers every request with `head` (a status line and headers) and
/// `body`.
async fn answering(head: &'static str, body: &'static str) -> Bitbucket {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 {head}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    Bitbucket::new(
        format!("http://127.0.0.1:{port}"),
        Some(Secret::new("tok-123")),
    )
    .unwrap()
}

#[tokio::test]
async fn a_busy_bitbucket_is_retryable_and_a_refusal_is_not() {
    let b = answering("503 Service Unavailable", "").await;
    let e = b.resolve("PROJ/app", "main").await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string()
            .contains("answered 503 Service Unavailable for commit main of PROJ/app")
    );
    let b = answering("429 Too Many Requests", "").await;
    assert!(
        b.resolve("PROJ/app", "main")
            .await
            .unwrap_err()
            .is_retryable()
    );
    let missing = r#"{"errors":[{"message":"Commit 'main' does not exist in repository 'app'."}]}"#;
    let b = answering("404 Not Found", missing).await;
    let e = b.resolve("PROJ/app", "main").await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(
        e.to_string()
            .ends_with("does not exist in repository 'app'."),
        "{e}"
    );
    let b = answering("401 Unauthorized", "").await;
    let e = b.resolve("PROJ/app", "main").await.unwrap_err();
    assert!(
        !e.is_retryable() && !format!("{e} {e:?}").contains("tok-123"),
        "{e}"
    );
    let b = answering("200 OK", "not json").await;
    assert!(
        !b.resolve("PROJ/app", "main")
            .await
            .unwrap_err()
            .is_retryable()
    );
    // Refused before anything is asked.
    assert!(
        !b.resolve("PROJ/app", "a..b")
            .await
            .unwrap_err()
            .is_retryable()
    );
    assert!(
        !b.resolve("not-a-repo", "main")
            .await
            .unwrap_err()
            .is_retryable()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let down = Bitbucket::new(format!("http://127.0.0.1:{port}"), None).unwrap();
    let e = down.resolve("PROJ/app", "main").await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string().starts_with("cannot reach the git host: "),
        "{e}"
    );
}
