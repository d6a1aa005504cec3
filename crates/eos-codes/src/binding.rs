//! What a code is for: the space, the person, the purposes, how long and how
//! often. The binding is part of the keyed hash, so a database writer without
//! the pepper cannot move a code to another space or extend its life.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use eos_identity::{Role, SpaceId, UserId};

use crate::Code;

/// Default lifetime of an onboarding code.
pub const DEFAULT_TTL: Duration = Duration::from_secs(14 * 24 * 3600);
/// Default lifetime of an administrator's recovery code.
pub const DEFAULT_RECOVERY_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest lifetime a code may be given.
pub const MAX_TTL: Duration = Duration::from_secs(3 * 365 * 24 * 3600);
/// Default uses per purpose of an onboarding code.
pub const DEFAULT_MAX_USES: u32 = 1;

/// Why an issue request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// An unknown purpose name.
    #[error("unknown purpose `{0}` (expected register-ip, register-cert or recover)")]
    Purpose(String),
    /// No purpose given.
    #[error("a code needs at least one purpose (register-ip, register-cert, recover)")]
    NoPurpose,
    /// Zero or too long a lifetime.
    #[error("lifetime {given} is out of range: between 1s and {max}")]
    Ttl {
        /// As given.
        given: String,
        /// The maximum.
        max: String,
    },
    /// A lifetime that does not parse.
    #[error("lifetime `{0}` is not a duration like 14d, 12h, 30m or 90s")]
    TtlSyntax(String),
    /// Zero uses.
    #[error("max uses must be at least 1")]
    ZeroUses,
    /// A code that can recover (a recovery code, or an onboarding code with
    /// the purpose `recover`) for someone who is not an administrator:
    /// recovery is only ever granted to administrators, so such a code
    /// could never be used.
    #[error(
        "recovery codes and the purpose `recover` are for administrators; {user} has role {role}"
    )]
    RecoveryNotAdmin {
        /// The user.
        user: String,
        /// Their role.
        role: Role,
    },
}

impl BindingError {
    /// The stable refusal code, for scripts and error messages.
    pub fn code(&self) -> &'static str {
        match self {
            BindingError::Purpose(_) => Code::UnknownPurpose.as_str(),
            BindingError::NoPurpose => Code::NoPurpose.as_str(),
            BindingError::Ttl { .. } => Code::TtlOutOfRange.as_str(),
            BindingError::TtlSyntax(_) => Code::TtlSyntax.as_str(),
            BindingError::ZeroUses => Code::ZeroUses.as_str(),
            BindingError::RecoveryNotAdmin { .. } => Code::RecoverNotAdmin.as_str(),
        }
    }
}

/// What a successful check authorises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Register the caller's IP address as a Network Access Rule.
    RegisterIp,
    /// Submit a CSR for a client certificate.
    RegisterCert,
    /// An administrator re-registers after their own address changed.
    Recover,
}

impl Purpose {
    /// Every purpose, in canonical order.
    pub const ALL: [Purpose; 3] = [Purpose::RegisterIp, Purpose::RegisterCert, Purpose::Recover];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::RegisterIp => "register-ip",
            Purpose::RegisterCert => "register-cert",
            Purpose::Recover => "recover",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Purpose::RegisterIp => 1,
            Purpose::RegisterCert => 2,
            Purpose::Recover => 4,
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Purpose {
    type Err = BindingError;
    fn from_str(s: &str) -> Result<Self, BindingError> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| BindingError::Purpose(s.chars().take(64).collect()))
    }
}

/// A non-empty set of purposes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purposes(u8);

impl Purposes {
    /// A set from a list (duplicates ignored); empty is refused.
    pub fn new(list: impl IntoIterator<Item = Purpose>) -> Result<Purposes, BindingError> {
        let bits = list.into_iter().fold(0, |acc, p| acc | p.bit());
        if bits == 0 {
            return Err(BindingError::NoPurpose);
        }
        Ok(Purposes(bits))
    }

    /// Parse `register-ip,register-cert` as stored.
    pub fn parse(s: &str) -> Result<Purposes, BindingError> {
        let list = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Purpose::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Purposes::new(list)
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: Purpose) -> bool {
        self.0 & p.bit() != 0
    }

    /// The purposes in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Purpose> {
        Purpose::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl fmt::Display for Purposes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Purpose::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Purposes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Purposes({self})")
    }
}

