//! Scope parsing: short Graph names, resource-qualified scopes, OIDC scopes and `.default`, grouped by resource.

use std::collections::BTreeMap;

pub(crate) const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
pub(crate) const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
pub(crate) const DEFAULT_PERMISSION: &str = ".default";

/// One resource's permissions as the request spelled them, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceScopes {
    pub(crate) resource: String,
    pub(crate) permissions: Vec<String>,
}

impl ResourceScopes {
    pub(crate) fn is_default(&self) -> bool {
        self.permissions.iter().any(|p| p == DEFAULT_PERMISSION)
    }
}

/// A parsed `scope` parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestedScopes {
    pub(crate) openid: bool,
    pub(crate) profile: bool,
    pub(crate) email: bool,
    pub(crate) offline_access: bool,
    /// Resources in order of first mention.
    pub(crate) resources: Vec<ResourceScopes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScopeError {
    /// A token request named permissions of more than one resource (AADSTS28000).
    MultipleResources,
    /// `.default` together with individual permissions of the same resource (AADSTS70011).
    DefaultMixed(String),
    /// A resource-qualified scope with nothing after the last `/` (AADSTS70011).
    Malformed(String),
}

impl RequestedScopes {
    pub(crate) fn parse(raw: &str) -> Result<Self, ScopeError> {
        let mut parsed = Self::default();
        for scope in raw.split_ascii_whitespace() {
            // OIDC scope names are case-insensitive in Entra.
            match scope.to_ascii_lowercase().as_str() {
                "openid" => parsed.openid = true,
                "profile" => parsed.profile = true,
                "email" => parsed.email = true,
                "offline_access" => parsed.offline_access = true,
                _ => {
                    let (resource, permission) = split_resource(scope)?;
                    parsed.add(resource, permission);
                }
            }
        }
        for group in &parsed.resources {
            if group.is_default() && group.permissions.len() > 1 {
                return Err(ScopeError::DefaultMixed(group.resource.clone()));
            }
        }
        Ok(parsed)
    }

    fn add(&mut self, resource: String, permission: String) {
        match self.resources.iter_mut().find(|g| g.resource == resource) {
            Some(group) => {
                if !group.permissions.iter().any(|p| p.eq_ignore_ascii_case(&permission)) {
                    group.permissions.push(permission);
                }
            }
            None => self.resources.push(ResourceScopes { resource, permissions: vec![permission] }),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.openid && !self.profile && !self.email && !self.offline_access && self.resources.is_empty()
    }

    /// The one resource a token request may name. Only OIDC scopes means none (the fake then
    /// issues a Graph token with no Graph permissions).
    pub(crate) fn single_resource(&self) -> Result<Option<&ResourceScopes>, ScopeError> {
        match self.resources.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(ScopeError::MultipleResources),
        }
    }

    /// The OIDC scopes requested, in the order Entra tends to list them.
    pub(crate) fn oidc_names(&self) -> Vec<&'static str> {
        [
            (self.profile, "profile"),
            (self.openid, "openid"),
            (self.email, "email"),
            (self.offline_access, "offline_access"),
        ]
        .into_iter()
        .filter_map(|(wanted, name)| wanted.then_some(name))
        .collect()
    }
}

/// Splits a non-OIDC scope into `(resource, permission)`. No `/` means a Graph permission.
fn split_resource(scope: &str) -> Result<(String, String), ScopeError> {
    let Some((resource, permission)) = scope.rsplit_once('/') else {
        return Ok((GRAPH_RESOURCE.to_owned(), scope.to_owned()));
    };
    if permission.is_empty() || resource.is_empty() {
        return Err(ScopeError::Malformed(scope.to_owned()));
    }
    Ok((canonical_resource(resource), permission.to_owned()))
}

