//! The backend chosen at run time: the local state store or AWS WAFv2.
//!
//! `eos_plan::IpSetBackend` and `eos_policy::WebAclBackend` use `async fn`,
//! so `dyn IpSetBackend` is not a type. [`Backend`] is the one type that
//! holds either and implements both traits again, each call dispatched here
//! and nowhere else. Every call's future is boxed as
//! `Pin<Box<dyn Future + Send>>` before it is awaited, so that a backend
//! whose futures are not `Send` does not compile here, and a caller can
//! hand the work to `tokio::spawn` (the local backend's store sits behind a
//! mutex that is never held across an await).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use eos_aws::wafv2::{Scope, WafBackend};
use eos_ipset::IpNet;
use eos_plan::{ActualSet, BackendError, IpSetBackend, IpSetName, LockToken, NewIpSet};
use eos_policy::waf::WebAcl;
use eos_policy::{AclRead, OwnedAcl, WebAclBackend};
use eos_store::ipsets::LocalBackend;
use eos_store::{StoreError, StoreLocation};

/// A boxed `Send` future.
type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the IPSets and Web ACLs live, chosen by configuration at run time.
#[derive(Debug)]
pub enum Backend {
    /// The state store (the embedded default).
    Local(LocalBackend),
    /// AWS WAFv2.
    Aws(WafBackend),
}

/// Call `$call` on whichever backend `$self` holds, boxed as a `Send`
/// future (a backend whose future is not `Send` fails to compile here).
macro_rules! dispatch {
    ($self:ident, $b:ident => $call:expr) => {{
        let fut: Boxed<'_, _> = match $self {
            Backend::Local($b) => Box::pin($call),
            Backend::Aws($b) => Box::pin($call),
        };
        fut.await
    }};
}

impl Backend {
    /// The local backend on its own connection to the state in `dir`.
    pub fn local(dir: &Path) -> Result<Backend, StoreError> {
        Ok(Backend::Local(LocalBackend::open(dir)?))
    }

    /// The local backend on its own connection to the store at `location`
    /// (a state directory or a PostgreSQL database).
    pub fn local_at(location: &StoreLocation) -> Result<Backend, StoreError> {
        Ok(Backend::Local(LocalBackend::open_at(location)?))
    }

    /// AWS WAFv2 in `scope`, reached with `opts`.
    pub async fn aws(
        opts: &eos_aws::AwsOptions,
        scope: Scope,
    ) -> Result<Backend, eos_aws::wafv2::ConnectError> {
        Ok(Backend::Aws(WafBackend::connect(opts, scope).await?))
    }

    /// The least time between two writes: WAF allows about one write per
    /// second per account and region; the local store has no such limit.
    pub fn write_interval(&self) -> Duration {
        match self {
            Backend::Local(_) => Duration::ZERO,
            Backend::Aws(_) => Duration::from_secs(1),
        }
    }
}

impl IpSetBackend for Backend {
    fn id(&self) -> String {
        match self {
            Backend::Local(b) => b.id(),
            Backend::Aws(b) => b.id(),
        }
    }

    async fn read(&self, name: &IpSetName) -> Result<Option<ActualSet>, BackendError> {
        dispatch!(self, b => b.read(name))
    }

    async fn create(&self, set: &NewIpSet) -> Result<LockToken, BackendError> {
        dispatch!(self, b => b.create(set))
    }

    async fn update(
        &self,
        name: &IpSetName,
        addresses: &[IpNet],
        description: &str,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        dispatch!(self, b => b.update(name, addresses, description, lock))
    }

    async fn pause_before_retry(&self, attempt: u32) {
        dispatch!(self, b => b.pause_before_retry(attempt))
    }
}

impl WebAclBackend for Backend {
    fn acl_backend_id(&self) -> String {
        match self {
            Backend::Local(b) => b.acl_backend_id(),
            Backend::Aws(b) => b.acl_backend_id(),
        }
    }

    async fn read_acl(&self, name: &str) -> Result<Option<AclRead>, BackendError> {
        dispatch!(self, b => b.read_acl(name))
    }

    async fn create_acl(&self, acl: &WebAcl) -> Result<LockToken, BackendError> {
        dispatch!(self, b => b.create_acl(acl))
    }

    async fn write_acl(
        &self,
        name: &str,
        owned: &OwnedAcl,
        lock: &LockToken,
    ) -> Result<LockToken, BackendError> {
        dispatch!(self, b => b.write_acl(name, owned, lock))
    }

    async fn ip_set_arn(&self, name: &str) -> Result<Option<String>, BackendError> {
        dispatch!(self, b => b.ip_set_arn(name))
    }

    async fn tag_ip_set_stage(&self, name: &str, value: &str) -> Result<(), BackendError> {
        dispatch!(self, b => b.tag_ip_set_stage(name, value))
    }

    async fn pause_before_acl_retry(&self, attempt: u32) {
        dispatch!(self, b => b.pause_before_acl_retry(attempt))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use eos_plan::{IpSetBackend, IpSetName, PlanOptions};
    use eos_store::Store;

    use super::Backend;

    fn assert_send<T: Send>(_: &T) {}

    /// The point of the boxed futures: work on a backend chosen at run time
    /// can be spawned on a multi-threaded runtime — a plan, an apply, and
    /// the sync watcher itself (which `eos-sec serve` runs as a task on its
    /// runtime, with no thread of its own).
    #[test]
    fn work_on_a_backend_is_send() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::local(dir.path()).unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let name = IpSetName::staged(&"acme".parse().unwrap(), eos_ipset::Family::V4);
        assert_send(&backend.read(&name));
        let opts = PlanOptions::default().check().unwrap();
        assert_send(&crate::plan::plan(&mut store, &backend, &[], &opts, false));
        let bootstrap = crate::bootstrap::BootstrapInput {
            rules: &[],
            observations: &[],
            spaces: &[],
            opts: &opts,
            allow_large_change: false,
            actor: "test",
        };
        assert_send(&crate::bootstrap::bootstrap(
            &mut store, &backend, &bootstrap,
        ));
        let policy = eos_policy::Policy::from_toml(
            include_str!("../../../examples/data/policy.toml"),
            "policy.toml",
        )
        .unwrap();
        let enforce = eos_policy::enforce::EnforceOptions {
            policy: &policy,
            space: "acme".parse().unwrap(),
            target: None,
            operator_ips: Vec::new(),
            simulation: None,
            force: false,
            actor: "test".to_owned(),
        };
        let edge = crate::enforce::Edge::none();
        assert_send(&crate::enforce::enforce(
            &mut store, &backend, &edge, &enforce,
        ));
        let sync = eos_sync::SyncOptions::new(opts);
        assert_send(&eos_sync::watch(
            &mut store,
            &backend,
            &sync,
            std::future::pending(),
            |_| {},
        ));
        // The watcher as `serve` runs it: a task on the service's runtime.
        assert_send(&crate::sync::watch(
            store,
            backend,
            sync,
            std::future::pending(),
        ));
    }
}