impl serde::Serialize for Purposes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Onboarding codes are single-use per purpose by default; a recovery code
/// is an administrator's separate, reusable code, and every use of it is
/// audited as `code.recovery.use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    /// Handed out at onboarding.
    Onboarding,
    /// An administrator's reusable recovery code.
    Recovery,
}

impl CodeKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Onboarding => "onboarding",
            CodeKind::Recovery => "recovery",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<CodeKind> {
        match s {
            "onboarding" => Some(CodeKind::Onboarding),
            "recovery" => Some(CodeKind::Recovery),
            _ => None,
        }
    }
}

impl fmt::Display for CodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a code is bound to. Times are Unix seconds (UTC).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Binding {
    /// The space it opens.
    pub space: SpaceId,
    /// The person it was issued to.
    pub user: UserId,
    /// Their role in the space.
    pub role: Role,
    /// Onboarding or recovery.
    pub kind: CodeKind,
    /// What it may be used for.
    pub purposes: Purposes,
    /// Uses allowed per purpose; `None` is unlimited (recovery codes).
    pub max_uses: Option<u32>,
    /// When it was issued.
    pub issued_at: i64,
    /// When it stops working.
    pub expires_at: i64,
}

impl Binding {
    /// The canonical text that goes into the keyed hash. Every field is a
    /// validated type without newlines, so the encoding is unambiguous.
    pub(crate) fn canonical(&self) -> String {
        format!(
            "space={}\nuser={}\nrole={}\nkind={}\npurposes={}\nmax_uses={}\nissued_at={}\nexpires_at={}\n",
            self.space,
            self.user,
            self.role,
            self.kind,
            self.purposes,
            self.max_uses
                .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
            self.issued_at,
            self.expires_at,
        )
    }
}

/// A request to issue a code, with the documented defaults.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    space: SpaceId,
    user: UserId,
    role: Role,
    kind: CodeKind,
    purposes: Purposes,
    ttl: Duration,
    max_uses: Option<u32>,
}

impl IssueRequest {
    /// An onboarding code: valid [`DEFAULT_TTL`], [`DEFAULT_MAX_USES`] use
    /// per purpose. The purpose `recover` is refused for anyone but an
    /// administrator: a check never grants it to anyone else.
    pub fn onboarding(
        space: SpaceId,
        user: UserId,
        role: Role,
        purposes: Purposes,
    ) -> Result<Self, BindingError> {
        if purposes.contains(Purpose::Recover) && role != Role::Admin {
            return Err(BindingError::RecoveryNotAdmin {
                user: user.to_string(),
                role,
            });
        }
        Ok(IssueRequest {
            space,
            user,
            role,
            kind: CodeKind::Onboarding,
            purposes,
            ttl: DEFAULT_TTL,
            max_uses: Some(DEFAULT_MAX_USES),
        })
    }

    /// An administrator's recovery code: purpose `recover`, reusable,
    /// valid [`DEFAULT_RECOVERY_TTL`]. Refused for anyone but an admin.
    pub fn recovery(space: SpaceId, user: UserId, role: Role) -> Result<Self, BindingError> {
        if role != Role::Admin {
            return Err(BindingError::RecoveryNotAdmin {
                user: user.to_string(),
                role,
            });
        }
        Ok(IssueRequest {
            space,
            user,
            role,
            kind: CodeKind::Recovery,
            purposes: Purposes(Purpose::Recover.bit()),
            ttl: DEFAULT_RECOVERY_TTL,
            max_uses: None,
        })
    }

    /// Set the lifetime (1 s to [`MAX_TTL`]).
    pub fn with_ttl(mut self, ttl: Duration) -> Result<Self, BindingError> {
        if ttl.as_secs() == 0 || ttl > MAX_TTL {
            return Err(BindingError::Ttl {
                given: format_duration(ttl),
                max: format_duration(MAX_TTL),
            });
        }
        self.ttl = ttl;
        Ok(self)
    }

    /// Set the uses per purpose (`None`: unlimited).
    pub fn with_max_uses(mut self, max_uses: Option<u32>) -> Result<Self, BindingError> {
        if max_uses == Some(0) {
            return Err(BindingError::ZeroUses);
        }
        self.max_uses = max_uses;
        Ok(self)
    }

