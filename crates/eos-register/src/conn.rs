//! The life of one connection: admission under the connection caps, the
//! requests in flight, and the deadlines of the phases where the client
//! owes the next move (the first request, idle between requests), so a
//! connection that sends nothing is closed, whatever protocol it speaks.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// After a connection was told to close (idle, or shutdown) and nothing is
/// in flight, this long to say goodbye (HTTP/2 GOAWAY, flushing the last
/// response) before the socket is dropped: a client that does not answer
/// the goodbye cannot hold it.
const LINGER: Duration = Duration::from_secs(1);

/// How many connections may be open, in all and per source.
#[derive(Debug)]
pub(crate) struct ConnectionCaps {
    total: usize,
    per_source: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Total,
    PerSource,
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Admission {
    caps: Arc<ConnectionCaps>,
    source: Option<IpAddr>,
}

impl ConnectionCaps {
    pub(crate) fn new(total: usize, per_source: usize) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps {
            total,
            per_source,
            open: Mutex::new(Open::default()),
        })
    }

    /// Admit a connection from `source` (its canonical per-source key;
    /// `None`: counted in the total only, as for a trusted proxy that
    /// carries many clients).
    pub(crate) fn admit(self: &Arc<Self>, source: Option<IpAddr>) -> Result<Admission, Refused> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.total {
            return Err(Refused::Total);
        }
        if let Some(s) = source {
            let n = open.by_source.entry(s).or_insert(0);
            if *n >= self.per_source {
                return Err(Refused::PerSource);
            }
            *n += 1;
        }
        open.total += 1;
        Ok(Admission {
            caps: self.clone(),
            source,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(s) = self.source
            && let Some(n) = open.by_source.get_mut(&s)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_source.remove(&s);
            }
        }
    }
}

/// The requests in flight on one connection, from the moment the service
/// is called until the response body is dropped (sent, or abandoned).
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<watch::Sender<usize>>);

/// One request in flight.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<watch::Sender<usize>>);

impl Activity {
    pub(crate) fn new() -> (Activity, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0);
        (Activity(Arc::new(tx)), rx)
    }

    pub(crate) fn enter(&self) -> InFlight {
        self.0.send_modify(|n| *n += 1);
        InFlight(self.0.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The deadlines of a connection's idle phases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleTimeouts {
    /// From the start until the first request is in (protocol detection,
    /// an HTTP/2 preface and SETTINGS with no stream, a TLS session that
    /// says nothing).
    pub(crate) first_request: Duration,
    /// From the end of the last response until the next request.
    pub(crate) between_requests: Duration,
}

/// Drive `conn` to its end, closing it (`close`: hyper's graceful shutdown)
/// when it has had nothing in flight for the phase's deadline, or when
/// `stop` resolves; once closing, it is dropped as soon as it has had
/// nothing in flight for [`LINGER`], however the peer behaves.
pub(crate) async fn drive<F: Future>(
    mut conn: Pin<&mut F>,
    close: impl Fn(Pin<&mut F>),
    mut busy: watch::Receiver<usize>,
    stop: impl Future<Output = ()>,
    timeouts: IdleTimeouts,
) {
    tokio::pin!(stop);
    let mut idle_until = Some(Instant::now() + timeouts.first_request);
    let mut closing = false;
    let mut watching = true;
    loop {
        let wake = idle_until;
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = busy.changed(), if watching => {
                if changed.is_err() {
                    // Every request and the service are gone: the
                    // connection is ending; its own future says when.
                    watching = false;
                    continue;
                }
                let now = Instant::now();
                idle_until = (*busy.borrow_and_update() == 0)
                    .then(|| now + if closing { LINGER } else { timeouts.between_requests });
            }
            () = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {
                if closing {
                    return;
                }
                close(conn.as_mut());
                closing = true;
                idle_until = Some(Instant::now() + LINGER);
            }
            () = &mut stop, if !closing => {
                close(conn.as_mut());
                closing = true;
                idle_until = (*busy.borrow() == 0).then(|| Instant::now() + LINGER);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_source_and_in_all() {
        let caps = ConnectionCaps::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let a1 = caps.admit(Some(a));
        let a2 = caps.admit(Some(a));
        assert!(a1.is_ok() && a2.is_ok());
        assert_eq!(caps.admit(Some(a)).err(), Some(Refused::PerSource));
        let b1 = caps.admit(Some(b));
        assert!(b1.is_ok());
        assert_eq!(caps.admit(None).err(), Some(Refused::Total));
        drop(a1);
        // The freed place is usable again, by anyone.
        let proxy = caps.admit(None);
        assert!(proxy.is_ok());
        drop((a2, b1, proxy));
        assert_eq!(caps.open.lock().map(|o| o.total).unwrap_or(99), 0);
        assert!(
            caps.open
                .lock()
                .map(|o| o.by_source.is_empty())
                .unwrap_or(false)
        );
    }
}
