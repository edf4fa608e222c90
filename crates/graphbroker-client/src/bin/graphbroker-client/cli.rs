//! The command line: flags, subcommands, and how they become protocol queries.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use graphbroker_client::{SignInFlow, TokenQuery, split_scopes};

use crate::exit_status::EXIT_STATUS_HELP;
use crate::service::ServiceAction;

/// The default `--timeout`: a device code lives 15 minutes, so waiting that long lets a user finish any sign-in
/// the daemon started on this command's behalf.
pub const DEFAULT_TIMEOUT_SECS: u64 = 900;

const ABOUT: &str = "Get Microsoft Entra ID access tokens from graphbrokerd";

const LONG_ABOUT: &str = "\
Get Microsoft Entra ID access tokens from graphbrokerd, the per-user token broker.

The token (or header) is the only thing ever printed on stdout; prompts, progress and errors go to stderr.
When a sign-in is needed, the instruction is shown on stderr and the command waits for it (see --timeout).
When graphbrokerd is not running it is started (see --no-autostart): from next to this program, else from PATH,
or the program named by GRAPHBROKERD_PATH. After `graphbroker-client service install` the service manager starts
it instead, on the first request.

Examples:
  graphbroker-client token --scopes User.Read
  curl -H \"$(graphbroker-client header --scopes User.Read)\" https://graph.microsoft.com/v1.0/me";

#[derive(Debug, Parser)]
#[command(name = "graphbroker-client", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// The socket graphbrokerd listens on [default: $XDG_RUNTIME_DIR/graphbroker/graphbroker.sock, else
    /// $TMPDIR/graphbroker-UID/graphbroker.sock when $TMPDIR is private to you; never a shared /tmp]
    #[arg(long, global = true, env = graphbroker_client::protocol::SOCKET_ENV, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Do not start graphbrokerd when it is not running; fail with status 3 instead
    #[arg(long, global = true)]
    pub no_autostart: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an access token (signing in first when needed)
    Token {
        #[command(flatten)]
        request: TokenArgs,
        /// What to print: the bare token (`raw`, also spelled `token`), the daemon's JSON answer, `export` lines
        /// for a POSIX shell's `eval`, an `Authorization: Bearer …` line, or a SASL XOAUTH2 string for mail
        #[arg(long, value_enum, default_value_t = TokenFormat::Raw)]
        format: TokenFormat,
    },
    /// Print the `Authorization: Bearer …` header line (for `curl -H "$(…)"`)
    Header {
        #[command(flatten)]
        request: TokenArgs,
        /// What to print: the header line, or the daemon's JSON headers
        #[arg(long, value_enum, default_value_t = HeaderFormat::Header)]
        format: HeaderFormat,
        /// Print a PowerShell hashtable literal of the headers instead, for `$Header = …` (PowerShell 7.4+)
        #[arg(long, conflicts_with = "format")]
        powershell: bool,
    },
    /// Sign in (or join the sign-in under way) and wait until it completes
    Signin {
        /// The profile [default: the daemon's default profile]
        #[arg(long)]
        profile: Option<String>,
        /// How to sign in [default: the profile's flow]
        #[arg(long, value_parser = flow_parser())]
        flow: Option<SignInFlow>,
        /// Seconds to wait for the sign-in to complete
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
    },
    /// Forget the profile's account: its keychain entry and cached tokens
    Signout {
        /// The profile [default: the daemon's default profile]
        #[arg(long)]
        profile: Option<String>,
    },
    /// Show profiles, accounts, pending sign-ins and cached token expiries (never token values)
    Status {
        /// Print the daemon's JSON answer instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Write a commented config file, or show the configuration graphbrokerd runs with
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Refresh every account nobody has used for its profile's rolling_refresh, before its sign-in expires
    /// (the service's daily timer runs this); exit status 4 when an account needs a new sign-in
    RefreshIdle,
    /// Print the daemon's metrics in the Prometheus text format (counts only; never scopes, accounts or tokens)
    Metrics,
    /// Call Microsoft Graph through graphbrokerd, which attaches the token (e.g. `graph GET /me`)
    #[command(after_help = GRAPH_EXAMPLES)]
    Graph(GraphArgs),
    /// Show the client's and the daemon's versions
    Version,
    /// Show the audit log: which program got which token, and when (never a token)
    Audit(crate::policy_command::AuditArgs),
    /// Show or change who may have which token (`[policy]` in the daemon's config), and answer waiting requests
    Policy {
        #[command(subcommand)]
        action: crate::policy_command::PolicyAction,
    },
    /// Run graphbrokerd as a user service (systemd, or launchd on macOS), started on the first request
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// git's credential helper for Azure DevOps: `git config --global credential.https://dev.azure.com.helper
    /// '!graphbroker-client git-credential'` (other hosts get an empty answer)
    GitCredential(GitCredentialArgs),
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell) on stdout
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell the script is for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Write a commented config file (every key with its default) where graphbrokerd reads it
    Init {
        /// The file to write [default: $GRAPHBROKER_CONFIG, else the platform config dir's graphbroker/config.toml]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Replace an existing file (atomically: the old one stays whole until the new one is in place)
        #[arg(long)]
        force: bool,
    },
    /// Print the configuration the running graphbrokerd uses, with the file and line of each value
    Show {
        /// Print the daemon's JSON answer instead of aligned lines
        #[arg(long)]
        json: bool,
    },
}
const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  graphbroker-client completions bash > ~/.local/share/bash-completion/completions/graphbroker-client
  graphbroker-client completions zsh > ~/.zfunc/_graphbroker-client    # with fpath+=(~/.zfunc) before compinit
  graphbroker-client completions fish > ~/.config/fish/completions/graphbroker-client.fish";

