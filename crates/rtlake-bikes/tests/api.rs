//! The bikeList client against a local HTTP server that speaks the API's wire format: the
//! recorded pages, and every result code and error shape.

use rtlake_bikes::api::{ApiError, ApiKey, BikeListClient};
use rtlake_bikes::config::SourceConfig;
use rtlake_bikes::fake_api::FakeApi;
use rtlake_core::units::HumanDuration;

async fn server() -> (String, FakeApi) {
    let f = FakeApi::start().await.unwrap();
    (f.base.clone(), f)
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
    assert_eq!(fake.calls(), 3, "the short third page ends the poll");
}

#[tokio::test]
async fn a_bad_key_stops_at_once_without_showing_the_key() {
    let (base, fake) = server().await;
    let err = client(&base, "bad").fetch_all().await.unwrap_err();
    assert!(matches!(err, ApiError::BadKey(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(fake.calls(), 1);
    assert!(err.to_string().contains("INFO-100"));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (base, fake) = server().await;
    let rows = client(&base, "flaky").fetch_all().await.unwrap();
    assert_eq!(rows.len(), 2721);
    assert_eq!(fake.calls(), 5, "two failures, then three pages");

    let (base, fake) = server().await;
    let err = client(&base, "down").fetch_all().await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Server { code, .. } if code == "ERROR-500"),
        "{err:?}"
    );
    assert_eq!(fake.calls(), 4, "one try and three retries");
    assert!(
        err.to_string().contains("/***/json/bikeList/1/1000/"),
        "the key is hidden: {err}"
    );
    assert!(
        !err.to_string().contains("down/"),
        "the key never shows: {err}"
    );

    let (base, _fake) = server().await;
    let err = client(&base, "e600").fetch_all().await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Server { code, .. } if code == "ERROR-600"),
        "{err:?}"
    );
}

#[tokio::test]
async fn request_errors_in_xml_are_not_retried() {
    let (base, fake) = server().await;
    let err = client(&base, "xml336").fetch_all().await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Request { code, .. } if code == "ERROR-336"),
        "{err:?}"
    );
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn no_data_is_an_empty_poll() {
    let (base, _fake) = server().await;
    assert!(
        client(&base, "nodata")
            .fetch_all()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn network_errors_are_retried_then_reported() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client(&format!("http://127.0.0.1:{port}"), "secret-key")
        .fetch_all()
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Network { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("secret-key"), "{err}");
}

#[tokio::test]
async fn a_page_cut_short_is_retried_and_a_poll_is_all_pages_or_nothing() {
    let (base, _f) = server().await;
    // The second page arrives cut in half twice, then whole: the poll is whole.
    let rows = client(&base, "cut").fetch_all().await.unwrap();
    assert_eq!(rows.len(), 2721);
    // Always cut: the poll fails as a whole, so no page of it is published.
    let err = client(&base, "cutalways").fetch_all().await.unwrap_err();
    assert!(matches!(err, ApiError::Malformed(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_request_past_the_timeout_is_retried() {
    let (base, f) = server().await;
    let rows = client(&base, "slow").fetch_all().await.unwrap();
    assert_eq!(rows.len(), 2721);
    assert!(f.calls() >= 4, "the slow request and then three pages");
}
