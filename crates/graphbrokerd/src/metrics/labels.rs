//! The label values of every metric: closed sets, each a fixed list of `&'static str`, so that no label can carry
//! a request path, a scope, an account or a token, and every series exists (at 0) from the first scrape.

use graphbroker_protocol::{ErrorCode, SignInFlow, routes};

/// The routes of the route table, by the fixed name `route` carries (never the path: `/graph/…` holds user data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Version,
    Token,
    Header,
    Signin,
    Signout,
    Status,
    Config,
    RefreshIdle,
    Healthz,
    Metrics,
    Graph,
    /// `DELETE /v1/token`: a cached access token dropped.
    TokenDrop,
    /// Any path the route table does not have (answered `not_found`).
    Other,
}

impl Route {
    pub const ALL: [Route; 13] = [
        Route::Version,
        Route::Token,
        Route::Header,
        Route::Signin,
        Route::Signout,
        Route::Status,
        Route::Config,
        Route::RefreshIdle,
        Route::Healthz,
        Route::Metrics,
        Route::Graph,
        Route::TokenDrop,
        Route::Other,
    ];

    /// The route of a request: by its path, and for `/v1/token` by its method too (`DELETE` drops a token).
    pub fn of_request(method: &axum::http::Method, path: &str) -> Route {
        match Route::of(path) {
            Route::Token if method == axum::http::Method::DELETE => Route::TokenDrop,
            route => route,
        }
    }

    /// The route a request path falls under, by the same spellings the route table uses.
    pub fn of(path: &str) -> Route {
        match path {
            routes::VERSION => Route::Version,
            routes::TOKEN => Route::Token,
            routes::HEADER => Route::Header,
            routes::SIGNIN => Route::Signin,
            routes::SIGNOUT => Route::Signout,
            routes::STATUS => Route::Status,
            routes::CONFIG => Route::Config,
            routes::REFRESH_IDLE => Route::RefreshIdle,
            routes::HEALTHZ => Route::Healthz,
            routes::METRICS => Route::Metrics,
            p if p.starts_with(routes::GRAPH_PREFIX) => Route::Graph,
            _ => Route::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Version => "version",
            Route::Token => "token",
            Route::Header => "header",
            Route::Signin => "signin",
            Route::Signout => "signout",
            Route::Status => "status",
            Route::Config => "config",
            Route::RefreshIdle => "refresh_idle",
            Route::Healthz => "healthz",
            Route::Metrics => "metrics",
            Route::Graph => "graph",
            Route::TokenDrop => "token_drop",
            Route::Other => "other",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// How a refresh-token grant at the identity platform ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new access token.
    Ok,
    /// The grant is dead or the platform wants the user (consent, MFA): a sign-in follows.
    SigninNeeded,
    /// The platform could not be reached or kept failing.
    Unavailable,
    /// Refused for another reason, or a failure on this machine.
    Error,
}

impl RefreshOutcome {
    pub const ALL: [RefreshOutcome; 4] =
        [RefreshOutcome::Ok, RefreshOutcome::SigninNeeded, RefreshOutcome::Unavailable, RefreshOutcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            RefreshOutcome::Ok => "ok",
            RefreshOutcome::SigninNeeded => "signin_needed",
            RefreshOutcome::Unavailable => "unavailable",
            RefreshOutcome::Error => "error",
        }
    }
}

/// The flow a sign-in ran (`auto` is resolved to one of these before a sign-in starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Device,
    Browser,
}

impl Flow {
    pub const ALL: [Flow; 2] = [Flow::Device, Flow::Browser];

    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Device => SignInFlow::Device.as_str(),
            Flow::Browser => SignInFlow::Browser.as_str(),
        }
    }
}

impl From<SignInFlow> for Flow {
    fn from(flow: SignInFlow) -> Self {
        match flow {
            SignInFlow::Browser => Flow::Browser,
            // `auto` without a graphical session runs the device flow (see `user_part`).
            SignInFlow::Device | SignInFlow::Auto => Flow::Device,
        }
    }
}

/// How a sign-in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninOutcome {
    Ok,
    /// Declined by the user, or cancelled (a sign-out, a reload).
    Declined,
    Expired,
    /// Another account than the profile's came back; nothing was stored.
    AccountMismatch,
    Error,
}

