//! The security frames: authentication (`AUTH`, `AUTH_CONTINUE`), users and access rules.
//! Access rules travel as numbers (tables in `docs/protocol.md`); the server checks them.

use super::codec::{R, W};
use super::error::{malformed, ProtocolError};
use super::kind;

/// Most users or rules in one `USERS` or `RULES` reply.
pub const LISTED_MAX: usize = 100_000;

/// A user's limits on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireQuotas {
    /// Bytes per second it may publish.
    pub produce_bytes_per_sec: Option<u64>,
    /// Bytes per second it may read.
    pub fetch_bytes_per_sec: Option<u64>,
    /// Connections it may hold.
    pub connections_max: Option<u64>,
}

/// An access rule on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRule {
    /// A user, or `*`.
    pub principal: String,
    /// 0 topic, 1 queue, 2 group, 3 cluster.
    pub resource: u8,
    /// 0 exact, 1 prefix.
    pub pattern: u8,
    /// The name or prefix.
    pub name: String,
    /// 0 all, 1 read, 2 write, 3 create, 4 delete, 5 describe, 6 alter.
    pub operation: u8,
    /// 0 allow, 1 deny.
    pub permission: u8,
}

/// A user as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireUser {
    /// Name.
    pub name: String,
    /// Skips every rule.
    pub superuser: bool,
    /// When it expires (ms since the epoch).
    pub expires_at_ms: Option<u64>,
    /// Its limits.
    pub quotas: WireQuotas,
    /// When it was added (ms since the epoch).
    pub created_ms: u64,
}

/// A security request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecurityRequest {
    /// Starts authentication: a SASL mechanism and its first message.
    Auth {
        /// `SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN` (TLS only).
        mechanism: String,
        /// The mechanism's first message.
        payload: Vec<u8>,
    },
    /// The next message of the exchange.
    AuthContinue {
        /// The message.
        payload: Vec<u8>,
    },
    /// Adds a user.
    UserAdd {
        /// Name.
        name: String,
        /// Password.
        password: String,
        /// Skips every rule.
        superuser: bool,
        /// When it expires.
        expires_at_ms: Option<u64>,
        /// Its limits.
        quotas: WireQuotas,
    },
    /// Deletes a user.
    UserDelete {
        /// Name.
        name: String,
    },
    /// Lists users.
    UserList,
    /// Sets a user's limits.
    UserQuotas {
        /// Name.
        name: String,
        /// Its limits.
        quotas: WireQuotas,
    },
    /// Adds a rule.
    RuleAdd(WireRule),
    /// Removes a rule (equal in every field).
    RuleRemove(WireRule),
    /// Lists rules.
    RuleList,
}

/// A security reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecurityReply {
    /// The server's next message of the exchange.
    AuthChallenge(Vec<u8>),
    /// Authenticated as `user`; `payload` is the mechanism's final message (SCRAM's server
    /// signature).
    AuthOk {
        /// The user.
        user: String,
        /// The final message.
        payload: Vec<u8>,
    },
    /// Users.
    Users(Vec<WireUser>),
    /// Rules.
    Rules(Vec<WireRule>),
}

// Format: quotas = { produce opt<u64> | fetch opt<u64> | connections opt<u64> }
fn put_quotas(w: &mut W<'_>, q: &WireQuotas) {
    w.opt_u64(q.produce_bytes_per_sec)
        .opt_u64(q.fetch_bytes_per_sec)
        .opt_u64(q.connections_max);
}

fn get_quotas(r: &mut R<'_>) -> Result<WireQuotas, ProtocolError> {
    Ok(WireQuotas {
        produce_bytes_per_sec: r.opt_u64()?,
        fetch_bytes_per_sec: r.opt_u64()?,
        connections_max: r.opt_u64()?,
    })
}

// Format: rule = { principal str | resource u8 | pattern u8 | name str | operation u8 |
//                  permission u8 }
fn put_rule(w: &mut W<'_>, x: &WireRule) {
    w.str(&x.principal)
        .u8(x.resource)
        .u8(x.pattern)
        .str(&x.name);
    w.u8(x.operation).u8(x.permission);
}

fn get_rule(r: &mut R<'_>) -> Result<WireRule, ProtocolError> {
    Ok(WireRule {
        principal: r.str()?,
        resource: r.u8()?,
        pattern: r.u8()?,
        name: r.str()?,
        operation: r.u8()?,
        permission: r.u8()?,
    })
}

/// A count of listed items, bounded by the bytes left (`min_len` each) and [`LISTED_MAX`].
fn count(r: &mut R<'_>, min_len: usize) -> Result<usize, ProtocolError> {
    let n = r.u32()? as usize;
    if n > LISTED_MAX || n > (r.b.len() - r.pos) / min_len {
        return Err(malformed("item count exceeds the body"));
    }
    Ok(n)
}

impl SecurityRequest {
    /// The frame kind.
    pub fn kind(&self) -> u8 {
        use SecurityRequest::*;
        match self {
            Auth { .. } => kind::AUTH,
            AuthContinue { .. } => kind::AUTH_CONTINUE,
            UserAdd { .. } => kind::USER_ADD,
            UserDelete { .. } => kind::USER_DELETE,
            UserList => kind::USER_LIST,
            UserQuotas { .. } => kind::USER_QUOTAS,
            RuleAdd(_) => kind::RULE_ADD,
            RuleRemove(_) => kind::RULE_REMOVE,
            RuleList => kind::RULE_LIST,
        }
    }

