//! `token --format kubectl`: the answer of a client-go exec credential plugin (what kubelogin is for AKS), so that
//! a kubeconfig's `users[].user.exec` runs `graphbroker-client token --format kubectl` and kubectl sends the
//! broker's token as its bearer.

use graphbroker_client::TokenResponse;
use serde_json::json;

use crate::cli::{Cli, Command, TokenFormat};

/// The scope when `--format kubectl` is given none: the AKS server application, which every AKS cluster with
/// Entra integration takes tokens for.
pub const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// What client-go sets for the plugin: the `ExecCredential` it expects back, `apiVersion` included.
pub const EXEC_INFO_ENV: &str = "KUBERNETES_EXEC_INFO";

/// The `apiVersion`s of `ExecCredential` this prints; the first when `KUBERNETES_EXEC_INFO` names none.
const API_VERSIONS: [&str; 2] = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"];

/// The `ExecCredential` for `token`, in the `apiVersion` that `exec_info` (the value of
/// `KUBERNETES_EXEC_INFO`) asks for.
pub fn exec_credential(token: &TokenResponse, exec_info: Option<&str>) -> Result<String, String> {
    let asked = exec_info
        .map(|info| {
            serde_json::from_str::<serde_json::Value>(info)
                .map_err(|e| format!("{EXEC_INFO_ENV} is not JSON ({e}); kubectl sets it, do not set it by hand"))
        })
        .transpose()?
        .and_then(|info| info["apiVersion"].as_str().map(str::to_owned));
    let api_version = match asked {
        None => API_VERSIONS[0],
        Some(asked) => API_VERSIONS.into_iter().find(|known| *known == asked).ok_or_else(|| {
            format!(
                "kubectl asks for an ExecCredential of apiVersion {asked:?}; set the kubeconfig's \
                 users[].user.exec.apiVersion to one of {}",
                API_VERSIONS.join(", ")
            )
        })?,
    };
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_secs(token.expires_at.0);
    let credential = json!({
        "kind": "ExecCredential",
        "apiVersion": api_version,
        "spec": {},
        "status": {
            "token": token.access_token,
            "expirationTimestamp": humantime::format_rfc3339_seconds(expires).to_string(),
        },
    });
    Ok(credential.to_string())
}

/// `cli` with the AKS scope for `token --format kubectl` when it names no scope.
pub fn with_default_scope(mut cli: Cli) -> Cli {
    if let Command::Token { request, format: TokenFormat::Kubectl } = &mut cli.command
        && request.scopes.is_empty()
    {
        request.scopes.push(AKS_SCOPE.to_owned());
    }
    cli
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenResponse {
        serde_json::from_value(json!({
            "token_type": "Bearer", "access_token": "eyJ0.x.y", "expires_at": 1_767_225_600, "expires_in": 3600,
            "scopes": [AKS_SCOPE], "profile": "work",
            "account": {"username": "alice@contoso.com", "home_account_id": "u.t", "tenant_id": "t"}
        }))
        .unwrap()
    }

    #[test]
    fn the_credential_has_the_asked_api_version_the_token_and_an_rfc3339_expiry() {
        for (info, version) in [
            (None, "client.authentication.k8s.io/v1"),
            (
                Some(r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{}}"#),
                "client.authentication.k8s.io/v1beta1",
            ),
        ] {
            let text = exec_credential(&token(), info).unwrap();
            let credential: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(credential["apiVersion"], version);
            assert_eq!(credential["kind"], "ExecCredential");
            assert_eq!(credential["status"]["token"], "eyJ0.x.y");
            assert_eq!(credential["status"]["expirationTimestamp"], "2026-01-01T00:00:00Z");
        }
        let error = exec_credential(&token(), Some(r#"{"apiVersion":"client.authentication.k8s.io/v1alpha1"}"#));
        assert!(error.unwrap_err().contains("v1alpha1"));
        assert!(exec_credential(&token(), Some("nope")).is_err());
    }
}
