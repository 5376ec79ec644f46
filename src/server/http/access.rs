//! The admin API's users, access rules and quotas (`/api/users`, `/api/acls`): listings need
//! describe on the cluster, changes alter on the cluster. Passwords are taken, hashed by the
//! security core and never answered or logged. See `docs/http.md`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;

use super::admin::{bad_body, call, error};
use super::auth::{allow, Refusal};
use crate::broker::{Broker, BrokerError, ErrorKind};
use crate::security::{
    Operation, PatternKind, Permission, Principal, Quotas, Resource, ResourceKind, Rule,
    SecurityError, UserOptions,
};

/// A new user: `{"name": "alice", "password": "...", "superuser": false,
/// "expires_at_ms": 1900000000000, "quotas": {"produce_bytes_per_sec": 1048576}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    superuser: bool,
    expires_at_ms: Option<u64>,
    #[serde(default)]
    quotas: QuotasBody,
}

/// Quotas: `{"produce_bytes_per_sec": .., "fetch_bytes_per_sec": .., "connections_max": ..}`,
/// each optional (absent: no limit).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotasBody {
    produce_bytes_per_sec: Option<u64>,
    fetch_bytes_per_sec: Option<u64>,
    connections_max: Option<u32>,
}

impl From<QuotasBody> for Quotas {
    fn from(q: QuotasBody) -> Quotas {
        Quotas {
            produce_bytes_per_sec: q.produce_bytes_per_sec,
            fetch_bytes_per_sec: q.fetch_bytes_per_sec,
            connections_max: q.connections_max,
        }
    }
}

/// A rule as JSON, with the CLI's lower-case names: `{"principal": "alice", "resource":
/// "topic", "pattern": "prefix", "name": "orders.", "operation": "read", "permission":
/// "allow"}`; `pattern` defaults to `exact`, `name` to empty (the cluster's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleBody {
    principal: String,
    resource: String,
    #[serde(default = "exact")]
    pattern: String,
    #[serde(default)]
    name: String,
    operation: String,
    permission: String,
}

fn exact() -> String {
    PatternKind::Exact.as_str().to_string()
}

impl RuleBody {
    /// The rule, or why its names do not parse or its fields are refused.
    pub(super) fn rule(self) -> Result<Rule, String> {
        let rule = Rule {
            principal: self.principal,
            resource: self.resource.parse::<ResourceKind>()?,
            pattern: self.pattern.parse::<PatternKind>()?,
            name: self.name,
            operation: self.operation.parse::<Operation>()?,
            permission: self.permission.parse::<Permission>()?,
        };
        rule.validate()?;
        Ok(rule)
    }
}

/// A rule as answered: its fields by their lower-case names, and its one-line text.
fn rule_json(r: &Rule) -> serde_json::Value {
    serde_json::json!({
        "principal": r.principal,
        "resource": r.resource.as_str(),
        "pattern": r.pattern.as_str(),
        "name": r.name,
        "operation": r.operation.as_str(),
        "permission": r.permission.as_str(),
        "text": r.to_string(),
    })
}

/// A security error as the API's error.
fn security_error(e: SecurityError) -> BrokerError {
    let kind = match e {
        SecurityError::Invalid(_) => ErrorKind::InvalidArgument,
        SecurityError::UserExists(_) => ErrorKind::AlreadyExists,
        SecurityError::NoUser(_) => ErrorKind::NotFound,
        SecurityError::Io(..) | SecurityError::Corrupt(..) => ErrorKind::Storage,
        SecurityError::Locked(_) => ErrorKind::Internal,
    };
    BrokerError::new(kind, e.to_string())
}

/// The cluster check of every route here: `op` on the cluster.
fn cluster(b: &Broker, p: &Principal, op: Operation) -> Result<(), Refusal> {
    allow(b, p, op, Resource::cluster())
}

/// `GET /api/users`: every user (no hash, no key).
pub(super) async fn list_users(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
) -> Response {
    if let Err(r) = cluster(&b, &p, Operation::Describe) {
        return *r;
    }
    call(&b, StatusCode::OK, |b| {
        Ok(serde_json::json!({"users": b.security().users()}))
    })
    .await
}

