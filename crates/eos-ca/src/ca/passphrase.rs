//! The CA key's passphrase.

use std::fmt;

use super::*;
use zeroize::Zeroizing;

/// A CA key passphrase; redacted in `Debug`, zeroized on drop.
pub struct Passphrase(pub(super) Zeroizing<String>);

impl Passphrase {
    /// Wrap a passphrase; refuses an empty one.
    pub fn new(s: String) -> Result<Passphrase, IssueError> {
        if s.is_empty() {
            return Err(IssueError::BadCa(
                "the CA key passphrase is empty".to_owned(),
            ));
        }
        Ok(Passphrase(Zeroizing::new(s)))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}
