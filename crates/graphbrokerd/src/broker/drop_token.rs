//! `DELETE /v1/token`: the cached access token of one scope set dropped, so that the next request refreshes
//! (git's `erase`, after a server refused the token). The refresh token and the account are never touched: that
//! is `signout`.

use std::sync::Arc;

use graphbroker_protocol::{DropTokenResponse, ErrorCode};

use super::{Broker, TokenRequest};
use crate::error::ApiError;
use crate::scopes::ScopeSet;

impl Broker {
    /// Drops the cached token of `request`'s profile and scopes, after the same checks as a token request for
    /// them: the profile exists, the scopes normalize, the policy lets this caller have that token.
    pub async fn drop_token(self: &Arc<Self>, request: &TokenRequest) -> Result<DropTokenResponse, ApiError> {
        let slot = self.slot(request.profile.as_deref())?;
        let profile = &slot.profile;
        let requested = request.scopes.as_deref().unwrap_or(&profile.scopes);
        let scopes = ScopeSet::normalize(requested, &profile.graph_resource)
            .map_err(|e| ApiError::new(ErrorCode::InvalidScopes, e.to_string()))?;
        self.authorize(profile, &scopes).await?;
        let dropped = slot.state.lock().expect("state lock").entries.remove_token(scopes.key());
        tracing::info!(profile = %profile.name, resource = %scopes.resource(), dropped, "cached access token dropped on request");
        Ok(DropTokenResponse { profile: profile.name.clone(), scopes: scopes.scopes().to_vec(), dropped })
    }
}
