//! Test doubles for in-process tests: a scripted identity platform and scripted stores whose calls wait until
//! the test answers them, so a test decides the order in which concurrent work finishes.
//!
//! Both hand every call to the test through a channel ([`PlatformScript::next`], [`StoreScript::next`]). A test
//! that forgets to answer a store call makes it fail after [`STORE_PATIENCE`] of real time rather than hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use graphbroker_protocol::StoreKind;
use graphbroker_store::{AccountRecord, SecretStore, StoreError, StoredAccount};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, oneshot};

use crate::broker::StoreFactory;
use crate::config::Profile;
use crate::idp::{
    AuthorizationCode, AuthorizeRequest, BoxFuture, DeviceCode, Identity, PkceCodeVerifier, Platform, PlatformError,
    Tokens,
};
use crate::scopes::ScopeSet;

mod clock;
pub use clock::ManualClock;

/// How long a gated store call waits, in real time, for the test to answer it.
pub const STORE_PATIENCE: Duration = Duration::from_secs(30);
/// How long, on the paused clock, a test waits for the next call before it fails.
const CALL_PATIENCE: Duration = Duration::from_secs(24 * 3600);

/// A backstop against a test that waits forever (on the paused clock, a wait nothing will end never times out):
/// past [`HANG_LIMIT`] of real time the test binary is aborted with a message, so CI reports a failure instead of
/// running into its time limit. Dropping the watchdog stands it down.
#[derive(Debug)]
pub struct Watchdog(Arc<std::sync::atomic::AtomicBool>);

/// How long a single in-process test may take in real time before [`Watchdog`] aborts it; they take milliseconds.
pub const HANG_LIMIT: Duration = Duration::from_secs(120);

impl Watchdog {
    pub fn new(what: &'static str) -> Self {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while started.elapsed() < HANG_LIMIT {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("{what}: a test waited {HANG_LIMIT:?} for something that never happened; aborting");
            std::process::abort();
        });
        Self(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What the broker asked the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    Refresh { refresh_token: String, scopes: String, claims: Option<String> },
    StartDevice { scopes: String, claims: Option<String> },
    PollDevice { user_code: String },
    Redeem,
}

/// What the test makes of a call: an answer, or a panic inside the platform (a bug in it, or in what it parses).
enum Scripted<T> {
    Answer(Result<T, PlatformError>),
    Panic,
}

enum Answer {
    Tokens(oneshot::Sender<Scripted<Tokens>>),
    Device(oneshot::Sender<Scripted<DeviceCode>>),
}

/// The broker's side of a scripted call: its answer, or the panic the test asked for.
async fn scripted<T>(reply: oneshot::Receiver<Scripted<T>>) -> Result<T, PlatformError> {
    match reply.await {
        Ok(Scripted::Answer(result)) => result,
        Ok(Scripted::Panic) => panic!("the scripted platform panics, as the test asked"),
        Err(_) => Err(transient("the test dropped the call")),
    }
}

/// One call to the platform, waiting for its answer.
pub struct PlatformCall {
    pub asked: Asked,
    answer: Answer,
}

impl std::fmt::Debug for PlatformCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCall").field("asked", &self.asked).finish()
    }
}

impl PlatformCall {
    /// Answers a refresh, poll or redemption.
    pub fn tokens(self, result: Result<Tokens, PlatformError>) {
        match self.answer {
            Answer::Tokens(reply) => {
                let _ = reply.send(Scripted::Answer(result));
            }
            Answer::Device(_) => panic!("{:?} wants a device code, not tokens", self.asked),
        }
    }

    /// Answers a device-code start.
    pub fn device(self, result: Result<DeviceCode, PlatformError>) {
        match self.answer {
            Answer::Device(reply) => {
                let _ = reply.send(Scripted::Answer(result));
            }
            Answer::Tokens(_) => panic!("{:?} wants tokens, not a device code", self.asked),
        }
    }

    /// Makes the call panic where the broker awaits it, as a bug in the platform client would.
    pub fn panic(self) {
        let _ = match self.answer {
            Answer::Tokens(reply) => reply.send(Scripted::Panic).is_ok(),
            Answer::Device(reply) => reply.send(Scripted::Panic).is_ok(),
        };
    }

    /// The refresh token a refresh was asked with.
    pub fn refresh_token(&self) -> &str {
        match &self.asked {
            Asked::Refresh { refresh_token, .. } => refresh_token,
            other => panic!("expected a refresh, got {other:?}"),
        }
    }
}

/// A platform whose every call goes to the test.
#[derive(Debug)]
pub struct ScriptedPlatform {
    calls: mpsc::UnboundedSender<PlatformCall>,
}

/// The test's end of a [`ScriptedPlatform`].
#[derive(Debug)]
pub struct PlatformScript {
    calls: mpsc::UnboundedReceiver<PlatformCall>,
}

impl ScriptedPlatform {
    pub fn new() -> (Arc<Self>, PlatformScript) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(Self { calls: tx }), PlatformScript { calls: rx })
    }

    fn ask_tokens(&self, asked: Asked) -> BoxFuture<'_, Result<Tokens, PlatformError>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.calls.send(PlatformCall { asked, answer: Answer::Tokens(tx) });
        Box::pin(scripted(rx))
    }
}

