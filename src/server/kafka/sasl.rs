//! SASL on the Kafka listener (KIP-43, KIP-152): SaslHandshake v1 picks a mechanism, then
//! SaslAuthenticate carries its messages. SaslHandshake is advertised from version 0 (librdkafka
//! uses SASL only when it is) but v0, which is followed by raw SASL tokens, is refused with
//! UNSUPPORTED_VERSION; clients since Kafka 1.0 send v1. Mechanisms: SCRAM-SHA-256 and SCRAM-SHA-512 (the
//! shared `sluice_client::scram` server side) everywhere, and PLAIN only on a TLS connection
//! (the password would otherwise cross the network in the clear).
//!
//! A connection that may not go on anonymously (`Security::anonymous_allowed`) is served
//! nothing but ApiVersions, SaslHandshake and SaslAuthenticate until it authenticates; any
//! other request closes it, as Kafka's broker does. A failed exchange is answered (with
//! SASL_AUTHENTICATION_FAILED and a message) and then the connection closes; each failure is
//! counted in `sluice_auth_failures_total{protocol="kafka"}` and logged with the peer.
//! Re-authentication (KIP-368) is not offered: `session_lifetime_ms` is 0.

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_client::scram::{self, Mechanism, ScramServerFinal};
use tracing::{debug, warn};

use super::codec::Header;
use super::connection::{Conn, End, Slot};
use super::dispatch::respond;
use crate::metrics::Protocol;
use crate::security::{AuthError, ConnectionQuota, Principal};

/// Longest SaslAuthenticate message accepted (a PLAIN message holds a user name of at most
/// 255 bytes and a password of at most 1024; SCRAM messages are shorter).
pub const SASL_AUTH_BYTES_MAX: usize = 4096;
/// Longest mechanism name accepted in a SaslHandshake.
pub const SASL_MECHANISM_BYTES_MAX: usize = 64;
/// The session lifetime told to clients: 0, no re-authentication (KIP-368 not served).
const SESSION_LIFETIME_MS: i64 = 0;
/// The PLAIN mechanism's name.
const PLAIN: &str = "PLAIN";
/// The answer to a wrong password and to an unknown user alike.
pub const INVALID_CREDENTIALS: &str = "Authentication failed: invalid credentials";

/// The mechanism a handshake chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chosen {
    Scram(Mechanism),
    Plain,
}

/// Who a connection is, and where its SASL exchange stands.
pub(super) struct ConnAuth {
    /// The connection is TLS (PLAIN is offered).
    tls: bool,
    /// Requests other than the SASL ones are served.
    pub(super) authenticated: bool,
    /// Who the requests are checked as.
    pub(super) principal: Principal,
    chosen: Option<Chosen>,
    /// The SCRAM exchange after its first message.
    scram: Option<ScramServerFinal>,
    /// Counts this connection against its user's connection quota while it lives.
    _quota: Option<ConnectionQuota>,
}

impl ConnAuth {
    /// A new connection; `anonymous`: it may go on without authenticating.
    pub(super) fn new(tls: bool, anonymous: bool) -> ConnAuth {
        ConnAuth {
            tls,
            authenticated: anonymous,
            principal: Principal::Anonymous,
            chosen: None,
            scram: None,
            _quota: None,
        }
    }

    /// The mechanisms offered on this connection.
    fn offered(&self) -> Vec<StrBytes> {
        let mut m = vec![
            StrBytes::from_static_str(Mechanism::Sha256.name()),
            StrBytes::from_static_str(Mechanism::Sha512.name()),
        ];
        if self.tls {
            m.push(StrBytes::from_static_str(PLAIN));
        }
        m
    }
}

/// `e` as told to the client: a sentence starting with a capital.
fn client_message(e: &AuthError) -> String {
    match e {
        AuthError::InvalidCredentials => INVALID_CREDENTIALS.to_string(),
        AuthError::TooManyConnections(..) => format!("Authentication refused: {e}"),
        _ => {
            let s = e.to_string();
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or(s)
        }
    }
}

/// Splits a PLAIN message `authzid NUL user NUL password`; the authorization id must be
/// empty or the user.
fn parse_plain(msg: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(msg).ok()?;
    let mut parts = text.split('\0');
    let (authz, user, pw) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || !(authz.is_empty() || authz == user) {
        return None;
    }
    Some((user, pw))
}

impl Conn {
    /// Counts and logs a failed authentication; the connection then closes.
    fn auth_failed(&self, why: &str) -> End {
        self.ctx.broker.metrics().auth_failed(Protocol::Kafka);
        warn!(peer = %self.peer, "kafka authentication failed: {why}");
        End::Closed
    }

    /// Closes a connection that sent `api` before authenticating.
    pub(super) fn unauthenticated(&self, api: i16) -> End {
        self.auth_failed(&format!(
            "request (api key {api}) before SASL authentication; this broker has users, so \
             clients must use security.protocol SASL_PLAINTEXT or SASL_SSL"
        ))
    }

