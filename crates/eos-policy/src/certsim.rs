//! Replay ALB connection logs through the certificate gate: per space, who
//! would be refused once its listener moves from `passthrough` (stage
//! `count`, nothing refused) to `verify` (stage `enforce`), and why — and a
//! hard warning when a declared administrator would be among them.
//!
//! A connection log names no host, so a connection is attributed to a space
//! by, in order: the access log's request with the same `conn_trace_id`
//! (the space the client actually called); the space the certificate is
//! bound to in the CA's inventory; the `O=` of the certificate's subject
//! (where the CA puts the space) when it names a declared space. Anything
//! else is reported as unattributed (a connection without a certificate is
//! refused on the listener whatever space it was for).
//!
//! The reasons, checked in this order (the first that applies counts):
//!
//! | reason | when |
//! |---|---|
//! | `no-certificate` | the client sent none (the certificate fields are `-`) |
//! | `unknown-ca` | its serial is not in the CA's inventory (not issued by this CA), or the ALB logged `ClientCertUntrusted` |
//! | `revoked` | revoked in the inventory or listed on the CA's current CRL, or the ALB logged `ClientCertCrlHit` |
//! | `expired` | the connection's time is outside the certificate's validity, or the ALB logged `ClientCertExpired`/`ClientCertNotYetValid` |
//! | `other-space` | the connection was for a space (by its trace id) other than the one the certificate is bound to — the ALB itself lets it through, the binding check behind it refuses it |
//! | `invalid` | any other `Failed:` status the ALB logged |

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use eos_identity::{SpaceId, UserId};
use eos_logs::{Connection, VerifyStatus};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::compile::{ListenerMode, listener_mode};
use crate::gate::{GateError, parse_crl};
use crate::model::{Policy, Stage};

/// Examples kept per space.
pub const CERT_EXAMPLES: usize = 10;

/// A certificate the CA issued, as its inventory records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The space it is bound to.
    pub space: SpaceId,
    /// The user it was issued to.
    pub user: String,
    /// Revoked in the inventory.
    pub revoked: bool,
}

/// What the certificate check knows: the CA's inventory by canonical serial
/// ([`canonical_serial`]) and the serials on its current CRL.
#[derive(Debug, Clone, Default)]
pub struct CertInventory {
    issued: BTreeMap<String, IssuedCert>,
    crl: BTreeSet<String>,
}

impl CertInventory {
    /// An empty inventory (every certificate is of an unknown CA).
    pub fn new() -> CertInventory {
        CertInventory::default()
    }

    /// Record an issued certificate (serial in any hex form).
    pub fn issued(&mut self, serial: &str, cert: IssuedCert) {
        self.issued.insert(canonical_serial(serial), cert);
    }

    /// Record a serial listed on the CA's current CRL.
    pub fn on_crl(&mut self, serial: &str) {
        self.crl.insert(canonical_serial(serial));
    }

    /// Record every serial a PEM CRL lists; the number of entries.
    pub fn on_crl_pem(&mut self, pem: &[u8]) -> Result<u64, GateError> {
        let list = parse_crl(pem)?;
        let mut n = 0;
        for entry in list.tbs_cert_list.revoked_certificates.unwrap_or_default() {
            self.on_crl(&hex::encode(entry.serial_number.as_bytes()));
            n += 1;
        }
        Ok(n)
    }
}

/// A serial in one form: lower-case hex, no `:` separators, no leading
/// zeros (ALB logs `FEF2...`, the inventory `00fef2...`).
pub fn canonical_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Why `verify` would refuse a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// No client certificate.
    NoCertificate,
    /// Not issued by this CA.
    UnknownCa,
    /// Revoked.
    Revoked,
    /// Outside its validity.
    Expired,
    /// Bound to another space.
    OtherSpace,
    /// Another failure the ALB logged.
    Invalid,
}

impl Refusal {
    /// Stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no-certificate",
            Refusal::UnknownCa => "unknown-ca",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::OtherSpace => "other-space",
            Refusal::Invalid => "invalid",
        }
    }
}

/// One connection that would be refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedConnection {
    /// Why.
    pub reason: Refusal,
    /// When (RFC 3339).
    pub time: String,
    /// The client address.
    pub client_ip: IpAddr,
    /// The listener's port.
    pub listener_port: u16,
    /// The certificate's serial (canonical), if any.
    pub serial: Option<String>,
    /// The user it was issued to (inventory, else the subject's `CN=`).
    pub user: Option<String>,
    /// The space the certificate is bound to, when known.
    pub bound_to: Option<SpaceId>,
}

