//! `status` for a person: one block per profile, aligned labels, times as "time left". Never a token value (the
//! daemon's status answer has none to show).

use std::fmt::Write;
use std::time::SystemTime;

use graphbroker_client::StatusResponse;
use graphbroker_client::protocol::{EpochSeconds, LogDestination, ProfileStatus, StoreKind};

use crate::ui::format_time_left;

/// The text `status` prints, with times left measured from `now`.
pub fn render_status(status: &StatusResponse, now: SystemTime) -> String {
    let mut out = String::new();
    let counters = &status.counters;
    let _ = writeln!(out, "graphbrokerd {} (protocol {})", status.daemon, status.protocol);
    let _ = writeln!(
        out,
        "requests {} (cache hits {}), refreshes {}, sign-ins {}, signin_required {}, errors {}",
        counters.requests,
        counters.cache_hits,
        counters.refreshes,
        counters.signins,
        counters.signin_required,
        counters.errors
    );
    if let Some(log) = &status.log {
        let _ = writeln!(out, "log {}", log_text(log));
    }
    if status.profiles.is_empty() {
        let _ = writeln!(out, "\nno profiles configured");
    }
    for profile in &status.profiles {
        out.push('\n');
        render_profile(&mut out, profile, profile.name == status.default_profile, now);
    }
    out
}

/// Where the daemon's log is, said so that it can be read.
fn log_text(log: &LogDestination) -> String {
    match log {
        LogDestination::File { path } => format!("{path} (and {path}.1)"),
        LogDestination::Journal => "in the journal: journalctl --user -u graphbroker".to_owned(),
        LogDestination::Stderr => "to graphbrokerd's standard error".to_owned(),
    }
}

fn render_profile(out: &mut String, profile: &ProfileStatus, is_default: bool, now: SystemTime) {
    let _ = writeln!(out, "{}{}", profile.name, if is_default { " (default)" } else { "" });
    let account = match &profile.account {
        Some(account) => format!("{} (tenant {})", account.username, account.tenant_id),
        None => "not signed in".to_owned(),
    };
    row(out, "account", &account);
    if let Some(warning) = &profile.warning {
        row(out, "warning", &warning.message);
    }
    if let Some(expires_at) = profile.refresh_token_expires_at {
        let used = profile.refreshed_at.map(|at| format!("last used {}, ", date(at))).unwrap_or_default();
        row(out, "refresh", &format!("{used}expires {} unless used", date(expires_at)));
    }
    row(out, "authority", &profile.authority);
    row(out, "client id", &profile.client_id);
    row(out, "flow", profile.flow.as_str());
    let store = store_text(profile);
    match &profile.store_error {
        Some(problem) => row(out, "store", &format!("{store}, not working: {problem}")),
        None => row(out, "store", &store),
    }
    let signin = match &profile.signin {
        Some(prompt) => format!("pending: {}{}", prompt.action(), left_suffix(prompt.expires_at(), now)),
        None => "none pending".to_owned(),
    };
    row(out, "sign-in", &signin);
    if profile.tokens.is_empty() {
        row(out, "tokens", "none cached");
    }
    for (index, token) in profile.tokens.iter().enumerate() {
        let label = if index == 0 { "tokens" } else { "" };
        row(out, label, &format!("{}{}", token.scopes.join(" "), left_suffix(token.expires_at, now)));
    }
}

/// A day, for refresh-token times that are weeks apart.
fn date(at: EpochSeconds) -> String {
    humantime::format_rfc3339_seconds(at.to_system_time()).to_string().chars().take(10).collect()
}

/// The store in use, with why (the choice of `store = "auto"`) and what it does not survive.
fn store_text(profile: &ProfileStatus) -> String {
    let name = match profile.store {
        StoreKind::Keyutils => "kernel keyring",
        other => other.as_str(),
    };
    let mut notes: Vec<&str> = Vec::new();
    if let Some(reason) = profile.store_reason.as_deref().filter(|r| *r != "configured") {
        notes.push(reason);
    }
    match profile.store {
        StoreKind::Memory => notes.push("forgotten when graphbrokerd stops"),
        StoreKind::Keyutils => notes.push("lost at reboot"),
        _ => {}
    }
    if notes.is_empty() { name.to_owned() } else { format!("{name} ({})", notes.join("; ")) }
}

fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<10} {value}");
}