    /// The binding this request gives a code issued at `now` (Unix seconds).
    pub fn binding(&self, now: i64) -> Binding {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        Binding {
            space: self.space.clone(),
            user: self.user.clone(),
            role: self.role,
            kind: self.kind,
            purposes: self.purposes,
            max_uses: self.max_uses,
            issued_at: now,
            expires_at: now.saturating_add(ttl),
        }
    }
}

/// Parse a lifetime: whole seconds in eos-sec's one duration grammar
/// ([`crate::duration`]: `14d`, `12h`, `30m`, `90s`, `1h 30m`).
pub fn parse_duration(s: &str) -> Result<Duration, BindingError> {
    crate::duration::parse_seconds(s)
        .map_err(|_| BindingError::TtlSyntax(s.chars().take(32).collect()))
}

/// Write a duration in the largest unit that divides it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_round_trip() {
        let p = Purposes::parse("recover,register-ip").unwrap();
        assert_eq!(p.to_string(), "register-ip,recover");
        assert!(p.contains(Purpose::Recover) && !p.contains(Purpose::RegisterCert));
        assert_eq!(Purposes::parse(""), Err(BindingError::NoPurpose));
        assert_eq!(
            Purposes::parse("register-ip,admin")
                .unwrap_err()
                .to_string(),
            "unknown purpose `admin` (expected register-ip, register-cert or recover)"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("14d").unwrap(), DEFAULT_TTL);
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        for bad in ["", "d", "14", "1w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(DEFAULT_TTL), "14d");
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
    }

    #[test]
    fn recovery_is_admin_only() {
        let s = SpaceId::new("acme").unwrap();
        let u = UserId::new("bob").unwrap();
        let e = IssueRequest::recovery(s.clone(), u.clone(), Role::User).unwrap_err();
        assert_eq!(
            e.to_string(),
            "recovery codes and the purpose `recover` are for administrators; bob has role user"
        );
        assert_eq!(e.code(), "recover-not-admin");
        // The purpose on an onboarding code too, for every other role.
        let recover = Purposes::new([Purpose::RegisterIp, Purpose::Recover]).unwrap();
        for role in [Role::User, Role::Service] {
            let e = IssueRequest::onboarding(s.clone(), u.clone(), role, recover).unwrap_err();
            assert_eq!(e.code(), "recover-not-admin");
        }
        assert!(IssueRequest::onboarding(s.clone(), u.clone(), Role::Admin, recover).is_ok());
        let r = IssueRequest::recovery(s, u, Role::Admin).unwrap();
        let b = r.binding(100);
        assert_eq!(b.max_uses, None);
        assert_eq!(b.purposes.to_string(), "recover");
    }

    #[test]
    fn ttl_and_uses_limits() {
        let s = SpaceId::new("acme").unwrap();
        let u = UserId::new("bob").unwrap();
        let all = Purposes::new(Purpose::ALL).unwrap();
        let r = IssueRequest::onboarding(s, u, Role::Admin, all).unwrap();
        assert!(r.clone().with_ttl(Duration::ZERO).is_err());
        assert!(
            r.clone()
                .with_ttl(MAX_TTL + Duration::from_secs(1))
                .is_err()
        );
        assert!(r.clone().with_max_uses(Some(0)).is_err());
        let b = r.binding(1000);
        assert_eq!(b.expires_at, 1000 + 14 * 86_400);
        assert_eq!(b.max_uses, Some(1));
    }

    /// Every code of [`crate::Code`]: what a refused issue request says.
    #[test]
    fn every_refusal_has_its_code() {
        let s = SpaceId::new("acme").unwrap();
        let u = UserId::new("bob").unwrap();
        let all = Purposes::new(Purpose::ALL).unwrap();
        let r = IssueRequest::onboarding(s.clone(), u.clone(), Role::Admin, all).unwrap();
        let codes = [
            "register-everything".parse::<Purpose>().unwrap_err(),
            Purposes::parse("").unwrap_err(),
            r.clone().with_ttl(Duration::ZERO).unwrap_err(),
            parse_duration("two weeks").unwrap_err(),
            r.with_max_uses(Some(0)).unwrap_err(),
            IssueRequest::recovery(s, u, Role::User).unwrap_err(),
        ]
        .map(|e| e.code());
        let registry: Vec<&str> = crate::Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            codes,
            [
                "unknown-purpose",
                "no-purpose",
                "ttl-out-of-range",
                "ttl-syntax",
                "zero-uses",
                "recover-not-admin"
            ]
        );
        assert_eq!(codes.as_slice(), registry.as_slice());
    }
}
