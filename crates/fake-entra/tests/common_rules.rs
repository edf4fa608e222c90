//! Rules every token and device-code request passes: tenant, client, parameters, grant type; and discovery.

mod support;

use reqwest::StatusCode;
use support::*;

#[tokio::test]
async fn tenant_segments_known_and_unknown() {
    let fake = fake();
    for tenant in ["common", "organizations", "consumers", fake_entra::TENANT_ID, fake_entra::TENANT_DOMAIN] {
        let url = format!("{}/oauth2/v2.0/devicecode", fake.authority(tenant));
        let reply = post_form(&url, &[("client_id", CLIENT), ("scope", "User.Read")]).await;
        assert_eq!(reply.status, StatusCode::OK, "{tenant}: {}", reply.text);
    }
    for tenant in ["fabrikam.onmicrosoft.com", "11111111-2222-3333-4444-555555555555"] {
        let url = format!("{}/oauth2/v2.0/devicecode", fake.authority(tenant));
        let reply = post_form(&url, &[("client_id", CLIENT), ("scope", "User.Read")]).await;
        assert_entra_error(&reply, 400, "invalid_request", 90002);
        let url = format!("{}/oauth2/v2.0/token", fake.authority(tenant));
        let reply = post_form(&url, &[("client_id", CLIENT), ("grant_type", "refresh_token")]).await;
        assert_entra_error(&reply, 400, "invalid_request", 90002);
    }
}

#[tokio::test]
async fn unregistered_client_is_700016() {
    let fake = fake();
    let stranger = "99999999-9999-9999-9999-999999999999";
    let body = assert_entra_error(
        &post_form(
            &format!("{}/oauth2/v2.0/devicecode", fake.authority("common")),
            &[("client_id", stranger), ("scope", "User.Read")],
        )
        .await,
        400,
        "unauthorized_client",
        700016,
    );
    assert!(body["error_description"].as_str().unwrap().starts_with(&format!(
        "AADSTS700016: Application with identifier '{stranger}' was not found in the directory '{}'",
        fake_entra::TENANT_ID
    )));
    let reply = token(
        &fake,
        &[("grant_type", "refresh_token"), ("client_id", stranger), ("refresh_token", "x"), ("scope", "User.Read")],
    )
    .await;
    assert_entra_error(&reply, 400, "unauthorized_client", 700016);
}

#[tokio::test]
async fn public_client_presenting_a_secret_or_assertion_is_401_invalid_client() {
    let fake = fake();
    let rt = device_sign_in(&fake, CLIENT, ALICE, GRAPH_SCOPES).await["refresh_token"].as_str().unwrap().to_owned();
    let base = [
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT),
        ("refresh_token", rt.as_str()),
        ("scope", GRAPH_SCOPES),
    ];
    for extra in [("client_secret", "s3cret"), ("client_assertion", "eyJ.x.y")] {
        let mut form = base.to_vec();
        form.push(extra);
        assert_entra_error(&token(&fake, &form).await, 401, "invalid_client", 700025);
    }
    assert_eq!(token(&fake, &base).await.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_parameters_are_900144() {
    let fake = fake();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("client_id", CLIENT)], "grant_type"),
        (&[("grant_type", "refresh_token")], "client_id"),
        (&[("grant_type", DEVICE_GRANT), ("client_id", CLIENT)], "device_code"),
        (&[("grant_type", "refresh_token"), ("client_id", CLIENT), ("scope", "User.Read")], "refresh_token"),
        (&[("grant_type", "authorization_code"), ("client_id", CLIENT), ("redirect_uri", "http://localhost")], "code"),
    ];
    for (form, missing) in cases {
        let body = assert_entra_error(&token(&fake, form).await, 400, "invalid_request", 900144);
        let expected = format!("AADSTS900144: The request body must contain the following parameter: '{missing}'.");
        assert!(body["error_description"].as_str().unwrap().starts_with(&expected), "{body}");
    }
    let devicecode = format!("{}/oauth2/v2.0/devicecode", fake.authority("common"));
    assert_entra_error(&post_form(&devicecode, &[("client_id", CLIENT)]).await, 400, "invalid_request", 900144);
    assert_entra_error(&post_form(&devicecode, &[("scope", "User.Read")]).await, 400, "invalid_request", 900144);
}

#[tokio::test]
async fn unknown_grant_type_is_70003() {
    let fake = fake();
    let reply = token(&fake, &[("grant_type", "password"), ("client_id", CLIENT), ("username", ALICE)]).await;
    assert_entra_error(&reply, 400, "unsupported_grant_type", 70003);
    let stats = fake.stats();
    assert_eq!(stats.token.other, 1);
    assert_eq!(stats.token_errors["unsupported_grant_type"], 1);
}

#[tokio::test]
async fn discovery_document_points_at_the_fake() {
    let fake = fake();
    let reply = get(&format!("{}/v2.0/.well-known/openid-configuration", fake.authority("common"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), Some("max-age=86400, private"));
    let doc = reply.json();
    let authority = fake.authority("common");
    assert_eq!(doc["issuer"], "https://login.microsoftonline.com/{tenantid}/v2.0");
    assert_eq!(doc["authorization_endpoint"], format!("{authority}/oauth2/v2.0/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{authority}/oauth2/v2.0/token"));
    assert_eq!(doc["device_authorization_endpoint"], format!("{authority}/oauth2/v2.0/devicecode"));
    assert_eq!(doc["msgraph_host"], "graph.microsoft.com");
    assert_eq!(get(doc["jwks_uri"].as_str().unwrap()).await.status, StatusCode::OK);

    let tenant = get(&format!("{}/v2.0/.well-known/openid-configuration", fake.authority(fake_entra::TENANT_DOMAIN)))
        .await
        .json();
    assert_eq!(tenant["issuer"], format!("https://login.microsoftonline.com/{}/v2.0", fake_entra::TENANT_ID));
    let unknown = get(&format!("{}/v2.0/.well-known/openid-configuration", fake.authority("fabrikam.com"))).await;
    assert_entra_error(&unknown, 400, "invalid_request", 90002);
}

#[tokio::test]
async fn users_are_listed_with_stable_ids() {
    let fake = fake();
    let users = get(&format!("{}/_control/users", fake.base_url())).await.json();
    assert_eq!(users[0]["email"], ALICE);
    assert_eq!(users[1]["display_name"], "Bob Smith");
    let again = fake_entra::FakeEntra::builder().user(ALICE).start().unwrap();
    assert_eq!(users[0]["oid"], again.user(ALICE).unwrap().oid);
}

#[test]
fn defaults_without_configuration() {
    let fake = fake_entra::FakeEntra::builder().start().unwrap();
    assert_eq!(fake.users().len(), 1);
    assert_eq!(fake.users()[0].email, fake_entra::DEFAULT_USER);
    assert!(fake.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(fake.authority("common"), format!("{}/common", fake.base_url()));
}
