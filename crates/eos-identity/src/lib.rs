//! Who is who on entityOS.cloud: validated identifiers for spaces and users.
//!
//! Parse at the edge, carry these types inside: a function that takes a
//! [`SpaceId`] never re-validates it. The rules are strict because these
//! strings end up in AWS resource names (`eos-<space>-v4`), certificate
//! subjects and URI SANs, where an unexpected character is an injection.

use std::fmt;
use std::sync::Arc;

mod when;
pub use when::{rfc3339, rfc3339_exact, rfc3339_ms};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Empty or too long.
    #[error("{what} `{value}` must be 1 to {max} characters long")]
    Length {
        /// "space id" or "user id".
        what: &'static str,
        /// The offending value (truncated).
        value: String,
        /// Maximum length.
        max: usize,
    },
    /// A character outside the allowed set.
    #[error("{what} `{value}` contains {found:?}; allowed: {allowed}")]
    Character {
        /// "space id" or "user id".
        what: &'static str,
        /// The offending value (truncated).
        value: String,
        /// The first bad character.
        found: char,
        /// The allowed set, for the message.
        allowed: &'static str,
    },
    /// Not an account URI `urn:entityos:space:<space>:user:<user>`.
    #[error("`{value}` is not an account URI ({ACCOUNT_URI_PREFIX}<space>:user:<user>)")]
    NotAccountUri {
        /// The offending value (truncated).
        value: String,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A space (tenant) identifier: 1–48 characters of `a-z`, `0-9` and `-`,
/// starting with a letter or digit. 48 leaves room for `eos-<space>-v4`
/// inside WAF's 128-character name limit and for DNS labels (63).
///
/// Shared (`Arc<str>`): a clone counts a reference instead of copying the
/// text. A log scan's report holds a space and up to five users per
/// observation, hundreds of thousands of them, naming a few thousand ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpaceId(Arc<str>);

impl SpaceId {
    /// Maximum length.
    pub const MAX_LEN: usize = 48;

    /// Validate a space id.
    pub fn new(s: &str) -> Result<SpaceId, IdError> {
        const ALLOWED: &str = "a-z, 0-9 and '-' (not first)";
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(IdError::Length {
                what: "space id",
                value: shown(s),
                max: Self::MAX_LEN,
            });
        }
        for (i, c) in s.chars().enumerate() {
            let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || (c == '-' && i > 0);
            if !ok {
                return Err(IdError::Character {
                    what: "space id",
                    value: shown(s),
                    found: c,
                    allowed: ALLOWED,
                });
            }
        }
        Ok(SpaceId(Arc::from(s)))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user identifier: 1–128 characters of ASCII letters, digits and
/// `. _ @ + -` (covers e-mail style logins), starting with a letter or digit.
/// No `/`, `:`, `,`, `=` or spaces: those are structure in URIs and DNs.
/// Shared, like [`SpaceId`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Maximum length.
    pub const MAX_LEN: usize = 128;

    /// Validate a user id.
    pub fn new(s: &str) -> Result<UserId, IdError> {
        const ALLOWED: &str = "A-Z, a-z, 0-9 and . _ @ + - (not first)";
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(IdError::Length {
                what: "user id",
                value: shown(s),
                max: Self::MAX_LEN,
            });
        }
        for (i, c) in s.chars().enumerate() {
            let ok =
                c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '.' | '_' | '@' | '+' | '-'));
            if !ok {
                return Err(IdError::Character {
                    what: "user id",
                    value: shown(s),
                    found: c,
                    allowed: ALLOWED,
                });
            }
        }
        Ok(UserId(Arc::from(s)))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! impl_common {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $t::new(s)
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $t::new(&s).map_err(serde::de::Error::custom)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
impl_common!(SpaceId);
impl_common!(UserId);

/// The prefix of every account URI.
pub const ACCOUNT_URI_PREFIX: &str = "urn:entityos:space:";

/// The URI naming an account — a user in a space — as the entityOS CA writes
/// it into a client certificate's URI SAN and as the certificate gate reads
/// it back: `urn:entityos:space:<space>:user:<user>`. Both ids are restricted
/// to URN-safe characters, so the URI needs no escaping and parses back
/// unambiguously ([`parse_account_uri`]).
pub fn account_uri(space: &SpaceId, user: &UserId) -> String {
    format!("{ACCOUNT_URI_PREFIX}{space}:user:{user}")
}

/// Parse an account URI made by [`account_uri`]. Exact: no other prefix, no
/// trailing segment, both ids valid — so `acme` never matches a URI for
/// `acme-corp`.
pub fn parse_account_uri(uri: &str) -> Result<(SpaceId, UserId), IdError> {
    let not = || IdError::NotAccountUri { value: shown(uri) };
    let rest = uri.strip_prefix(ACCOUNT_URI_PREFIX).ok_or_else(not)?;
    // A space id holds no ':', so the first one ends it.
    let (space, user) = rest.split_once(":user:").ok_or_else(not)?;
    if space.contains(':') {
        return Err(not());
    }
    Ok((SpaceId::new(space)?, UserId::new(user)?))
}

/// A user's role in a space. Administrators manage Network Access Rules
/// (SETUP_USER_NETWORK_ACCESS_MANAGE) and may hold a recovery code.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A space administrator.
    Admin,
    /// A regular user.
    User,
    /// A machine identity (service account).
    Service,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            "service" => Ok(Role::Service),
            other => Err(format!(
                "unknown role `{other}` (expected admin, user or service)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_ids() {
        assert!(SpaceId::new("acme").is_ok());
        assert!(SpaceId::new("acme-2").is_ok());
        assert!(SpaceId::new("-acme").is_err());
        assert!(SpaceId::new("Acme").is_err());
        assert!(SpaceId::new("ac me").is_err());
        assert!(SpaceId::new("").is_err());
        assert!(SpaceId::new(&"a".repeat(49)).is_err());
        assert_eq!(
            SpaceId::new("a/b").unwrap_err().to_string(),
            "space id `a/b` contains '/'; allowed: a-z, 0-9 and '-' (not first)"
        );
    }

    #[test]
    fn user_ids() {
        assert!(UserId::new("alice@example.com").is_ok());
        assert!(UserId::new("svc.build-1").is_ok());
        assert!(UserId::new("alice,O=evil").is_err());
        assert!(UserId::new("a b").is_err());
        assert!(UserId::new(".alice").is_err());
        assert!(UserId::new("ålice").is_err());
    }

    #[test]
    fn account_uris() {
        let acme = SpaceId::new("acme").unwrap();
        let alice = UserId::new("alice@acme.example").unwrap();
        let uri = account_uri(&acme, &alice);
        assert_eq!(uri, "urn:entityos:space:acme:user:alice@acme.example");
        assert_eq!(parse_account_uri(&uri).unwrap(), (acme, alice));
        for bad in [
            "urn:eos:space:acme:user:alice",
            "urn:entityos:space:acme",
            "urn:entityos:space:acme:user:",
            "urn:entityos:space:acme:x:user:alice",
            "urn:entityos:space:Acme:user:alice",
            "urn:entityos:space:acme:user:alice:extra",
            "URN:entityos:space:acme:user:alice",
        ] {
            assert!(parse_account_uri(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn account_uri_round_trips(s in "[a-z0-9][a-z0-9-]{0,47}", u in "[A-Za-z0-9][A-Za-z0-9._@+-]{0,60}") {
            let (space, user) = (SpaceId::new(&s).unwrap(), UserId::new(&u).unwrap());
            proptest::prop_assert_eq!(parse_account_uri(&account_uri(&space, &user)).unwrap(), (space, user));
        }

        #[test]
        fn account_uri_parse_never_panics(s in ".{0,200}") {
            let _ = parse_account_uri(&s);
        }

        #[test]
        fn valid_ids_round_trip(s in "[a-z0-9][a-z0-9-]{0,47}") {
            let id = SpaceId::new(&s).unwrap();
            proptest::prop_assert_eq!(id.as_str(), s.as_str());
        }

        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = SpaceId::new(&s);
            let _ = UserId::new(&s);
        }
    }
}