const GRAPH_EXAMPLES: &str = "\
Examples:
  graphbroker-client graph GET /me
  graphbroker-client graph GET '/me/messages?$top=5' --scopes Mail.Read
  graphbroker-client graph POST /me/sendMail --scopes Mail.Send --data @mail.json
  graphbroker-client graph PUT /me/drive/root:/report.pdf:/content --scopes Files.ReadWrite --data @report.pdf";

/// `git-credential`'s arguments; the protocol itself is `git_credential.rs`.
#[derive(Debug, Args)]
pub struct GitCredentialArgs {
    /// What git asks: `get` a credential, `store` one that worked, `erase` one that was refused
    #[arg(value_enum)]
    pub action: GitAction,
    /// The profile [default: the daemon's default profile]; map URLs to profiles with git's URL-scoped config
    /// (`credential.https://dev.azure.com/contoso.helper`)
    #[arg(long)]
    pub profile: Option<String>,
    /// Seconds to wait for a sign-in when one is needed
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GitAction {
    Get,
    Store,
    Erase,
}

/// The options shared by `token` and `header`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Scopes, separated by spaces or commas; repeatable. Short names mean Microsoft Graph (User.Read).
    /// [default: the profile's scopes]
    #[arg(long = "scopes", visible_alias = "scope", value_name = "SCOPES")]
    pub scopes: Vec<String>,
    /// The profile [default: the daemon's default profile]
    #[arg(long)]
    pub profile: Option<String>,
    /// Seconds the token must still be valid [default: the profile's min_valid]
    #[arg(long, value_name = "SECS")]
    pub min_valid: Option<u64>,
    /// Seconds to wait for a sign-in when one is needed
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// Do not wait for a sign-in: show its prompt and exit with status 4
    #[arg(long)]
    pub no_wait: bool,
    /// A claims challenge from a resource's WWW-Authenticate header (JSON or base64); bypasses the cache
    #[arg(long, value_name = "CLAIMS")]
    pub claims: Option<String>,
}

impl TokenArgs {
    /// The query to send, with `wait` left to the waiting logic.
    pub fn query(&self) -> TokenQuery {
        TokenQuery {
            scopes: join_scopes(&self.scopes),
            profile: self.profile.clone(),
            min_valid: self.min_valid,
            wait: None,
            claims: self.claims.clone(),
        }
    }

