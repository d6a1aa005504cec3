//! Where the decision service listens: a TCP address, or a Unix socket
//! when the proxy runs on the same host (`unix:/run/eos-sec/authz.sock`).
//!
//! A Unix socket saves the proxy and the service the loopback TCP stack on
//! every subrequest (docs/PERFORMANCE.md measures it). Its trust boundary
//! is the file system: whoever may connect to the socket is a trusted proxy
//! (its `X-Forwarded-For` and certificate headers are believed), so the
//! socket is created with mode 0660 — the service's user and group, the
//! proxy's user being a member of that group.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// The socket's mode: owner and group read/write, nobody else.
pub const SOCKET_MODE: u32 = 0o660;

/// An address to listen on: `host:port`, or `unix:` and an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket's path (absolute).
    Unix(PathBuf),
}

/// A listen address that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}`: expected an address and port (127.0.0.1:9180) or `unix:` and an absolute path (unix:/run/eos-sec/authz.sock)"
)]
pub struct BadListen(pub String);

impl FromStr for Listen {
    type Err = BadListen;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            let p = Path::new(path);
            // Written unquoted into proxy configurations.
            let writable = !path.contains(|c: char| {
                c.is_whitespace() || c.is_control() || matches!(c, ';' | '{' | '}' | '"' | '\'')
            });
            if p.is_absolute() && writable && p.file_name().is_some() {
                return Ok(Listen::Unix(p.to_path_buf()));
            }
            return Err(BadListen(s.to_owned()));
        }
        s.parse()
            .map(Listen::Tcp)
            .map_err(|_| BadListen(s.to_owned()))
    }
}

impl fmt::Display for Listen {
    /// `127.0.0.1:9180` or `unix:/path` — nginx's own syntax for an
    /// upstream server.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who sent a subrequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Peer {
    /// A TCP peer: a trusted proxy only if `trusted_proxies` says so.
    Ip(IpAddr),
    /// A process on this host connected to the Unix socket: trusted by the
    /// socket's file mode.
    #[serde(serialize_with = "unix_peer")]
    Local,
}

fn unix_peer<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("unix")
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(ip) => write!(f, "{ip}"),
            Peer::Local => f.write_str("unix"),
        }
    }
}

/// Why the service could not listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address or path could not be bound.
    #[error("cannot listen on {listen}: {source}")]
    Io {
        /// Where.
        listen: Listen,
        /// Why.
        source: std::io::Error,
    },
    /// The socket path is taken by something that is not a stale socket.
    #[error("cannot listen on {listen}: {reason}")]
    Taken {
        /// Where.
        listen: Listen,
        /// What is there.
        reason: &'static str,
    },
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// A Unix socket, removed again when the service stops.
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Listener {
    /// Bind `listen`. A Unix socket left behind by a service that is gone
    /// is replaced; one that answers, or a file that is not a socket, is
    /// refused. The new socket gets [`SOCKET_MODE`].
    pub async fn bind(listen: &Listen) -> Result<Listener, BindError> {
        let io = |source| BindError::Io {
            listen: listen.clone(),
            source,
        };
        match listen {
            Listen::Tcp(a) => Ok(Listener::Tcp(
                tokio::net::TcpListener::bind(a).await.map_err(io)?,
            )),
            Listen::Unix(path) => {
                let taken = |reason| BindError::Taken {
                    listen: listen.clone(),
                    reason,
                };
                match std::fs::symlink_metadata(path) {
                    Ok(m) if !m.file_type().is_socket() => {
                        return Err(taken("the path exists and is not a socket"));
                    }
                    Ok(_) => {
                        if std::os::unix::net::UnixStream::connect(path).is_ok() {
                            return Err(taken("another process is listening on that socket"));
                        }
                        std::fs::remove_file(path).map_err(io)?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e)),
                }
                let l = tokio::net::UnixListener::bind(path).map_err(io)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
                    .map_err(io)?;
                Ok(Listener::Unix(l, path.clone()))
            }
        }
    }

    /// Where it listens (a TCP port of 0 resolved).
    pub fn local(&self) -> Listen {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => Listen::Tcp(a),
                Err(_) => Listen::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))),
            },
            Listener::Unix(_, p) => Listen::Unix(p.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_unix_and_refuses_the_rest() {
        assert_eq!(
            "127.0.0.1:9180".parse::<Listen>().unwrap(),
            Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 9180)))
        );
        assert_eq!(
            "unix:/run/eos-sec/authz.sock".parse::<Listen>().unwrap(),
            Listen::Unix(PathBuf::from("/run/eos-sec/authz.sock"))
        );
        for bad in [
            "unix:relative.sock",
            "unix:",
            "unix:/",
            "unix:/a b",
            "unix:/a;b",
            "127.0.0.1",
            "localhost:80",
            "",
        ] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
        for s in ["[::1]:9180", "unix:/run/eos-sec/authz.sock"] {
            assert_eq!(s.parse::<Listen>().unwrap().to_string(), s);
        }
    }

    #[tokio::test]
    async fn a_socket_gets_its_mode_replaces_a_stale_one_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authz.sock");
        let listen = Listen::Unix(path.clone());
        let l = Listener::bind(&listen).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        // A live socket is not taken over.
        let e = Listener::bind(&listen).await.unwrap_err();
        assert!(
            e.to_string().contains("another process is listening"),
            "{e}"
        );
        // A stale one (its listener gone, the file left) is replaced.
        drop(l);
        assert!(path.exists());
        let _l = Listener::bind(&listen).await.unwrap();
        // A regular file is never removed.
        let file = dir.path().join("file");
        std::fs::write(&file, "keep").unwrap();
        let e = Listener::bind(&Listen::Unix(file.clone()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }
}
