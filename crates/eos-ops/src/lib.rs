//! eos-sec's operations: the work behind each command, for the CLI and for
//! any Rust service that imports eos-sec.
//!
//! The CLI (`eos-sec`) parses arguments, calls one function here and renders
//! the typed report it returns — the split cargo makes between
//! `src/bin/cargo/commands` (arguments) and `src/cargo/ops` (work). The
//! domain crates decide; this crate wires them to the state store and a
//! backend:
//!
//! - [`Backend`]: the local store or AWS WAFv2, chosen at run time, with
//!   `Send` futures.
//! - [`plan`]: plan from the store against a backend, and apply a plan
//!   with its record — entries are recorded as eos-sec's before they are
//!   written ([`plan::write_recorded`], the one place that does it).
//! - [`bootstrap`]: scan results and rules → staged sets, all or nothing.
//! - [`enforce`]: enforce and roll back a space on a backend, with the
//!   certificate gate at the edge.
//! - [`sync`]: the sync watcher on a backend chosen at run time, as one
//!   `Send` future.
//! - [`ca`]: the CA's lifecycle — install, sign, revoke with its CRL and
//!   audit, CRLs, accounts — and its inventory as typed records.
//! - [`issuance`]: the one certificate issuance flow (validate, plan,
//!   sign, check, record, audit), for `ca sign` and the registration
//!   service.
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use eos_ops::{Backend, plan};
//! let mut store = eos_store::Store::open(dir)?;
//! let backend = Backend::local(dir)?;
//! let opts = eos_plan::PlanOptions::default().check()?;
//! let (plan, delivers) = plan::replan(&mut store, &backend, &[], &opts, false).await?;
//! let report = plan::apply_and_record(&mut store, &backend, &plan, &delivers, "svc:me").await?;
//! println!("{} set(s) written", report.applied.len());
//! # Ok(()) }
//! ```

mod backend;
pub mod bootstrap;
pub mod ca;
pub mod enforce;
mod error;
pub mod file;
pub mod issuance;
pub mod plan;
pub mod sync;

pub use backend::Backend;
pub use error::{ErrorKind, OpsError};
pub use file::{WriteError, write_atomic};
