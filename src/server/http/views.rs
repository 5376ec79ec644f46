//! The admin API's views of a running broker: the overview (`/api/overview`), the open
//! connections (`/api/connections`), segment maps (`/api/topics/{name}/segments`,
//! `/api/queues/{name}/segments`), and moving dead letters back (`/api/queues/{name}/redrive`).
//! See `docs/http.md`.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

use super::admin::{bad_body, bad_query, call, too_large};
use crate::broker::Broker;

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
    q: Result<Query<OverviewQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(&b, r),
    };
    call(&b, StatusCode::OK, move |b| b.overview(&q.prefix, q.limit)).await
}

pub(super) async fn connections(State(b): State<Arc<Broker>>) -> Response {
    call(&b, StatusCode::OK, |b| {
        Ok(serde_json::json!({"connections": b.metrics().connections().list()}))
    })
    .await
}

pub(super) async fn topic_segments(
    State(b): State<Arc<Broker>>,
    Path(name): Path<String>,
    q: Result<Query<PartitionQuery>, QueryRejection>,
) -> Response {
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
    Path(name): Path<String>,
) -> Response {
    call(&b, StatusCode::OK, move |b| b.queue_segments(&name)).await
}

pub(super) async fn redrive(
    State(b): State<Arc<Broker>>,
    Path(name): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let r = match body {
        // No body: every message, each to its own queue.
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Redrive::default(),
        Ok(bytes) => match Json::<Redrive>::from_bytes(&bytes) {
            Ok(Json(r)) => r,
            Err(rej) => return bad_body(&b, rej),
        },
        Err(rej) => return too_large(&b, rej),
    };
    call(&b, StatusCode::OK, move |b| {
        b.redrive(&name, r.count.unwrap_or(u64::MAX), r.to.as_deref())
    })
    .await
}
