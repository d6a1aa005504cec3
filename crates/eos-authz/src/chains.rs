//! Verified certificate chains, cached: webpki verifies a chain's
//! signatures and the CRL's on every call (100–160 µs, docs/PERFORMANCE.md),
//! while a client presents the same chain on every request.
//!
//! - **key**: SHA-256 of the presented chain's DER, leaf first, each
//!   certificate length-prefixed — the leaf and the intermediates it came
//!   with, byte for byte (DER has one encoding per value);
//! - **value**: what the verification proved ([`VerifiedChain`]: the leaf's
//!   URI SANs and the window in which it holds). Only chains that verified
//!   are kept; a refusal is verified again each time;
//! - **lifetime**: one cache per loaded state ([`crate::Snapshot`]): a
//!   reload of the policy, trust bundle, CRLs or sets builds an empty one,
//!   so a revocation bites at the reload that reads the new CRL, exactly as
//!   without the cache;
//! - **time**: a cached chain is used only inside its window (every
//!   certificate within its validity, no CRL past its `nextUpdate`);
//!   outside it the chain is verified afresh, which refuses an expired one;
//! - **size**: at most `capacity` chains; the oldest entry makes room for
//!   a new one. Capacity 0 turns the cache off.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use eos_identity::SpaceId;
use eos_policy::{CertStatus, CertificateDer, TrustConfig, UnixTime, VerifiedChain};
use sha2::{Digest, Sha256};

type Key = [u8; 32];

/// Verified chains of one loaded state, bounded.
#[derive(Debug)]
pub struct ChainCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    chains: HashMap<Key, Arc<VerifiedChain>>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<Key>,
}

/// How one certificate check was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainLookup {
    /// From the cache, inside its window.
    Hit,
    /// Verified by webpki (not cached, off, or outside its window).
    Verified,
}

impl ChainLookup {
    /// `hit` or `verified` (the decision log's `chain`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChainLookup::Hit => "hit",
            ChainLookup::Verified => "verified",
        }
    }
}

