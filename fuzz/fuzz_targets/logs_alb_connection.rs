//! The ALB connection log parser on arbitrary bytes (plain or gzip, any
//! line breaks), through the public reader: must never panic, and every
//! line is either a connection or a counted bad line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eos_sec_fuzz::connections_never_panic(data);
});
