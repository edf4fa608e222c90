//! Several tenants: each user belongs to one, signs in through its authority or a multi-tenant one, and gets
//! tokens and `client_info` naming that tenant; another tenant's authority refuses them.

mod support;

use fake_entra::{FakeEntra, TENANT_ID};
use reqwest::StatusCode;
use serde_json::Value;
use support::*;

const BOB: &str = "bob@fabrikam.com"; // shadows the support module's contoso user of that name

fn two_tenants() -> FakeEntra {
    builder().user(ALICE).tenant("fabrikam.com").user_in("fabrikam.com", BOB).start().unwrap()
}

async fn start_device_at(fake: &FakeEntra, tenant: &str) -> Value {
    let reply = post_form(
        &format!("{}/oauth2/v2.0/devicecode", fake.authority(tenant)),
        &[("client_id", CLIENT), ("scope", GRAPH_SCOPES), ("client_info", "1")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()
}

async fn poll_at(fake: &FakeEntra, tenant: &str, device_code: &str) -> support::Reply {
    post_form(
        &format!("{}/oauth2/v2.0/token", fake.authority(tenant)),
        &[("grant_type", DEVICE_GRANT), ("client_id", CLIENT), ("device_code", device_code), ("client_info", "1")],
    )
    .await
}

fn utid(client_info: &Value) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(client_info.as_str().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&raw).unwrap()["utid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_user_gets_tokens_of_their_own_tenant() {
    let fake = two_tenants();
    let tenants = fake.tenants();
    assert_eq!(tenants.len(), 2);
    assert_eq!(tenants[0].id, TENANT_ID);
    let fabrikam = &tenants[1];
    assert_eq!(fabrikam.domain, "fabrikam.com");
    assert_ne!(fabrikam.id, TENANT_ID);
    assert_eq!(fake.user(BOB).unwrap().tenant_id, fabrikam.id);

    // Through the tenant's domain, and through its id.
    for (tenant, user, tid) in [
        ("fabrikam.com", BOB, fabrikam.id.as_str()),
        (fabrikam.id.as_str(), BOB, fabrikam.id.as_str()),
        ("contoso.onmicrosoft.com", ALICE, TENANT_ID),
        ("organizations", BOB, fabrikam.id.as_str()),
    ] {
        let flow = start_device_at(&fake, tenant).await;
        fake.approve_device(flow["user_code"].as_str().unwrap(), user).unwrap();
        let reply = poll_at(&fake, tenant, flow["device_code"].as_str().unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let body = reply.json();
        let access = claims(body["access_token"].as_str().unwrap());
        assert_eq!((access["tid"].as_str(), access["upn"].as_str()), (Some(tid), Some(user)), "{tenant}");
        assert_eq!(claims(body["id_token"].as_str().unwrap())["tid"], tid);
        assert_eq!(utid(&body["client_info"]), tid);
    }
}

#[tokio::test]
async fn another_tenants_authority_refuses_the_user_and_the_flow_stays_pending() {
    let fake = two_tenants();
    let flow = start_device_at(&fake, "contoso.onmicrosoft.com").await;
    let code = flow["user_code"].as_str().unwrap();
    let refused = fake.approve_device(code, BOB).unwrap_err().to_string();
    assert!(refused.contains("AADSTS50020") && refused.contains(BOB), "{refused}");
    let pending = poll_at(&fake, "contoso.onmicrosoft.com", flow["device_code"].as_str().unwrap()).await;
    assert_entra_error(&pending, 400, "authorization_pending", 70016);
    // The right user can still finish it.
    fake.approve_device(code, ALICE).unwrap();

    // The browser flow: the same refusal, and the authorize request is still there for another account.
    let url = authorize_url(&fake, &[]).replace("/common/", "/fabrikam.com/");
    assert_eq!(get(&url).await.status, StatusCode::OK);
    let refused = fake.approve_browser("st-123", ALICE).unwrap_err().to_string();
    assert!(refused.contains("AADSTS50020"), "{refused}");
    assert_eq!(fake.pending_browser().len(), 1);
    let redirect = fake.approve_browser("st-123", BOB).unwrap();
    assert!(query_of(&redirect).contains_key("code"), "{redirect}");
}

#[tokio::test]
async fn discovery_names_each_tenant_as_issuer() {
    let fake = two_tenants();
    let fabrikam = fake.tenants()[1].clone();
    let reply = get(&format!("{}/v2.0/.well-known/openid-configuration", fake.authority("fabrikam.com"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["issuer"], format!("https://login.microsoftonline.com/{}/v2.0", fabrikam.id));
    let unknown = get(&format!("{}/v2.0/.well-known/openid-configuration", fake.authority("northwind.com"))).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
}
