//! Authentication (`AUTH`, `AUTH_CONTINUE`: SCRAM-SHA-256, SCRAM-SHA-512, and PLAIN over TLS),
//! the access check of every request, and the security admin requests (users, rules,
//! quotas).

use std::sync::Arc;
use std::time::Duration;

use sluice_client::scram::{self, Mechanism, ScramServerFinal};
use tracing::{info, warn};

use super::connection::Conn;
use super::End;
use crate::metrics::Protocol;
use crate::protocol::{ErrorCode, Reply, Request, SecurityReply, SecurityRequest, Source, Target};
use crate::security::{
    wire, AuthError, Denied, Direction, Operation, Principal, Resource, ResourceKind, Security,
    UserOptions,
};

/// Failed authentications a connection may make before it is closed.
pub(super) const AUTH_FAILURES_MAX: u32 = 3;

/// What a connection knows about who it is.
pub(super) struct AuthState {
    /// Who it is.
    pub(super) principal: Principal,
    /// A SCRAM exchange waiting for the client's final message.
    pending: Option<ScramServerFinal>,
    failures: u32,
    /// The user's connection count, held while the connection lives.
    _quota: Option<crate::security::ConnectionQuota>,
    /// The connection is TLS (PLAIN is offered only then).
    pub(super) tls: bool,
    /// Changes of users, watched once authenticated: a deleted user's connection is closed
    /// even while it only receives.
    changes: Option<tokio::sync::watch::Receiver<u64>>,
}

impl AuthState {
    pub(super) fn new(tls: bool) -> AuthState {
        AuthState {
            principal: Principal::Anonymous,
            pending: None,
            failures: 0,
            _quota: None,
            tls,
            changes: None,
        }
    }

    /// Whether [`AuthState::revoked`] has anything to watch.
    pub(super) fn watching(&self) -> bool {
        self.changes.is_some()
    }

    /// Completes when the connection's user is deleted or expires, with the reason.
    pub(super) async fn revoked(&mut self, sec: &Security) -> String {
        let Some(changes) = self.changes.as_mut() else {
            return std::future::pending().await;
        };
        let expiry = sec.expires_at_ms(&self.principal).map(|at| {
            let left = at.saturating_sub(sluice_storage::now_ms().max(0) as u64);
            tokio::time::Instant::now() + Duration::from_millis(left)
        });
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                }
                _ = sleep_until_or_never(expiry) => {}
            }
            if let Err(d) = sec.still_valid(&self.principal) {
                return d.to_string();
            }
        }
    }
}

async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn denied_reply(d: &Denied) -> Reply {
    let code = match d {
        Denied::Forbidden { .. } => ErrorCode::Forbidden,
        _ => ErrorCode::Unauthenticated,
    };
    Reply::error(code, d.to_string())
}

/// The operations request `req` needs, on what (`any`: whether a publish to "any" name
/// goes to a topic).
fn needs<'a>(
    req: &'a Request,
    any_is_topic: impl Fn(&str) -> bool,
) -> Vec<(Operation, Resource<'a>)> {
    use Operation::*;
    match req {
        Request::Publish { target, .. } => vec![match target {
            Target::Topic(n) => (Write, Resource::topic(n)),
            Target::Queue(n) => (Write, Resource::queue(n)),
            Target::Any(n) if any_is_topic(n) => (Write, Resource::topic(n)),
            Target::Any(n) => (Write, Resource::queue(n)),
        }],
        Request::Subscribe { topic, name, .. } => {
            let mut v = vec![(Read, Resource::topic(topic))];
            if let Some(n) = name {
                v.push((Read, Resource::group(n)));
            }
            v
        }
        Request::Commit { topic, name, .. } => {
            vec![
                (Read, Resource::topic(topic)),
                (Read, Resource::group(name)),
            ]
        }
        Request::Consume { source, .. } => match source {
            Source::Queue(q) => vec![(Read, Resource::queue(q))],
            Source::Group { topic, group } => {
                vec![
                    (Read, Resource::topic(topic)),
                    (Read, Resource::group(group)),
                ]
            }
        },
        Request::CreateTopic { name, .. } => vec![(Create, Resource::topic(name))],
        Request::DeleteTopic { name } => vec![(Delete, Resource::topic(name))],
        Request::AlterTopic { name, .. } => vec![(Alter, Resource::topic(name))],
        Request::DescribeTopic { name } | Request::TopicMeta { name } => {
            vec![(Describe, Resource::topic(name))]
        }
        Request::CreateQueue { name, settings } => {
            let mut v = vec![(Create, Resource::queue(name))];
            if let Some(d) = &settings.dead_letter {
                v.push((Create, Resource::queue(d)));
            }
            v
        }
        Request::DeleteQueue { name } => vec![(Delete, Resource::queue(name))],
        Request::DescribeQueue { name } => vec![(Describe, Resource::queue(name))],
        Request::ClusterStatus => vec![(Describe, Resource::cluster())],
        Request::ClusterAddNode { .. }
        | Request::ClusterRemoveNode { .. }
        | Request::ClusterSetReplicas { .. } => {
            vec![(Alter, Resource::cluster())]
        }
        Request::Security(s) => match s {
            SecurityRequest::Auth { .. } | SecurityRequest::AuthContinue { .. } => vec![],
            SecurityRequest::UserList | SecurityRequest::RuleList => {
                vec![(Describe, Resource::cluster())]
            }
            _ => vec![(Alter, Resource::cluster())],
        },
        // Listings are filtered; acks, nacks, credit and cancel act on streams the
        // connection opened under a check; hello and ping need nothing.
        _ => vec![],
    }
}

