//! Each format against the examples in its AWS documentation page (kept
//! verbatim in tests/data/aws/, one entry per line), and the usage log
//! against the example in examples/data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::PathBuf;

use eos_logs::{
    BadReason, Format, Input, LogRecord, ScanOptions, SpaceRule, TrustedProxies, WafAction,
    for_each_record, scan,
};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// An owned copy of a record.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    time: String,
    space: String,
    client: IpAddr,
    peer: IpAddr,
    user: Option<String>,
    method: String,
    path: String,
    host: Option<String>,
    status: Option<u16>,
    waf: Option<WafAction>,
}

fn own(r: &LogRecord<'_>) -> Rec {
    Rec {
        time: r
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        space: r.space.to_string(),
        client: r.client_ip,
        peer: r.peer_ip,
        user: r.user.map(str::to_owned),
        method: r.method.to_owned(),
        path: r.path.to_owned(),
        host: r.host.map(str::to_owned),
        status: r.status,
        waf: r.waf_action,
    }
}

fn records(input: Input, opts: &ScanOptions) -> (Vec<Rec>, eos_logs::ScanStats) {
    let mut out = Vec::new();
    let stats = for_each_record(vec![input], opts, None, |r| out.push(own(r))).unwrap();
    (out, stats)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn alb_doc_examples() {
    let opts = ScanOptions::new(Format::Alb);
    let (recs, stats) = records(Input::path(data("aws/alb-doc-examples.log")), &opts);
    assert_eq!(stats.lines, 7);
    // The HTTP/2 and WebSocket examples address the balancer by IP: no
    // space label, counted as such.
    assert_eq!(stats.bad.by_reason.get(&BadReason::NoSpace), Some(&3));
    assert_eq!(recs.len(), 4);
    let first = &recs[0];
    assert_eq!(first.time, "2018-07-02T22:23:00.186641Z");
    assert_eq!(first.client, ip("192.168.131.39"));
    assert_eq!(first.space, "www");
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, "/");
    assert_eq!(first.host.as_deref(), Some("www.example.com:80"));
    assert_eq!(first.status, Some(200));
    // The failed Lambda request: ELB status 502, target status `-`.
    assert_eq!(recs[3].status, Some(502));
    assert_eq!(recs[3].time, "2018-11-30T22:23:00.186641Z");
}

#[test]
fn alb_doc_examples_with_path_space_rule_and_report() {
    let mut opts = ScanOptions::new(Format::Alb);
    opts.space_rule = SpaceRule::PathPrefix {
        prefix: "/".to_owned(),
    };
    let err = scan(
        vec![Input::path(data("aws/alb-doc-examples.log"))],
        &opts,
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().ends_with("check [logs.space_rule]"),
        "{err}"
    );
    opts.allow_unusable = true;
    let report = scan(
        vec![Input::path(data("aws/alb-doc-examples.log"))],
        &opts,
        None,
    )
    .unwrap();
    // Every example requests `/`: no space segment.
    assert_eq!(
        report.stats.bad.by_reason.get(&BadReason::NoSpace),
        Some(&7)
    );
    assert_eq!(report.stats.bad.examples.len(), 5);
    let first = &report.stats.bad.examples[0];
    assert!(first.source.ends_with("alb-doc-examples.log"));
    assert_eq!(first.line, 1);
}

#[test]
fn cloudfront_doc_example() {
    let opts = ScanOptions::new(Format::Cloudfront);
    let (recs, stats) = records(Input::path(data("aws/cloudfront-doc-example.log")), &opts);
    assert_eq!(stats.lines, 6, "the two header lines are not data");
    assert_eq!(stats.bad.total(), 0, "{:?}", stats.bad);
    assert_eq!(recs.len(), 6);
    let r = &recs[0];
    assert_eq!(r.time, "2019-12-04T21:02:31Z");
    assert_eq!(r.client, ip("192.0.2.100"));
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/index.html");
    assert_eq!(r.status, Some(200));
    // x-host-header (the viewer's Host) decides the space.
    assert_eq!(r.space, "d111111abcdef8");
    let err = &recs[3];
    assert_eq!(err.space, "www");
    assert_eq!(err.status, Some(502));
    assert_eq!(err.path, "/favicon.ico");
}

