//! The HTTP listener: `GET /metrics` (Prometheus text) and the JSON admin API, served by axum
//! on the broker core. Connections count against the server's one connection limit, as the
//! native and Kafka ones do; request bodies against [`HTTP_BODY_BYTES_MAX`].
//!
//! # Layout
//! - `mod.rs`: [`HttpListener`] (bind, serve until shutdown) and the routes.
//! - `admin`: the admin API (`/api/topics`, `/api/queues`: list, describe, create, delete,
//!   peek messages, purge a queue).
//! - `groups`: the admin API's groups (`/api/groups`, `/api/topics/{name}/groups`).
//! - `views`: the overview, connections, segment maps and dead-letter redrive.
//! - `origin`: cross-site requests that change something refused (403).
//! - `auth`: who a request runs as (session cookie or Basic; 401 without), and the check of
//!   each route's operation (403).
//! - `login`: `/api/login`, `/api/logout`, `/api/whoami`.
//! - `access`: the admin API's users, access rules and quotas (`/api/users`, `/api/acls`).
//! - `conn`: accepted connections under a permit of the connection limit, counted in metrics.
//! - `console`: the web console at `GET /` (`docs/console.md`).

mod access;
mod admin;
mod auth;
mod conn;
mod console;
mod groups;
mod login;
mod origin;
mod views;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};

use crate::broker::Broker;
use crate::metrics::Protocol;
use crate::security::{Operation, Principal, Resource};

/// Request kinds of HTTP, as counted in `sluice_requests_total{protocol="http"}`.
pub mod kind {
    /// `GET /metrics`.
    pub const METRICS: usize = 0;
    /// Any path not served.
    pub const NOT_FOUND: usize = 1;
    /// The admin API (`/api/...`).
    pub const ADMIN: usize = 2;
    /// The web console's page and files (`/`, `/console/...`).
    pub const CONSOLE: usize = 3;
}

/// Largest request body accepted (an admin call's JSON); a larger one gets 413.
pub const HTTP_BODY_BYTES_MAX: usize = 64 * 1024;

/// HTTP errors are counted by status, as `status - HTTP_ERROR_BASE` (400 to 527).
pub const HTTP_ERROR_BASE: usize = 400;

/// Counts an error answer of `status` in `sluice_errors_total{protocol="http"}`.
fn count_error(broker: &Broker, status: StatusCode) {
    let c = (status.as_u16() as usize).saturating_sub(HTTP_ERROR_BASE);
    broker.metrics().error(Protocol::Http, c);
}

/// The Content-Type of the OpenMetrics text format, which Prometheus asks for and parses.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound HTTP listener, not yet serving.
pub struct HttpListener {
    listener: TcpListener,
}

impl HttpListener {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> io::Result<HttpListener> {
        Ok(HttpListener {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires; each connection holds a permit of `permits`.
    pub async fn serve(
        self,
        broker: Arc<Broker>,
        permits: Arc<Semaphore>,
        shutdown: broadcast::Sender<()>,
        tls: Option<Arc<crate::server::tls::Tls>>,
    ) {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .merge(console::routes())
            .route(
                "/api/topics",
                get(admin::list_topics).post(admin::create_topic),
            )
            .route(
                "/api/topics/{name}",
                get(admin::describe_topic).delete(admin::delete_topic),
            )
            .route(
                "/api/queues",
                get(admin::list_queues).post(admin::create_queue),
            )
            .route(
                "/api/queues/{name}",
                get(admin::describe_queue).delete(admin::delete_queue),
            )
            .route("/api/topics/{name}/messages", get(admin::peek_topic))
            .route("/api/queues/{name}/messages", get(admin::peek_queue))
            .route("/api/queues/{name}/purge", post(admin::purge_queue))
            .route("/api/overview", get(views::overview))
            .route("/api/connections", get(views::connections))
            .route("/api/topics/{name}/segments", get(views::topic_segments))
            .route("/api/queues/{name}/segments", get(views::queue_segments))
            .route("/api/queues/{name}/redrive", post(views::redrive))
            .route("/api/groups", get(groups::list).post(groups::create))
            .route(
                "/api/groups/{name}",
                get(groups::describe).delete(groups::delete),
            )
            .route("/api/groups/{name}/reset", post(groups::reset))
            .merge(security_routes())
            .route("/api/topics/{name}/groups", get(groups::list_of_topic))
            .route(
                "/api/topics/{name}/groups/{group}",
                axum::routing::delete(groups::delete_of_topic),
            )
            .fallback(not_found)
            .layer(axum::extract::DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
            .layer(axum::middleware::from_fn_with_state(
                auth::Guard {
                    broker: broker.clone(),
                    tls: tls.is_some(),
                },
                auth::authenticate,
            ))
            .layer(axum::middleware::from_fn_with_state(
                broker.clone(),
                origin::same_origin,
            ))
            .with_state(broker.clone());
        let listener = match conn::Limited::new(self.listener, broker, permits, tls) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("http listener stopped: {e}");
                return;
            }
        };
        let mut stop = shutdown.subscribe();
        let app = app.into_make_service_with_connect_info::<auth::Peer>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.recv().await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!("http listener stopped: {e}");
        }
    }
}

/// The login and the admin API's users and rules.
fn security_routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/login", post(login::login))
        .route("/api/logout", post(login::logout))
        .route("/api/whoami", get(login::whoami))
        .route("/api/users", get(access::list_users).post(access::add_user))
        .route(
            "/api/users/{name}",
            axum::routing::delete(access::delete_user),
        )
        .route("/api/users/{name}/quotas", put(access::set_quotas))
        .route(
            "/api/acls",
            get(access::list_rules)
                .post(access::add_rule)
                .delete(access::delete_rule),
        )
}

