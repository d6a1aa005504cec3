//! eos-sec's AWS side. The only crate that depends on `aws-sdk-*`: the
//! domain crates define traits (IPSet backend, CA signer, log source) and
//! this crate implements them on AWS.

pub mod acmpca;
pub mod client;
pub mod cloudwatch;
pub mod gate;
#[cfg(feature = "test-support")]
pub mod moto;
pub mod wafv2;
pub mod webacl;

/// How to reach AWS: the standard configuration chain (environment, profile,
/// instance role) plus overrides.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Region override (otherwise `AWS_REGION` / profile).
    pub region: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// Endpoint override, e.g. a moto server on 127.0.0.1 in tests.
    pub endpoint_url: Option<String>,
    /// Static credentials instead of the provider chain (tests against moto).
    pub static_credentials: Option<(String, String)>,
}

/// Load the SDK configuration for `opts`, with eos-sec's timeouts
/// ([`client::timeouts`]). Every client is built from it with
/// [`client::client!`].
pub async fn sdk_config(opts: &AwsOptions) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(client::timeouts());
    if let Some(region) = &opts.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &opts.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &opts.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((id, secret)) = &opts.static_credentials {
        let creds = aws_credential_types::Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "eos-sec-static",
        );
        loader = loader.credentials_provider(creds);
    }
    loader.load().await
}
