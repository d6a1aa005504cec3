//! The registration page, served from the binary. The script is the
//! committed bundle built by `crates/eos-register/web/build.mjs` (pkijs and
//! asn1js, pinned in `web/package-lock.json`); nothing is loaded from
//! anywhere else.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The page's script: our code and the libraries, bundled.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The page's styles.
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The licences of the bundled libraries.
pub const LICENSES: &str = include_str!("../assets/THIRD-PARTY-LICENSES.txt");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

pub(crate) async fn licenses() -> Response {
    asset("text/plain; charset=utf-8", LICENSES)
}
