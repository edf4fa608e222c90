//! Request counters, so tests can assert how often a client called each endpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::faults::Endpoint;

/// Counters since start.
///
/// Endpoint counters (`devicecode`, `authorize`, `me`, `discovery`, and `token.requests`) count every
/// request that arrived, faulted or not. The per-grant counters and `token_errors` count only the
/// token requests the token endpoint actually handled (not those answered by an injected fault).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub devicecode: u64,
    pub token: TokenGrantStats,
    /// Token-endpoint error responses by their `error` string.
    pub token_errors: BTreeMap<String, u64>,
    pub authorize: u64,
    pub me: u64,
    pub discovery: u64,
    /// Injected faults that fired, by endpoint name.
    pub faults_fired: BTreeMap<String, u64>,
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
}

impl Stats {
    pub(crate) fn count_request(&mut self, endpoint: Endpoint) {
        let counter = match endpoint {
            Endpoint::Token => &mut self.token.requests,
            Endpoint::Devicecode => &mut self.devicecode,
            Endpoint::Authorize => &mut self.authorize,
            Endpoint::Me => &mut self.me,
            Endpoint::Discovery => &mut self.discovery,
        };
        *counter += 1;
    }

    pub(crate) fn count_grant(&mut self, grant_type: Option<&str>) {
        let counter = match grant_type {
            Some(crate::tokens::DEVICE_CODE_GRANT) => &mut self.token.device_code,
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