    pub(super) fn sasl_handshake(
        &mut self,
        tx: Slot,
        h: &Header,
        r: SaslHandshakeRequest,
    ) -> Result<(), End> {
        let metrics = self.ctx.broker.metrics().clone();
        let mut resp = SaslHandshakeResponse::default().with_mechanisms(self.auth.offered());
        let name = r.mechanism.as_str();
        let chosen = match name {
            PLAIN if self.auth.tls => Some(Chosen::Plain),
            n => Mechanism::from_name(n).map(Chosen::Scram),
        };
        let refusal = if h.api_version == 0 {
            // Version 0 is followed by raw SASL tokens, not SaslAuthenticate requests.
            resp.error_code = ResponseError::UnsupportedVersion.code();
            Some("SaslHandshake v0 (raw SASL tokens) is not served; v1 is".to_string())
        } else if self.auth.chosen.is_some() || self.auth.principal.user().is_some() {
            resp.error_code = ResponseError::IllegalSaslState.code();
            Some("a second SaslHandshake (re-authentication is not served)".to_string())
        } else if let Some(c) = chosen {
            self.auth.chosen = Some(c);
            None
        } else {
            resp.error_code = ResponseError::UnsupportedSaslMechanism.code();
            let shown: String = name.chars().take(SASL_MECHANISM_BYTES_MAX).collect();
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            let plain = if self.auth.tls {
                ""
            } else {
                " (PLAIN only over TLS)"
            };
            Some(format!(
                "mechanism {shown:?} is not offered here; offered: {}{plain}",
                offered.join(", ")
            ))
        };
        respond(&metrics, tx, h, &resp);
        match refusal {
            Some(why) => Err(self.auth_failed(&why)),
            None => Ok(()),
        }
    }

    pub(super) async fn sasl_authenticate(
        &mut self,
        tx: Slot,
        h: &Header,
        r: SaslAuthenticateRequest,
    ) -> Result<(), End> {
        let metrics = self.ctx.broker.metrics().clone();
        let step = self.sasl_step(&r.auth_bytes).await;
        let mut resp = SaslAuthenticateResponse::default();
        resp.session_lifetime_ms = SESSION_LIFETIME_MS;
        match step {
            Ok(reply) => {
                resp.auth_bytes = reply;
                respond(&metrics, tx, h, &resp);
                Ok(())
            }
            Err((code, message, why)) => {
                resp.error_code = code;
                resp.error_message = Some(StrBytes::from_string(message));
                respond(&metrics, tx, h, &resp);
                Err(self.auth_failed(&why))
            }
        }
    }

    /// One SaslAuthenticate message: the bytes to answer, or the error code, the client's
    /// message and the logged reason.
    async fn sasl_step(&mut self, msg: &[u8]) -> Result<Bytes, (i16, String, String)> {
        let failed = ResponseError::SaslAuthenticationFailed.code();
        let Some(chosen) = self.auth.chosen else {
            let m = "SaslAuthenticate before SaslHandshake".to_string();
            return Err((ResponseError::IllegalSaslState.code(), m.clone(), m));
        };
        if self.auth.principal.user().is_some() {
            let m = "SaslAuthenticate after authentication (re-authentication is not served)";
            return Err((ResponseError::IllegalSaslState.code(), m.into(), m.into()));
        }
        if msg.len() > SASL_AUTH_BYTES_MAX {
            let m = format!(
                "SASL message of {} bytes (at most {SASL_AUTH_BYTES_MAX})",
                msg.len()
            );
            return Err((failed, m.clone(), m));
        }
        let security = self.ctx.broker.security().clone();
        let (user, reply) = match chosen {
            Chosen::Plain => {
                let Some((user, pw)) = parse_plain(msg) else {
                    let m = "malformed PLAIN message".to_string();
                    return Err((failed, m.clone(), m));
                };
                let p = security.check_password(user, pw).await;
                let p =
                    p.map_err(|e| (failed, client_message(&e), format!("user {user:?}: {e}")))?;
                (p, Bytes::new())
            }
            Chosen::Scram(mech) => match self.auth.scram.take() {
                None => {
                    let first = scram::server_start(mech, msg).map_err(|e| {
                        (failed, format!("Authentication failed: {e}"), e.to_string())
                    })?;
                    let credential = security.scram_credential(first.user(), mech);
                    let (fin, server_first) = first.reply(credential);
                    self.auth.scram = Some(fin);
                    return Ok(Bytes::from(server_first));
                }
                Some(fin) => {
                    let user = fin.user().to_string();
                    let server_final = fin.finish(msg).map_err(|e| {
                        let m = match &e {
                            scram::ScramError::InvalidCredentials => INVALID_CREDENTIALS.into(),
                            e => format!("Authentication failed: {e}"),
                        };
                        (failed, m, format!("user {user:?}: {e} ({})", mech.name()))
                    })?;
                    let p = security
                        .admit(&user)
                        .map_err(|e| (failed, client_message(&e), format!("user {user:?}: {e}")))?;
                    (p, Bytes::from(server_final))
                }
            },
        };
        let quota = security
            .connect(&user)
            .map_err(|e| (failed, client_message(&e), e.to_string()))?;
        debug!(peer = %self.peer, principal = %user, "kafka client authenticated");
        self.auth._quota = quota;
        self.auth.principal = user;
        self.auth.authenticated = true;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages_split_and_odd_ones_are_refused() {
        assert_eq!(parse_plain(b"\0alice\0pw"), Some(("alice", "pw")));
        assert_eq!(parse_plain(b"alice\0alice\0pw"), Some(("alice", "pw")));
        assert_eq!(parse_plain(b"bob\0alice\0pw"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"\0alice"), None);
        assert_eq!(parse_plain(b"\0alice\0pw\0x"), None);
        assert_eq!(
            client_message(&AuthError::InvalidCredentials),
            INVALID_CREDENTIALS
        );
        assert_eq!(
            client_message(&AuthError::Expired("bob".into())),
            "Authentication failed: user bob has expired"
        );
    }
}
