//! One exact socket lookup through `NETLINK_SOCK_DIAG` (`man 7 sock_diag`): a `SOCK_DIAG_BY_FAMILY` request
//! without `NLM_F_DUMP`, naming both addresses and ports, is answered with that one socket's `inet_diag_msg`
//! (or `ENOENT`). The kernel finds it in its connection hash; nothing else is listed. The messages are built
//! and read as bytes here (the layouts of `linux/inet_diag.h`, in the machine's byte order but for ports and
//! addresses, which are in network order), which needs no unsafe code.

use std::io;
use std::net::{IpAddr, SocketAddr};

use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HEADER: usize = 16;
/// `inet_diag_req_v2`: family, protocol, ext, pad, states, then the 48-byte `inet_diag_sockid`.
const REQUEST_BODY: usize = 56;
/// In an `inet_diag_msg`: family, state, timer, retrans, the sockid, expires, rqueue, wqueue, then the uid.
const UID_OFFSET: usize = 4 + 48 + 12;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

/// The uid owning the TCP socket with local address `local` and remote address `remote`; `None` when the kernel
/// has no such socket. An error means sock_diag could not be asked (no netlink here).
pub(super) fn owner(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u32>> {
    let fd = socket(AddressFamily::Netlink, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)?;
    let request = request(local, remote);
    sendto(std::os::fd::AsRawFd::as_raw_fd(&fd), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
    let mut answer = [0u8; 1024];
    let length = recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut answer, MsgFlags::empty())?;
    parse(&answer[..length], local, remote)
}

/// The request: family and addresses as the socket has them (a v4-mapped IPv6 address asks as IPv4, which is
/// how the kernel finds such a socket too).
fn request(local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
    let (local_ip, remote_ip) = (local.ip().to_canonical(), remote.ip().to_canonical());
    let family = if local_ip.is_ipv4() && remote_ip.is_ipv4() { AF_INET } else { AF_INET6 };
    let bytes = |ip: IpAddr| -> [u8; 16] {
        match (family, ip) {
            (AF_INET, IpAddr::V4(v4)) => {
                let mut out = [0u8; 16];
                out[..4].copy_from_slice(&v4.octets());
                out
            }
            (_, IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
            (_, IpAddr::V6(v6)) => v6.octets(),
        }
    };
    let mut out = Vec::with_capacity(NLMSG_HEADER + REQUEST_BODY);
    out.extend_from_slice(&((NLMSG_HEADER + REQUEST_BODY) as u32).to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    out.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    out.extend_from_slice(&u32::MAX.to_ne_bytes()); // every TCP state
    // inet_diag_sockid: ports, addresses (network order), interface, cookie (none: INET_DIAG_NOCOOKIE).
    out.extend_from_slice(&local.port().to_be_bytes());
    out.extend_from_slice(&remote.port().to_be_bytes());
    out.extend_from_slice(&bytes(local_ip));
    out.extend_from_slice(&bytes(remote_ip));
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&u32::MAX.to_ne_bytes());
    out.extend_from_slice(&u32::MAX.to_ne_bytes());
    out
}

/// The uid in the answer, if it is the socket asked for (a socket of an IPv6 socket connected through a
/// v4-mapped address answers with its family's form of the addresses).
fn parse(answer: &[u8], local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u32>> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "a sock_diag answer too short");
    let header = answer.get(..NLMSG_HEADER).ok_or_else(malformed)?;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    let body = &answer[NLMSG_HEADER..];
    match kind {
        NLMSG_ERROR => {
            let errno = i32::from_ne_bytes(body.get(..4).ok_or_else(malformed)?.try_into().expect("4 bytes"));
            match -errno {
                0 => Ok(None),
                other if other == nix::errno::Errno::ENOENT as i32 => Ok(None),
                other => Err(io::Error::from_raw_os_error(other)),
            }
        }
        SOCK_DIAG_BY_FAMILY => {
            if answered_addresses(body) != Some((canonical(local), canonical(remote))) {
                return Ok(None); // another socket than the one asked for: treated as not found
            }
            let uid = body.get(UID_OFFSET..UID_OFFSET + 4).ok_or_else(malformed)?;
            Ok(Some(u32::from_ne_bytes(uid.try_into().expect("4 bytes"))))
        }
        other => Err(io::Error::new(io::ErrorKind::InvalidData, format!("a sock_diag answer of type {other}"))),
    }
}

fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// The local and remote addresses of an `inet_diag_msg`, v4-mapped ones as IPv4.
fn answered_addresses(body: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let family = *body.first()?;
    let port = |at: usize| Some(u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let ip = |at: usize| -> Option<IpAddr> {
        let bytes: [u8; 16] = body.get(at..at + 16)?.try_into().ok()?;
        Some(match family {
            AF_INET => IpAddr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?),
            AF_INET6 => std::net::Ipv6Addr::from(bytes).to_canonical(),
            _ => return None,
        })
    };
    Some((SocketAddr::new(ip(8)?, port(4)?), SocketAddr::new(ip(24)?, port(6)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_of_enoent_is_not_found_and_others_are_errors() {
        let mut answer = vec![0u8; NLMSG_HEADER + 4];
        answer[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        answer[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        let (local, remote) = ("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        assert_eq!(parse(&answer, local, remote).unwrap(), None);
        answer[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(parse(&answer, local, remote).is_err());
        assert!(parse(&answer[..8], local, remote).is_err());
    }
}
