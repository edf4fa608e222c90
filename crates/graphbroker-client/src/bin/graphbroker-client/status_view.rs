//! `status` for a person: one block per profile, aligned labels, times as "time left". Never a token value (the
//! daemon's status answer has none to show).

use std::fmt::Write;
use std::time::SystemTime;

use graphbroker_client::protocol::{ProfileStatus, StoreKind};
use graphbroker_client::{SignInFlow, SignInPrompt, StatusResponse};

use crate::ui::{format_time_left, time_left};

/// The text `status` prints, with times left measured from `now`.
pub fn render_status(status: &StatusResponse, now: SystemTime) -> String {
    let mut out = String::new();
    let counters = &status.counters;
    let _ = writeln!(out, "graphbrokerd {} (protocol {})", status.daemon, status.protocol);
    let _ = writeln!(
        out,
        "requests {} (cache hits {}), refreshes {}, sign-ins {}, errors {}",
        counters.requests, counters.cache_hits, counters.refreshes, counters.signins, counters.errors
    );
    if status.profiles.is_empty() {
        let _ = writeln!(out, "\nno profiles configured");
    }
    for profile in &status.profiles {
        out.push('\n');
        render_profile(&mut out, profile, profile.name == status.default_profile, now);
    }
    out
}

fn render_profile(out: &mut String, profile: &ProfileStatus, is_default: bool, now: SystemTime) {
    let _ = writeln!(out, "{}{}", profile.name, if is_default { " (default)" } else { "" });
    let account = match &profile.account {
        Some(account) => format!("{} (tenant {})", account.username, account.tenant_id),
        None => "not signed in".to_owned(),
    };
    row(out, "account", &account);
    row(out, "authority", &profile.authority);
    row(out, "client id", &profile.client_id);
    row(out, "flow", flow_name(profile.flow));
    let store = match profile.store {
        StoreKind::Keyring => "keyring",
        StoreKind::Memory => "memory (forgotten when graphbrokerd stops)",
    };
    match &profile.store_error {
        Some(problem) => row(out, "store", &format!("{store}, not working: {problem}")),
        None => row(out, "store", store),
    }
    let signin = match &profile.signin {
        Some(prompt) => format!("pending: {}{}", prompt_summary(prompt), left_suffix(prompt.expires_at(), now)),
        None => "none pending".to_owned(),
    };
    row(out, "sign-in", &signin);
    if profile.tokens.is_empty() {
        row(out, "tokens", "none cached");
    }
    for (index, token) in profile.tokens.iter().enumerate() {
        let label = if index == 0 { "tokens" } else { "" };
        row(out, label, &format!("{}{}", token.scopes.join(" "), left_suffix(&token.expires_at, now)));
    }
}

fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<10} {value}");
}

fn flow_name(flow: SignInFlow) -> &'static str {
    match flow {
        SignInFlow::Device => "device",
        SignInFlow::Browser => "browser",
        SignInFlow::Auto => "auto",
    }
}

fn prompt_summary(prompt: &SignInPrompt) -> String {
    match prompt {
        SignInPrompt::Device { verification_uri, user_code, .. } => {
            format!("open {verification_uri} and enter {user_code}")
        }
        SignInPrompt::Browser { url, .. } => format!("open {url}"),
    }
}

fn left_suffix(expires_at: &str, now: SystemTime) -> String {
    match humantime::parse_rfc3339_weak(expires_at) {
        Ok(at) if time_left(at, now).is_zero() => format!(" (expired {expires_at})"),
        Ok(at) => format!(" ({} left)", format_time_left(time_left(at, now))),
        Err(_) => format!(" (expires {expires_at})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graphbroker_client::AccountInfo;
    use graphbroker_client::protocol::{CachedTokenStatus, Counters};

    fn status() -> StatusResponse {
        StatusResponse {
            protocol: 1,
            daemon: "0.1.0".into(),
            default_profile: "work".into(),
            counters: Counters { requests: 12, cache_hits: 10, refreshes: 2, signins: 1, errors: 0 },
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
                            expires_at: "2026-11-27T03:00:00Z".into(),
                        },
                        CachedTokenStatus {
                            scopes: vec!["https://outlook.office.com/IMAP.AccessAsUser.All".into()],
                            expires_at: "2026-11-27T02:00:00Z".into(),
                        },
                    ],
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
                        expires_at: "2026-11-27T02:25:00Z".into(),
                    }),
                    tokens: vec![],
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
requests 12 (cache hits 10), refreshes 2, sign-ins 1, errors 0

work (default)
  account    adele@contoso.com (tenant t)
  authority  https://login.microsoftonline.com/contoso.onmicrosoft.com
  client id  14d82eec-204b-4c2f-b7e8-296a70dab67e
  flow       auto
  store      keyring
  sign-in    none pending
  tokens     https://graph.microsoft.com/User.Read (49:58 left)
             https://outlook.office.com/IMAP.AccessAsUser.All (expired 2026-11-27T02:00:00Z)

home
  account    not signed in
  authority  https://login.microsoftonline.com/consumers
  client id  c
  flow       device
  store      keyring, not working: the keychain is locked; unlock it
  sign-in    pending: open https://microsoft.com/devicelogin and enter ABCD1234 (14:58 left)
  tokens     none cached
";
        assert_eq!(text, expected);
    }
}
