//! macOS (untested: no macOS machine runs this project's tests): the executable of `pid` by `proc_pidpath`.
//! `LOCAL_PEERPID` gives the pid; there is no pidfd, so a pid recycled meanwhile is not caught (docs/security.md).
#![allow(unsafe_code)] // reason: proc_pidpath has no safe wrapper; it writes into a buffer of the length passed.

use super::{Caller, Program};

pub(super) fn identify(pid: i32) -> Caller {
    let mut buffer = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    // SAFETY: the buffer is valid for writes of its length, which is passed.
    let len = unsafe { libc::proc_pidpath(pid, buffer.as_mut_ptr().cast(), buffer.len() as u32) };
    if len <= 0 {
        return Caller::unknown(Some(pid), "proc_pidpath failed");
    }
    buffer.truncate(len as usize);
    let exe = String::from_utf8_lossy(&buffer).into_owned();
    Caller::Known(Program { exe, args: Vec::new(), unit: None, sandbox: None, pid })
}
