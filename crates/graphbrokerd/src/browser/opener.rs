//! Opening the sign-in page in a browser — by the loopback launch page, never by the authorize URL itself.
//!
//! A command line is world-readable (`/proc/<pid>/cmdline`, `ps`), and the authorize URL carries the sign-in's
//! `state` and PKCE challenge. So the browser (or `browser_command`) is given the loopback listener's launch page,
//! `http://127.0.0.1:PORT/start`, which answers the daemon's own user with a redirect to the authorize URL and
//! refuses everyone else (the owner check of `crate::tcp_owner`, at accept). What other users can read on the command line is
//! the port, which they could see in `/proc/net/tcp` anyway.

use super::BrowserSettings;

/// Opens `launch_url` in a browser: the configured command, else the desktop's default. Failing to open is not
/// fatal — the authorize URL also goes back to every waiting client, to be opened by hand. The command is
/// waited for in the background, so that it never lingers as a zombie of the daemon.
pub fn open_browser(launch_url: &str, settings: &BrowserSettings) {
    match &settings.command {
        Some(command) => {
            let spawned = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .arg(launch_url)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            match spawned {
                Ok(mut child) => {
                    tokio::spawn(async move {
                        match child.wait().await {
                            Ok(status) if !status.success() => {
                                tracing::warn!("the browser command exited with {status}")
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!("could not wait for the browser command: {e}"),
                        }
                    });
                }
                Err(e) => warn_unopened(&e),
            }
        }
        None => {
            // `that_detached` watches the launcher for a moment before it returns: not on a runtime thread.
            let launch_url = launch_url.to_owned();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = open::that_detached(&launch_url) {
                    warn_unopened(&e);
                }
            });
        }
    }
}

fn warn_unopened(error: &std::io::Error) {
    tracing::warn!("could not open a browser ({error}); the sign-in URL was handed to the waiting clients");
}

/// Whether a graphical session is present, for `flow = "auto"`: always on macOS; on other systems when
/// `DISPLAY` or `WAYLAND_DISPLAY` is set.
pub fn graphical_session(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    cfg!(target_os = "macos") || ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| env(v).is_some_and(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_means_browser_only_with_a_display() {
        if cfg!(target_os = "macos") {
            return;
        }
        assert!(!graphical_session(|_| None));
        assert!(!graphical_session(|_| Some("".into())));
        assert!(graphical_session(|v| (v == "WAYLAND_DISPLAY").then(|| "wayland-0".into())));
        assert!(graphical_session(|v| (v == "DISPLAY").then(|| ":0".into())));
    }
}
