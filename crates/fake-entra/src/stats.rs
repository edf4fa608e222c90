//! Request counters, so tests can assert how often a client called each endpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::endpoints::{self, Endpoint};

/// Counters since start.
///
/// Endpoint counters (`devicecode`, `authorize`, `me`, `discovery`, `token.requests`, `graph.requests` and
/// `graph.by_route`) count every request that arrived, faulted or not. The per-grant counters and `token_errors` count only the
/// token requests the token endpoint actually handled (not those answered by an injected fault).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub devicecode: u64,
    pub token: TokenGrantStats,
    /// Token-endpoint error responses by their `error` string.
    pub token_errors: BTreeMap<String, u64>,
    pub authorize: u64,
    /// `GET /v1.0/me` and `GET /beta/me` (also in `graph.by_route["me"]`).
    pub me: u64,
    pub discovery: u64,
    /// Injected faults that fired, by endpoint name.
    pub faults_fired: BTreeMap<String, u64>,
    pub graph: GraphStats,
    /// The raw `claims` parameter of the last request the token endpoint handled (`None` if it had none).
    pub last_token_claims: Option<String>,
}

/// Microsoft Graph traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphStats {
    /// Every request to a `/v1.0/…` or `/beta/…` path.
    pub requests: u64,
    /// CAE claims challenges sent (401 `insufficient_claims`).
    pub challenges: u64,
    /// Requests by route: `me`, `messages`, `attachment`, `upload`, `item_content`, `other` (Graph paths), and
    /// `content` (the pre-authenticated `/_content/` download, not a Graph path).
    pub by_route: BTreeMap<String, u64>,
    /// Requests to `/_content/` that carried an `Authorization` header: a bearer token sent where it
    /// does not belong.
    pub preauthenticated_with_authorization: u64,
}

/// Token requests by `grant_type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrantStats {
    /// Every request to the token endpoint.
    pub requests: u64,
    pub device_code: u64,
    pub authorization_code: u64,
    pub refresh_token: u64,
    /// Missing or unsupported grant types.
    pub other: u64,
    /// Handled token requests whose `claims` declared the cp1 capability.
    pub cae_capable: u64,
    /// Handled token requests whose `claims` carried more than `xms_cc`: the answer to a challenge.
    pub with_challenge: u64,
}

impl Stats {
    pub(crate) fn count_request(&mut self, endpoint: Endpoint, path: &str) {
        let counter = match endpoint {
            Endpoint::Token => &mut self.token.requests,
            Endpoint::Devicecode => &mut self.devicecode,
            Endpoint::Authorize => &mut self.authorize,
            Endpoint::Graph => {
                let route = endpoints::route_name(path);
                *self.graph.by_route.entry(route.to_owned()).or_default() += 1;
                if route == "me" {
                    self.me += 1;
                }
                &mut self.graph.requests
            }
            Endpoint::Discovery => &mut self.discovery,
        };
        *counter += 1;
    }

    pub(crate) fn count_grant(&mut self, grant_type: Option<&str>) {
        let counter = match grant_type {
            Some(endpoints::DEVICE_CODE_GRANT) => &mut self.token.device_code,
            Some("authorization_code") => &mut self.token.authorization_code,
            Some("refresh_token") => &mut self.token.refresh_token,
            _ => &mut self.token.other,
        };
        *counter += 1;
    }

    pub(crate) fn count_token_error(&mut self, error: &str) {
        *self.token_errors.entry(error.to_owned()).or_default() += 1;
    }

    pub(crate) fn count_fault(&mut self, endpoint: Endpoint) {
        *self.faults_fired.entry(endpoint.name().to_owned()).or_default() += 1;
    }
}
