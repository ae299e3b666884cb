//! The client of Seoul's bikeList API (`GET {base}/{KEY}/json/bikeList/{START}/{END}/`).
//!
//! The API answers at most 1,000 rows a call; `list_total_count` is the row count of the page,
//! not the total, so pages are fetched until one is short or the API says `INFO-200` (no data).
//! Errors come in three shapes: `{"RESULT":{"CODE":..}}`, `{"CODE":..}` and XML. Server errors
//! (`ERROR-5xx`/`6xx`, HTTP 5xx) and network errors are retried with exponential backoff; a bad
//! key (`INFO-100`) and request errors (`ERROR-3xx`) are not. The key never appears in an error
//! or a log line: URLs are shown with `***` in its place.

use crate::config::SourceConfig;
use crate::model::ApiRow;
use serde::Deserialize;
use std::time::Duration;

/// The API key, kept out of `Debug` output and logs.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key; surrounding white space (a trailing newline in a key file) is dropped.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into().trim().to_string())
    }

    /// Reads the key from `file` if given, else from the `SEOUL_API_KEY` variable.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ApiError> {
        let key = match file {
            Some(f) => std::fs::read_to_string(f).map_err(|e| {
                ApiError::Config(format!("cannot read the API key file {}: {e}", f.display()))
            })?,
            None => std::env::var("SEOUL_API_KEY").map_err(|_| {
                ApiError::Config(
                    "no API key: set SEOUL_API_KEY or source.api-key-file (--api-key-file)".into(),
                )
            })?,
        };
        let key = Self::new(key);
        if key.0.is_empty() || key.0.contains(['/', '?', '#', ' ']) {
            return Err(ApiError::Config(
                "the API key is empty or has characters a key cannot have".into(),
            ));
        }
        Ok(key)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// `INFO-100`: the key was refused. Not retried.
    #[error("the API refused the key (INFO-100: {0}); check SEOUL_API_KEY")]
    BadKey(String),
    /// `ERROR-3xx`: the request was wrong (e.g. 336: more than 1,000 rows). Not retried.
    #[error("the API refused the request ({code}: {message}) for {url}")]
    Request {
        /// The result code.
        code: String,
        /// The API's message.
        message: String,
        /// The URL, key hidden.
        url: String,
    },
    /// `ERROR-5xx`/`6xx` or HTTP 5xx: the server failed. Retried.
    #[error("the API failed ({code}: {message}) for {url}")]
    Server {
        /// The result code or HTTP status.
        code: String,
        /// The message.
        message: String,
        /// The URL, key hidden.
        url: String,
    },
    /// The connection failed or timed out. Retried.
    #[error("cannot reach the API at {url}: {message}")]
    Network {
        /// What failed.
        message: String,
        /// The URL, key hidden.
        url: String,
    },
    /// The answer was neither a page nor a known error shape. Retried.
    #[error("unexpected answer from the API: {0}")]
    Malformed(String),
    /// Settings or key missing.
    #[error("{0}")]
    Config(String),
}

impl ApiError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Server { .. } | Self::Network { .. } | Self::Malformed(_)
        )
    }
}

/// A successful page.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The rows (`list_total_count` of them).
    pub rows: Vec<ApiRow>,
}

/// What one response said: a page, no data (`INFO-200`), or an error code and message.
#[derive(Debug)]
enum Answer {
    Page(Page),
    NoData,
    Code(String, String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "rentBikeStatus")]
    status: Option<Body>,
    #[serde(rename = "RESULT")]
    result: Option<ResultCode>,
    #[serde(rename = "CODE")]
    code: Option<String>,
    #[serde(rename = "MESSAGE")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "RESULT")]
    result: Option<ResultCode>,
    #[serde(default)]
    row: Vec<ApiRow>,
}

#[derive(Deserialize)]
struct ResultCode {
    #[serde(rename = "CODE")]
    code: String,
    #[serde(rename = "MESSAGE", default)]
    message: String,
}

fn xml_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].trim())
}

fn classify(body: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        let code = xml_tag(trimmed, "CODE")
            .ok_or_else(|| format!("XML without a CODE: {}", snippet(trimmed)))?;
        let message = xml_tag(trimmed, "MESSAGE").unwrap_or_default();
        return Ok(answer_for(code, message, None));
    }
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| format!("{e}: {}", snippet(trimmed)))?;
    if let Some(status) = env.status {
        let (code, message) = status
            .result
            .map(|r| (r.code, r.message))
            .unwrap_or_else(|| ("INFO-000".into(), String::new()));
        return Ok(answer_for(&code, &message, Some(status.row)));
    }
    if let Some(r) = env.result {
        return Ok(answer_for(&r.code, &r.message, None));
    }
    if let Some(code) = env.code {
        return Ok(answer_for(
            &code,
            env.message.as_deref().unwrap_or_default(),
            None,
        ));
    }
    Err(format!(
        "JSON without rentBikeStatus, RESULT or CODE: {}",
        snippet(trimmed)
    ))
}

fn answer_for(code: &str, message: &str, rows: Option<Vec<ApiRow>>) -> Answer {
    match (code, rows) {
        ("INFO-000", Some(rows)) => Answer::Page(Page { rows }),
        ("INFO-000", None) => Answer::Page(Page::default()),
        ("INFO-200", _) => Answer::NoData,
        (c, _) => Answer::Code(c.to_string(), message.to_string()),
    }
}

fn snippet(s: &str) -> String {
    let s: String = s.chars().take(120).collect();
    s.replace('\n', " ")
}

/// Parses a response body into a page, for recorded files and tests; an error code is an error.
pub fn parse_response(body: &[u8]) -> Result<Page, ApiError> {
    match classify(body).map_err(ApiError::Malformed)? {
        Answer::Page(p) => Ok(p),
        Answer::NoData => Ok(Page::default()),
        Answer::Code(code, message) => Err(code_error(code, message, String::new())),
    }
}

