//! The admin API's views of a running broker: the overview (`/api/overview`), the open
//! connections (`/api/connections`), segment maps (`/api/topics/{name}/segments`,
//! `/api/queues/{name}/segments`), and moving dead letters back (`/api/queues/{name}/redrive`).
//! See `docs/http.md`.
//!
//! The overview and the connections need describe on the cluster, a segment map describe on
//! its topic or queue, a redrive read on the dead-letter queue and write on each queue its
//! messages go back to.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;

use super::admin::{bad_body, bad_query, call, too_large};
use super::auth::allow;
use crate::broker::Broker;
use crate::metrics::Protocol;
use crate::security::{Operation, Principal, Resource};

/// `?prefix=ord&limit=100`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverviewQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

/// `?partition=0`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartitionQuery {
    #[serde(default)]
    partition: u32,
}

/// A redrive: `{"count": 100, "to": "jobs"}`, both optional (all, each to its own queue).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Redrive {
    count: Option<u64>,
    to: Option<String>,
}

pub(super) async fn overview(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<OverviewQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Describe, Resource::cluster()) {
        return *r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(&b, r),
    };
    call(&b, StatusCode::OK, move |b| b.overview(&q.prefix, q.limit)).await
}

pub(super) async fn connections(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Describe, Resource::cluster()) {
        return *r;
    }
    call(&b, StatusCode::OK, |b| {
        Ok(serde_json::json!({"connections": b.metrics().connections().list()}))
    })
    .await
}

pub(super) async fn topic_segments(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    q: Result<Query<PartitionQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Describe, Resource::topic(&name)) {
        return *r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(&b, r),
    };
    call(&b, StatusCode::OK, move |b| {
        b.topic_segments(&name, q.partition)
    })
    .await
}

pub(super) async fn queue_segments(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Describe, Resource::queue(&name)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| b.queue_segments(&name)).await
}

pub(super) async fn redrive(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Read, Resource::queue(&name)) {
        return *r;
    }
    let r = match body {
        // No body: every message, each to its own queue.
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Redrive::default(),
        Ok(bytes) => match Json::<Redrive>::from_bytes(&bytes) {
            Ok(Json(r)) => r,
            Err(rej) => return bad_body(&b, rej),
        },
        Err(rej) => return too_large(&b, rej),
    };
    if let Some(to) = &r.to {
        if let Err(r) = allow(&b, &p, Operation::Write, Resource::queue(to)) {
            return *r;
        }
    }
    call(&b, StatusCode::OK, move |b| {
        // Each message's own queue, when `to` is absent, is checked as it comes.
        let s = b.security();
        let may_write = |q: &str| {
            s.authorize(&p, Operation::Write, Resource::queue(q))
                .map_err(|d| {
                    b.metrics().denied(Protocol::Http);
                    d.to_string()
                })
        };
        b.redrive_checked(
            &name,
            r.count.unwrap_or(u64::MAX),
            r.to.as_deref(),
            &may_write,
        )
    })
    .await
}
