//! A Rust service validating a CSR with eos-ca, the way the registration
//! service does before anything reaches the CA.
//!
//! ```sh
//! cargo run --example validate_csr -- examples/data/csr/p256.csr
//! cargo run --example validate_csr -- examples/data/csr/sha1.csr   # refused: csr-weak-hash
//! ```
//!
//! Exit status: 0 accepted, 2 refused (the stable code on stderr), 1 unreadable.

use std::process::ExitCode;

use eos_ca::{CsrLimits, validate_csr};

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: validate_csr FILE");
        return ExitCode::from(2);
    };
    let limits = CsrLimits::default();
    // Never read more than the cap (plus one byte to notice "too large").
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(1);
        }
    };
    match validate_csr(&bytes, &limits) {
        Ok(csr) => {
            println!("accepted: {} key {}", csr.key_kind(), csr.fingerprint());
            for ignored in csr.ignored() {
                println!("  ignored (identity comes from the account record): {ignored:?}");
            }
            if csr.requested_ca() {
                println!("  note: the CSR asked for CA powers; log this");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: refused [{}]: {e}", e.code());
            ExitCode::from(2)
        }
    }
}
