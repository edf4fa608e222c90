//! `GET /metrics` end to end: the real daemon on its real socket against the fake identity platform, scraped as
//! Prometheus would and read with a Prometheus text-format parser (`prometheus-parse`). A known sequence of
//! requests must move each series by exactly what it caused, and nothing the user would keep private may appear.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use graphbroker_client::GraphRequest;
use graphbroker_protocol::{ErrorCode, SignInPrompt, SignInState};
use prometheus_parse::{Scrape, Value};
use support::*;

/// One scrape over the raw socket: the head and the body as sent.
async fn scrape_raw(socket: &Path) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket).await.expect("connect");
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8(answer).expect("a text answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// The samples of one scrape, by metric name and sorted `name=value` labels.
struct Metrics {
    text: String,
    samples: HashMap<(String, String), Value>,
}

impl Metrics {
    async fn scrape(socket: &Path) -> Metrics {
        let (status, _, text) = scrape_raw(socket).await;
        assert_eq!(status, 200, "{text}");
        Metrics::parse(text)
    }

    fn parse(text: String) -> Metrics {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the Prometheus text format");
        let samples = scrape
            .samples
            .into_iter()
            .map(|s| {
                let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                labels.sort();
                ((s.metric, labels.join(",")), s.value)
            })
            .collect();
        Metrics { text, samples }
    }

    /// A counter's or gauge's value; `labels` as `k=v` pairs in alphabetical order of `k`.
    fn value(&self, name: &str, labels: &str) -> f64 {
        match self.samples.get(&(name.to_owned(), labels.to_owned())) {
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            other => panic!("{name}{{{labels}}}: {other:?} in\n{}", self.text),
        }
    }

    fn has(&self, name: &str, labels: &str) -> bool {
        self.samples.contains_key(&(name.to_owned(), labels.to_owned()))
    }

    /// Every series of `name`, by labels.
    fn series(&self, name: &str) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), value)| match value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => (labels.as_str(), *v),
                other => panic!("{name}{{{labels}}} is not a number: {other:?}"),
            })
            .collect()
    }

    /// How many observations a histogram series holds (its `+Inf` bucket).
    fn observations(&self, name: &str, labels: &str) -> f64 {
        match self.samples.get(&(name.to_owned(), labels.to_owned())) {
            Some(Value::Histogram(buckets)) => {
                buckets.iter().find(|b| b.less_than.is_infinite()).map(|b| b.count).expect("a +Inf bucket")
            }
            other => panic!("{name}{{{labels}}} is not a histogram: {other:?}"),
        }
    }
}

/// How much every series of `name` moved between two scrapes, by labels (only those that moved).
fn moved(before: &Metrics, after: &Metrics, name: &str) -> Vec<(String, f64)> {
    let mut moved: Vec<(String, f64)> = after
        .series(name)
        .into_iter()
        .map(|(labels, v)| {
            (labels.to_owned(), v - if before.has(name, labels) { before.value(name, labels) } else { 0.0 })
        })
        .filter(|(_, delta)| *delta != 0.0)
        .collect();
    moved.sort_by(|a, b| a.0.cmp(&b.0));
    moved
}

