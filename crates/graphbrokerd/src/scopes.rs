//! Scope normalization: what a caller asks for becomes one resource's scope set, the key of the token cache.
//!
//! Rules (Microsoft's scopes and permissions reference): a scope without a resource prefix means Microsoft Graph; `openid profile
//! offline_access` are the daemon's business and are dropped from the caller's list (they are added to every
//! request to the platform); a token is for one resource, so scopes of two resources are refused here, before
//! anything reaches the network; order, case and duplicates do not change the key.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

/// OIDC scopes the daemon adds itself. `email` is left to the caller: it is optional and changes the id token.
const DAEMON_OIDC_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// The scopes the daemon adds to every request to the identity platform: an id token with the user's name
/// (`openid profile`) and a refresh token (`offline_access`).
pub const OIDC_SCOPES: &str = "openid profile offline_access";

/// The most scopes one request may name. A token for one resource rarely carries more than a dozen; the bound
/// keeps the normalization (quadratic in the count) and the request to the platform small.
pub const MAX_SCOPES: usize = 50;
/// The longest one scope may be, resource URI included. Graph permission names are under 60 characters and
/// resource URIs a few dozen more.
pub const MAX_SCOPE_LEN: usize = 512;
/// The longest the whole `scopes` value of a request may be, before it is split.
pub const MAX_SCOPES_VALUE_LEN: usize = 4096;

/// One resource's scopes, resource-qualified, sorted and without duplicates (compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeSet {
    resource: String,
    scopes: Vec<String>,
    key: String,
}

/// Why a scope list cannot make one token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "no resource scopes were asked for (openid, profile and offline_access are added by the daemon): pass scopes, e.g. scopes=User.Read"
    )]
    Empty,
    #[error("scope {0:?} is malformed: use a Graph permission such as User.Read or a resource URI and permission")]
    Malformed(String),
    #[error(
        "scopes name two resources ({0} and {1}); a token is for one resource: ask for each resource's scopes separately"
    )]
    TwoResources(String, String),
    #[error(
        "{0} scopes were asked for; at most {MAX_SCOPES} may be: ask for fewer (one resource's scopes per request)"
    )]
    TooMany(usize),
    #[error("a scope of {0} bytes was asked for; a scope may be at most {MAX_SCOPE_LEN} bytes: check the scopes")]
    TooLong(usize),
    #[error(
        "scope {0:?} names a resource on this machine ({1}); no Microsoft cloud issues tokens for it. An SDK given a \
         local base URL derives such a scope: pass the scope itself, e.g. https://graph.microsoft.com/.default"
    )]
    Loopback(String, String),
    #[error("{0}/.default cannot be combined with other scopes of the same resource: ask for .default alone")]
    DefaultMixed(String),
}

