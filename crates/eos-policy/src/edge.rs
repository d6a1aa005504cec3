//! The certificate gate in enforce and rollback: the ALB listener that
//! serves a `cert`/`both`/`either` space is moved with the space's stage —
//! `passthrough` at `count` (the chain is forwarded, nobody is refused), and
//! for `cert`/`both` `verify` at `enforce` — after the lockout guards here
//! have passed:
//!
//! - the trust store the listener will verify against holds exactly the
//!   CA's current bundle and CRL, and is `ACTIVE` ([`guard::TRUST_STORE_STALE`]);
//! - the operator's own certificate verifies against that bundle and CRL
//!   ([`guard::OPERATOR_CERT`], [`guard::OPERATOR_CERT_UNKNOWN`]);
//! - `IgnoreClientCertificateExpiry` stays false ([`guard::IGNORE_EXPIRY`]);
//! - every space on the listener wants the same mode ([`guard::LISTENER_SHARED`]).
//!
//! The listener, the trust store's ARN, bundle object and revocation ids
//! are part of every snapshot ([`GateSnapshot`]); `rollback` restores the
//! listener exactly. The calls are a [`GateBackend`]'s.

use std::collections::BTreeMap;

use eos_identity::SpaceId;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::compile::{ListenerMode, listener_mode};
use crate::enforce::{Guard, guard};
use crate::gate::{
    GateBackend, GateError, ListenerAuth, Revocation, TrustMaterial, TrustStoreRead,
    TrustStoreRecord, sha256_hex,
};
use crate::model::{Policy, Stage};

/// One `[[gate.listeners]]` entry: an ALB listener and the spaces it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The listener's ARN.
    pub arn: String,
    /// The spaces it serves (a listener has one mode for all of them).
    pub spaces: Vec<SpaceId>,
    /// The `[gate] trust_stores` entry it verifies against.
    pub trust_store: String,
    /// `AdvertiseTrustStoreCaNames` in mode verify.
    pub advertise_ca_names: bool,
    /// `IgnoreClientCertificateExpiry` asked for; verify is refused when
    /// true ([`guard::IGNORE_EXPIRY`]).
    pub ignore_client_certificate_expiry: bool,
}

/// What enforce needs to move listeners.
#[derive(Debug, Clone, Copy)]
pub struct EdgeGate<'a, G> {
    /// Where the listeners and trust stores are.
    pub backend: &'a G,
    /// `[[gate.listeners]]`.
    pub listeners: &'a [ListenerConfig],
    /// The CA's current bundle and CRL — what verify will enforce — or why
    /// there is none.
    pub material: Result<&'a TrustMaterial, &'a str>,
    /// What `gate publish`/`sync` recorded per trust store name.
    pub records: &'a BTreeMap<String, TrustStoreRecord>,
    /// The operator's own certificate chain (leaf first).
    pub operator_cert: Option<&'a [CertificateDer<'static>]>,
    /// The time certificates are checked at.
    pub now: UnixTime,
}

/// A trust store as it stood when a snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStoreSnapshot {
    /// Its `[gate] trust_stores` name.
    pub name: String,
    /// Its ARN (`None`: it did not exist).
    pub arn: Option<String>,
    /// `ACTIVE`, `CREATING`.
    pub status: Option<String>,
    /// CA certificates in it.
    pub ca_certificates: Option<usize>,
    /// The bundle object eos-sec attached (its record).
    pub bundle_key: Option<String>,
    /// That bundle's SHA-256.
    pub bundle_sha256: Option<String>,
    /// The CRL number eos-sec attached.
    pub crl_number: Option<u64>,
    /// The revocation files read from it.
    pub revocations: Vec<Revocation>,
}

/// The certificate gate's part of a snapshot: one listener and its trust
/// store, as read just before a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateSnapshot {
    /// The listener's ARN.
    pub listener_arn: String,
    /// Its `MutualAuthentication` as read.
    pub listener: ListenerAuth,
    /// The trust store it is configured to verify against.
    pub trust_store: TrustStoreSnapshot,
}

