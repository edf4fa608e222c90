//! One function per subcommand: ask the daemon, print the answer.

use std::io::Write;
use std::time::Duration;

use graphbroker_client::{
    Client, Error, HeaderResponse, PROTOCOL_VERSION, SignInState, TokenAnswer, TokenQuery, TokenResponse,
};

use crate::autostart::ensure_daemon;
use crate::cli::{Cli, Command, ConfigAction, HeaderFormat, TokenArgs, TokenFormat};
use crate::config_command;
use crate::exit_status::{ExitStatus, Failure};
use crate::format;
use crate::generate;
use crate::output::print_line;
use crate::service;
use crate::status_view::render_status;
use crate::ui::Ui;

/// Runs the command the user asked for.
pub async fn run(cli: &Cli, ui: &Ui) -> Result<(), Failure> {
    // `service` sets up what starts the daemon and talks to the service manager only; it needs no socket path.
    if let Command::Service { action } = &cli.command {
        return service::run(*action, cli.socket.as_deref(), ui);
    }
    // `config init` writes a file and talks to no daemon.
    if let Command::Config { action: ConfigAction::Init { config, force } } = &cli.command {
        return config_command::init(config.as_deref(), *force);
    }
    // Generated from the command line's definition alone: no daemon, no socket.
    if let Command::Audit(args) = &cli.command {
        return crate::policy_command::audit(args);
    }
    if let Command::Completions { shell } = &cli.command {
        return generate::completions(*shell);
    }
    // Reads git's description first: the daemon is started only for an Azure DevOps host, and never to `erase`
    // (a daemon not running has no token to drop).
    if let Command::GitCredential(args) = &cli.command {
        let client = async || {
            let client = make_client(cli)?;
            if !cli.no_autostart && args.action != crate::cli::GitAction::Erase {
                ensure_daemon(&client, cli.socket.as_deref(), ui).await?;
            }
            Ok(client)
        };
        return crate::git_credential::run(args, client, ui).await;
    }
    let client = make_client(cli)?;
    // `status` and `version` report on the daemon rather than need it, so they never start one.
    let wants_daemon =
        !matches!(cli.command, Command::Status { .. } | Command::Version | Command::Metrics | Command::Config { .. });
    if wants_daemon && !cli.no_autostart {
        ensure_daemon(&client, cli.socket.as_deref(), ui).await?;
    }
    match &cli.command {
        Command::Token { request, format } => token(&client, None, request, *format, ui).await,
        Command::Header { request, format, powershell } => {
            let format = if *powershell { HeaderShape::PowerShell } else { HeaderShape::Format(*format) };
            header(&client, None, request, format, ui).await
        }
        Command::Signin { profile, flow, timeout } => {
            signin(&client, profile.as_deref(), *flow, Duration::from_secs(*timeout), ui).await
        }
        Command::Signout { profile } => signout(&client, profile.as_deref()).await,
        Command::Status { json } => status(&client, *json).await,
        Command::Version => version(&client).await,
        Command::Config { action: ConfigAction::Show { json } } => config_command::show(&client, *json).await,
        Command::Config { action: ConfigAction::Init { config, force } } => {
            config_command::init(config.as_deref(), *force)
        }
        Command::RefreshIdle => refresh_idle(&client).await,
        Command::Metrics => print_line(client.metrics().await?.trim_end()),
        Command::Graph(args) => crate::graph::run(&client, args, ui).await,
        Command::Service { action } => service::run(*action, cli.socket.as_deref(), ui),
        Command::Completions { shell } => generate::completions(*shell),
        Command::Audit(args) => crate::policy_command::audit(args),
        Command::Policy { action } => crate::policy_command::policy(&client, action).await,
        Command::GitCredential(args) => crate::git_credential::run(args, async || Ok(client), ui).await,
    }
}

fn make_client(cli: &Cli) -> Result<Client, Failure> {
    Ok(match &cli.socket {
        Some(socket) => Client::new(socket),
        None => Client::from_env()?,
    }
    .showing_prompts(at_terminal()))
}

