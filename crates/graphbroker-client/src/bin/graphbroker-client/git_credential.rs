//! `git-credential get|store|erase`: git's credential-helper protocol (`git help credential`), so that git for
//! Azure DevOps sends an Entra access token as its HTTP password, the way Git Credential Manager does.
//!
//! git writes `key=value` lines on stdin up to a blank line (or the end) and reads the answer on stdout, so
//! stdout carries the protocol and nothing else: a sign-in prompt goes to stderr like every other command's.
//! A host that is not Azure DevOps gets an empty answer and exit status 0, so that git asks its next helper.
//! `erase` (git's word for "the server refused it") drops the daemon's cached token for Azure DevOps
//! (`DELETE /v1/token`), so that the next `get` answers a new one; other hosts are left alone.

use std::io::{BufRead, Write};

use graphbroker_client::protocol::DropTokenQuery;
use graphbroker_client::{Client, TokenQuery};

use crate::cli::{GitAction, GitCredentialArgs};
use crate::exit_status::{ExitStatus, Failure};
use crate::ui::Ui;

/// The Azure DevOps resource: every organisation takes tokens for it.
pub const AZURE_DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";

/// TEST ONLY: a comma-separated list of `host[:port]`s to treat as Azure DevOps, over `http` too, because tests
/// never leave loopback. Never set it outside a test: every host listed is sent a token.
pub const TEST_HOSTS_ENV: &str = "GRAPHBROKER_TEST_GIT_HOSTS";

/// The most input read from git: its description of one credential is a few short lines.
const MAX_INPUT: u64 = 64 * 1024;

/// What git described: the attributes this helper looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Description {
    pub protocol: Option<String>,
    pub host: Option<String>,
}

/// Reads git's description: `key=value` lines up to a blank line or the end of input. Unknown keys are skipped.
pub fn read_description(input: impl BufRead) -> Result<Description, String> {
    let mut description = Description::default();
    for line in input.take(MAX_INPUT).lines() {
        let line = line.map_err(|e| format!("could not read git's credential description on stdin: {e}"))?;
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "git's credential description has a line without `=` ({} bytes); this command is meant to be run \
                 by git as a credential helper",
                line.len()
            ));
        };
        match key {
            "protocol" => description.protocol = Some(value.to_owned()),
            "host" => description.host = Some(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    Ok(description)
}

/// Whether `description` names an Azure DevOps host this helper answers for: `dev.azure.com` or
/// `*.visualstudio.com` over https, or a host in `test_hosts` (see [`TEST_HOSTS_ENV`]).
pub fn is_azure_devops(description: &Description, test_hosts: Option<&str>) -> bool {
    let Some(host) = description.host.as_deref() else { return false };
    if test_hosts.is_some_and(|hosts| hosts.split(',').map(str::trim).any(|h| !h.is_empty() && h == host)) {
        return true;
    }
    if description.protocol.as_deref() != Some("https") {
        return false;
    }
    let name = host.strip_suffix(":443").unwrap_or(host);
    name == "dev.azure.com" || name.strip_suffix(".visualstudio.com").is_some_and(|org| !org.is_empty())
}

/// Runs the helper; `client` is made (and the daemon started) only when a token is to be fetched.
pub async fn run(
    args: &GitCredentialArgs,
    client: impl AsyncFnOnce() -> Result<Client, Failure>,
    ui: &Ui,
) -> Result<(), Failure> {
    let description =
        read_description(std::io::stdin().lock()).map_err(|message| Failure::new(ExitStatus::Usage, message))?;
    let test_hosts = std::env::var(TEST_HOSTS_ENV).ok();
    if !is_azure_devops(&description, test_hosts.as_deref()) {
        return Ok(());
    }
    match args.action {
        // The token lives in the daemon's cache; git's copy is not kept.
        GitAction::Store => Ok(()),
        // The server refused the token: the daemon drops its cached copy (never the account), so the next `get`
        // answers a new one.
        GitAction::Erase => erase(&client().await?, args).await,
        GitAction::Get => get(&client().await?, args, ui).await,
    }
}

fn query(args: &GitCredentialArgs) -> TokenQuery {
    TokenQuery { scopes: Some(AZURE_DEVOPS_SCOPE.to_owned()), profile: args.profile.clone(), ..TokenQuery::default() }
}

async fn erase(client: &Client, args: &GitCredentialArgs) -> Result<(), Failure> {
    let query = DropTokenQuery { profile: args.profile.clone(), scopes: Some(AZURE_DEVOPS_SCOPE.to_owned()) };
    match client.drop_token(&query).await {
        Ok(_) => Ok(()),
        // Nothing listens: no daemon, no cached token to drop.
        Err(error) if error.is_unreachable() => Ok(()),
        Err(error) => Err(Failure::from(error)),
    }
}

async fn get(client: &Client, args: &GitCredentialArgs, ui: &Ui) -> Result<(), Failure> {
    let limit = std::time::Duration::from_secs(args.timeout);
    let on_prompt = |prompt: &_, reason| ui.show_prompt(prompt, reason);
    let token = ui
        .while_waiting(client.token_with_signin(&query(args), limit, on_prompt))
        .await
        .map_err(|error| Failure::after_wait(&error, limit))?;
    let answer = format!("username={}\npassword={}\n", token.account.username, token.access_token);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(answer.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::new(ExitStatus::Other, format!("could not write to stdout: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(text: &str) -> Description {
        read_description(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_description_is_read_up_to_the_blank_line() {
        let d = described("protocol=https\nhost=Dev.Azure.com\npath=contoso/x\n\nhost=evil.example\n");
        assert_eq!(d, Description { protocol: Some("https".into()), host: Some("dev.azure.com".into()) });
        assert_eq!(described(""), Description::default());
        assert!(read_description("garbage\n".as_bytes()).is_err());
    }

    #[test]
    fn only_azure_devops_over_https_is_answered() {
        let d = |protocol: &str, host: &str| Description { protocol: Some(protocol.into()), host: Some(host.into()) };
        assert!(is_azure_devops(&d("https", "dev.azure.com"), None));
        assert!(is_azure_devops(&d("https", "contoso.visualstudio.com"), None));
        assert!(!is_azure_devops(&d("http", "dev.azure.com"), None), "never a token over plain http");
        assert!(!is_azure_devops(&d("https", "visualstudio.com"), None));
        assert!(!is_azure_devops(&d("https", ".visualstudio.com"), None));
        assert!(!is_azure_devops(&d("https", "dev.azure.com.evil.example"), None));
        assert!(!is_azure_devops(&d("https", "github.com"), None));
        assert!(!is_azure_devops(&Description::default(), None));
        assert!(is_azure_devops(&d("http", "127.0.0.1:8080"), Some("127.0.0.1:8080")));
        assert!(!is_azure_devops(&d("http", "127.0.0.1:8081"), Some("127.0.0.1:8080")));
        assert!(!is_azure_devops(&d("http", ""), Some("")));
    }
}