/// `GET /metrics`: the Prometheus text of the broker's counters and of every open topic and
/// queue, built on the blocking pool; needs describe on the cluster.
async fn metrics(
    State(broker): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
) -> Response {
    let allowed = broker
        .security()
        .authorize(&p, Operation::Describe, Resource::cluster());
    if let Err(d) = allowed {
        return auth::denied(&broker, "/metrics", d);
    }
    broker.metrics().request(Protocol::Http, kind::METRICS);
    let b = broker.clone();
    match crate::broker::spawn_blocking(move || crate::metrics::render(&b)).await {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            broker.metrics().error(Protocol::Http, 500);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("metrics failed: {e}\n"),
            )
                .into_response()
        }
    }
}

async fn not_found(State(broker): State<Arc<Broker>>) -> Response {
    broker.metrics().request(Protocol::Http, kind::NOT_FOUND);
    (
        StatusCode::NOT_FOUND,
        "not found: this server serves the console at /, GET /metrics and /api/... (docs/http.md)\n",
    )
        .into_response()
}

/// Every decoder of the admin API's own input, on `data` (the fuzz target `admin_input`): the
/// first byte picks one: a JSON body of each kind, a query string of each kind, or header lines
/// (`name: value`) for the cross-site rule and for the credentials (Basic, session cookie).
/// Bad input must give an error, never a panic.
#[cfg(feature = "fuzz")]
pub(crate) fn admin_input(data: &[u8]) {
    use axum::extract::Query;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let query = || {
        let uri = format!("/x?{}", String::from_utf8_lossy(rest));
        uri.parse::<axum::http::Uri>().ok()
    };
    match pick % 14 {
        0 => drop(serde_json::from_slice::<admin::NewTopic>(rest)),
        1 => drop(serde_json::from_slice::<admin::NewQueue>(rest)),
        2 => drop(serde_json::from_slice::<groups::NewGroup>(rest)),
        3 => drop(serde_json::from_slice::<groups::Reset>(rest)),
        4 => drop(serde_json::from_slice::<views::Redrive>(rest)),
        5 => drop(query().map(|u| Query::<admin::PeekQuery>::try_from_uri(&u))),
        6 => drop(query().map(|u| Query::<views::OverviewQuery>::try_from_uri(&u))),
        7 => drop(query().map(|u| Query::<views::PartitionQuery>::try_from_uri(&u))),
        8 => drop(origin::cross_site(&header_lines(rest))),
        9 => drop(serde_json::from_slice::<access::NewUser>(rest)),
        10 => drop(serde_json::from_slice::<access::QuotasBody>(rest)),
        11 => drop(serde_json::from_slice::<access::RuleBody>(rest).map(access::RuleBody::rule)),
        12 => drop(serde_json::from_slice::<login::Login>(rest)),
        _ => drop(auth::credentials(&header_lines(rest))),
    }
}

/// Header lines `name: value` as a header map (lines that are not valid headers skipped).
#[cfg(feature = "fuzz")]
fn header_lines(text: &[u8]) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    for line in String::from_utf8_lossy(text).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = axum::http::HeaderName::from_bytes(name.trim().as_bytes());
        let value = axum::http::HeaderValue::from_str(value.trim());
        if let (Ok(n), Ok(v)) = (name, value) {
            headers.append(n, v);
        }
    }
    headers
}