impl ScopeSet {
    /// Normalizes `requested` (already split into single scopes). `graph_resource` is what short names mean
    /// for the profile's cloud, e.g. `https://graph.microsoft.com`.
    pub fn normalize<S: AsRef<str>>(requested: &[S], graph_resource: &str) -> Result<Self, ScopeError> {
        if requested.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany(requested.len()));
        }
        if let Some(long) = requested.iter().map(|s| s.as_ref().trim().len()).find(|&len| len > MAX_SCOPE_LEN) {
            return Err(ScopeError::TooLong(long));
        }
        let mut resource: Option<String> = None;
        let mut scopes: Vec<String> = Vec::new();
        for raw in requested {
            let raw = raw.as_ref().trim();
            if raw.is_empty() || DAEMON_OIDC_SCOPES.iter().any(|oidc| raw.eq_ignore_ascii_case(oidc)) {
                continue;
            }
            if raw.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\\')) {
                return Err(ScopeError::Malformed(raw.to_owned()));
            }
            let (this_resource, qualified) = qualify(raw, graph_resource)?;
            match &resource {
                Some(existing) if !existing.eq_ignore_ascii_case(&this_resource) => {
                    return Err(ScopeError::TwoResources(existing.clone(), this_resource));
                }
                Some(_) => {}
                None => resource = Some(this_resource),
            }
            if !scopes.iter().any(|s| s.eq_ignore_ascii_case(&qualified)) {
                scopes.push(qualified);
            }
        }
        let resource = resource.ok_or(ScopeError::Empty)?;
        if scopes.len() > 1 && scopes.iter().any(|s| s.to_ascii_lowercase().ends_with("/.default")) {
            return Err(ScopeError::DefaultMixed(resource));
        }
        scopes.sort_by_key(|s| s.to_ascii_lowercase());
        let key = scopes.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>().join(" ");
        Ok(Self { resource, scopes, key })
    }

    /// The resource the token is for, e.g. `https://graph.microsoft.com`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The scopes, resource-qualified, in normalized order.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The cache key: lowercase scopes joined by spaces.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What goes into the platform request's `scope`: these scopes plus the daemon's OIDC scopes.
    pub fn request_scopes(&self) -> Vec<String> {
        self.scopes.iter().cloned().chain(DAEMON_OIDC_SCOPES.iter().map(|s| (*s).to_owned())).collect()
    }

    /// Resource-qualifies the scopes a token response says were granted, keeping those of this resource.
    /// Entra writes Graph scopes short and adds OIDC scopes; both are handled here.
    pub fn granted_from_response(&self, granted: &[String], graph_resource: &str) -> Vec<String> {
        let mut out: Vec<String> = granted
            .iter()
            .filter(|s| {
                !DAEMON_OIDC_SCOPES.iter().any(|o| s.eq_ignore_ascii_case(o)) && !s.eq_ignore_ascii_case("email")
            })
            .filter_map(|s| qualify(s, graph_resource).ok())
            .filter(|(resource, _)| resource.eq_ignore_ascii_case(&self.resource))
            .map(|(_, qualified)| qualified)
            .collect();
        if out.is_empty() {
            return self.scopes.clone();
        }
        out.sort_by_key(|s| s.to_ascii_lowercase());
        out.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        out
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scopes.join(" "))
    }
}

/// How many of a profile's normalizations [`RecentScopes`] keeps.
const RECENT_SCOPES: usize = 16;

/// The last [`RECENT_SCOPES`] scope lists asked of one profile, normalized: a program asking for the same
/// scopes again (most do, every time) gets the same set back without the work, which on a cached token was the
/// largest part of the daemon's own. Only lists that normalized are kept; the oldest goes first.
#[derive(Debug)]
pub struct RecentScopes {
    graph_resource: String,
    recent: Mutex<Kept>,
}

/// Lists as asked, with their sets; the newest first.
type Kept = VecDeque<(Box<[String]>, Arc<ScopeSet>)>;

impl RecentScopes {
    /// For a profile whose short names mean `graph_resource` (see [`ScopeSet::normalize`]).
    pub fn new(graph_resource: &str) -> Self {
        Self { graph_resource: graph_resource.to_owned(), recent: Mutex::default() }
    }

    /// [`ScopeSet::normalize`] of `requested`, kept for the next time it is asked exactly so.
    pub fn normalize(&self, requested: &[String]) -> Result<Arc<ScopeSet>, ScopeError> {
        let find = |kept: &Kept| kept.iter().find(|(asked, _)| **asked == *requested).map(|(_, set)| set.clone());
        if let Some(set) = find(&self.recent.lock().expect("recent scopes lock")) {
            return Ok(set);
        }
        let set = Arc::new(ScopeSet::normalize(requested, &self.graph_resource)?);
        let mut kept = self.recent.lock().expect("recent scopes lock");
        if find(&kept).is_none() {
            if kept.len() == RECENT_SCOPES {
                kept.pop_back();
            }
            kept.push_front((requested.into(), set.clone()));
        }
        Ok(set)
    }
}

/// Splits a scope into (resource, resource-qualified scope). A scope with no `/` is a Graph permission.
/// The resource is everything before the last `/`, which keeps `https://management.azure.com//.default`
/// (a resource whose URI ends in a slash) intact.
fn qualify(scope: &str, graph_resource: &str) -> Result<(String, String), ScopeError> {
    match scope.rfind('/') {
        None => Ok((graph_resource.to_owned(), format!("{graph_resource}/{scope}"))),
        Some(at) => {
            let (resource, permission) = (&scope[..at], &scope[at + 1..]);
            let looks_like_resource = resource.contains("://") || resource.starts_with("api:") || is_app_id(resource);
            if permission.is_empty() || !looks_like_resource {
                return Err(ScopeError::Malformed(scope.to_owned()));
            }
            if let Some(host) = loopback_host(resource) {
                return Err(ScopeError::Loopback(scope.to_owned(), host));
            }
            Ok((resource.to_owned(), scope.to_owned()))
        }
    }
}

