//! The console's login: `POST /api/login` checks a user's password and answers a session
//! cookie ([`SESSION_COOKIE`]: `HttpOnly; SameSite=Strict; Path=/`, and `Secure` over TLS);
//! `POST /api/logout` ends the session the request's cookie names; `GET /api/whoami` says who
//! the request runs as and whether security is on. See `docs/http.md`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::admin::{bad_body, KIND};
use super::auth::{insecure, session_token, unauthenticated, Via, SESSION_COOKIE};
use crate::broker::Broker;
use crate::metrics::Protocol;
use crate::security::session::SESSION_TTL;
use crate::security::Principal;

/// A login: `{"user": "alice", "password": "..."}`. Never logged, never answered.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    user: String,
    password: String,
}

/// The `Set-Cookie` value of a session (`token` empty: the cookie's removal).
fn cookie(token: &str, tls: bool) -> HeaderValue {
    let age = if token.is_empty() {
        0
    } else {
        SESSION_TTL.as_secs()
    };
    let secure = if tls { "; Secure" } else { "" };
    let v = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={age}{secure}"
    );
    HeaderValue::from_str(&v).expect("a hex token makes a valid header value")
}

/// `POST /api/login`: a session for a user whose password is right.
pub(super) async fn login(
    State(b): State<Arc<Broker>>,
    Extension(via): Extension<Via>,
    headers: HeaderMap,
    body: Result<Json<Login>, JsonRejection>,
) -> Response {
    let Json(l) = match body {
        Ok(l) => l,
        Err(r) => return bad_body(&b, r),
    };
    if !via.passwords_allowed() {
        return insecure(&b, "/api/login", &via);
    }
    let security = b.security();
    match security.check_password(&l.user, &l.password).await {
        Ok(_) => {
            b.metrics().request(Protocol::Http, KIND);
            let token = security.sessions.open(&l.user, Instant::now());
            tracing::info!(peer = %via.peer, user = %l.user, "http login");
            let mut r = (StatusCode::OK, Json(serde_json::json!({"user": l.user}))).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, cookie(&token, via.tls));
            r
        }
        Err(e) => {
            b.metrics().auth_failed(Protocol::Http);
            tracing::warn!(peer = %via.peer, user = %l.user, "http login failed: {e}");
            unauthenticated(&b, "/api/login", &headers, e.to_string())
        }
    }
}

/// `POST /api/logout`: ends the session of the request's cookie (if any) and removes the
/// cookie.
pub(super) async fn logout(
    State(b): State<Arc<Broker>>,
    Extension(via): Extension<Via>,
    headers: HeaderMap,
) -> Response {
    b.metrics().request(Protocol::Http, KIND);
    let ended = match session_token(&headers) {
        Some(token) => {
            let user = b.security().sessions.user(&token, Instant::now());
            b.security().sessions.close(&token);
            if let Some(u) = &user {
                tracing::info!(peer = %via.peer, user = %u, "http logout");
            }
            user.is_some()
        }
        None => false,
    };
    let mut r = Json(serde_json::json!({"ended": ended})).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie("", via.tls));
    r
}

/// `GET /api/whoami`: `{"user": "alice" or null, "security": true, "superuser": false}`.
pub(super) async fn whoami(
    State(b): State<Arc<Broker>>,
    Extension(p): Extension<Principal>,
) -> Response {
    b.metrics().request(Protocol::Http, KIND);
    let security = b.security();
    let superuser = match p.user() {
        None => !security.enabled(),
        Some(u) => security.users().iter().any(|i| i.name == u && i.superuser),
    };
    Json(serde_json::json!({
        "user": p.user(),
        "security": security.enabled(),
        "superuser": superuser,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = cookie("ab12", false);
        assert_eq!(
            plain,
            "sluice_session=ab12; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"
        );
        let tls = cookie("ab12", true);
        assert!(tls.to_str().unwrap().ends_with("; Max-Age=43200; Secure"));
        let gone = cookie("", true);
        assert_eq!(
            gone,
            "sluice_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure"
        );
    }
}