/// Whether a sign-in's prompt, which goes to stderr, reaches a person at a terminal. When it does not (a script
/// logging stderr, a service), the daemon may show it as a desktop notification instead.
pub fn at_terminal() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
}

/// Carries on with `token` or `header` from the daemon's answer to their first request, which the fast path
/// (`fast_path.rs`) sent: the daemon answered, so it runs and needs no starting.
pub async fn continue_after(cli: &Cli, first: Error, ui: &Ui) -> Result<(), Failure> {
    let client = match &cli.socket {
        Some(socket) => Client::new(socket),
        None => Client::from_env()?,
    }
    .showing_prompts(at_terminal());
    match &cli.command {
        Command::Token { request, format } => token(&client, Some(first), request, *format, ui).await,
        Command::Header { request, format, powershell } => {
            let format = if *powershell { HeaderShape::PowerShell } else { HeaderShape::Format(*format) };
            header(&client, Some(first), request, format, ui).await
        }
        _ => run(cli, ui).await,
    }
}

async fn token(
    client: &Client,
    first: Option<Error>,
    request: &TokenArgs,
    format: TokenFormat,
    ui: &Ui,
) -> Result<(), Failure> {
    print_token(&ask::<TokenResponse>(client, first, request, ui).await?, format)
}

/// The one way `token` and `header` ask: within `--timeout`, showing a sign-in's prompt, with a spinner while
/// waiting, and the failure worded for how long it waited.
async fn ask<T: TokenAnswer>(
    client: &Client,
    first: Option<Error>,
    request: &TokenArgs,
    ui: &Ui,
) -> Result<T, Failure> {
    let limit = request.wait_limit();
    let on_prompt = |prompt: &_, reason| ui.show_prompt(prompt, reason);
    let answer = ui.while_waiting(client.answer_with_signin::<T>(first, &request.query(), limit, on_prompt)).await;
    answer.map_err(|error| Failure::after_wait(&error, limit))
}

/// Prints `token` as `--format` asks.
pub fn print_token(token: &graphbroker_client::TokenResponse, format: TokenFormat) -> Result<(), Failure> {
    let text = format::token(format, token).map_err(|error| Failure::new(ExitStatus::Other, error))?;
    print_line(&text)
}

/// How `header` prints: one of `--format`'s shapes, or `--powershell`'s hashtable.
#[derive(Debug, Clone, Copy)]
pub enum HeaderShape {
    Format(HeaderFormat),
    PowerShell,
}

async fn header(
    client: &Client,
    first: Option<Error>,
    request: &TokenArgs,
    format: HeaderShape,
    ui: &Ui,
) -> Result<(), Failure> {
    print_headers(&ask::<HeaderResponse>(client, first, request, ui).await?, format)
}

/// Prints `headers` in `shape`.
pub fn print_headers(headers: &graphbroker_client::HeaderResponse, shape: HeaderShape) -> Result<(), Failure> {
    let line = match shape {
        HeaderShape::Format(HeaderFormat::Header) => format!("Authorization: {}", headers.authorization),
        HeaderShape::Format(HeaderFormat::Json) => to_json(headers)?,
        HeaderShape::PowerShell => format::powershell_hashtable(headers),
    };
    print_line(&line)
}

