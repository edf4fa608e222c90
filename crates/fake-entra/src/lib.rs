//! A strict local stand-in for the Microsoft identity platform v2.0 endpoints and a sliver of Microsoft Graph
//! (`/me`, a streamed attachment download, a streamed upload and its redirected download, CAE challenges).
//!
//! Key design decision: the fake runs on its **own OS thread with its own Tokio runtime**, and every
//! control operation is a plain synchronous call on state behind one `std::sync::Mutex`. Callers'
//! tests therefore work the same from `#[test]`, `#[tokio::test]` of any flavour, or another process
//! (the `fake-entra` binary exposes the same operations over HTTP under `/_control/`). Dropping the
//! last [`FakeEntra`] clone stops the server.
//!
//! Strictness is the point: each rule Entra enforces that a client could get wrong answers with
//! Entra's error shape and AADSTS code (see `README.md` for the table and for the choices made where
//! Entra's behaviour is unverified). Lifetimes are configurable and the clock can be advanced, so
//! tests expire codes and tokens without sleeping.
//!
//! ```no_run
//! # use std::time::Duration;
//! let fake = fake_entra::FakeEntra::builder()
//!     .client("14d82eec-204b-4c2f-b7e8-296a70dab67e")
//!     .user("alice@contoso.com")
//!     .device_interval(Duration::from_secs(1))
//!     .start()?;
//! let authority = fake.authority("common"); // http://127.0.0.1:PORT/common
//! # Ok::<(), std::io::Error>(())
//! ```

mod authorize;
mod cae;
mod content;
mod control;
mod device;
mod discovery;
mod drive;
mod endpoints;
mod errors;
mod faults;
mod form;
mod graph;
mod ids;
mod issue;
mod mail;
mod messages;
mod pages;
mod pkce;
mod redirect;
mod scopes;
mod server;
mod state;
mod stats;
mod tokens;
mod users;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

pub use authorize::PendingAuthorization;
pub use content::{FakeAttachment, FakeUpload};
pub use device::PendingDeviceCode;
pub use endpoints::Endpoint;
pub use errors::ControlError;
pub use faults::Fault;
pub use state::{
    DEFAULT_CLIENT_ID, DEFAULT_REDIRECT_URI, DEFAULT_USER, TENANT_DOMAIN, TENANT_ID, TenantInfo, UserInfo,
};
pub use stats::{GraphStats, Stats, TokenGrantStats};

use server::ServerThread;
use state::{Client, Config, Shared, State};

/// Entra's default device-code polling interval (protocol notes §2).
pub const DEFAULT_DEVICE_INTERVAL: Duration = Duration::from_secs(5);
/// Entra's documented device-code lifetime: 15 minutes.
pub const DEFAULT_DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(900);
/// Entra's authorization codes live about 10 minutes.
pub const DEFAULT_AUTH_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Refresh tokens expire after 90 days of inactivity.
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Entra's usual `expires_in`; real lifetimes vary between 60 and 90 minutes.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// Configures a [`FakeEntra`] before it starts.
#[derive(Debug, Clone)]
pub struct FakeEntraBuilder {
    clients: BTreeMap<String, Vec<String>>,
    shared_redirect_uris: Vec<String>,
    /// `(tenant domain, email)`; `None` is the home tenant.
    users: Vec<(Option<String>, String)>,
    /// Tenants besides the home tenant, by domain.
    tenants: Vec<String>,
    device_interval: Duration,
    device_code_lifetime: Duration,
    auth_code_lifetime: Duration,
    refresh_token_lifetime: Duration,
    access_token_lifetime: Duration,
    listen: SocketAddr,
}

