//! The browser sign-in's loopback listener under attack: another user floods its port, a web page tries its
//! launch page, half-sent requests try to outlive the sign-in. `setpriv` plays another user (root only); a
//! small Python program (python3 is installed by scripts/test) holds its connections.
//!
//! Timing: these tests assert outcomes, never speed. Where a request must "still answer" under attack, it is
//! given a generous client timeout (10 s) as a liveness bound: without the defence it does not answer at all.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// The uid another user's connections run as.
const NOBODY: u32 = 65534;

/// How many connections the other user opens: more than the 1,024 descriptors a daemon often starts with.
const FLOOD: usize = 1_100;

/// The liveness bound of a request made under attack (see the module docs).
const LIVENESS: Duration = Duration::from_secs(10);

/// Two profiles: `work` (device code, signed in for a cached token) and `web`, whose browser sign-in opens the
/// listener. The "browser" records the URL it was given.
fn two_profiles(fake: &fake_entra::FakeEntra, opened: &std::path::Path) -> String {
    let base = config(fake, "memory", &unique_service("loopback"), "");
    let web = base[base.find("[profiles.work]").unwrap()..]
        .replace("[profiles.work]", "[profiles.web]")
        .replace("flow = \"device\"", "flow = \"browser\"");
    let top = format!(
        "browser_command = [\"sh\", \"-c\", \"printf '%s\\\\n' \\\"$0\\\" >> {}\"]\nbrowser_timeout = 300\n",
        opened.display()
    );
    format!("{}\n{web}", base.replacen("default_profile", &format!("{top}default_profile"), 1))
}

/// The launch page the browser command was given, once it has run.
async fn launch_url(opened: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(opened).unwrap_or_default();
        if let Some(line) = text.lines().last() {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "the browser command was not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The browser's side: a GET without following redirects, with extra headers; (status, Location).
async fn browse_with(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut request = client.get(url).timeout(LIVENESS);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("browser request");
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), location)
}

/// The daemon's open file descriptors (root reads /proc/PID/fd of any process).
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Holds `count` connections to 127.0.0.1:`port` as uid 65534, each having sent half a request head, until
/// dropped. It prints how many it holds once they are all open.
struct Flood(std::process::Child, usize);

