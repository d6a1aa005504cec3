//! Sync's wiring: the watcher on a store and a backend chosen at run time,
//! as one `Send` future a caller can spawn on any runtime (the CLI's
//! `sync --watch` runs it on its own, `serve` beside the service), and what
//! it logs after each pass. The loop itself is `eos_sync`'s.

use std::future::Future;

use eos_store::Store;
use eos_sync::{PassReport, SyncOptions};

use crate::Backend;

/// Sync options for `backend`: the planning options, and the least time
/// between two writes the backend allows unless `write_interval` says
/// otherwise.
pub fn options(
    plan: eos_plan::CheckedOptions,
    backend: &Backend,
    write_interval: Option<std::time::Duration>,
) -> SyncOptions {
    let mut opts = SyncOptions::new(plan);
    opts.write_interval = write_interval.unwrap_or_else(|| backend.write_interval());
    opts
}

/// Run the watcher until `stop` resolves, logging each pass's warnings.
/// The future is `Send`: it holds the store and the backend, whose calls
/// are boxed `Send` futures, so no thread of its own is needed.
///
/// # Errors
/// The state store failed in a way a pass cannot retry.
pub async fn watch(
    mut store: Store,
    backend: Backend,
    opts: SyncOptions,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), eos_sync::SyncError> {
    tracing::info!(backend = %eos_plan::IpSetBackend::id(&backend), "sync watching for rule changes");
    eos_sync::watch(&mut store, &backend, &opts, stop, log_pass).await
}

/// What a watcher logs after each pass (the passes themselves log each
/// write).
pub fn log_pass(r: &PassReport) {
    for w in &r.warnings {
        tracing::warn!(finding = %w, "sync");
    }
    for s in &r.removed_but_seen {
        tracing::warn!(space = %s.space, cidr = %s.cidr, addresses = ?s.addresses,
            "rule removed while its addresses still appear in recent evidence");
    }
}
