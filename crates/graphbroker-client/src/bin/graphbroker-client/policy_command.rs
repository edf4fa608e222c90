//! `graphbroker-client audit` (reads the audit log the daemon writes) and `policy list|allow|deny|approve`.

use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use graphbroker_client::Client;
use graphbroker_protocol::{AuditEntry, AuditRoute, EpochSeconds, RuleQuery, default_audit_path};

use crate::exit_status::{ExitStatus, Failure};
use crate::output::print_line;

/// `audit`'s flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only decisions this recent (e.g. `1h`, `2d`, `30m`)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Only decisions on requests of this executable (its full path)
    #[arg(long, value_name = "PATH")]
    pub program: Option<String>,
    /// Print the log's JSON lines as they are
    #[arg(long)]
    pub json: bool,
}

/// What `policy` does.
#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Show the default, the rules (with their lines in the config file) and the requests waiting for an answer
    List {
        /// Print the daemon's JSON answer
        #[arg(long)]
        json: bool,
    },
    /// Write a rule that serves a program (by --program, --unit or --sandbox), and apply it
    Allow(RuleArgs),
    /// Write a rule that refuses a program, and apply it; or, given a request's ID, refuse that request
    Deny {
        /// A waiting request's ID (from `policy list` or the notification)
        id: Option<u64>,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Serve a waiting request (`default = "ask"`)
    Approve {
        /// The request's ID (from `policy list` or the notification)
        id: u64,
        /// Also write a rule, so the program is not asked again
        #[arg(long)]
        always: bool,
    },
}

/// Which callers a rule names, and what for.
#[derive(Debug, Args, Default)]
pub struct RuleArgs {
    /// An executable's full path
    #[arg(long, value_name = "PATH")]
    pub program: Option<String>,
    /// A systemd unit
    #[arg(long)]
    pub unit: Option<String>,
    /// A flatpak app id or a snap's name
    #[arg(long, value_name = "APP_ID")]
    pub sandbox: Option<String>,
    /// Only for this profile (repeatable) [default: every profile]
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Only these scopes, space- or comma-separated [default: every scope]
    #[arg(long)]
    pub scopes: Option<String>,
}

impl RuleArgs {
    fn query(&self, action: &str) -> RuleQuery {
        RuleQuery {
            action: action.to_owned(),
            program: self.program.clone(),
            unit: self.unit.clone(),
            sandbox: self.sandbox.clone(),
            profiles: (!self.profiles.is_empty()).then(|| self.profiles.join(" ")),
            scopes: self.scopes.clone(),
        }
    }
}

pub async fn policy(client: &Client, action: &PolicyAction) -> Result<(), Failure> {
    let change = match action {
        PolicyAction::List { json } => return list(client, *json).await,
        PolicyAction::Allow(rule) => client.add_policy_rule(&rule.query("allow")).await?,
        PolicyAction::Deny { id: Some(id), .. } => client.answer_ask(*id, false, false).await?,
        PolicyAction::Deny { id: None, rule } => client.add_policy_rule(&rule.query("deny")).await?,
        PolicyAction::Approve { id, always } => client.answer_ask(*id, true, *always).await?,
    };
    print_line(&change.message)
}

async fn list(client: &Client, json: bool) -> Result<(), Failure> {
    let policy = client.policy().await?;
    if json {
        return print_line(&serde_json::to_string_pretty(&policy).unwrap_or_default());
    }
    let mut out = vec![format!("default: {}", policy.default)];
    if let Some(file) = &policy.file {
        out.push(format!("file: {file}"));
    }
    for rule in &policy.rules {
        let line = rule.line.map(|l| format!("line {l}: ")).unwrap_or_default();
        let profiles = rule.profiles.as_ref().map(|p| format!(" profiles {}", p.join(","))).unwrap_or_default();
        let scopes = rule.scopes.as_ref().map(|s| format!(" scopes {}", s.join(" "))).unwrap_or_default();
        out.push(format!("{line}{} {} {}{profiles}{scopes}", rule.action, rule.matches, rule.value));
    }
    for ask in &policy.pending {
        out.push(format!(
            "waiting {}: {} asks for profile {} ({}); graphbroker-client policy approve {}",
            ask.id,
            ask.program.describe(),
            ask.profile,
            ask.scopes.join(" "),
            ask.id
        ));
    }
    print_line(&out.join("\n"))
}

pub fn audit(args: &AuditArgs) -> Result<(), Failure> {
    let path = default_audit_path()
        .ok_or_else(|| Failure::new(ExitStatus::Other, "no home directory: there is no audit log to read"))?;
    let mut paths: Vec<_> = (1..=2).rev().map(|n| format!("{}.{n}", path.display()).into()).collect();
    paths.push(path.clone());
    let since = args.since.map(|d| EpochSeconds::from_system_time(SystemTime::now() - d));
    let mut shown = Vec::new();
    let mut found = false;
    for file in paths {
        let text = match std::fs::read_to_string::<std::path::PathBuf>(file) {
            Ok(text) => text,
            Err(_) => continue,
        };
        found = true;
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<AuditEntry>(line) else { continue };
            if since.is_some_and(|since| entry.time < since)
                || args.program.as_ref().is_some_and(|p| entry.program.exe.as_ref() != Some(p))
            {
                continue;
            }
            shown.push(if args.json { line.to_owned() } else { describe(&entry) });
        }
    }
    if !found {
        return Err(Failure::new(
            ExitStatus::Other,
            format!("no audit log at {} yet: graphbrokerd writes it once it has served a request", path.display()),
        ));
    }
    if shown.is_empty() { Ok(()) } else { print_line(&shown.join("\n")) }
}

fn describe(entry: &AuditEntry) -> String {
    let time = humantime::format_rfc3339_seconds(entry.time.to_system_time());
    let route = match &entry.route {
        AuditRoute::Token => "token".to_owned(),
        AuditRoute::Header => "header".to_owned(),
        AuditRoute::Proxy { method, path } => format!("{method} {path}"),
        AuditRoute::Other => "other".to_owned(),
    };
    let mut outcome = match &entry.error {
        Some(code) if entry.outcome.as_str() != code => format!("{} {code}", entry.outcome.as_str()),
        _ => entry.outcome.as_str().to_owned(),
    };
    if let Some(n) = entry.repeats {
        // A folded line: n more of the same on one connection, the last at `time`.
        outcome = format!("{outcome} ×{n}");
    }
    let pid = entry.program.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    format!(
        "{time} {outcome} {}{pid} {} {} {route}",
        entry.program.describe(),
        entry.profile.as_deref().unwrap_or("-"),
        entry.scopes.join(" ")
    )
}
