//! Routes about the service itself: health, the catalog, the OpenAPI document.
//!
//! The document is the API's contract, checked by `tests/schemathesis.rs` against the running
//! server and by a unit test against the router. Each handler's `#[utoipa::path]` names what is
//! particular to its route; [`complete`] adds what every route shares — the answers the
//! middleware, the extractors and the database give whatever the route (400, 401, 413, 415, 500,
//! 503, 507), the security schemes, and what utoipa cannot express.

use std::sync::OnceLock;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::{
    consents, grants, health, log, messages, notices, overrides, privacy, report, requests, rights, sign_in, subjects,
    tokens,
};
use crate::vault::Principal;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the server and its database answer.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness and database reachability. No token needed.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, body = Health), (status = 503, description = "The database does not answer (`unavailable`)", body = ErrorBody)))]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state
        .vault
        .ping()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is unavailable"))?;
    Ok(Json(Health { status: "ok" }))
}

/// The catalog (data map): organisation, purposes, fields, event types, recipients, roles.
#[utoipa::path(get, path = "/v1/catalog", tag = "meta",
    responses((status = 200, description = "The catalog as JSON", body = Object)),
    security(("bearer" = [])))]
pub async fn catalog(State(state): State<AppState>, _caller: Principal) -> impl IntoResponse {
    Json(state.vault.catalog().clone())
}

/// This document, built once per process and served as the same bytes every time. No token
/// needed.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], openapi_document().clone())
}

/// The OpenAPI document as JSON. Building it takes about 20 times the work of answering
/// `/healthz`, and it cannot change while the process runs, so it is built on first use only
/// (not at start: its few MB of intermediate values would stay in the idle server's heap as
/// freed space, about 4 MB of the resident memory of a server nobody asked for it).
pub fn openapi_document() -> &'static Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT.get_or_init(|| Bytes::from(serde_json::to_vec(&document()).expect("the OpenAPI document serialises")))
}

/// The whole document: the routes' own descriptions, completed with what every route shares.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document is JSON");
    complete(&mut doc);
    doc
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Candor",
        description = "Customer-data vault: field-level encrypted personal data, purpose-bound access. \
Every request that touches personal data names its purpose in the `Candor-Purpose` header.\n\n\
Every error answer is `{\"error\": {\"code\", \"message\", \"field\"?}}` (`ErrorBody`). Besides the statuses each \
operation lists: a method a path does not accept is answered `405 method_not_allowed` with an `Allow` header, and a \
path that is no route `404 not_found`. A request with two `Authorization` headers, two `Candor-Purpose` headers, or \
a JSON body naming a key twice in one object is refused (400)."
    ),
    paths(
        healthz,
        health::readyz,
        openapi,
        catalog,
        privacy::notice,
        requests::metrics,
        subjects::create_subject,
        subjects::lookup_subjects,
        subjects::get_subject,
        subjects::correct_subject,
        subjects::append_event,
        subjects::list_events,
        consents::get_consents,
        consents::post_consents,
        consents::get_history,
        consents::get_receipt,
        consents::audience,
        consents::counts,
        super::imports::import,
        super::imports::import_status,
        rights::erase_subject,
        rights::place_hold,
        rights::lift_hold,
        rights::get_hold,
        rights::restrict,
        rights::lift_restriction,
        report::report,
        report::export,
        requests::open_request,
        requests::change_request,
        requests::get_request,
        requests::list_requests,
        tokens::list,
        tokens::revoke,
        overrides::open,
        sign_in::create_link,
        messages::register,
        messages::verify,
        grants::recipients,
        grants::create,
        grants::list,
        grants::get,
        grants::revoke,
        grants::records,
        notices::confirm,
        notices::unconfirmed,
        notices::retry,
        log::checkpoint,
        log::cosigned_checkpoint,
        log::witnesses,
        log::key,
        log::entries,
        log::history_proof,
        log::inclusion,
        log::consistency,
        log::access_log,
        log::tiles_checkpoint,
        log::tile,
    ),
    components(schemas(ErrorBody, ErrorDetail, Health))
)]
pub struct ApiDoc;

/// The error body, as a response answered with `status` and described by `description`.
fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

