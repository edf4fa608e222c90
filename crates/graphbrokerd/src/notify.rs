//! Desktop notifications of a sign-in's prompt, for when the user is not looking at a terminal: a background
//! tool's request, or the rolling refresh, needed a sign-in that no terminal is showing.
//!
//! Linux: `org.freedesktop.Notifications.Notify` on the session bus (zbus, the blocking API on tokio's blocking
//! pool: zbus runs on the async-io executor the keychain already brings in, so no second runtime is added).
//! macOS: `osascript`, with the text passed as arguments to the script, never spliced into it.
//! A notification carries the prompt (a device code's URL and code, or the browser page) and never a token; a
//! failure to notify is logged by the caller and is never an error of the request.

use std::fmt::Debug;
use std::sync::Arc;

use graphbroker_protocol::SignInPrompt;
use tokio::sync::mpsc;

use crate::idp::BoxFuture;

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub summary: String,
    pub body: String,
}

impl Notice {
    /// The notice for `prompt` of `profile`: the prompt's own wording ([`SignInPrompt::action`]).
    pub fn signin(profile: &str, prompt: &SignInPrompt) -> Self {
        let body = match prompt {
            SignInPrompt::Device { .. } => format!("To sign in to profile {profile:?}, {}.", prompt.action()),
            SignInPrompt::Browser { .. } => format!(
                "A browser window was opened to sign in to profile {profile:?}; if none appeared, {}.",
                prompt.action()
            ),
        };
        Notice { summary: "graphbroker: sign-in needed".to_owned(), body }
    }
}

/// Where notifications go: the desktop, or a test's recorder.
pub trait Notifier: Send + Sync + Debug {
    fn send(&self, notice: Notice) -> BoxFuture<'static, Result<(), String>>;
}

/// Sends notices one at a time, in the order they were decided, and logs the ones that fail. Order matters to
/// whoever reads them (and makes "no notification for this prompt" observable: a later notice cannot overtake it).
#[derive(Debug, Clone)]
pub struct NoticeQueue {
    tx: mpsc::UnboundedSender<Notice>,
}

impl NoticeQueue {
    /// A queue worked off by a task of the current runtime.
    pub fn start(notifier: Arc<dyn Notifier>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Notice>();
        tokio::spawn(async move {
            while let Some(notice) = rx.recv().await {
                match notifier.send(notice).await {
                    Ok(()) => tracing::info!("sign-in prompt shown as a desktop notification"),
                    Err(e) => tracing::warn!("could not show the sign-in prompt as a desktop notification: {e}"),
                }
            }
        });
        Self { tx }
    }

    pub fn push(&self, notice: Notice) {
        if self.tx.send(notice).is_err() {
            tracing::warn!("the notification queue has stopped; the sign-in prompt was not shown");
        }
    }
}

/// The desktop's notifications.
#[derive(Debug, Default, Clone, Copy)]
pub struct DesktopNotifier;

impl Notifier for DesktopNotifier {
    fn send(&self, notice: Notice) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(desktop(notice))
    }
}

/// How long a notification stays up, in milliseconds: a device code lives 15 minutes, but a notification that
/// long covers other work; the prompt is in `status` too.
#[cfg(target_os = "linux")]
const EXPIRE_MS: i32 = 60_000;

#[cfg(target_os = "linux")]
async fn desktop(notice: Notice) -> Result<(), String> {
    tokio::task::spawn_blocking(move || freedesktop(&notice))
        .await
        .map_err(|e| format!("the notification task failed: {e}"))?
}

/// `Notify(app_name, replaces_id, app_icon, summary, body, actions, hints, expire_timeout) -> id`, per the Desktop
/// Notifications Specification.
#[cfg(target_os = "linux")]
fn freedesktop(notice: &Notice) -> Result<(), String> {
    use std::collections::HashMap;
    let connection = zbus::blocking::Connection::session().map_err(|e| format!("no session bus: {e}"))?;
    let hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    // The body may be read as markup (the specification's "body-markup"): the prompt's text is escaped so that a
    // hostile one cannot add a link or hide its URL.
    let body = escape_markup(&notice.body);
    let actions: &[&str] = &[];
    connection
        .call_method(
            Some("org.freedesktop.Notifications"),
            "/org/freedesktop/Notifications",
            Some("org.freedesktop.Notifications"),
            "Notify",
            &(
                "graphbroker",
                0u32,
                "dialog-password",
                notice.summary.as_str(),
                body.as_str(),
                actions,
                hints,
                EXPIRE_MS,
            ),
        )
        .map_err(|e| format!("org.freedesktop.Notifications.Notify failed: {e}"))?;
    Ok(())
}

/// `&`, `<` and `>` as entities, for a body that may be read as markup.
#[cfg(any(target_os = "linux", test))]
fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `display notification` with the text as `argv` items of the script: no quoting of the text can break out.
#[cfg(target_os = "macos")]
async fn desktop(notice: Notice) -> Result<(), String> {
    const SCRIPT: &str = "on run argv\ndisplay notification (item 2 of argv) with title (item 1 of argv)\nend run";
    let status = tokio::process::Command::new("/usr/bin/osascript")
        .args(["-e", SCRIPT, "--", &notice.summary, &notice.body])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| format!("could not run osascript: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("osascript failed ({status})")) }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
async fn desktop(_notice: Notice) -> Result<(), String> {
    Err("desktop notifications are not supported on this system".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use graphbroker_protocol::EpochSeconds;

    #[test]
    fn a_device_notice_carries_the_url_and_code() {
        let prompt = SignInPrompt::Device {
            verification_uri: "https://microsoft.com/devicelogin".into(),
            user_code: "ABCD-EFGH".into(),
            message: "To sign in…".into(),
            expires_at: EpochSeconds(1),
        };
        let notice = Notice::signin("work", &prompt);
        assert!(notice.body.contains("https://microsoft.com/devicelogin"), "{notice:?}");
        assert!(notice.body.contains("ABCD-EFGH"), "{notice:?}");
        assert!(notice.body.contains("\"work\""), "{notice:?}");
    }

    #[test]
    fn markup_in_a_prompt_is_escaped() {
        assert_eq!(escape_markup("<a href=\"x\">a&b</a>"), "&lt;a href=\"x\"&gt;a&amp;b&lt;/a&gt;");
    }

    #[test]
    fn a_browser_notice_says_the_browser_was_opened() {
        let prompt = SignInPrompt::Browser { url: "http://localhost:1234/start".into(), expires_at: EpochSeconds(1) };
        let notice = Notice::signin("work", &prompt);
        assert!(notice.body.contains("browser window was opened"), "{notice:?}");
        assert!(notice.body.contains("http://localhost:1234/start"), "{notice:?}");
    }
}
