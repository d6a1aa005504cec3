//! CSR parsing and validation on arbitrary bytes: must never panic, and
//! anything accepted must carry a key eos-ca accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = eos_ca::CsrLimits::default();
    if let Ok(csr) = eos_ca::validate_csr(data, &limits) {
        assert!(!csr.der().is_empty());
        let _ = csr.fingerprint().to_string();
    }
});