/// Answers every operation may give, whatever its route, by name in `components/responses`.
fn shared_responses() -> Value {
    let mut unauthorized = error_response(
        "No token, or a token that is not valid (`unauthenticated`, `invalid_token`, `token_expired`, `token_revoked`).",
    );
    unauthorized["headers"] = json!({"WWW-Authenticate": {
        "description": "`Bearer`", "required": true, "schema": {"type": "string", "enum": ["Bearer"]},
    }});
    json!({
        "BadRequest": error_response(
            "The request is malformed: a header, path segment, query parameter or body that cannot be read \
             (`invalid_authorization` for two Authorization headers, `purpose_required`, `unknown_purpose`, \
             `invalid_id`, `invalid_path`, `invalid_query`, `malformed_json`, `invalid_utf8`, `invalid_body`, \
             `invalid_idempotency_key`, `idempotency_not_supported`, …)."),
        "Unauthorized": unauthorized,
        "PayloadTooLarge": error_response("The body is larger than `[server] max_body_bytes` (`payload_too_large`)."),
        "UnsupportedMediaType": error_response(
            "The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)."),
        "ServerError": error_response(
            "`integrity_error`: a stored ciphertext does not belong where it was found (nothing is returned); \
             `internal`: a fault, see the server log."),
        "Unavailable": error_response(
            "The database did not answer in time (`database_unavailable`), the request was not answered in \
             time (`timeout`), or the database is unreachable (`unavailable`). `write_outcome` says whether a \
             change the request asked for may have been made: retry a write with the same `Idempotency-Key`."),
        "StorageFull": error_response(
            "The disk holding the database is full (`storage_full`): nothing was changed; reads that must be \
             logged are refused too."),
    })
}

