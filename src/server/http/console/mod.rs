//! The web console: `GET /` serves one page that polls the admin API every two seconds and
//! shows the broker, its topics, queues, connections and groups, with a message browser and a
//! segment map (`docs/console.md`). Its files are compiled into the binary (`include_str!`):
//! no build step, no external assets, so it works offline and matches the broker it runs on.
//!
//! Every file is answered with `Cache-Control: no-cache` (a new binary's page replaces the old
//! one at once) and counted in `sluice_requests_total{protocol="http",request="console"}`. The
//! page itself carries a Content-Security-Policy that allows only this origin's scripts, styles
//! and API: no inline script, nothing fetched from elsewhere.
//!
//! # Layout
//! - `index.html`: the page's frame (header, tabs, one section per view).
//! - `console.css`: its styles.
//! - `console.js`: the entry point: polling, routing by URL hash, actions.
//! - `api.js`: calls of the admin API; `dom.js`: element building, number formats and the
//!   history of polls; `chart.js`: SVG charts.
//! - `views.js`: the overview, topics and queues; `clients.js`: connections and groups;
//!   `browse.js`: the message browser; `segments.js`: the segment map (and the source picker
//!   both share); `login.js`: the login form shown when the API answers 401, the user's name
//!   and "Log out".

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::broker::Broker;
use crate::metrics::Protocol;

/// The page's policy: this origin only, no inline script or style sheet, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files under `/console/`: name, Content-Type, text.
const FILES: [(&str, &str, &str); 10] = [
    ("console.css", CSS, include_str!("console.css")),
    ("console.js", JS, include_str!("console.js")),
    ("api.js", JS, include_str!("api.js")),
    ("dom.js", JS, include_str!("dom.js")),
    ("chart.js", JS, include_str!("chart.js")),
    ("views.js", JS, include_str!("views.js")),
    ("clients.js", JS, include_str!("clients.js")),
    ("browse.js", JS, include_str!("browse.js")),
    ("segments.js", JS, include_str!("segments.js")),
    ("login.js", JS, include_str!("login.js")),
];

/// The console's routes: `GET /` and `GET /console/{file}`.
pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(file))
}

/// A file's answer: its type, no caching, no sniffing.
fn serve(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

/// `GET /`: the page, under its Content-Security-Policy.
async fn index(State(broker): State<Arc<Broker>>) -> Response {
    broker
        .metrics()
        .request(Protocol::Http, super::kind::CONSOLE);
    let mut r = serve(HTML, include_str!("index.html"));
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    r
}

/// `GET /console/{file}`: one of [`FILES`], or 404.
async fn file(State(broker): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    broker
        .metrics()
        .request(Protocol::Http, super::kind::CONSOLE);
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, text)) => serve(content_type, text),
        None => {
            super::count_error(&broker, StatusCode::NOT_FOUND);
            (StatusCode::NOT_FOUND, "no such console file\n").into_response()
        }
    }
}
