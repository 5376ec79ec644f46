//! The admin API's groups: offset groups (`/api/groups`: named subscribers and Kafka consumer
//! groups, their offsets and lag, create at a position, reset, delete) and a topic's consumer
//! groups (`/api/topics/{name}/groups`: list, delete). See `docs/http.md`.
//!
//! A group is checked as a group resource by its name: describe to see it (listings show only
//! those), create, alter to reset its offsets, delete.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;

use super::admin::{bad_body, call};
use super::auth::allow;
use crate::broker::{Broker, ResetTo};
use crate::security::{Operation, Principal, Resource};

/// A new offset group: `{"name": "billing", "topic": "orders", "start": "earliest"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewGroup {
    name: String,
    topic: String,
    #[serde(default = "latest")]
    start: ResetTo,
}

/// A reset: `{"topic": "orders", "partition": 0, "to": {"offset": 42}}` (every partition
/// when `partition` is absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reset {
    topic: String,
    partition: Option<u32>,
    to: ResetTo,
}

fn latest() -> ResetTo {
    ResetTo::Latest
}

pub(super) async fn list(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
) -> Response {
    call(&b, StatusCode::OK, move |b| {
        let s = b.security();
        let mut groups = b.list_offset_groups();
        groups.retain(|g| s.allows(&p, Operation::Describe, Resource::group(&g.name)));
        Ok(serde_json::json!({"groups": groups}))
    })
    .await
}

pub(super) async fn describe(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Describe, Resource::group(&name)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| b.describe_offset_group(&name)).await
}

pub(super) async fn create(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewGroup>, JsonRejection>,
) -> Response {
    let Json(g) = match body {
        Ok(g) => g,
        Err(r) => return bad_body(&b, r),
    };
    if let Err(r) = allow(&b, &p, Operation::Create, Resource::group(&g.name)) {
        return *r;
    }
    call(&b, StatusCode::CREATED, move |b| {
        b.reset_offset_group(&g.name, &g.topic, None, g.start, true)
    })
    .await
}

pub(super) async fn reset(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: Result<Json<Reset>, JsonRejection>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Alter, Resource::group(&name)) {
        return *r;
    }
    let Json(r) = match body {
        Ok(r) => r,
        Err(rej) => return bad_body(&b, rej),
    };
    call(&b, StatusCode::OK, move |b| {
        b.reset_offset_group(&name, &r.topic, r.partition, r.to, false)
    })
    .await
}

pub(super) async fn delete(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Delete, Resource::group(&name)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| {
        b.delete_offset_group(&name)?;
        Ok(serde_json::json!({"deleted": name}))
    })
    .await
}

pub(super) async fn list_of_topic(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(topic): Path<String>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Describe, Resource::topic(&topic)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| {
        let s = b.security();
        let mut groups = b.topic_consumer_groups(&topic)?;
        groups.retain(|g| s.allows(&p, Operation::Describe, Resource::group(&g.name)));
        Ok(serde_json::json!({"groups": groups}))
    })
    .await
}

pub(super) async fn delete_of_topic(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path((topic, group)): Path<(String, String)>,
) -> Response {
    if let Err(r) = allow(&b, &p, Operation::Delete, Resource::group(&group)) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| {
        b.delete_topic_consumer_group(&topic, &group)?;
        Ok(serde_json::json!({"deleted": group}))
    })
    .await
}
