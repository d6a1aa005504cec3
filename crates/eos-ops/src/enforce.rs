//! Enforce and roll back a space on a backend chosen at run time, with the
//! certificate gate at the edge when listeners are configured.
//!
//! The steps, guards and snapshots are `eos_policy::enforce`'s; this module
//! wires them to the one [`Backend`] (Web ACL and IPSets on the same
//! backend), the state store as the journal, and the edge.

use std::collections::BTreeMap;

use eos_identity::SpaceId;
use eos_policy::edge::{EdgeGate, ListenerConfig};
use eos_policy::enforce::{
    EnforceOptions, EnforceReport, RollbackOptions, RollbackReport, RunKind,
};
use eos_policy::gate::{TrustMaterial, TrustStoreRecord};
use eos_policy::{CertificateDer, Policy, Stage, UnixTime, WebAclBackend};
use eos_store::Store;
use eos_store::enforce::list_snapshots;
use serde::Serialize;

use crate::{Backend, OpsError};

/// The certificate gate at the edge, as enforce and rollback move it: the
/// `[[gate.listeners]]`, the operator's certificate, and — when a listener
/// is configured — the AWS side, the CA's current material (or why there
/// is none: verify is then refused with `enforce-trust-store-stale`) and
/// what eos-sec attached to each trust store.
#[derive(Debug)]
pub struct Edge {
    /// `[[gate.listeners]]`.
    pub listeners: Vec<ListenerConfig>,
    /// The operator's own certificate chain (leaf first).
    pub operator_cert: Option<Vec<CertificateDer<'static>>>,
    /// Where the listeners and trust stores are (none: no listener moves).
    pub aws: Option<eos_aws::gate::AwsGate>,
    /// The CA's current bundle and CRL, or why there is none.
    pub material: Result<TrustMaterial, String>,
    /// What `gate publish`/`sync` recorded per trust store name.
    pub records: BTreeMap<String, TrustStoreRecord>,
}

impl Edge {
    /// No listener: enforce and rollback move the Web ACL only.
    pub fn none() -> Edge {
        Edge {
            listeners: Vec::new(),
            operator_cert: None,
            aws: None,
            material: Err("no [[gate.listeners]]".to_owned()),
            records: BTreeMap::new(),
        }
    }

    fn gate(&self) -> Option<EdgeGate<'_, eos_aws::gate::AwsGate>> {
        self.aws.as_ref().map(|aws| EdgeGate {
            backend: aws,
            listeners: &self.listeners,
            material: self.material.as_ref().map_err(String::as_str),
            records: &self.records,
            operator_cert: self.operator_cert.as_deref(),
            now: UnixTime::now(),
        })
    }
}

/// Move a space one stage forward (`opts`), snapshotting before every
/// change; a refusal is [`OpsError::Policy`] with the guards.
pub async fn enforce(
    store: &mut Store,
    backend: &Backend,
    edge: &Edge,
    opts: &EnforceOptions<'_>,
) -> Result<EnforceReport, OpsError> {
    Ok(
        eos_policy::enforce::enforce_with_gate(backend, backend, edge.gate().as_ref(), store, opts)
            .await?,
    )
}

/// Restore a snapshot (`opts`: the one before the space's latest enforce,
/// unless named).
pub async fn rollback(
    store: &mut Store,
    backend: &Backend,
    edge: &Edge,
    opts: &RollbackOptions<'_>,
) -> Result<RollbackReport, OpsError> {
    Ok(
        eos_policy::enforce::rollback_with_gate(
            backend,
            backend,
            edge.gate().as_ref(),
            store,
            opts,
        )
        .await?,
    )
}

/// One snapshot of a space's Web ACL.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    /// Its id (what rollback restores).
    pub id: i64,
    /// The run it belongs to.
    pub run: i64,
    /// When.
    pub at: String,
    /// Taken by enforce or rollback.
    pub kind: RunKind,
    /// The default action it holds.
    pub default_action: &'static str,
    /// eos-sec's rules it holds.
    pub rules: Vec<String>,
    /// The space's recorded stage at the time.
    pub stage: Stage,
}

/// The snapshots of `space` on `backend`'s Web ACL of `policy`, newest
/// first.
pub fn snapshots(
    store: &Store,
    backend: &Backend,
    policy: &Policy,
    space: &SpaceId,
) -> Result<Vec<SnapshotRow>, OpsError> {
    Ok(list_snapshots(
        store.conn(),
        &backend.acl_backend_id(),
        &policy.web_acl_name,
    )?
    .into_iter()
    .filter(|s| &s.space == space)
    .map(|s| SnapshotRow {
        id: s.id,
        run: s.run,
        at: s.at,
        kind: s.kind,
        default_action: s.owned.default_action.as_str(),
        rules: s.owned.rule_names(),
        stage: s.stages.get(space).copied().unwrap_or(Stage::Off),
    })
    .collect())
}
