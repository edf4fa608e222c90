//! `default = "ask"`: the request is held while the user is asked through a channel the asking program cannot
//! answer itself — a desktop notification with actions (allow once, always, deny), or
//! `graphbroker-client policy approve ID` from another terminal (the policy routes refuse a sandboxed or unknown
//! caller, and the asking process itself). The request gives up its connection's serving slot as a sign-in wait
//! does (`crate::waiting`); an ask nobody answers within `ask_timeout` is refused.

use std::sync::Arc;

use graphbroker_protocol::{EpochSeconds, PendingAsk};

use super::guard::Answer;
use super::{NewRule, denied};
use crate::broker::Broker;
use crate::caller::Caller;
use crate::config::Profile;
use crate::error::ApiError;
use crate::scopes::ScopeSet;

impl Broker {
    /// Holds the request until the user answers: `Ok(by)` to serve it, `Err((by, error))` to refuse it.
    pub(super) async fn ask(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        profile: &Profile,
        scopes: &ScopeSet,
    ) -> Result<String, (String, ApiError)> {
        let timeout = self.config().policy.ask_timeout;
        let Some(program) = caller.program().cloned() else {
            return Err(("ask".into(), denied(caller, profile, scopes, Some("an unknown program is not asked about"))));
        };
        let scopes_list = scopes.scopes().to_vec();
        let (id, answer) = self.guard.approvals.open(
            |id| PendingAsk {
                id,
                program: caller.info(),
                profile: profile.name.clone(),
                scopes: scopes_list.clone(),
                asked_at: EpochSeconds::from_system_time(self.clock.now()),
            },
            Some(program.pid),
        );
        let by = format!("ask:{id}");
        tracing::info!(id, program = %caller.describe(), profile = %profile.name, "asking the user");
        crate::waiting::waiting_on_user();
        let text = format!(
            "{} asks for a token of profile {:?} for {}. Or run: graphbroker-client policy approve {id}",
            caller.describe(),
            profile.name,
            scopes_list.join(" ")
        );
        let notice = super::ask_notify::start(self.clone(), id, text);
        let mut stopping = self.shutdown.subscribe();
        let outcome = tokio::select! {
            answer = answer => answer.ok(),
            () = tokio::time::sleep(timeout) => None,
            _ = stopping.wait_for(|stopping| *stopping) => None,
        };
        self.guard.approvals.close(id);
        notice.abort();
        match outcome {
            Some(Answer::Once) => Ok(by),
            Some(Answer::Always) => {
                let rule = NewRule::for_caller(&program, profile, &scopes_list);
                if let Err(e) = self.add_rule(rule).await {
                    tracing::warn!("the answer \"always\" could not be written as a rule: {}", e.0.message);
                }
                Ok(by)
            }
            Some(Answer::Deny) => Err((by, denied(caller, profile, scopes, Some("the user said no")))),
            None => Err((
                by,
                denied(caller, profile, scopes, Some(&format!("nobody answered within {} s", timeout.as_secs()))),
            )),
        }
    }
}