    pub(crate) fn encode_body(&self, w: &mut W<'_>) {
        match self {
            // Format: { mechanism str | payload bytes }
            SecurityRequest::Auth { mechanism, payload } => {
                w.str(mechanism).bytes(payload);
            }
            // Format: { payload bytes }
            SecurityRequest::AuthContinue { payload } => {
                w.bytes(payload);
            }
            // Format: { name str | password str | superuser u8 | expires_at_ms opt<u64> | quotas }
            SecurityRequest::UserAdd {
                name,
                password,
                superuser,
                expires_at_ms,
                quotas,
            } => {
                w.str(name).str(password).u8(*superuser as u8);
                w.opt_u64(*expires_at_ms);
                put_quotas(w, quotas);
            }
            // Format: { name str }
            SecurityRequest::UserDelete { name } => {
                w.str(name);
            }
            // Format: {}
            SecurityRequest::UserList | SecurityRequest::RuleList => {}
            // Format: { name str | quotas }
            SecurityRequest::UserQuotas { name, quotas } => {
                w.str(name);
                put_quotas(w, quotas);
            }
            // Format: { rule }
            SecurityRequest::RuleAdd(x) | SecurityRequest::RuleRemove(x) => put_rule(w, x),
        }
    }

    /// Decodes the body of a security request of kind `k`; `None` for another kind.
    pub(crate) fn decode(k: u8, r: &mut R<'_>) -> Result<Option<SecurityRequest>, ProtocolError> {
        Ok(Some(match k {
            kind::AUTH => SecurityRequest::Auth {
                mechanism: r.str()?,
                payload: r.bytes()?.to_vec(),
            },
            kind::AUTH_CONTINUE => SecurityRequest::AuthContinue {
                payload: r.bytes()?.to_vec(),
            },
            kind::USER_ADD => SecurityRequest::UserAdd {
                name: r.str()?,
                password: r.str()?,
                superuser: r.flag()?,
                expires_at_ms: r.opt_u64()?,
                quotas: get_quotas(r)?,
            },
            kind::USER_DELETE => SecurityRequest::UserDelete { name: r.str()? },
            kind::USER_LIST => SecurityRequest::UserList,
            kind::USER_QUOTAS => SecurityRequest::UserQuotas {
                name: r.str()?,
                quotas: get_quotas(r)?,
            },
            kind::RULE_ADD => SecurityRequest::RuleAdd(get_rule(r)?),
            kind::RULE_REMOVE => SecurityRequest::RuleRemove(get_rule(r)?),
            kind::RULE_LIST => SecurityRequest::RuleList,
            _ => return Ok(None),
        }))
    }
}

impl SecurityReply {
    /// The frame kind.
    pub fn kind(&self) -> u8 {
        match self {
            SecurityReply::AuthChallenge(_) => kind::AUTH_CHALLENGE,
            SecurityReply::AuthOk { .. } => kind::AUTH_OK,
            SecurityReply::Users(_) => kind::USERS,
            SecurityReply::Rules(_) => kind::RULES,
        }
    }

    pub(crate) fn encode_body(&self, w: &mut W<'_>) {
        match self {
            // Format: { payload bytes }
            SecurityReply::AuthChallenge(p) => {
                w.bytes(p);
            }
            // Format: { user str | payload bytes }
            SecurityReply::AuthOk { user, payload } => {
                w.str(user).bytes(payload);
            }
            // Format: { count u32 | { name str | superuser u8 | expires_at_ms opt<u64> |
            //           quotas | created_ms u64 } * count }
            SecurityReply::Users(users) => {
                w.u32(users.len() as u32);
                for u in users {
                    w.str(&u.name)
                        .u8(u.superuser as u8)
                        .opt_u64(u.expires_at_ms);
                    put_quotas(w, &u.quotas);
                    w.u64(u.created_ms);
                }
            }
            // Format: { count u32 | rule * count }
            SecurityReply::Rules(rules) => {
                w.u32(rules.len() as u32);
                for x in rules {
                    put_rule(w, x);
                }
            }
        }
    }

    /// Decodes the body of a security reply of kind `k`; `None` for another kind.
    pub(crate) fn decode(k: u8, r: &mut R<'_>) -> Result<Option<SecurityReply>, ProtocolError> {
        Ok(Some(match k {
            kind::AUTH_CHALLENGE => SecurityReply::AuthChallenge(r.bytes()?.to_vec()),
            kind::AUTH_OK => SecurityReply::AuthOk {
                user: r.str()?,
                payload: r.bytes()?.to_vec(),
            },
            kind::USERS => {
                let n = count(r, 15)?;
                let mut users = Vec::with_capacity(n);
                for _ in 0..n {
                    users.push(WireUser {
                        name: r.str()?,
                        superuser: r.flag()?,
                        expires_at_ms: r.opt_u64()?,
                        quotas: get_quotas(r)?,
                        created_ms: r.u64()?,
                    });
                }
                SecurityReply::Users(users)
            }
            kind::RULES => {
                let n = count(r, 8)?;
                let rules = (0..n).map(|_| get_rule(r)).collect::<Result<_, _>>()?;
                SecurityReply::Rules(rules)
            }
            _ => return Ok(None),
        }))
    }
}
