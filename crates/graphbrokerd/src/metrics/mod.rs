//! `GET /metrics`: the daemon's counters, the identity platform's latency and the cached tokens' remaining
//! life, in the Prometheus text format (prometheus-client's encoder).
//!
//! Every series is created when the daemon starts, from the closed label sets of `labels.rs`, and its handle
//! kept in an array: counting on the request path is one relaxed atomic add on a counter found by index, never a
//! map lookup, a lock or an allocation. The status route's `counters` are read from the same counters, so the
//! two cannot disagree. The per-profile token gauges are computed when scraped, from the token cache itself.
//!
//! Counts only: no label carries a scope, an account, a tenant, a path or a token. The one free-form label is
//! `profile`, on the token gauges: a name from the user's own config, already shown by `status`.

mod labels;

use std::fmt::Write as _;
use std::time::Duration;

use graphbroker_protocol::{Counters, ErrorCode};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use self::labels::error_index;
pub use self::labels::{ERROR_CODES, Flow, IdpCall, RefreshOutcome, Route, SigninOutcome};

/// The `Content-Type` of [`Metrics::encode`]'s output: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Bucket bounds of the platform latency histogram, in seconds: a token answer from a nearby region takes tens of
/// milliseconds, a slow one seconds; the top bounds reach the default HTTP timeout.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// The latency of each exchange with the identity platform, by [`IdpCall`]. Cloned into the HTTP layer under
/// `oauth2`; clones share the histograms. Observing takes the histogram's short lock, off the cached-token path.
#[derive(Debug, Clone)]
pub struct IdpLatency([Histogram; IdpCall::ALL.len()]);

impl IdpLatency {
    pub fn observe(&self, call: IdpCall, took: Duration) {
        self.0[call as usize].observe(took.as_secs_f64());
    }
}

/// One profile's cached tokens at scrape time.
#[derive(Debug, Clone)]
pub struct ProfileTokens {
    pub profile: String,
    /// Unexpired access tokens held.
    pub cached: usize,
    /// The remaining life of the one that expires first.
    pub soonest: Option<Duration>,
}

