//! The national clouds of the Microsoft identity platform: the `cloud` key's values, login hosts and Graph resources.

use std::fmt;

use serde::Deserialize;
use url::Url;

/// A Microsoft identity platform cloud: its login host and its Microsoft Graph endpoint.
///
/// The config file spells it as [`Cloud::as_str`] does; serde reads that spelling (a test holds the two together),
/// so an unknown cloud is refused with the line, the key and every allowed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// The global cloud (also GCC).
    Public,
    /// US Government (GCC High).
    UsGov,
    /// US Government DoD.
    #[serde(rename = "usgov-dod")]
    UsGovDod,
    /// China, operated by 21Vianet.
    China,
}

impl Cloud {
    /// Every cloud, in declaration order, as serde's errors list the allowed values.
    pub const ALL: [Cloud; 4] = [Cloud::Public, Cloud::UsGov, Cloud::UsGovDod, Cloud::China];

    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::UsGov => "usgov",
            Cloud::UsGovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }

    /// The cloud a config file spelling names.
    pub fn from_name(name: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|cloud| cloud.as_str() == name)
    }

    /// The login host. China's is `login.chinacloudapi.cn`, the one MSAL and the Graph docs use (the Entra docs
    /// also name `login.partner.microsoftonline.cn`).
    pub fn login_host(self) -> &'static str {
        match self {
            Cloud::Public => "login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "login.microsoftonline.us",
            Cloud::China => "login.chinacloudapi.cn",
        }
    }

    /// The Microsoft Graph resource, which short scope names belong to.
    pub fn graph_resource(self) -> &'static str {
        match self {
            Cloud::Public => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The cloud an explicit authority's host belongs to. US Gov and DoD share a login host, so it reads as US
    /// Gov; an unknown host (a loopback stand-in, a proxy) reads as public.
    pub(super) fn from_login_host(host: &str) -> Cloud {
        match host.to_ascii_lowercase().as_str() {
            "login.microsoftonline.us" => Cloud::UsGov,
            "login.chinacloudapi.cn" | "login.partner.microsoftonline.cn" => Cloud::China,
            _ => Cloud::Public,
        }
    }

    /// `https://{login host}/{tenant}`. Only called with a tenant that passed `check_tenant` (letters, digits,
    /// `-`, `.`, `_`), which always forms a valid URL with a constant host.
    pub(super) fn authority(self, tenant: &str) -> Url {
        Url::parse(&format!("https://{}/{tenant}", self.login_host()))
            .expect("a login host and a validated tenant form a URL")
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
