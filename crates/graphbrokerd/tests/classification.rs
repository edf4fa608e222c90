//! What each identity-platform refusal of a refresh does to the account, end to end: the real daemon, the real
//! Secret Service, and the stand-in answering the refresh with Entra's error body for one AADSTS number. A dead
//! grant forgets the account (its keychain entry is kept only as the mark that the session ended) and asks for a new
//! sign-in; a Conditional Access or
//! re-authentication code keeps it and offers a sign-in for the scopes asked, as MSAL does. A failure on this
//! machine is the daemon's own `internal` error, not the platform's refusal.

mod support;

use fake_entra::{Endpoint, Fault};
use graphbroker_protocol::{ErrorCode, SignInReason, WarningKind};
use support::*;

/// Signs in for two scopes, then asks for one of them (a cache miss, so a refresh) while the stand-in refuses the
/// refresh with AADSTS `code`. Returns what the daemon answered, with the daemon still running.
async fn refresh_refused_with(
    test: &str,
    code: u32,
    error: &str,
    suberror: Option<&str>,
) -> Option<(fake_entra::FakeEntra, Daemon, String, graphbroker_client::Error)> {
    if !keychain_available(test) {
        return None;
    }
    let fake = fake();
    let service = unique_service(test);
    let daemon = Daemon::start(&config(&fake, "keyring", &service, ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read,Mail.Read", ALICE).await;
    assert_eq!(keychain_items(&service), 1);

    fake.inject_fault(Endpoint::Token, 1, Fault::aadsts(code, error, suberror));
    let answer = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(fake.stats().faults_fired.get("token"), Some(&1), "the refusal was the stand-in's answer");
    Some((fake, daemon, service, answer))
}

/// The grant is dead: the account is gone from status, a new sign-in is asked for, and the keychain entry is kept
/// only as the record that the platform ended the session (so that `status` can say so after a restart): its
/// refresh token is never sent again.
async fn forgets_the_account(test: &str, code: u32, error: &str, suberror: Option<&str>) {
    let Some((fake, mut daemon, service, answer)) = refresh_refused_with(test, code, error, suberror).await else {
        return;
    };
    assert_eq!(answer.code(), Some(ErrorCode::SigninRequired), "AADSTS{code}: {answer}");
    assert_eq!(answer.signin_reason(), Some(SignInReason::SessionExpired), "AADSTS{code}: {answer}");
    let status = daemon.client().status().await.expect("status");
    assert!(status.profiles[0].account.is_none(), "AADSTS{code}: the account is forgotten");
    assert_eq!(keychain_items(&service), 1, "AADSTS{code}: the entry stays, marked as ended");
    let entry = keychain_secret(&service, "work");
    let entry: serde_json::Value = serde_json::from_str(&entry).expect("the entry is the daemon's JSON record");
    assert_eq!(entry["refresh_token"], "", "AADSTS{code}: the dead refresh token is not kept");
    assert!(entry["account"]["session_ended"]["error_codes"].to_string().contains(&code.to_string()), "{entry}");

    // After a restart the daemon still knows why, and does not try the dead refresh token again.
    daemon.restart();
    let refreshes = fake.stats().token.refresh_token;
    let status = daemon.client().status().await.expect("status");
    let warning = status.profiles[0].warning.clone().expect("a warning after the restart");
    assert_eq!(warning.kind, WarningKind::SessionEnded, "AADSTS{code}: {warning:?}");
    assert!(warning.error_codes.contains(&u64::from(code)), "AADSTS{code}: {warning:?}");
    let again = needing_signin(&daemon.client(), &query("User.Read")).await;
    assert_eq!(again.code(), Some(ErrorCode::SigninRequired), "AADSTS{code}: {again}");
    assert_eq!(fake.stats().token.refresh_token, refreshes, "AADSTS{code}: the dead refresh token is not sent again");
}

/// The user must sign in again for these scopes: the account stays (status and keychain), the sign-in offered
/// is for the scopes asked, and completing it serves them.
async fn keeps_the_account_and_offers_a_sign_in(test: &str, code: u32, error: &str, suberror: Option<&str>) {
    let Some((fake, daemon, service, answer)) = refresh_refused_with(test, code, error, suberror).await else {
        return;
    };
    assert_eq!(answer.code(), Some(ErrorCode::SigninRequired), "AADSTS{code}: {answer}");
    assert_eq!(answer.signin_reason(), Some(SignInReason::InteractionRequired), "AADSTS{code}: {answer}");
    let user_code = device_code_of(&answer);
    assert_eq!(keychain_items(&service), 1, "AADSTS{code}: the account stays in the keychain");
    let client = daemon.client();
    let status = client.status().await.expect("status");
    assert_eq!(status.profiles[0].account.as_ref().map(|a| a.username.as_str()), Some(ALICE), "AADSTS{code}");
    let pending = fake.pending_device_codes();
    let offered = pending.iter().find(|p| p.user_code == user_code).expect("the offered sign-in is pending");
    assert!(offered.scope.contains("User.Read") && !offered.scope.contains("Mail.Read"), "{}", offered.scope);

    fake.approve_device(&user_code, ALICE).expect("approve");
    let token = client.token(&with_wait("User.Read", 30)).await.expect("served after the sign-in");
    assert_eq!(token.account.username, ALICE);
    assert_eq!(keychain_items(&service), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts70008_expired_grant_forgets_the_account() {
    forgets_the_account("aadsts70008", 70008, "invalid_grant", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts700082_inactive_grant_forgets_the_account() {
    forgets_the_account("aadsts700082", 700082, "invalid_grant", Some("bad_token")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts50173_revoked_grant_forgets_the_account() {
    forgets_the_account("aadsts50173", 50173, "invalid_grant", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts70000_invalid_grant_forgets_the_account() {
    forgets_the_account("aadsts70000", 70000, "invalid_grant", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts700084_spa_token_past_its_lifetime_forgets_the_account() {
    forgets_the_account("aadsts700084", 700084, "invalid_grant", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_suberror_without_a_known_number_forgets_the_account() {
    forgets_the_account("bad_token", 50000, "invalid_grant", Some("bad_token")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts70043_sign_in_frequency_keeps_the_account_and_offers_a_sign_in() {
    keeps_the_account_and_offers_a_sign_in("aadsts70043", 70043, "interaction_required", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts70043_as_invalid_grant_with_bad_token_keeps_the_account() {
    keeps_the_account_and_offers_a_sign_in("aadsts70043_bad_token", 70043, "invalid_grant", Some("bad_token")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts50089_flow_token_expired_keeps_the_account_and_offers_a_sign_in() {
    keeps_the_account_and_offers_a_sign_in("aadsts50089", 50089, "invalid_grant", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts9002313_invalid_request_keeps_the_account_and_offers_a_sign_in() {
    keeps_the_account_and_offers_a_sign_in("aadsts9002313", 9002313, "invalid_grant", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aadsts50076_mfa_keeps_the_account_and_offers_a_sign_in() {
    keeps_the_account_and_offers_a_sign_in("aadsts50076", 50076, "invalid_grant", Some("basic_action")).await;
}

/// An answer larger than the daemon reads (1 MiB) is a transient platform failure saying so, never buffered;
/// the account survives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_is_unavailable_with_a_clear_detail_and_the_account_survives() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("huge"), ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read,Mail.Read", ALICE).await;
    fake.inject_fault(Endpoint::Token, 10, Fault::huge_body(2 * 1024 * 1024));
    let answer = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(answer.code(), Some(ErrorCode::IdentityProviderUnavailable), "{answer}");
    assert!(answer.to_string().contains("larger than 1024 KiB"), "{answer}");
    fake.clear_faults();
    let status = client.status().await.expect("status");
    assert!(status.profiles[0].account.is_some(), "the account survives");
    client.token(&query("User.Read")).await.expect("served once the platform answers normally");
}

/// A failure on this machine — here no loopback port can be opened for the browser redirect, because the daemon
/// runs in a network namespace of its own whose every ephemeral port is reserved — is `internal`, about this
/// machine, not the platform's refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_port_that_cannot_be_opened_is_a_local_error_not_the_platforms() {
    if !root_available("a_loopback_port_that_cannot_be_opened_is_a_local_error_not_the_platforms") {
        return;
    }
    let unshare = std::process::Command::new("unshare").args(["--net", "true"]).status();
    if !unshare.is_ok_and(|s| s.success()) {
        if std::env::var("GRAPHBROKER_TEST_ROOT").as_deref() == Ok("required") {
            panic!("unshare --net does not work here, but GRAPHBROKER_TEST_ROOT=required");
        }
        eprintln!("skipping the local-error test: unshare --net does not work here");
        return;
    }
    let fake = fake();
    let text = config(&fake, "memory", &unique_service("local"), "").replace("flow = \"device\"", "flow = \"browser\"");
    let mut daemon = Daemon::unstarted(&text);
    let (config_path, socket) = (daemon.config_path.clone(), daemon.socket.clone());
    // unshare runs the daemon in a new network namespace, where the sysctls below (per namespace) leave no
    // ephemeral port to bind; the Unix socket is a file, so it is reached from here as usual.
    let no_ports = "sysctl -qw net.ipv4.ip_local_port_range='40000 40001' \
        && sysctl -qw net.ipv4.ip_local_reserved_ports=40000-40001 && exec \"$0\" \"$@\"";
    daemon.spawn_program("unshare", |command| {
        command.args(["--net", "sh", "-c", no_ports]).arg(graphbrokerd_bin());
        command.arg("--config").arg(config_path).arg("--socket").arg(socket);
    });
    let answer = daemon.client().token(&with_wait("User.Read", 10)).await.expect_err("no port to listen on");
    assert_eq!(answer.code(), Some(ErrorCode::Internal), "{answer}\n{}", daemon.log());
    let text = answer.to_string();
    assert!(text.contains("this machine") && text.contains("loopback port"), "{text}");
    assert!(!text.contains("identity platform"), "{text}");
    assert_eq!(fake.stats().token.requests + fake.stats().devicecode, 0, "nothing reached the platform");
}
