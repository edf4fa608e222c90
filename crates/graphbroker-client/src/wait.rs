//! Waiting for a sign-in: ask at once, show the prompt, then let the daemon hold the request until the user is done.
//!
//! The first request goes out with `wait=0` so that the prompt reaches the user immediately; later requests ask
//! the daemon to hold them for at most [`MAX_WAIT_PER_REQUEST`], and `signin_timeout` (the daemon's "still
//! waiting") just means "ask again" until the caller's own deadline.

use std::time::Duration;

use graphbroker_protocol::{ErrorCode, HeaderResponse, SignInPrompt, SignInReason, TokenQuery, TokenResponse, routes};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;

/// The longest `wait` one request asks for. Short enough that a prompt replaced by a new sign-in reaches the
/// user within a minute and that a daemon gone silent is noticed; long enough that a sign-in of a few minutes
/// costs only a handful of requests.
pub const MAX_WAIT_PER_REQUEST: Duration = Duration::from_secs(60);

/// How long to pause before asking again when the daemon answered `signin_required` to a request that asked it
/// to wait. A daemon that honours `wait` does not do that; the pause keeps one that does not from being asked
/// in a tight loop.
const PAUSE_AFTER_UNHELD_ANSWER: Duration = Duration::from_secs(1);

/// How long to pause before asking again for a prompt the daemon is still preparing (`signin_required` without
/// a prompt, with `retry_after`): the identity platform is handing out the device code, normally in
/// milliseconds.
const PAUSE_WHILE_PREPARING: Duration = Duration::from_millis(200);

/// How long to keep asking for a prompt still being prepared, whatever the caller's timeout (zero included):
/// getting the prompt is not waiting for the user. The daemon gives a device-code call 30 s of retries.
const PROMPT_PATIENCE: Duration = Duration::from_secs(45);

/// What `GET /v1/token` and `GET /v1/header` answer: the two answers a token request can be asked for.
pub trait TokenAnswer: DeserializeOwned {
    /// The route that answers it.
    const ROUTE: &'static str;
}

impl TokenAnswer for TokenResponse {
    const ROUTE: &'static str = routes::TOKEN;
}

impl TokenAnswer for HeaderResponse {
    const ROUTE: &'static str = routes::HEADER;
}

impl Client {
    /// An access token, waiting up to `timeout` for the user to sign in when one is needed.
    ///
    /// `on_prompt` is called once for each distinct sign-in prompt (normally once): show it to the user. Returns
    /// the token, or the error that ended the wait: `signin_declined`, `signin_expired`, or — when `timeout` runs
    /// out — the daemon's `signin_timeout` (the sign-in goes on in the daemon; asking again picks it up). With a
    /// zero `timeout` it answers `signin_required` as soon as the prompt is there, after calling `on_prompt`.
    pub async fn token_with_signin(
        &self,
        query: &TokenQuery,
        timeout: Duration,
        on_prompt: impl FnMut(&SignInPrompt, Option<SignInReason>),
    ) -> Result<TokenResponse, Error> {
        self.ask_with_signin(routes::TOKEN, query, timeout, on_prompt).await
    }

    /// [`Client::header`], waiting for a sign-in as [`Client::token_with_signin`] does.
    pub async fn header_with_signin(
        &self,
        query: &TokenQuery,
        timeout: Duration,
        on_prompt: impl FnMut(&SignInPrompt, Option<SignInReason>),
    ) -> Result<HeaderResponse, Error> {
        self.ask_with_signin(routes::HEADER, query, timeout, on_prompt).await
    }

    /// [`Client::token_with_signin`], carrying on from `first`: the daemon's error answer to `query` sent once
    /// already with `wait=0` (by [`crate::blocking::token`], say), so that the daemon is not asked twice.
    pub async fn token_with_signin_after(
        &self,
        first: Error,
        query: &TokenQuery,
        timeout: Duration,
        on_prompt: impl FnMut(&SignInPrompt, Option<SignInReason>),
    ) -> Result<TokenResponse, Error> {
        self.ask_with_signin_from(Some(first), routes::TOKEN, query, timeout, on_prompt).await
    }

