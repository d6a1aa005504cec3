//! The account a certificate is for, and who a key is bound to.

use der::asn1::ObjectIdentifier;
use eos_identity::{SpaceId, UserId};

use crate::oids;

/// The account a certificate is for, from eos-sec's own records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The space.
    pub space: SpaceId,
    /// The user.
    pub user: UserId,
}

/// RFC 5280 Appendix A `ub-common-name`: a CommonName holds at most 64
/// characters. (`ub-organization-name` is 64 too; a space id has at most
/// 48.)
pub const MAX_COMMON_NAME: usize = 64;

impl Account {
    /// The URI SAN naming the account: `urn:entityos:space:<space>:user:<user>`
    /// (both ids are restricted to URN-safe characters by `eos-identity`).
    pub fn uri(&self) -> String {
        eos_identity::account_uri(&self.space, &self.user)
    }

    /// The certificate subject's attributes, in order: `O=<space>`, then
    /// `CN=<user>` when the user id fits a CommonName. User ids may have up
    /// to 128 characters (e-mail style logins), CommonName at most
    /// [`MAX_COMMON_NAME`]: a longer id is left out of the subject rather
    /// than cut (a cut id could name another user) or written over the
    /// bound (pkilint calls that fatal, Python cryptography warns). The URI
    /// SAN always carries the whole id, and it is what the certificate gate
    /// reads; the subject is for people reading the certificate.
    pub fn subject_attributes(&self) -> Vec<(ObjectIdentifier, &str)> {
        let mut attributes = vec![(oids::ORGANIZATION, self.space.as_str())];
        if self.user.as_str().chars().count() <= MAX_COMMON_NAME {
            attributes.push((oids::COMMON_NAME, self.user.as_str()));
        }
        attributes
    }
}

/// What the inventory knows about a key: which account it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The space.
    pub space: SpaceId,
    /// The user.
    pub user: UserId,
}
