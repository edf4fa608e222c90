//! What the user sees on stderr: sign-in prompts, the "waiting for sign-in" line, notes.
//!
//! stdout is reserved for the token (or header) so that `$(graphbroker-client token …)` captures nothing else.
//! On a terminal the waiting line is an `indicatif` spinner, rewritten in place and cleared before anything else is
//! written; elsewhere (a log, a pipe) it is a plain line now and then, so logs stay readable. The spinner is made
//! only once a prompt has been shown on a terminal: the fast path (`fast_path.rs`) and every command that never
//! waits do not touch `indicatif` at all.

use std::future::Future;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use graphbroker_client::protocol::EpochSeconds;
use graphbroker_client::{SignInPrompt, SignInReason};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

/// The spinner's frames; indicatif shows the last one only once finished, which is never seen (it is cleared).
const SPINNER_FRAMES: [&str; 11] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", " "];

/// How often the spinner turns on a terminal.
const SPINNER_TICK: Duration = Duration::from_millis(100);

/// How often the plain lines' check runs when stderr is not a terminal.
const PLAIN_CHECK: Duration = Duration::from_secs(1);

/// How often a plain "still waiting" line is written when stderr is not a terminal: often enough to show the
/// command is alive in a CI log, rare enough not to flood it.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// Writes prompts and progress to stderr.
#[derive(Debug)]
pub struct Ui {
    terminal: bool,
    waiting: Mutex<WaitingLine>,
}

#[derive(Debug, Default)]
struct WaitingLine {
    /// Set once a prompt has been shown: only then is there something to wait for.
    prompt_expires_at: Option<EpochSeconds>,
    /// The spinner on screen (terminal only); finished and cleared before anything else is written.
    spinner: Option<ProgressBar>,
    last_plain_line: Option<Instant>,
}

impl Ui {
    /// `terminal`: whether stderr is a terminal (spinner) or not (plain lines).
    pub fn new(terminal: bool) -> Self {
        Self { terminal, waiting: Mutex::new(WaitingLine::default()) }
    }

    /// A short note on stderr, e.g. that the daemon is being started.
    pub fn note(&self, text: &str) {
        let mut waiting = self.lock();
        self.clear(&mut waiting);
        let _ = writeln!(std::io::stderr(), "graphbroker-client: {}", crate::safe_text::for_terminal(text));
    }

    /// Shows what the user must do to sign in, and why.
    pub fn show_prompt(&self, prompt: &SignInPrompt, reason: Option<SignInReason>) {
        self.show_prompt_under(reason_sentence(reason), prompt);
    }

    /// Shows what the user must do to sign in, under a headline of the caller's.
    pub fn show_prompt_under(&self, headline: &str, prompt: &SignInPrompt) {
        let mut waiting = self.lock();
        self.clear(&mut waiting);
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{}", crate::safe_text::for_terminal(headline));
        let _ = writeln!(stderr, "{}", crate::safe_text::for_terminal(&prompt.instruction()));
        waiting.prompt_expires_at = Some(prompt.expires_at());
        waiting.last_plain_line = Some(Instant::now());
    }

