//! Who may ask: the token that guards `/api/` when the server listens beyond loopback, and,
//! without a token, the `Host` and `Origin` checks that keep other sites out (DNS rebinding).
//!
//! A request carries the token as `Authorization: Bearer TOKEN`, or as `?access_token=TOKEN` on
//! `/api/live` only, where a browser cannot set headers (`EventSource`, RFC 6750 §2.3). The pages themselves and their
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
    // `?access_token=` only where a browser cannot send a header (EventSource): elsewhere a
    // token in the URL ends up in logs and histories.
    let given = bearer(&req).or_else(|| {
        (req.uri().path() == LIVE_PATH)
            .then(|| query_token(&req))
            .flatten()
    });
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

/// The one route that takes `?access_token=`: the live stream, opened by `EventSource`.
pub const LIVE_PATH: &str = "/api/live";

/// Middleware, when there is no token (a loopback server): the `Host` header must name the
/// address the server is bound to (or `localhost` at its port), and a `POST`'s `Origin`, when
/// sent, too. Otherwise a page on another site whose name was made to resolve to 127.0.0.1
/// (DNS rebinding) could read the lake through the browser of someone running `rtlake serve`.
pub async fn check_host(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if s.cfg.serve.auth_token.is_some() {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !allowed_host(host, s.bound) {
        tracing::warn!(host, path = %req.uri().path(), "request refused: Host is not this server's address");
        return refuse(format!(
            "Host `{host}` is not this server's address; open http://{}/",
            s.bound
        ));
    }
    if req.method() == axum::http::Method::POST
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("");
        let host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !host.is_some_and(|h| allowed_host(h, s.bound)) {
            tracing::warn!(origin, path = %req.uri().path(), "request refused: Origin is another site");
            return refuse(format!("Origin `{origin}` is another site"));
        }
    }
    next.run(req).await
}

fn refuse(why: String) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

/// Whether `host` (`name[:port]`, as in a `Host` header) names the server bound at `bound`:
/// its own IP, `localhost` or a loopback IP when it is bound to loopback, and its port (or no
/// port when it listens on 80).
pub fn allowed_host(host: &str, bound: SocketAddr) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !p.contains(']') => (n, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    if port.unwrap_or(80) != bound.port() {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.eq_ignore_ascii_case("localhost") {
        return bound.ip().is_loopback();
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip == bound.ip() || (ip.is_loopback() && bound.ip().is_loopback()),
        Err(_) => false,
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
    fn a_host_must_name_the_bound_address() {
        let b: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(allowed_host(ok, b), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.nip.io:8080",
            "127.0.0.1:9999",
            "127.0.0.1",
            "",
            "localhost",
            "10.0.0.1:8080",
        ] {
            assert!(!allowed_host(bad, b), "{bad}");
        }
        let on80: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(allowed_host("localhost", on80));
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(allowed_host("[::1]:8080", v6) && allowed_host("localhost:8080", v6));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abcdef", b"abcde"));
    }
}