#[test]
fn waf_doc_examples() {
    let opts = ScanOptions::new(Format::Waf);
    let (recs, stats) = records(Input::path(data("aws/waf-doc-examples.jsonl")), &opts);
    assert_eq!(stats.bad.total(), 0, "{:?}", stats.bad);
    assert_eq!(recs.len(), 3);
    let r = &recs[0];
    assert_eq!(r.time, "2023-05-06T06:46:19.981Z");
    assert_eq!(r.client, ip("52.46.82.45"));
    assert_eq!(r.space, "rjvegx5guh");
    assert_eq!(r.waf, Some(WafAction::Block));
    assert_eq!(r.path, "/CanaryTest");
    assert_eq!(r.status, None);
    assert_eq!(recs[1].space, "localhost");
    assert_eq!(recs[2].waf, Some(WafAction::Allow));
    // Blocked requests are not evidence; the ALLOW one is.
    let report = scan(
        vec![Input::path(data("aws/waf-doc-examples.jsonl"))],
        &opts,
        None,
    )
    .unwrap();
    let obs: Vec<_> = report
        .observations
        .iter()
        .map(|o| (o.space.to_string(), o.ip, o.requests, o.status.waf_blocked))
        .collect();
    assert_eq!(obs, vec![("localhost".to_owned(), ip("1.1.1.1"), 1, 1)]);
    assert_eq!(report.pairs_without_evidence, 1);
}

#[test]
fn waf_forwarded_for_with_trusted_proxy() {
    let line = r#"{"timestamp":1683355579981,"action":"ALLOW","httpRequest":{"clientIp":"130.176.1.1","headers":[{"name":"host","value":"acme.entityos.cloud"},{"name":"X-Forwarded-For","value":"198.51.100.7, 130.176.9.9"}],"uri":"/rpc","httpMethod":"POST"}}"#;
    let mut opts = ScanOptions::new(Format::Waf);
    opts.trusted_proxies = TrustedProxies::parse(&["130.176.0.0/16"]).unwrap();
    let (recs, _) = records(Input::bytes("mem", line.as_bytes().to_vec()), &opts);
    assert_eq!(recs[0].client, ip("198.51.100.7"));
    assert_eq!(recs[0].peer, ip("130.176.1.1"));
    assert_eq!(recs[0].space, "acme");
}

#[test]
fn usage_example_file() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/usage.jsonl");
    let mut opts = ScanOptions::new(Format::Usage);
    opts.trusted_proxies = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
    let report = scan(vec![Input::path(path)], &opts, None).unwrap();
    assert!(report.stats.bad.total() >= 2, "{:?}", report.stats.bad);
    let spaces: std::collections::BTreeSet<_> = report
        .observations
        .iter()
        .map(|o| o.space.to_string())
        .collect();
    assert!(
        spaces.contains("acme") && spaces.contains("globex"),
        "{spaces:?}"
    );
    // No observation is a load balancer address: the proxy rule applied.
    assert!(
        report
            .observations
            .iter()
            .all(|o| !o.ip.to_string().starts_with("10."))
    );
}

/// One CloudFront line in the documented 33-field layout with the given
/// `c-ip`, `x-host-header` and `x-forwarded-for`.
fn cloudfront_line(c_ip: &str, host: &str, xff: &str) -> String {
    format!(
        "2026-11-02\t08:01:37\tDUB56-P1\t812\t{c_ip}\tPOST\td111111abcdef8.cloudfront.net\t/rpc/x\t200\t-\teos-agent/2.4\t-\t-\tMiss\treq0000EXAMPLE==\t{host}\thttps\t311\t0.042\t{xff}\tTLSv1.3\tTLS_AES_128_GCM_SHA256\tMiss\tHTTP/2.0\t-\t-\t50321\t0.042\tMiss\tapplication/json\t512\t-\t-\n"
    )
}

