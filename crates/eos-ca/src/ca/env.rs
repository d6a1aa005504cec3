//! The environment a CA belongs to.

use std::fmt;
use std::str::FromStr;

/// The environment a CA belongs to. Each has its own key and root name, so
/// a certificate from one environment never verifies under another's trust
/// bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaEnv {
    /// Development.
    Dev,
    /// Staging.
    Staging,
    /// Production.
    Prod,
}

impl CaEnv {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaEnv::Dev => "dev",
            CaEnv::Staging => "staging",
            CaEnv::Prod => "prod",
        }
    }

    /// The root's common name.
    pub fn root_common_name(self) -> String {
        format!("entityOS {} Root CA", self.as_str())
    }
}

impl fmt::Display for CaEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaEnv {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dev" => Ok(CaEnv::Dev),
            "staging" => Ok(CaEnv::Staging),
            "prod" => Ok(CaEnv::Prod),
            _ => Err(format!(
                "unknown environment `{s}`; expected dev, staging or prod"
            )),
        }
    }
}
