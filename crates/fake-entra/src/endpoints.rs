//! Which endpoint a request is for: the endpoints faults target and stats count (`Endpoint`), Graph's paths and
//! the route names `Stats.graph.by_route` uses, the grant-type names.

use serde::{Deserialize, Serialize};

/// The device-code grant's `grant_type` (RFC 8628 §3.4).
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The endpoints a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Token,
    Devicecode,
    /// `GET …/authorize` (the sign-in page), not the consent form post.
    Authorize,
    /// Every Graph path, `/v1.0/…` and `/beta/…` (`"me"` is accepted as its old name).
    #[serde(alias = "me")]
    Graph,
    Discovery,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Devicecode => "devicecode",
            Self::Authorize => "authorize",
            Self::Graph => "graph",
            Self::Discovery => "discovery",
        }
    }

    pub(crate) fn classify(path: &str) -> Option<Self> {
        if is_graph_path(path) {
            return Some(Self::Graph);
        }
        if path.ends_with("/v2.0/.well-known/openid-configuration") {
            return Some(Self::Discovery);
        }
        // Tenant-scoped OAuth endpoints: `/{tenant}/oauth2/v2.0/{name}` exactly.
        let mut segments = path.trim_start_matches('/').split('/');
        let (Some(_tenant), Some("oauth2"), Some("v2.0"), Some(name), None) =
            (segments.next(), segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return None;
        };
        match name {
            "token" => Some(Self::Token),
            "devicecode" => Some(Self::Devicecode),
            "authorize" => Some(Self::Authorize),
            _ => None,
        }
    }
}

/// Whether `path` is a Graph API path (`/v1.0/…` or `/beta/…`).
pub(crate) fn is_graph_path(path: &str) -> bool {
    ["/v1.0", "/beta"]
        .iter()
        .any(|prefix| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// The name `Stats.graph.by_route` counts a Graph path under.
pub(crate) fn route_name(path: &str) -> &'static str {
    let rest = path.strip_prefix("/v1.0").or_else(|| path.strip_prefix("/beta")).unwrap_or(path);
    if rest == "/me" {
        "me"
    } else if rest == "/me/messages" {
        "messages"
    } else if rest.starts_with("/me/messages/") && rest.contains("/attachments/") && rest.ends_with("/$value") {
        "attachment"
    } else if rest.starts_with("/me/drive/root:/") && rest.ends_with(":/content") {
        "upload"
    } else if rest.starts_with("/me/drive/items/") && rest.ends_with("/content") {
        "item_content"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(Endpoint::classify("/common/oauth2/v2.0/token"), Some(Endpoint::Token));
        assert_eq!(Endpoint::classify("/x/oauth2/v2.0/devicecode"), Some(Endpoint::Devicecode));
        assert_eq!(Endpoint::classify("/x/oauth2/v2.0/authorize"), Some(Endpoint::Authorize));
        assert_eq!(Endpoint::classify("/x/oauth2/v2.0/authorize/consent"), None);
        assert_eq!(Endpoint::classify("/x/v2.0/.well-known/openid-configuration"), Some(Endpoint::Discovery));
        assert_eq!(Endpoint::classify("/v1.0/me"), Some(Endpoint::Graph));
        assert_eq!(Endpoint::classify("/beta/me/drive/root:/a.bin:/content"), Some(Endpoint::Graph));
        assert_eq!(Endpoint::classify("/_content/01AB"), None);
        assert_eq!(Endpoint::classify("/_control/stats"), None);
    }

    #[test]
    fn route_names() {
        assert_eq!(route_name("/v1.0/me"), "me");
        assert_eq!(route_name("/beta/me"), "me");
        assert_eq!(route_name("/v1.0/me/messages"), "messages");
        assert_eq!(route_name("/v1.0/me/messages/m/attachments/a/$value"), "attachment");
        assert_eq!(route_name("/v1.0/me/drive/root:/report.bin:/content"), "upload");
        assert_eq!(route_name("/v1.0/me/drive/items/01AB/content"), "item_content");
        assert_eq!(route_name("/v1.0/users"), "other");
        assert!(is_graph_path("/v1.0/me") && is_graph_path("/beta/x") && is_graph_path("/v1.0"));
        assert!(!is_graph_path("/v1.0x/me") && !is_graph_path("/_content/x") && !is_graph_path("/common/v2.0/x"));
    }
}