impl Conn {
    fn security(&self) -> &Arc<Security> {
        self.broker.security()
    }

    /// Checks `req` against who the connection is; the refusal to send instead, if any. A
    /// connection whose user was deleted or expired is closed.
    pub(super) fn check(&self, req: &Request) -> Result<Option<Reply>, End> {
        let sec = self.security();
        let p = &self.auth.principal;
        let authenticating = matches!(
            req,
            Request::Ping
                | Request::Security(SecurityRequest::Auth { .. })
                | Request::Security(SecurityRequest::AuthContinue { .. })
        );
        if authenticating {
            return Ok(None);
        }
        if *p == Principal::Anonymous && !sec.anonymous_allowed(self.peer.ip()) {
            self.broker.metrics().denied(Protocol::Native);
            let why = if sec.enabled() {
                "authentication required: this broker has users (sluice --user NAME)"
            } else {
                "anonymous clients are served only on loopback addresses: add a user \
                 (sluice user add) or start the broker with --allow-anonymous"
            };
            return Ok(Some(Reply::error(ErrorCode::Unauthenticated, why)));
        }
        if let Err(d) = sec.still_valid(p) {
            warn!(peer = %self.peer, "closing connection: {d}");
            return Err(End::Fatal(0, ErrorCode::Unauthenticated, d.to_string()));
        }
        if !sec.enabled() {
            // No user: every check would pass; the request's needs are not even listed.
            return Ok(None);
        }
        let store = self.broker.store();
        for (op, r) in needs(req, |n| store.has_topic(n)) {
            if let Err(d) = sec.authorize(p, op, r) {
                self.broker.metrics().denied(Protocol::Native);
                return Ok(Some(denied_reply(&d)));
            }
        }
        Ok(None)
    }

    /// Handles a security request (already checked).
    pub(super) async fn security_request(
        &mut self,
        id: u32,
        req: SecurityRequest,
    ) -> Result<(), End> {
        let reply = match req {
            SecurityRequest::Auth { mechanism, payload } => {
                self.auth_start(&mechanism, &payload).await
            }
            SecurityRequest::AuthContinue { payload } => self.auth_continue(&payload),
            admin => {
                let tx = self.slot().await?;
                let sec = self.security().clone();
                self.spawn_reply(tx, id, move || Ok(admin_request(&sec, admin)));
                return Ok(());
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.broker.metrics().auth_failed(Protocol::Native);
                warn!(peer = %self.peer, "authentication failed: {e}");
                self.auth.failures += 1;
                if self.auth.failures >= AUTH_FAILURES_MAX {
                    let m = format!("{e} ({AUTH_FAILURES_MAX} failed attempts: closing)");
                    return Err(End::Fatal(id, ErrorCode::Unauthenticated, m));
                }
                Reply::error(ErrorCode::Unauthenticated, e.to_string())
            }
        };
        self.reply(id, reply).await
    }

    async fn auth_start(&mut self, mechanism: &str, payload: &[u8]) -> Result<Reply, AuthError> {
        if self.auth.principal != Principal::Anonymous {
            return Err(AuthError::Mechanism("already authenticated".into()));
        }
        self.auth.pending = None;
        if mechanism == "PLAIN" {
            if !self.auth.tls {
                return Err(AuthError::Mechanism(
                    "PLAIN sends the password in clear and is offered only over TLS; use \
                     SCRAM-SHA-256"
                        .into(),
                ));
            }
            let (user, password) = parse_plain(payload).ok_or(AuthError::InvalidCredentials)?;
            let p = self.security().check_password(&user, &password).await?;
            return self.admitted(p, Vec::new());
        }
        let m = Mechanism::from_name(mechanism).ok_or_else(|| {
            AuthError::Mechanism(format!(
                "unsupported mechanism {mechanism:?}: this server offers SCRAM-SHA-256, \
                 SCRAM-SHA-512 and PLAIN (over TLS)"
            ))
        })?;
        let first =
            scram::server_start(m, payload).map_err(|e| AuthError::Mechanism(e.to_string()))?;
        let credential = self.security().scram_credential(first.user(), m);
        let (pending, msg) = first.reply(credential);
        self.auth.pending = Some(pending);
        Ok(Reply::Security(SecurityReply::AuthChallenge(msg)))
    }

    fn auth_continue(&mut self, payload: &[u8]) -> Result<Reply, AuthError> {
        let pending = self.auth.pending.take().ok_or_else(|| {
            AuthError::Mechanism("AUTH_CONTINUE without an exchange under way".into())
        })?;
        let user = pending.user().to_string();
        let last = pending.finish(payload).map_err(|e| match e {
            scram::ScramError::InvalidCredentials => AuthError::InvalidCredentials,
            e => AuthError::Mechanism(e.to_string()),
        })?;
        let p = self.security().admit(&user)?;
        self.admitted(p, last)
    }

