//! Desktop notifications end to end: the real daemon, a private D-Bus session bus (`dbus-daemon`), and a
//! stand-in `org.freedesktop.Notifications` service served by this test, which records every `Notify` call and
//! plays the user clicking an action (`ActionInvoked`).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use graphbroker_protocol::TokenQuery;
use support::*;

/// A `dbus-daemon --session` of this test's own; killed when dropped.
struct SessionBus {
    child: Child,
    address: String,
}

impl SessionBus {
    /// `None` (the test is skipped) where dbus-daemon is not installed.
    fn start() -> Option<Self> {
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // The address line is its readiness: it is printed once the bus listens.
        let mut address = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut address).expect("the bus address");
        Some(Self { child, address: address.trim().to_owned() })
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a `Notify` call carried.
#[derive(Debug)]
struct Received {
    app_name: String,
    summary: String,
    body: String,
    actions: Vec<String>,
}

struct FakeNotifications(mpsc::Sender<Received>);

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl FakeNotifications {
    #[allow(clippy::too_many_arguments)] // reason: the method's signature is the specification's
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let _ = self.0.send(Received { app_name, summary, body, actions });
        1
    }
}

/// The stand-in on `bus`; its notices arrive on the receiver.
fn stand_in(bus: &SessionBus) -> (zbus::blocking::Connection, mpsc::Receiver<Received>) {
    let (tx, notices) = mpsc::channel();
    let service = zbus::blocking::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.Notifications")
        .unwrap()
        .serve_at("/org/freedesktop/Notifications", FakeNotifications(tx))
        .unwrap()
        .build()
        .expect("the stand-in notification service is on the bus");
    (service, notices)
}

/// The user clicks action `key` of notification 1 (the stand-in numbers every notification 1).
fn invoke_action(service: &zbus::blocking::Connection, key: &str) {
    service
        .emit_signal(
            None::<&str>,
            "/org/freedesktop/Notifications",
            "org.freedesktop.Notifications",
            "ActionInvoked",
            &(1u32, key),
        )
        .expect("ActionInvoked is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_is_answered_by_the_notifications_allow_action() {
    let Some(bus) = SessionBus::start() else {
        eprintln!("skipped: dbus-daemon is not installed");
        return;
    };
    let (service, notices) = stand_in(&bus);
    let fake = fake();
    let text = config(&fake, "memory", &unique_service("ask-notify"), "\n[policy]\ndefault = \"ask\"\n");
    let daemon = Daemon::start_with(&text, |command| {
        command.env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    });
    let client = daemon.client();
    let asked = tokio::spawn(async move { client.token(&query("User.Read")).await });
    let notice = notices.recv_timeout(Duration::from_secs(20)).expect("the ask is notified");
    assert!(notice.summary.contains("asks for a token"), "{notice:?}");
    assert!(notice.body.contains("policy approve"), "{notice:?}");
    assert_eq!(notice.actions, ["allow", "Allow once", "always", "Always allow", "deny", "Deny"]);
    invoke_action(&service, "allow");
    let error = asked.await.unwrap().expect_err("nobody signed in");
    // Past the policy: it reached the sign-in.
    assert_eq!(error.code(), Some(graphbroker_protocol::ErrorCode::SigninRequired), "{error}");
    // Allowed once: no rule was written.
    assert!(!std::fs::read_to_string(&daemon.config_path).unwrap().contains("[[policy.rules]]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_sign_in_is_notified_and_a_terminal_one_is_not() {
    let Some(bus) = SessionBus::start() else {
        eprintln!("skipped: dbus-daemon is not installed");
        return;
    };
    let (_service, notices) = stand_in(&bus);

    let fake = fake();
    let extra = "\n[profiles.other]\nauthority = \"AUTHORITY\"\nclient_id = \"CLIENT\"\nflow = \"device\"\nstore = \"memory\"\n"
        .replace("AUTHORITY", fake.authority("common").as_str())
        .replace("CLIENT", CLIENT_ID);
    let text = format!("notifications = true\n{}", config(&fake, "memory", &unique_service("notify"), &extra));
    let daemon = Daemon::start_with(&text, |command| {
        command.env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    });

    // A terminal shows this prompt (the CLI sends the terminal header): no notification.
    let terminal = daemon.client().showing_prompts(true);
    let shown = device_code_of(&needing_signin(&terminal, &query("User.Read")).await);
    // A background program's request: nobody is looking, so the prompt goes to the desktop.
    let other = TokenQuery { profile: Some("other".into()), ..TokenQuery::default() };
    let background = device_code_of(&needing_signin(&daemon.client(), &other).await);

    // Notices go out one at a time in the order they were decided, and the terminal's prompt was decided
    // first: had it been notified, that notice would be the first to arrive.
    let first = notices.recv_timeout(Duration::from_secs(20)).expect("a Notify call");
    assert_eq!(first.app_name, "graphbroker");
    assert!(first.summary.contains("sign-in"), "{first:?}");
    assert!(first.body.contains(&background), "the first notice is not the background prompt: {first:?}");
    assert!(first.body.contains(&format!("{}/devicelogin", fake.base_url())), "{first:?}");
    assert!(!first.body.contains(&shown), "{first:?}");
}
