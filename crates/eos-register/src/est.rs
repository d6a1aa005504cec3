//! EST (RFC 7030) on the registration service, for devices and MDM tools:
//!
//! - `GET /.well-known/est/cacerts`: the CA chain (§4.1);
//! - `POST /.well-known/est/simpleenroll`: a CSR signed with a security code
//!   as the HTTP credential (§3.2.3, §4.2.1);
//! - `POST /.well-known/est/simplereenroll`: the certificate presented in
//!   the TLS handshake (or forwarded by a trusted passthrough proxy) renewed
//!   through the renewal core (`renewal`, as `/v1/renew`; §4.2.2), no code.
//!
//! Requests are `application/pkcs10`, a base64 DER CSR (RFC 8951 §3.2:
//! base64 whatever `Content-Transfer-Encoding` says); answers are
//! `application/pkcs7-mime` certs-only SignedData (RFC 5652 §5, "degenerate":
//! no signers), base64 in lines of 64 with `Content-Transfer-Encoding:
//! base64` (§4.1.3, §4.2.3). Refusals are `text/plain` (§4.2.3: a
//! human-readable error) starting with the service's stable code, which is
//! also in the `eos-error` header and the access log.
//!
//! Enrolment is `/v1/cert`'s [`Registration::Cert`]: the code is checked
//! (backoff, single use, purpose `register-cert`) before the CSR is parsed,
//! and the certificate comes out of the one issuance flow with the identity
//! of the code's binding, never the CSR's. Re-enrolment is
//! [`Registrar::renew`](crate::Registrar::renew): the successor has the
//! identity of the inventory record, whatever the CSR's subject says
//! (§4.2.2 asks the client to repeat it; it is not read). Nothing here
//! signs or records.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cms::content_info::ContentInfo;
use der::Encode as _;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::http::{
    AppState, Client, ErrorCode, execute, has_media_type, presented_certificate, read_limited,
    run_renewal,
};
use crate::registrar::{Outcome, PresentedCode, Registration};
use crate::{ApiError, ClientCertificate};

/// The CA certificates (RFC 7030 §4.1).
pub(crate) const CACERTS: &str = "/.well-known/est/cacerts";
/// Enrolment with a security code (RFC 7030 §4.2.1).
pub(crate) const SIMPLEENROLL: &str = "/.well-known/est/simpleenroll";
/// Re-enrolment with the current certificate (RFC 7030 §4.2.2).
pub(crate) const SIMPLEREENROLL: &str = "/.well-known/est/simplereenroll";

/// How many times `max_body_bytes` an oversized request body is read to
/// answer it (see `read_pkcs10`).
const DRAIN: usize = 4;

/// The realm of the `WWW-Authenticate` challenge (RFC 7617).
const CHALLENGE: &str = "Basic realm=\"eos-sec EST\", charset=\"UTF-8\"";

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(CACERTS, get(cacerts))
        .route(SIMPLEENROLL, post(simpleenroll))
        .route(SIMPLEREENROLL, post(simplereenroll))
}

/// Whether a path is one of EST's (they reach the store and draw on the
/// API's rate budget).
pub(crate) fn is_est(path: &str) -> bool {
    path.starts_with("/.well-known/est/")
}

async fn cacerts(State(st): State<Arc<AppState>>) -> Response {
    let Some(chain) = st.registrar().ca_pem() else {
        return est_error(ApiError::ca_unavailable());
    };
    match certs_only(chain.as_bytes()) {
        // §4.1.3: `application/pkcs7-mime`, no smime-type.
        Ok(body) => pkcs7(body, "application/pkcs7-mime"),
        Err(e) => est_error(crate::registrar::internal("EST CA certificates", e)),
    }
}