/// `POST /api/users`: adds a user (hashing its password on the blocking pool).
pub(super) async fn add_user(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Response {
    if let Err(r) = cluster(&b, &p, Operation::Alter) {
        return *r;
    }
    let Json(u) = match body {
        Ok(u) => u,
        Err(r) => return bad_body(&b, r),
    };
    call(&b, StatusCode::CREATED, move |b| {
        let o = UserOptions {
            superuser: u.superuser,
            expires_at_ms: u.expires_at_ms,
            quotas: u.quotas.into(),
        };
        let s = b.security();
        s.add_user(&u.name, &u.password, o)
            .map_err(security_error)?;
        tracing::info!(user = %u.name, by = %p, superuser = u.superuser, "user added");
        let info = s.users().into_iter().find(|i| i.name == u.name);
        info.ok_or_else(|| BrokerError::new(ErrorKind::NotFound, format!("no user {}", u.name)))
    })
    .await
}

/// `DELETE /api/users/{name}`: deletes a user; its sessions end at once.
pub(super) async fn delete_user(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = cluster(&b, &p, Operation::Alter) {
        return *r;
    }
    call(&b, StatusCode::OK, move |b| {
        b.security().delete_user(&name).map_err(security_error)?;
        tracing::info!(user = %name, by = %p, "user deleted");
        Ok(serde_json::json!({"deleted": name}))
    })
    .await
}

/// `PUT /api/users/{name}/quotas`: replaces a user's quotas (an absent one: no limit).
pub(super) async fn set_quotas(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: Result<Json<QuotasBody>, JsonRejection>,
) -> Response {
    if let Err(r) = cluster(&b, &p, Operation::Alter) {
        return *r;
    }
    let Json(q) = match body {
        Ok(q) => q,
        Err(r) => return bad_body(&b, r),
    };
    call(&b, StatusCode::OK, move |b| {
        let quotas: Quotas = q.into();
        b.security()
            .set_quotas(&name, quotas)
            .map_err(security_error)?;
        tracing::info!(user = %name, by = %p, ?quotas, "quotas set");
        Ok(serde_json::json!({"user": name, "quotas": quotas}))
    })
    .await
}

/// `GET /api/acls`: every rule, in the order added.
pub(super) async fn list_rules(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
) -> Response {
    if let Err(r) = cluster(&b, &p, Operation::Describe) {
        return *r;
    }
    call(&b, StatusCode::OK, |b| {
        let rules: Vec<_> = b.security().rules().iter().map(rule_json).collect();
        Ok(serde_json::json!({"rules": rules}))
    })
    .await
}

/// A rule body's rule, or the API's 400.
fn parse_rule(b: &Broker, body: Result<Json<RuleBody>, JsonRejection>) -> Result<Rule, Refusal> {
    let Json(r) = body.map_err(|rej| Box::new(bad_body(b, rej)))?;
    r.rule().map_err(|m| {
        b.metrics()
            .request(crate::metrics::Protocol::Http, super::admin::KIND);
        Box::new(error(b, BrokerError::new(ErrorKind::InvalidArgument, m)))
    })
}

/// `POST /api/acls`: adds a rule (`"added": false` when an identical rule exists).
pub(super) async fn add_rule(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<RuleBody>, JsonRejection>,
) -> Response {
    if let Err(r) = cluster(&b, &p, Operation::Alter) {
        return *r;
    }
    let rule = match parse_rule(&b, body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    call(&b, StatusCode::CREATED, move |b| {
        let text = rule.to_string();
        let added = b
            .security()
            .add_rule(rule.clone())
            .map_err(security_error)?;
        tracing::info!(by = %p, rule = %text, added, "rule added");
        Ok(serde_json::json!({"rule": rule_json(&rule), "added": added}))
    })
    .await
}

/// `DELETE /api/acls` with a rule as the body: removes the identical rule (404 when none).
pub(super) async fn delete_rule(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
    body: Result<Json<RuleBody>, JsonRejection>,
) -> Response {
    if let Err(r) = cluster(&b, &p, Operation::Alter) {
        return *r;
    }
    let rule = match parse_rule(&b, body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    call(&b, StatusCode::OK, move |b| {
        let gone = b
            .security()
            .remove_rules(|r| *r == rule)
            .map_err(security_error)?;
        if gone.is_empty() {
            let m = format!("no rule {rule}");
            return Err(BrokerError::new(ErrorKind::NotFound, m));
        }
        tracing::info!(by = %p, rule = %rule, "rule removed");
        Ok(serde_json::json!({"removed": rule_json(&rule)}))
    })
    .await
}
