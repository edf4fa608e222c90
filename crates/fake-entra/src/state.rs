//! The fake's world: configuration fixed at start, and the mutable state that every endpoint and
//! control call shares behind one mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cae::CaeEvent;
use crate::content::GraphData;
use crate::errors::{ControlError, EntraError};
use crate::faults::FaultRule;
use crate::pkce::ChallengeMethod;
use crate::scopes::{self, ConsentSet, RequestedScopes};
use crate::stats::Stats;
pub use crate::users::UserInfo;

/// The fake tenant's id. Fixed so that test expectations and cached accounts survive restarts.
pub const TENANT_ID: &str = "5f1b4c8e-3a2d-4e6f-9b7a-0c1d2e3f4a5b";
/// The fake tenant's verified domain, accepted in place of [`TENANT_ID`] in URLs.
pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";
/// Microsoft Graph Command Line Tools: the public client the broker uses by default (protocol notes §9).
pub const DEFAULT_CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
/// The user the fake knows when none is configured.
pub const DEFAULT_USER: &str = "alice@contoso.com";
/// Entra's recommended reply URL for native apps using a system browser; every client has it.
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost";
/// The MSA tenant's id, a synonym for `consumers` (protocol notes §1).
const MSA_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Which authority a request came through. A tenant's GUID and its domain both name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TenantSegment {
    Common,
    Organizations,
    Consumers,
    /// One of the fake's tenants, by its index in [`Config::tenants`]; 0 is the home tenant ([`TENANT_ID`]).
    Tenant(usize),
}

/// A directory of the fake: the home tenant ([`TENANT_ID`], [`TENANT_DOMAIN`]) and any added with
/// [`crate::FakeEntraBuilder::tenant`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantInfo {
    /// The tenant id (`tid`), a GUID.
    pub id: String,
    /// Its verified domain, accepted in place of the id in URLs.
    pub domain: String,
}

impl TenantInfo {
    pub(crate) fn home() -> Self {
        Self { id: TENANT_ID.to_owned(), domain: TENANT_DOMAIN.to_owned() }
    }
}

/// A registered public client application.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) redirect_uris: Vec<String>,
}

/// Settings fixed when the server starts.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) base_url: String,
    pub(crate) clients: BTreeMap<String, Client>,
    pub(crate) users: Vec<UserInfo>,
    /// The home tenant first.
    pub(crate) tenants: Vec<TenantInfo>,
    pub(crate) device_interval: Duration,
    pub(crate) device_code_lifetime: Duration,
    pub(crate) auth_code_lifetime: Duration,
    pub(crate) refresh_token_lifetime: Duration,
}

impl Config {
    /// Resolves an authority's tenant segment: a multi-tenant name, or one of the fake's tenants by id or domain.
    pub(crate) fn tenant_segment(&self, segment: &str) -> Result<TenantSegment, EntraError> {
        let lower = segment.to_ascii_lowercase();
        match lower.as_str() {
            "common" => Ok(TenantSegment::Common),
            "organizations" => Ok(TenantSegment::Organizations),
            "consumers" | MSA_TENANT_ID => Ok(TenantSegment::Consumers),
            _ => self
                .tenants
                .iter()
                .position(|t| t.id == lower || t.domain.eq_ignore_ascii_case(&lower))
                .map(TenantSegment::Tenant)
                .ok_or_else(|| EntraError::unknown_tenant(segment)),
        }
    }

    /// The `issuer` in discovery: multi-tenant authorities keep the literal `{tenantid}` placeholder.
    pub(crate) fn issuer_tenant(&self, segment: TenantSegment) -> &str {
        match segment {
            TenantSegment::Tenant(index) => &self.tenants[index].id,
            TenantSegment::Consumers => MSA_TENANT_ID,
            TenantSegment::Common | TenantSegment::Organizations => "{tenantid}",
        }
    }