#[test]
fn cloudfront_forwarded_for_is_decoded_per_the_aws_encoding_table() {
    // "Standard log file fields": spaces, `[`, `]` (and the rest of the
    // table) are URL-encoded; commas are not.
    let lines = [
        cloudfront_line(
            "130.176.1.1",
            "acme.entityos.cloud",
            "%5B2001:db8::7%5D:443",
        ),
        cloudfront_line(
            "130.176.1.1",
            "acme.entityos.cloud",
            "198.51.100.7,%20130.176.9.9",
        ),
        // A `%` that was in the header itself is logged as %25: one entry
        // `203.0.113.9%2C6.6.6.6` is not two, and is unreadable.
        cloudfront_line(
            "130.176.1.1",
            "acme.entityos.cloud",
            "203.0.113.9%252C6.6.6.6",
        ),
        // An IP-literal Host is encoded too and names no space.
        cloudfront_line("130.176.1.1", "%5B2001:db8::1%5D:443", "-"),
    ];
    let mut opts = ScanOptions::new(Format::Cloudfront);
    opts.trusted_proxies = TrustedProxies::parse(&["130.176.0.0/16"]).unwrap();
    let report = scan(
        vec![Input::bytes("cf", lines.concat().into_bytes())],
        &opts,
        None,
    )
    .unwrap();
    let by = &report.stats.bad.by_reason;
    assert_eq!(by.get(&BadReason::BadForwardedFor), Some(&1), "{by:?}");
    assert_eq!(by.get(&BadReason::NoSpace), Some(&1), "{by:?}");
    assert_eq!(report.stats.bad.total(), 2, "{by:?}");
    let clients: Vec<String> = report
        .observations
        .iter()
        .map(|o| o.ip.to_string())
        .collect();
    assert_eq!(clients, ["198.51.100.7", "2001:db8::7"]);
}

#[test]
fn upper_case_hosts_name_their_space_in_lower_case() {
    // Host names are case-insensitive (RFC 4343): `WWW.Example.com` is the
    // space `www`, in every format that reads a Host.
    let alb = "http 2018-07-02T22:23:00.186641Z app/x/1 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \"GET http://WWW.Example.com:80/ HTTP/1.1\" \"curl/7.46.0\" - -\n";
    let (recs, stats) = records(
        Input::bytes("alb", alb.as_bytes().to_vec()),
        &ScanOptions::new(Format::Alb),
    );
    assert_eq!(stats.bad.total(), 0, "{:?}", stats.bad);
    assert_eq!(recs[0].space, "www");
    assert_eq!(recs[0].host.as_deref(), Some("WWW.Example.com:80"));

    let waf = r#"{"timestamp":1683355579981,"action":"ALLOW","httpRequest":{"clientIp":"198.51.100.7","headers":[{"name":"Host","value":"B34MYVFW0B.gamma.execute-api.us-east-1.amazonaws.com"}],"uri":"/","httpMethod":"GET"}}"#;
    let (recs, stats) = records(
        Input::bytes("waf", waf.as_bytes().to_vec()),
        &ScanOptions::new(Format::Waf),
    );
    assert_eq!(stats.bad.total(), 0, "{:?}", stats.bad);
    assert_eq!(recs[0].space, "b34myvfw0b");

    let mut opts = ScanOptions::new(Format::Cloudfront);
    opts.space_rule = SpaceRule::HostLabel {
        suffix: Some(".entityos.cloud".to_owned()),
    };
    let cf = cloudfront_line("203.0.113.9", "ACME.EntityOS.Cloud", "-");
    let (recs, stats) = records(Input::bytes("cf", cf.into_bytes()), &opts);
    assert_eq!(stats.bad.total(), 0, "{:?}", stats.bad);
    assert_eq!(recs[0].space, "acme");

    // A space named by the usage log's own field is an id, not a host:
    // its case is not changed.
    let usage =
        r#"{"timestamp":1,"space":"ACME","user":"u","status":200,"source_ip":"203.0.113.9"}"#;
    let mut opts = ScanOptions::new(Format::Usage);
    opts.allow_unusable = true;
    let (_, stats) = records(Input::bytes("usage", usage.as_bytes().to_vec()), &opts);
    assert_eq!(stats.bad.by_reason.get(&BadReason::InvalidSpace), Some(&1));
}

#[test]
fn truncated_alb_lines_are_bad_lines_not_requests_to_made_up_spaces() {
    let head = "https 2026-11-02T08:01:37.001000Z app/x/1 198.51.100.7:50123 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 ";
    let lines = [
        // Whole: the one request that counts.
        format!("{head}\"POST https://acme.entityos.cloud:443/rpc/x HTTP/1.1\" \"curl/8\" - -"),
        // Cut inside the request line: once read as the spaces `https`
        // and `http`.
        format!("{head}\"POST https:"),
        format!("{head}\"POST http"),
        format!("{head}\"GET https://acme.entityos.cloud:443/rpc/"),
        // Closed, but not a request line (no `scheme://host`).
        format!("{head}\"POST http HTTP/1.1\" \"curl/8\" - -"),
        format!("{head}\"GET https:///rpc/x HTTP/1.1\" \"curl/8\" - -"),
        format!("{head}\"GET https://acme.entityos.cloud:443/rpc/x\" \"curl/8\" - -"),
    ];
    let report = scan(
        vec![Input::bytes("alb", (lines.join("\n") + "\n").into_bytes())],
        &ScanOptions::new(Format::Alb),
        None,
    )
    .unwrap();
    let by = &report.stats.bad.by_reason;
    assert_eq!(by.get(&BadReason::UnclosedQuote), Some(&3), "{by:?}");
    assert_eq!(by.get(&BadReason::BadRequestLine), Some(&3), "{by:?}");
    assert_eq!(report.stats.bad.total(), 6, "{by:?}");
    let pairs: Vec<(String, u64)> = report
        .observations
        .iter()
        .map(|o| (o.space.to_string(), o.requests))
        .collect();
    assert_eq!(pairs, [("acme".to_owned(), 1)]);
    assert_eq!(
        report.stats.bad.examples[0].to_string(),
        "alb:2: unclosed_quote: field 13 (request) opens a quote that is not closed: `POST https:`"
    );
}

