//! The admin API: JSON over HTTP on the broker core, the same calls the native protocol's admin
//! requests make (`docs/http.md`, "Admin API"). Each call runs on the blocking pool.
//!
//! Errors are `{"error": {"kind": "NotFound", "message": "..."}}` with the HTTP status of their
//! kind: 404 not found, 409 already exists, 400 a bad argument, 429 a limit, 500 the rest; a
//! request its principal may not make gets 403 (401 once the principal is no longer valid) and
//! changes nothing. Listings show only what the principal may describe.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::auth::allow;
use crate::broker::{blocking, Broker, BrokerError, ErrorKind, Peeked};
use crate::client::{LogSettings, QueueSettings};
use crate::metrics::Protocol;
use crate::security::{Operation, Principal, Resource, ResourceKind};

/// HTTP's request kinds of the admin API, counted in `sluice_requests_total{protocol="http"}`.
pub(super) const KIND: usize = super::kind::ADMIN;

/// A new topic: `{"name": "orders", "partitions": 3, "retention_ms": 86400000}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTopic {
    name: String,
    partitions: Option<u32>,
    segment_bytes_max: Option<u64>,
    retention_bytes: Option<u64>,
    retention_ms: Option<u64>,
    /// In a cluster: the nodes holding each partition.
    replicas: Option<u32>,
}

/// A new queue: `{"name": "jobs", "ack_timeout_ms": 30000, "max_deliveries": 5}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewQueue {
    name: String,
    ack_timeout_ms: Option<u64>,
    max_deliveries: Option<u64>,
    dead_letter: Option<String>,
    segment_bytes_max: Option<u64>,
    retention_bytes: Option<u64>,
    retention_ms: Option<u64>,
    /// In a cluster: the nodes holding the queue.
    replicas: Option<u32>,
}

/// An error as the API answers it, counted by its status.
pub(super) fn error(broker: &Broker, e: BrokerError) -> Response {
    let status = match e.kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::InUse => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument | ErrorKind::InvalidBatch => StatusCode::BAD_REQUEST,
        ErrorKind::LimitReached => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body =
        serde_json::json!({"error": {"kind": format!("{:?}", e.kind), "message": e.message}});
    super::count_error(broker, status);
    (status, Json(body)).into_response()
}

/// Runs `f` on the blocking pool and answers `ok` with its value as JSON, or the error.
pub(super) async fn call<T: serde::Serialize + Send + 'static>(
    broker: &Arc<Broker>,
    ok: StatusCode,
    f: impl FnOnce(&Broker) -> crate::broker::Result<T> + Send + 'static,
) -> Response {
    broker.metrics().request(Protocol::Http, KIND);
    let b = broker.clone();
    match blocking(move || f(&b)).await {
        Ok(v) => (ok, Json(v)).into_response(),
        Err(e) => error(broker, e),
    }
}

/// A body that is not the JSON asked for: 400 (413 when too large) with serde's reason.
pub(super) fn bad_body(broker: &Broker, r: JsonRejection) -> Response {
    broker.metrics().request(Protocol::Http, KIND);
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        super::count_error(broker, r.status());
        return r.into_response();
    }
    error(
        broker,
        BrokerError::new(ErrorKind::InvalidArgument, r.body_text()),
    )
}

/// The names among `names` (of `kind`) that `p` may describe.
fn visible(b: &Broker, p: &Principal, names: Vec<String>, kind: ResourceKind) -> Vec<String> {
    let s = b.security();
    names
        .into_iter()
        .filter(|name| s.allows(p, Operation::Describe, Resource { kind, name }))
        .collect()
}

pub(super) async fn list_topics(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
) -> Response {
    call(&b, StatusCode::OK, move |b| {
        let topics = visible(b, &p, b.list_topics(), ResourceKind::Topic);
        Ok(serde_json::json!({"topics": topics}))
    })
    .await
}

pub(super) async fn describe_topic(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Describe, Resource::topic(&name)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| b.topic_figures(name)).await
}