/// Per space (or for the unattributed connections).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SpaceCertSimulation {
    /// The space's listener at `enforce` verifies certificates (modes
    /// `cert`, `both`): what is listed here would be refused.
    pub verify_at_enforce: bool,
    /// Connections attributed to it.
    pub connections: u64,
    /// Those `verify` would refuse.
    pub would_refuse: u64,
    /// Per reason.
    pub by_reason: BTreeMap<Refusal, u64>,
    /// The first few refused connections (at most [`CERT_EXAMPLES`]).
    pub examples: Vec<RefusedConnection>,
    /// Users whose connections would be refused (sorted).
    pub refused_users: Vec<String>,
    /// Declared administrators among them: a hard warning, and the
    /// `enforce-admin-cert-refused` guard.
    pub refused_admins: Vec<UserId>,
}

/// The whole certificate simulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CertSimulation {
    /// Connections replayed.
    pub connections: u64,
    /// Per declared space.
    pub spaces: BTreeMap<SpaceId, SpaceCertSimulation>,
    /// Connections no declared space could be found for.
    pub unattributed: SpaceCertSimulation,
}

impl CertSimulation {
    /// Declared administrators of `space` whose connections would be refused.
    pub fn refused_admins(&self, space: &SpaceId) -> &[UserId] {
        self.spaces
            .get(space)
            .map_or(&[], |s| s.refused_admins.as_slice())
    }
}

/// Accumulates connections; [`CertSimulator::finish`] gives the report.
#[derive(Debug)]
pub struct CertSimulator<'p> {
    policy: &'p Policy,
    inventory: &'p CertInventory,
    out: CertSimulation,
    users: BTreeMap<Option<SpaceId>, BTreeSet<String>>,
}