fn key(chain: &[CertificateDer<'_>]) -> Key {
    let mut h = Sha256::new();
    for der in chain {
        h.update((der.len() as u64).to_be_bytes());
        h.update(der.as_ref());
    }
    h.finalize().into()
}

impl ChainCache {
    /// At most `capacity` chains (0: no cache).
    pub fn new(capacity: usize) -> ChainCache {
        ChainCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Chains held now.
    pub fn len(&self) -> usize {
        self.lock().chains.len()
    }

    /// No chain held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map is consistent after every statement: a panic elsewhere
        // while holding the lock leaves nothing half-done.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The certificate gate's answer for `chain` (non-empty) in `space` at
    /// `now`: [`TrustConfig::verify`]'s, from the cache when it holds.
    pub fn verify(
        &self,
        trust: &TrustConfig,
        chain: &[CertificateDer<'_>],
        space: &SpaceId,
        now: UnixTime,
    ) -> (CertStatus, ChainLookup) {
        if self.capacity == 0 {
            return (trust.verify(chain, space, now), ChainLookup::Verified);
        }
        let k = key(chain);
        let cached = self.lock().chains.get(&k).cloned();
        if let Some(v) = cached.filter(|v| v.holds_at(now)) {
            return (v.status(space), ChainLookup::Hit);
        }
        // Verified outside the lock: other requests go on meanwhile.
        let verified = match trust.verified(chain, now) {
            Ok(v) => v,
            Err(reason) => return (CertStatus::Invalid { reason }, ChainLookup::Verified),
        };
        let status = verified.status(space);
        self.insert(k, Arc::new(verified));
        (status, ChainLookup::Verified)
    }

    fn insert(&self, k: Key, v: Arc<VerifiedChain>) {
        let mut inner = self.lock();
        if inner.chains.insert(k, v).is_some() {
            // Verified again (outside its window, or by two requests at
            // once): replaced in place, keeps its place in line.
            return;
        }
        inner.order.push_back(k);
        while inner.chains.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.chains.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevocationReason, RevokedCertParams, SanType, SerialNumber, date_time_ymd,
    };
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    struct Pki {
        ca_pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn pki() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "eos test CA");
        let cert = ca.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(ca, key),
        }
    }

    impl Pki {
        /// A client certificate for `user` in `space`, valid 2024–`until`.
        fn leaf(
            &self,
            space: &str,
            user: &str,
            serial: u64,
            until: i32,
        ) -> CertificateDer<'static> {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.subject_alt_names = vec![SanType::URI(
                format!("urn:entityos:space:{space}:user:{user}")
                    .try_into()
                    .unwrap(),
            )];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.serial_number = Some(SerialNumber::from(serial));
            p.not_before = date_time_ymd(2024, 1, 1);
            p.not_after = date_time_ymd(until, 1, 1);
            p.signed_by(&key, &self.issuer).unwrap().der().clone()
        }

        /// The trust configuration with a CRL revoking `revoked`.
        fn trust(&self, revoked: &[u64]) -> TrustConfig {
            self.trust_until(revoked, 2100)
        }

        /// ... whose CRL's `nextUpdate` is in `next_update`.
        fn trust_until(&self, revoked: &[u64], next_update: i32) -> TrustConfig {
            let crl = CertificateRevocationListParams {
                this_update: date_time_ymd(2024, 1, 1),
                next_update: date_time_ymd(next_update, 1, 1),
                crl_number: SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: revoked
                    .iter()
                    .map(|s| RevokedCertParams {
                        serial_number: SerialNumber::from(*s),
                        revocation_time: date_time_ymd(2024, 6, 1),
                        reason_code: Some(RevocationReason::KeyCompromise),
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&self.issuer)
            .unwrap();
            TrustConfig::new(
                (Path::new("ca.pem"), self.ca_pem.as_bytes()),
                &[(PathBuf::from("ca.crl"), crl.der().to_vec())],
            )
            .unwrap()
        }
    }

    fn at(year: i32) -> UnixTime {
        // 365.25 days a year from 1970, mid-January of `year`.
        let days = (f64::from(year - 1970) * 365.25) as u64 + 14;
        UnixTime::since_unix_epoch(Duration::from_secs(days * 86_400))
    }

    fn space(s: &str) -> SpaceId {
        s.parse().unwrap()
    }

    #[test]
    fn a_cached_chain_answers_as_verification_does_per_space() {
        let pki = pki();
        let trust = pki.trust(&[]);
        let cache = ChainCache::new(8);
        let alice = [pki.leaf("acme", "alice", 1, 2030)];
        let (s, how) = cache.verify(&trust, &alice, &space("acme"), at(2026));
        assert!(s.is_valid(), "{s:?}");
        assert_eq!(how, ChainLookup::Verified);
        let (s, how) = cache.verify(&trust, &alice, &space("acme"), at(2026));
        assert_eq!(
            (s, how),
            (
                trust.verify(&alice, &space("acme"), at(2026)),
                ChainLookup::Hit
            )
        );
        // The binding is per request: the same cached chain for another
        // space is refused, with verification's reason.
        let (s, how) = cache.verify(&trust, &alice, &space("globex"), at(2026));
        assert_eq!(how, ChainLookup::Hit);
        assert_eq!(s, trust.verify(&alice, &space("globex"), at(2026)));
        assert!(!s.is_valid());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_cached_chain_past_its_not_after_is_refused() {
        let pki = pki();
        let trust = pki.trust(&[]);
        let cache = ChainCache::new(8);
        let short = [pki.leaf("acme", "alice", 1, 2027)];
        assert!(
            cache
                .verify(&trust, &short, &space("acme"), at(2026))
                .0
                .is_valid()
        );
        assert_eq!(
            cache.verify(&trust, &short, &space("acme"), at(2026)).1,
            ChainLookup::Hit
        );
        let (s, how) = cache.verify(&trust, &short, &space("acme"), at(2028));
        assert_eq!(how, ChainLookup::Verified);
        assert_eq!(
            s,
            CertStatus::Invalid {
                reason: "certificate expired".to_owned()
            }
        );
    }

    #[test]
    fn a_cached_chain_is_refused_once_the_crl_is_past_its_next_update() {
        let pki = pki();
        let trust = pki.trust_until(&[], 2027);
        let cache = ChainCache::new(8);
        let alice = [pki.leaf("acme", "alice", 1, 2030)];
        assert!(
            cache
                .verify(&trust, &alice, &space("acme"), at(2026))
                .0
                .is_valid()
        );
        assert_eq!(
            cache.verify(&trust, &alice, &space("acme"), at(2026)).1,
            ChainLookup::Hit
        );
        let (s, how) = cache.verify(&trust, &alice, &space("acme"), at(2028));
        assert_eq!(how, ChainLookup::Verified);
        assert_eq!(
            s,
            CertStatus::Invalid {
                reason: "CRL expired".to_owned()
            }
        );
    }

    #[test]
    fn a_revoked_chain_is_refused_by_the_next_state_s_cache() {
        let pki = pki();
        let bob = [pki.leaf("acme", "bob", 7, 2030)];
        let before = ChainCache::new(8);
        let trust = pki.trust(&[]);
        assert!(
            before
                .verify(&trust, &bob, &space("acme"), at(2026))
                .0
                .is_valid()
        );
        assert_eq!(
            before.verify(&trust, &bob, &space("acme"), at(2026)).1,
            ChainLookup::Hit
        );
        // The reload reads the CRL that revokes bob and starts a new cache.
        let revoked = pki.trust(&[7]);
        let after = ChainCache::new(8);
        let (s, _) = after.verify(&revoked, &bob, &space("acme"), at(2026));
        assert_eq!(
            s,
            CertStatus::Invalid {
                reason: "certificate revoked".to_owned()
            }
        );
        // Refusals are not cached.
        assert!(after.is_empty());
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest() {
        let pki = pki();
        let trust = pki.trust(&[]);
        let cache = ChainCache::new(3);
        let leaves: Vec<_> = (1..=5)
            .map(|i| [pki.leaf("acme", &format!("u{i}"), i, 2030)])
            .collect();
        for l in &leaves {
            assert!(
                cache
                    .verify(&trust, l, &space("acme"), at(2026))
                    .0
                    .is_valid()
            );
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        let how = |i: usize| cache.verify(&trust, &leaves[i], &space("acme"), at(2026)).1;
        assert_eq!(how(4), ChainLookup::Hit);
        assert_eq!(how(0), ChainLookup::Verified, "the oldest was evicted");
        // Off: nothing is kept.
        let off = ChainCache::new(0);
        for _ in 0..2 {
            let (s, how) = off.verify(&trust, &leaves[0], &space("acme"), at(2026));
            assert!(s.is_valid());
            assert_eq!(how, ChainLookup::Verified);
        }
        assert!(off.is_empty());
    }

    #[test]
    fn the_key_is_the_whole_chain() {
        let pki = pki();
        let a = pki.leaf("acme", "a", 1, 2030);
        let b = pki.leaf("acme", "b", 2, 2030);
        let one = key(std::slice::from_ref(&a));
        assert_ne!(one, key(&[a.clone(), b.clone()]));
        assert_ne!(key(&[a.clone(), b.clone()]), key(&[b, a.clone()]));
        assert_eq!(one, key(&[a]));
    }
}