fn code_error(code: String, message: String, url: String) -> ApiError {
    if code == "INFO-100" {
        ApiError::BadKey(message)
    } else if code.starts_with("ERROR-3") || code.starts_with("INFO-") {
        ApiError::Request { code, message, url }
    } else {
        ApiError::Server { code, message, url }
    }
}

/// The bikeList client.
#[derive(Clone, Debug)]
pub struct BikeListClient {
    http: reqwest::Client,
    base: String,
    key: ApiKey,
    page_size: u32,
    max_retries: u32,
    backoff: Duration,
}

impl BikeListClient {
    /// A client with the source settings (base URL, page size, retries, timeout).
    pub fn new(cfg: &SourceConfig, key: ApiKey) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout.get())
            .build()
            .map_err(|e| ApiError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: cfg.api_base.trim_end_matches('/').to_string(),
            key,
            page_size: cfg.page_size,
            max_retries: cfg.max_retries,
            backoff: cfg.retry_backoff.get(),
        })
    }

    fn url(&self, start: u32, end: u32, hide_key: bool) -> String {
        let key = if hide_key { "***" } else { self.key.0.as_str() };
        format!("{}/{key}/json/bikeList/{start}/{end}/", self.base)
    }

    /// Fetches rows `start..=end` (1-based) once, without retries; `None` means no data.
    pub async fn fetch_page(&self, start: u32, end: u32) -> Result<Option<Page>, ApiError> {
        let shown = self.url(start, end, true);
        let resp = self
            .http
            .get(self.url(start, end, false))
            .send()
            .await
            .map_err(|e| ApiError::Network {
                message: e.without_url().to_string(),
                url: shown.clone(),
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| ApiError::Network {
            message: e.without_url().to_string(),
            url: shown.clone(),
        })?;
        // An error body says more than the status, so it is read first.
        match classify(&body) {
            Ok(Answer::Page(p)) if status.is_success() => Ok(Some(p)),
            Ok(Answer::NoData) => Ok(None),
            Ok(Answer::Code(code, message)) => Err(code_error(code, message, shown)),
            _ if status.is_server_error() => Err(ApiError::Server {
                code: format!("HTTP {}", status.as_u16()),
                message: snippet(&String::from_utf8_lossy(&body)),
                url: shown,
            }),
            _ if !status.is_success() => Err(ApiError::Request {
                code: format!("HTTP {}", status.as_u16()),
                message: snippet(&String::from_utf8_lossy(&body)),
                url: shown,
            }),
            Ok(Answer::Page(p)) => Ok(Some(p)),
            Err(e) => Err(ApiError::Malformed(e)),
        }
    }

    /// Fetches a page, retrying retryable failures with exponential backoff.
    pub async fn fetch_page_with_retries(
        &self,
        start: u32,
        end: u32,
    ) -> Result<Option<Page>, ApiError> {
        let mut attempt = 0;
        loop {
            match self.fetch_page(start, end).await {
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    let wait = self.backoff * 2u32.saturating_pow(attempt);
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "bikeList call failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// One full poll: pages of `page_size` until a short page or `INFO-200`.
    pub async fn fetch_all(&self) -> Result<Vec<ApiRow>, ApiError> {
        let mut rows = Vec::new();
        let mut start = 1u32;
        loop {
            let end = start + self.page_size - 1;
            let mut page = self.fetch_page_with_retries(start, end).await?;
            // No data right after a full page ends the poll only if asked twice: once, it may
            // be the API failing to answer, and a poll must be all its pages or nothing.
            if page.is_none() && start > 1 {
                tracing::warn!(start, end, "no data after a full page; asking again");
                tokio::time::sleep(self.backoff).await;
                page = self.fetch_page_with_retries(start, end).await?;
            }
            match page {
                None => break,
                Some(page) => {
                    let n = page.rows.len() as u32;
                    rows.extend(page.rows);
                    if n < self.page_size {
                        break;
                    }
                    start = end + 1;
                }
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_error_shape() {
        let ok = include_bytes!("../../../data/seoul-bike/sample_key_response.json");
        assert_eq!(parse_response(ok).unwrap().rows.len(), 5);
        let bad_key = br#"{"RESULT":{"CODE":"INFO-100","MESSAGE":"key"}}"#;
        assert!(matches!(parse_response(bad_key), Err(ApiError::BadKey(_))));
        let flat = br#"{"CODE":"ERROR-500","MESSAGE":"server"}"#;
        assert!(matches!(parse_response(flat), Err(ApiError::Server { .. })));
        let xml = b"<?xml version=\"1.0\"?><RESULT><CODE>ERROR-336</CODE><MESSAGE>too many</MESSAGE></RESULT>";
        match parse_response(xml) {
            Err(ApiError::Request { code, .. }) => assert_eq!(code, "ERROR-336"),
            other => panic!("{other:?}"),
        }
        assert!(
            parse_response(br#"{"rentBikeStatus":{"RESULT":{"CODE":"INFO-200","MESSAGE":""}}}"#)
                .unwrap()
                .rows
                .is_empty()
        );
        assert!(matches!(
            parse_response(b"<html>oops</html>"),
            Err(ApiError::Malformed(_))
        ));
    }

    #[test]
    fn the_key_is_never_shown() {
        let k = ApiKey::new("secret-key-123\n");
        assert_eq!(format!("{k:?}"), "ApiKey(***)");
        let c = BikeListClient::new(&SourceConfig::default(), k).unwrap();
        assert!(!c.url(1, 1000, true).contains("secret"));
    }
}
