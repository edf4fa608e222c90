//! `kill -9` at random points, then a restart: no sign-in is lost and no signed-out account comes back.
//!
//! Each run starts a daemon on the real Secret Service (scripts/test provides one), puts it in one of three
//! situations with the stand-in's token endpoint slowed by a random delay, sends SIGKILL after a random time,
//! starts it again on the same keychain, and checks the rule:
//!
//! - **refresh**: a refresh (with its rotated refresh token's keychain write) is under way when the daemon dies.
//!   After the restart the account still works: the stored refresh token is the old one or the new one, and the
//!   identity platform keeps the old one valid after a rotation, as Entra does.
//! - **sign-in**: a device-code sign-in is completing (token answer, keychain write). If a client was answered
//!   with a token before the kill, the account is there after the restart and works.
//! - **sign-out**: a sign-out races a refresh. If the sign-out was answered before the kill, the account is
//!   gone after the restart, from the daemon and from the keychain (`secret-tool`'s view).
//!
//! 100 runs by default (about 30 s), split evenly; `GRAPHBROKER_SURVIVAL_RUNS` sets another number. With
//! `--nocapture` the test prints the figures that docs/reliability.md quotes. The seed is printed, and
//! `GRAPHBROKER_SURVIVAL_SEED` replays a sequence.

mod support;

use std::time::Duration;

use fake_entra::{Endpoint, Fault};
use graphbroker_protocol::{ErrorCode, TokenQuery};
use rand::{Rng, SeedableRng};
use support::*;

/// A request that makes the daemon refresh whatever it has cached: no token lives a day.
fn forcing_refresh() -> TokenQuery {
    TokenQuery { scopes: Some("User.Read".into()), min_valid: Some(86_400), ..TokenQuery::default() }
}

#[derive(Debug, Default)]
struct Tally {
    runs: u32,
    /// Kills that landed after the client had its answer (the rest landed before).
    after_answer: u32,
    violations: Vec<String>,
}

/// Signs in with the device code, the stand-in's first poll slowed so that the approval is there when it lands.
async fn sign_in_quickly(daemon: &Daemon, fake: &fake_entra::FakeEntra) {
    fake.inject_fault(Endpoint::Token, 1, Fault::delay(Duration::from_millis(100)));
    let client = daemon.client();
    let error = needing_signin(&client, &query("User.Read")).await;
    fake.approve_device(&device_code_of(&error), ALICE).expect("approve");
    client.token(&with_wait("User.Read", 30)).await.expect("token after sign-in");
    fake.clear_faults();
}

/// Whether the restarted daemon has a working account: a token without any sign-in.
async fn account_works(daemon: &Daemon) -> Result<(), String> {
    match daemon.client().token(&query("User.Read")).await {
        Ok(_) => Ok(()),
        Err(error) => Err(format!("{error} ({:?})", error.code())),
    }
}

async fn kill_after(daemon: &mut Daemon, after: Duration) {
    tokio::time::sleep(after).await;
    daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
}

async fn refresh_run(fake: &fake_entra::FakeEntra, rng: &mut impl Rng, tally: &mut Tally) {
    let service = unique_service("survival-refresh");
    let mut daemon = Daemon::start(&config(fake, "keyring", &service, ""));
    sign_in_quickly(&daemon, fake).await;
    let delay = rng.random_range(0..40);
    fake.inject_fault(Endpoint::Token, 1, Fault::delay(Duration::from_millis(delay)));
    let client = daemon.client();
    let request = tokio::spawn(async move { client.token(&forcing_refresh()).await });
    kill_after(&mut daemon, Duration::from_millis(rng.random_range(0..delay + 40))).await;
    let answered = request.await.expect("request task").is_ok();
    fake.clear_faults();
    daemon.spawn(|_| {});
    tally.runs += 1;
    tally.after_answer += u32::from(answered);
    if let Err(why) = account_works(&daemon).await {
        tally.violations.push(format!("refresh run (delay {delay} ms): the sign-in was lost: {why}"));
    }
}