async fn simpleenroll(
    State(st): State<Arc<AppState>>,
    axum::Extension(Client(client)): axum::Extension<Client>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The body is read before any refusal: an HTTP/2 stream answered while
    // its request body is still coming is reset, and curl then reports the
    // reset rather than the answer. An EST client sends its request without
    // credentials first, gets the challenge, and sends it again with them
    // (§3.2.3).
    let csr = read_pkcs10(&st, &headers, body).await;
    let code = match basic_password(&headers) {
        Ok(code) => code,
        Err(e) => return est_error(e),
    };
    let csr = match csr {
        Ok(csr) => csr,
        Err(e) => return est_error(e),
    };
    let request = Registration::Cert { code, csr };
    match execute(&st, request, client).await {
        Ok(outcome) => enrolled(&outcome),
        // A refused code is a failed HTTP authentication (§3.2.3): 401 with
        // the challenge, the body as everywhere (`code-rejected`).
        Err(e) if e.code() == "code-rejected" => est_error(e.with_status(StatusCode::UNAUTHORIZED)),
        Err(e) => est_error(e),
    }
}

async fn simplereenroll(
    State(st): State<Arc<AppState>>,
    axum::Extension(Client(client)): axum::Extension<Client>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls_cert: Option<axum::Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The body first, as for enrolment (an early answer resets HTTP/2).
    let csr = read_pkcs10(&st, &headers, body).await;
    let presented = match presented_certificate(
        tls_cert.as_ref().map(|e| &e.0),
        peer.ip(),
        &headers,
        &st.registrar().options().trusted_proxies,
    ) {
        Ok(p) => p,
        Err(e) => return est_error(e),
    };
    let csr = match csr {
        Ok(csr) => csr,
        Err(e) => return est_error(e),
    };
    match run_renewal(&st, presented, csr.into_bytes(), client).await {
        Ok(outcome) => enrolled(&outcome),
        // Without a certificate there is nothing to renew and no HTTP
        // authentication to challenge for (a code is no credential here):
        // 403, not the 401 of `/v1/renew`, which must carry a challenge.
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            est_error(e.with_status(StatusCode::FORBIDDEN))
        }
        Err(e) => est_error(e),
    }
}

/// The certificate just issued, as a certs-only response (§4.2.3: the
/// issued certificate; the chain is at `/cacerts`).
fn enrolled(outcome: &Outcome) -> Response {
    let (Outcome::Issued { certificate, .. } | Outcome::Renewed { certificate, .. }) = outcome
    else {
        return est_error(crate::registrar::internal(
            "EST enrolment",
            "the registration did not issue a certificate",
        ));
    };
    match certs_only(certificate.as_bytes()) {
        Ok(body) => pkcs7(body, "application/pkcs7-mime; smime-type=certs-only"),
        Err(e) => est_error(crate::registrar::internal("EST enrolment", e)),
    }
}

/// The password of an `Authorization: Basic` header: the security code.
/// The user name is not read — the code alone names the account, and a
/// client may send any (many EST clients require one).
fn basic_password(headers: &HeaderMap) -> Result<PresentedCode, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(ApiError::credentials_required)?;
    // RFC 7617 §2: `Basic` is case-insensitive, then one space and the
    // base64 of `user-id ":" password`.
    let value = value
        .to_str()
        .map_err(|_| ApiError::credentials_required())?;
    let (scheme, credentials) = value
        .trim()
        .split_once(' ')
        .ok_or_else(ApiError::credentials_required)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::credentials_required());
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(credentials.trim())
            .map_err(|_| ApiError::credentials_required())?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| ApiError::credentials_required())?;
    let (_user, password) = text
        .split_once(':')
        .ok_or_else(ApiError::credentials_required)?;
    if password.is_empty() {
        return Err(ApiError::credentials_required());
    }
    Ok(PresentedCode::new(password.to_owned()))
}

