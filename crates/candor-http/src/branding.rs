//! The operator's branding of the customer-facing pages: display name, logo and accent colour
//! (`[privacy_center]` in `candor.toml`). Served as a same-origin stylesheet and image, so the
//! pages' Content-Security-Policy stays strict.

use anyhow::{Context, Result, bail};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::settings::BrandingSettings;

/// Largest logo accepted.
const MAX_LOGO_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Branding {
    /// Shown in the page header instead of the catalog's organisation name.
    pub name: Option<String>,
    pub accent: String,
    pub logo: Option<(&'static str, Vec<u8>)>,
}

impl Branding {
    pub fn load(settings: &BrandingSettings) -> Result<Self> {
        let logo = match &settings.logo {
            None => None,
            Some(path) => {
                let content_type =
                    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                        Some("png") => "image/png",
                        Some("svg") => "image/svg+xml",
                        Some("jpg" | "jpeg") => "image/jpeg",
                        Some("webp") => "image/webp",
                        _ => bail!("privacy_center.logo {}: use a .png, .svg, .jpg or .webp file", path.display()),
                    };
                let size = std::fs::metadata(path)
                    .with_context(|| format!("cannot read privacy_center.logo {}", path.display()))?
                    .len();
                if size > MAX_LOGO_BYTES {
                    bail!("privacy_center.logo {} is {size} bytes; at most {MAX_LOGO_BYTES}", path.display());
                }
                Some((content_type, std::fs::read(path)?))
            }
        };
        Ok(Branding { name: settings.name.clone(), accent: settings.accent_colour.clone(), logo })
    }
}

/// `/assets/brand.css`: the accent colour.
pub async fn stylesheet(State(state): State<AppState>) -> impl IntoResponse {
    let css = format!(":root {{ --accent: {}; }}\n", state.branding.accent);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"))], css)
}

/// `/assets/logo`: the operator's logo, if configured.
pub async fn logo(State(state): State<AppState>) -> Response {
    match &state.branding.logo {
        Some((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], bytes.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
