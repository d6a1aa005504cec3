//! The restricted firewall as a model.
//!
//! A policy file ([`Policy`]) describes the standard rules (managed rule
//! groups, rate-based rules), the IP gate (the space's IPSets
//! `eos-<space>-v4` / `eos-<space>-v6`), the certificate gate, and per space
//! a [`Mode`] and a [`Stage`]. From it:
//!
//! - [`compile`] produces a deterministic WAFv2 Web ACL plus the mTLS
//!   listener settings (WAF cannot see client certificates: see
//!   `docs/MTLS.md`);
//! - [`Evaluator`] decides a request — ALLOW or BLOCK and the rule that
//!   decided — including the certificate check a Rust service runs for mode
//!   `either` behind a passthrough listener;
//! - [`Simulator`] replays historical requests and reports what enforcement
//!   would block; [`CertSimulator`] replays ALB connection logs and
//!   reports whom the certificate gate would refuse.
//!
//! - [`enforce::enforce`] / [`enforce::rollback`] move a space one stage
//!   forward or back through a [`WebAclBackend`], with lockout guards,
//!   snapshots and the audit log kept by an [`enforce::EnforceJournal`].
//!
//! No I/O beyond reading the files it is handed; no async, no AWS, no SQL.

mod acl;
mod cert;
mod certsim;
pub mod compile;
pub mod edge;
pub mod enforce;
mod error;
mod eval;
pub mod gate;
mod model;
mod simulate;
pub mod waf;

pub use acl::{
    AclRead, OwnedAcl, WebAclBackend, merge_document, owned_of_document, owned_priority_base,
    strip_nulls,
};
pub use cert::{CertStatus, TrustConfig, VerifiedChain, chain_from_header, read_chain};
pub use certsim::{
    CERT_EXAMPLES, CertInventory, CertSimulation, CertSimulator, IssuedCert, Refusal,
    RefusedConnection, SpaceCertSimulation, canonical_serial,
};
pub use compile::{Compiled, SetArns, compile, set_name};
pub use error::PolicyError;
pub use eval::{Decision, Evaluator, Layer, Outcome, Request, SetSource, Verdict, space_set};
pub use model::{
    CertGate, IpGate, ManagedGroup, Mode, OverrideTo, Policy, RateKey, RateRule, Routing, Scope,
    SpacePolicy, Stage, known_capacity,
};
pub use rustls_pki_types::{CertificateDer, UnixTime};
pub use simulate::{
    BlockedAddress, SimRecord, Simulation, Simulator, SpaceSimulation, TOP_BLOCKED,
};