pub(super) async fn create_topic(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewTopic>, JsonRejection>,
) -> Response {
    let Json(t) = match body {
        Ok(t) => t,
        Err(r) => return bad_body(&b, r),
    };
    if let Err(r) = allow(&b, &p, Operation::Create, Resource::topic(&t.name)) {
        return *r;
    }
    call(&b, StatusCode::CREATED, move |b| {
        let settings = LogSettings {
            segment_bytes_max: t.segment_bytes_max,
            retention_bytes: t.retention_bytes,
            retention_ms: t.retention_ms,
            replicas: t.replicas,
        };
        b.create_topic(&t.name, &settings, t.partitions.unwrap_or(1))?;
        b.describe_topic(t.name)
    })
    .await
}

pub(super) async fn delete_topic(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Delete, Resource::topic(&name)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| {
        b.delete_topic(&name)?;
        Ok(serde_json::json!({"deleted": name}))
    })
    .await
}

pub(super) async fn list_queues(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
) -> Response {
    call(&b, StatusCode::OK, move |b| {
        let queues = visible(b, &p, b.list_queues(), ResourceKind::Queue);
        Ok(serde_json::json!({"queues": queues}))
    })
    .await
}

pub(super) async fn describe_queue(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Describe, Resource::queue(&name)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| b.queue_figures(name)).await
}

pub(super) async fn create_queue(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewQueue>, JsonRejection>,
) -> Response {
    let Json(q) = match body {
        Ok(q) => q,
        Err(r) => return bad_body(&b, r),
    };
    // An explicit dead-letter queue is made with the queue.
    for name in std::iter::once(&q.name).chain(&q.dead_letter) {
        if let Err(r) = allow(&b, &p, Operation::Create, Resource::queue(name)) {
            return *r;
        }
    }
    call(&b, StatusCode::CREATED, move |b| {
        let settings = QueueSettings {
            log: LogSettings {
                segment_bytes_max: q.segment_bytes_max,
                retention_bytes: q.retention_bytes,
                retention_ms: q.retention_ms,
                replicas: q.replicas,
            },
            ack_timeout_ms: q.ack_timeout_ms,
            max_deliveries: q.max_deliveries,
            dead_letter: q.dead_letter,
        };
        b.create_queue(&q.name, settings)?;
        b.queue_view(q.name)
    })
    .await
}

pub(super) async fn delete_queue(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Delete, Resource::queue(&name)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| {
        b.delete_queue(&name)?;
        Ok(serde_json::json!({"deleted": name}))
    })
    .await
}

/// Where a peek starts and how much it takes: `?offset=0&count=100&partition=0`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeekQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_count")]
    count: usize,
    #[serde(default)]
    partition: u32,
}

fn default_count() -> usize {
    100
}

/// A body that could not be read (too large: 413).
pub(super) fn too_large(broker: &Broker, r: axum::extract::rejection::BytesRejection) -> Response {
    broker.metrics().request(Protocol::Http, KIND);
    super::count_error(broker, r.status());
    r.into_response()
}

/// A query string that does not parse: 400 with the reason.
pub(super) fn bad_query(broker: &Broker, r: QueryRejection) -> Response {
    broker.metrics().request(Protocol::Http, KIND);
    error(
        broker,
        BrokerError::new(ErrorKind::InvalidArgument, r.body_text()),
    )
}

/// A peek: parses the query, then reads on the blocking pool with `read`.
async fn peek(
    b: &Arc<Broker>,
    q: Result<Query<PeekQuery>, QueryRejection>,
    read: impl FnOnce(&Broker, PeekQuery) -> crate::broker::Result<Vec<Peeked>> + Send + 'static,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(b, r),
    };
    call(b, StatusCode::OK, move |b| {
        Ok(serde_json::json!({"messages": read(b, q)?}))
    })
    .await
}

pub(super) async fn peek_topic(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    q: Result<Query<PeekQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Read, Resource::topic(&name)) {
        return *r;
    }
    peek(&b, q, move |b, q| {
        b.peek_topic(&name, q.partition, q.offset, q.count)
    })
    .await
}

pub(super) async fn peek_queue(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    q: Result<Query<PeekQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Read, Resource::queue(&name)) {
        return *r;
    }
    peek(&b, q, move |b, q| b.peek_queue(&name, q.offset, q.count)).await
}

pub(super) async fn purge_queue(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Delete, Resource::queue(&name)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| {
        let purged = b.purge_queue(&name)?;
        Ok(serde_json::json!({"purged": purged}))
    })
    .await
}
