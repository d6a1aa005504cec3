//! What every log-parser target checks.

use eos_logs::{Format, Input, ScanOptions, TrustedProxies};

/// Scan `data` as `format` on one parser thread: no panic, counts that add
/// up, every observation inside what was read.
pub fn scan_never_panics(format: Format, data: &[u8]) {
    let mut opts = ScanOptions::new(format);
    opts.threads = 1;
    opts.max_line_bytes = 4096;
    if let Ok(t) = TrustedProxies::parse(&["10.0.0.0/8", "2001:db8::/32"]) {
        opts.trusted_proxies = t;
    }
    let report = match eos_logs::scan(vec![Input::bytes("fuzz", data.to_vec())], &opts, None) {
        Ok(r) => r,
        Err(e) => panic!("a scan of bytes fails only on bad options: {e}"),
    };
    let s = &report.stats;
    assert!(s.records + s.bad.total() <= s.lines + 1, "{s:?}");
    assert!(s.evidence <= s.records);
    let requests: u64 = report.observations.iter().map(|o| o.requests).sum();
    assert!(requests <= s.evidence);
    for o in &report.observations {
        assert!(o.first_seen <= o.last_seen);
        assert!(o.distinct_days >= 1);
    }
}
