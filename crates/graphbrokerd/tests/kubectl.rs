//! kubectl for AKS: a kubeconfig whose `users[].user.exec` runs `graphbroker-client token --format kubectl`, and
//! the real `kubectl` (Debian's kubernetes-client in CI) sending the broker's token to a stand-in API server that
//! records the bearer it receives.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use support::*;

const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// `kubectl`, or `None` (a skip) where it is not installed; a failure under `GRAPHBROKER_TEST_TOOLS=required`,
/// which `scripts/test` sets after installing it.
fn kubectl() -> Option<&'static str> {
    let found = Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success());
    if found {
        return Some("kubectl");
    }
    assert!(
        std::env::var("GRAPHBROKER_TEST_TOOLS").as_deref() != Ok("required"),
        "kubectl is missing but GRAPHBROKER_TEST_TOOLS=required: install kubernetes-client"
    );
    eprintln!("skipping: no kubectl (install kubernetes-client)");
    None
}

/// A stand-in Kubernetes API server on loopback, over TLS (client-go runs an exec plugin only for https servers;
/// the kubeconfig skips verification): answers `/version` and records each request's `Authorization`. The
/// certificate is made with the `openssl` command.
fn api_server(dir: &std::path::Path) -> (String, Arc<Mutex<Vec<String>>>) {
    use rustls_pki_types::pem::PemObject as _;
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (install it)");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(&cert).unwrap().map(Result::unwrap).collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let Ok(connection) = rustls::ServerConnection::new(tls.clone()) else { return };
            let mut stream = rustls::StreamOwned::new(connection, stream);
            let mut authorization = String::new();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match std::io::Read::read(&mut stream, &mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            for line in String::from_utf8_lossy(&head).lines() {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorization = value.trim().to_owned();
                }
            }
            if head.is_empty() {
                continue;
            }
            let unauthorized = authorization.is_empty();
            record.lock().unwrap().push(authorization);
            let (status, body) = if unauthorized {
                ("401 Unauthorized", r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":401}"#)
            } else {
                ("200 OK", r#"{"major":"1","minor":"30","gitVersion":"v1.30.0","platform":"linux/amd64"}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    });
    (url, seen)
}

#[tokio::test]
async fn kubectl_sends_the_brokers_token_for_aks() {
    let Some(kubectl) = kubectl() else { return };
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("kubectl"), ""));
    let client = daemon.client();
    let token = sign_in(&client, &fake, AKS_SCOPE, ALICE).await;
    let dir = private_tempdir();
    let (server, seen) = api_server(dir.path());
    let kubeconfig = dir.path().join("kubeconfig");
    // The stanza docs/tools.md shows, with the test's socket; no --scopes: the AKS scope is the default.
    let stanza = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: aks
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
contexts:
- name: aks
  context:
    cluster: aks
    user: graphbroker
current-context: aks
users:
- name: graphbroker
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: {client}
      args: [--no-autostart, --socket, {socket}, token, --format, kubectl]
      interactiveMode: IfAvailable
      provideClusterInfo: false
",
        client = client_bin().display(),
        socket = daemon.socket.display(),
    );
    std::fs::write(&kubeconfig, stanza).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(kubectl)
            .args(["get", "--raw", "/version"])
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("kubectl")
    })
    .await
    .unwrap();
    let seen_now = seen.lock().unwrap().iter().map(|a| a.len()).collect::<Vec<_>>();
    assert!(
        output.status.success(),
        "kubectl: {} (authorization lengths seen: {seen_now:?})",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("v1.30.0"));
    let seen = seen.lock().unwrap().clone();
    let bearer = format!("Bearer {}", token.access_token);
    assert!(seen.contains(&bearer), "the API server saw {} requests, none with the broker's token", seen.len());
    assert!(token.scopes.iter().any(|s| s.starts_with("6dae42f8-4368-4678-94ff-3960e28e3630/")), "{:?}", token.scopes);
    assert_eq!(fake.stats().token.refresh_token, 0, "kubectl's credential came from the cache");
}