impl PlatformScript {
    /// The next call the broker makes (time moves on while the broker sleeps, e.g. between retries).
    pub async fn next(&mut self) -> PlatformCall {
        tokio::time::timeout(CALL_PATIENCE, self.calls.recv())
            .await
            .expect("the broker made no further platform call")
            .expect("the platform was dropped")
    }

    /// A call already made, if any, without waiting.
    pub fn try_next(&mut self) -> Option<PlatformCall> {
        self.calls.try_recv().ok()
    }
}

impl Platform for ScriptedPlatform {
    fn refresh<'a>(
        &'a self,
        _profile: &'a Profile,
        refresh_token: &'a SecretString,
        scopes: &'a ScopeSet,
        claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>> {
        self.ask_tokens(Asked::Refresh {
            refresh_token: refresh_token.expose_secret().to_owned(),
            scopes: scopes.key().to_owned(),
            claims: claims.map(str::to_owned),
        })
    }

    fn start_device<'a>(
        &'a self,
        _profile: &'a Profile,
        scopes: &'a ScopeSet,
        claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<DeviceCode, PlatformError>> {
        let (tx, rx) = oneshot::channel();
        let asked = Asked::StartDevice { scopes: scopes.key().to_owned(), claims: claims.map(str::to_owned) };
        let _ = self.calls.send(PlatformCall { asked, answer: Answer::Device(tx) });
        Box::pin(scripted(rx))
    }

    fn poll_device<'a>(
        &'a self,
        _profile: &'a Profile,
        code: &'a DeviceCode,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>> {
        self.ask_tokens(Asked::PollDevice { user_code: code.user_code.clone() })
    }

    fn authorize_url(
        &self,
        _profile: &Profile,
        _scopes: &ScopeSet,
        _claims: Option<&str>,
        redirect_uri: &str,
    ) -> Result<AuthorizeRequest, PlatformError> {
        Ok(AuthorizeRequest {
            url: format!("https://login.invalid/authorize?redirect_uri={redirect_uri}&state=s"),
            csrf_state: SecretString::from("s"),
            verifier: PkceCodeVerifier::new("v".repeat(43)),
        })
    }

    fn redeem_code<'a>(
        &'a self,
        _profile: &'a Profile,
        _scopes: &'a ScopeSet,
        _code: AuthorizationCode,
        _verifier: PkceCodeVerifier,
        _redirect_uri: &'a str,
        _claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>> {
        self.ask_tokens(Asked::Redeem)
    }
}

pub fn transient(detail: &str) -> PlatformError {
    PlatformError::Transient { retry_after: None, detail: detail.into() }
}

/// A token response: access token `access`, refresh token `refresh`, an hour's life, for `user`.
pub fn tokens(access: &str, refresh: Option<&str>, user: &str) -> Tokens {
    Tokens {
        access_token: SecretString::from(access),
        expires_in: Duration::from_secs(3600),
        refresh_in: None,
        refresh_token: refresh.map(SecretString::from),
        granted: vec!["User.Read".into()],
        identity: Some(Identity { username: user.into(), home_account_id: format!("{user}.t"), tenant_id: "t".into() }),
    }
}

/// A device code for `user_code`, living 15 minutes.
pub fn device_code(user_code: &str) -> DeviceCode {
    DeviceCode::new("https://login.invalid/device".into(), user_code.into(), None, Duration::from_secs(900), ())
}

/// What the broker asked a store to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    Load,
    /// The refresh token written.
    Save(String),
    Delete,
}

/// One gated store call, waiting for the test.
#[derive(Debug)]
pub struct StoreCall {
    pub op: StoreOp,
    outcome: std::sync::mpsc::Sender<Option<StoreError>>,
}

impl StoreCall {
    /// Lets the call go ahead (the store then does what it was asked).
    pub fn release(self) {
        let _ = self.outcome.send(None);
    }

    /// Makes the call fail with `error` (nothing is changed).
    pub fn fail(self, error: StoreError) {
        let _ = self.outcome.send(Some(error));
    }
}

/// A store in memory that records what it was asked, and, when gated, lets each call go ahead only when the
/// test releases it.
#[derive(Debug)]
pub struct ScriptedStore {
    kind: StoreKind,
    accounts: Mutex<HashMap<String, StoredAccount>>,
    /// Operations carried out, in order.
    done: Mutex<Vec<StoreOp>>,
    gate: Option<Mutex<mpsc::UnboundedSender<StoreCall>>>,
}

/// The test's end of a gated [`ScriptedStore`].
#[derive(Debug)]
pub struct StoreScript {
    calls: mpsc::UnboundedReceiver<StoreCall>,
}

impl StoreScript {
    /// The next store call the broker makes.
    pub async fn next(&mut self) -> StoreCall {
        tokio::time::timeout(CALL_PATIENCE, self.calls.recv())
            .await
            .expect("the broker made no further store call")
            .expect("the store was dropped")
    }

    /// A call already made, if any, without waiting.
    pub fn try_next(&mut self) -> Option<StoreCall> {
        self.calls.try_recv().ok()
    }
}

