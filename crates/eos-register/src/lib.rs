//! The open zone: eos-sec's registration service and its page.
//!
//! A user agent brings a security code and
//! - `POST /v1/ip` registers **the address the request comes from** (the
//!   trusted-proxy rule of log extraction; a client-supplied address is
//!   accepted only when it equals it) as a Network Access Rule, queued in
//!   the outbox for sync;
//! - `POST /v1/cert` gets a CSR signed by the entityOS CA under the
//!   configured profile, identity from the code's binding, never the CSR;
//! - `POST /v1/renew` renews the client certificate presented in the TLS
//!   handshake (or forwarded by a trusted passthrough proxy), no code
//!   needed ([`renewal`]);
//! - `POST /v1/recover` (an administrator's recovery code) replaces the
//!   admin's previous recovery address with the current one and calls the
//!   notification hook.
//! - EST (RFC 7030, `est`): `GET /.well-known/est/cacerts` and
//!   `POST /.well-known/est/simpleenroll`, a [`Registration::Cert`] with the
//!   code as the HTTP Basic password, and `POST
//!   /.well-known/est/simplereenroll`, a renewal as `/v1/renew`.
//!
//! Each request is a [`Registration`]; [`Registrar::execute`] checks its
//! code for the variant's purpose before anything else — the CSR is not
//! parsed before — and does the work inside the same store transaction that
//! spends the code, writes the rule or certificate, the registration row and
//! the audit entry. Every code problem is one answer (`code-rejected`);
//! refusals carry a stable `error` code. `GET /` serves the page (assets
//! compiled into the binary, strict CSP, same-origin script only).
//!
//! [`Launch`] assembles and runs the whole service as `eos-sec serve` does.
//! [`Service::serve`] listens with rustls (ring) or plain HTTP behind a
//! TLS-terminating load balancer, limits body size, request time and rate
//! (per client address and global, `governor`), and shuts down gracefully.

pub mod agent;
mod codes;
mod commit;
mod config;
mod conn;
mod error;
mod est;
mod http;
mod launch;
mod notify;
pub mod page;
mod pool;
mod registrar;
pub mod renewal;
mod server;

pub use codes::Code;
pub use config::{ConnectionLimits, NotifyHook, RateLimits, ServeConfig, ServeOptions};
pub use error::{ApiError, RegisterError};
pub use launch::{Bound, Launch, SyncTask};
pub use notify::RecoveryEvent;
pub use registrar::{Outcome, PresentedCode, Registrar, Registration};
pub use server::{
    BackgroundTask, ClientCertificate, Service, Shutdown, ShutdownTrigger, load_tls, server_config,
    shutdown_pair,
};
