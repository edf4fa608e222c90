//! The Graph SDK recipes of docs/sdks.md, run as they are (the files under docs/sdks/, which the doc quotes) with
//! Microsoft's own SDKs (`msgraph-sdk` from PyPI, `@microsoft/microsoft-graph-client` from npm) against the real
//! daemon and the stand-in: `/me`, then `/me/messages` walked page by page with each SDK's page iterator.
//! The SDKs live in the environment `scripts/test` makes and names in `GRAPHBROKER_SDK_ENV` (`py/` a venv,
//! `node/` an npm prefix).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

const SCOPES: &str = "User.Read Mail.Read";
/// Five messages, two a page: three pages.
const MESSAGES: &str = "Message 5, Message 4, Message 3, Message 2, Message 1";

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// The SDK environment, or `None` (a skip) where `GRAPHBROKER_SDK_ENV` names none; a failure under
/// `GRAPHBROKER_TEST_TOOLS=required`, which `scripts/test` sets after making it.
fn sdk_env(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("GRAPHBROKER_SDK_ENV").map(PathBuf::from).filter(|env| env.join(tool).exists());
    if found.is_some() {
        return found;
    }
    assert!(
        std::env::var("GRAPHBROKER_TEST_TOOLS").as_deref() != Ok("required"),
        "no {tool} under GRAPHBROKER_SDK_ENV but GRAPHBROKER_TEST_TOOLS=required: scripts/test makes it"
    );
    eprintln!("skipping: no {tool} under GRAPHBROKER_SDK_ENV (scripts/test makes it)");
    None
}

/// A daemon against the stand-in, signed in for `SCOPES`, with five messages in the mailbox.
async fn signed_in() -> (fake_entra::FakeEntra, Daemon) {
    signed_in_with("").await
}

/// `signed_in`, with `extra` lines in the profile.
async fn signed_in_with(extra: &str) -> (fake_entra::FakeEntra, Daemon) {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("sdks"), extra));
    fake.grant_consent(ALICE, CLIENT_ID, &["User.Read", "Mail.Read"]).unwrap();
    sign_in(&daemon.client(), &fake, SCOPES, ALICE).await;
    fake.set_messages(ALICE, 5).unwrap();
    (fake, daemon)
}

/// Runs a recipe file with `program`, the daemon's socket in `GRAPHBROKER_SOCKET`; its stdout on success.
fn run(program: &Path, recipe: &str, daemon: &Daemon, env: &[(&str, &str)]) -> String {
    let output = Command::new(program)
        .arg(docs().join("sdks").join(recipe))
        .env("GRAPHBROKER_SOCKET", &daemon.socket)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{recipe}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    stdout.into_owned()
}

fn assert_walked(stdout: &str, fake: &fake_entra::FakeEntra, recipe: &str) {
    assert!(stdout.contains(&format!("me: {ALICE}\n")), "{recipe}: {stdout}");
    assert!(stdout.contains(&format!("messages: {MESSAGES}\n")), "{recipe}: {stdout}");
    let stats = fake.stats().graph.by_route;
    assert_eq!(stats["me"], 1, "{recipe}: one call of /me reached Graph");
    assert_eq!(stats["messages"], 3, "{recipe}: the iterator fetched three pages of /me/messages from Graph");
}

#[tokio::test]
async fn python_sdk_through_the_proxy_walks_three_pages() {
    let Some(env) = sdk_env("py/bin/python") else { return };
    let (fake, daemon) = signed_in().await;
    let stdout = run(&env.join("py/bin/python"), "python_proxy.py", &daemon, &[]);
    assert_walked(&stdout, &fake, "python_proxy.py");
}

#[tokio::test]
async fn python_sdk_with_the_socket_credential_calls_graph_itself() {
    let Some(env) = sdk_env("py/bin/python") else { return };
    let (fake, daemon) = signed_in().await;
    let base = format!("{}/v1.0", fake.base_url());
    let stdout = run(&env.join("py/bin/python"), "python_credential.py", &daemon, &[("GRAPH_BASE_URL", &base)]);
    assert_walked(&stdout, &fake, "python_credential.py");
}

