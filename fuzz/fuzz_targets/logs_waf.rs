//! The waf log parser on arbitrary bytes (plain or gzip, any line breaks),
//! through the public scan with trusted proxies so X-Forwarded-For is
//! walked: must never panic, and every line is either a record or a
//! counted bad line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eos_sec_fuzz::scan_never_panics(eos_logs::Format::Waf, data);
});