/// A listener change enforce will make, its guards already found.
#[derive(Debug, Clone)]
pub(crate) struct ListenerMove {
    /// The listener's state before (for the snapshots).
    pub snapshot: GateSnapshot,
    /// What it is moved to.
    pub target: ListenerAuth,
    /// Findings that may be overridden with `--force`.
    pub guards: Vec<Guard>,
    /// Findings nothing overrides.
    pub hard: Vec<Guard>,
}

fn missing_listener(arn: &str) -> PolicyError {
    PolicyError::Gate(GateError::Missing {
        what: "ALB listener",
        name: arn.to_owned(),
    })
}

/// Read `arn`'s `MutualAuthentication`, which must exist.
pub(crate) async fn read_listener<G: GateBackend>(
    backend: &G,
    arn: &str,
) -> Result<ListenerAuth, PolicyError> {
    backend
        .listener(arn)
        .await?
        .ok_or_else(|| missing_listener(arn))
}

/// Read the trust store `name` with what eos-sec recorded on it.
pub(crate) async fn read_trust_store<G: GateBackend>(
    backend: &G,
    name: &str,
    record: Option<&TrustStoreRecord>,
) -> Result<TrustStoreSnapshot, PolicyError> {
    let live = backend.trust_store(name).await?;
    Ok(trust_store_snapshot(name, live, record))
}

/// The trust store `name` as read (`live`, `None`: it does not exist) with
/// what eos-sec recorded on it, when the record is for the same ARN.
pub fn trust_store_snapshot(
    name: &str,
    live: Option<TrustStoreRead>,
    record: Option<&TrustStoreRecord>,
) -> TrustStoreSnapshot {
    let record = record.filter(|r| live.as_ref().is_some_and(|l| l.arn == r.arn));
    TrustStoreSnapshot {
        name: name.to_owned(),
        arn: live.as_ref().map(|l| l.arn.clone()),
        status: live.as_ref().map(|l| l.status.clone()),
        ca_certificates: live.as_ref().map(|l| l.ca_certificates),
        bundle_key: record.map(|r| r.bundle.key.clone()),
        bundle_sha256: record.map(|r| r.bundle.sha256.clone()),
        crl_number: record.and_then(|r| r.crl.as_ref()).map(|c| c.number),
        revocations: live.map(|l| l.revocations).unwrap_or_default(),
    }
}

/// Why `enforce` would refuse `verify` against this trust store as stale
/// ([`guard::TRUST_STORE_STALE`]), `None` when it holds exactly the CA's
/// current bundle and CRL — the same check, for `gate status`.
pub fn trust_store_stale(
    read: &TrustStoreSnapshot,
    record: Option<&TrustStoreRecord>,
    material: &TrustMaterial,
) -> Option<String> {
    stale_reason(read, record, material)
}

/// Why the trust store does not hold exactly the CA's current bundle and
/// CRL (`None`: it does). Compares the live read with eos-sec's record of
/// what it attached and with the material.
fn stale_reason(
    read: &TrustStoreSnapshot,
    record: Option<&TrustStoreRecord>,
    material: &TrustMaterial,
) -> Option<String> {
    let Some(arn) = &read.arn else {
        return Some("it does not exist: run `eos-sec gate publish`".to_owned());
    };
    if read.status.as_deref() != Some("ACTIVE") {
        return Some(format!(
            "it is {}, not ACTIVE",
            read.status.as_deref().unwrap_or("in an unknown state")
        ));
    }
    let Some(record) = record.filter(|r| &r.arn == arn) else {
        return Some(
            "eos-sec has no record of publishing to it: run `eos-sec gate publish`".to_owned(),
        );
    };
    let bundle = sha256_hex(material.bundle());
    if record.bundle.sha256 != bundle {
        return Some(format!(
            "it holds bundle sha256:{}, the CA's is sha256:{bundle}: run `eos-sec gate publish`",
            record.bundle.sha256
        ));
    }
    if read.ca_certificates != Some(material.certificates()) {
        return Some(format!(
            "it holds {} CA certificates, the bundle has {}",
            read.ca_certificates
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            material.certificates()
        ));
    }
    let Some((crl, entries)) = material.crl() else {
        return Some(
            "the CA has no CRL eos-sec carries (AWS Private CA's own CRL is not published yet): verify would not see revocations".to_owned(),
        );
    };
    let Some(held) = &record.crl else {
        return Some(format!(
            "it holds no CRL, the CA's is number {}",
            crl.number
        ));
    };
    if held.number != crl.number || held.object.sha256 != sha256_hex(&crl.pem) {
        return Some(format!(
            "it holds CRL {}, the CA's current one is {}: run `eos-sec sync` or `eos-sec gate publish`",
            held.number, crl.number
        ));
    }
    let expected = [Revocation {
        id: held.revocation_id,
        entries,
    }];
    if read.revocations != expected {
        let ids: Vec<String> = read
            .revocations
            .iter()
            .map(|r| format!("{} ({} entries)", r.id, r.entries))
            .collect();
        return Some(format!(
            "its revocation files are [{}], expected exactly revocation {} ({} entries) of CRL {}",
            ids.join(", "),
            held.revocation_id,
            entries,
            crl.number
        ));
    }
    None
}