    /// A user may sign in through a multi-tenant authority or their own tenant's; through another tenant's
    /// authority Entra refuses (AADSTS50020; the stand-in has no guest accounts).
    pub(crate) fn admit(&self, segment: TenantSegment, user: &UserInfo) -> Result<(), ControlError> {
        match segment {
            TenantSegment::Tenant(index) if self.tenants[index].id != user.tenant_id => {
                Err(ControlError::BadRequest(format!(
                    "AADSTS50020: User account '{}' from identity provider 'https://sts.windows.net/{}/' does not \
                     exist in tenant '{}' and cannot access the application in that tenant.",
                    user.email, user.tenant_id, self.tenants[index].domain
                )))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn user(&self, email: &str) -> Result<&UserInfo, ControlError> {
        let wanted = email.trim();
        self.users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ControlError::UnknownUser(email.to_owned()))
    }

    pub(crate) fn user_by_oid(&self, oid: &str) -> Option<&UserInfo> {
        self.users.iter().find(|u| u.oid == oid)
    }

    pub(crate) fn client(&self, client_id: &str) -> Result<&Client, EntraError> {
        self.clients.get(client_id).ok_or_else(|| EntraError::unknown_client(client_id, TENANT_ID))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved { oid: String },
    Declined,
    Redeemed,
}

/// One device-code flow, keyed by its device code.
#[derive(Debug, Clone)]
pub(crate) struct DeviceFlow {
    pub(crate) user_code: String,
    pub(crate) client_id: String,
    pub(crate) tenant: TenantSegment,
    pub(crate) scope: String,
    pub(crate) scopes: RequestedScopes,
    pub(crate) created_at: SystemTime,
    pub(crate) expires_at: SystemTime,
    /// Grows by 5 s with every `slow_down` (RFC 8628 §3.5).
    pub(crate) interval: Duration,
    pub(crate) last_poll: Option<SystemTime>,
    pub(crate) status: DeviceStatus,
    /// The devicecode request's `claims` declared cp1; the redeemed token is CAE-capable.
    pub(crate) cae: bool,
}

/// An authorize request whose sign-in page is showing, waiting for Accept or Cancel.
#[derive(Debug, Clone)]
pub(crate) struct PendingAuthorize {
    pub(crate) id: String,
    pub(crate) client_id: String,
    pub(crate) tenant: TenantSegment,
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) scope: String,
    pub(crate) scopes: RequestedScopes,
    pub(crate) challenge: String,
    pub(crate) method: ChallengeMethod,
    pub(crate) login_hint: Option<String>,
    pub(crate) nonce: Option<String>,
    /// The authorize request's `claims` declared cp1; carried over to the code.
    pub(crate) cae: bool,
}

/// An issued authorization code.
#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub(crate) client_id: String,
    pub(crate) tenant: TenantSegment,
    pub(crate) redirect_uri: String,
    pub(crate) challenge: String,
    pub(crate) method: ChallengeMethod,
    pub(crate) oid: String,
    pub(crate) nonce: Option<String>,
    pub(crate) expires_at: SystemTime,
    pub(crate) redeemed: bool,
    pub(crate) cae: bool,
}

/// An issued refresh token. Bound to user and client, not to a resource (multi-resource refresh tokens).
#[derive(Debug, Clone)]
pub(crate) struct RefreshTokenRecord {
    pub(crate) oid: String,
    pub(crate) client_id: String,
    pub(crate) issued_at: SystemTime,
    /// Expiry is inactivity-based: `last_used + refresh_token_lifetime`.
    pub(crate) last_used: SystemTime,
    pub(crate) revoked: bool,
}

/// An issued access token, remembered so Graph can validate it.
#[derive(Debug, Clone)]
pub(crate) struct AccessTokenRecord {
    pub(crate) resource: String,
    pub(crate) oid: String,
    pub(crate) permissions: Vec<String>,
    /// Full precision on the fake's clock, so a CAE event in the same second still orders correctly.
    pub(crate) issued_at: SystemTime,
    pub(crate) expires_at: SystemTime,
    /// Issued to a request that declared the cp1 capability: Graph may challenge it (CAE).
    pub(crate) cae: bool,
}

/// Everything that changes while the fake runs.
#[derive(Debug)]
pub(crate) struct State {
    /// Added to the wall clock, so tests can expire things without sleeping.
    pub(crate) clock_offset: Duration,
    pub(crate) access_token_lifetime: Duration,
    pub(crate) device_flows: HashMap<String, DeviceFlow>,
    pub(crate) authorizations: Vec<PendingAuthorize>,
    pub(crate) auth_codes: HashMap<String, AuthCode>,
    pub(crate) refresh_tokens: HashMap<String, RefreshTokenRecord>,
    pub(crate) access_tokens: HashMap<String, AccessTokenRecord>,
    /// Keyed by (oid, client id).
    pub(crate) consents: HashMap<(String, String), ConsentSet>,
    /// (oid, resource) pairs under a Conditional Access MFA rule until the next interactive sign-in.
    pub(crate) mfa_required: BTreeSet<(String, String)>,
    pub(crate) faults: Vec<FaultRule>,
    /// Policy changes and revocations, oldest first; CAE-capable tokens issued before one are challenged.
    pub(crate) cae_events: Vec<CaeEvent>,
    pub(crate) graph: GraphData,
    pub(crate) stats: Stats,
}

impl State {
    pub(crate) fn new(access_token_lifetime: Duration) -> Self {
        Self {
            clock_offset: Duration::ZERO,
            access_token_lifetime,
            device_flows: HashMap::new(),
            authorizations: Vec::new(),
            auth_codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            consents: HashMap::new(),
            mfa_required: BTreeSet::new(),
            faults: Vec::new(),
            cae_events: Vec::new(),
            graph: GraphData::default(),
            stats: Stats::default(),
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        SystemTime::now() + self.clock_offset
    }

    pub(crate) fn consent(&mut self, oid: &str, client_id: &str, resource: &str, permission: &str) {
        let set = self.consents.entry((oid.to_owned(), client_id.to_owned())).or_default();
        scopes::add_consent(set, resource, permission);
    }

    /// What an interactive sign-in (device approval or browser Accept) does beyond issuing a code:
    /// the user consents to what was asked, and satisfies any pending MFA requirement.
    pub(crate) fn record_interactive_sign_in(&mut self, oid: &str, client_id: &str, requested: &RequestedScopes) {
        for group in &requested.resources {
            if group.is_default() {
                let key = (oid.to_owned(), client_id.to_owned());
                let already = self
                    .consents
                    .get(&key)
                    .is_some_and(|set| !scopes::consented_permissions(set, &group.resource).is_empty());
                if !already {
                    self.consent(oid, client_id, &group.resource, scopes::registration_default(&group.resource));
                }
            } else {
                for permission in &group.permissions {
                    self.consent(oid, client_id, &group.resource, permission);
                }
            }
        }
        self.mfa_required.retain(|(user, _)| user != oid);
    }
}

/// Configuration plus state: what the router, the handle and the control routes all hold.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(config: Config, state: State) -> Self {
        Self { config, state: Mutex::new(state) }
    }