    /// How long to wait for a sign-in; zero means answer at once.
    pub fn wait_limit(&self) -> Duration {
        if self.no_wait { Duration::ZERO } else { Duration::from_secs(self.timeout) }
    }
}

// `graph METHOD PATH`: one Graph call through the daemon's proxy (run by `graph.rs`).
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The HTTP method: GET, POST, PATCH, PUT, DELETE…
    pub method: String,
    /// The Graph path (`/me`, `/v1.0/me`, `/beta/me`) with any query, or an @odata.nextLink URL
    pub path: String,
    /// Scopes of the token to attach, separated by spaces or commas [default: the profile's scopes]
    #[arg(long = "scopes", visible_alias = "scope", value_name = "SCOPES")]
    pub scopes: Vec<String>,
    /// The profile [default: the daemon's default profile]
    #[arg(long)]
    pub profile: Option<String>,
    /// A header to send on to Graph, `Name: value`; repeatable
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The request body: text, `@FILE` (streamed from the file) or `@-` (stdin). Content-Type defaults to
    /// application/json for text and stdin, application/octet-stream for a file
    #[arg(short = 'd', long, value_name = "DATA")]
    pub data: Option<String>,
    /// Use the beta endpoint for a path without a version
    #[arg(long)]
    pub beta: bool,
    /// Print the status line and the answer's headers before the body
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Seconds to wait for a sign-in when one is needed
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// Do not wait for a sign-in: show its prompt and exit with status 4
    #[arg(long)]
    pub no_wait: bool,
}

