//! Where snapshots, stages and the audit log are kept, and the records a
//! run hands it.

use std::collections::BTreeMap;

use eos_identity::SpaceId;
use serde::{Deserialize, Serialize};

use super::StepKind;
use crate::PolicyError;
use crate::acl::{AclRead, OwnedAcl};
use crate::edge::GateSnapshot;
use crate::gate::ListenerAuth;
use crate::model::Stage;

/// Whether a snapshot was taken by enforce or by rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// `eos-sec enforce`.
    Enforce,
    /// `eos-sec rollback`.
    Rollback,
}

impl RunKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Enforce => "enforce",
            RunKind::Rollback => "rollback",
        }
    }
}

/// A set's contents in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSnapshot {
    /// Canonical CIDRs, in the order stored.
    pub addresses: Vec<String>,
    /// Its lock token at the time.
    pub lock: String,
}

/// A snapshot to record.
#[derive(Debug, Clone, Copy)]
pub struct NewSnapshot<'a> {
    /// The run it belongs to (the id of the run's first snapshot); `None`
    /// for the first snapshot of a run.
    pub run: Option<i64>,
    /// Enforce or rollback.
    pub kind: RunKind,
    /// The space the run is for.
    pub space: &'a SpaceId,
    /// The backend id.
    pub backend: &'a str,
    /// The Web ACL name.
    pub web_acl: &'a str,
    /// The whole Web ACL as read, with its lock token.
    pub read: &'a AclRead,
    /// The space's sets as read.
    pub sets: &'a BTreeMap<String, SetSnapshot>,
    /// The recorded stage of every space.
    pub stages: &'a BTreeMap<SpaceId, Stage>,
    /// The space's listener and trust store, when eos-sec moves one.
    pub gate: Option<&'a GateSnapshot>,
}

/// A recorded snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Its id.
    pub id: i64,
    /// The run (the id of the run's first snapshot).
    pub run: i64,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Enforce or rollback.
    pub kind: RunKind,
    /// The space the run was for.
    pub space: SpaceId,
    /// The backend id.
    pub backend: String,
    /// The Web ACL name.
    pub web_acl: String,
    /// The lock token of the read.
    pub lock: String,
    /// The owned part.
    pub owned: OwnedAcl,
    /// The whole Web ACL document.
    pub document: serde_json::Value,
    /// The space's sets.
    pub sets: BTreeMap<String, SetSnapshot>,
    /// The stage of every space.
    pub stages: BTreeMap<SpaceId, Stage>,
    /// The space's listener and trust store, when eos-sec moved one.
    pub gate: Option<GateSnapshot>,
}

/// A listener change to record (after it was read back).
#[derive(Debug, Clone, Copy)]
pub struct ListenerWrite<'a> {
    /// The listener's ARN.
    pub arn: &'a str,
    /// The snapshot taken just before.
    pub snapshot: i64,
    /// Its `MutualAuthentication` before.
    pub before: &'a ListenerAuth,
    /// And after.
    pub after: &'a ListenerAuth,
}

/// A write to record (after it succeeded).
#[derive(Debug, Clone, Copy)]
pub struct WriteRecord<'a> {
    /// The backend id.
    pub backend: &'a str,
    /// The Web ACL name.
    pub web_acl: &'a str,
    /// The snapshot taken just before.
    pub snapshot: i64,
    /// What changed.
    pub kind: StepKind,
    /// The owned part before.
    pub before: &'a OwnedAcl,
    /// The owned part after.
    pub after: &'a OwnedAcl,
}

/// A change of recorded stages.
#[derive(Debug, Clone)]
pub struct StageChange<'a> {
    /// The backend id.
    pub backend: &'a str,
    /// The Web ACL name.
    pub web_acl: &'a str,
    /// `enforce.stage` or `enforce.rollback`.
    pub action: &'static str,
    /// The space the command was for.
    pub space: &'a SpaceId,
    /// Every space's stage after the change (replaces what is recorded).
    pub stages: &'a BTreeMap<SpaceId, Stage>,
    /// Audit details (before, after, forced guards, snapshots).
    pub detail: serde_json::Value,
}

/// Where snapshots, stages and the audit log are kept (`eos-store`). Each
/// method is one transaction that also appends its audit entry.
pub trait EnforceJournal {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The recorded stage of each space on this backend and Web ACL.
    fn stages(
        &mut self,
        backend: &str,
        web_acl: &str,
    ) -> Result<BTreeMap<SpaceId, Stage>, Self::Error>;
    /// Record a snapshot (audited `webacl.snapshot`); its id.
    fn save_snapshot(&mut self, s: &NewSnapshot<'_>, actor: &str) -> Result<i64, Self::Error>;
    /// A snapshot by id.
    fn snapshot(&mut self, id: i64) -> Result<Option<Snapshot>, Self::Error>;
    /// The first snapshot of the latest enforce run for `space`.
    fn latest_enforce_start(
        &mut self,
        backend: &str,
        web_acl: &str,
        space: &SpaceId,
    ) -> Result<Option<Snapshot>, Self::Error>;
    /// Record a successful write (audited `webacl.write`).
    fn record_write(&mut self, w: &WriteRecord<'_>, actor: &str) -> Result<(), Self::Error>;
    /// Record a listener change read back (audited `listener.write`).
    fn record_listener_write(
        &mut self,
        w: &ListenerWrite<'_>,
        actor: &str,
    ) -> Result<(), Self::Error>;
    /// Replace the recorded stages (audited with `change.action`).
    fn record_stages(&mut self, change: &StageChange<'_>, actor: &str) -> Result<(), Self::Error>;
}

pub(super) fn journal<E: std::error::Error + Send + Sync + 'static>(e: E) -> PolicyError {
    PolicyError::Journal(Box::new(e))
}
