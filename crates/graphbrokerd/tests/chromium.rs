//! Browser sign-in end to end in a real headless Chromium, driven over WebDriver (chromedriver + fantoccini).
//!
//! The daemon's own browser command is a harmless recorder: the test, playing the user, checks that the waiting
//! `graphbroker-client token` printed the sign-in URL, opens the daemon's launch page (what the daemon hands its
//! browser, which redirects there), clicks through the stand-in platform's sign-in/consent page, lands on the
//! daemon's success page (kept as `target/browser-signin-success.png`), and checks that the token the client then
//! prints is accepted by the stand-in's `/v1.0/me`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test installs them). Without them the test is skipped
//! with a printed reason, or fails when `GRAPHBROKER_TEST_BROWSER=required` (as scripts/test sets it).

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless, as root (so no sandbox), no network traffic of Chromium's own, no first-run UI.
/// `--user-data-dir` is added per run.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// What the client prints on stderr in front of the sign-in URL (`SignInPrompt::instruction`).
const PROMPT: &str = "open this page in a browser: ";

/// The chromedriver binary when Chromium and chromedriver are both installed. Otherwise a skip with a printed
/// reason, or a failure under `GRAPHBROKER_TEST_BROWSER=required`.
fn chromium_available(test: &str) -> Option<PathBuf> {
    let chromedriver = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("chromedriver")).find(|p| p.is_file()));
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).is_file() {
        missing.push(CHROMIUM);
    }
    if chromedriver.is_none() {
        missing.push("chromedriver (on PATH)");
    }
    if missing.is_empty() {
        return chromedriver;
    }
    let missing = missing.join(" and ");
    if std::env::var("GRAPHBROKER_TEST_BROWSER").as_deref() == Ok("required") {
        panic!(
            "{test}: {missing} not installed but GRAPHBROKER_TEST_BROWSER=required (apt-get install chromium chromium-driver)"
        );
    }
    eprintln!(
        "skipping {test}: {missing} not installed (apt-get install chromium chromium-driver, or run scripts/test)"
    );
    None
}

/// Cargo's target directory (the one holding `CACHEDIR.TAG`), found from the daemon binary's path.
fn target_dir() -> PathBuf {
    let binary = Path::new(graphbrokerd_bin());
    binary
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .unwrap_or_else(|| binary.parent().and_then(Path::parent).expect("target/<profile>/graphbrokerd"))
        .to_path_buf()
}

/// A profile that signs in through the browser; the daemon's "browser" only records the URL it was given.
fn browser_config(fake: &fake_entra::FakeEntra, opened: &Path) -> String {
    let base =
        config(fake, "memory", &unique_service("chromium"), "").replace("flow = \"device\"", "flow = \"browser\"");
    let top = format!(
        "browser_command = [\"sh\", \"-c\", \"printf '%s\\\\n' \\\"$0\\\" >> {}\"]\nbrowser_timeout = 300\n",
        opened.display()
    );
    base.replacen("default_profile", &format!("{top}default_profile"), 1)
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// Waits (bounded) for `child` to exit.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `chromedriver --port=N` child in its own process group, with HOME (and the XDG config/cache dirs) in a
/// temporary directory and no session bus, so that neither it nor Chromium writes to the real home. Dropped: the
/// group gets SIGTERM (then SIGKILL), and any Chromium process whose command line still names that directory is
/// killed by PID.
struct ChromeDriver {
    child: Option<Child>,
    url: String,
    home: tempfile::TempDir,
    log_path: PathBuf,
}

impl ChromeDriver {
    async fn start(binary: &Path) -> ChromeDriver {
        use std::os::unix::process::CommandExt;
        let home = tempfile::tempdir().expect("temp HOME");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log_path = home.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path).expect("chromedriver log");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("XDG_CACHE_HOME", home.path().join(".cache"))
            // Keep Chromium off the session bus scripts/test runs the suite on: it would activate the
            // accessibility bus there (a service that could outlive the run) and could reach the test keyring.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let mut driver = ChromeDriver { child: Some(child), url: format!("http://127.0.0.1:{port}"), home, log_path };
        driver.wait_ready().await;
        driver
    }

    /// Polls `GET /status` until chromedriver reports `ready`, or it exits (then panics with its log).
    async fn wait_ready(&mut self) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = http.get(format!("{}/status", self.url)).send().await
                && let Ok(status) = response.json::<serde_json::Value>().await
                && status["value"]["ready"] == serde_json::Value::Bool(true)
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("chromedriver exited early ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn user_data_dir(&self) -> PathBuf {
        self.home.path().join("chromium-profile")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A WebDriver session on headless Chromium with this run's profile directory.
    async fn session(&self) -> fantoccini::Client {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.user_data_dir().display()));
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": CHROMIUM, "args": args }));
        // Plain HTTP to chromedriver on loopback: no TLS stack needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session on Chromium: {e}\nchromedriver log:\n{}", self.log()))
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        use nix::sys::signal::Signal;
        if let Some(mut child) = self.child.take() {
            let group = -(child.id() as i32);
            signal(group, Signal::SIGTERM);
            if wait_bounded(&mut child, Duration::from_secs(5)).is_none() {
                signal(group, Signal::SIGKILL);
                let _ = child.wait();
            }
        }
        // A Chromium process that left the group (crashpad's handler makes its own) names this run's temporary
        // HOME on its command line: the profile directory and crash-report database are in it.
        let home = self.home.path().display().to_string();
        let mut left = pids_mentioning(&home);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !left.is_empty() && Instant::now() < deadline {
            left.iter().for_each(|pid| signal(*pid, Signal::SIGTERM));
            std::thread::sleep(Duration::from_millis(20));
            left = pids_mentioning(&home);
        }
        left.iter().for_each(|pid| signal(*pid, Signal::SIGKILL));
    }
}

