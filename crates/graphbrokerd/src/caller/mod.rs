//! Who is asking: the program at the other end of a connection, identified once per connection when its first
//! token request needs it.
//!
//! On Linux (`linux.rs`) the kernel's record of the peer is a pidfd (`SO_PEERPIDFD`, taken when the connection is
//! accepted; on kernels before 6.5, `pidfd_open` of the `SO_PEERCRED` pid at accept). The program is read from
//! `/proc/PID` — the executable, the first words of its command line, its systemd unit and snap from the cgroup,
//! a flatpak app id from `/proc/PID/root/.flatpak-info` — and *after* reading, the pidfd is asked whether its
//! process still lives and still has that pid. A peer that exited (and whose pid another process may have taken
//! meanwhile) is [`Caller::Unknown`], which no rule names. macOS (`macos.rs`, untested): `LOCAL_PEERPID` and
//! `proc_pidpath`, without the pid-reuse check.
//!
//! What this proves and what it does not is in docs/security.md: a same-user program outside a sandbox can
//! start or ptrace an allowed program, so the identity is a lock against sandboxed apps and mistakes, not against
//! malware running as the user.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;

use std::sync::{Arc, OnceLock};

use graphbroker_protocol::CallerInfo;

/// A sandbox the caller runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub kind: SandboxKind,
    /// Flatpak's app id (`org.gnome.Evolution`) or the snap's name.
    pub app_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxKind {
    Flatpak,
    Snap,
}

impl SandboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flatpak => "flatpak",
            Self::Snap => "snap",
        }
    }
}

/// An identified program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The executable's path as the kernel names it (inside a sandbox, the sandbox's own path).
    pub exe: String,
    /// The first words of the command line (see [`first_args`]).
    pub args: Vec<String>,
    pub unit: Option<String>,
    pub sandbox: Option<Sandbox>,
    pub pid: i32,
}

/// The caller of a request: a program, or unknown — never confused with a known program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Known(Program),
    Unknown { pid: Option<i32>, why: String },
}

impl Caller {
    pub fn unknown(pid: Option<i32>, why: impl Into<String>) -> Self {
        Caller::Unknown { pid, why: why.into() }
    }

    pub fn program(&self) -> Option<&Program> {
        match self {
            Caller::Known(program) => Some(program),
            Caller::Unknown { .. } => None,
        }
    }

    pub fn pid(&self) -> Option<i32> {
        match self {
            Caller::Known(program) => Some(program.pid),
            Caller::Unknown { pid, .. } => *pid,
        }
    }

    /// The caller as the audit log and the policy routes show it.
    pub fn info(&self) -> CallerInfo {
        match self {
            Caller::Known(p) => CallerInfo {
                exe: Some(p.exe.clone()),
                args: p.args.clone(),
                unit: p.unit.clone(),
                sandbox: p.sandbox.as_ref().map(|s| s.app_id.clone()),
                sandbox_kind: p.sandbox.as_ref().map(|s| s.kind.as_str().to_owned()),
                pid: Some(p.pid),
                unknown: None,
            },
            Caller::Unknown { pid, why } => {
                CallerInfo { pid: *pid, unknown: Some(why.clone()), ..CallerInfo::default() }
            }
        }
    }

    /// How a person reads it.
    pub fn describe(&self) -> String {
        self.info().describe()
    }
}

/// What the accept loop keeps of a connection's peer: its pid and pidfd, and the program once identified.
#[derive(Debug)]
pub struct PeerProcess {
    pid: Option<i32>,
    #[cfg(target_os = "linux")]
    pidfd: Option<std::os::fd::OwnedFd>,
    identified: OnceLock<Arc<Caller>>,
    /// The connection's run of repeated cache hits, for the audit log.
    pub audit_fold: crate::audit::Fold,
}

impl PeerProcess {
    /// The peer of `stream`, whose `SO_PEERCRED` pid is `pid`. Cheap: one `getsockopt`; nothing is read yet.
    pub fn of(stream: &tokio::net::UnixStream, pid: Option<i32>) -> Self {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd as _;
            Self {
                pid,
                pidfd: linux::peer_pidfd(stream.as_raw_fd(), pid),
                identified: OnceLock::new(),
                audit_fold: Default::default(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = stream;
            Self { pid, identified: OnceLock::new(), audit_fold: Default::default() }
        }
    }

    /// A peer that is known to be unknown (requests made without a connection, tests).
    pub fn unidentified(why: &str) -> Self {
        let this = Self {
            pid: None,
            #[cfg(target_os = "linux")]
            pidfd: None,
            identified: OnceLock::new(),
            audit_fold: Default::default(),
        };
        let _ = this.identified.set(Arc::new(Caller::unknown(None, why)));
        this
    }

    /// The program, identified on first use and kept for the connection's later requests.
    pub fn caller(&self) -> Arc<Caller> {
        self.identified.get_or_init(|| Arc::new(self.identify())).clone()
    }

    #[cfg(target_os = "linux")]
    fn identify(&self) -> Caller {
        let Some(pid) = self.pid else { return Caller::unknown(None, "the kernel gave no pid") };
        match &self.pidfd {
            Some(pidfd) => linux::identify(pid, pidfd),
            None => Caller::unknown(Some(pid), "the peer exited before it could be identified"),
        }
    }

    #[cfg(target_os = "macos")]
    fn identify(&self) -> Caller {
        match self.pid {
            Some(pid) => macos::identify(pid),
            None => Caller::unknown(None, "the kernel gave no pid"),
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    fn identify(&self) -> Caller {
        Caller::unknown(self.pid, "programs are not identified on this system")
    }
}

/// At most the first two words of a command line, for a person to tell `python3 script.py` from
/// `python3 other.py`. A word that is long or looks like a secret (a bearer token, a JWT, `key=value`) is left out:
/// a command line can carry secrets and the log must not.
pub fn first_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const LONGEST: usize = 120;
    args.into_iter()
        .take(2)
        .map(|arg| {
            let lower = arg.to_ascii_lowercase();
            // Only two words are kept, so `--password VALUE` keeps at most the flag.
            let secret_like =
                arg.len() > LONGEST || lower.contains("bearer") || arg.starts_with("eyJ") || arg.contains('=');
            if secret_like { "…".to_owned() } else { arg }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_words_are_left_out_of_the_command_line() {
        let args = ["curl", "-HAuthorization: Bearer abc"].map(str::to_owned);
        assert_eq!(first_args(args), ["curl", "…"]);
        let args = ["python3", "sync.py", "--password", "x"].map(str::to_owned);
        assert_eq!(first_args(args), ["python3", "sync.py"]);
        assert_eq!(first_args(["eyJhbGciOi".to_owned()]), ["…"]);
        assert_eq!(first_args(["graphbroker-client", "token"].map(str::to_owned)), ["graphbroker-client", "token"]);
    }

    #[test]
    fn an_unknown_caller_says_why_and_has_no_program() {
        let caller = Caller::unknown(Some(7), "it exited");
        assert!(caller.program().is_none());
        let info = caller.info();
        assert_eq!(info.exe, None);
        assert_eq!(info.unknown.as_deref(), Some("it exited"));
        assert!(info.describe().starts_with("unknown program"), "{info:?}");
    }
}