/// Every metric of the daemon. One per broker; shared by the server and the identity platform's HTTP layer.
pub struct Metrics {
    registry: Registry,
    requests: [[Counter; 2]; Route::ALL.len()],
    errors: [Counter; ERROR_CODES.len()],
    token_requests: Counter,
    cache_hits: Counter,
    refreshes: [Counter; RefreshOutcome::ALL.len()],
    signins_started: [Counter; Flow::ALL.len()],
    signins: [[Counter; SigninOutcome::ALL.len()]; Flow::ALL.len()],
    peer_refusals: Counter,
    idp_latency: IdpLatency,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("counters", &self.counters()).finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a counter family and hands back the handle of each of its series.
fn counters1<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    series: impl Fn(usize) -> Labels1,
) -> [Counter; N] {
    let family = Family::<Labels1, Counter>::default();
    registry.register(name, help, family.clone());
    std::array::from_fn(|i| family.get_or_create(&series(i)).clone())
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();

        let requests_family = Family::<Labels2, Counter>::default();
        registry.register(
            "graphbroker_requests",
            "Requests answered, by route (the route table's name, never the path) and outcome (error: HTTP 4xx/5xx)",
            requests_family.clone(),
        );
        let requests = std::array::from_fn(|r| {
            std::array::from_fn(|o| {
                let outcome = if o == 0 { "ok" } else { "error" };
                requests_family.get_or_create(&[("route", Route::ALL[r].as_str()), ("outcome", outcome)]).clone()
            })
        });
        let errors = counters1(
            &mut registry,
            "graphbroker_errors",
            "Error answers, by the protocol's stable error code (refusals of other users' connections included)",
            |i| [("code", ERROR_CODES[i].as_str())],
        );

        let token_requests = Counter::default();
        registry.register(
            "graphbroker_token_requests",
            "Tokens asked of the broker: token and header requests, and each token the Graph proxy attached",
            token_requests.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "graphbroker_cache_hits",
            "Token requests answered from the in-memory cache",
            cache_hits.clone(),
        );
        let refreshes = counters1(
            &mut registry,
            "graphbroker_refreshes",
            "Refresh-token grants sent to the identity platform, by outcome",
            |i| [("outcome", RefreshOutcome::ALL[i].as_str())],
        );
        let signins_started =
            counters1(&mut registry, "graphbroker_signins_started", "Sign-ins started, by flow", |i| {
                [("flow", Flow::ALL[i].as_str())]
            });

        let signins_family = Family::<Labels2, Counter>::default();
        registry.register("graphbroker_signins", "Sign-ins ended, by flow and outcome", signins_family.clone());
        let signins = std::array::from_fn(|f| {
            std::array::from_fn(|o| {
                let labels = [("flow", Flow::ALL[f].as_str()), ("outcome", SigninOutcome::ALL[o].as_str())];
                signins_family.get_or_create(&labels).clone()
            })
        });

        let peer_refusals = Counter::default();
        registry.register(
            "graphbroker_peer_refusals",
            "Connections and requests refused because the peer is another user",
            peer_refusals.clone(),
        );

        let latency_family = Family::<Labels1, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "graphbroker_idp_request_duration_seconds",
            "Time of each HTTP exchange with the identity platform, by call (a device-code sign-in polls many times)",
            latency_family.clone(),
        );
        let idp_latency = IdpLatency(std::array::from_fn(|i| {
            latency_family.get_or_create(&[("call", IdpCall::ALL[i].as_str())]).clone()
        }));

        Self {
            registry,
            requests,
            errors,
            token_requests,
            cache_hits,
            refreshes,
            signins_started,
            signins,
            peer_refusals,
            idp_latency,
        }
    }

    /// Counts an answer of `route`; `error` is the error code it carried, if the daemon answered one.
    pub fn answered(&self, route: Route, failed: bool, error: Option<ErrorCode>) {
        self.requests[route.index()][usize::from(failed)].inc();
        if let Some(code) = error {
            self.errors[error_index(code)].inc();
        }
    }

    /// Counts a peer of another user refused (its `forbidden` answer included).
    pub fn peer_refused(&self) {
        self.peer_refusals.inc();
        self.errors[error_index(ErrorCode::Forbidden)].inc();
    }

    pub fn token_request(&self) {
        self.token_requests.inc();
    }

    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    pub fn refreshed(&self, outcome: RefreshOutcome) {
        self.refreshes[outcome as usize].inc();
    }

    pub fn signin_started(&self, flow: Flow) {
        self.signins_started[flow as usize].inc();
    }

    pub fn signin_ended(&self, flow: Flow, outcome: SigninOutcome) {
        self.signins[flow as usize][outcome as usize].inc();
    }

    /// The histograms the identity platform's HTTP layer observes into.
    pub fn idp_latency(&self) -> IdpLatency {
        self.idp_latency.clone()
    }

    /// The status route's counters, read from the same series `/metrics` shows. `signin_required` answers are
    /// expected (nobody signed in yet, a caller that does not wait) and counted apart from the errors.
    pub fn counters(&self) -> Counters {
        let sum = |counters: &[Counter]| counters.iter().map(Counter::get).sum::<u64>();
        let signin_required = self.errors[error_index(ErrorCode::SigninRequired)].get();
        Counters {
            requests: self.token_requests.get(),
            cache_hits: self.cache_hits.get(),
            refreshes: sum(&self.refreshes),
            signins: sum(&self.signins_started),
            errors: sum(&self.errors) - signin_required,
            signin_required,
        }
    }

    /// Everything, in the Prometheus text format: the registry, then the token gauges of `profiles`.
    pub fn encode(&self, profiles: &[ProfileTokens]) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_text::encode(&mut out, &self.registry)?;
        let mut scraped = Registry::default();
        let cached = Family::<[(&'static str, String); 1], Gauge>::default();
        let soonest = Family::<[(&'static str, String); 1], Gauge>::default();
        for p in profiles {
            let label = [("profile", p.profile.clone())];
            cached.get_or_create(&label).set(i64::try_from(p.cached).unwrap_or(i64::MAX));
            if let Some(left) = p.soonest {
                soonest.get_or_create(&label).set(i64::try_from(left.as_secs()).unwrap_or(i64::MAX));
            }
        }
        scraped.register("graphbroker_cached_tokens", "Unexpired access tokens held in memory, by profile", cached);
        scraped.register(
            "graphbroker_token_remaining_seconds",
            "Seconds of life left to the profile's soonest-expiring cached access token (absent: none cached)",
            soonest,
        );
        let mut rest = String::new();
        prometheus_text::encode(&mut rest, &scraped)?;
        out.write_str(&rest)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_counters_are_the_metrics_series() {
        let metrics = Metrics::new();
        metrics.token_request();
        metrics.token_request();
        metrics.cache_hit();
        metrics.refreshed(RefreshOutcome::Ok);
        metrics.refreshed(RefreshOutcome::Unavailable);
        metrics.signin_started(Flow::Device);
        metrics.answered(Route::Token, true, Some(ErrorCode::InvalidScopes));
        metrics.peer_refused();
        metrics.answered(Route::Token, true, Some(ErrorCode::SigninRequired));
        let counters = metrics.counters();
        assert_eq!(
            (counters.requests, counters.cache_hits, counters.refreshes, counters.signins, counters.errors),
            (2, 1, 2, 1, 2)
        );
        assert_eq!(counters.signin_required, 1, "counted apart from the errors");
        let text = metrics.encode(&[]).unwrap();
        assert!(text.contains("graphbroker_refreshes_total{outcome=\"unavailable\"} 1\n"), "{text}");
        assert!(text.contains("graphbroker_errors_total{code=\"invalid_scopes\"} 1\n"), "{text}");
        assert!(text.contains("graphbroker_errors_total{code=\"signin_required\"} 1\n"), "{text}");
        assert!(text.contains("graphbroker_requests_total{route=\"token\",outcome=\"error\"} 2\n"), "{text}");
    }
}
