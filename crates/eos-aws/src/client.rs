//! How every AWS client in this crate is built, and how its failures read.
//!
//! Every client starts from [`crate::sdk_config`] (credentials, region,
//! endpoint and the [`timeouts`] below) and is finished by [`client!`],
//! which adds [`NameUnreachable`] and [`NoRetryUnreachable`]. A new
//! service client is `client!(aws_sdk_x, &sdk)` and inherits all of it.
//!
//! Why: the standard retry strategy treats a refused connection or a name
//! that does not resolve as a transient "dispatch failure" and retries it
//! with backoff — with WAF's eight attempts that took 29–78 s to fail and
//! ended in a `Debug` dump of the connector error. Nothing was sent when the
//! connection could not be made, so nothing is gained by waiting: such a
//! failure now fails its call at once, as one line naming the endpoint.
//! Throttling, 5xx answers and failures after the connection was made are
//! still retried as before.

use std::error::Error;
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    FinalizerInterceptorContextMut, InterceptorContext,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::endpoint::Endpoint;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::timeout::TimeoutConfig;

/// Time to open a connection, name resolution and TLS handshake included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Time for one attempt of a call, from sending to the whole answer: a
/// server that accepts and then says nothing fails the attempt (and is
/// retried like a 5xx) instead of holding the command forever.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeouts every client gets.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// A client of service crate `$service` (e.g. `aws_sdk_wafv2`) from an
/// `SdkConfig` made by [`crate::sdk_config`]; `$customize` may change the
/// service's config builder first (more retry attempts, an interceptor).
macro_rules! client {
    ($service:ident, $sdk:expr) => {
        $crate::client::client!($service, $sdk, |b| b)
    };
    ($service:ident, $sdk:expr, $customize:expr) => {{
        let builder = $service::config::Builder::from($sdk)
            .interceptor($crate::client::NameUnreachable)
            .retry_classifier($crate::client::NoRetryUnreachable);
        $service::Client::from_conf(($customize)(builder).build())
    }};
}
pub(crate) use client;

/// The endpoint could not be reached: no connection was made, nothing was
/// sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot reach {endpoint} ({reason})")]
pub struct Unreachable {
    /// The endpoint as resolved for the call (`https://wafv2.eu-west-1.amazonaws.com`).
    pub endpoint: String,
    /// Why, in a few words (`connection refused`).
    pub reason: String,
}

/// Why a connection could not be made, or `None` when the failure came
/// after it was (or is not a connection failure at all).
fn connect_failure(e: &ConnectorError) -> Option<String> {
    let connect = chain(e).find_map(|s| s.downcast_ref::<hyper_util::client::legacy::Error>())?;
    if !connect.is_connect() {
        return None;
    }
    if e.is_timeout() {
        return Some(format!(
            "no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        ));
    }
    let io = chain(connect).find_map(|s| s.downcast_ref::<std::io::Error>());
    // hyper-util's connector says which step failed ("dns error", "tcp
    // connect error") and wraps the I/O error that says why.
    let step = connect.source().map(ToString::to_string);
    Some(match (io.map(std::io::Error::kind), step.as_deref()) {
        (Some(std::io::ErrorKind::ConnectionRefused), _) => "connection refused".to_owned(),
        (_, Some("dns error")) => format!(
            "name not resolved: {}",
            io.map_or_else(String::new, ToString::to_string)
        ),
        _ => rendered(connect.source().unwrap_or(connect)),
    })
}

/// Replaces a failure to connect with [`Unreachable`] naming the endpoint
/// (a connector error does not carry the request it failed to send).
#[derive(Debug, Clone, Copy)]
pub struct NameUnreachable;

impl Intercept for NameUnreachable {
    fn name(&self) -> &'static str {
        "eos-sec-name-unreachable"
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let endpoint = cfg
            .load::<Endpoint>()
            .map_or("the AWS endpoint", Endpoint::url)
            .trim_end_matches('/')
            .to_owned();
        if let Some(Err(e)) = context.output_or_error_mut()
            && let Some(reason) = e.as_connector_error().and_then(connect_failure)
        {
            *e = OrchestratorError::connector(ConnectorError::io(Box::new(Unreachable {
                endpoint,
                reason,
            })));
        }
        Ok(())
    }
}

/// Forbids retrying a call whose connection could not be made
/// ([`Unreachable`]); every other decision is the standard strategy's.
#[derive(Debug, Clone, Copy)]
pub struct NoRetryUnreachable;

impl ClassifyRetry for NoRetryUnreachable {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let unreachable = ctx
            .output_or_error()
            .and_then(Result::err)
            .and_then(|e| e.as_connector_error())
            .is_some_and(|e| chain(e).any(|s| s.is::<Unreachable>()));
        if unreachable {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "eos-sec-no-retry-unreachable"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// `e` and its sources.
fn chain<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(e), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// `e` and its sources on one line, `: `-separated, each once (layers often
/// repeat their source's text).
fn rendered(e: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    for s in chain(e) {
        let text = s.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A failed call on one line: the service's code and message when it
/// answered with them, [`Unreachable`]'s text when it could not be reached,
/// the HTTP status of an answer without an AWS error code (a proxy or a
/// server that is not the AWS API), else the error's chain — never a
/// `Debug` dump.
pub fn describe<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
{
    if let Some(u) = chain(e).find_map(|s| s.downcast_ref::<Unreachable>()) {
        return u.to_string();
    }
    match (e.code(), e.message(), e.raw_response()) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c.to_owned(),
        (None, Some(m), _) => m.to_owned(),
        (None, None, Some(r)) => format!(
            "unexpected HTTP {} answer without an AWS error code",
            r.status().as_u16()
        ),
        (None, None, None) => rendered(e),
    }
}
