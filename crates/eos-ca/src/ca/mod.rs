//! Planning, signing and checking certificates; the local CA; CRLs.
//!
//! The certificate's contents come from the account record and the profile,
//! never from the CSR: [`plan_certificate`] writes down exactly what will be
//! signed, [`check_tbs`] holds the to-be-signed certificate (local key) or
//! the returned one (AWS Private CA) to that plan, field by field.

mod account;
mod check;
mod env;
mod error;
mod info;
mod local;
mod passphrase;
mod pem;
mod plan;
mod revocation;
mod serial;
mod signer;

pub use account::*;
pub use check::*;
pub use env::*;
pub use error::*;
pub use info::*;
pub use local::*;
pub use passphrase::*;
pub use pem::*;
pub use plan::*;
pub use revocation::*;
pub use serial::*;
pub use signer::*;
