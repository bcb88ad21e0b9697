//! Every error the API answers, as `{code, message}` JSON: the one mapping from
//! [`ServiceError`] to a status and a stable code, and the extractor wrappers (`AppJson`,
//! `AppPath`, `AppQuery`) that turn axum's rejections into the same shape.  A 503 (a
//! limit, or `store_unavailable`: the state database cannot be reached) carries
//! `Retry-After`; the CLI's followers wait and ask again instead of giving up.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::RETRY_AFTER;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use deploy_wire::api::{ApiError, codes};
use serde::de::DeserializeOwned;

use crate::gateway::service::ServiceError;

/// An error response: a status, its JSON body (boxed: results stay small) and, for a
/// 429, the seconds of its `Retry-After`.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub Box<ApiError>, pub Option<u64>);

impl ApiErr {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiErr {
        ApiErr(
            status,
            Box::new(ApiError {
                code: code.into(),
                message: message.into(),
                upgrade_command: None,
                holder: None,
                job_id: None,
            }),
            None,
        )
    }
}

impl From<ServiceError> for ApiErr {
    /// The one place where service errors become statuses and codes.
    fn from(e: ServiceError) -> ApiErr {
        use ServiceError as E;
        let (status, code) = match &e {
            E::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED),
            E::Forbidden(_) => (StatusCode::FORBIDDEN, codes::FORBIDDEN),
            E::Invalid(_) => (StatusCode::BAD_REQUEST, codes::INVALID),
            E::NotFound(_) => (StatusCode::NOT_FOUND, codes::NOT_FOUND),
            E::UnknownEnvironment(_) => (StatusCode::NOT_FOUND, codes::UNKNOWN_ENVIRONMENT),
            E::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, codes::TOO_MANY_FAILURES),
            E::Locked { .. } => (StatusCode::CONFLICT, codes::LOCKED),
            E::Conflict(_) => (StatusCode::CONFLICT, codes::CONFLICT),
            E::Closed(_) => (StatusCode::CONFLICT, codes::CLOSED),
            E::UpToDate(_) => (StatusCode::CONFLICT, codes::UP_TO_DATE),
            E::Upstream(_) => (StatusCode::BAD_GATEWAY, codes::UPSTREAM),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE),
            E::StoreUnavailable(cause) => {
                tracing::warn!("answered 503: {cause}");
                let message = "the gateway cannot reach its state database; try again shortly";
                return ApiErr::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::STORE_UNAVAILABLE,
                    message,
                );
            }
            E::Internal(cause) => {
                tracing::error!("internal error: {cause}");
                let message = "internal error; see the gateway's log";
                return ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message);
            }
        };
        let mut err = ApiErr::new(status, code, e.to_string());
        match e {
            E::Locked { holder, job_id, .. } => {
                err.1.holder = Some(holder);
                err.1.job_id = Some(job_id);
            }
            E::Throttled {
                retry_after_secs, ..
            } => err.2 = Some(retry_after_secs),
            _ => {}
        }
        err
    }
}

/// Seconds a 503 asks its client to wait before asking again (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 2;

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut resp = (self.0, Json(*self.1)).into_response();
        let wait = match self.0 {
            StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            _ => self.2,
        };
        if let Some(secs) = wait {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A rejected request (body, path or query): what axum says, as `invalid_request`.
fn rejected(what: &str, text: String) -> ApiErr {
    ServiceError::Invalid(format!("bad {what}: {}", lowercase_first(&text))).into()
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// `Json` whose rejection is an [`ApiErr`].
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiErr> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(AppJson(v)),
            Err(r) => Err(rejected("request body", JsonRejection::body_text(&r))),
        }
    }
}

/// `Path` whose rejection is an [`ApiErr`].
pub struct AppPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiErr> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(AppPath(v)),
            Err(r) => Err(rejected("path", PathRejection::body_text(&r))),
        }
    }
}

/// `Query` whose rejection is an [`ApiErr`].
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiErr> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(AppQuery(v)),
            Err(r) => Err(rejected("query", QueryRejection::body_text(&r))),
        }
    }
}

/// Unknown routes.
pub async fn fallback(req: Request) -> ApiErr {
    let (method, path) = (req.method(), req.uri().path());
    ServiceError::NotFound(format!("no route {method} {path}")).into()
}

impl From<crate::gateway::store::StoreError> for ApiErr {
    fn from(e: crate::gateway::store::StoreError) -> ApiErr {
        ServiceError::from(e).into()
    }
}

impl From<crate::error::InputError> for ApiErr {
    fn from(e: crate::error::InputError) -> ApiErr {
        ServiceError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::store::StoreError;

    #[test]
    fn an_unreachable_database_is_503_store_unavailable_with_retry_after_and_no_detail() {
        let e = StoreError::Unavailable {
            doing: "reading a job",
            message: "cannot connect to postgres://deploy@db:5432/deploy: connection refused"
                .into(),
        };
        let resp = ApiErr::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some(RETRY_AFTER_SECS.to_string().as_str())
        );
        let err = ApiErr::from(StoreError::Unavailable {
            doing: "reading a job",
            message: "connection closed".into(),
        });
        assert_eq!(err.1.code, codes::STORE_UNAVAILABLE);
        assert!(!err.1.message.contains("connection"), "{}", err.1.message);
    }

    #[test]
    fn a_refused_statement_stays_an_internal_error() {
        let e = StoreError::Query {
            doing: "reading a job",
            message: "relation \"jobs\" does not exist".into(),
        };
        let err = ApiErr::from(e);
        assert_eq!(
            (err.0, err.1.code.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL)
        );
        assert!(err.into_response().headers().get(RETRY_AFTER).is_none());
    }
}
