//! What every log-parser target checks.

use eos_logs::{Format, Input, ScanOptions, TrustedProxies};

fn options(format: Format) -> ScanOptions {
    let mut opts = ScanOptions::new(format);
    opts.threads = 1;
    opts.max_line_bytes = 4096;
    // Arbitrary bytes are often nothing but bad lines: a report, not an
    // error, here.
    opts.allow_unusable = true;
    if let Ok(t) = TrustedProxies::parse(&["10.0.0.0/8", "2001:db8::/32"]) {
        opts.trusted_proxies = t;
    }
    opts
}

/// Scan `data` as `format` on one parser thread: no panic, counts that add
/// up, every observation inside what was read.
pub fn scan_never_panics(format: Format, data: &[u8]) {
    let opts = options(format);
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

/// Read `data` as ALB connection logs: no panic, counts that add up,
/// every connection's certificate fields taken from the line.
pub fn connections_never_panic(data: &[u8]) {
    let opts = options(Format::Alb);
    let mut seen = 0u64;
    let stats = match eos_logs::for_each_connection(
        vec![Input::bytes("fuzz", data.to_vec())],
        &opts,
        |c| {
            seen += 1;
            assert!(c.serial.is_none_or(|s| !s.is_empty() && s != "-"));
        },
    ) {
        Ok(s) => s,
        Err(e) => panic!("a read of bytes fails only on bad options: {e}"),
    };
    assert_eq!(seen, stats.evidence);
    assert!(stats.records + stats.bad.total() <= stats.lines + 1, "{stats:?}");
}

/// A regular file is read by the parser threads in ranges, other inputs
/// front to back by one reader: both must give the same report. The first
/// two bytes pick the format and the range size (1–64 bytes, so lines cross
/// range boundaries), the rest is the file. CloudFront is left out: its
/// `#Fields:` headers need a front-to-back read, so it is never read in
/// ranges.
pub fn ranges_read_like_a_stream(data: &[u8]) {
    let [pick, size, body @ ..] = data else {
        return;
    };
    let format = match pick % 3 {
        0 => Format::Usage,
        1 => Format::Alb,
        _ => Format::Waf,
    };
    let mut opts = options(format);
    opts.max_bad_examples = 1000;
    let path = std::env::temp_dir().join(format!("eos-sec-fuzz-ranges-{}.log", std::process::id()));
    if let Err(e) = std::fs::write(&path, body) {
        panic!("writing {}: {e}", path.display());
    }
    let name = path.display().to_string();
    let scan = |input: Input, opts: &ScanOptions| match eos_logs::scan(vec![input], opts, None) {
        Ok(r) => r,
        Err(e) => panic!("a scan fails only on bad options or an unreadable file: {e}"),
    };
    let stream = scan(Input::bytes(name, body.to_vec()), &opts);
    opts.set_range_bytes(u64::from(size % 64) + 1);
    opts.threads = 2;
    let ranged = scan(Input::path(&path), &opts);
    let _ = std::fs::remove_file(&path);
    assert_eq!(ranged.observations, stream.observations);
    assert_eq!(ranged.stats, stream.stats);
}
