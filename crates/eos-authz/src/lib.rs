//! The decision point: "may this request pass?" for proxies that already
//! terminate TLS (nginx `auth_request`, Envoy HTTP `ext_authz`, Traefik and
//! Caddy forward auth, an ALB in mutual-TLS passthrough).
//!
//! A proxy forwards each request's client address and client certificate to
//! [`serve`] as a subrequest; the answer is `eos_policy`'s
//! [`Evaluator::evaluate`](eos_policy::Evaluator::evaluate) — the same code
//! `eos-sec policy eval` and `simulate` run — so compile, eval and the
//! running gate cannot disagree:
//!
//! - **who the client is** ([`decide`]): the address and the certificate
//!   headers are believed only when the TCP peer is a configured trusted
//!   proxy ([`eos_logs::TrustedProxies::client_address`], the rule of log
//!   extraction); from any other peer the peer is the client and no
//!   certificate was presented;
//! - **the answer**: 200 with `X-Eos-Space`, `X-Eos-User`, `X-Eos-Gate`, or
//!   401 (a certificate is required and none was presented) / 403; at stage
//!   `count` the request is admitted and the refusal it would get is logged;
//! - **live state** ([`Live`]): the policy file, the trust bundle, the CRLs
//!   and the IP sets are re-read when they change, polled at a stated
//!   interval, so a revocation is enforced within that interval without a
//!   restart;
//! - **verified chains** ([`ChainCache`]): a chain that verified is kept,
//!   per loaded state, until the next reload or the end of its validity,
//!   so a client's repeated requests cost a hash, not webpki's signature
//!   checks;
//! - **the proxy's side** ([`nginx_config`], [`caddy_config`]): the nginx
//!   and Caddy configurations the tests run, printed by `eos-sec authz
//!   config nginx|caddy`;
//! - **observability**: one JSON log line per decision (deciding rule,
//!   identity; never the certificate) and counters on `/metrics`;
//! - **the drill's client** ([`probe`]): one HTTPS request with a client
//!   certificate, answered "admitted", "refused" (HTTP 401/403 or a TLS
//!   alert) or "could not tell", for `eos-sec drill revocation`.

mod caddy;
mod chains;
mod config;
mod decide;
mod listen;
mod live;
mod metrics;
mod nginx;
pub mod probe;
mod server;

pub use caddy::caddy_config;
pub use chains::{ChainCache, ChainLookup};
pub use config::AuthzConfig;
pub use decide::{Answer, CERT_HEADERS, Gate, decide};
pub use listen::{BadListen, BindError, Listen, Listener, Peer, SOCKET_MODE};
pub use live::{Live, LoadSets, ReloadError, Snapshot, Source};
pub use metrics::Metrics;
pub use nginx::{ProxyConfig, nginx_config};
pub use server::{ServeOptions, serve};