fn left_suffix(expires_at: EpochSeconds, now: SystemTime) -> String {
    match expires_at.left_after(now) {
        left if left.is_zero() => {
            format!(" (expired {})", humantime::format_rfc3339_seconds(expires_at.to_system_time()))
        }
        left => format!(" ({} left)", format_time_left(left)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graphbroker_client::SignInPrompt;
    use graphbroker_client::protocol::{CachedTokenStatus, Counters, SignInWarning, WarningKind};
    use graphbroker_client::{AccountInfo, SignInFlow};

    fn at(time: &str) -> EpochSeconds {
        EpochSeconds::from_system_time(humantime::parse_rfc3339_weak(time).unwrap())
    }

    fn status() -> StatusResponse {
        StatusResponse {
            protocol: 1,
            daemon: "0.1.0".into(),
            default_profile: "work".into(),
            counters: Counters {
                requests: 12,
                cache_hits: 10,
                refreshes: 2,
                signins: 1,
                errors: 0,
                signin_required: 3,
            },
            log: Some(LogDestination::File { path: "/home/u/.local/state/graphbroker/graphbrokerd.log".into() }),
            profiles: vec![
                ProfileStatus {
                    name: "work".into(),
                    authority: "https://login.microsoftonline.com/contoso.onmicrosoft.com".into(),
                    client_id: "14d82eec-204b-4c2f-b7e8-296a70dab67e".into(),
                    flow: SignInFlow::Auto,
                    store: StoreKind::Keyring,
                    store_error: None,
                    account: Some(AccountInfo {
                        username: "adele@contoso.com".into(),
                        home_account_id: "u.t".into(),
                        tenant_id: "t".into(),
                    }),
                    signin: None,
                    tokens: vec![
                        CachedTokenStatus {
                            scopes: vec!["https://graph.microsoft.com/User.Read".into()],
                            expires_at: at("2026-11-27T03:00:00Z"),
                        },
                        CachedTokenStatus {
                            scopes: vec!["https://outlook.office.com/IMAP.AccessAsUser.All".into()],
                            expires_at: at("2026-11-27T02:00:00Z"),
                        },
                    ],
                    store_reason: None,
                    refreshed_at: Some(at("2026-11-27T02:00:00Z")),
                    refresh_token_expires_at: Some(at("2027-02-25T02:00:00Z")),
                    warning: None,
                },
                ProfileStatus {
                    name: "home".into(),
                    authority: "https://login.microsoftonline.com/consumers".into(),
                    client_id: "c".into(),
                    flow: SignInFlow::Device,
                    store: StoreKind::Keyring,
                    store_error: Some("the keychain is locked; unlock it".into()),
                    account: None,
                    signin: Some(SignInPrompt::Device {
                        verification_uri: "https://microsoft.com/devicelogin".into(),
                        user_code: "ABCD1234".into(),
                        message: "To sign in, …".into(),
                        expires_at: at("2026-11-27T02:25:00Z"),
                    }),
                    tokens: vec![],
                    store_reason: None,
                    refreshed_at: None,
                    refresh_token_expires_at: None,
                    warning: Some(SignInWarning {
                        kind: WarningKind::SessionEnded,
                        message: "the identity platform ended the session of me@outlook.com (AADSTS700082): sign \
                                  in again with `graphbroker-client signin --profile home`"
                            .into(),
                        account: Some("me@outlook.com".into()),
                        at: Some(at("2026-11-26T00:00:00Z")),
                        error_codes: vec![700082],
                    }),
                },
            ],
        }
    }

    #[test]
    fn profiles_show_account_store_sign_in_and_token_expiries() {
        let now = humantime::parse_rfc3339_weak("2026-11-27T02:10:02Z").unwrap();
        let text = render_status(&status(), now);
        let expected = "\
graphbrokerd 0.1.0 (protocol 1)
requests 12 (cache hits 10), refreshes 2, sign-ins 1, signin_required 3, errors 0
log /home/u/.local/state/graphbroker/graphbrokerd.log (and /home/u/.local/state/graphbroker/graphbrokerd.log.1)

work (default)
  account    adele@contoso.com (tenant t)
  refresh    last used 2026-11-27, expires 2027-02-25 unless used
  authority  https://login.microsoftonline.com/contoso.onmicrosoft.com
  client id  14d82eec-204b-4c2f-b7e8-296a70dab67e
  flow       auto
  store      keyring
  sign-in    none pending
  tokens     https://graph.microsoft.com/User.Read (49:58 left)
             https://outlook.office.com/IMAP.AccessAsUser.All (expired 2026-11-27T02:00:00Z)

home
  account    not signed in
  warning    the identity platform ended the session of me@outlook.com (AADSTS700082): sign in again with `graphbroker-client signin --profile home`
  authority  https://login.microsoftonline.com/consumers
  client id  c
  flow       device
  store      keyring, not working: the keychain is locked; unlock it
  sign-in    pending: open https://microsoft.com/devicelogin and enter the code ABCD1234 (14:58 left)
  tokens     none cached
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_daemon_under_systemd_points_at_the_journal() {
        let mut status = status();
        status.log = Some(LogDestination::Journal);
        let text = render_status(&status, SystemTime::UNIX_EPOCH);
        assert!(text.contains("\nlog in the journal: journalctl --user -u graphbroker\n"), "{text}");
        status.log = None;
        assert!(!render_status(&status, SystemTime::UNIX_EPOCH).contains("\nlog "), "an older daemon: no line");
    }

    #[test]
    fn a_memory_store_says_it_is_forgotten() {
        let mut status = status();
        status.profiles[0].store = StoreKind::Memory;
        let text = render_status(&status, SystemTime::UNIX_EPOCH);
        assert!(text.contains("\n  store      memory (forgotten when graphbrokerd stops)\n"), "{text}");
    }

    #[test]
    fn the_kernel_keyring_says_why_and_that_a_reboot_loses_it() {
        let mut status = status();
        status.profiles[0].store = StoreKind::Keyutils;
        status.profiles[0].store_reason =
            Some("auto: no Secret Service answered on the session bus (DBUS_SESSION_BUS_ADDRESS is unset)".into());
        status.profiles[1].store_reason = Some("configured".into());
        let text = render_status(&status, SystemTime::UNIX_EPOCH);
        assert!(
            text.contains(
                "\n  store      kernel keyring (auto: no Secret Service answered on the session bus \
                 (DBUS_SESSION_BUS_ADDRESS is unset); lost at reboot)\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n  store      keyring, not working: "), "{text}");
    }
}
