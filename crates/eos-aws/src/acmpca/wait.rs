//! Waiting for an issued certificate: GetCertificate answers
//! `RequestInProgressException` until it is ready.

use std::future::Future;
use std::time::{Duration, Instant};

use super::PrivateCaError;

/// How long to wait for an issued certificate, and how often to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueWait {
    /// Give up after this long (the certificate may still be issued: the
    /// error names its ARN). Default 60 s.
    pub max: Duration,
    /// First pause before asking again; doubles each time. Default 200 ms.
    pub first: Duration,
    /// Longest pause between two calls. Default 5 s.
    pub longest: Duration,
}

impl Default for IssueWait {
    fn default() -> IssueWait {
        IssueWait {
            max: Duration::from_secs(60),
            first: Duration::from_millis(200),
            longest: Duration::from_secs(5),
        }
    }
}

/// Ask `fetch` until it answers `Some`, backing off from `wait.first` to
/// `wait.longest`, for at most `wait.max`; then [`PrivateCaError::Timeout`]
/// naming the certificate.
pub(super) async fn poll<T, F, Fut>(
    wait: IssueWait,
    ca_arn: &str,
    certificate_arn: &str,
    mut fetch: F,
) -> Result<T, PrivateCaError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, PrivateCaError>>,
{
    let began = Instant::now();
    let mut pause = wait.first;
    loop {
        if let Some(found) = fetch().await? {
            return Ok(found);
        }
        let elapsed = began.elapsed();
        if elapsed >= wait.max {
            return Err(PrivateCaError::Timeout {
                ca_arn: ca_arn.to_owned(),
                certificate_arn: certificate_arn.to_owned(),
                waited: elapsed,
            });
        }
        tokio::time::sleep(pause.min(wait.max - elapsed)).await;
        pause = (pause * 2).min(wait.longest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012";

    #[tokio::test]
    async fn waiting_is_bounded_and_names_the_certificate() {
        let wait = IssueWait {
            max: Duration::from_millis(120),
            first: Duration::from_millis(10),
            longest: Duration::from_millis(40),
        };
        let mut calls = 0;
        let began = Instant::now();
        let err = poll::<(), _, _>(wait, ARN, "arn:cert", || {
            calls += 1;
            std::future::ready(Ok(None))
        })
        .await
        .unwrap_err();
        assert!(began.elapsed() < Duration::from_secs(2));
        assert!((3..12).contains(&calls), "{calls} calls");
        let msg = err.to_string();
        assert!(matches!(err, PrivateCaError::Timeout { .. }));
        assert!(msg.contains("certificate arn:cert was not ready"), "{msg}");
        assert!(msg.contains("--certificate-arn arn:cert"), "{msg}");

        let mut n = 0;
        let got = poll(wait, ARN, "arn:cert", || {
            n += 1;
            std::future::ready(Ok((n == 3).then_some(n)))
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }
}
