//! The API's machine-readable description: `GET /v1/openapi.json` (public, like
//! `/v1/health`), an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! attributes and the wire types' schemas (`deploy-wire`'s `openapi` feature), with what
//! every operation shares added once by [`Shared`]: the bearer token (every route but
//! [`super::PUBLIC_ROUTES`]) and the error body any route may answer (`default`:
//! `ApiError`, the one shape of every 4xx and 5xx).
//!
//! The route table (`super::table`) stays the one list of routes; a unit test below checks
//! that the document names exactly its routes, so a route added without its attribute (or
//! an attribute left on a removed route) fails the fast tier.  CI runs schemathesis
//! against a running gateway with this document (tests/it/openapi.rs).

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use deploy_wire::api::ApiError;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{PUBLIC_ROUTES, apps, day_two, jobs, pipeline, records, schedules};

/// The name of the bearer-token security scheme in the document.
const TOKEN: &str = "token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "deploy gateway",
        description = "The gateway's HTTP API: the only way to production. Every route but \
            /v1/health and /v1/openapi.json needs `Authorization: Bearer <token>` \
            (`deploy-gateway token add`); what a token may read or change is its scopes'. \
            Every error is an `ApiError` (a stable `code` and a `message`); a 503 carries \
            `Retry-After`. Clients may send `Deploy-Client-Version` (semver); every \
            response says the CLI range the gateway supports (`Deploy-Cli-*`)."
    ),
    paths(
        super::health, document, super::metrics,
        apps::apps, apps::hosts, apps::status, apps::versions, apps::rollback_target,
        jobs::deploy, jobs::rollback, jobs::list, jobs::show, jobs::cancel, jobs::events,
        jobs::log,
        day_two::restart, day_two::run, day_two::logs,
        pipeline::build, pipeline::changes, pipeline::promote, pipeline::diff,
        schedules::add, schedules::list, schedules::show, schedules::remove,
        schedules::pause, schedules::resume, schedules::freeze, schedules::freezes,
        schedules::unfreeze,
        records::ledger, records::audit,
    ),
    components(schemas(ApiError)),
    modifiers(&Shared),
)]
struct ApiDoc;

/// What every operation shares, added once: the token and the error response.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("a gateway token (`dpl_…`)"))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(TOKEN, SecurityScheme::Http(scheme));
        let error = ResponseBuilder::new()
            .description(
                "an error: 400 bad input, 401 no or a bad token, 403 not the token's, 404, \
                 409 locked/closed/conflict/up to date, 426 a too old CLI, 429 too many \
                 failed sign-ins, 502 upstream, 503 unavailable (with Retry-After)",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiError")))
                    .build(),
            )
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC_ROUTES.contains(&path.as_str());
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses.insert("default".into(), error.clone().into());
                op.security = Some(if public {
                    vec![SecurityRequirement::default()]
                } else {
                    vec![SecurityRequirement::new(TOKEN, Vec::<String>::new())]
                });
            }
        }
    }
}

/// The document, built once.
fn doc() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the document serializes")
    })
}

/// `GET /v1/openapi.json`.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "gateway",
    responses((status = 200, description = "this document", body = serde_json::Value)))]
pub async fn document() -> Response {
    ([(CONTENT_TYPE, "application/json")], doc()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> serde_json::Value {
        serde_json::from_str(doc()).expect("the document is JSON")
    }

    #[test]
    fn the_document_names_exactly_the_route_tables_routes_each_with_its_token_rule() {
        let doc = json();
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                documented.push((method.to_uppercase(), path.clone()));
                let security = op["security"]
                    .as_array()
                    .expect("security on every operation");
                let public = PUBLIC_ROUTES.contains(&path.as_str());
                let anonymous = security.iter().any(|s| s.as_object().unwrap().is_empty());
                assert_eq!(anonymous, public, "{method} {path}: security {security:?}");
                assert!(op["responses"]["default"].is_object(), "{method} {path}");
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = super::super::routes()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = json();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced, not defined"
            );
        }
        for name in ["ApiError", "JobInfo", "Event", "EventKind", "DeployRequest"] {
            assert!(schemas.contains_key(name), "{name}");
        }
    }
}
