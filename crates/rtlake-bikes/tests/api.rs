//! The bikeList client against a local HTTP server that speaks the API's wire format: the
//! recorded pages, and every result code and error shape.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rtlake_bikes::api::{ApiError, ApiKey, BikeListClient};
use rtlake_core::config::SourceConfig;
use rtlake_core::units::HumanDuration;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const PAGES: [&str; 3] = [
    include_str!("../../../data/seoul-bike/bikeList_now_1_1000.json"),
    include_str!("../../../data/seoul-bike/bikeList_now_1001_2000.json"),
    include_str!("../../../data/seoul-bike/bikeList_now_2001_3000.json"),
];

#[derive(Default)]
struct Fake {
    calls: AtomicUsize,
}

fn json(body: &str) -> Response {
    ([("content-type", "application/json;charset=UTF-8")], body.to_string()).into_response()
}

/// Keys choose behaviours: `good`, `bad` (INFO-100), `flaky` (two HTTP 500s then pages),
/// `xml336` (ERROR-336 as XML), `down` (ERROR-500 flat shape, always), `nodata` (INFO-200),
/// `e600` (ERROR-600 in RESULT shape, always).
async fn handler(State(s): State<Arc<Fake>>, Path((key, start, _end)): Path<(String, u32, u32)>) -> Response {
    let n = s.calls.fetch_add(1, Ordering::SeqCst);
    match key.as_str() {
        "bad" => json(r#"{"RESULT":{"CODE":"INFO-100","MESSAGE":"인증키가 유효하지 않습니다."}}"#),
        "flaky" if n < 2 => (StatusCode::INTERNAL_SERVER_ERROR, "<html>Internal Server Error</html>").into_response(),
        "xml336" => ([("content-type", "text/xml")], "<?xml version=\"1.0\" encoding=\"UTF-8\"?><RESULT><CODE>ERROR-336</CODE><MESSAGE>데이터요청은 한번에 최대 1000건을 넘을 수 없습니다.</MESSAGE></RESULT>").into_response(),
        "down" => json(r#"{"CODE":"ERROR-500","MESSAGE":"서버 오류입니다."}"#),
        "e600" => json(r#"{"RESULT":{"CODE":"ERROR-600","MESSAGE":"데이터베이스 연결 오류입니다."}}"#),
        "nodata" => json(r#"{"RESULT":{"CODE":"INFO-200","MESSAGE":"해당하는 데이터가 없습니다."}}"#),
        _ => match start {
            1 => json(PAGES[0]),
            1001 => json(PAGES[1]),
            2001 => json(PAGES[2]),
            _ => json(r#"{"RESULT":{"CODE":"INFO-200","MESSAGE":"해당하는 데이터가 없습니다."}}"#),
        },
    }
}

async fn server() -> (String, Arc<Fake>) {
    let state = Arc::new(Fake::default());
    let app = axum::Router::new().route("/{key}/json/bikeList/{start}/{end}/", axum::routing::get(handler)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn client(base: &str, key: &str) -> BikeListClient {
    let cfg = SourceConfig {
        api_base: base.to_string(),
        max_retries: 3,
        retry_backoff: HumanDuration::from_millis(10),
        request_timeout: HumanDuration::from_secs(2),
        ..Default::default()
    };
    BikeListClient::new(&cfg, ApiKey::new(key)).unwrap()
}

#[tokio::test]
async fn a_full_poll_pages_until_the_short_page() {
    let (base, fake) = server().await;
    let rows = client(&base, "good").fetch_all().await.unwrap();
    assert_eq!(rows.len(), 2721);
    assert_eq!(rows[0].station_id, "ST-4");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3, "the short third page ends the poll");
}

#[tokio::test]
async fn a_bad_key_stops_at_once_without_showing_the_key() {
    let (base, fake) = server().await;
    let err = client(&base, "bad").fetch_all().await.unwrap_err();
    assert!(matches!(err, ApiError::BadKey(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    assert!(err.to_string().contains("INFO-100"));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (base, fake) = server().await;
    let rows = client(&base, "flaky").fetch_all().await.unwrap();
    assert_eq!(rows.len(), 2721);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 5, "two failures, then three pages");

    let (base, fake) = server().await;
    let err = client(&base, "down").fetch_all().await.unwrap_err();
    assert!(matches!(&err, ApiError::Server { code, .. } if code == "ERROR-500"), "{err:?}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 4, "one try and three retries");
    assert!(err.to_string().contains("/***/json/bikeList/1/1000/"), "the key is hidden: {err}");
    assert!(!err.to_string().contains("down/"), "the key never shows: {err}");

    let (base, _) = server().await;
    let err = client(&base, "e600").fetch_all().await.unwrap_err();
    assert!(matches!(&err, ApiError::Server { code, .. } if code == "ERROR-600"), "{err:?}");
}

#[tokio::test]
async fn request_errors_in_xml_are_not_retried() {
    let (base, fake) = server().await;
    let err = client(&base, "xml336").fetch_all().await.unwrap_err();
    assert!(matches!(&err, ApiError::Request { code, .. } if code == "ERROR-336"), "{err:?}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_data_is_an_empty_poll() {
    let (base, _) = server().await;
    assert!(client(&base, "nodata").fetch_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn network_errors_are_retried_then_reported() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = client(&format!("http://127.0.0.1:{port}"), "secret-key").fetch_all().await.unwrap_err();
    assert!(matches!(err, ApiError::Network { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("secret-key"), "{err}");
}