#[test]
fn waf_headers_without_a_value_or_null_keep_the_rest_of_the_line() {
    let lines = [
        r#"{"timestamp":1683355579981,"action":"ALLOW","httpRequest":{"clientIp":"198.51.100.7","headers":[{"name":"Referer"},{"name":"Host","value":"acme.entityos.cloud"}],"uri":"/","httpMethod":"GET"}}"#,
        r#"{"timestamp":1683355579982,"action":"ALLOW","httpRequest":{"clientIp":"198.51.100.8","headers":null,"uri":"/","httpMethod":"GET"}}"#,
        r#"{"timestamp":1683355579983,"action":"ALLOW","httpRequest":{"clientIp":"198.51.100.9","headers":[{"value":"x"},{"name":"host","value":null},{"name":"Host","value":"globex.entityos.cloud"}]}}"#,
    ];
    let (recs, stats) = records(
        Input::bytes("waf", lines.join("\n").into_bytes()),
        &ScanOptions::new(Format::Waf),
    );
    // The second has no Host: no space, but it was read, not invalid_json.
    assert_eq!(
        stats.bad.by_reason.iter().collect::<Vec<_>>(),
        [(&BadReason::NoSpace, &1)]
    );
    let got: Vec<(String, IpAddr)> = recs.iter().map(|r| (r.space.clone(), r.client)).collect();
    assert_eq!(
        got,
        [
            ("acme".to_owned(), ip("198.51.100.7")),
            ("globex".to_owned(), ip("198.51.100.9"))
        ]
    );
}

#[test]
fn cloudfront_lines_without_the_later_columns_are_read() {
    // The 19 fields of the older standard log (up to time-taken), as AWS's
    // WAF security automations test data has them: no x-forwarded-for.
    let full = cloudfront_line("203.0.113.9", "acme.entityos.cloud", "-");
    let short: Vec<&str> = full.trim_end().split('\t').take(19).collect();
    let mut data = short.join("\t") + "\n";
    // Cut inside x-host-header, a column that is read: a bad line, never
    // the space `acme` read as `ac`, nor cs(Host) instead.
    let cut: Vec<&str> = full.trim_end().split('\t').take(16).collect();
    data.push_str(&cut.join("\t").replace("acme.entityos.cloud", "ac"));
    data.push('\n');
    let (recs, stats) = records(
        Input::bytes("cf", data.into_bytes()),
        &ScanOptions::new(Format::Cloudfront),
    );
    assert_eq!(
        stats.bad.by_reason.iter().collect::<Vec<_>>(),
        [(&BadReason::FieldCount, &1)]
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].space, "acme");
    assert_eq!(recs[0].client, ip("203.0.113.9"));
}

#[test]
fn a_scan_with_no_usable_line_says_what_to_check() {
    // A usage log whose time field has another name.
    let line = r#"{"ts":"2026-11-02T08:03:14Z","space":"acme","user":"u","status":200,"source_ip":"203.0.113.9"}"#;
    let input = || Input::bytes("usage.jsonl", format!("{line}\n{line}\n").into_bytes());
    let mut opts = ScanOptions::new(Format::Usage);
    let err = scan(vec![input()], &opts, None).unwrap_err();
    assert!(err.is_bad_input());
    assert_eq!(
        err.to_string(),
        "none of the 2 lines could be used (most were missing_field; the first: usage.jsonl:1: missing_field: field `time` (path `timestamp`) is absent): check --format (usage) and the [logs.fields] keys (time `timestamp`, source_ip `source_ip`, status `status`, space `space`)"
    );
    // The wrong format.
    let err = scan(vec![input()], &ScanOptions::new(Format::Alb), None).unwrap_err();
    assert!(err.to_string().ends_with("check --format (alb)"), "{err}");
    // Told otherwise: a report of bad lines.
    opts.allow_unusable = true;
    let report = scan(vec![input()], &opts, None).unwrap();
    assert_eq!(report.stats.bad.total(), 2);
    // No lines at all is not an unusable scan.
    let empty = scan(
        vec![Input::bytes("e", Vec::new())],
        &ScanOptions::new(Format::Usage),
        None,
    );
    assert_eq!(empty.unwrap().stats.lines, 0);
}