    /// A panicking test thread must not wedge the server for every other test, so poison is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tenants: Vec<TenantInfo>) -> Config {
        Config {
            base_url: "http://127.0.0.1:1".to_owned(),
            clients: BTreeMap::new(),
            users: Vec::new(),
            tenants,
            device_interval: Duration::from_secs(5),
            device_code_lifetime: Duration::from_secs(900),
            auth_code_lifetime: Duration::from_secs(600),
            refresh_token_lifetime: Duration::from_secs(90 * 86_400),
        }
    }

    #[test]
    fn user_names_derive_from_email() {
        let adele = UserInfo::from_email("Adele.Vance@contoso.com", TENANT_ID);
        assert_eq!(adele.email, "adele.vance@contoso.com");
        assert_eq!(adele.display_name, "Adele Vance");
        assert_eq!((adele.given_name.as_str(), adele.surname.as_str()), ("Adele", "Vance"));
        assert_eq!(adele.oid, UserInfo::from_email("adele.vance@contoso.com", TENANT_ID).oid);
        assert_ne!(adele.oid, UserInfo::from_email("adele.vance@contoso.com", "another-tenant").oid);
        assert_eq!(UserInfo::from_email("alice@contoso.com", TENANT_ID).display_name, "Alice");
    }

    #[test]
    fn tenant_segments() {
        let fabrikam = TenantInfo { id: "0b0c0d0e-1111-4222-8333-444455556666".into(), domain: "fabrikam.com".into() };
        let config = config(vec![TenantInfo::home(), fabrikam.clone()]);
        assert_eq!(config.tenant_segment("common").unwrap(), TenantSegment::Common);
        assert_eq!(config.tenant_segment("Contoso.onmicrosoft.com").unwrap(), TenantSegment::Tenant(0));
        assert_eq!(config.tenant_segment(TENANT_ID).unwrap(), TenantSegment::Tenant(0));
        assert_eq!(config.tenant_segment(MSA_TENANT_ID).unwrap(), TenantSegment::Consumers);
        assert_eq!(config.tenant_segment("FABRIKAM.com").unwrap(), TenantSegment::Tenant(1));
        assert_eq!(config.tenant_segment(&fabrikam.id).unwrap(), TenantSegment::Tenant(1));
        assert_eq!(config.issuer_tenant(TenantSegment::Tenant(1)), fabrikam.id);
        assert_eq!(config.tenant_segment("northwind.com").unwrap_err().code, 90002);
        assert_eq!(config.tenant_segment("00000000-0000-0000-0000-000000000000").unwrap_err().code, 90002);
    }

    #[test]
    fn a_user_signs_in_through_their_own_tenant_or_a_multi_tenant_authority_only() {
        let fabrikam = TenantInfo { id: "0b0c0d0e-1111-4222-8333-444455556666".into(), domain: "fabrikam.com".into() };
        let config = config(vec![TenantInfo::home(), fabrikam.clone()]);
        let bob = UserInfo::from_email("bob@fabrikam.com", &fabrikam.id);
        assert!(config.admit(TenantSegment::Tenant(1), &bob).is_ok());
        assert!(config.admit(TenantSegment::Organizations, &bob).is_ok());
        let refused = config.admit(TenantSegment::Tenant(0), &bob).unwrap_err().to_string();
        assert!(refused.contains("AADSTS50020") && refused.contains("bob@fabrikam.com"), "{refused}");
    }
}