impl SigninOutcome {
    pub const ALL: [SigninOutcome; 5] = [
        SigninOutcome::Ok,
        SigninOutcome::Declined,
        SigninOutcome::Expired,
        SigninOutcome::AccountMismatch,
        SigninOutcome::Error,
    ];

    /// The outcome a sign-in's error code stands for.
    pub fn of_error(code: ErrorCode) -> Self {
        match code {
            ErrorCode::SigninDeclined => SigninOutcome::Declined,
            ErrorCode::SigninExpired => SigninOutcome::Expired,
            ErrorCode::AccountMismatch => SigninOutcome::AccountMismatch,
            _ => SigninOutcome::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SigninOutcome::Ok => "ok",
            SigninOutcome::Declined => "declined",
            SigninOutcome::Expired => "expired",
            SigninOutcome::AccountMismatch => "account_mismatch",
            SigninOutcome::Error => "error",
        }
    }
}

/// The kind of exchange with the identity platform, told from the request itself (see [`IdpCall::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpCall {
    /// `grant_type=refresh_token` at `/token`.
    Refresh,
    /// A request to `/devicecode`.
    Devicecode,
    /// One poll of a device code (`grant_type=…device_code` at `/token`).
    DevicePoll,
    /// Redeeming a browser sign-in's authorization code.
    CodeRedeem,
    Other,
}

impl IdpCall {
    pub const ALL: [IdpCall; 5] =
        [IdpCall::Refresh, IdpCall::Devicecode, IdpCall::DevicePoll, IdpCall::CodeRedeem, IdpCall::Other];

    /// The call a request to `path` with the form `body` is. Only the `grant_type` field is looked at, in place:
    /// the body also carries a refresh token or a code, which is neither copied nor kept.
    pub fn of(path: &str, body: &[u8]) -> IdpCall {
        if path.ends_with("/devicecode") {
            return IdpCall::Devicecode;
        }
        let grant = body.split(|b| *b == b'&').find_map(|field| field.strip_prefix(b"grant_type=")).unwrap_or_default();
        match grant {
            b"refresh_token" => IdpCall::Refresh,
            b"authorization_code" => IdpCall::CodeRedeem,
            g if g.ends_with(b"device_code") => IdpCall::DevicePoll,
            _ => IdpCall::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdpCall::Refresh => "refresh",
            IdpCall::Devicecode => "devicecode",
            IdpCall::DevicePoll => "device_poll",
            IdpCall::CodeRedeem => "code_redeem",
            IdpCall::Other => "other",
        }
    }
}

/// Every error code, in a fixed order, for `graphbroker_errors_total{code}`.
pub const ERROR_CODES: [ErrorCode; ErrorCode::ALL.len()] = ErrorCode::ALL;

/// The place of `code` in [`ERROR_CODES`]: its declaration order, which the protocol's `ALL` keeps.
pub(super) fn error_index(code: ErrorCode) -> usize {
    code as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_sits_at_its_index() {
        for (i, code) in ERROR_CODES.into_iter().enumerate() {
            assert_eq!(error_index(code), i, "{code:?}");
        }
    }

    #[test]
    fn routes_are_told_by_name_and_graph_paths_never_become_labels() {
        for route in Route::ALL {
            assert_eq!(Route::ALL[route.index()], route);
        }
        assert_eq!(Route::of("/v1/token"), Route::Token);
        assert_eq!(Route::of("/graph/v1.0/users/alice@contoso.com"), Route::Graph);
        assert_eq!(Route::of("/v1/token/extra"), Route::Other);
        assert_eq!(Route::of("/metrics"), Route::Metrics);
        assert_eq!(Route::of("/v1/config"), Route::Config);
    }

    #[test]
    fn a_platform_call_is_told_from_its_grant_type() {
        let path = "/common/oauth2/v2.0/token";
        assert_eq!(IdpCall::of(path, b"grant_type=refresh_token&refresh_token=rt&scope=x"), IdpCall::Refresh);
        assert_eq!(
            IdpCall::of(path, b"client_id=c&grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"),
            IdpCall::DevicePoll
        );
        assert_eq!(IdpCall::of(path, b"grant_type=authorization_code&code=c"), IdpCall::CodeRedeem);
        assert_eq!(IdpCall::of("/common/oauth2/v2.0/devicecode", b"client_id=c"), IdpCall::Devicecode);
        assert_eq!(IdpCall::of(path, b"client_id=c"), IdpCall::Other);
    }
}
