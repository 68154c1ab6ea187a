//! The public privacy notice: `/privacy` (HTML, server-rendered, no script, no third-party
//! requests) and `/v1/notice` (the same as JSON), and the pages' one stylesheet.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};
use candor_core::privacy_notice::PrivacyNotice;
use serde_json::{Value, json};

use super::error::ApiError;
use super::pages::Chrome;
use super::{AppState, rfc3339};

const STYLESHEET: &str = include_str!("../../../assets/candor.css");

struct HistoryRow {
    published_at: String,
    published_on: String,
    short_version: String,
    changes: Vec<String>,
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage<'a> {
    chrome: Chrome,
    org: &'a str,
    notice: &'a PrivacyNotice,
    short_version: String,
    history: Vec<HistoryRow>,
}

/// `sha256:0123456789ab` — enough to tell versions apart on a page.
fn short(version: &str) -> String {
    version.chars().take("sha256:".len() + 12).collect()
}

/// The privacy notice as a web page.
pub async fn page(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let doc = state.vault.notice_document().await?;
    let history = doc
        .history
        .iter()
        .map(|v| {
            let at = rfc3339(v.published_at);
            HistoryRow {
                published_on: at.get(..10).unwrap_or(&at).to_string(),
                published_at: at,
                short_version: short(&v.version),
                changes: v.changes.clone(),
            }
        })
        .collect();
    let page = PrivacyPage {
        chrome: state.chrome("notice", None),
        org: &doc.notice.controller.name,
        notice: &doc.notice,
        short_version: short(&doc.version),
        history,
    };
    let html = page.render().map_err(|e| {
        tracing::error!(error = %e, "privacy page template failed");
        ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "the page could not be rendered")
    })?;
    Ok(Html(html))
}

/// The privacy notice as data: the notice in force, its version, and every published version
/// with what changed.
#[utoipa::path(get, path = "/v1/notice", tag = "meta",
    responses((status = 200, description = "The privacy notice (public)", body = Object)))]
pub async fn notice(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let doc = state.vault.notice_document().await?;
    let history: Vec<Value> = doc
        .history
        .iter()
        .map(|v| json!({"version": v.version, "published_at": rfc3339(v.published_at), "changes": v.changes}))
        .collect();
    Ok(Json(json!({"version": doc.version, "notice": doc.notice, "history": history})))
}

/// The stylesheet of the privacy pages.
pub async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"))], STYLESHEET)
}
