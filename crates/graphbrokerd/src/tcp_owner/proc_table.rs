//! The fallback of the owner lookup (see `mod.rs`): `/proc/net/tcp` and `/proc/net/tcp6`, read whole.
//!
//! The other end's own row in those tables has its address as the *local* address and ours as the *remote*
//! one; its `uid` column is the user that created the socket. A connection whose row cannot be found (or whose
//! rows disagree) is treated as another user's: refused.

use std::net::SocketAddr;

/// Why a connection is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRefusal {
    /// The peer's socket belongs to another user.
    OtherUser { uid: u32 },
    /// The peer's socket could not be found, or the tables could not be read (`detail` says which).
    Unidentified { detail: String },
}

impl std::fmt::Display for PeerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtherUser { uid } => write!(f, "the connection comes from another user (uid {uid})"),
            Self::Unidentified { detail } => write!(f, "the connection's owner could not be identified ({detail})"),
        }
    }
}

/// Whether the TCP socket with local address `peer` and remote address `local` belongs to the daemon's own user.
#[cfg(target_os = "linux")]
pub(super) fn check(peer: SocketAddr, local: SocketAddr) -> Result<(), PeerRefusal> {
    let own = nix::unistd::geteuid().as_raw();
    // A peer that connected from an IPv6 socket to 127.0.0.1 appears in tcp6 with a v4-mapped address: read both.
    let mut uids = Vec::new();
    let mut unreadable = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => uids.extend(owners(&text, peer, local)),
            Err(e) => unreadable.push(format!("{table}: {e}")),
        }
    }
    decide(own, &uids, &unreadable)
}

/// The verdict from the owners found: exactly our uid, and at least one row.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn decide(own: u32, uids: &[u32], unreadable: &[String]) -> Result<(), PeerRefusal> {
    if let Some(&other) = uids.iter().find(|&&uid| uid != own) {
        return Err(PeerRefusal::OtherUser { uid: other });
    }
    if uids.is_empty() {
        let detail = if unreadable.is_empty() {
            "no socket of this connection in /proc/net/tcp or tcp6".to_owned()
        } else {
            unreadable.join("; ")
        };
        return Err(PeerRefusal::Unidentified { detail });
    }
    Ok(())
}

/// The uids of the rows of a `/proc/net/tcp{,6}` table whose local address is `peer` and remote is `local`.
/// Rows without an inode (`TIME_WAIT` leftovers, owned by nobody) are skipped.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn owners(table: &str, peer: SocketAddr, local: SocketAddr) -> Vec<u32> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (row_local, row_remote, uid, inode) = (
                parse_address(fields.get(1)?)?,
                parse_address(fields.get(2)?)?,
                fields.get(7)?.parse::<u32>().ok()?,
                fields.get(9)?.parse::<u64>().ok()?,
            );
            (inode != 0 && row_local == peer && row_remote == local).then_some(uid)
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6), as the kernel prints them: each 32-bit word in
/// the machine's byte order, the port in hex. A v4-mapped IPv6 address comes back as IPv4.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| u32::from_str_radix(address.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes);
    let ip = match address.len() {
        8 => std::net::IpAddr::from(word(0)?),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            std::net::Ipv6Addr::from(bytes).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex of an IPv4 address as the kernel prints it on this machine.
    fn hex4(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    fn hex6(ip: std::net::Ipv6Addr) -> String {
        ip.octets().chunks(4).map(|c| format!("{:08X}", u32::from_ne_bytes(c.try_into().unwrap()))).collect()
    }

    fn row(local: &str, remote: &str, uid: u32, inode: u64) -> String {
        format!(
            "   1: {local} {remote} 01 00000000:00000000 00:00000000 00000000 {uid:>5}        0 {inode} 1 0 20 4 30 10 -1"
        )
    }

    const HEADER: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    #[test]
    fn addresses_parse_as_the_kernel_prints_them() {
        let v4 = format!("{}:1F90", hex4([127, 0, 0, 1]));
        assert_eq!(parse_address(&v4), Some("127.0.0.1:8080".parse().unwrap()));
        let v6 = format!("{}:0050", hex6(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(parse_address(&v6), Some("[::1]:80".parse().unwrap()));
        let mapped = format!("{}:0050", hex6("::ffff:127.0.0.1".parse().unwrap()));
        assert_eq!(parse_address(&mapped), Some("127.0.0.1:80".parse().unwrap()));
        assert_eq!(parse_address("zz:1"), None);
        assert_eq!(parse_address("0100007F"), None);
    }

    #[test]
    fn the_peers_own_row_gives_its_uid() {
        let listener = format!("{}:9C40", hex4([127, 0, 0, 1])); // 127.0.0.1:40000
        let peer = format!("{}:D431", hex4([127, 0, 0, 1])); // 127.0.0.1:54321
        let table = [
            HEADER.to_owned(),
            // The daemon's accepted socket: local = listener, remote = peer. Not the peer's row.
            row(&listener, &peer, 1000, 111),
            row(&peer, &listener, 65534, 222),
            // A TIME_WAIT leftover of the same pair: no inode, no owner.
            row(&peer, &listener, 0, 0),
        ]
        .join("\n");
        let (peer, local) = ("127.0.0.1:54321".parse().unwrap(), "127.0.0.1:40000".parse().unwrap());
        assert_eq!(owners(&table, peer, local), vec![65534]);
        assert_eq!(owners(&table, local, "127.0.0.1:1".parse().unwrap()), Vec::<u32>::new());
    }

    #[test]
    fn only_the_daemons_own_uid_passes() {
        assert_eq!(decide(1000, &[1000], &[]), Ok(()));
        assert_eq!(decide(1000, &[65534], &[]), Err(PeerRefusal::OtherUser { uid: 65534 }));
        assert_eq!(decide(1000, &[1000, 0], &[]), Err(PeerRefusal::OtherUser { uid: 0 }));
        assert!(matches!(decide(1000, &[], &[]), Err(PeerRefusal::Unidentified { .. })));
        assert!(matches!(decide(1000, &[], &["/proc/net/tcp: denied".into()]), Err(PeerRefusal::Unidentified { .. })));
    }
}
