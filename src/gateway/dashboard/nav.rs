//! The dashboard's navigation, the same on every page: who a page is for ([`Who`], the
//! name and the admin's Audit link in the header) and how an error page knows it.  The
//! [`Viewer`] extractor records the signed-in user for the request being answered (a
//! task-local value around each request, [`with_seen_by`]), so an error rendered after
//! the sign-in was checked (`PageErr`: a job that does not exist, a page only admins see,
//! a path no page has) shows the same header as the page would have.

use std::cell::RefCell;

use axum::response::Response;
use serde::Serialize;

use super::{PageErr, Viewer};
use crate::gateway::auth::Principal;
use crate::gateway::service::ServiceError;

/// Who a page is for, as its navigation shows them.
#[derive(Serialize, Clone)]
pub struct Who {
    user: String,
    admin: bool,
}

pub fn who(p: &Principal) -> Who {
    Who {
        user: p.user.clone(),
        admin: p.admin,
    }
}

tokio::task_local! {
    /// The signed-in user of the request being answered, once [`Viewer`] checked it.
    static SEEN_BY: RefCell<Option<Who>>;
}

/// Middleware: a place for the request's signed-in user while it is answered.
pub async fn with_seen_by(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    SEEN_BY.scope(RefCell::new(None), next.run(req)).await
}

/// Records `p` as the signed-in user of the request being answered.
pub fn seen_by(p: &Principal) {
    let _ = SEEN_BY.try_with(|w| *w.borrow_mut() = Some(who(p)));
}

/// The signed-in user of the request being answered, if the sign-in was checked.
pub fn viewer() -> Option<Who> {
    SEEN_BY.try_with(|w| w.borrow().clone()).ok().flatten()
}

/// A `/ui/` path no page has: 404, with the navigation.
pub async fn not_found(Viewer(_): Viewer, uri: axum::http::Uri) -> PageErr {
    PageErr(ServiceError::NotFound(format!("no page {}", uri.path())))
}