    fn admitted(&mut self, p: Principal, last: Vec<u8>) -> Result<Reply, AuthError> {
        let quota = self.security().connect(&p)?;
        let user = p.user().unwrap_or_default().to_string();
        info!(peer = %self.peer, %user, "authenticated");
        self.conn.set_user(&user);
        self.auth.principal = p;
        self.auth._quota = quota;
        self.auth.changes = Some(self.security().changes());
        Ok(Reply::Security(SecurityReply::AuthOk {
            user,
            payload: last,
        }))
    }
}

/// Keeps from a listing the names `p` may describe.
pub(super) fn visible(
    sec: &Security,
    p: &Principal,
    kind: ResourceKind,
    names: Vec<String>,
) -> Vec<String> {
    if !sec.enabled() {
        return names;
    }
    names
        .into_iter()
        .filter(|n| sec.allows(p, Operation::Describe, Resource { kind, name: n }))
        .collect()
}

/// PLAIN's message: `[authzid] NUL user NUL password`; an authzid must be the user.
fn parse_plain(payload: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(payload).ok()?;
    let mut parts = s.split('\0');
    let (authz, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || (!authz.is_empty() && authz != user) {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

/// A user, rule or quota request. Blocking (hashes and file writes).
fn admin_request(sec: &Security, req: SecurityRequest) -> Reply {
    let done = |r: Result<(), crate::security::SecurityError>| match r {
        Ok(()) => Reply::Ok,
        Err(e) => Reply::error(security_code(&e), e.to_string()),
    };
    match req {
        SecurityRequest::UserAdd {
            name,
            password,
            superuser,
            expires_at_ms,
            quotas,
        } => {
            let o = UserOptions {
                superuser,
                expires_at_ms,
                quotas: wire::quotas_from_wire(quotas),
            };
            done(sec.add_user(&name, &password, o))
        }
        SecurityRequest::UserDelete { name } => done(sec.delete_user(&name)),
        SecurityRequest::UserQuotas { name, quotas } => {
            done(sec.set_quotas(&name, wire::quotas_from_wire(quotas)))
        }
        SecurityRequest::UserList => Reply::Security(SecurityReply::Users(
            sec.users().iter().map(wire::user_to_wire).collect(),
        )),
        SecurityRequest::RuleAdd(w) => match wire::rule_from_wire(w) {
            Ok(rule) => done(sec.add_rule(rule).map(|_| ())),
            Err(m) => Reply::error(ErrorCode::InvalidArgument, m),
        },
        SecurityRequest::RuleRemove(w) => match wire::rule_from_wire(w) {
            Ok(rule) => match sec.remove_rules(|r| *r == rule) {
                Ok(gone) if gone.is_empty() => {
                    Reply::error(ErrorCode::NotFound, format!("no rule \"{rule}\""))
                }
                Ok(_) => Reply::Ok,
                Err(e) => Reply::error(security_code(&e), e.to_string()),
            },
            Err(m) => Reply::error(ErrorCode::InvalidArgument, m),
        },
        SecurityRequest::RuleList => Reply::Security(SecurityReply::Rules(
            sec.rules().iter().map(wire::rule_to_wire).collect(),
        )),
        SecurityRequest::Auth { .. } | SecurityRequest::AuthContinue { .. } => {
            unreachable!("authentication is handled by the connection")
        }
    }
}

fn security_code(e: &crate::security::SecurityError) -> ErrorCode {
    use crate::security::SecurityError::*;
    match e {
        Invalid(_) => ErrorCode::InvalidArgument,
        UserExists(_) => ErrorCode::AlreadyExists,
        NoUser(_) => ErrorCode::NotFound,
        Io(..) | Corrupt(..) | Locked(_) => ErrorCode::Storage,
    }
}

/// Delays a connection's streams past its user's byte-rate quota.
#[derive(Clone)]
pub(super) struct Throttle {
    sec: Arc<Security>,
    principal: Principal,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Throttle {
    /// Records `bytes` sent or received; returns the delay owed (counted in metrics).
    pub(super) fn record(&self, d: Direction, bytes: usize) -> Duration {
        if self.principal == Principal::Anonymous {
            return Duration::ZERO;
        }
        let t = self.sec.throttle(&self.principal, d, bytes);
        if !t.is_zero() {
            self.metrics.throttled(d, t);
        }
        t
    }

    /// Records `bytes` and waits out the delay owed.
    pub(super) async fn after(&self, d: Direction, bytes: usize) {
        let t = self.record(d, bytes);
        if !t.is_zero() {
            tokio::time::sleep(t).await;
        }
    }
}

impl Conn {
    /// The quota throttle of this connection's user.
    pub(super) fn throttle(&self) -> Throttle {
        Throttle {
            sec: self.security().clone(),
            principal: self.auth.principal.clone(),
            metrics: self.broker.metrics().clone(),
        }
    }
}