/// CAE: after a policy change Graph challenges the cached token; the SDK hands the challenge's claims to the
/// credential's `get_token`, the credential passes them to the daemon, and the daemon's one claims refresh gives a
/// token Graph takes.
#[tokio::test]
async fn python_credential_passes_a_claims_challenge_through() {
    let Some(env) = sdk_env("py/bin/python") else { return };
    let (fake, daemon) = signed_in_with("cae = true").await;
    fake.change_policy(ALICE).unwrap();
    let before = fake.stats();
    let base = format!("{}/v1.0", fake.base_url());
    let stdout = run(&env.join("py/bin/python"), "python_credential.py", &daemon, &[("GRAPH_BASE_URL", &base)]);
    assert!(stdout.contains(&format!("me: {ALICE}\n")), "{stdout}");
    assert!(stdout.contains(&format!("messages: {MESSAGES}\n")), "{stdout}");
    let after = fake.stats();
    assert_eq!(after.graph.challenges - before.graph.challenges, 1, "Graph challenged the old token once");
    assert_eq!(after.token.with_challenge - before.token.with_challenge, 1, "one refresh carried the claims");
}

/// Runs a JavaScript recipe with `node`: a copy of the file goes into the SDK environment's npm prefix, because an
/// ES module finds its packages only in a `node_modules` above it (`NODE_PATH` does not apply to `import`).
fn run_node(env: &Path, recipe: &str, daemon: &Daemon) -> String {
    let dir = env.join("node/recipes").join(format!("{}-{}", std::process::id(), recipe.replace('.', "-")));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(recipe);
    std::fs::copy(docs().join("sdks").join(recipe), &copy).unwrap();
    let output = Command::new("node").arg(&copy).env("GRAPHBROKER_SOCKET", &daemon.socket).output().expect("node");
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{recipe}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    stdout.into_owned()
}

#[tokio::test]
async fn js_sdk_through_the_proxy_walks_three_pages() {
    let Some(env) = sdk_env("node/node_modules/@microsoft/microsoft-graph-client") else { return };
    let (fake, daemon) = signed_in().await;
    let stdout = run_node(&env, "js_proxy.mjs", &daemon);
    assert_walked(&stdout, &fake, "js_proxy.mjs");
}

/// The JS provider recipe, imported as it is, gets the daemon's token, and Graph (the stand-in) takes it for
/// `/me`. The SDK itself attaches tokens only to https URLs, and the stand-in speaks http: the SDK half of this
/// recipe is not run here (docs/sdks.md says so).
#[tokio::test]
async fn js_provider_gets_the_daemons_token() {
    let Some(env) = sdk_env("node/node_modules/@microsoft/microsoft-graph-client") else { return };
    let (fake, daemon) = signed_in().await;
    let dir = env.join("node/recipes").join(format!("{}-provider", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(docs().join("sdks/js_provider.mjs"), dir.join("js_provider.mjs")).unwrap();
    let main = dir.join("main.mjs");
    std::fs::write(
        &main,
        r#"import { GraphbrokerAuthProvider } from "./js_provider.mjs";
const token = await new GraphbrokerAuthProvider({ scopes: ["User.Read", "Mail.Read"] }).getAccessToken();
const me = await (await fetch(`${process.env.GRAPH_BASE_URL}/me`, { headers: { Authorization: `Bearer ${token}` } })).json();
console.log(`me: ${me.userPrincipalName}`);
try {
  await new GraphbrokerAuthProvider({ scopes: ["http://127.0.0.1/.default"] }).getAccessToken();
} catch (error) {
  console.log(error.message.split(":")[1].trim());
}
"#,
    )
    .unwrap();
    let output = Command::new("node")
        .arg(&main)
        .env("GRAPHBROKER_SOCKET", &daemon.socket)
        .env("GRAPH_BASE_URL", format!("{}/v1.0", fake.base_url()))
        .output()
        .expect("node");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout, format!("me: {ALICE}\ninvalid_scopes\n"));
}

/// docs/sdks.md quotes every recipe file under docs/sdks/ in full, right after a `<!-- recipe: sdks/NAME -->`
/// line, and names no file that is not there: the doc cannot drift from what the tests run.
#[test]
fn the_doc_quotes_every_recipe_file_as_it_is() {
    let doc = std::fs::read_to_string(docs().join("sdks.md")).unwrap();
    let mut quoted = Vec::new();
    for (at, _) in doc.match_indices("<!-- recipe: ") {
        let rest = &doc[at + "<!-- recipe: ".len()..];
        let (name, rest) = rest.split_once(" -->\n").expect("a recipe marker ends with ` -->`");
        let rest = rest.strip_prefix("```").expect("the marker is followed by a fenced block");
        let body = &rest[rest.find('\n').unwrap() + 1..];
        let body = &body[..body.find("\n```\n").expect("the block is closed") + 1];
        let file = std::fs::read_to_string(docs().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(body, file, "docs/sdks.md quotes {name} as it is");
        quoted.push(name.trim_start_matches("sdks/").to_owned());
    }
    let mut files: Vec<_> = std::fs::read_dir(docs().join("sdks"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    quoted.sort();
    assert_eq!(quoted, files, "every recipe file is quoted once");
}