/// ALB connection logs: the AWS documentation's two examples, read from a
/// gzip file like any other input, with a hostile line counted by reason.
#[test]
fn alb_connection_doc_examples() {
    use std::io::Write;
    let text = std::fs::read(data("aws/alb-connection-doc-examples.log")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).unwrap();
    gz.write_all(b"\n2023-10-04T17:05:16Z 203.0.113.1 1 443 - - - \"CN=x\" - ZZ Success\r\n")
        .unwrap();
    let gz = gz.finish().unwrap();
    let opts = ScanOptions::default();
    let mut seen = Vec::new();
    let stats = eos_logs::for_each_connection(vec![Input::bytes("conn.gz", gz)], &opts, |c| {
        seen.push((
            c.client_ip,
            c.listener_port,
            c.serial.map(str::to_owned),
            c.verify.to_string(),
            c.trace_id.map(str::to_owned),
        ));
    })
    .unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, ip("203.0.113.1"));
    assert_eq!(seen[0].2.as_deref(), Some("FEF257372D5C14D4"));
    assert_eq!(seen[0].3, "Success");
    assert_eq!(seen[1].3, "Failed:ClientCertUntrusted");
    assert_eq!(
        seen[1].4.as_deref(),
        Some("TID_1c71a68d70587445ad5127ff8b2687d7")
    );
    assert_eq!((stats.lines, stats.records), (3, 2));
    assert_eq!(stats.bad.by_reason.get(&BadReason::MissingField), Some(&1));
    assert_eq!(
        stats.bad.examples[0].to_string(),
        "conn.gz:4: missing_field: serial is not hex `ZZ`"
    );

    // --strict stops at that line; a window leaves both out.
    let mut strict = ScanOptions::default();
    strict.strict = true;
    let input = || Input::bytes("conn", b"2023-10-04T17:05:16Z 203.0.113.1 1 443\n".to_vec());
    let err = eos_logs::for_each_connection(vec![input()], &strict, |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "conn:1: field_count: 4 fields, at least 11 expected (--strict)"
    );
    let err =
        eos_logs::for_each_connection(vec![input()], &ScanOptions::default(), |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("none of the 1 lines could be used"),
        "{err}"
    );
    let mut late = ScanOptions::default();
    late.since = Some(time::OffsetDateTime::from_unix_timestamp(1_704_067_200).unwrap());
    let stats = eos_logs::for_each_connection(
        vec![Input::path(data("aws/alb-connection-doc-examples.log"))],
        &late,
        |_| panic!("outside the window"),
    )
    .unwrap();
    assert_eq!((stats.records, stats.outside_window), (2, 2));
}

/// The access log's `conn_trace_id` (field 30) links a request to its
/// connection's entry in the connection log.
#[test]
fn alb_access_log_trace_id() {
    let opts = ScanOptions::new(Format::Alb);
    let mut ids = Vec::new();
    for_each_record(
        vec![Input::path(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/alb.log"),
        )],
        &opts,
        None,
        |r| ids.push(r.conn_trace_id.map(str::to_owned)),
    )
    .unwrap();
    assert_eq!(
        ids.first().cloned().flatten().as_deref(),
        Some("TID_00000000")
    );
    assert!(ids.iter().all(Option::is_some));
    // A line cut short in the user agent keeps its request, not a trace id.
    let cut = "https 2026-11-02T08:01:37.001000Z app/x/1 198.51.100.7:50123 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \"GET https://acme.example:443/ HTTP/1.1\" \"agent";
    let mut got = Vec::new();
    for_each_record(
        vec![Input::bytes("cut", cut.as_bytes().to_vec())],
        &opts,
        None,
        |r| {
            got.push((
                r.host.map(str::to_owned),
                r.conn_trace_id.map(str::to_owned),
            ));
        },
    )
    .unwrap();
    assert_eq!(got, [(Some("acme.example:443".to_owned()), None)]);
}
