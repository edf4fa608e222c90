//! Who may have which token: the `[policy]` of the config, applied to every token request (the socket's routes
//! and the Graph proxy alike, since all go through `Broker::token`), and the audit line of each decision.
//!
//! - `crate::config::policy` (`config/policy.rs`): the table as written and resolved, owned by the config that
//!   parses it; `decide` and `Rule::covers` here apply it. A request is matched against the rules: a `deny` rule that
//!   covers it refuses it, else an `allow` rule serves it, else `default` decides (allow, deny or ask). A rule
//!   names a caller by `program` (an executable, outside any sandbox), `unit` (a systemd unit, outside any
//!   sandbox) or `sandbox` (a flatpak app id or snap name) — a sandboxed app is only ever matched by its sandbox,
//!   since inside it `/usr/bin/python3` may be anything — and may narrow it to `profiles` and `scopes`.
//! - `guard.rs`: `Guard`, the policy's state the broker holds (the audit log's writer, the asks waiting).
//! - `context.rs`: the request's peer and route, a task-local set by the accept loop.
//! - `ask.rs`: a request held while the user is asked (desktop notification with actions, or `policy approve`).
//! - `edit.rs`: a rule appended to the config file ("always", `policy allow`), then applied as a reload.
//! - The audit line goes to `crate::audit`'s writer through a channel: the request never waits on the disk.

mod ask;
mod ask_notify;
pub mod context;
mod edit;
pub mod guard;
mod routes;

use std::borrow::Cow;
use std::sync::Arc;

use graphbroker_protocol::{AuditEntry, AuditOutcome, AuditRoute, EpochSeconds, ErrorCode};

pub use self::edit::NewRule;
pub use self::guard::{Answer, Approvals, Guard};
pub(crate) use self::routes::policy_routes;
use crate::audit::FoldKey;
use crate::broker::{Broker, IssuedToken, TokenRequest};
use crate::caller::Caller;
use crate::config::Profile;
pub use crate::config::policy::{PolicyConfig, PolicyDefault, RawPolicy, Rule, RuleAction, Selector};
use crate::error::ApiError;
use crate::scopes::ScopeSet;

/// What the policy says of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `by`: `rule:LINE` or `default`.
    Allow {
        by: Cow<'static, str>,
    },
    Deny {
        by: Cow<'static, str>,
    },
    Ask,
}

impl PolicyConfig {
    /// The decision for `caller` asking `profile` for `scopes`.
    pub fn decide(&self, caller: &Caller, profile: &Profile, scopes: &ScopeSet) -> Decision {
        let covering = |action: RuleAction| {
            self.rules.iter().find(|rule| rule.action == action && rule.covers(caller, profile, scopes))
        };
        let by = |rule: &Rule| rule.line.map_or(Cow::Borrowed("rule"), |line| Cow::Owned(format!("rule:{line}")));
        if let Some(rule) = covering(RuleAction::Deny) {
            return Decision::Deny { by: by(rule) };
        }
        if let Some(rule) = covering(RuleAction::Allow) {
            return Decision::Allow { by: by(rule) };
        }
        match self.default {
            // Borrowed: the default decides most requests, and its name costs none of them an allocation.
            PolicyDefault::Allow => Decision::Allow { by: Cow::Borrowed("default") },
            PolicyDefault::Deny => Decision::Deny { by: Cow::Borrowed("default") },
            PolicyDefault::Ask => Decision::Ask,
        }
    }
}

impl Rule {
    /// Whether this rule covers `caller` asking `profile` for `scopes`. An unknown caller is covered by none.
    pub fn covers(&self, caller: &Caller, profile: &Profile, scopes: &ScopeSet) -> bool {
        let Some(program) = caller.program() else { return false };
        let named = match (&self.selector, &program.sandbox) {
            (Selector::Sandbox(app), Some(sandbox)) => *app == sandbox.app_id,
            (Selector::Program(exe), None) => *exe == program.exe,
            (Selector::Unit(unit), None) => program.unit.as_ref() == Some(unit),
            _ => false,
        };
        if !named || self.profiles.as_ref().is_some_and(|names| !names.contains(&profile.name)) {
            return false;
        }
        let Some(allowed) = &self.scopes else { return true };
        let Ok(allowed) = ScopeSet::normalize(allowed, &profile.graph_resource) else { return false };
        allowed.resource().eq_ignore_ascii_case(scopes.resource())
            && scopes.scopes().iter().all(|s| allowed.scopes().iter().any(|a| a.eq_ignore_ascii_case(s)))
    }
}