/// Joins every `--scopes` value into the one space-separated list the protocol takes; `None` when no scope was
/// given, so that the daemon uses the profile's defaults.
pub fn join_scopes(values: &[String]) -> Option<String> {
    let scopes: Vec<String> = values.iter().flat_map(|value| split_scopes(value)).collect();
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenFormat {
    /// The bare access token; `token` is the name it had first.
    #[value(alias = "token")]
    Raw,
    Json,
    Env,
    Header,
    Xoauth2,
    /// A client-go `ExecCredential` (kubeconfig `users[].user.exec`); the scope defaults to AKS's.
    Kubectl,
}

impl TokenFormat {
    /// The format named `name` as `--format` spells it (aliases included).
    pub fn from_name(name: &str) -> Option<Self> {
        <Self as ValueEnum>::from_str(name, false).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeaderFormat {
    Header,
    Json,
}

/// The flows `signin --flow` offers: the two a person chooses between for one sign-in. `auto` is left out on
/// purpose: it is a profile setting (the daemon decides by whether it sees a graphical session), and leaving out
/// `--flow` already means the profile's flow.
pub const SIGNIN_FLOWS: [SignInFlow; 2] = [SignInFlow::Device, SignInFlow::Browser];

/// `--flow`: exactly the protocol's spellings of [`SIGNIN_FLOWS`] (listed by `--help` and in the usage error),
/// read with the protocol's own `FromStr`, so the command line cannot spell a flow differently from the daemon.
fn flow_parser() -> impl TypedValueParser<Value = SignInFlow> {
    PossibleValuesParser::new(SIGNIN_FLOWS.map(SignInFlow::as_str)).try_map(|name| name.parse::<SignInFlow>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("graphbroker-client").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn scopes_are_joined_from_every_flag_and_separator() {
        let cli = parse(&["token", "--scopes", "User.Read,Mail.Read", "--scopes", " Calendars.Read  Files.Read,"]);
        let Command::Token { request, format } = cli.command else { panic!("not token") };
        assert_eq!(format, TokenFormat::Raw);
        assert_eq!(request.query().scopes.as_deref(), Some("User.Read Mail.Read Calendars.Read Files.Read"));
    }

    #[test]
    fn no_scopes_leaves_the_choice_to_the_profile() {
        let cli = parse(&["header", "--profile", "work", "--scopes", " , "]);
        let Command::Header { request, format, powershell } = cli.command else { panic!("not header") };
        assert_eq!(format, HeaderFormat::Header);
        assert!(!powershell);
        let query = request.query();
        assert_eq!(query.scopes, None);
        assert_eq!(query.profile.as_deref(), Some("work"));
        assert_eq!(query.wait, None);
    }

    #[test]
    fn waiting_is_bounded_by_timeout_and_off_with_no_wait() {
        let cli = parse(&["token"]);
        let Command::Token { request, .. } = cli.command else { panic!("not token") };
        assert_eq!(request.wait_limit(), Duration::from_secs(900));
        let cli = parse(&["token", "--timeout", "30", "--no-wait"]);
        let Command::Token { request, .. } = cli.command else { panic!("not token") };
        assert_eq!(request.wait_limit(), Duration::ZERO);
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["token", "--socket", "/x.sock", "--no-autostart", "--min-valid", "600", "--claims", "{}"]);
        assert_eq!(cli.socket.as_deref(), Some(std::path::Path::new("/x.sock")));
        assert!(cli.no_autostart);
        let Command::Token { request, .. } = cli.command else { panic!("not token") };
        assert_eq!(request.query().min_valid, Some(600));
        assert_eq!(request.query().claims.as_deref(), Some("{}"));
    }

    #[test]
    fn service_takes_an_action() {
        let cli = parse(&["service", "install"]);
        assert!(matches!(cli.command, Command::Service { action: ServiceAction::Install }));
        let cli = parse(&["service", "status", "--socket", "/x.sock"]);
        assert!(matches!(cli.command, Command::Service { action: ServiceAction::Status }));
        assert!(Cli::try_parse_from(["graphbroker-client", "service"]).is_err());
    }

    #[test]
    fn config_takes_init_or_show() {
        let cli = parse(&["config", "init", "--config", "/x.toml", "--force"]);
        let Command::Config { action: ConfigAction::Init { config, force } } = cli.command else { panic!("not init") };
        assert_eq!(config.as_deref(), Some(std::path::Path::new("/x.toml")));
        assert!(force);
        let cli = parse(&["config", "show", "--json"]);
        assert!(matches!(cli.command, Command::Config { action: ConfigAction::Show { json: true } }));
        assert!(Cli::try_parse_from(["graphbroker-client", "config"]).is_err());
    }

    #[test]
    fn flows_are_spelled_as_the_protocol_spells_them() {
        for flow in SIGNIN_FLOWS {
            let cli = parse(&["signin", "--flow", flow.as_str()]);
            let Command::Signin { flow: parsed, .. } = cli.command else { panic!("not signin") };
            assert_eq!(parsed, Some(flow));
        }
        let Command::Signin { flow, .. } = parse(&["signin"]).command else { panic!("not signin") };
        assert_eq!(flow, None, "no --flow leaves the choice to the profile");

        use clap::CommandFactory;
        let mut command = Cli::command();
        let help = command.find_subcommand_mut("signin").unwrap().render_help().to_string();
        assert!(help.contains("[possible values: device, browser]"), "{help}");
    }

    #[test]
    fn token_formats_keep_token_as_the_name_of_raw() {
        for (name, expected) in [
            ("raw", TokenFormat::Raw),
            ("token", TokenFormat::Raw),
            ("json", TokenFormat::Json),
            ("env", TokenFormat::Env),
            ("header", TokenFormat::Header),
            ("xoauth2", TokenFormat::Xoauth2),
        ] {
            let Command::Token { format, .. } = parse(&["token", "--format", name]).command else {
                panic!("not token")
            };
            assert_eq!(format, expected, "{name}");
            assert_eq!(TokenFormat::from_name(name), Some(expected), "{name}");
        }
        assert_eq!(TokenFormat::from_name("yaml"), None);
    }

    #[test]
    fn usage_errors_are_refused() {
        let bad = [
            &["token", "--format", "yaml"][..],
            &["signin", "--flow", "auto"][..],
            &["token", "--timeout", "-1"][..],
            &["header", "--powershell", "--format", "json"][..],
            &["frobnicate"][..],
        ];
        for args in bad {
            let parsed = Cli::try_parse_from(std::iter::once("graphbroker-client").chain(args.iter().copied()));
            assert!(parsed.is_err(), "{args:?} parsed");
        }
    }
}
