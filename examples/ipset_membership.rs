//! How a Rust service uses `eos-ipset`: load an allowlist once, then answer
//! "is this caller allowed?" per request.
//!
//! ```sh
//! cargo run --example ipset_membership -- examples/data/allowlist.txt 198.51.100.11 8.8.8.8
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::IpAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: ipset_membership ALLOWLIST ADDRESS...");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let (set, stats) = match eos_ipset::parse_list(&text, &path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{path}: {} entries -> {} CIDRs ({} IPv4 addresses)",
        stats.entries,
        set.cidr_count(),
        set.v4_len()
    );
    for a in args {
        match a.parse::<IpAddr>() {
            Ok(ip) => println!(
                "{ip}: {}",
                if set.contains(ip) {
                    "allowed"
                } else {
                    "not in set"
                }
            ),
            Err(e) => eprintln!("{a}: {e}"),
        }
    }
    ExitCode::SUCCESS
}
