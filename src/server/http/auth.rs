//! Authentication on the HTTP listener (`docs/http.md`, "Authentication"). While the broker
//! serves the peer anonymously ([`Security::anonymous_allowed`]: no user exists and the peer is
//! on loopback, or anonymous access was allowed), every request runs as
//! [`Principal::Anonymous`]. Otherwise every request but the console's files, `POST
//! /api/login` and `POST /api/logout` needs a principal, from the session cookie
//! [`SESSION_COOKIE`] or from `Authorization: Basic`; [`authenticate`] puts it in the
//! request's extensions for the handlers, which check it with [`allow`].
//!
//! Passwords and session tokens travel only over TLS or from a loopback peer: a Basic header,
//! a login or a session cookie over plain HTTP from another host is refused (403) without
//! being checked. A request without valid
//! credentials gets 401; `WWW-Authenticate: Basic realm="sluice"` goes only to clients that
//! are not a page's script ([`from_script`]), so the console's calls never make the browser
//! ask for a password in a dialog of its own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::Json;

use crate::broker::Broker;
use crate::metrics::Protocol;
use crate::security::{Denied, Operation, Principal, Resource, Security};

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "sluice_session";
/// The challenge of a 401 to a client that is not a page's script.
const CHALLENGE: &str = "Basic realm=\"sluice\"";
/// Longest `Authorization` header decoded (a user name and a password at their limits fit).
pub(super) const AUTHORIZATION_BYTES_MAX: usize = 4096;

