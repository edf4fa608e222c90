//! The shapes `token --format` and `header` print an answer in: each is one value a shell, a mail client or
//! PowerShell takes as it is, so nothing here may add text around it.

use base64::Engine as _;
use graphbroker_client::{HeaderResponse, TokenResponse};

use crate::cli::TokenFormat;

/// The environment variable `token --format env` sets to the access token.
pub const ENV_ACCESS_TOKEN: &str = "GRAPHBROKER_ACCESS_TOKEN";

/// The environment variable `token --format env` sets to the token's expiry, in seconds since the epoch (an
/// absolute time, so that it stays true however long after `eval` a script reads it).
pub const ENV_EXPIRES_AT: &str = "GRAPHBROKER_TOKEN_EXPIRES_AT";

/// `token`'s answer in `format`, without the final newline; or what went wrong, for the user.
pub fn token(format: TokenFormat, token: &TokenResponse) -> Result<String, String> {
    Ok(match format {
        TokenFormat::Raw => token.access_token.clone(),
        TokenFormat::Header => format!("Authorization: {} {}", token.token_type, token.access_token),
        TokenFormat::Json => serde_json::to_string(token).map_err(|e| e.to_string())?,
        TokenFormat::Env => format!(
            "export {ENV_ACCESS_TOKEN}={}\nexport {ENV_EXPIRES_AT}={}",
            shell_quote(&token.access_token),
            token.expires_at.0
        ),
        TokenFormat::Xoauth2 => xoauth2(&token.account.username, &token.access_token),
        TokenFormat::Kubectl => crate::kubectl::exec_credential(
            token,
            std::env::var(crate::kubectl::EXEC_INFO_ENV).ok().filter(|info| !info.is_empty()).as_deref(),
        )?,
    })
}

/// The SASL XOAUTH2 initial client response (the form IMAP's `AUTHENTICATE XOAUTH2` and SMTP's `AUTH XOAUTH2`
/// take): base64 of `user=…^Aauth=Bearer …^A^A`, as Google and Microsoft document it for mail clients.
pub fn xoauth2(username: &str, access_token: &str) -> String {
    let response = format!("user={username}\x01auth=Bearer {access_token}\x01\x01");
    base64::engine::general_purpose::STANDARD.encode(response)
}

/// A PowerShell hashtable literal of the headers, for `$Header = …` and `Invoke-RestMethod -Headers $Header`.
pub fn powershell_hashtable(headers: &HeaderResponse) -> String {
    format!(
        "@{{ 'Authorization' = {}; 'Content-Type' = {} }}",
        powershell_quote(&headers.authorization),
        powershell_quote(&headers.content_type)
    )
}

/// `value` as one POSIX shell word: single-quoted, each `'` closed, escaped and reopened. Nothing is special
/// inside single quotes, so `$`, backquotes and newlines stay literal.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `value` as a PowerShell verbatim string. PowerShell takes the typographic single quotes as quote marks too
/// (about_Quoting_Rules), so every one of them is doubled, not only `'`.
fn powershell_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_keep_quotes_and_dollars_literal() {
        assert_eq!(shell_quote("a.b-c_d"), "'a.b-c_d'");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
    }

    #[test]
    fn powershell_strings_double_every_single_quote_mark() {
        assert_eq!(powershell_quote("Bearer x.y"), "'Bearer x.y'");
        assert_eq!(powershell_quote("a'b\u{2019}c"), "'a''b\u{2019}\u{2019}c'");
    }

    #[test]
    fn xoauth2_is_the_documented_sasl_string() {
        // The example of Google's XOAUTH2 protocol page: user someuser@example.com, token ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg.
        let encoded = xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
        assert_eq!(
            encoded,
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }
}