    /// Runs `work` while showing that a sign-in is awaited (once a prompt has been shown), and clears the
    /// waiting line when `work` ends.
    pub async fn while_waiting<F: Future>(&self, work: F) -> F::Output {
        tokio::pin!(work);
        let mut tick = tokio::time::interval(if self.terminal { SPINNER_TICK } else { PLAIN_CHECK });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                output = &mut work => {
                    self.clear_waiting_line();
                    return output;
                }
                _ = tick.tick() => self.draw_waiting_line(),
            }
        }
    }

    /// Removes the spinner line, e.g. before an error is printed.
    pub fn clear_waiting_line(&self) {
        let mut waiting = self.lock();
        self.clear(&mut waiting);
    }

    fn draw_waiting_line(&self) {
        let mut waiting = self.lock();
        let Some(expires_at) = waiting.prompt_expires_at else { return };
        let left = format_time_left(expires_at.left_after(SystemTime::now()));
        if self.terminal {
            // The spinner turns on indicatif's own tick (so it keeps turning while this task is busy); this
            // brings the time left up to date.
            waiting.spinner.get_or_insert_with(new_spinner).set_message(left);
        } else if waiting.last_plain_line.is_none_or(|last| last.elapsed() >= PLAIN_PROGRESS_EVERY) {
            let _ = writeln!(std::io::stderr(), "waiting for sign-in ({left} left)");
            waiting.last_plain_line = Some(Instant::now());
        }
    }

    fn clear(&self, waiting: &mut WaitingLine) {
        if let Some(spinner) = waiting.spinner.take() {
            spinner.finish_and_clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WaitingLine> {
        // The state is a few display flags; one left half-updated by a panic is still fine to draw from.
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The "waiting for sign-in" spinner on stderr; its message is the time left.
fn new_spinner() -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} waiting for sign-in ({msg} left)")
        .expect("the spinner template is valid")
        .tick_strings(&SPINNER_FRAMES);
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    spinner.enable_steady_tick(SPINNER_TICK);
    spinner
}

/// Why the user is asked to sign in, as one line.
pub fn reason_sentence(reason: Option<SignInReason>) -> &'static str {
    match reason {
        None => "sign-in needed",
        Some(SignInReason::NoAccount) => "sign-in needed: this profile has no account yet",
        Some(SignInReason::SessionExpired) => "sign-in needed: the session has ended",
        Some(SignInReason::ConsentRequired) => "sign-in needed: the scopes asked for need your consent",
        Some(SignInReason::InteractionRequired) => {
            "sign-in needed: your organization asks you to sign in again (MFA or Conditional Access)"
        }
    }
}

/// `m:ss`, or `h:mm:ss` from an hour up; rounded down to the second.
pub fn format_time_left(left: Duration) -> String {
    let seconds = left.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 { format!("{hours}:{minutes:02}:{seconds:02}") } else { format!("{minutes}:{seconds:02}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_like_a_clock() {
        assert_eq!(format_time_left(Duration::from_millis(898_900)), "14:58");
        assert_eq!(format_time_left(Duration::from_secs(59)), "0:59");
        assert_eq!(format_time_left(Duration::ZERO), "0:00");
        assert_eq!(format_time_left(Duration::from_secs(3600 + 2 * 60 + 3)), "1:02:03");
    }

    fn prompt() -> SignInPrompt {
        serde_json::from_value(serde_json::json!({
            "flow": "device", "verification_uri": "https://microsoft.com/devicelogin", "user_code": "ABC",
            "message": "enter ABC", "expires_at": 4_000_000_000u64,
        }))
        .unwrap()
    }

    #[test]
    fn the_spinner_is_made_on_a_terminal_only_once_a_prompt_is_shown_and_cleared_before_output() {
        let ui = Ui::new(true);
        ui.draw_waiting_line();
        assert!(ui.lock().spinner.is_none(), "nothing to wait for before a prompt");
        ui.show_prompt(&prompt(), None);
        ui.draw_waiting_line();
        assert!(ui.lock().spinner.is_some());
        ui.note("a note");
        assert!(ui.lock().spinner.is_none(), "cleared before the note");
        ui.draw_waiting_line();
        ui.clear_waiting_line();
        assert!(ui.lock().spinner.is_none());

        let ui = Ui::new(false);
        ui.show_prompt(&prompt(), None);
        ui.draw_waiting_line();
        assert!(ui.lock().spinner.is_none(), "no spinner when stderr is not a terminal");
    }

    #[test]
    fn every_reason_has_a_sentence() {
        for reason in [
            None,
            Some(SignInReason::NoAccount),
            Some(SignInReason::SessionExpired),
            Some(SignInReason::ConsentRequired),
            Some(SignInReason::InteractionRequired),
        ] {
            assert!(reason_sentence(reason).starts_with("sign-in needed"));
        }
    }
}