/// `KEY=value` of an RFC 4514-style subject as ALB logs it
/// (`CN=alice,O=acme,...`); escaped commas are not unescaped.
fn subject_attr<'s>(subject: &'s str, key: &str) -> Option<&'s str> {
    subject.split(',').find_map(|rdn| {
        let (k, v) = rdn.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

impl<'p> CertSimulator<'p> {
    /// A simulator for `policy` against the CA's `inventory`.
    pub fn new(policy: &'p Policy, inventory: &'p CertInventory) -> Self {
        CertSimulator {
            policy,
            inventory,
            out: CertSimulation::default(),
            users: BTreeMap::new(),
        }
    }

    /// Replay one connection. `called` is the space its requests were for,
    /// when the access log names it (joined on `conn_trace_id`).
    pub fn record(&mut self, c: &Connection<'_>, called: Option<&SpaceId>) {
        self.out.connections += 1;
        let serial = c.serial.map(canonical_serial);
        let issued = serial.as_ref().and_then(|s| self.inventory.issued.get(s));
        let subject_space = c
            .subject
            .and_then(|s| subject_attr(s, "O"))
            .and_then(|o| SpaceId::new(o).ok());
        let space = called
            .or(issued.map(|i| &i.space))
            .or(subject_space.as_ref())
            .filter(|s| self.policy.spaces.contains_key(*s))
            .cloned();
        let user = issued.map(|i| i.user.clone()).or_else(|| {
            c.subject
                .and_then(|s| subject_attr(s, "CN"))
                .map(str::to_owned)
        });
        let reason = self.refusal(c, serial.as_deref(), issued, called);
        let acc = match &space {
            Some(s) => self.out.spaces.entry(s.clone()).or_default(),
            None => &mut self.out.unattributed,
        };
        acc.connections += 1;
        let Some(reason) = reason else { return };
        acc.would_refuse += 1;
        *acc.by_reason.entry(reason).or_default() += 1;
        if acc.examples.len() < CERT_EXAMPLES {
            acc.examples.push(RefusedConnection {
                reason,
                time: c.time.format(&Rfc3339).unwrap_or_default(),
                client_ip: c.client_ip,
                listener_port: c.listener_port,
                serial: serial.clone(),
                user: user.clone(),
                bound_to: issued.map(|i| i.space.clone()),
            });
        }
        if let Some(u) = user {
            self.users.entry(space).or_default().insert(u);
        }
    }

    fn refusal(
        &self,
        c: &Connection<'_>,
        serial: Option<&str>,
        issued: Option<&IssuedCert>,
        called: Option<&SpaceId>,
    ) -> Option<Refusal> {
        if let VerifyStatus::Failed(code) = c.verify {
            return Some(match code {
                "ClientCertUntrusted" => Refusal::UnknownCa,
                "ClientCertCrlHit" => Refusal::Revoked,
                "ClientCertExpired" | "ClientCertNotYetValid" => Refusal::Expired,
                _ => Refusal::Invalid,
            });
        }
        let Some(serial) = serial else {
            return Some(Refusal::NoCertificate);
        };
        let Some(issued) = issued else {
            return Some(Refusal::UnknownCa);
        };
        if issued.revoked || self.inventory.crl.contains(serial) {
            return Some(Refusal::Revoked);
        }
        if c.not_after.is_some_and(|t| c.time > t) || c.not_before.is_some_and(|t| c.time < t) {
            return Some(Refusal::Expired);
        }
        if called.is_some_and(|s| *s != issued.space) {
            return Some(Refusal::OtherSpace);
        }
        None
    }

    /// The report.
    pub fn finish(mut self) -> CertSimulation {
        for (space, users) in std::mem::take(&mut self.users) {
            let acc = match &space {
                Some(s) => self.out.spaces.entry(s.clone()).or_default(),
                None => &mut self.out.unattributed,
            };
            acc.refused_users = users.into_iter().collect();
        }
        for (id, acc) in &mut self.out.spaces {
            let Some(sp) = self.policy.spaces.get(id) else {
                continue;
            };
            acc.verify_at_enforce = listener_mode(sp.mode, Stage::Enforce) == ListenerMode::Verify;
            acc.refused_admins = sp
                .admins
                .iter()
                .filter(|a| {
                    acc.refused_users
                        .iter()
                        .any(|u| UserId::new(u).ok().as_ref() == Some(*a))
                })
                .cloned()
                .collect();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    const POLICY: &str = r#"
[web_acl]
name = "eos-restricted"
[routing]
by = "host-label"
domain = "entityos.cloud"
[spaces.acme]
mode = "cert"
admins = ["alice"]
[spaces.globex]
mode = "either"
"#;

    fn space(s: &str) -> SpaceId {
        SpaceId::new(s).unwrap()
    }

    fn conn<'a>(
        serial: Option<&'a str>,
        subject: Option<&'a str>,
        verify: VerifyStatus<'a>,
    ) -> Connection<'a> {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        Connection {
            time: t,
            client_ip: "198.51.100.7".parse().unwrap(),
            client_port: 50_000,
            listener_port: 443,
            subject,
            not_before: Some(t - time::Duration::days(1)),
            not_after: Some(t + time::Duration::days(1)),
            serial,
            verify,
            trace_id: None,
        }
    }

    #[test]
    fn serials_compare_in_one_form() {
        assert_eq!(canonical_serial("00:FE:F2"), "fef2");
        assert_eq!(canonical_serial("00fef2"), canonical_serial("FEF2"));
        assert_eq!(canonical_serial("000"), "0");
    }

    #[test]
    fn each_reason_and_the_administrator() {
        let policy = Policy::from_toml(POLICY, "p.toml").unwrap();
        let mut inv = CertInventory::new();
        let issued = |space: &str, user: &str, revoked| IssuedCert {
            space: SpaceId::new(space).unwrap(),
            user: user.to_owned(),
            revoked,
        };
        inv.issued("0A", issued("acme", "alice", false));
        inv.issued("0b", issued("acme", "bob", true));
        inv.issued("0c", issued("acme", "carol", false));
        inv.issued("0d", issued("globex", "dave", false));
        inv.on_crl("0C");
        let mut sim = CertSimulator::new(&policy, &inv);
        // Alice, valid, for her own space: accepted.
        sim.record(
            &conn(Some("A"), None, VerifyStatus::Success),
            Some(&space("acme")),
        );
        // Bob revoked in the inventory, Carol on the CRL.
        sim.record(&conn(Some("B"), None, VerifyStatus::Success), None);
        sim.record(&conn(Some("C"), None, VerifyStatus::Success), None);
        // Dave's globex certificate used against acme.
        sim.record(
            &conn(Some("D"), None, VerifyStatus::Success),
            Some(&space("acme")),
        );
        // A certificate of another CA naming acme; no certificate at all.
        sim.record(
            &conn(Some("EE"), Some("CN=mallory,O=acme"), VerifyStatus::Success),
            None,
        );
        sim.record(&conn(None, None, VerifyStatus::Success), None);
        // Alice's certificate, expired at the time of the connection.
        let mut old = conn(Some("A"), None, VerifyStatus::Success);
        old.not_after = Some(old.time - time::Duration::seconds(1));
        sim.record(&old, None);
        // What the ALB logged in verify mode is taken as it is.
        sim.record(
            &conn(Some("A"), None, VerifyStatus::Failed("ClientCertRejected")),
            None,
        );
        let r = sim.finish();
        assert_eq!(r.connections, 8);
        let acme = &r.spaces[&space("acme")];
        assert!(acme.verify_at_enforce);
        assert_eq!(acme.connections, 7);
        let by: Vec<(&str, u64)> = acme
            .by_reason
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            by,
            [
                ("unknown-ca", 1),
                ("revoked", 2),
                ("expired", 1),
                ("other-space", 1),
                ("invalid", 1)
            ]
        );
        assert_eq!(acme.would_refuse, 6);
        assert_eq!(
            acme.refused_users,
            ["alice", "bob", "carol", "dave", "mallory"]
        );
        assert_eq!(acme.refused_admins, [UserId::new("alice").unwrap()]);
        let other = acme
            .examples
            .iter()
            .find(|e| e.reason == Refusal::OtherSpace)
            .unwrap();
        assert_eq!(other.bound_to, Some(space("globex")));
        assert_eq!(
            r.unattributed.by_reason.get(&Refusal::NoCertificate),
            Some(&1)
        );
        assert!(!r.spaces.contains_key(&space("globex")));
    }
}