/// A child process killed by PID if the test ends before it does.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Lines of `stream`, read on a thread and handed over a channel (so waits on them can have a deadline).
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads the client's stderr until the browser prompt, returns its URL; every line read is kept in `seen`.
fn browser_url_from(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let url = line.split(PROMPT).nth(1).and_then(|rest| rest.split_whitespace().next()).map(str::to_owned);
                seen.push(line);
                if let Some(url) = url {
                    return url;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no browser prompt on the client's stderr in time; it printed:\n{}", seen.join("\n"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the client's stderr ended without a browser prompt:\n{}", seen.join("\n"))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_headless_chromium_completes_the_browser_sign_in_for_a_waiting_client() {
    let test = "a_real_headless_chromium_completes_the_browser_sign_in_for_a_waiting_client";
    let Some(chromedriver) = chromium_available(test) else { return };
    let started = Instant::now();
    let client_bin = client_bin();

    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let daemon = Daemon::start(&browser_config(&fake, &opened));
    let driver = ChromeDriver::start(&chromedriver).await;

    // The person at the terminal: `graphbroker-client token` waits for the sign-in and prints its URL on stderr.
    let mut client = Running(
        Command::new(&client_bin)
            .arg("--no-autostart")
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["token", "--scopes", "User.Read", "--timeout", "120"])
            .env_remove("GRAPHBROKER_SOCKET")
            .env_remove("GRAPHBROKER_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("graphbroker-client starts"),
    );
    let stdout = client.0.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stdout).read_to_string(&mut text).map(|_| text)
    });
    let stderr = lines_of(client.0.stderr.take().unwrap());
    let mut stderr_seen = Vec::new();
    let url = tokio::task::block_in_place(|| browser_url_from(&stderr, &mut stderr_seen));
    assert!(url.starts_with(&fake.authority("common")), "{url}");
    let redirect_uri = query_param(&url, "redirect_uri");
    assert!(redirect_uri.starts_with("http://localhost:"), "{redirect_uri}");
    // The daemon ran its browser command (the recorder, not Chromium) on its loopback launch page, not on the
    // authorize URL: a command line is readable by every user.
    let prefix = format!("http://127.0.0.1:{}/start/", redirect_uri.trim_start_matches("http://localhost:"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let launch = loop {
        let opened = std::fs::read_to_string(&opened).unwrap_or_default().trim().to_owned();
        if opened.starts_with(&prefix) {
            break opened;
        }
        assert!(Instant::now() < deadline, "the daemon did not run its browser command with the launch page");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // The person's browser, opened where the daemon would open it: the launch page sends it on to the
    // platform's sign-in/consent page; pick the account, Accept.
    let browser = driver.session().await;
    browser.goto(&launch).await.expect("open the launch page");
    let form = browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("form#consent"))
        .await
        .expect("the platform's sign-in page");
    let client_id = browser.find(Locator::Css("code#client_id")).await.unwrap().text().await.unwrap();
    assert_eq!(client_id, CLIENT_ID);
    let scopes = browser.find(Locator::Css("ul#scopes")).await.unwrap().text().await.unwrap();
    assert!(scopes.contains("User.Read"), "the page lists the requested permission: {scopes}");
    let user = form.find(Locator::Css("input#user[name=user]")).await.expect("the account field");
    user.clear().await.unwrap();
    user.send_keys(ALICE).await.unwrap();
    form.find(Locator::Css("button#accept")).await.expect("the Accept button").click().await.unwrap();

    // The platform redirects to the daemon's loopback listener, which shows its own page.
    let title = browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("h1#title"))
        .await
        .unwrap_or_else(|e| panic!("the daemon's page did not appear ({e}):\n{}", daemon.log()));
    assert_eq!(title.text().await.unwrap(), "Signed in");
    let message = browser.find(Locator::Css("p#message")).await.unwrap().text().await.unwrap();
    assert!(message.contains("close this tab"), "{message}");
    let landed = browser.current_url().await.unwrap();
    assert!(landed.as_str().starts_with(&redirect_uri), "{landed} is not under {redirect_uri}");
    assert_eq!(
        landed.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()),
        Some(query_param(&url, "state"))
    );

    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
    let screenshot = target_dir().join("browser-signin-success.png");
    std::fs::write(&screenshot, &png).expect("write the screenshot");
    eprintln!("screenshot of the success page: {}", screenshot.display());
    browser.close().await.expect("end the WebDriver session");

    // The waiting client gets its token and prints only that on stdout.
    let status = tokio::task::block_in_place(|| wait_bounded(&mut client.0, Duration::from_secs(60)));
    stderr_seen.extend(stderr.try_iter());
    let status = status.unwrap_or_else(|| {
        panic!("the client did not finish after the sign-in; stderr:\n{}\n{}", stderr_seen.join("\n"), daemon.log())
    });
    assert!(status.success(), "client exit {status}; stderr:\n{}", stderr_seen.join("\n"));
    let stdout = stdout.join().unwrap().expect("client stdout");
    let token = stdout.trim_end_matches('\n');
    assert!(!token.is_empty() && !token.contains(char::is_whitespace), "stdout is one token: {stdout:?}");
    assert_eq!(token.split('.').count(), 3, "a JWT-shaped access token");
    assert_eq!(fake.stats().token.authorization_code, 1, "one code redeemed");

    // The token works at the stand-in's Graph.
    let response =
        reqwest::Client::new().get(format!("{}/v1.0/me", fake.base_url())).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let me: serde_json::Value = response.json().await.unwrap();
    assert_eq!(me["userPrincipalName"], ALICE, "{me}");
    eprintln!("{test}: {:.1} s", started.elapsed().as_secs_f64());
}
