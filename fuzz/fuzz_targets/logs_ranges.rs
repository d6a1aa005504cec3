//! The usage, ALB and WAF parsers on arbitrary files read in small ranges
//! by two parser threads: the same report as the same bytes read front to
//! back (observations, every count, bad lines and their line numbers).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eos_sec_fuzz::ranges_read_like_a_stream(data);
});
