//! Who owns a loopback TCP socket: on Linux, the uid of the socket at the other end of one of ours.
//!
//! Any user of the machine can connect to a loopback port, and any user can listen on one. So the browser
//! sign-in's redirect listener checks that the peer of each connection it accepts is the daemon's own user, and
//! the daemon checks that a loopback upstream (a `graph_url` or `authority` over plain http on `127.0.0.1`)
//! that it is about to send a token to is listened on by its own user (`crate::upstream_owner`).
//!
//! The socket sought is the one whose *local* address is the other end's and whose *remote* address is ours;
//! its owner is the user that created it (for an accepted socket: the listener's owner).
//!
//! - **First, one exact lookup** through `NETLINK_SOCK_DIAG` (`diag.rs`): the kernel finds that one socket by its
//!   addresses and ports, in its connection hash, and answers its uid. This costs a few microseconds whatever
//!   the number of sockets on the machine, so the listener can afford it on every `accept()`.
//! - **Else the tables** `/proc/net/tcp{,6}` (`proc_table.rs`), read whole, for a kernel without sock_diag
//!   (or a sandbox that forbids netlink). Reading them costs time in the number of sockets of the machine.
//!
//! A socket that cannot be found, or whose owner cannot be read, counts as another user's: refused. On other
//! systems there is no way to ask; the check is skipped there and documented as such (docs/security.md).

#[cfg(target_os = "linux")]
mod diag;
mod proc_table;

use std::net::SocketAddr;

pub use self::proc_table::PeerRefusal;

/// Whether the TCP socket whose local address is `theirs` and remote address is `ours` belongs to the daemon's
/// own user: the peer of a connection we accepted on `ours`, or the accepted end of one we made from `ours`.
#[cfg(target_os = "linux")]
pub fn check(theirs: SocketAddr, ours: SocketAddr) -> Result<(), PeerRefusal> {
    let own = nix::unistd::geteuid().as_raw();
    match diag::owner(theirs, ours) {
        Ok(Some(uid)) => proc_table::decide(own, &[uid], &[]),
        Ok(None) => Err(PeerRefusal::Unidentified {
            detail: "the kernel knows no socket of this connection (sock_diag)".to_owned(),
        }),
        Err(e) => {
            tracing::debug!("sock_diag is not available ({e}); reading /proc/net/tcp instead");
            proc_table::check(theirs, ours)
        }
    }
}

/// Elsewhere the owner of a TCP peer cannot be read; the redirect's `state`, PKCE and the account comparison
/// remain (docs/security.md).
#[cfg(not(target_os = "linux"))]
pub fn check(_theirs: SocketAddr, _ours: SocketAddr) -> Result<(), PeerRefusal> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_real_loopback_connection_of_this_process_is_its_own_both_ways() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        // The listener's side: the peer's socket.
        assert_eq!(check(peer, server.local_addr().unwrap()), Ok(()));
        // The client's side: the accepted socket.
        assert_eq!(check(client.peer_addr().unwrap(), client.local_addr().unwrap()), Ok(()));
        assert_eq!(diag::owner(peer, server.local_addr().unwrap()).unwrap(), Some(nix::unistd::geteuid().as_raw()));
        // A pair nobody has connected is nobody's: refused.
        let nobody = "127.0.0.1:1".parse().unwrap();
        assert!(matches!(check(nobody, server.local_addr().unwrap()), Err(PeerRefusal::Unidentified { .. })));
    }

    #[test]
    fn ipv6_and_v4_mapped_peers_are_found() {
        if let Ok(listener) = std::net::TcpListener::bind("[::1]:0") {
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, peer) = listener.accept().unwrap();
            assert_eq!(check(peer, server.local_addr().unwrap()), Ok(()));
        }
        // A peer on an IPv6 socket connecting to 127.0.0.1 through a v4-mapped address.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if let Ok(_client) = std::net::TcpStream::connect(format!("[::ffff:127.0.0.1]:{port}")) {
            let (server, peer) = listener.accept().unwrap();
            assert_eq!(check(peer, server.local_addr().unwrap()), Ok(()), "{peer}");
        }
    }
}
