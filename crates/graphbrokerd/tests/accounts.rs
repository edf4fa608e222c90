//! Several accounts at once: two profiles in two tenants of the stand-in, each signed in with
//! `graphbroker-client signin --profile`, each served its own user's tokens, kept apart in the keychain across a
//! restart, and signed out one without the other.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use graphbroker_protocol::{ErrorCode, TokenQuery};
use serde_json::Value;
use support::*;

const FABRIKAM: &str = "fabrikam.com";
const BOB: &str = "bob@fabrikam.com";

fn two_tenants() -> fake_entra::FakeEntra {
    fake_entra::FakeEntra::builder()
        .client(CLIENT_ID)
        .user(ALICE)
        .tenant(FABRIKAM)
        .user_in(FABRIKAM, BOB)
        .device_interval(Duration::from_secs(1))
        .start()
        .expect("fake identity platform starts")
}

/// `work` signs in to the stand-in's home tenant, `partner` to fabrikam.com, both by device code.
fn two_profiles(fake: &fake_entra::FakeEntra, service: &str) -> String {
    let profile = |name: &str, tenant: &str| {
        format!(
            "[profiles.{name}]\nauthority = \"{}\"\ngraph_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nflow = \"device\"\n\
             store = \"keyring\"\n",
            fake.authority(tenant),
            fake.base_url()
        )
    };
    format!(
        "default_profile = \"work\"\nkeyring_service = \"{service}\"\nhttp_timeout = 5\n\n{}\n{}",
        profile("work", fake_entra::TENANT_DOMAIN),
        profile("partner", FABRIKAM)
    )
}

fn client_command(daemon: &Daemon, args: &[&str]) -> Command {
    let mut command = Command::new(client_bin());
    command.arg("--no-autostart").args(args).env("GRAPHBROKER_SOCKET", &daemon.socket);
    command
}

/// Starts `graphbroker-client signin --profile NAME` and returns it with the device code it shows.
fn start_signin(daemon: &Daemon, profile: &str) -> (Child, String) {
    let mut child = client_command(daemon, &["signin", "--profile", profile, "--timeout", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphbroker-client signin");
    let code = first_device_code(child.stderr.take().unwrap());
    match code {
        Some(code) => (child, code),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("signin --profile {profile} showed no device code");
        }
    }
}

/// The code of the first `… enter the code CODE …` line, within 30 s.
fn first_device_code(stderr: impl std::io::Read) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stderr).lines() {
        let line = line.ok()?;
        if let Some(rest) = line.split("enter the code ").nth(1) {
            return rest.split_whitespace().next().map(str::to_owned);
        }
        if Instant::now() > deadline {
            return None;
        }
    }
    None
}

fn stdout_of(child: Child) -> String {
    let output = child.wait_with_output().expect("wait for the client");
    assert!(output.status.success(), "exit {:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The claims of a JWT-shaped access token (the stand-in's tokens carry `tid` and `upn`).
fn claims(token: &str) -> Value {
    let segment = token.split('.').nth(1).expect("a JWT-shaped token");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// `graphbroker-client token --profile NAME`, which must not need a sign-in: `(tid, upn)` of what it prints.
fn token_owner(daemon: &Daemon, fake: &fake_entra::FakeEntra, profile: &str) -> (String, String) {
    let output = client_command(daemon, &["token", "--profile", profile, "--no-wait"]).output().expect("token");
    assert!(output.status.success(), "token --profile {profile}: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim_end().to_owned();
    assert!(fake.issued_secrets().contains(&token), "profile {profile} printed a token the platform issued");
    let claims = claims(&token);
    (claims["tid"].as_str().unwrap().to_owned(), claims["upn"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_profiles_in_two_tenants_are_signed_in_at_once_and_kept_apart() {
    if !keychain_available("two_profiles_in_two_tenants_are_signed_in_at_once_and_kept_apart") {
        return;
    }
    let fake = two_tenants();
    let fabrikam_id = fake.tenants()[1].id.clone();
    let service = unique_service("accounts");
    let mut daemon = Daemon::start(&two_profiles(&fake, &service));

    // Both sign-ins are pending at once, one per profile, each through its own tenant's authority.
    let (work, work_code) = start_signin(&daemon, "work");
    let (partner, partner_code) = start_signin(&daemon, "partner");
    assert_ne!(work_code, partner_code);
    let status = daemon.client().status().await.unwrap();
    assert!(status.profiles.iter().all(|p| p.signin.is_some()), "both sign-ins pending: {status:?}");
    // The partner tenant's authority does not let the home tenant's user in; its sign-in goes on waiting.
    let refused = fake.approve_device(&partner_code, ALICE).unwrap_err().to_string();
    assert!(refused.contains("AADSTS50020"), "{refused}");
    fake.approve_device(&partner_code, BOB).unwrap();
    fake.approve_device(&work_code, ALICE).unwrap();
    let (work_said, partner_said) =
        tokio::task::spawn_blocking(move || (stdout_of(work), stdout_of(partner))).await.unwrap();
    assert_eq!(work_said.trim(), format!("signed in as {ALICE} (profile work)"));
    assert_eq!(partner_said.trim(), format!("signed in as {BOB} (profile partner)"));
    assert_eq!(fake.stats().devicecode, 2, "one device flow per profile");

    // Each profile is served its own user's tokens, issued in its own tenant.
    let d = &daemon;
    let f = &fake;
    assert_eq!(token_owner(d, f, "work"), (fake_entra::TENANT_ID.to_owned(), ALICE.to_owned()));
    assert_eq!(token_owner(d, f, "partner"), (fabrikam_id.clone(), BOB.to_owned()));
    let status = daemon.client().status().await.unwrap();
    let account = |name: &str| {
        let profile = status.profiles.iter().find(|p| p.name == name).expect("profile in status");
        let account = profile.account.clone().expect("signed in");
        (account.tenant_id, account.username)
    };
    assert_eq!(account("work"), (fake_entra::TENANT_ID.to_owned(), ALICE.to_owned()));
    assert_eq!(account("partner"), (fabrikam_id.clone(), BOB.to_owned()));
    assert_eq!(keychain_items(&service), 2, "one keychain entry per profile");

    // A restart keeps both: each profile redeems its own refresh token at its own tenant, with no new sign-in.
    daemon.restart();
    let refreshes = fake.stats().token.refresh_token;
    assert_eq!(token_owner(&daemon, &fake, "partner"), (fabrikam_id.clone(), BOB.to_owned()));
    assert_eq!(token_owner(&daemon, &fake, "work"), (fake_entra::TENANT_ID.to_owned(), ALICE.to_owned()));
    assert_eq!(fake.stats().token.refresh_token, refreshes + 2);
    assert_eq!(fake.stats().devicecode, 2, "no sign-in after the restart");

    // Signing one profile out leaves the other signed in.
    let out = client_command(&daemon, &["signout", "--profile", "partner"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(keychain_items(&service), 1);
    let partner = TokenQuery { profile: Some("partner".into()), wait: Some(0), ..TokenQuery::default() };
    let needs = needing_signin(&daemon.client(), &partner).await;
    assert_eq!(needs.code(), Some(ErrorCode::SigninRequired), "{needs}");
    assert_eq!(token_owner(&daemon, &fake, "work"), (fake_entra::TENANT_ID.to_owned(), ALICE.to_owned()));
    let out = client_command(&daemon, &["signout", "--profile", "work"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(keychain_items(&service), 0);
}
