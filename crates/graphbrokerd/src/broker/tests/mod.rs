//! In-process tests of the broker: a scripted platform and scripted stores whose calls wait until the test
//! answers them, on tokio's paused clock. Every test states the rule it checks.
//!
//! - `interleavings.rs`: concurrent work finishing in the orders that matter (refresh vs sign-out, save vs
//!   delete, reload during refresh, sign-in completion vs sign-out).
//! - `transitions.rs`: each transition driven through the broker.
//! - `bounds.rs`: what one client can make the broker hold or do.

mod bounds;
mod interleavings;
mod rolling;
mod sleep;
mod transitions;

use std::sync::Arc;
use std::time::Duration;

use graphbroker_protocol::{ErrorCode, SignInReason, StoreKind};
use graphbroker_store::StoreError;
use secrecy::ExposeSecret;

use super::{Broker, IssuedToken, TokenRequest};
use crate::clock::Clock as _;
use crate::config::Config;
use crate::error::ApiError;
use crate::idp::PlatformError;
use crate::testing::{
    Asked, ManualClock, PlatformScript, RecordingNotifier, ScriptedPlatform, ScriptedStore, ScriptedStores, StoreOp,
    StoreScript, Watchdog, device_code, record, tokens, transient,
};

const PROFILE: &str = "default";
const USER: &str = "adele@contoso.com";

fn config(profile_extra: &str) -> Config {
    let text = format!("[profiles.default]\nflow = \"device\"\n{profile_extra}\n");
    Config::parse(&text, std::path::Path::new("/test/config.toml")).unwrap()
}

struct Harness {
    broker: Arc<Broker>,
    platform: PlatformScript,
    store: Arc<ScriptedStore>,
    /// Present when the keyring store is gated.
    gate: Option<StoreScript>,
    clock: Arc<ManualClock>,
    notifier: Arc<RecordingNotifier>,
    _watchdog: Watchdog,
}

/// A broker on `config` with a scripted platform; the keyring store is gated when `gated`, and holds an account
/// signed in with `rt-0` when `signed_in`.
fn harness(config: &Config, gated: bool, signed_in: bool) -> Harness {
    let (platform, script) = ScriptedPlatform::new();
    let (store, gate) = if gated {
        let (store, gate) = ScriptedStore::gated(StoreKind::Keyring);
        (store, Some(gate))
    } else {
        (ScriptedStore::open(StoreKind::Keyring), None)
    };
    let clock = ManualClock::new();
    if signed_in {
        let mut record = record(&config.profiles[PROFILE], USER);
        record.refreshed_at = Some(graphbroker_protocol::EpochSeconds::from_system_time(clock.now()));
        store.put(PROFILE, "rt-0", record);
    }
    let stores = ScriptedStores { keyring: store.clone(), memory: ScriptedStore::open(StoreKind::Memory) };
    let notifier = Arc::new(RecordingNotifier::default());
    let broker =
        Broker::with_seams(config, platform, Arc::new(stores), Arc::default(), clock.clone(), notifier.clone());
    Harness { broker, platform: script, store, gate, clock, notifier, _watchdog: Watchdog::new("broker::tests") }
}

impl Harness {
    /// A token request of the default profile and scopes, running in the background.
    fn request(&self, wait: u64) -> tokio::task::JoinHandle<Result<IssuedToken, ApiError>> {
        let broker = self.broker.clone();
        let request = TokenRequest { wait: Duration::from_secs(wait), ..TokenRequest::default() };
        tokio::spawn(async move { broker.token(&request).await })
    }

    fn signout(&self) -> tokio::task::JoinHandle<Result<graphbroker_protocol::SignoutResponse, ApiError>> {
        let broker = self.broker.clone();
        tokio::spawn(async move { broker.signout(None).await })
    }

    fn gate(&mut self) -> &mut StoreScript {
        self.gate.as_mut().expect("a gated store")
    }

    /// Lets the next store call through, checking it is `op`.
    async fn release(&mut self, op: StoreOp) {
        let call = self.gate().next().await;
        assert_eq!(call.op, op);
        call.release();
    }

    fn account(&self) -> Option<String> {
        self.broker.status().profiles[0].account.as_ref().map(|a| a.username.clone())
    }

    /// The access token cached for the default scopes, if any.
    fn cached_token(&self) -> Option<String> {
        let slot = self.broker.profile_set().slots[PROFILE].clone();
        let mut state = slot.state.lock().unwrap();
        let key = "https://graph.microsoft.com/user.read";
        state.entries.token(key, Duration::ZERO).map(|t| t.access_token.expose_secret().to_owned())
    }

    /// How many scope sets the default profile keeps entries for.
    fn entries(&self) -> usize {
        let slot = self.broker.profile_set().slots[PROFILE].clone();
        slot.state.lock().unwrap().entries.len()
    }

    fn signin_pending(&self) -> bool {
        self.broker.status().profiles[0].signin.is_some()
    }

    /// Runs other tasks until `done` holds. Store calls run on tokio's blocking threads, which a loaded machine
    /// may not schedule within any number of yields: between rounds of yields this thread sleeps a moment of
    /// real time (the paused clock does not move). Bounded, so a broker that never gets there fails the test.
    async fn settle(&self, done: impl Fn(&Self) -> bool) {
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            for _ in 0..100 {
                if done(self) {
                    return;
                }
                tokio::task::yield_now().await;
            }
            assert!(std::time::Instant::now() < give_up, "the broker did not get there");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Gives a store call racing on another thread a moment to reach the gate. Only the race the rule forbids
/// would use it: with the ordered queue nothing arrives, and the test goes on after the window. Not a timing
/// assertion: nothing depends on how long the window is, only on what arrived in it.
async fn racing_store_call(gate: &mut StoreScript) -> Option<crate::testing::StoreCall> {
    for _ in 0..50 {
        if let Some(call) = gate.try_next() {
            return Some(call);
        }
        std::thread::sleep(Duration::from_millis(4));
        tokio::task::yield_now().await;
    }
    None
}

fn token_value(result: Result<IssuedToken, ApiError>) -> String {
    result.unwrap().access_token().expose_secret().to_owned()
}
