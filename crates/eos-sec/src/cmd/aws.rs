//! How the commands that reach AWS are pointed at it: flags over the
//! `[backend]` config section, over the standard AWS configuration chain.

use clap::Args;

use crate::config::BackendSection;

/// `--region`, `--profile`, `--endpoint-url`.
#[derive(Debug, Clone, Default, Args)]
pub struct AwsArgs {
    /// AWS region [default: `[backend] region`, else the AWS configuration]
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile [default: `[backend] profile`, else the AWS configuration]
    #[arg(long)]
    pub profile: Option<String>,
    /// AWS endpoint override, e.g. a moto server [default: `[backend] endpoint_url`]
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

impl AwsArgs {
    /// Any flag given.
    pub fn is_set(&self) -> bool {
        self.region.is_some() || self.profile.is_some() || self.endpoint_url.is_some()
    }
}

/// The SDK options: each flag, else its `[backend]` setting.
pub fn aws_options(args: &AwsArgs, cfg: &BackendSection) -> eos_aws::AwsOptions {
    let pick = |flag: &Option<String>, conf: &Option<String>| flag.clone().or_else(|| conf.clone());
    eos_aws::AwsOptions {
        region: pick(&args.region, &cfg.region),
        profile: pick(&args.profile, &cfg.profile),
        endpoint_url: pick(&args.endpoint_url, &cfg.endpoint_url),
        static_credentials: None,
    }
}
