//! Keeping the refresh tokens in this process's memory out of other processes' reach, as ssh-agent and
//! gpg-agent do: no core dumps, and no debugger attaching without root.
//!
//! - `RLIMIT_CORE` 0 (soft and hard): a crash writes no core file, whatever `ulimit -c` the daemon was started
//!   with, and the limit cannot be raised again by a later `setrlimit`.
//! - Linux: `PR_SET_DUMPABLE` 0. Besides suppressing cores (also through a `core_pattern` pipe), this makes
//!   `/proc/<pid>/{mem,environ,maps,…}` root's and refuses `ptrace` from the user's other processes: a compromised
//!   editor plug-in cannot read the daemon's memory, it has to ask the socket like any client.
//! - macOS: `PT_DENY_ATTACH`, which refuses debuggers (and makes the daemon exit if one is already attached).
//!
//! Each step that fails is reported and the daemon goes on: a system that forbids one of them is still better
//! served by a daemon than by none. The systemd unit also sets `LimitCORE=0`.

/// Raises the soft limit on open files to the hard limit. The daemon holds a descriptor per connection of its
/// socket and of the browser sign-in's loopback listener (both capped), plus the store's and the platform's;
/// the common soft default of 1,024 is the first thing a flood would exhaust, while the hard limit is what the
/// administrator allows. Answers the limits now in force (soft, hard).
pub fn raise_open_files_limit() -> nix::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    getrlimit(Resource::RLIMIT_NOFILE)
}

/// One protection that could not be put in place, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprotected {
    pub what: &'static str,
    pub why: String,
}

/// Applies every protection this platform has; answers those that failed (normally none).
pub fn protect_process() -> Vec<Unprotected> {
    let mut failed = Vec::new();
    if let Err(e) = no_core_dumps() {
        failed.push(Unprotected { what: "RLIMIT_CORE 0 (no core dumps)", why: e.to_string() });
    }
    if let Err(e) = not_traceable() {
        failed.push(Unprotected { what: TRACE_PROTECTION, why: e.to_string() });
    }
    failed
}

fn no_core_dumps() -> nix::Result<()> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const TRACE_PROTECTION: &str = "PR_SET_DUMPABLE 0 (no ptrace, no /proc/<pid>/mem)";

#[cfg(any(target_os = "linux", target_os = "android"))]
fn not_traceable() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}

#[cfg(target_os = "macos")]
const TRACE_PROTECTION: &str = "PT_DENY_ATTACH (no debugger)";

#[cfg(target_os = "macos")]
#[allow(unsafe_code)] // reason: PT_DENY_ATTACH has no safe wrapper; the call takes no pointers it dereferences
fn not_traceable() -> nix::Result<()> {
    // SAFETY: PT_DENY_ATTACH ignores pid, addr and data; it only flags the calling process.
    let rc = unsafe { libc::ptrace(libc::PT_DENY_ATTACH, 0, std::ptr::null_mut(), 0) };
    if rc == 0 { Ok(()) } else { Err(nix::Error::last()) }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
const TRACE_PROTECTION: &str = "protection from debuggers";

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn not_traceable() -> nix::Result<()> {
    Err(nix::Error::ENOSYS)
}
