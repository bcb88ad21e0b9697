//! What every backend seam of the gateway (artifact sources, git hosts, CI builders,
//! notifiers) returns when it fails: [`BackendError`], the engine's (its transport
//! returns the same), whose [`ErrorKind`] says whether trying again may help; and how an
//! HTTP failure is classified, once for every backend that speaks HTTP.
//!
//! Retryable: a timeout, a connection refused or reset, HTTP 5xx, 429 and 408.
//! Permanent: any other 4xx (credentials refused, not found), an answer that does not
//! parse, a bad configuration.

pub use deploy_engine::error::{BackendError, ErrorKind};

use reqwest::StatusCode;

/// The kind of an HTTP answer that is not a success.
pub fn status_kind(status: StatusCode) -> ErrorKind {
    let busy = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT
    );
    if status.is_server_error() || busy {
        ErrorKind::Retryable
    } else {
        ErrorKind::Permanent
    }
}

/// The kind of a request that got no usable answer: the network's failures (connect,
/// timeout, a connection reset while sending or while reading the body, which reqwest
/// reports as `decode` when streaming) are retryable; a request that could not be built
/// (a bad URL) or a redirect loop is not.  (The backends parse bodies themselves, so a
/// body that does not parse is never a reqwest error.)
pub fn request_kind(e: &reqwest::Error) -> ErrorKind {
    if let Some(status) = e.status() {
        return status_kind(status);
    }
    if e.is_builder() || e.is_redirect() {
        ErrorKind::Permanent
    } else {
        ErrorKind::Retryable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_throttling_are_retryable_and_other_refusals_permanent() {
        for s in [500, 502, 503, 504, 429, 408] {
            let status = StatusCode::from_u16(s).unwrap();
            assert_eq!(status_kind(status), ErrorKind::Retryable, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 410, 422] {
            let status = StatusCode::from_u16(s).unwrap();
            assert_eq!(status_kind(status), ErrorKind::Permanent, "{s}");
        }
    }

    #[tokio::test]
    async fn a_connection_refused_is_retryable_and_a_bad_request_permanent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let http = reqwest::Client::new();
        let refused = http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(request_kind(&refused), ErrorKind::Retryable, "{refused}");
        let unbuildable = http.get("not a url").send().await.unwrap_err();
        assert_eq!(request_kind(&unbuildable), ErrorKind::Permanent);
    }
}