/// The operator's certificate against exactly the bundle and CRL verify
/// will enforce.
fn operator_guard<G>(g: &EdgeGate<'_, G>, material: &TrustMaterial) -> Option<Guard> {
    let Some(chain) = g.operator_cert else {
        return Some(Guard {
            code: guard::OPERATOR_CERT_UNKNOWN,
            message: "no operator certificate to check: pass --operator-cert FILE (the certificate you reach the space with) or set [gate] operator_cert".to_owned(),
        });
    };
    let refused = |reason: String| {
        Some(Guard {
            code: guard::OPERATOR_CERT,
            message: format!(
                "the operator's certificate would be refused by the bundle and CRL being enforced: {reason}"
            ),
        })
    };
    let Some((crl, _)) = material.crl() else {
        return refused("there is no CRL to check it against".to_owned());
    };
    let trust = match crate::TrustConfig::new(
        (std::path::Path::new("CA bundle"), material.bundle()),
        &[(std::path::PathBuf::from("CRL"), crl.pem.clone())],
    ) {
        Ok(t) => t,
        Err(e) => return refused(e.to_string()),
    };
    trust.verify_chain(chain, g.now).err().and_then(refused)
}

/// The guards of a move of listener `arn` to verify against
/// `trust_store` (as just read): those nothing overrides, and those
/// `--force` may.
pub(crate) fn verify_guards<G>(
    g: &EdgeGate<'_, G>,
    arn: &str,
    ignore_expiry: bool,
    trust_store: &TrustStoreSnapshot,
) -> (Vec<Guard>, Vec<Guard>) {
    let (mut hard, mut soft) = (Vec::new(), Vec::new());
    let name = &trust_store.name;
    if ignore_expiry {
        hard.push(Guard {
            code: guard::IGNORE_EXPIRY,
            message: format!(
                "listener {arn} would verify with IgnoreClientCertificateExpiry = true: eos-sec never lets expired certificates pass verify"
            ),
        });
    }
    match g.material {
        Err(why) => hard.push(Guard {
            code: guard::TRUST_STORE_STALE,
            message: format!(
                "trust store {name}: the CA's current bundle and CRL are not known: {why}"
            ),
        }),
        Ok(material) => {
            if let Some(why) = stale_reason(trust_store, g.records.get(name), material) {
                hard.push(Guard {
                    code: guard::TRUST_STORE_STALE,
                    message: format!("trust store {name}: {why}"),
                });
            }
            soft.extend(operator_guard(g, material));
        }
    }
    (hard, soft)
}

