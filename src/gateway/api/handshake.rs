//! The CLI version handshake on every response (`Deploy-Cli-*` headers; a too-old CLI
//! gets 426 with the upgrade command, a `Deploy-Client-Version` that is not a semver
//! version (`v0.1.0`, garbage, not text) a 400: it is a bad request, not an old CLI) and
//! one log line per request (never headers).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use deploy_wire::api::*;

use super::{ApiErr, AppState};

/// Adds the supported CLI range to every response; refuses a too-old CLI with 426.
/// Requests without the header (curl, scripts) are served: the handshake is the CLI's.
pub async fn handshake_and_log(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let client = req
        .headers()
        .get(CLIENT_VERSION_HEADER)
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let cli = &st.cli;
    let verdict = client
        .as_deref()
        .map(|c| (c, handshake(c, &cli.oldest, &cli.newest)));
    let mut resp = match verdict {
        Some((c, Handshake::Unparseable)) => {
            let message = format!(
                "the {CLIENT_VERSION_HEADER} header must be a semver version such as {} (got {:?})",
                cli.newest,
                c.chars().take(40).collect::<String>()
            );
            ApiErr::new(StatusCode::BAD_REQUEST, codes::INVALID, message).into_response()
        }
        Some((c, Handshake::TooOld)) => {
            let message = format!(
                "this gateway needs deploy {} or newer (you have {c})",
                cli.oldest
            );
            let mut e = ApiErr::new(StatusCode::UPGRADE_REQUIRED, codes::CLI_TOO_OLD, message);
            e.1.upgrade_command = Some(cli.upgrade_command.clone());
            e.into_response()
        }
        _ => next.run(req).await,
    };
    let h = resp.headers_mut();
    for (name, value) in [
        (CLI_NEWEST_HEADER, &cli.newest),
        (CLI_OLDEST_HEADER, &cli.oldest),
        (CLI_UPGRADE_HEADER, &cli.upgrade_command),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    tracing::info!("{method} {path} -> {}", resp.status().as_u16());
    resp
}
