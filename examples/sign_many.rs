//! Validate and sign every CSR in a directory with a local CA, in one
//! process: the in-process side of `cargo xtask bench-peers --only ca`.
//! `--threads N` signs on N threads (default: every core); the
//! certificates come out in CSR order either way.
//!
//! ```sh
//! cargo run --release --example sign_many -- [--threads N] CA_KEY CA_CERT CSR_DIR > certs.pem
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use eos_ca::{
    Account, CsrLimits, IssuancePolicy, IssueRequest, LocalCa, Profile, certificate_pem,
    plan_certificate, validate_csr,
};
use eos_identity::{SpaceId, UserId};

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sign_many: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut threads = 0; // rayon: every core
    if args.first().is_some_and(|a| a == "--threads") {
        threads = args.get(1).ok_or("--threads needs a number")?.parse()?;
        args.drain(..2);
    }
    let [key, cert, dir] = args.as_slice() else {
        return Err("usage: sign_many [--threads N] CA_KEY CA_CERT CSR_DIR".into());
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let ca = LocalCa::from_pem(
        &std::fs::read_to_string(key)?,
        &std::fs::read_to_string(cert)?,
        None,
    )?;
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let policy = IssuancePolicy::default();
    let limits = CsrLimits::default();
    let now = SystemTime::now();
    let sign_one = |i: usize,
                    path: &std::path::PathBuf|
     -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let account = Account {
            space: SpaceId::new("bench")?,
            user: UserId::new(&format!("user{i}"))?,
        };
        let csr = validate_csr(&std::fs::read(path)?, &limits)?;
        let req = IssueRequest {
            csr: &csr,
            account: &account,
            profile: Profile::Service,
            lifetime: Some(Duration::from_secs(86400)),
        };
        let plan = plan_certificate(ca.info(), &req, &policy, None, now)?;
        Ok(certificate_pem(&ca.sign(&plan)?)?)
    };
    let pems: Vec<String> = pool.install(|| {
        use rayon::prelude::*;
        paths
            .par_iter()
            .enumerate()
            .map(|(i, p)| sign_one(i, p))
            .collect::<Result<_, _>>()
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for pem in pems {
        out.write_all(pem.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
