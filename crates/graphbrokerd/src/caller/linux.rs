//! Linux: the peer's pidfd, `/proc/PID`, and the check that the pid still names the peer after reading.

#![allow(unsafe_code)] // reason: SO_PEERPIDFD, pidfd_open and pidfd_send_signal have no safe wrapper in nix; each call passes
// only integers or pointers to locals of the sizes given, and each descriptor returned is owned at once.
use std::fs;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};

use super::{Caller, Program, Sandbox, SandboxKind, first_args};

/// `SO_PEERPIDFD` (Linux 6.5) in the generic socket option numbering (every architecture but alpha, mips,
/// parisc and sparc, which this daemon is not built for).
const SO_PEERPIDFD: libc::c_int = 77;
/// The most of a `/proc/PID` file read: `cgroup` and `root/.flatpak-info` are a few hundred bytes, and of
/// `cmdline` only the first arguments are kept.
const MOST_READ: u64 = 64 * 1024;

/// The pidfd of the process that connected: `SO_PEERPIDFD`, which names the connecting process itself however
/// late it is asked. On a kernel without it, `pidfd_open` of the `SO_PEERCRED` pid, right at accept: then a pid
/// recycled between `connect()` and `accept()` is not caught (see docs/security.md). `None` when the peer has
/// exited already.
pub(super) fn peer_pidfd(socket: RawFd, pid: Option<i32>) -> Option<OwnedFd> {
    let mut pidfd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `pidfd` and `len` are valid for writes of the sizes given; the kernel writes at most `len` bytes.
    let rc = unsafe { libc::getsockopt(socket, libc::SOL_SOCKET, SO_PEERPIDFD, (&raw mut pidfd).cast(), &raw mut len) };
    if rc == 0 && pidfd >= 0 {
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        return Some(unsafe { OwnedFd::from_raw_fd(pidfd) });
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::ENOPROTOOPT) {
        return None;
    }
    let pid = pid?;
    // SAFETY: pidfd_open(pid, flags) takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: as above.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the pidfd's process is still running as the pid it connected with: alive (`pidfd_send_signal` with signal 0). A pidfd names
/// one process for good, and a living process keeps its pid: its pid can go to another only once it has exited and
/// been reaped, and then the signal fails (`ESRCH`). So a pid taken over by another cannot pass. (The pidfd's fdinfo
/// `Pid` says the same thing and was read here too; it cost two opens and reads of `/proc` per connection.)
fn still_is(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal(fd, 0, NULL, 0) only checks that the process exists and may be signalled.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), 0, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    rc == 0
}

/// The program running as `pid`, if `pidfd` still names it after everything was read.
pub(super) fn identify(pid: i32, pidfd: &OwnedFd) -> Caller {
    if !still_is(pidfd) {
        return Caller::unknown(Some(pid), "the process that connected has exited");
    }
    let proc = format!("/proc/{pid}");
    let exe = match fs::read_link(format!("{proc}/exe")) {
        Ok(exe) => exe.to_string_lossy().into_owned(),
        Err(e) => return Caller::unknown(Some(pid), format!("its executable could not be read: {e}")),
    };
    let args = read_proc(&format!("{proc}/cmdline"))
        .map(|raw| {
            first_args(
                raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()),
            )
        })
        .unwrap_or_default();
    let cgroup = read_capped(&format!("{proc}/cgroup")).unwrap_or_default();
    let unit = unit_of(&cgroup);
    let sandbox = match read_capped(&format!("{proc}/root/.flatpak-info")) {
        Some(info) => flatpak_app(&info).map(|app_id| Sandbox { kind: SandboxKind::Flatpak, app_id }),
        None => snap_of(&cgroup).map(|app_id| Sandbox { kind: SandboxKind::Snap, app_id }),
    };
    // Everything above may describe a process that took over the pid after the peer exited: only if the pidfd's
    // process still lives as `pid` now was it the peer's all along.
    if !still_is(pidfd) {
        return Caller::unknown(Some(pid), "the process that connected exited while it was being identified");
    }
    Caller::Known(Program { exe, args, unit, sandbox, pid })
}

fn read_capped(path: &str) -> Option<String> {
    // Text or nothing, as `read_to_string` read it.
    String::from_utf8(read_proc(path)?).ok()
}

/// At most [`MOST_READ`] bytes of a file in `/proc`, read into a page-sized buffer from the start: `/proc` files
/// say they are empty, so `fs::read` would `statx` first and then read in 32-byte steps, a system call each, on
/// every connection that is identified.
fn read_proc(path: &str) -> Option<Vec<u8>> {
    let mut file = fs::File::open(path).ok()?;
    let mut bytes = vec![0; 4096];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            if len as u64 >= MOST_READ {
                break;
            }
            bytes.resize(len * 2, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    bytes.truncate(len);
    Some(bytes)
}

/// The cgroup v2 path (`0::/user.slice/…/app.slice/foo.service`): its deepest `.service` or `.scope` component.
pub(super) fn unit_of(cgroup: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    path.split('/').rev().find(|c| c.ends_with(".service") || c.ends_with(".scope")).map(str::to_owned)
}

/// A snap's name from its scope (`snap.firefox.firefox-<uuid>.scope`) or service (`snap.foo.daemon.service`).
pub(super) fn snap_of(cgroup: &str) -> Option<String> {
    let unit = unit_of(cgroup)?;
    let rest = unit.strip_prefix("snap.")?;
    let name = rest.split('.').next().filter(|name| !name.is_empty())?;
    Some(name.to_owned())
}

/// `name=` of the `[Application]` group of a `.flatpak-info` (a key file).
pub(super) fn flatpak_app(info: &str) -> Option<String> {
    let mut group = "";
    for line in info.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            group = name;
        } else if group == "Application"
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            let value = value.trim();
            return (!value.is_empty()).then(|| value.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_the_deepest_service_or_scope() {
        let cgroup = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/mbsync.service\n";
        assert_eq!(unit_of(cgroup).as_deref(), Some("mbsync.service"));
        let nested = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service/sub\n";
        assert_eq!(unit_of(nested).as_deref(), Some("foo.service"));
        assert_eq!(unit_of("0::/\n"), None);
    }

    #[test]
    fn a_snap_is_named_by_its_scope() {
        let cgroup = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/snap.firefox.firefox-1a2b.scope\n";
        assert_eq!(snap_of(cgroup).as_deref(), Some("firefox"));
        assert_eq!(snap_of("0::/user.slice/app.slice/foo.service\n"), None);
    }

    #[test]
    fn a_flatpak_app_id_comes_from_the_application_group() {
        let info = "[Runtime]\nname=org.gnome.Platform\n\n[Application]\nname=org.gnome.Evolution\nruntime=x\n";
        assert_eq!(flatpak_app(info).as_deref(), Some("org.gnome.Evolution"));
        assert_eq!(flatpak_app("[Runtime]\nname=org.gnome.Platform\n"), None);
    }

    #[test]
    fn this_process_is_identified_and_is_known() {
        let pid = i32::try_from(std::process::id()).unwrap();
        // SAFETY: as in peer_pidfd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = unsafe { OwnedFd::from_raw_fd(RawFd::try_from(fd).unwrap()) };
        let caller = identify(pid, &pidfd);
        let program = caller.program().expect("known");
        assert_eq!(program.exe, std::env::current_exe().unwrap().to_string_lossy());
        assert_eq!(program.pid, pid);
    }
}