/// The listener move for `space` at the stages `next`, with its guards;
/// `None` when no `[[gate.listeners]]` entry serves the space.
pub(crate) async fn plan<G: GateBackend>(
    g: &EdgeGate<'_, G>,
    policy: &Policy,
    space: &SpaceId,
    next: &BTreeMap<SpaceId, Stage>,
) -> Result<Option<ListenerMove>, PolicyError> {
    let Some(conf) = g.listeners.iter().find(|l| l.spaces.contains(space)) else {
        return Ok(None);
    };
    let mut wanted = BTreeMap::new();
    for s in &conf.spaces {
        let mode = policy.space(s)?.mode;
        let stage = next.get(s).copied().unwrap_or(Stage::Off);
        wanted.insert(s.clone(), listener_mode(mode, stage));
    }
    let mode = wanted.get(space).copied().unwrap_or(ListenerMode::Off);
    let mut hard = Vec::new();
    let mut guards = Vec::new();
    if wanted.values().any(|m| *m != mode) {
        let parts: Vec<String> = wanted
            .iter()
            .map(|(s, m)| format!("{s} {}", m.as_str()))
            .collect();
        hard.push(Guard {
            code: guard::LISTENER_SHARED,
            message: format!(
                "listener {} serves spaces that would need different modes ({}): a listener has one mode; give the spaces their own listeners or move them together",
                conf.arn,
                parts.join(", ")
            ),
        });
    }
    let listener = read_listener(g.backend, &conf.arn).await?;
    let record = g.records.get(&conf.trust_store);
    let trust_store = read_trust_store(g.backend, &conf.trust_store, record).await?;
    // The verify guards run before the stage that needs them too, as
    // warnings, so an operator sees them at count.
    let space_mode = policy.space(space)?.mode;
    if mode == ListenerMode::Verify
        || listener_mode(space_mode, Stage::Enforce) == ListenerMode::Verify
    {
        let (h, soft) = verify_guards(
            g,
            &conf.arn,
            conf.ignore_client_certificate_expiry,
            &trust_store,
        );
        hard.extend(h);
        guards.extend(soft);
    }
    let target = if mode == ListenerMode::Verify {
        ListenerAuth::verify(
            trust_store.arn.as_deref().unwrap_or_default(),
            conf.advertise_ca_names,
        )
    } else {
        ListenerAuth::mode_only(mode)
    };
    Ok(Some(ListenerMove {
        snapshot: GateSnapshot {
            listener_arn: conf.arn.clone(),
            listener,
            trust_store,
        },
        target,
        guards,
        hard,
    }))
}

/// Set the listener to `target` and read it back; an error when the read
/// differs.
pub(crate) async fn write_listener<G: GateBackend>(
    backend: &G,
    arn: &str,
    target: &ListenerAuth,
) -> Result<(), PolicyError> {
    backend.set_listener(arn, &target.normalized()).await?;
    let after = read_listener(backend, arn).await?;
    if !after.same_as(target) {
        return Err(PolicyError::Gate(GateError::ReadBack {
            what: "ALB listener",
            name: arn.to_owned(),
            found: after.to_string(),
            expected: target.normalized().to_string(),
        }));
    }
    Ok(())
}

/// A backend for callers without a certificate gate: it cannot be built,
/// so nothing is ever called on it.
#[derive(Debug, Clone, Copy)]
pub enum NoGate {}

impl GateBackend for NoGate {
    fn gate_backend_id(&self) -> String {
        match *self {}
    }
    async fn put_object(&self, _: &str, _: &[u8]) -> Result<crate::gate::ObjectRef, GateError> {
        match *self {}
    }
    async fn trust_store(&self, _: &str) -> Result<Option<crate::gate::TrustStoreRead>, GateError> {
        match *self {}
    }
    async fn create_trust_store(
        &self,
        _: &str,
        _: &crate::gate::ObjectRef,
    ) -> Result<String, GateError> {
        match *self {}
    }
    async fn modify_trust_store(
        &self,
        _: &str,
        _: &crate::gate::ObjectRef,
    ) -> Result<(), GateError> {
        match *self {}
    }
    async fn add_revocation(
        &self,
        _: &str,
        _: &crate::gate::ObjectRef,
    ) -> Result<Revocation, GateError> {
        match *self {}
    }
    async fn remove_revocations(&self, _: &str, _: &[i64]) -> Result<(), GateError> {
        match *self {}
    }
    async fn domain(&self, _: &str) -> Result<Option<crate::gate::DomainRead>, GateError> {
        match *self {}
    }
    async fn set_domain_truststore(
        &self,
        _: &str,
        _: &crate::gate::ObjectRef,
    ) -> Result<(), GateError> {
        match *self {}
    }
    async fn listener(&self, _: &str) -> Result<Option<ListenerAuth>, GateError> {
        match *self {}
    }
    async fn set_listener(&self, _: &str, _: &ListenerAuth) -> Result<(), GateError> {
        match *self {}
    }
}
