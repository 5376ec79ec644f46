//! Authentication (SCRAM-SHA-256 by default, SCRAM-SHA-512, or PLAIN over TLS) and the
//! security admin calls: users, their quotas, access rules.

use super::connection::Conn;
use super::{unexpected, Client, ClientError, Result};
use crate::protocol::{
    Reply, Request, SecurityReply, SecurityRequest, WireQuotas, WireRule, WireUser,
};
use crate::scram::{Mechanism, ScramClient};

/// How a client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
    /// The mechanism (SCRAM-SHA-256 unless set).
    pub mechanism: AuthMechanism,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// An authentication mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanism {
    /// SCRAM (the password never leaves the client).
    Scram(Mechanism),
    /// The password itself (the server offers it only over TLS).
    Plain,
}

impl Credentials {
    /// SCRAM-SHA-256 as `user`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
            mechanism: AuthMechanism::Scram(Mechanism::Sha256),
        }
    }
}

fn scram_failed(e: crate::scram::ScramError) -> ClientError {
    ClientError::Server {
        code: crate::protocol::ErrorCode::Unauthenticated,
        message: e.to_string(),
    }
}

/// Authenticates connection `conn` (never retried elsewhere: authentication is the
/// connection's).
pub(super) async fn authenticate_on(conn: &Conn, c: &Credentials) -> Result<()> {
    let m = match c.mechanism {
        AuthMechanism::Plain => {
            let payload = format!("\0{}\0{}", c.user, c.password).into_bytes();
            let req = SecurityRequest::Auth {
                mechanism: "PLAIN".into(),
                payload,
            };
            return match conn.request(&Request::Security(req)).await? {
                Reply::Security(SecurityReply::AuthOk { .. }) => Ok(()),
                r => Err(unexpected(r)),
            };
        }
        AuthMechanism::Scram(m) => m,
    };
    let (mut scram, first) = ScramClient::new(m, &c.user, &c.password);
    let req = SecurityRequest::Auth {
        mechanism: m.name().into(),
        payload: first,
    };
    let server_first = match conn.request(&Request::Security(req)).await? {
        Reply::Security(SecurityReply::AuthChallenge(p)) => p,
        r => return Err(unexpected(r)),
    };
    let last = scram.step(&server_first).map_err(scram_failed)?;
    let req = SecurityRequest::AuthContinue { payload: last };
    match conn.request(&Request::Security(req)).await? {
        Reply::Security(SecurityReply::AuthOk { payload, .. }) => {
            scram.finish(&payload).map_err(scram_failed)
        }
        r => Err(unexpected(r)),
    }
}

impl Client {
    /// Authenticates this connection (done by [`crate::ConnectOptions::credentials`] at
    /// connect).
    pub async fn authenticate(&self, c: &Credentials) -> Result<()> {
        authenticate_on(&self.conn(), c).await
    }

    /// Adds a user (the server hashes the password; send it over TLS beyond this host).
    pub async fn add_user(
        &self,
        name: &str,
        password: &str,
        superuser: bool,
        expires_at_ms: Option<u64>,
        quotas: WireQuotas,
    ) -> Result<()> {
        let req = SecurityRequest::UserAdd {
            name: name.into(),
            password: password.into(),
            superuser,
            expires_at_ms,
            quotas,
        };
        self.expect_ok(Request::Security(req)).await
    }

    /// Deletes a user: its connections are refused from their next request.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let req = SecurityRequest::UserDelete { name: name.into() };
        self.expect_ok(Request::Security(req)).await
    }

    /// Sets a user's quotas.
    pub async fn set_quotas(&self, name: &str, quotas: WireQuotas) -> Result<()> {
        let req = SecurityRequest::UserQuotas {
            name: name.into(),
            quotas,
        };
        self.expect_ok(Request::Security(req)).await
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<WireUser>> {
        match self
            .request(Request::Security(SecurityRequest::UserList))
            .await?
        {
            Reply::Security(SecurityReply::Users(u)) => Ok(u),
            r => Err(unexpected(r)),
        }
    }

    /// Adds an access rule.
    pub async fn add_rule(&self, rule: WireRule) -> Result<()> {
        self.expect_ok(Request::Security(SecurityRequest::RuleAdd(rule)))
            .await
    }

    /// Removes an access rule (`NotFound` when no rule is equal to it).
    pub async fn remove_rule(&self, rule: WireRule) -> Result<()> {
        self.expect_ok(Request::Security(SecurityRequest::RuleRemove(rule)))
            .await
    }

    /// Every access rule.
    pub async fn rules(&self) -> Result<Vec<WireRule>> {
        match self
            .request(Request::Security(SecurityRequest::RuleList))
            .await?
        {
            Reply::Security(SecurityReply::Rules(r)) => Ok(r),
            r => Err(unexpected(r)),
        }
    }
}
