//! Validate and sign every CSR in a directory with a local CA, in one
//! process: the in-process side of `cargo xtask bench-peers --only ca`.
//!
//! ```sh
//! cargo run --release --example sign_many -- CA_KEY CA_CERT CSR_DIR > certs.pem
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

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, cert, dir] = args.as_slice() else {
        return Err("usage: sign_many CA_KEY CA_CERT CSR_DIR".into());
    };
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
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, path) in paths.iter().enumerate() {
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
        out.write_all(certificate_pem(&ca.sign(&plan)?)?.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
