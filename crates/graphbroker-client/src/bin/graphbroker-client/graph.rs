//! `graph METHOD PATH`: one Graph call through the daemon's proxy, the answer's body streamed to stdout.
//!
//! A sign-in the call needs is done first, the way `token` does it (prompt on stderr, wait), so the proxied call
//! itself finds the token cached. Graph's 4xx/5xx answers still print their body and end with status 10.

use std::io::Write as _;

use graphbroker_client::{Client, GraphRequest, TokenQuery, graph_path, reader_body};
use http_body_util::BodyExt;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method};

use crate::cli::{GraphArgs, join_scopes};
use crate::exit_status::{ExitStatus, Failure};
use crate::ui::Ui;

pub async fn run(client: &Client, args: &GraphArgs, ui: &Ui) -> Result<(), Failure> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Failure::new(ExitStatus::Usage, format!("{:?} is not an HTTP method", args.method)))?;
    let scopes = join_scopes(&args.scopes);
    let limit = if args.no_wait { std::time::Duration::ZERO } else { std::time::Duration::from_secs(args.timeout) };
    // Sign in first if needed: the daemon's proxy answers `signin_required` rather than hold a stream open.
    let query = TokenQuery { scopes: scopes.clone(), profile: args.profile.clone(), ..TokenQuery::default() };
    let on_prompt = |prompt: &_, reason| ui.show_prompt(prompt, reason);
    ui.while_waiting(client.token_with_signin(&query, limit, on_prompt))
        .await
        .map_err(|error| Failure::after_wait(&error, limit))?;

    let mut request = GraphRequest::new(method, graph_path(&args.path, args.beta));
    request.scopes = scopes;
    request.profile = args.profile.clone();
    request.headers = headers(&args.headers)?;
    if let Some(data) = &args.data {
        let (body, content_type) = body(data).await?;
        request.body = body;
        if !request.headers.contains_key(CONTENT_TYPE) {
            request.headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
    }
    let response = client.graph(request).await?;
    let status = response.status();
    let retry_after =
        response.headers().get(hyper::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut stdout = std::io::stdout().lock();
    let write_failed =
        |error: std::io::Error| Failure::new(ExitStatus::Other, format!("could not write to stdout: {error}"));
    if args.include {
        writeln!(stdout, "HTTP/1.1 {status}").map_err(write_failed)?;
        for (name, value) in response.headers() {
            writeln!(stdout, "{name}: {}", crate::safe_text::for_terminal(&String::from_utf8_lossy(value.as_bytes())))
                .map_err(write_failed)?;
        }
        writeln!(stdout).map_err(write_failed)?;
    }
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            Failure::new(ExitStatus::Graph, format!("the answer from Graph broke off: {error}; run the command again"))
        })?;
        if let Some(data) = frame.data_ref() {
            stdout.write_all(data).map_err(write_failed)?;
        }
    }
    stdout.flush().map_err(write_failed)?;
    if status.is_client_error() || status.is_server_error() {
        let retry = retry_after.map(|seconds| format!("; retry after {seconds} s")).unwrap_or_default();
        return Err(Failure::new(ExitStatus::Graph, format!("Microsoft Graph answered HTTP {status}{retry}")));
    }
    Ok(())
}

fn headers(lines: &[String]) -> Result<HeaderMap, Failure> {
    let mut map = HeaderMap::new();
    for line in lines {
        let bad = || Failure::new(ExitStatus::Usage, format!("{line:?} is not a header: write it as 'Name: value'"));
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        map.append(name, value);
    }
    Ok(map)
}

async fn body(data: &str) -> Result<(graphbroker_client::GraphBody, &'static str), Failure> {
    match data.strip_prefix('@') {
        Some("-") => Ok((reader_body(tokio::io::stdin()), "application/json")),
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|error| Failure::new(ExitStatus::Usage, format!("cannot read {path}: {error}")))?;
            Ok((reader_body(file), "application/octet-stream"))
        }
        None => {
            let bytes = bytes::Bytes::from(data.to_owned());
            let body = http_body_util::Full::new(bytes).map_err(|never| match never {}).boxed();
            Ok((body, "application/json"))
        }
    }
}
