//! Live state: the evaluator built from the policy file, the trust bundle,
//! the CRLs and the IP sets, rebuilt when any of them changes, with its own
//! cache of verified chains ([`ChainCache`]), which a reload starts empty.
//!
//! A reload thread polls every interval: the files' modification times and
//! sizes, and the sets as the source has them now. On a change it builds a
//! whole new evaluator and swaps it in; requests in flight finish on the
//! one they started with. A reload that fails (a half-written file) keeps
//! the previous evaluator, is logged and counted, and is retried on the
//! next tick.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use eos_ipset::IpSet;
use eos_policy::{Evaluator, Policy, PolicyError, TrustConfig};

use crate::{ChainCache, Metrics};

/// Reads the IP sets (`eos-<space>-v4`/`-v6`) for a policy, e.g. from the
/// state store or AWS. Called on every reload tick.
pub type LoadSets = Box<dyn FnMut(&Policy) -> Result<BTreeMap<String, IpSet>, String> + Send>;

/// Why the state could not be (re)built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The policy, the trust bundle or a CRL.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The sets could not be read.
    #[error("reading the ip sets: {0}")]
    Sets(String),
}

/// Where the state comes from.
pub struct Source {
    /// The policy file (its `[cert_gate]` names the bundle and CRLs).
    pub policy: PathBuf,
    /// The sets.
    pub sets: LoadSets,
    /// Most verified chains cached per loaded state (0: none).
    pub chain_cache: usize,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("policy", &self.policy)
            .field("chain_cache", &self.chain_cache)
            .finish_non_exhaustive()
    }
}

/// What the files looked like when last read.
type Stamp = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let m = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.clone(), m)
        })
        .collect()
}

fn watched(policy_path: &Path, policy: &Policy) -> Vec<PathBuf> {
    let mut paths = vec![policy_path.to_path_buf()];
    paths.extend(policy.cert_gate.ca_bundle.iter().cloned());
    paths.extend(policy.cert_gate.crls.iter().cloned());
    paths
}

/// One loaded state: the evaluator and the chains verified against its
/// trust configuration. Never changed; a reload builds a new one.
#[derive(Debug)]
pub struct Snapshot {
    /// The policy, sets and trust configuration.
    pub evaluator: Evaluator<'static>,
    /// Chains verified against `evaluator`'s trust configuration.
    pub chains: ChainCache,
}

/// The current snapshot, swapped whole on reload.
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<Snapshot>>,
}

struct Loaded {
    snapshot: Snapshot,
    sets: BTreeMap<String, IpSet>,
    stamp: Stamp,
}

fn load(source: &mut Source) -> Result<Loaded, ReloadError> {
    // Stamp first: a change while reading is seen again on the next tick.
    let policy = Policy::from_file(&source.policy)?;
    let stamp = stamp(&watched(&source.policy, &policy));
    let trust = TrustConfig::from_policy(&policy)?;
    let sets = (source.sets)(&policy).map_err(ReloadError::Sets)?;
    let evaluator = Evaluator::owned(policy, &BTreeMap::new(), &sets, trust)?;
    Ok(Loaded {
        snapshot: Snapshot {
            evaluator,
            chains: ChainCache::new(source.chain_cache),
        },
        sets,
        stamp,
    })
}

impl Live {
    /// The current state.
    pub fn get(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, e: Snapshot) {
        let e = Arc::new(e);
        match self.current.write() {
            Ok(mut g) => *g = e,
            Err(poisoned) => *poisoned.into_inner() = e,
        }
    }

    /// Load once (an error here stops the start), then reload every
    /// `interval` on a thread of its own until `stop` is set.
    pub fn start(
        mut source: Source,
        interval: Duration,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Result<(Arc<Live>, std::thread::JoinHandle<()>), ReloadError> {
        let first = load(&mut source)?;
        let live = Arc::new(Live {
            current: RwLock::new(Arc::new(first.snapshot)),
        });
        metrics.reloaded();
        let mut last = (first.stamp, first.sets);
        let handle = {
            let live = live.clone();
            std::thread::Builder::new()
                .name("eos-authz-reload".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(interval);
                        live.tick(&mut source, &mut last, &metrics);
                    }
                })
                .map_err(|e| ReloadError::Sets(format!("starting the reload thread: {e}")))?
        };
        Ok((live, handle))
    }

    fn tick(
        &self,
        source: &mut Source,
        last: &mut (Stamp, BTreeMap<String, IpSet>),
        metrics: &Metrics,
    ) {
        let files = stamp(&last.0.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
        let sets = {
            let current = self.get();
            (source.sets)(current.evaluator.policy())
        };
        let sets = match sets {
            Ok(s) => s,
            Err(e) => {
                metrics.reload_failed();
                tracing::error!(error = %e, "reload: reading the ip sets failed; keeping the previous state");
                return;
            }
        };
        if files == last.0 && sets == last.1 {
            return;
        }
        match load(source) {
            Ok(loaded) => {
                self.set(loaded.snapshot);
                *last = (loaded.stamp, loaded.sets);
                metrics.reloaded();
                tracing::info!(
                    policy = %source.policy.display(),
                    "reloaded the policy, trust bundle, crl and ip sets"
                );
            }
            Err(e) => {
                metrics.reload_failed();
                tracing::error!(error = %e, "reload failed; keeping the previous state");
            }
        }
    }
}