/// The responses of every operation of a route under `path`, with or without a token, with or
/// without a body.
fn shared_statuses(path: &str, secured: bool, has_body: bool) -> Vec<(&'static str, &'static str)> {
    let mut statuses = vec![("400", "BadRequest"), ("500", "ServerError"), ("503", "Unavailable")];
    if secured {
        statuses.push(("401", "Unauthorized"));
    }
    if has_body {
        statuses.extend([("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType")]);
    }
    // Whatever reads or writes the database (and reads are logged: a write) can meet a full disk.
    if path.starts_with("/v1/") || path.starts_with("/log/") || path == "/metrics" {
        statuses.push(("507", "StorageFull"));
    }
    statuses
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Completes the derived document: security schemes, shared responses on every operation, and
/// the few shapes utoipa's attributes cannot say.
fn complete(doc: &mut Value) {
    doc["openapi"] = json!("3.1.0");
    let components = &mut doc["components"];
    components["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer", "description": "A Candor token (`candor token create`)"},
        "grant": {"type": "http", "scheme": "bearer",
                  "description": "A grant's own credential (`cndg_…`), returned once by `POST /v1/grants`"},
    });
    components["responses"] = shared_responses();
    // A lookup's query is one name (a lookup field of the catalog) with a value that is not
    // blank: utoipa's attributes cannot bound an object's properties.
    for p in doc["paths"]["/v1/subjects"]["get"]["parameters"].as_array_mut().expect("lookup parameters") {
        if p["name"] == "lookup" {
            p["schema"]["minProperties"] = json!(1);
            p["schema"]["maxProperties"] = json!(1);
            p["schema"]["additionalProperties"]["pattern"] = json!(r"\S");
        }
    }
    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method) else { continue };
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())));
            let has_body = op.get("requestBody").is_some();
            let responses = op["responses"].as_object_mut().expect("responses");
            for (status, name) in shared_statuses(path, secured, has_body) {
                responses.entry(status).or_insert_with(|| json!({"$ref": format!("#/components/responses/{name}")}));
            }
            // An answer's own description of a shared status keeps its route-specific words, but
            // the headers every such answer carries too.
            if let Some(own) = responses.get_mut("401").and_then(Value::as_object_mut)
                && !own.contains_key("$ref")
            {
                own.insert("headers".into(), shared_responses()["Unauthorized"]["headers"].clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// utoipa names a schema after its type and keeps one schema per name, so two types of
    /// the same name would silently describe each other's bodies (a request's change body once
    /// replaced the consent change body in the document). Every type deriving `ToSchema` in this
    /// crate has a name of its own.
    #[test]
    fn every_schema_type_has_a_name_of_its_own() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        let mut seen: std::collections::HashMap<String, std::path::PathBuf> = std::collections::HashMap::new();
        let mut schemas = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut lines = text.lines().peekable();
            while let Some(line) = lines.next() {
                if !(line.trim_start().starts_with("#[derive(") && line.contains("ToSchema")) {
                    continue;
                }
                // The type is on the first line after the attributes that names a struct or enum.
                for next in lines.by_ref() {
                    let words: Vec<&str> = next.split_whitespace().collect();
                    if let Some(at) = words.iter().position(|w| *w == "struct" || *w == "enum") {
                        let name =
                            words[at + 1].trim_end_matches(['{', ';', '(']).split('<').next().unwrap().to_string();
                        schemas += 1;
                        if let Some(other) = seen.insert(name.clone(), file.clone()) {
                            panic!("two schema types named {name}: {} and {}", other.display(), file.display());
                        }
                        break;
                    }
                }
            }
        }
        assert!(schemas > 30, "the scan found the schema types ({schemas})");
    }

    #[test]
    fn the_openapi_document_is_built_once() {
        let first = openapi_document();
        assert!(std::ptr::eq(first, openapi_document()));
        assert_eq!(first.as_ptr(), openapi_document().clone().as_ptr(), "served without a copy");
        let doc: serde_json::Value = serde_json::from_slice(first).expect("JSON");
        assert!(doc["paths"].get("/v1/subjects/{id}").is_some());
        assert_eq!(doc, document(), "the document as built");
    }

    /// Every `(METHOD, path)` that `router` in `mod.rs` serves, read from its source: each
    /// `.route("path", get(..).post(..))`, with `{*rest}` written as OpenAPI writes it, `{rest}`.
    fn routes_of_the_router() -> std::collections::BTreeSet<(String, String)> {
        let source = include_str!("lib.rs");
        let body = &source[source.find("pub fn router(").expect("fn router")..];
        let body = &body[..body.find("\n}\n").expect("end of fn router")];
        let mut routes = std::collections::BTreeSet::new();
        for call in body.split(".route(").skip(1) {
            // The call's own text: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(i, _)| i)
                .expect("a closed .route(");
            let call = &call[..end];
            let path = call.split('"').nth(1).expect("a path literal").replace("{*", "{");
            for method in ["get", "put", "post", "delete", "patch"] {
                let called = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !call.as_bytes()[i - 1].is_ascii_alphanumeric() && call.as_bytes()[i - 1] != b'_'
                });
                if called {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        assert!(routes.len() > 40, "the router's routes were read: {routes:?}");
        routes
    }

    #[test]
    fn the_document_describes_every_route_of_the_router_and_no_other() {
        // The privacy center's pages and their assets are HTML for browsers (tested by
        // tests/center.rs and tests/browser.rs), not the JSON API the document describes:
        // the same split as `is_api_path`.
        let served: std::collections::BTreeSet<_> =
            routes_of_the_router().into_iter().filter(|(_, path)| super::super::is_api_path(path)).collect();
        let doc = document();
        let mut described = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    described.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let undocumented: Vec<_> = served.difference(&described).collect();
        let unserved: Vec<_> = described.difference(&served).collect();
        assert!(undocumented.is_empty(), "served but not in the OpenAPI document: {undocumented:?}");
        assert!(unserved.is_empty(), "in the OpenAPI document but not served: {unserved:?}");
    }

    #[test]
    fn every_operation_documents_the_answers_every_route_can_give() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let responses = op["responses"].as_object().unwrap();
                let secured = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r != &json!({})));
                let mut expected = vec!["400", "500", "503"];
                if secured {
                    expected.push("401");
                }
                if op.get("requestBody").is_some() {
                    expected.extend(["413", "415"]);
                }
                if path.starts_with("/v1/") {
                    expected.push("507");
                }
                for status in expected {
                    assert!(responses.contains_key(status), "{method} {path} does not document {status}");
                }
                for (status, response) in responses {
                    let error = status.starts_with('4') || status.starts_with('5');
                    if error && path != "/readyz" {
                        let schema = response.get("content").map(|c| &c["application/json"]["schema"]["$ref"]);
                        let shared = response.get("$ref").and_then(Value::as_str).is_some_and(|r| {
                            doc["components"]["responses"][r.rsplit('/').next().unwrap()]["content"]["application/json"]
                                ["schema"]["$ref"]
                                == "#/components/schemas/ErrorBody"
                        });
                        assert!(
                            shared || schema == Some(&json!("#/components/schemas/ErrorBody")),
                            "{method} {path} {status} is not the JSON error body"
                        );
                    }
                }
                let header = |name: &str| {
                    op["parameters"].as_array().into_iter().flatten().any(|p| p["in"] == "header" && p["name"] == name)
                };
                // A path parameter is where the path says, and only there.
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let in_path = path.contains(&format!("{{{}}}", p["name"].as_str().unwrap()));
                    assert_eq!(p["in"] == "path", in_path, "{method} {path}: parameter {}", p["name"]);
                }
                if path.starts_with("/v1/subjects") || path.starts_with("/v1/consents") {
                    assert!(header("Candor-Purpose"), "{method} {path} names no Candor-Purpose header");
                }
            }
        }
    }

    #[test]
    fn the_writes_that_may_be_retried_take_an_idempotency_key_and_no_other_does() {
        let doc = document();
        let mut with_key = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                if op["parameters"].as_array().into_iter().flatten().any(|p| p["name"] == "Idempotency-Key") {
                    with_key.push(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        with_key.sort();
        assert_eq!(
            with_key,
            [
                "PATCH /v1/subjects/{id}",
                "POST /v1/subjects",
                "POST /v1/subjects/{id}/consents",
                "POST /v1/subjects/{id}/events"
            ]
        );
    }
}