async fn signin(
    client: &Client,
    profile: Option<&str>,
    flow: Option<graphbroker_client::SignInFlow>,
    limit: Duration,
    ui: &Ui,
) -> Result<(), Failure> {
    let started = client.signin(profile, flow).await?;
    if started.state == SignInState::SignedIn {
        let who = started.account.map(|account| account.username).unwrap_or_else(|| "an account".to_owned());
        return print_line(&format!("already signed in as {who} (profile {})", started.profile));
    }
    let Some(shown) = started.signin else {
        return Err(Failure::new(
            ExitStatus::Other,
            "graphbrokerd started a sign-in but sent no prompt; run `graphbroker-client status` to see it",
        ));
    };
    ui.show_prompt_under(&format!("signing in to profile {}", started.profile), &shown);
    // Waiting for a token with the profile's default scopes joins the sign-in just started: the daemon answers it
    // when the sign-in completes. Its prompt is the one already shown, unless the daemon replaced the sign-in.
    let query = TokenQuery { profile: Some(started.profile.clone()), ..TokenQuery::default() };
    let on_prompt = |prompt: &_, reason| {
        if *prompt != shown {
            ui.show_prompt(prompt, reason);
        }
    };
    let token = ui
        .while_waiting(client.token_with_signin(&query, limit, on_prompt))
        .await
        .map_err(|error| Failure::after_wait(&error, limit))?;
    print_line(&format!("signed in as {} (profile {})", token.account.username, token.profile))
}

async fn signout(client: &Client, profile: Option<&str>) -> Result<(), Failure> {
    let answer = client.signout(profile).await?;
    let line = match answer.account {
        Some(account) => format!(
            "signed out {} from profile {}; dropped {} cached token(s)",
            account.username, answer.profile, answer.tokens_dropped
        ),
        None => format!("profile {} had no account; dropped {} cached token(s)", answer.profile, answer.tokens_dropped),
    };
    print_line(&line)
}

async fn status(client: &Client, json: bool) -> Result<(), Failure> {
    let answer = client.status().await?;
    if json {
        print_line(
            &serde_json::to_string_pretty(&answer)
                .map_err(|error| Failure::new(ExitStatus::Other, error.to_string()))?,
        )
    } else {
        print_line(&crate::safe_text::for_terminal(render_status(&answer, std::time::SystemTime::now()).trim_end()))
    }
}

/// One line per profile; a profile that needs a sign-in (or could not be checked) fails the command, so that a
/// service manager marks its timer's run failed where the user looks for such things.
async fn refresh_idle(client: &Client) -> Result<(), Failure> {
    use graphbroker_client::protocol::RefreshIdleOutcome as Outcome;
    let answer = client.refresh_idle().await?;
    let mut worst = None;
    for profile in &answer.profiles {
        let what = match profile.outcome {
            Outcome::Refreshed => "refreshed".to_owned(),
            Outcome::NotDue => match profile.refreshed_at {
                Some(at) => {
                    format!("in use (last refreshed {})", humantime::format_rfc3339_seconds(at.to_system_time()))
                }
                None => "in use".to_owned(),
            },
            Outcome::Off => "rolling refresh off".to_owned(),
            Outcome::NoAccount => "not signed in".to_owned(),
            Outcome::SigninNeeded => {
                worst = Some(ExitStatus::SigninRequired);
                format!("sign-in needed: {}", profile.message.as_deref().unwrap_or("sign in again"))
            }
            Outcome::Failed | Outcome::Unknown => {
                worst.get_or_insert(ExitStatus::Other);
                format!("not checked: {}", profile.message.as_deref().unwrap_or("unknown outcome"))
            }
        };
        print_line(&format!("{}: {what}", profile.profile))?;
    }
    match worst {
        Some(status) => Err(Failure::new(status, "an account needs attention (see above)")),
        None => Ok(()),
    }
}

async fn version(client: &Client) -> Result<(), Failure> {
    print_line(&format!("graphbroker-client {} (protocol {PROTOCOL_VERSION})", env!("CARGO_PKG_VERSION")))?;
    let daemon = client.version().await?;
    print_line(&format!("graphbrokerd {} (protocol {})", daemon.daemon, daemon.protocol))?;
    if daemon.protocol != PROTOCOL_VERSION {
        let _ = writeln!(
            std::io::stderr(),
            "graphbroker-client: warning: graphbrokerd speaks protocol {} and this client speaks {PROTOCOL_VERSION}; \
             upgrade the older of the two",
            daemon.protocol
        );
    }
    Ok(())
}

fn to_json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|error| Failure::from(Error::Protocol(error.to_string())))
}