async fn signin_run(fake: &fake_entra::FakeEntra, rng: &mut impl Rng, tally: &mut Tally) {
    let service = unique_service("survival-signin");
    let mut daemon = Daemon::start(&config(fake, "keyring", &service, ""));
    let delay = rng.random_range(0..40);
    // The first poll is slowed so that the approval is there when it lands: the kill then falls around the
    // completion (token answer, keychain write), not in the seconds between polls.
    fake.inject_fault(Endpoint::Token, 1, Fault::delay(Duration::from_millis(delay + 60)));
    let client = daemon.client();
    let error = needing_signin(&client, &query("User.Read")).await;
    fake.approve_device(&device_code_of(&error), ALICE).expect("approve");
    let waiting = tokio::spawn(async move { client.token(&with_wait("User.Read", 30)).await });
    kill_after(&mut daemon, Duration::from_millis(rng.random_range(0..delay + 100))).await;
    let answered = waiting.await.expect("request task").is_ok();
    fake.clear_faults();
    daemon.spawn(|_| {});
    tally.runs += 1;
    tally.after_answer += u32::from(answered);
    let has_account = daemon.client().status().await.expect("status").profiles[0].account.is_some();
    if answered && !has_account {
        tally.violations.push("sign-in run: a sign-in answered before the kill was lost".into());
    }
    if has_account && let Err(why) = account_works(&daemon).await {
        tally.violations.push(format!("sign-in run: the account came back broken: {why}"));
    }
}

async fn signout_run(fake: &fake_entra::FakeEntra, rng: &mut impl Rng, tally: &mut Tally) {
    let service = unique_service("survival-signout");
    let mut daemon = Daemon::start(&config(fake, "keyring", &service, ""));
    sign_in_quickly(&daemon, fake).await;
    let delay = rng.random_range(0..40);
    fake.inject_fault(Endpoint::Token, 1, Fault::delay(Duration::from_millis(delay)));
    let (refresher, signer_out) = (daemon.client(), daemon.client());
    let refresh = tokio::spawn(async move { refresher.token(&forcing_refresh()).await });
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..delay + 5))).await;
    let signout = tokio::spawn(async move { signer_out.signout(None).await });
    kill_after(&mut daemon, Duration::from_millis(rng.random_range(0..delay + 40))).await;
    let _ = refresh.await;
    let answered = signout.await.expect("signout task").is_ok();
    fake.clear_faults();
    daemon.spawn(|_| {});
    tally.runs += 1;
    tally.after_answer += u32::from(answered);
    if answered {
        let status = daemon.client().status().await.expect("status");
        if status.profiles[0].account.is_some() || keychain_items(&service) > 0 {
            tally.violations.push(format!("sign-out run (delay {delay} ms): a signed-out account came back"));
        }
        match daemon.client().token(&query("User.Read")).await {
            Err(error) if error.code() == Some(ErrorCode::SigninRequired) => {}
            other => tally.violations.push(format!("sign-out run: after the sign-out a token request got {other:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_no_sign_in_and_resurrects_no_account() {
    if !keychain_available("kill_9_at_random_points_loses_no_sign_in_and_resurrects_no_account") {
        return;
    }
    let runs: u32 = std::env::var("GRAPHBROKER_SURVIVAL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seed: u64 =
        std::env::var("GRAPHBROKER_SURVIVAL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("survival: {runs} runs, GRAPHBROKER_SURVIVAL_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let fake = fake();
    let (mut refresh, mut signin, mut signout) = (Tally::default(), Tally::default(), Tally::default());
    for run in 0..runs {
        match run % 3 {
            0 => refresh_run(&fake, &mut rng, &mut refresh).await,
            1 => signin_run(&fake, &mut rng, &mut signin).await,
            _ => signout_run(&fake, &mut rng, &mut signout).await,
        }
    }
    for (name, tally) in [("refresh", &refresh), ("sign-in", &signin), ("sign-out", &signout)] {
        // One line per situation, in the form docs/reliability.md quotes.
        println!(
            "survival {name}: {} runs, {} killed after the client's answer, {} before; {} violations",
            tally.runs,
            tally.after_answer,
            tally.runs - tally.after_answer,
            tally.violations.len()
        );
    }
    let violations: Vec<&String> =
        refresh.violations.iter().chain(&signin.violations).chain(&signout.violations).collect();
    assert!(violations.is_empty(), "seed {seed}: {violations:#?}");
}