impl ScriptedStore {
    /// A store that does what it is asked at once.
    pub fn open(kind: StoreKind) -> Arc<Self> {
        Arc::new(Self { kind, accounts: Mutex::default(), done: Mutex::default(), gate: None })
    }

    /// A store whose every call waits for the test.
    pub fn gated(kind: StoreKind) -> (Arc<Self>, StoreScript) {
        let (tx, rx) = mpsc::unbounded_channel();
        let store = Self { kind, accounts: Mutex::default(), done: Mutex::default(), gate: Some(Mutex::new(tx)) };
        (Arc::new(store), StoreScript { calls: rx })
    }

    /// Puts an account in the store, as an earlier run of the daemon would have.
    pub fn put(&self, profile: &str, refresh_token: &str, record: AccountRecord) {
        let account = StoredAccount { refresh_token: SecretString::from(refresh_token), account: record };
        self.accounts.lock().unwrap().insert(profile.to_owned(), account);
    }

    /// The refresh token the store holds for `profile`.
    pub fn refresh_token(&self, profile: &str) -> Option<String> {
        self.accounts.lock().unwrap().get(profile).map(|a| a.refresh_token.expose_secret().to_owned())
    }

    /// The account record the store holds for `profile`.
    pub fn record(&self, profile: &str) -> Option<AccountRecord> {
        self.accounts.lock().unwrap().get(profile).map(|a| a.account.clone())
    }

    /// The operations carried out so far, in order.
    pub fn done(&self) -> Vec<StoreOp> {
        self.done.lock().unwrap().clone()
    }

    /// Waits for the test when gated; `Err` when the test failed the call.
    fn pass_gate(&self, profile: &str, op: &StoreOp) -> Result<(), StoreError> {
        let Some(gate) = &self.gate else { return Ok(()) };
        let (tx, rx) = std::sync::mpsc::channel();
        let call = StoreCall { op: op.clone(), outcome: tx };
        if gate.lock().unwrap().send(call).is_err() {
            return Ok(());
        }
        match rx.recv_timeout(STORE_PATIENCE) {
            Ok(None) => Ok(()),
            Ok(Some(error)) => Err(error),
            Err(_) => panic!("the test never answered the store call {op:?} for {profile}"),
        }
    }
}

impl SecretStore for ScriptedStore {
    fn kind(&self) -> StoreKind {
        self.kind
    }

    fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn load(&self, profile: &str) -> Result<Option<StoredAccount>, StoreError> {
        self.pass_gate(profile, &StoreOp::Load)?;
        self.done.lock().unwrap().push(StoreOp::Load);
        Ok(self.accounts.lock().unwrap().get(profile).cloned())
    }

    fn save(&self, profile: &str, account: &StoredAccount) -> Result<(), StoreError> {
        let op = StoreOp::Save(account.refresh_token.expose_secret().to_owned());
        self.pass_gate(profile, &op)?;
        self.done.lock().unwrap().push(op);
        self.accounts.lock().unwrap().insert(profile.to_owned(), account.clone());
        Ok(())
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        self.pass_gate(profile, &StoreOp::Delete)?;
        self.done.lock().unwrap().push(StoreOp::Delete);
        Ok(self.accounts.lock().unwrap().remove(profile).is_some())
    }
}

/// Hands the broker the same scripted stores every time (a reload keeps them, as it keeps the real ones).
#[derive(Debug)]
pub struct ScriptedStores {
    pub keyring: Arc<ScriptedStore>,
    pub memory: Arc<ScriptedStore>,
}

impl StoreFactory for ScriptedStores {
    fn open(&self, kind: StoreKind, _keyring_service: &str) -> Arc<dyn SecretStore> {
        match kind {
            // The default setting (auto) and the kernel keyring are the persistent store as far as the broker's
            // rules go; which one auto picks is graphbroker-store's to test.
            StoreKind::Keyring | StoreKind::Keyutils | StoreKind::Auto => self.keyring.clone(),
            StoreKind::Memory => self.memory.clone(),
        }
    }
}

/// The account record a sign-in of `user` at `profile` produces.
pub fn record(profile: &Profile, user: &str) -> AccountRecord {
    AccountRecord {
        username: user.into(),
        home_account_id: format!("{user}.t"),
        tenant_id: "t".into(),
        authority: profile.authority.to_string(),
        client_id: profile.client_id.clone(),
        granted_scopes: vec!["https://graph.microsoft.com/User.Read".into()],
        refreshed_at: None,
        session_ended: None,
    }
}

/// A notifier that records every notice it is sent.
#[derive(Debug, Default)]
pub struct RecordingNotifier(Mutex<Vec<crate::notify::Notice>>);

impl RecordingNotifier {
    pub fn notices(&self) -> Vec<crate::notify::Notice> {
        self.0.lock().unwrap().clone()
    }
}

impl crate::notify::Notifier for RecordingNotifier {
    fn send(&self, notice: crate::notify::Notice) -> BoxFuture<'static, Result<(), String>> {
        self.0.lock().unwrap().push(notice);
        Box::pin(async { Ok(()) })
    }
}
