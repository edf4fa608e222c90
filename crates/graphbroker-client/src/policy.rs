//! The policy routes (`GET /v1/policy`, `POST /v1/policy/rules|approve|deny`) on [`Client`].

use std::time::Duration;

use graphbroker_protocol::{AnswerQuery, PolicyChangeResponse, PolicyResponse, RuleQuery, routes};
use hyper::Method;

use crate::Client;
use crate::client::encode_query;
use crate::error::Error;

impl Client {
    /// `GET /v1/policy`: the policy in effect and the asks waiting for an answer.
    pub async fn policy(&self) -> Result<PolicyResponse, Error> {
        self.call(Method::GET, routes::POLICY, None, Duration::ZERO).await
    }

    /// `POST /v1/policy/rules`: appends a rule to the daemon's config file and applies it.
    pub async fn add_policy_rule(&self, rule: &RuleQuery) -> Result<PolicyChangeResponse, Error> {
        self.call(Method::POST, routes::POLICY_RULES, Some(encode_query(rule)?), Duration::ZERO).await
    }

    /// `POST /v1/policy/approve` (`allow`) or `/v1/policy/deny`: answers a pending ask.
    pub async fn answer_ask(&self, id: u64, allow: bool, always: bool) -> Result<PolicyChangeResponse, Error> {
        let route = if allow { routes::POLICY_APPROVE } else { routes::POLICY_DENY };
        self.call(Method::POST, route, Some(encode_query(&AnswerQuery { id, always })?), Duration::ZERO).await
    }
}
