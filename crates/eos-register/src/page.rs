//! The registration page, served from the binary. The script is the
//! committed bundle built by `crates/eos-register/web/build.mjs` (pkijs and
//! asn1js, pinned in `web/package-lock.json`); nothing is loaded from
//! anywhere else.
//!
//! The files are cached by browsers for [`MAX_AGE`] and carry an `ETag`
//! (a hash of their content), so a reload costs at most a `304`: together
//! with their own rate-limit budget (`[serve] page_per_source_*`), loading
//! the page again and again never leaves it without its script.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The page.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The page's script: our code and the libraries, bundled.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The page's styles.
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The licences of the bundled libraries.
pub const LICENSES: &str = include_str!("../assets/THIRD-PARTY-LICENSES.txt");

/// How long a browser reuses a file without asking again. Short, so that
/// a new release's page and script reach browsers within minutes.
pub const MAX_AGE: &str = "max-age=300";

/// One of the page's files, with its entity tag made on first use.
struct Asset {
    content_type: &'static str,
    body: &'static str,
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(content_type: &'static str, body: &'static str) -> Asset {
        Asset {
            content_type,
            body,
            etag: OnceLock::new(),
        }
    }

    /// A strong entity tag: the first 128 bits of the content's SHA-256.
    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.body.as_bytes());
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
        })
    }

    /// Whether the request's `If-None-Match` names this content (RFC 9110
    /// §13.1.2: a list of tags, weak comparison, or `*`).
    fn is_fresh(&self, headers: &HeaderMap) -> bool {
        let ours = self.etag().as_bytes();
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
    }

    fn respond(&self, headers: &HeaderMap) -> Response {
        let cache = [
            (header::ETAG, self.etag().clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE)),
        ];
        if self.is_fresh(headers) {
            return (StatusCode::NOT_MODIFIED, cache).into_response();
        }
        (
            cache,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response()
    }
}

static INDEX: Asset = Asset::new("text/html; charset=utf-8", INDEX_HTML);
static SCRIPT: Asset = Asset::new("text/javascript; charset=utf-8", APP_JS);
static STYLE: Asset = Asset::new("text/css; charset=utf-8", STYLE_CSS);
static LICENCES: Asset = Asset::new("text/plain; charset=utf-8", LICENSES);

pub(crate) async fn index(headers: HeaderMap) -> Response {
    INDEX.respond(&headers)
}

pub(crate) async fn script(headers: HeaderMap) -> Response {
    SCRIPT.respond(&headers)
}

pub(crate) async fn style(headers: HeaderMap) -> Response {
    STYLE.respond(&headers)
}

pub(crate) async fn licenses(headers: HeaderMap) -> Response {
    LICENCES.respond(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let tag = SCRIPT.etag().to_str().unwrap().to_owned();
        assert_eq!(tag.len(), 34, "{tag}");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            SCRIPT.is_fresh(&h)
        };
        assert!(with(&tag));
        assert!(with(&format!("\"x\", W/{tag}")));
        assert!(with("*"));
        assert!(!with("\"x\""));
        assert!(!SCRIPT.is_fresh(&HeaderMap::new()));
        assert_ne!(SCRIPT.etag(), STYLE.etag());
    }
}