const FLOOD_PROGRAM: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(b"GET /start HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    except OSError:
        pass
    held.append(s)
print(len(held), flush=True)
sys.stdin.read()
"#;

impl Flood {
    fn start(port: u16, count: usize) -> Flood {
        let mut child = Command::new("setpriv")
            .args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".into()])
            .args(["/usr/bin/python3", "-c", FLOOD_PROGRAM, &port.to_string(), &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv and python3 are installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the flood's report");
        let held = line.trim().parse().unwrap_or_else(|_| panic!("the flood did not start: {line:?}"));
        Flood(child, held)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_flood_of_the_loopback_port_leaves_the_daemon_serving_and_the_sign_in_working() {
    let test = "another_users_flood_of_the_loopback_port_leaves_the_daemon_serving_and_the_sign_in_working";
    if !root_available(test) {
        return;
    }
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let daemon = Daemon::start(&two_profiles(&fake, &opened));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let web = graphbroker_protocol::TokenQuery { profile: Some("web".into()), ..query("User.Read") };
    let url = browser_url(&needing_signin(&client, &web).await);
    let port: u16 = query_param(&url, "redirect_uri").trim_start_matches("http://localhost:").parse().unwrap();
    let before = open_descriptors(daemon.pid());

    // Attack A: another user opens 1,100 connections to the listener, each with half a request head, and holds
    // them.
    let flood = tokio::task::block_in_place(|| Flood::start(port, FLOOD));
    assert_eq!(flood.1, FLOOD, "the flood holds its connections (the kernel accepted them all)");
    // The daemon closed them unread: it holds no descriptor for them.
    let during = open_descriptors(daemon.pid());
    assert!(during < before + 50, "the daemon holds {during} descriptors under the flood ({before} before)");

    // Everything else still answers (a liveness bound, see the module docs)…
    tokio::time::timeout(LIVENESS, client.healthz()).await.expect("healthz answers").expect("healthz");
    tokio::time::timeout(LIVENESS, client.status()).await.expect("status answers").expect("status");
    let cached = tokio::time::timeout(LIVENESS, client.token(&query("User.Read"))).await.expect("token answers");
    assert_eq!(cached.expect("a cached token").account.username, ALICE);
    // …and the user's own browser still completes the sign-in, while the flood goes on.
    let (status, location) = browse_with(&launch_url(&opened).await, &[("sec-fetch-site", "none")]).await;
    assert_eq!((status, location.as_deref()), (303, Some(url.as_str())));
    assert_eq!(browse_with(&url, &[]).await.0, 200, "the platform's sign-in page");
    let redirect = fake.approve_browser(&query_param(&url, "state"), ALICE).expect("approve");
    assert_eq!(browse_with(&redirect, &[]).await.0, 200);
    let signed_in =
        tokio::time::timeout(LIVENESS, client.token(&graphbroker_protocol::TokenQuery { wait: Some(5), ..web }))
            .await
            .expect("the web token answers");
    assert_eq!(signed_in.expect("the web profile's token").account.username, ALICE);
    drop(flood);

    let log = daemon.log();
    assert!(!log.contains("Too many open files"), "the daemon ran out of descriptors:\n{log}");
    assert!(log.contains("closed a connection to the browser sign-in listener unread"), "the refusal is logged");
    let warnings = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("closed a connection to the browser sign-in listener"))
        .count();
    assert!(warnings < 20, "one refusal a connection at warn level floods the log ({warnings} lines)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_page_answers_once_on_its_own_path_and_never_a_cross_site_request() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let daemon = Daemon::start(&two_profiles(&fake, &opened));
    let client = daemon.client();
    let web = graphbroker_protocol::TokenQuery { profile: Some("web".into()), ..query("User.Read") };
    let url = browser_url(&needing_signin(&client, &web).await);
    let launch = launch_url(&opened).await;
    let port = query_param(&url, "redirect_uri").trim_start_matches("http://localhost:").to_owned();
    let (base, random) = launch.rsplit_once('/').unwrap();
    assert_eq!(base, format!("http://127.0.0.1:{port}/start"));
    assert!(random.len() >= 32 && random.bytes().all(|b| b.is_ascii_hexdigit()), "{random}");

    // Attack E: a page at another site, or any request not on this sign-in's own path, gets 404.
    let not_found = |(status, location): (u16, Option<String>)| {
        assert_eq!((status, location), (404, None));
    };
    not_found(browse_with(base, &[]).await);
    not_found(browse_with(&format!("{base}/0123456789abcdef0123456789abcdef"), &[]).await);
    not_found(browse_with(&launch, &[("sec-fetch-site", "cross-site")]).await);
    not_found(browse_with(&launch, &[("sec-fetch-site", "same-site")]).await);
    not_found(browse_with(&launch, &[("origin", "https://evil.example")]).await);
    not_found(browse_with(&launch, &[("host", "evil.example")]).await);
    // The user's own browser, opened on it: once.
    let (status, location) = browse_with(&launch, &[("sec-fetch-site", "none")]).await;
    assert_eq!((status, location.as_deref()), (303, Some(url.as_str())));
    not_found(browse_with(&launch, &[]).await);
    // A refusal closes its connection.
    let response = reqwest::get(format!("http://127.0.0.1:{port}/favicon.ico")).await.unwrap();
    assert_eq!(response.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_do_not_outlive_the_sign_in() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let daemon = Daemon::start(&two_profiles(&fake, &opened));
    let client = daemon.client();
    let web = graphbroker_protocol::TokenQuery { profile: Some("web".into()), ..query("User.Read") };
    let url = browser_url(&needing_signin(&client, &web).await);
    let port: u16 = query_param(&url, "redirect_uri").trim_start_matches("http://localhost:").parse().unwrap();
    let mut half_sent: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
            stream
        })
        .collect();
    assert_eq!(browse_with(&url, &[]).await.0, 200, "the platform's sign-in page");
    let redirect = fake.approve_browser(&query_param(&url, "state"), ALICE).expect("approve");
    assert_eq!(browse_with(&redirect, &[]).await.0, 200);
    client.token(&graphbroker_protocol::TokenQuery { wait: Some(30), ..web }).await.expect("token");
    // Each half-sent connection is closed by the daemon (the read ends), not left open after the sign-in.
    for stream in &mut half_sent {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut rest = Vec::new();
        let ended = tokio::task::block_in_place(|| stream.read_to_end(&mut rest));
        assert!(
            ended.is_ok() || ended.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{ended:?}"
        );
    }
}