/// Read an `application/pkcs10` body (§4.2.1) within the service's body
/// and time limits and return the CSR as PEM, for the issuance flow. Only
/// the base64 is decoded here; the CSR itself is parsed after the code was
/// accepted.
async fn read_pkcs10(st: &AppState, headers: &HeaderMap, body: Body) -> Result<String, ApiError> {
    let options = st.registrar().options();
    let (limit, timeout) = (options.max_body_bytes, options.request_timeout);
    // Up to DRAIN times the limit is read (and dropped) so that the client
    // gets its 413 over HTTP/2 too; a larger body is not read at all.
    let drained = limit.saturating_mul(DRAIN);
    let bytes = match tokio::time::timeout(timeout, read_limited(headers, body, drained)).await {
        Ok(Ok(bytes)) if bytes.len() <= limit => bytes,
        Ok(Ok(_)) | Ok(Err(_)) => return Err(ApiError::payload_too_large(limit)),
        Err(_) => return Err(ApiError::timeout()),
    };
    if !has_media_type(headers, "application/pkcs10") {
        return Err(ApiError::unsupported_media_type_of(
            "application/pkcs10 (a base64 DER CSR, RFC 7030 §4.2.1)",
        ));
    }
    let der = decode_base64(&bytes).ok_or_else(|| {
        ApiError::bad_request("the body must be a base64 DER PKCS#10 CSR (RFC 7030 §4.2.1)")
    })?;
    der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, &der)
        .map_err(|e| crate::registrar::internal("EST request", e))
}

/// Base64 (RFC 4648 §4) with the line breaks and spaces MIME puts in it
/// (RFC 2045 §6.8); `None` for anything else or nothing.
fn decode_base64(body: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return None;
    }
    STANDARD.decode(text).ok()
}

/// A certs-only SignedData (RFC 5652 §5, RFC 7030 §4.1.3) holding the PEM
/// certificates of `pem`, DER in base64 lines of 64 (RFC 2045 §6.8 allows
/// at most 76), each ended by LF: `base64 -d`, as the RFC's examples decode
/// with, takes no CR.
fn certs_only(pem: &[u8]) -> Result<String, der::Error> {
    let certs = Certificate::load_pem_chain(pem)?;
    let der = ContentInfo::try_from(certs)?.to_der()?;
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 32 + 2);
    for line in b64.as_bytes().chunks(64) {
        // Base64 is ASCII: every chunk is text.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    Ok(out)
}

fn pkcs7(body: String, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::HeaderName::from_static("content-transfer-encoding"),
                "base64",
            ),
        ],
        body,
    )
        .into_response()
}

/// A refusal as RFC 7030 §4.2.3 has it: the status, and a human-readable
/// `text/plain` body — here `<code>: <message>` with the service's stable
/// code, also in the `eos-error` header. A 401 carries the Basic challenge.
fn est_error(e: ApiError) -> Response {
    let code = e.code();
    let mut resp = (
        e.status(),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{code}: {}\n", e.message()),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("eos-error", HeaderValue::from_static(code));
    if let Some(secs) = e.retry_after_secs() {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if e.status() == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
    }
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_password_of_basic_is_the_code() {
        let b64 = STANDARD.encode("acme:EOS-ABC:DEF");
        let code = basic_password(&auth(&format!("basic {b64}"))).unwrap();
        // The first colon splits (RFC 7617 §2): a user-id holds none, a
        // password may.
        assert_eq!(code.expose(), "EOS-ABC:DEF");
        for bad in [
            "Bearer x".to_owned(),
            "Basic".to_owned(),
            "Basic !!!".to_owned(),
            format!("Basic {}", STANDARD.encode("nocolon")),
            format!("Basic {}", STANDARD.encode("user:")),
        ] {
            let e = basic_password(&auth(&bad)).unwrap_err();
            assert_eq!(e.code(), "credentials-required", "{bad}");
        }
        assert_eq!(
            basic_password(&HeaderMap::new()).unwrap_err().code(),
            "credentials-required"
        );
    }

    #[test]
    fn base64_bodies_may_have_mime_line_breaks() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n").unwrap(), b"hello");
        assert_eq!(decode_base64(b" \r\n"), None);
        assert_eq!(decode_base64(b"0\x82"), None);
        assert_eq!(decode_base64(b"aGVsbG8"), None);
    }
}
