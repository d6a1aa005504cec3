//! Errors: [`RegisterError`] for starting the service (configuration, TLS
//! files, binding), [`ApiError`] for what a request is answered with.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Code;

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A setting is invalid.
    #[error("{0}")]
    Config(String),
    /// A TLS file is unusable.
    #[error("{path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Listening or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] eos_store::StoreError),
    /// The background task (e.g. the sync engine) failed.
    #[error("background task: {0}")]
    Background(String),
}

/// A refusal or failure as the client sees it: a status and a stable
/// `error` code, with a message that never echoes the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

/// A wait in whole seconds, rounded up: `Retry-After` is whole seconds,
/// and a client that waits exactly what it says must not be refused again.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .max(1)
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The stable code (`error` field).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Any problem with a security code, whatever it was: unknown, wrong,
    /// expired, spent, revoked, for another purpose or space, malformed.
    /// The precise reason is in the audit log only.
    pub fn code_rejected() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            Code::CodeRejected.as_str(),
            eos_codes::GENERIC_REJECTION,
        )
    }

    /// The client address is backing off after failed code checks.
    pub fn throttled(retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::Throttled.as_str(),
                "too many failed attempts from this address; wait before trying again",
            )
        }
    }

    /// Over a rate limit.
    pub fn rate_limited(retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::RateLimited.as_str(),
                "too many requests; slow down",
            )
        }
    }

    /// The body is not the JSON the endpoint takes.
    pub fn bad_request(message: &str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Code::BadRequest.as_str(), message)
    }

    /// Not `Content-Type: application/json`.
    pub fn unsupported_media_type() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::UnsupportedMediaType.as_str(),
            "send the request as Content-Type: application/json",
        )
    }

    /// Not the `Content-Type` the endpoint takes (`expected`).
    pub fn unsupported_media_type_of(expected: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::UnsupportedMediaType.as_str(),
            format!("send the request as Content-Type: {expected}"),
        )
    }

    /// An EST request without usable HTTP credentials (RFC 7030 §3.2.3):
    /// no `Authorization: Basic` header, or one without a password.
    pub fn credentials_required() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            Code::CredentialsRequired.as_str(),
            "send the security code as the password of HTTP Basic authentication",
        )
    }

    /// The same refusal with another status (EST answers a refused code
    /// with 401, RFC 7030 §3.2.3).
    pub(crate) fn with_status(self, status: StatusCode) -> ApiError {
        ApiError { status, ..self }
    }

    /// `Retry-After` in whole seconds, when the client should wait.
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(whole_seconds)
    }

    /// The body is over the limit.
    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::PayloadTooLarge.as_str(),
            format!("the request body is over {limit} bytes"),
        )
    }

    /// The request took too long.
    pub fn timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            Code::Timeout.as_str(),
            "the request took too long",
        )
    }

    /// The client named an address other than the one it connects from.
    pub fn address_mismatch() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::AddressMismatch.as_str(),
            "the address given is not the address this request comes from; omit it to register the address the request comes from",
        )
    }

    /// A trusted proxy forwarded something that is not an address.
    pub fn unknown_client() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::UnknownClientAddress.as_str(),
            "the client address cannot be determined from the forwarded headers",
        )
    }

    /// A trusted proxy forwarded an address no host connects from
    /// (unspecified, broadcast, reserved, multicast): the client is not known,
    /// and no rule is written for such an address.
    pub fn unroutable_client() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::UnroutableClientAddress.as_str(),
            "the forwarded client address is not an address a client can connect from",
        )
    }

    /// The CSR (or the certificate asked for) was refused: `code` is the
    /// CA's stable refusal code (`csr-weak-hash`, ...).
    pub fn csr_refused(code: &'static str, message: String) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A renewal was refused: `code` is the renewal's stable code
    /// (`renewal-revoked`, ...). 403 for a certificate that will never
    /// renew (unknown, revoked, expired, superseded, its account disabled),
    /// 401 without one, 425 too early (with when to come back).
    pub fn renewal_refused(
        code: &'static str,
        message: String,
        retry_after: Option<Duration>,
    ) -> ApiError {
        let status = match code {
            c if c == Code::RenewalNoCertificate.as_str() => StatusCode::UNAUTHORIZED,
            c if c == Code::RenewalTooEarly.as_str() => StatusCode::TOO_EARLY,
            _ => StatusCode::FORBIDDEN,
        };
        ApiError {
            retry_after,
            ..ApiError::new(status, code, message)
        }
    }

    /// This deployment issues no certificates (no CA configured).
    pub fn ca_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::CaUnavailable.as_str(),
            "this service does not issue certificates",
        )
    }

    /// The state store cannot be reached now (a PostgreSQL server down or
    /// failing over): nothing of the request was written, the code was not
    /// spent; retry later.
    pub fn store_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::StoreUnavailable.as_str(),
            "the service cannot reach its database; nothing was changed, try again later",
        )
    }

    /// Something failed on our side; details are in the service log.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal.as_str(),
            "the request could not be completed; try again later",
        )
    }

    /// The message (for logs and tests).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code, self.status.as_u16())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after_secs();
        let body = Body {
            error: self.code,
            message: &self.message,
            retry_after,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(whole_seconds(ms(0)), 1);
        assert_eq!(whole_seconds(ms(1)), 1);
        assert_eq!(whole_seconds(ms(1000)), 1);
        assert_eq!(whole_seconds(ms(1001)), 2);
        assert_eq!(whole_seconds(ms(1999)), 2);
        assert_eq!(whole_seconds(Duration::MAX), u64::MAX);
    }
}
