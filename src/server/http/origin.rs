//! Cross-site requests refused: a web page on another origin must not make a browser that can
//! reach the broker purge a queue or delete a topic. A request that changes something (any
//! method but GET, HEAD and OPTIONS) is refused with 403 when the browser marks it as coming
//! from another site (`Sec-Fetch-Site`) or its `Origin` is not the host it was sent to. Clients
//! that are not browsers (curl, scripts, the CLI's native protocol) send neither header and are
//! not affected; the console is served from the same origin as the API it calls.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::broker::Broker;
use crate::metrics::Protocol;

/// Why `headers` mark a request as cross-site, if they do.
pub(super) fn cross_site(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site == "cross-site" || site == "same-site" {
            return Some(format!("Sec-Fetch-Site is {site:?}"));
        }
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("null");
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (authority, host) {
        (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => None,
        _ => Some(format!("Origin {origin:?} is not this host ({host:?})")),
    }
}

/// Refuses a cross-site request that changes something (see the module documentation).
pub(super) async fn same_origin(
    State(broker): State<Arc<Broker>>,
    req: Request,
    next: Next,
) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if reads {
        return next.run(req).await;
    }
    match cross_site(req.headers()) {
        None => next.run(req).await,
        Some(why) => {
            broker.metrics().request(Protocol::Http, super::kind::ADMIN);
            super::count_error(&broker, StatusCode::FORBIDDEN);
            tracing::warn!(
                "cross-site {} {} refused: {why}",
                req.method(),
                req.uri().path()
            );
            let message = format!("cross-site request refused: {why}");
            let body = serde_json::json!({"error": {"kind": "Forbidden", "message": message}});
            (StatusCode::FORBIDDEN, Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_requests_from_the_same_origin_or_no_browser_pass() {
        assert_eq!(cross_site(&headers(&[("host", "127.0.0.1:7451")])), None);
        let same = [
            ("host", "127.0.0.1:7451"),
            ("origin", "http://127.0.0.1:7451"),
        ];
        assert_eq!(cross_site(&headers(&same)), None);
        let tls = [("host", "broker:7451"), ("origin", "https://broker:7451")];
        assert_eq!(cross_site(&headers(&tls)), None);
        for bad in [
            &[
                ("host", "127.0.0.1:7451"),
                ("origin", "http://evil.example"),
            ][..],
            &[("host", "127.0.0.1:7451"), ("origin", "null")][..],
            &[
                ("host", "127.0.0.1:7451"),
                ("origin", "http://127.0.0.1:7452"),
            ][..],
            &[("host", "127.0.0.1:7451"), ("sec-fetch-site", "cross-site")][..],
        ] {
            assert!(cross_site(&headers(bad)).is_some(), "{bad:?}");
        }
    }
}
