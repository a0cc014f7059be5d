//! The job page at `/`: plain HTML, CSS and JavaScript with SVG drawing,
//! embedded in the binary (no network, no CDN, no build step). It reads
//! the `/api/v1` routes once a second; it never asks for all keys, only
//! for a few by prefix (`/api/v1/keys`) and the one it charts.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../assets/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
];

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> impl IntoResponse {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        ),
        None => (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "text/plain"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            "no such asset\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_only_embedded_assets() {
        for (name, _, body) in ASSETS {
            assert!(INDEX.contains(&format!("/assets/{name}")), "{name}");
            assert!(!body.is_empty());
        }
        // Nothing from the network.
        for text in std::iter::once(INDEX).chain(ASSETS.iter().map(|a| a.2)) {
            assert!(!text.contains("http://") || text.contains("http://www.w3.org/2000/svg"));
            assert!(!text.contains("https://"));
        }
    }
}
