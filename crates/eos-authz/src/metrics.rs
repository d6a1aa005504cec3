//! Counters served on `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Answer, ChainLookup, Gate};

/// The decision point's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: AtomicU64,
    unauthorized: AtomicU64,
    forbidden: AtomicU64,
    would_refuse: AtomicU64,
    ignored_headers: AtomicU64,
    reloads: AtomicU64,
    reload_errors: AtomicU64,
    chains_cached: AtomicU64,
    chains_verified: AtomicU64,
    by_gate: [AtomicU64; 7],
}

const GATES: [Gate; 7] = [
    Gate::Ip,
    Gate::Cert,
    Gate::Both,
    Gate::Open,
    Gate::Staged,
    Gate::Count,
    Gate::None,
];

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Count one answer.
    pub fn record(&self, a: &Answer) {
        match a.status.as_u16() {
            200 => inc(&self.allowed),
            401 => inc(&self.unauthorized),
            _ => inc(&self.forbidden),
        }
        if a.would_refuse() {
            inc(&self.would_refuse);
        }
        if !a.ignored_headers.is_empty() {
            inc(&self.ignored_headers);
        }
        match a.chain {
            Some(ChainLookup::Hit) => inc(&self.chains_cached),
            Some(ChainLookup::Verified) => inc(&self.chains_verified),
            None => {}
        }
        if let Some(i) = GATES.iter().position(|g| *g == a.gate)
            && let Some(c) = self.by_gate.get(i)
        {
            inc(c);
        }
    }

    /// A (re)load succeeded.
    pub fn reloaded(&self) {
        inc(&self.reloads);
    }

    /// A reload failed.
    pub fn reload_failed(&self) {
        inc(&self.reload_errors);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP eos_authz_decisions_total Answers to subrequests, by HTTP status.\n# TYPE eos_authz_decisions_total counter"
        );
        for (status, c) in [
            ("200", &self.allowed),
            ("401", &self.unauthorized),
            ("403", &self.forbidden),
        ] {
            let _ = writeln!(
                s,
                "eos_authz_decisions_total{{status=\"{status}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            s,
            "# HELP eos_authz_gate_total Answers by the gate that admitted (none: refused).\n# TYPE eos_authz_gate_total counter"
        );
        for (g, c) in GATES.iter().zip(&self.by_gate) {
            let _ = writeln!(
                s,
                "eos_authz_gate_total{{gate=\"{}\"}} {}",
                g.as_str(),
                get(c)
            );
        }
        for (name, help, c) in [
            (
                "eos_authz_would_refuse_total",
                "Requests admitted at stage count that the gates would refuse.",
                &self.would_refuse,
            ),
            (
                "eos_authz_untrusted_headers_ignored_total",
                "Requests from an untrusted peer whose address or certificate headers were ignored.",
                &self.ignored_headers,
            ),
            (
                "eos_authz_chain_cache_hits_total",
                "Certificate chains answered from the cache of verified chains.",
                &self.chains_cached,
            ),
            (
                "eos_authz_chain_verifications_total",
                "Certificate chains verified (signatures and CRL) because the cache had no valid entry.",
                &self.chains_verified,
            ),
            (
                "eos_authz_reloads_total",
                "Successful loads of the policy, trust bundle, CRLs and sets.",
                &self.reloads,
            ),
            (
                "eos_authz_reload_errors_total",
                "Failed reloads (the previous state stays in force).",
                &self.reload_errors,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(c)
            );
        }
        s
    }
}