/// Whether `resource` is an application (client) id, a GUID: Entra takes `{app id}/.default`, which is how AKS
/// (`6dae42f8-…/.default`) and Azure DevOps (`499b84ac-…/.default`) are asked for.
fn is_app_id(resource: &str) -> bool {
    let groups: Vec<&str> = resource.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The host of a resource URI on this machine (`localhost`, `127.x.x.x`, `::1`), which no cloud has.
fn loopback_host(resource: &str) -> Option<String> {
    let (_, rest) = resource.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let lower = host.to_ascii_lowercase();
    let loopback = lower == "localhost"
        || lower.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    loopback.then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_ids_are_resources() {
        let set = ScopeSet::normalize(&["6dae42f8-4368-4678-94ff-3960e28e3630/.default"], GRAPH).unwrap();
        assert_eq!(set.resource(), "6dae42f8-4368-4678-94ff-3960e28e3630");
        assert!(matches!(ScopeSet::normalize(&["6dae42f8-4368/.default"], GRAPH), Err(ScopeError::Malformed(_))));
    }

    #[test]
    fn loopback_resources_are_refused() {
        for scope in ["http://127.0.0.1/.default", "http://localhost:8080/User.Read", "http://[::1]/.default"] {
            assert!(matches!(ScopeSet::normalize(&[scope], GRAPH), Err(ScopeError::Loopback(..))), "{scope}");
        }
        let message = ScopeSet::normalize(&["http://127.0.0.1/.default"], GRAPH).unwrap_err().to_string();
        assert!(message.contains("https://graph.microsoft.com/.default"), "{message}");
    }

    const GRAPH: &str = "https://graph.microsoft.com";

    #[test]
    fn short_names_mean_graph() {
        let set = ScopeSet::normalize(&["User.Read"], GRAPH).unwrap();
        assert_eq!(set.resource(), GRAPH);
        assert_eq!(set.scopes(), ["https://graph.microsoft.com/User.Read"]);
    }

    #[test]
    fn order_case_and_duplicates_do_not_change_the_key() {
        let a = ScopeSet::normalize(&["Mail.Read", "User.Read"], GRAPH).unwrap();
        let b =
            ScopeSet::normalize(&["user.read", "https://graph.microsoft.com/Mail.Read", "User.Read"], GRAPH).unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), "https://graph.microsoft.com/mail.read https://graph.microsoft.com/user.read");
    }

    #[test]
    fn oidc_scopes_are_dropped_and_added_back_for_the_request() {
        let set = ScopeSet::normalize(&["openid", "User.Read", "offline_access", "PROFILE"], GRAPH).unwrap();
        assert_eq!(set.scopes(), ["https://graph.microsoft.com/User.Read"]);
        assert_eq!(
            set.request_scopes(),
            ["https://graph.microsoft.com/User.Read", "openid", "profile", "offline_access"]
        );
    }

    #[test]
    fn two_resources_are_refused() {
        let err =
            ScopeSet::normalize(&["User.Read", "https://outlook.office.com/IMAP.AccessAsUser.All"], GRAPH).unwrap_err();
        assert_eq!(err, ScopeError::TwoResources(GRAPH.into(), "https://outlook.office.com".into()));
    }

    #[test]
    fn other_resources_pass_through() {
        let set = ScopeSet::normalize(&["https://outlook.office.com/IMAP.AccessAsUser.All"], GRAPH).unwrap();
        assert_eq!(set.resource(), "https://outlook.office.com");
        let set = ScopeSet::normalize(&["api://1234/access"], GRAPH).unwrap();
        assert_eq!(set.resource(), "api://1234");
        let set = ScopeSet::normalize(&["https://management.azure.com//.default"], GRAPH).unwrap();
        assert_eq!(set.resource(), "https://management.azure.com/");
    }

    #[test]
    fn empty_and_malformed_are_refused() {
        assert_eq!(ScopeSet::normalize::<&str>(&[], GRAPH).unwrap_err(), ScopeError::Empty);
        assert_eq!(ScopeSet::normalize(&["openid"], GRAPH).unwrap_err(), ScopeError::Empty);
        assert!(matches!(ScopeSet::normalize(&["User.Read\"x"], GRAPH), Err(ScopeError::Malformed(_))));
        assert!(matches!(ScopeSet::normalize(&["foo/bar"], GRAPH), Err(ScopeError::Malformed(_))));
        assert!(matches!(ScopeSet::normalize(&["https://x.example/"], GRAPH), Err(ScopeError::Malformed(_))));
    }

    #[test]
    fn the_count_and_length_of_scopes_are_bounded() {
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("Scope{i}.Read")).collect();
        assert_eq!(ScopeSet::normalize(&many, GRAPH).unwrap_err(), ScopeError::TooMany(MAX_SCOPES + 1));
        assert!(ScopeSet::normalize(&many[..MAX_SCOPES], GRAPH).is_ok());
        let long = format!("api://x/{}", "a".repeat(MAX_SCOPE_LEN));
        assert_eq!(ScopeSet::normalize(&[long.as_str()], GRAPH).unwrap_err(), ScopeError::TooLong(long.len()));
        let message = ScopeError::TooMany(51).to_string();
        assert!(message.contains("at most 50"), "{message}");
    }

    #[test]
    fn dot_default_stands_alone() {
        assert!(ScopeSet::normalize(&[".default"], GRAPH).is_ok());
        assert_eq!(
            ScopeSet::normalize(&[".default", "Mail.Read"], GRAPH).unwrap_err(),
            ScopeError::DefaultMixed(GRAPH.into())
        );
    }

    #[test]
    fn granted_scopes_are_qualified_and_filtered_to_the_resource() {
        let set = ScopeSet::normalize(&["User.Read"], GRAPH).unwrap();
        let granted: Vec<String> =
            ["User.Read", "Mail.Read", "openid", "profile", "email"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            set.granted_from_response(&granted, GRAPH),
            ["https://graph.microsoft.com/Mail.Read", "https://graph.microsoft.com/User.Read"]
        );
        assert_eq!(set.granted_from_response(&[], GRAPH), ["https://graph.microsoft.com/User.Read"]);
    }

    #[test]
    fn recent_scopes_answer_a_list_asked_again_with_the_same_set() {
        let recent = RecentScopes::new(GRAPH);
        let asked = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let first = recent.normalize(&asked(&["User.Read", "Mail.Read"])).unwrap();
        assert_eq!(*first, ScopeSet::normalize(&["User.Read", "Mail.Read"], GRAPH).unwrap());
        let again = recent.normalize(&asked(&["User.Read", "Mail.Read"])).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the list asked again is answered from what was kept");
        // Another spelling of the same set is another list: normalized again, to an equal set.
        let reordered = recent.normalize(&asked(&["mail.read", "User.Read"])).unwrap();
        assert!(!Arc::ptr_eq(&first, &reordered));
        assert_eq!(reordered.key(), first.key());
        // A list that does not normalize is refused each time, and not kept.
        let bad = asked(&["User.Read", "https://outlook.office.com/Mail.Send"]);
        for _ in 0..2 {
            assert!(matches!(recent.normalize(&bad), Err(ScopeError::TwoResources(..))));
        }
        assert_eq!(recent.recent.lock().unwrap().len(), 2);
    }

    #[test]
    fn recent_scopes_keep_the_last_sixteen_lists() {
        let recent = RecentScopes::new(GRAPH);
        let list = |n: usize| vec![format!("Scope{n}.Read")];
        let oldest = recent.normalize(&list(0)).unwrap();
        let newest: Vec<_> = (1..RECENT_SCOPES).map(|n| recent.normalize(&list(n)).unwrap()).collect();
        assert!(Arc::ptr_eq(&oldest, &recent.normalize(&list(0)).unwrap()), "sixteen lists are all kept");
        recent.normalize(&list(RECENT_SCOPES)).unwrap();
        assert_eq!(recent.recent.lock().unwrap().len(), RECENT_SCOPES);
        assert!(!Arc::ptr_eq(&oldest, &recent.normalize(&list(0)).unwrap()), "the oldest went first");
        assert!(Arc::ptr_eq(&newest[RECENT_SCOPES - 2], &recent.normalize(&list(RECENT_SCOPES - 1)).unwrap()));
    }
}
