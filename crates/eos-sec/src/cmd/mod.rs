//! One module per command group: parse arguments into library options, make
//! one library call, format the result.

pub mod authz;
pub mod aws;
pub mod bootstrap;
pub mod ca;
pub mod cert;
pub mod cli;
pub mod code;
pub mod drill;
pub mod enforce;
pub mod gate;
pub mod ipset;
pub mod logs;
pub mod plan;
pub mod policy;
pub mod rules;
pub mod scan;
pub mod serve;
pub mod store;
pub mod sync;

/// Who is acting, for the audit log and a code's `issued_by`: the OS user
/// (`USER`, then `LOGNAME`) as `cli:<user>`, `cli:unknown` without one.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty() && !u.chars().any(char::is_control));
    eos_store::Actor::Cli(user.as_deref().unwrap_or("unknown")).to_string()
}