impl Broker {
    /// The policy's state.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Applies the policy to the current request (see [`context`]) for `profile` and `scopes`: `Ok` to serve it.
    pub(crate) async fn authorize(self: &Arc<Self>, profile: &Profile, scopes: &ScopeSet) -> Result<(), ApiError> {
        let context = context::current();
        let caller = context.as_ref().map_or_else(
            || Arc::new(Caller::unknown(None, "not asked over the socket")),
            |context| context.peer.caller(),
        );
        if let Some(context) = &context {
            let draft = context.draft.lock().expect("draft lock");
            if let Some((allowed_profile, key, by)) = &draft.allowed
                && *allowed_profile == profile.name
                && key == scopes.key()
            {
                let by = by.clone();
                drop(draft);
                context.draft.lock().expect("draft lock").decided_by = Some(by);
                return Ok(());
            }
        }
        let decision = self.config().policy.decide(&caller, profile, scopes);
        let asked = decision == Decision::Ask;
        let outcome = match decision {
            Decision::Allow { by } => Ok(by),
            Decision::Deny { by } => Err((by, denied(&caller, profile, scopes, None))),
            // Boxed: the ask's state (the prompt, its wait) is large, and every allowed request would move it.
            Decision::Ask => Box::pin(self.ask(&caller, profile, scopes))
                .await
                .map(Cow::Owned)
                .map_err(|(by, error)| (Cow::Owned(by), error)),
        };
        let (by, result) = match outcome {
            Ok(by) => (by, Ok(())),
            Err((by, error)) => (by, Err(error)),
        };
        if let Some(context) = &context {
            let mut draft = context.draft.lock().expect("draft lock");
            // Only the user's answer is kept for the rest of the request: a rule decides again at no cost.
            if asked && result.is_ok() {
                draft.allowed = Some((profile.name.clone(), scopes.key().to_owned(), by.clone()));
            }
            draft.decided_by = Some(by);
        }
        result
    }

    /// Writes the audit line of a token request that came to `result`; a cache hit like the last one of its
    /// connection is only counted (`crate::audit::Fold`).
    pub(crate) fn audit(&self, request: &TokenRequest, result: &Result<IssuedToken, ApiError>) {
        let Some(log) = self.guard.audit.get() else { return };
        let context = context::current();
        let now = EpochSeconds::from_system_time(self.clock.now());
        let (source, decided_by) = match &context {
            Some(context) => {
                let mut draft = context.draft.lock().expect("draft lock");
                (draft.source.take(), draft.decided_by.take())
            }
            None => (None, None),
        };
        let cache_hit = match (&context, result, source) {
            (Some(context), Ok(issued), None | Some(AuditOutcome::Cache)) => Some((context, issued)),
            _ => None,
        };
        if let Some((context, issued)) = cache_hit {
            let same = |key: &FoldKey| {
                key.profile == issued.profile.name
                    && key.account == issued.username()
                    && key.scopes == issued.scopes()
                    && key.route == context.route
                    && key.decided_by == decided_by
            };
            if context.peer.audit_fold.repeat(now, same) {
                return;
            }
        }
        let (caller, route) = match &context {
            Some(context) => (context.peer.caller().info(), context.route.clone()),
            None => (Caller::unknown(None, "not asked over the socket").info(), AuditRoute::Other),
        };
        let mut entry = AuditEntry {
            time: now,
            profile: request.profile.clone(),
            account: None,
            resource: None,
            scopes: request.scopes.clone().unwrap_or_default(),
            route,
            program: caller,
            outcome: AuditOutcome::Error,
            error: None,
            decided_by: decided_by.clone().map(Cow::into_owned),
            repeats: None,
        };
        if let Some(profile) = self.config().profile(request.profile.as_deref()) {
            entry.profile = Some(profile.name.clone());
            let requested = request.scopes.as_deref().unwrap_or(&profile.scopes);
            if let Ok(set) = ScopeSet::normalize(requested, &profile.graph_resource) {
                entry.resource = Some(set.resource().to_owned());
                entry.scopes = set.scopes().to_vec();
            }
        }
        match result {
            Ok(issued) => {
                entry.account = Some(issued.username().to_owned());
                entry.outcome = source.unwrap_or(AuditOutcome::Cache);
            }
            Err(error) => {
                entry.outcome = if error.0.code == ErrorCode::PolicyDenied {
                    AuditOutcome::PolicyDenied
                } else {
                    AuditOutcome::Error
                };
                entry.error = Some(error.0.code.as_str().to_owned());
            }
        }
        // The run this connection had is written before the new line, so the log stays in order.
        if let Some(context) = &context {
            context.peer.audit_fold.end();
        }
        match cache_hit {
            Some((context, issued)) => {
                let key = FoldKey {
                    profile: issued.profile.name.clone(),
                    account: issued.username().to_owned(),
                    scopes: issued.scopes().to_vec(),
                    route: entry.route.clone(),
                    decided_by,
                };
                log.record(entry.clone());
                context.peer.audit_fold.start(log, key, entry);
            }
            None => log.record(entry),
        }
    }
}

/// `403 policy_denied`, naming the program and the command that would allow it.
fn denied(caller: &Caller, profile: &Profile, scopes: &ScopeSet, why: Option<&str>) -> ApiError {
    let scopes_text = scopes.scopes().join(" ");
    let why = why.map(|why| format!(" ({why})")).unwrap_or_default();
    let message = match caller.program() {
        None => format!(
            "the policy refuses tokens to an {}{why}: only default = \"allow\" serves programs that cannot be \
             identified",
            caller.describe()
        ),
        Some(program) => {
            let selector = match &program.sandbox {
                Some(sandbox) => format!("--sandbox {}", sandbox.app_id),
                None => format!("--program {}", program.exe),
            };
            format!(
                "the policy refuses {} (pid {}) tokens of profile {:?} for {scopes_text}{why}; to allow it, run \
                 `graphbroker-client policy allow {selector} --profile {} --scopes '{scopes_text}'`",
                caller.describe(),
                program.pid,
                profile.name,
                profile.name
            )
        }
    };
    ApiError::new(ErrorCode::PolicyDenied, message)
}