/// One spelling per resource: a trailing `/` (as in `https://management.azure.com//.default`) is
/// dropped, and Graph's app id and URL in any case both mean Graph.
pub(crate) fn canonical_resource(raw: &str) -> String {
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    if trimmed.eq_ignore_ascii_case(GRAPH_RESOURCE) || trimmed.eq_ignore_ascii_case(GRAPH_APP_ID) {
        GRAPH_RESOURCE.to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The consent-store key for a permission: resource-qualified and lowercased, because Entra
/// treats scope names case-insensitively.
pub(crate) fn consent_key(resource: &str, permission: &str) -> String {
    format!("{resource}/{permission}").to_ascii_lowercase()
}

/// How a granted permission appears in a token response's `scope`: short for Graph, qualified otherwise.
pub(crate) fn display_scope(resource: &str, permission: &str) -> String {
    if resource == GRAPH_RESOURCE { permission.to_owned() } else { format!("{resource}/{permission}") }
}

/// Consented permissions of one user for one client: [`consent_key`] → (resource, permission as first spelled).
pub(crate) type ConsentSet = BTreeMap<String, (String, String)>;

pub(crate) fn add_consent(consented: &mut ConsentSet, resource: &str, permission: &str) {
    consented.entry(consent_key(resource, permission)).or_insert_with(|| (resource.to_owned(), permission.to_owned()));
}

/// Permissions of `resource` present in a consent set, in their original spelling.
pub(crate) fn consented_permissions(consented: &ConsentSet, resource: &str) -> Vec<String> {
    consented.values().filter(|(r, _)| r == resource).map(|(_, p)| p.clone()).collect()
}

/// What an interactive `.default` sign-in consents to when nothing is consented yet. Entra would
/// use the app registration's permission list; the fake has none, so it picks the usual minimum.
pub(crate) fn registration_default(resource: &str) -> &'static str {
    if resource == GRAPH_RESOURCE { "User.Read" } else { "user_impersonation" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_qualified_graph_scopes_are_the_same_resource() {
        let parsed =
            RequestedScopes::parse("User.Read https://graph.microsoft.com/Mail.Read openid offline_access").unwrap();
        assert_eq!(parsed.resources.len(), 1);
        let graph = parsed.single_resource().unwrap().unwrap();
        assert_eq!(graph.resource, GRAPH_RESOURCE);
        assert_eq!(graph.permissions, ["User.Read", "Mail.Read"]);
        assert!(parsed.openid && parsed.offline_access && !parsed.profile);
    }

    #[test]
    fn graph_app_id_and_trailing_slash_normalise() {
        let parsed = RequestedScopes::parse("00000003-0000-0000-c000-000000000000/User.Read").unwrap();
        assert_eq!(parsed.resources[0].resource, GRAPH_RESOURCE);
        let parsed = RequestedScopes::parse("https://management.azure.com//.default").unwrap();
        assert_eq!(parsed.resources[0].resource, "https://management.azure.com");
        assert!(parsed.resources[0].is_default());
    }

    #[test]
    fn other_resources_are_grouped_separately() {
        let parsed = RequestedScopes::parse(
            "User.Read https://outlook.office.com/IMAP.AccessAsUser.All api://abc/x api://abc/y",
        )
        .unwrap();
        let names: Vec<&str> = parsed.resources.iter().map(|g| g.resource.as_str()).collect();
        assert_eq!(names, [GRAPH_RESOURCE, "https://outlook.office.com", "api://abc"]);
        assert_eq!(parsed.resources[2].permissions, ["x", "y"]);
        assert_eq!(parsed.single_resource(), Err(ScopeError::MultipleResources));
    }

    #[test]
    fn oidc_only_means_no_resource() {
        let parsed = RequestedScopes::parse("openid profile email offline_access").unwrap();
        assert_eq!(parsed.single_resource(), Ok(None));
        assert_eq!(parsed.oidc_names(), ["profile", "openid", "email", "offline_access"]);
        assert!(RequestedScopes::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn default_mixed_with_individual_scopes_is_refused() {
        assert_eq!(
            RequestedScopes::parse("https://graph.microsoft.com/.default Mail.Read"),
            Err(ScopeError::DefaultMixed(GRAPH_RESOURCE.to_owned()))
        );
        assert!(RequestedScopes::parse("https://graph.microsoft.com/.default api://x/y").is_ok());
        assert_eq!(RequestedScopes::parse("api://x/"), Err(ScopeError::Malformed("api://x/".to_owned())));
    }

    #[test]
    fn display_and_consent_keys() {
        assert_eq!(display_scope(GRAPH_RESOURCE, "User.Read"), "User.Read");
        assert_eq!(display_scope("api://x", "y"), "api://x/y");
        assert_eq!(consent_key(GRAPH_RESOURCE, "User.Read"), "https://graph.microsoft.com/user.read");
        let mut set = ConsentSet::new();
        add_consent(&mut set, GRAPH_RESOURCE, "User.Read");
        add_consent(&mut set, GRAPH_RESOURCE, "user.read");
        add_consent(&mut set, "api://x/y", "z");
        assert_eq!(consented_permissions(&set, GRAPH_RESOURCE), ["User.Read"]);
        assert!(consented_permissions(&set, "api://x").is_empty());
    }
}