impl Default for FakeEntraBuilder {
    fn default() -> Self {
        Self {
            clients: BTreeMap::new(),
            shared_redirect_uris: Vec::new(),
            users: Vec::new(),
            tenants: Vec::new(),
            device_interval: DEFAULT_DEVICE_INTERVAL,
            device_code_lifetime: DEFAULT_DEVICE_CODE_LIFETIME,
            auth_code_lifetime: DEFAULT_AUTH_CODE_LIFETIME,
            refresh_token_lifetime: DEFAULT_REFRESH_TOKEN_LIFETIME,
            access_token_lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl FakeEntraBuilder {
    /// Registers a public client with the redirect URI `http://localhost` (any port). Without any
    /// client, [`DEFAULT_CLIENT_ID`] is registered.
    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.clients.entry(client_id.into()).or_default();
        self
    }

    /// Registers a public client with extra redirect URIs besides `http://localhost`.
    pub fn client_with_redirect_uris(
        mut self,
        client_id: impl Into<String>,
        redirect_uris: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.clients.entry(client_id.into()).or_default().extend(redirect_uris.into_iter().map(Into::into));
        self
    }

    /// Registers a redirect URI for every client (the binary's `--redirect-uri`).
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.shared_redirect_uris.push(uri.into());
        self
    }

    /// Adds a user of the fake tenant. Without any user, [`DEFAULT_USER`] exists.
    pub fn user(mut self, email: impl Into<String>) -> Self {
        self.users.push((None, email.into()));
        self
    }

    /// Adds a tenant besides the home one ([`TENANT_ID`], [`TENANT_DOMAIN`]): its verified domain, from which its
    /// id is derived (stable across runs; [`FakeEntra::tenants`] lists both).
    pub fn tenant(mut self, domain: impl Into<String>) -> Self {
        self.tenants.push(domain.into().to_ascii_lowercase());
        self
    }

    /// Adds a user of the tenant with this domain (added with [`Self::tenant`], or [`TENANT_DOMAIN`]). Its users
    /// sign in through their own tenant's authority or a multi-tenant one; another tenant's refuses them.
    pub fn user_in(mut self, tenant_domain: impl Into<String>, email: impl Into<String>) -> Self {
        self.users.push((Some(tenant_domain.into().to_ascii_lowercase()), email.into()));
        self
    }

    pub fn device_interval(mut self, interval: Duration) -> Self {
        self.device_interval = interval;
        self
    }

    pub fn device_code_lifetime(mut self, lifetime: Duration) -> Self {
        self.device_code_lifetime = lifetime;
        self
    }

    pub fn auth_code_lifetime(mut self, lifetime: Duration) -> Self {
        self.auth_code_lifetime = lifetime;
        self
    }

    /// How long a refresh token may go unused before AADSTS700082.
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.refresh_token_lifetime = lifetime;
        self
    }

    /// The initial access-token lifetime; see also [`FakeEntra::set_access_token_lifetime`].
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// Where to listen; default `127.0.0.1:0` (an ephemeral port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Binds the listener and starts serving on a dedicated thread. Safe to call from synchronous
    /// code and from inside any Tokio runtime; it blocks only until the server thread is up.
    pub fn start(self) -> std::io::Result<FakeEntra> {
        let listener = TcpListener::bind(self.listen)?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let mut client_ids = self.clients;
        if client_ids.is_empty() {
            client_ids.insert(DEFAULT_CLIENT_ID.to_owned(), Vec::new());
        }
        let clients = client_ids
            .into_iter()
            .map(|(id, extra)| {
                let mut redirect_uris = vec![DEFAULT_REDIRECT_URI.to_owned()];
                redirect_uris.extend(extra);
                redirect_uris.extend(self.shared_redirect_uris.iter().cloned());
                (id, Client { redirect_uris })
            })
            .collect();
        let mut tenants = vec![TenantInfo::home()];
        for domain in self.tenants {
            if !tenants.iter().any(|t| t.domain == domain) {
                tenants.push(TenantInfo { id: ids::deterministic_guid(&format!("tenant/{domain}")), domain });
            }
        }
        let mut emails = self.users;
        if emails.is_empty() {
            emails.push((None, DEFAULT_USER.to_owned()));
        }
        let mut users: Vec<UserInfo> = Vec::new();
        for (domain, email) in emails {
            let tenant = match domain {
                None => &tenants[0],
                Some(domain) => tenants.iter().find(|t| t.domain == domain).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("user {email}: no tenant {domain}"))
                })?,
            };
            let user = UserInfo::from_email(&email, &tenant.id);
            if !users.iter().any(|u| u.email == user.email) {
                users.push(user);
            }
        }
        let config = Config {
            base_url: base_url.clone(),
            clients,
            users,
            tenants,
            device_interval: self.device_interval,
            device_code_lifetime: self.device_code_lifetime,
            auth_code_lifetime: self.auth_code_lifetime,
            refresh_token_lifetime: self.refresh_token_lifetime,
        };
        let shared = Arc::new(Shared::new(config, State::new(self.access_token_lifetime)));
        let server = ServerThread::spawn(listener, server::router(shared.clone()))?;
        tracing::info!(%base_url, "fake-entra listening");
        Ok(FakeEntra { shared, _server: Arc::new(server), base_url })
    }
}

/// A running fake. Clones share the server and its state; the server stops when the last clone drops.
#[derive(Debug, Clone)]
pub struct FakeEntra {
    shared: Arc<Shared>,
    /// Held only for its `Drop`, which stops the server once the last clone is gone.
    _server: Arc<ServerThread>,
    base_url: String,
}

impl FakeEntra {
    pub fn builder() -> FakeEntraBuilder {
        FakeEntraBuilder::default()
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `{base_url}/{tenant}`, e.g. `authority("common")` or `authority(TENANT_DOMAIN)`.
    pub fn authority(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.base_url)
    }

    /// The fake's tenants, the home tenant first.
    pub fn tenants(&self) -> Vec<TenantInfo> {
        self.shared.config.tenants.clone()
    }

    /// The fake tenant's users, in the order they were added.
    pub fn users(&self) -> Vec<UserInfo> {
        self.shared.config.users.clone()
    }