fn expected(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    let mut pairs: Vec<(String, f64)> = pairs.iter().map(|(l, v)| ((*l).to_owned(), *v)).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

const LATENCY: &str = "graphbroker_idp_request_duration_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_sequence_of_requests_moves_each_metric_by_exactly_what_it_caused() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("metrics"), ""));
    let client = daemon.client();
    let before = Metrics::scrape(&daemon.socket).await;
    assert_eq!(before.observations(LATENCY, "call=refresh"), 0.0);

    // A device-code sign-in asked for explicitly, approved at the platform; the status is polled until it lands.
    let signin = client.signin(None, None).await.expect("sign-in started");
    assert_eq!(signin.state, SignInState::Pending);
    let Some(SignInPrompt::Device { user_code, .. }) = &signin.signin else { panic!("a device prompt: {signin:?}") };
    fake.approve_device(user_code, ALICE).expect("approve");
    let mut status_calls = 0.0;
    let account = loop {
        status_calls += 1.0;
        let status = client.status().await.expect("status");
        if let Some(account) = status.profiles[0].account.clone() {
            break account;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Three cached tokens and a cached header; then another scope set, which takes a refresh.
    let first = client.token(&query("User.Read")).await.expect("cached token");
    let served = Instant::now();
    for _ in 0..2 {
        client.token(&query("User.Read")).await.expect("cached token");
    }
    client.header(&query("User.Read")).await.expect("cached header");
    fake.grant_consent(ALICE, CLIENT_ID, &["User.Read", "Mail.Read"]).expect("consent");
    let mail = client.token(&query("Mail.Read")).await.expect("a token for another scope set");
    // Errors with known codes: two resources in one token, and a path the daemon does not have.
    let error = client.token(&query("User.Read https://outlook.office.com/Mail.Send")).await.expect_err("refused");
    assert_eq!(error.code(), Some(ErrorCode::InvalidScopes), "{error}");
    let (status, _) = raw_get(&daemon.socket, "/v1/no-such-route").await;
    assert_eq!(status, 404);
    // A Graph call through the proxy, with the cached User.Read token.
    let me = client.graph(GraphRequest::new(hyper::Method::GET, "/v1.0/me")).await.expect("graph");
    assert_eq!(me.status(), 200);

    let after = Metrics::scrape(&daemon.socket).await;
    let now = Instant::now();

    assert_eq!(
        moved(&before, &after, "graphbroker_requests_total"),
        expected(&[
            ("outcome=ok,route=signin", 1.0),
            ("outcome=ok,route=status", status_calls),
            ("outcome=ok,route=token", 4.0),
            ("outcome=error,route=token", 1.0),
            ("outcome=ok,route=header", 1.0),
            ("outcome=error,route=other", 1.0),
            ("outcome=ok,route=graph", 1.0),
            // The first scrape, counted once it was answered.
            ("outcome=ok,route=metrics", 1.0),
        ])
    );
    assert_eq!(
        moved(&before, &after, "graphbroker_errors_total"),
        expected(&[("code=invalid_scopes", 1.0), ("code=not_found", 1.0)])
    );
    // Four tokens, a header, the refused scopes and the proxy's token.
    assert_eq!(moved(&before, &after, "graphbroker_token_requests_total"), expected(&[("", 7.0)]));
    assert_eq!(moved(&before, &after, "graphbroker_cache_hits_total"), expected(&[("", 5.0)]));
    assert_eq!(moved(&before, &after, "graphbroker_refreshes_total"), expected(&[("outcome=ok", 1.0)]));
    assert_eq!(moved(&before, &after, "graphbroker_signins_started_total"), expected(&[("flow=device", 1.0)]));
    assert_eq!(moved(&before, &after, "graphbroker_signins_total"), expected(&[("flow=device,outcome=ok", 1.0)]));
    assert_eq!(moved(&before, &after, "graphbroker_peer_refusals_total"), expected(&[]));

    // One device code, at least one poll, and exactly the one refresh, each timed.
    assert_eq!(after.observations(LATENCY, "call=devicecode"), 1.0);
    assert!(after.observations(LATENCY, "call=device_poll") >= 1.0, "{}", after.text);
    assert_eq!(after.observations(LATENCY, "call=refresh"), 1.0);
    assert_eq!(after.observations(LATENCY, "call=code_redeem"), 0.0);
    assert_eq!(fake.stats().token.refresh_token, 1, "the one refresh the histogram counted");

    // Two tokens cached; the soonest to expire is the sign-in's, with at most what it had when served, less the
    // time since.
    assert_eq!(after.value("graphbroker_cached_tokens", "profile=work"), 2.0);
    let remaining = after.value("graphbroker_token_remaining_seconds", "profile=work");
    let elapsed = now.duration_since(served).as_secs_f64();
    assert!(
        remaining <= first.expires_in as f64 && remaining >= first.expires_in as f64 - elapsed - 1.0,
        "remaining {remaining} s for a token served with {} s, {elapsed} s ago",
        first.expires_in
    );
    assert!(remaining <= mail.expires_in as f64);

    // The status counters are the same series.
    let counters = client.status().await.expect("status").counters;
    assert_eq!(counters.requests as f64, after.value("graphbroker_token_requests_total", ""));
    assert_eq!(counters.cache_hits as f64, after.value("graphbroker_cache_hits_total", ""));
    assert_eq!(counters.refreshes as f64, after.series("graphbroker_refreshes_total").iter().map(|s| s.1).sum::<f64>());
    assert_eq!(
        counters.signins as f64,
        after.series("graphbroker_signins_started_total").iter().map(|s| s.1).sum::<f64>()
    );
    assert_eq!(
        (counters.errors + counters.signin_required) as f64,
        after.series("graphbroker_errors_total").iter().map(|s| s.1).sum::<f64>()
    );
    assert_eq!(counters.signin_required as f64, after.value("graphbroker_errors_total", "code=signin_required"));

    // Counts only: no scope, account, tenant or token anywhere in the answer.
    let text = after.text.to_lowercase();
    for private in ["user.read", "mail.read", "mail.send", "graph.microsoft.com", "outlook.office.com", "/v1.0/me"] {
        assert!(!text.contains(private), "{private} in\n{}", after.text);
    }
    for private in [&account.username, &account.tenant_id, &account.home_account_id] {
        assert!(!private.is_empty() && !text.contains(&private.to_lowercase()), "{private} in\n{}", after.text);
    }
    let secrets = fake.issued_secrets();
    assert!(secrets.len() >= 4, "the fake's access and refresh tokens: {}", secrets.len());
    assert!(secrets.contains(&first.access_token));
    for secret in &secrets {
        assert!(!after.text.contains(secret.as_str()), "a token value in the metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_the_platform_refuses_is_counted_by_outcome_and_its_error_by_code() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("metrics_fail"), ""));
    let client = daemon.client();
    // Every token lives 200 s, short of the profile's 300 s min_valid: each request refreshes.
    fake.set_access_token_lifetime(Duration::from_secs(200));
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let before = Metrics::scrape(&daemon.socket).await;

    client.token(&query("User.Read")).await.expect("refreshed");
    // The platform stays down past the daemon's retry budget.
    fake.inject_fault(
        fake_entra::Endpoint::Token,
        100,
        fake_entra::Fault::Status { status: 503, retry_after: None, body: None },
    );
    let error = client.token(&query("User.Read")).await.expect_err("the platform is down");
    assert_eq!(error.code(), Some(ErrorCode::IdentityProviderUnavailable), "{error}");
    fake.clear_faults();

    let after = Metrics::scrape(&daemon.socket).await;
    assert_eq!(
        moved(&before, &after, "graphbroker_refreshes_total"),
        expected(&[("outcome=ok", 1.0), ("outcome=unavailable", 1.0)])
    );
    assert_eq!(
        moved(&before, &after, "graphbroker_errors_total"),
        expected(&[("code=identity_provider_unavailable", 1.0)])
    );
    assert_eq!(moved(&before, &after, "graphbroker_cache_hits_total"), expected(&[]));
    // Every attempt of the failed refresh is an exchange the histogram timed.
    let attempts = after.observations(LATENCY, "call=refresh") - before.observations(LATENCY, "call=refresh");
    assert!(attempts >= 2.0, "one good refresh and at least one failed attempt: {attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_as_prometheus_text_and_are_refused_to_another_uid() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("metrics_type"), ""));
    let (status, head, body) = scrape_raw(&daemon.socket).await;
    assert_eq!(status, 200, "{body}");
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim()))
        .expect("a content type");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("# TYPE graphbroker_requests_total counter"), "{body}");
    assert!(!body.contains("# EOF"), "the Prometheus format, not OpenMetrics");
    // Nothing cached yet: the profile has a token count of 0 and no remaining-life series.
    let metrics = Metrics::scrape(&daemon.socket).await;
    assert_eq!(metrics.value("graphbroker_cached_tokens", "profile=work"), 0.0);
    assert!(!metrics.has("graphbroker_token_remaining_seconds", "profile=work"), "{}", metrics.text);

    // `graphbroker-client metrics` prints the same text, which parses.
    let output = std::process::Command::new(client_bin())
        .args(["--no-autostart", "--socket"])
        .arg(&daemon.socket)
        .arg("metrics")
        .output()
        .expect("graphbroker-client metrics");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = Metrics::parse(String::from_utf8(output.stdout).expect("text"));
    assert_eq!(printed.value("graphbroker_cached_tokens", "profile=work"), 0.0);
    assert!(printed.value("graphbroker_requests_total", "outcome=ok,route=metrics") >= 2.0, "{}", printed.text);

    if !root_available("metrics_are_served_as_prometheus_text_and_are_refused_to_another_uid") {
        return;
    }
    // The daemon runs as `nobody`; this test process (root) is another user to it and can open the 0600 socket.
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("user nobody");
    let theirs = Daemon::start_as(&config(&fake, "memory", &unique_service("metrics_uid"), ""), &nobody);
    // Its own user scrapes it (curl as `nobody`) before and after: the harness's readiness probe was refused
    // too, so only the difference is this test's.
    let before = scrape_as(&nobody, &theirs.socket);
    let (status, body) = raw_get(&theirs.socket, "/metrics").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(!body.to_string().contains("graphbroker_"), "no metric in a refusal: {body}");
    let after = scrape_as(&nobody, &theirs.socket);
    assert_eq!(moved(&before, &after, "graphbroker_peer_refusals_total"), expected(&[("", 1.0)]));
    assert_eq!(moved(&before, &after, "graphbroker_errors_total"), expected(&[("code=forbidden", 1.0)]));
    // Refused before its request was read: it reached no route.
    assert_eq!(moved(&before, &after, "graphbroker_requests_total"), expected(&[("outcome=ok,route=metrics", 1.0)]));
}

/// A scrape by `user`, through curl run as that user.
fn scrape_as(user: &nix::unistd::User, socket: &Path) -> Metrics {
    let output = std::process::Command::new("setpriv")
        .args(["--reuid", &user.uid.to_string(), "--regid", &user.gid.to_string(), "--clear-groups", "curl"])
        .args(["--silent", "--show-error", "--fail", "--unix-socket"])
        .arg(socket)
        .arg("http://localhost/metrics")
        .output()
        .expect("curl as another user");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    Metrics::parse(String::from_utf8(output.stdout).expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_that_do_not_complete_are_counted_once_by_how_they_ended() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("metrics_signins"), ""));
    let client = daemon.client();
    let before = Metrics::scrape(&daemon.socket).await;

    // One cancelled by a sign-out (the task is stopped), one the user declines (the task sees it).
    let pending = client.signin(None, None).await.expect("sign-in started");
    assert_eq!(pending.state, SignInState::Pending);
    client.signout(None).await.expect("signed out");
    let pending = client.signin(None, None).await.expect("another sign-in started");
    let Some(SignInPrompt::Device { user_code, .. }) = &pending.signin else { panic!("a device prompt: {pending:?}") };
    fake.decline_device(user_code).expect("decline");
    // Ended once the status shows no sign-in under way.
    while client.status().await.expect("status").profiles[0].signin.is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let after = Metrics::scrape(&daemon.socket).await;
    assert_eq!(moved(&before, &after, "graphbroker_signins_started_total"), expected(&[("flow=device", 2.0)]));
    assert_eq!(moved(&before, &after, "graphbroker_signins_total"), expected(&[("flow=device,outcome=declined", 2.0)]));
    assert_eq!(moved(&before, &after, "graphbroker_refreshes_total"), expected(&[]));
}