/// The peer of a connection, as axum's `ConnectInfo` of the listener.
#[derive(Clone, Copy, Debug)]
pub(super) struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, super::conn::Limited>> for Peer {
    fn connect_info(stream: IncomingStream<'_, super::conn::Limited>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// How a request arrived: from whom, and whether over TLS. Every request carries it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Via {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The listener is TLS.
    pub tls: bool,
}

impl Via {
    /// Whether a password or session token may be accepted over this connection: TLS, or a
    /// loopback peer.
    pub fn passwords_allowed(&self) -> bool {
        self.tls || is_loopback(self.peer.ip())
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The state of [`authenticate`]: the broker and whether the listener is TLS.
#[derive(Clone)]
pub(super) struct Guard {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The listener is TLS.
    pub tls: bool,
}

/// The credentials a request carries.
#[derive(PartialEq, Eq)]
pub(super) enum Credentials {
    /// None.
    None,
    /// `Authorization: Basic`.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// The session cookie's token.
    Session(String),
    /// An `Authorization` header that could not be read, and why.
    Malformed(String),
}

/// The credentials in `headers`: `Authorization` first, then the session cookie.
pub(super) fn credentials(headers: &HeaderMap) -> Credentials {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        return match basic(v.as_bytes()) {
            Ok((user, password)) => Credentials::Basic { user, password },
            Err(why) => Credentials::Malformed(why),
        };
    }
    match session_token(headers) {
        Some(t) => Credentials::Session(t),
        None => Credentials::None,
    }
}

/// The session cookie's value in the `Cookie` headers, if any.
pub(super) fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The user and password of an `Authorization: Basic` value.
fn basic(value: &[u8]) -> Result<(String, String), String> {
    if value.len() > AUTHORIZATION_BYTES_MAX {
        return Err(format!(
            "the Authorization header is longer than {AUTHORIZATION_BYTES_MAX} bytes"
        ));
    }
    let text = std::str::from_utf8(value).map_err(|_| "Authorization is not text".to_string())?;
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(format!(
            "Authorization scheme {scheme:?} is not served (Basic, or log in)"
        ));
    }
    let decoded = base64_decode(rest.trim()).ok_or("Basic credentials are not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "Basic credentials are not UTF-8")?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or("Basic credentials have no ':' between user and password")?;
    Ok((user.to_string(), password.to_string()))
}

/// Standard base64 (padding optional), `None` when `s` is not.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Whether the request comes from a page's script (the console's `fetch`): it says so with
/// `X-Requested-With`, or the browser marks it with a `Sec-Fetch-Mode` other than `navigate`.
pub(super) fn from_script(headers: &HeaderMap) -> bool {
    headers.contains_key("x-requested-with")
        || headers
            .get("sec-fetch-mode")
            .is_some_and(|m| m.as_bytes() != b"navigate")
}

/// Requests served without a principal: the console's files, the login and the logout.
fn exempt(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET | Method::HEAD => path == "/" || path.starts_with("/console/"),
        Method::POST => path == "/api/login" || path == "/api/logout",
        _ => false,
    }
}

/// An error answer of the API, `{"error": {"kind", "message"}}`, counted as a request of the
/// path's kind and an error of its status.
pub(super) fn refuse(broker: &Broker, path: &str, status: StatusCode, message: String) -> Response {
    let kind = if path == "/metrics" {
        super::kind::METRICS
    } else {
        super::kind::ADMIN
    };
    broker.metrics().request(Protocol::Http, kind);
    super::count_error(broker, status);
    let kind = match status {
        StatusCode::UNAUTHORIZED => "Unauthenticated",
        _ => "Forbidden",
    };
    let body = serde_json::json!({"error": {"kind": kind, "message": message}});
    (status, Json(body)).into_response()
}

/// A 401, with the Basic challenge unless the request comes from a page's script.
pub(super) fn unauthenticated(
    broker: &Broker,
    path: &str,
    headers: &HeaderMap,
    message: String,
) -> Response {
    let mut r = refuse(broker, path, StatusCode::UNAUTHORIZED, message);
    if !from_script(headers) {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
    }
    r
}

/// The refusal of a password or session token sent in the clear from another host.
pub(super) fn insecure(broker: &Broker, path: &str, via: &Via) -> Response {
    tracing::warn!(peer = %via.peer, "http credentials refused: plain HTTP from another host");
    let m = "passwords and sessions are accepted only over TLS or from this host: use https \
             (give the HTTP listener a certificate) or an SSH tunnel"
        .to_string();
    refuse(broker, path, StatusCode::FORBIDDEN, m)
}

/// Finds the request's principal (see the module documentation), or answers it.
pub(super) async fn authenticate(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let Some(ConnectInfo(Peer(peer))) = req.extensions().get::<ConnectInfo<Peer>>().copied() else {
        // Every connection of the listener has its peer; a request without one is refused.
        return refuse(
            &g.broker,
            req.uri().path(),
            StatusCode::FORBIDDEN,
            "no peer address".into(),
        );
    };
    let via = Via { peer, tls: g.tls };
    req.extensions_mut().insert(via);
    let security = g.broker.security();
    if exempt(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    if security.anonymous_allowed(peer.ip()) {
        req.extensions_mut().insert(Principal::Anonymous);
        return next.run(req).await;
    }
    let found = principal(&g.broker, security, &via, req.uri().path(), req.headers()).await;
    match found {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(r) => r,
    }
}

/// The principal of a request's credentials, or the answer refusing it.
async fn principal(
    broker: &Broker,
    security: &Security,
    via: &Via,
    path: &str,
    headers: &HeaderMap,
) -> Result<Principal, Response> {
    let fail = |m: String| unauthenticated(broker, path, headers, m);
    match credentials(headers) {
        Credentials::None if !security.enabled() => Err(fail(
            "no user exists, and anonymous clients are served only from this host: add a \
             user (docs/security.md) or allow anonymous access (allow_anonymous)"
                .into(),
        )),
        Credentials::None => Err(fail(
            "authentication required: log in (POST /api/login) or send Authorization: Basic".into(),
        )),
        Credentials::Malformed(why) => Err(fail(why)),
        Credentials::Basic { .. } | Credentials::Session(_) if !via.passwords_allowed() => {
            Err(insecure(broker, path, via))
        }
        Credentials::Basic { user, password } => {
            match security.check_password(&user, &password).await {
                Ok(p) => Ok(p),
                Err(e) => {
                    broker.metrics().auth_failed(Protocol::Http);
                    tracing::warn!(peer = %via.peer, user = %user, "http authentication failed: {e}");
                    Err(fail(e.to_string()))
                }
            }
        }
        Credentials::Session(token) => {
            let user = security.sessions.user(&token, Instant::now());
            match user.map(|u| security.admit(&u)) {
                Some(Ok(p)) => Ok(p),
                Some(Err(e)) => {
                    security.sessions.close(&token);
                    Err(fail(format!("session ended: {e}; log in again")))
                }
                None => Err(fail("session ended or unknown: log in again".into())),
            }
        }
    }
}

/// An answer refusing a request, boxed (a response is large).
pub(super) type Refusal = Box<Response>;

/// Checks that `p` may do `op` on `r`; the refusal (401 when no longer authenticated, else
/// 403 with the reason), counted as denied, otherwise.
pub(super) fn allow(
    broker: &Broker,
    p: &Principal,
    op: Operation,
    r: Resource<'_>,
) -> Result<(), Refusal> {
    broker
        .security()
        .authorize(p, op, r)
        .map_err(|d| Box::new(denied(broker, "", d)))
}

/// The answer to a refused request of `path` (see [`allow`]).
pub(super) fn denied(broker: &Broker, path: &str, d: Denied) -> Response {
    broker.metrics().denied(Protocol::Http);
    tracing::info!("http request denied: {d}");
    let status = match d {
        Denied::Forbidden { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    // `Denied`'s text of a cluster (no name) ends in a space.
    refuse(broker, path, status, d.to_string().trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn basic_and_cookie_credentials_are_read() {
        // "alice:open sesame" and "bob:a:b" (a password may hold ':').
        let h = headers(&[("authorization", "Basic YWxpY2U6b3BlbiBzZXNhbWU=")]);
        let want = Credentials::Basic {
            user: "alice".into(),
            password: "open sesame".into(),
        };
        assert!(credentials(&h) == want);
        let h = headers(&[("authorization", "basic Ym9iOmE6Yg")]);
        let want = Credentials::Basic {
            user: "bob".into(),
            password: "a:b".into(),
        };
        assert!(credentials(&h) == want);
        for bad in ["Bearer xyz", "Basic !!!!", "Basic YWxpY2U=", "Basic Y"] {
            let h = headers(&[("authorization", bad)]);
            assert!(
                matches!(credentials(&h), Credentials::Malformed(_)),
                "{bad}"
            );
        }
        let h = headers(&[("cookie", "a=1; sluice_session=abc ; b=2")]);
        assert!(credentials(&h) == Credentials::Session("abc".into()));
        let h = headers(&[("cookie", "a=1"), ("cookie", "sluice_session=zz")]);
        assert!(credentials(&h) == Credentials::Session("zz".into()));
        assert!(credentials(&headers(&[("cookie", "sluice_session=")])) == Credentials::None);
        assert!(credentials(&HeaderMap::new()) == Credentials::None);
    }

    #[test]
    fn passwords_need_tls_or_loopback_and_scripts_get_no_challenge() {
        let via = |ip: &str, tls| Via {
            peer: SocketAddr::new(ip.parse().unwrap(), 1),
            tls,
        };
        assert!(via("127.0.0.1", false).passwords_allowed());
        assert!(via("::1", false).passwords_allowed());
        assert!(via("::ffff:127.0.0.1", false).passwords_allowed());
        assert!(!via("10.0.0.7", false).passwords_allowed());
        assert!(via("10.0.0.7", true).passwords_allowed());
        assert!(from_script(&headers(&[(
            "x-requested-with",
            "sluice-console"
        )])));
        assert!(from_script(&headers(&[("sec-fetch-mode", "cors")])));
        assert!(!from_script(&headers(&[("sec-fetch-mode", "navigate")])));
        assert!(!from_script(&HeaderMap::new()));
        assert!(exempt(&Method::GET, "/console/api.js"));
        assert!(exempt(&Method::POST, "/api/login"));
        assert!(!exempt(&Method::GET, "/api/login"));
        assert!(!exempt(&Method::GET, "/metrics"));
        assert!(!exempt(&Method::DELETE, "/"));
    }
}