    /// A configured user by email (case-insensitive).
    pub fn user(&self, email: &str) -> Result<UserInfo, ControlError> {
        self.shared.config.user(email).cloned()
    }

    /// Plays the user who typed `user_code` on the device-login page, signed in as `user` and approved.
    pub fn approve_device(&self, user_code: &str, user: &str) -> Result<(), ControlError> {
        device::approve_device(&self.shared, user_code, user)
    }

    pub fn decline_device(&self, user_code: &str) -> Result<(), ControlError> {
        device::decline_device(&self.shared, user_code)
    }

    /// Device flows still waiting for the user, oldest first.
    pub fn pending_device_codes(&self) -> Vec<PendingDeviceCode> {
        device::pending_device_codes(&self.shared)
    }

    /// Plays the browser: accepts the pending authorize request with this `state` as `user`, and
    /// returns the URL the browser would be redirected to (`{redirect_uri}?code=…&state=…`).
    pub fn approve_browser(&self, state: &str, user: &str) -> Result<String, ControlError> {
        authorize::approve_browser(&self.shared, state, user)
    }

    /// Cancels the pending authorize request; returns the `error=access_denied` redirect URL.
    pub fn decline_browser(&self, state: &str) -> Result<String, ControlError> {
        authorize::decline_browser(&self.shared, state)
    }

    /// Authorize requests whose sign-in page is showing, oldest first.
    pub fn pending_browser(&self) -> Vec<PendingAuthorization> {
        authorize::pending_authorizations(&self.shared)
    }

    /// Revokes every refresh token of `user` (AADSTS50173 afterwards). Returns how many were revoked.
    /// CAE-capable access tokens issued before now are challenged at Graph
    /// (`TokenIssuedBeforeRevocationTimestamp`); other access tokens stay valid until they expire.
    pub fn revoke_user(&self, user: &str) -> Result<usize, ControlError> {
        self.shared.revoke_user(user)
    }

    /// A Conditional Access policy change for `user` (such as a new location). Refresh tokens stay
    /// valid; CAE-capable access tokens issued before now get Graph's claims challenge
    /// (`TokenCreatedWithOutdatedPolicies`), the others stay valid until they expire.
    pub fn change_policy(&self, user: &str) -> Result<(), ControlError> {
        self.shared.record_cae_event(user, cae::CaeKind::PolicyChange)
    }

    /// Creates a mail attachment of `size` bytes for `user`, with deterministic pseudo-random content
    /// generated as it streams out of `GET /v1.0/me/messages/{message_id}/attachments/{attachment_id}/$value`.
    pub fn add_attachment(&self, user: &str, size: u64) -> Result<FakeAttachment, ControlError> {
        self.shared.add_attachment(user, size)
    }

    /// Gives `user` `count` messages (replacing any), listed newest first and paged by
    /// `GET /v1.0/me/messages` with `$top` and `$skiptoken`.
    pub fn set_messages(&self, user: &str, count: usize) -> Result<(), ControlError> {
        self.shared.set_messages(user, count)
    }

    /// Files received by `PUT /v1.0/me/drive/root:/{name}:/content`, oldest first.
    pub fn uploads(&self) -> Vec<FakeUpload> {
        self.shared.uploads()
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.shared.set_access_token_lifetime(lifetime);
    }

    /// Marks (or unmarks) `user` + `resource` as needing MFA: refreshes for that resource fail with
    /// AADSTS50076 until the user signs in interactively again.
    pub fn require_mfa(&self, user: &str, resource: &str, required: bool) -> Result<(), ControlError> {
        self.shared.require_mfa(user, resource, required)
    }

    /// Records consent of `user` for `client_id` to `scopes` (short Graph names or resource-qualified).
    pub fn grant_consent(&self, user: &str, client_id: &str, scopes: &[&str]) -> Result<(), ControlError> {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.shared.grant_consent(user, client_id, &scopes)
    }

    /// Makes the next `count` requests to `endpoint` fail as `fault` says.
    pub fn inject_fault(&self, endpoint: Endpoint, count: u32, fault: Fault) {
        self.shared.inject_fault(endpoint, count, fault);
    }

    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Every secret value the fake has issued so far: device codes, authorization codes, refresh tokens,
    /// access tokens and the `tempauth` values of pre-authenticated download URLs. For tests that prove a
    /// client never leaks one (into a log, an error, a status page).
    pub fn issued_secrets(&self) -> Vec<String> {
        let state = self.shared.lock();
        state
            .device_flows
            .keys()
            .chain(state.auth_codes.keys())
            .chain(state.refresh_tokens.keys())
            .chain(state.access_tokens.keys())
            .chain(state.graph.tempauth.keys())
            .cloned()
            .collect()
    }

    /// Moves the fake's clock forward, expiring codes and tokens without sleeping. Affects only the
    /// fake's own validity checks and the timestamps it issues.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.advance_clock(by);
    }
}
