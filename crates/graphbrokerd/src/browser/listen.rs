//! The loopback listener's sockets: `127.0.0.1` and `[::1]` on one port, so that whichever address `localhost`
//! resolves to first is the daemon's, not a port another user opened on the other one.
//!
//! The redirect URI is `http://localhost:PORT`. If the daemon bound only `127.0.0.1`, another user could bind
//! `[::1]:PORT` and receive the redirect (with its code and `state`) from a browser that tries IPv6 first. So the
//! port is taken on both; if `[::1]` has that port in use already, both are let go and a new port is tried. A host
//! without an IPv6 loopback at all is served on IPv4 alone (and the log says so): nobody can squat an address the
//! host does not have.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use tokio::net::TcpListener;

/// How many ports are tried before giving up: a port free on `127.0.0.1` but taken on `[::1]` is rare, and a
/// run of them means someone is squatting on purpose.
const PORT_ATTEMPTS: usize = 8;

/// The bound sockets, all on `port`.
#[derive(Debug)]
pub struct LoopbackSockets {
    pub port: u16,
    pub listeners: Vec<TcpListener>,
}

/// Binds `127.0.0.1:0`, then `[::1]` on the same port (see the module docs).
pub async fn bind() -> io::Result<LoopbackSockets> {
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = v4.local_addr()?.port();
        match bind_v6(port) {
            Ok(v6) => return Ok(LoopbackSockets { port, listeners: vec![v4, v6] }),
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                tracing::info!("this host has no IPv6 loopback; the browser redirect listens on 127.0.0.1 only");
                return Ok(LoopbackSockets { port, listeners: vec![v4] });
            }
            Err(e) => {
                tracing::warn!(port, "[::1]:{port} cannot be bound ({e}); trying another port");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no loopback port could be bound")))
}

/// `[::1]:port`. A socket bound to `::1` (not `::`) never receives IPv4, whatever `IPV6_V6ONLY` says. The
/// `SO_REUSEADDR` the standard library sets does not let a bind share a port another socket listens on, and
/// Linux allows `SO_REUSEPORT` sharing only between sockets of one uid: a port held on `::1` is an error here.
fn bind_v6(port: u16) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, port))?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn ipv6_loopback_present() -> bool {
        std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
    }

    #[tokio::test]
    async fn both_loopback_addresses_share_one_port() {
        let sockets = bind().await.unwrap();
        let addresses: Vec<SocketAddr> = sockets.listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        assert_eq!(addresses[0], SocketAddr::from((Ipv4Addr::LOCALHOST, sockets.port)));
        if ipv6_loopback_present() {
            assert_eq!(addresses, vec![addresses[0], SocketAddr::from((Ipv6Addr::LOCALHOST, sockets.port))]);
        } else {
            eprintln!("no IPv6 loopback here: only 127.0.0.1 was checked");
        }
    }
}
