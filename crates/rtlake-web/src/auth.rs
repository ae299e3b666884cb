//! The token that guards `/api/` when the server listens beyond loopback.
//!
//! A request carries it as `Authorization: Bearer TOKEN`, or as `?access_token=TOKEN` where a
//! browser cannot set headers (`EventSource`, RFC 6750 §2.3). The pages themselves and their
//! assets hold no data and stay open; the pages take the token from the address
//! (`http://host:8080/#token=TOKEN`) and send it with every call. `/metrics` stays open for
//! scrapers.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// Refuses to serve beyond loopback without a token.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<(), crate::Error> {
    if addr.ip().is_loopback() || token.is_some() {
        Ok(())
    } else {
        Err(crate::Error::Unprotected(addr.to_string()))
    }
}

/// Middleware: every `/api/` request must carry the configured token, if there is one.
pub async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(want) = s.cfg.serve.auth_token.as_ref() else {
        return next.run(req).await;
    };
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let given = bearer(&req).or_else(|| query_token(&req));
    match given {
        Some(t) if same(t.as_bytes(), want.expose().as_bytes()) => next.run(req).await,
        given => {
            let why = if given.is_some() {
                "the token is wrong"
            } else {
                "this server needs a token: send `Authorization: Bearer TOKEN` (or open the page as /#token=TOKEN)"
            };
            tracing::warn!(path = %req.uri().path(), token_given = given.is_some(), "API request refused");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"rtlake\"")],
                axum::Json(serde_json::json!({ "error": why })),
            )
                .into_response()
        }
    }
}

fn bearer(req: &Request) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn query_token(req: &Request) -> Option<String> {
    url::form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_may_go_without_a_token() {
        assert!(check_exposure("127.0.0.1:8080".parse().unwrap(), None).is_ok());
        assert!(check_exposure("[::1]:8080".parse().unwrap(), None).is_ok());
        let e = check_exposure("0.0.0.0:8080".parse().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("RTLAKE_SERVE_AUTH_TOKEN"), "{e}");
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), Some("t")).is_ok());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abcdef", b"abcde"));
    }
}
