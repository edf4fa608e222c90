//! The request a token is being issued for, as the accept loop saw it: the peer process and the route. A
//! task-local set around each request (as `crate::waiting` does), so the broker's request path can ask who is
//! asking without a handle threaded through every route; and what the request path notes on the way (served
//! from the cache, refreshed, signed in), for the audit line.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex};

use graphbroker_protocol::{AuditOutcome, AuditRoute, routes};

use crate::caller::PeerProcess;

tokio::task_local! {
    static REQUEST: Arc<RequestContext>;
}

/// One request's context.
#[derive(Debug)]
pub struct RequestContext {
    pub peer: Arc<PeerProcess>,
    pub route: AuditRoute,
    pub(super) draft: Mutex<Draft>,
}

/// What the request path learnt so far.
#[derive(Debug, Default)]
pub(super) struct Draft {
    /// Where the token came from, the most telling so far (a sign-in over a refresh over the cache).
    pub source: Option<AuditOutcome>,
    /// The profile and scope-set key the user allowed this request (an `ask` rule), and the answer: a second token
    /// request of the same request (the proxy's renewal after a claims challenge) is not asked again.
    pub allowed: Option<(String, String, Cow<'static, str>)>,
    /// What decided the last token request of this request.
    pub decided_by: Option<Cow<'static, str>>,
}

impl RequestContext {
    /// The context of a request to `path` with `method` from `peer`.
    pub fn new(peer: Arc<PeerProcess>, method: &str, path: &str) -> Arc<Self> {
        let route = match path {
            routes::TOKEN => AuditRoute::Token,
            routes::HEADER => AuditRoute::Header,
            p if p.starts_with(routes::GRAPH_PREFIX) => {
                AuditRoute::Proxy { method: method.to_owned(), path: path_template(p) }
            }
            _ => AuditRoute::Other,
        };
        Arc::new(Self { peer, route, draft: Mutex::default() })
    }

    /// A context for the next request like the one `kept` was made for (the same peer and route): `kept` itself,
    /// cleared, when nothing else holds it any more (the last request's scope has ended), else a new one. A
    /// connection asking in a loop reuses one context instead of allocating one per request.
    pub fn again(kept: &mut Arc<Self>) -> Arc<Self> {
        match Arc::get_mut(kept) {
            Some(context) => *context.draft.get_mut().expect("draft lock") = Draft::default(),
            None => {
                *kept = Arc::new(Self { peer: kept.peer.clone(), route: kept.route.clone(), draft: Mutex::default() })
            }
        }
        kept.clone()
    }
}

/// Runs `request` with `context` as its context.
pub fn scope<F: Future>(context: Arc<RequestContext>, request: F) -> impl Future<Output = F::Output> {
    // The task-local's own future (see `waiting::scope`).
    REQUEST.scope(context, request)
}

/// The current request's context; `None` outside a connection's request (in-process tests, background work).
pub fn current() -> Option<Arc<RequestContext>> {
    REQUEST.try_with(Arc::clone).ok()
}

/// Notes where the current request's token came from; the most telling source is kept.
pub fn note(source: AuditOutcome) {
    let rank = |s: AuditOutcome| match s {
        AuditOutcome::SignedIn => 3,
        AuditOutcome::Refreshed => 2,
        _ => 1,
    };
    let _ = REQUEST.try_with(|context| {
        let mut draft = context.draft.lock().expect("draft lock");
        if draft.source.is_none_or(|old| rank(source) > rank(old)) {
            draft.source = Some(source);
        }
    });
}

/// A Graph path as a template: each segment that is not a plain word (`me`, `messages`, `$value`, `v1.0`) is `{}`,
/// so ids, addresses and file names stay out of the log.
pub fn path_template(path: &str) -> String {
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment.len() <= 40
            && segment.chars().all(|c| c.is_ascii_alphabetic() || c == '$' || c == '.')
            || segment.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && segment.len() <= 10
                && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
                && segment.chars().any(|c| c == '.')
    };
    let (path, _) = path.split_once('?').unwrap_or((path, ""));
    path.split('/').map(|s| if s.is_empty() || plain(s) { s } else { "{}" }).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_leave_the_path_template() {
        assert_eq!(path_template("/graph/v1.0/me/messages/AAMkADk0"), "/graph/v1.0/me/messages/{}");
        assert_eq!(path_template("/graph/v1.0/users/adele@contoso.com/drive"), "/graph/v1.0/users/{}/drive");
        assert_eq!(path_template("/graph/beta/me/photo/$value"), "/graph/beta/me/photo/$value");
    }

    #[test]
    fn a_context_made_again_starts_clear_and_is_new_while_the_last_is_still_held() {
        let peer = Arc::new(PeerProcess::unidentified("a test"));
        let mut kept = RequestContext::new(peer, "GET", routes::TOKEN);
        let fill = |context: &RequestContext| {
            let mut draft = context.draft.lock().unwrap();
            draft.source = Some(AuditOutcome::SignedIn);
            draft.allowed = Some(("work".into(), "key".into(), Cow::Borrowed("ask:1")));
            draft.decided_by = Some(Cow::Borrowed("ask:1"));
        };
        let cleared = |context: &RequestContext| {
            let draft = context.draft.lock().unwrap();
            draft.source.is_none() && draft.allowed.is_none() && draft.decided_by.is_none()
        };
        fill(&kept);
        // Nothing else holds it: the same context, with nothing of the last request left in it.
        let again = RequestContext::again(&mut kept);
        assert!(Arc::ptr_eq(&again, &kept));
        assert!(cleared(&again), "what the last request learnt carried over to the next");
        assert_eq!(again.route, AuditRoute::Token);
        // Still held (the last request's scope has not ended): a new one, and the old keeps its draft.
        fill(&again);
        let again_while_held = RequestContext::again(&mut kept);
        assert!(!Arc::ptr_eq(&again_while_held, &again));
        assert!(cleared(&again_while_held));
        assert!(!cleared(&again));
        assert_eq!(again_while_held.route, AuditRoute::Token);
    }
}