    /// [`Client::header_with_signin`], carrying on from `first` as [`Client::token_with_signin_after`] does.
    pub async fn header_with_signin_after(
        &self,
        first: Error,
        query: &TokenQuery,
        timeout: Duration,
        on_prompt: impl FnMut(&SignInPrompt, Option<SignInReason>),
    ) -> Result<HeaderResponse, Error> {
        self.ask_with_signin_from(Some(first), routes::HEADER, query, timeout, on_prompt).await
    }

    /// A token answer or a header answer ([`TokenAnswer`]), as [`Client::token_with_signin`] asks, or carrying
    /// on from the daemon's `first` answer (`signin_required`) when the caller already has one.
    pub async fn answer_with_signin<T: TokenAnswer>(
        &self,
        first: Option<Error>,
        query: &TokenQuery,
        timeout: Duration,
        on_prompt: impl FnMut(&SignInPrompt, Option<SignInReason>),
    ) -> Result<T, Error> {
        self.ask_with_signin_from(first, T::ROUTE, query, timeout, on_prompt).await
    }

    async fn ask_with_signin<T: DeserializeOwned>(
        &self,
        route: &str,
        query: &TokenQuery,
        timeout: Duration,
        on_prompt: impl FnMut(&SignInPrompt, Option<SignInReason>),
    ) -> Result<T, Error> {
        self.ask_with_signin_from(None, route, query, timeout, on_prompt).await
    }

    async fn ask_with_signin_from<T: DeserializeOwned>(
        &self,
        mut first: Option<Error>,
        route: &str,
        query: &TokenQuery,
        timeout: Duration,
        mut on_prompt: impl FnMut(&SignInPrompt, Option<SignInReason>),
    ) -> Result<T, Error> {
        let deadline = Instant::now() + timeout;
        let prompt_deadline = Instant::now() + PROMPT_PATIENCE;
        let mut query = TokenQuery { wait: Some(0), ..query.clone() };
        let mut shown: Option<SignInPrompt> = None;
        loop {
            let error = match first.take() {
                Some(error) => error,
                None => match self.ask(route, &query).await {
                    Ok(answer) => return Ok(answer),
                    Err(error) => error,
                },
            };
            match error.code() {
                Some(ErrorCode::SigninRequired) => match error.signin_prompt() {
                    Some(prompt) if shown.as_ref() != Some(prompt) => {
                        on_prompt(prompt, error.signin_reason());
                        shown = Some(prompt.clone());
                    }
                    Some(_) => {}
                    // The prompt is on its way (`wait=0` is answered at once): ask again for it shortly.
                    None if shown.is_none() && error.detail().is_some_and(|d| d.retry_after.is_some()) => {
                        let pause = Instant::now() + PAUSE_WHILE_PREPARING;
                        if pause > prompt_deadline {
                            return Err(error);
                        }
                        tokio::time::sleep_until(pause).await;
                        query.wait = Some(0);
                        continue;
                    }
                    // Nothing for the user to do, so nothing to wait for.
                    None if shown.is_none() => return Err(error),
                    None => {}
                },
                Some(ErrorCode::SigninTimeout) => {}
                _ => return Err(error),
            }
            if error.code() == Some(ErrorCode::SigninRequired) && query.wait.unwrap_or(0) > 0 {
                tokio::time::sleep_until(deadline.min(Instant::now() + PAUSE_AFTER_UNHELD_ANSWER)).await;
            }
            let Some(wait) = next_wait(deadline.saturating_duration_since(Instant::now())) else {
                return Err(error);
            };
            query.wait = Some(wait.as_secs());
        }
    }
}

/// The `wait` for the next request, rounded up to whole seconds (the protocol counts in seconds; rounding down
/// gave up to a second before `--timeout`), or `None` when nothing is left.
fn next_wait(remaining: Duration) -> Option<Duration> {
    let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    (seconds > 0).then(|| Duration::from_secs(seconds).min(MAX_WAIT_PER_REQUEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_capped_and_never_zero() {
        assert_eq!(next_wait(Duration::from_secs(900)), Some(MAX_WAIT_PER_REQUEST));
        assert_eq!(next_wait(Duration::from_millis(42_900)), Some(Duration::from_secs(43)));
        assert_eq!(next_wait(Duration::from_millis(999)), Some(Duration::from_secs(1)));
        assert_eq!(next_wait(Duration::ZERO), None);
    }
}
