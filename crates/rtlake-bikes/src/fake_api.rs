//! A stand-in for Seoul's bikeList API on a local port, speaking its real wire format: the
//! recorded pages, and every result code and error shape. For tests of anything that polls the
//! API (the live service cannot be reached from CI).
//!
//! The key chooses the behaviour: `good` (or any other key) serves the recorded pages;
//! `bad` (or any key starting so) answers INFO-100; `flaky` (or any key starting so) fails twice with HTTP 500 and then
//! serves; `xml336` answers
//! ERROR-336 as XML; `down` answers ERROR-500 in the flat `{"CODE":..}` shape; `e600` answers
//! ERROR-600 in the `{"RESULT":..}` shape; `nodata` answers INFO-200; `cut` sends the second page
//! cut in half on its first two requests (a dropped connection), `cutalways` always; `slow`
//! answers its first request after 3 s (past a client's timeout); `chaos` (or any key starting
//! so) fails about 40% of its requests, chosen by a hash of the request number, each in one of
//! these ways: HTTP 500 with an HTML page, ERROR-500 as XML, a page cut in half, an answer after
//! 3 s, or no data (INFO-200) in the middle of a poll. [`FakeApi::faults`] counts them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const PAGES: [&str; 3] = [
    include_str!("../../../data/seoul-bike/bikeList_now_1_1000.json"),
    include_str!("../../../data/seoul-bike/bikeList_now_1001_2000.json"),
    include_str!("../../../data/seoul-bike/bikeList_now_2001_3000.json"),
];
const NO_DATA: &str = r#"{"RESULT":{"CODE":"INFO-200","MESSAGE":"해당하는 데이터가 없습니다."}}"#;

/// A running fake API.
pub struct FakeApi {
    /// Its base URL, to use as `source.api-base`.
    pub base: String,
    calls: Arc<AtomicUsize>,
    faults: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeApi {
    /// Starts one on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let calls = Arc::new(AtomicUsize::new(0));
        let faults = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route(
                "/{key}/json/bikeList/{start}/{end}/",
                axum::routing::get(handler),
            )
            .with_state((calls.clone(), faults.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base,
            calls,
            faults,
            task,
        })
    }

    /// Requests served so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Faults the `chaos` key injected so far.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json(body: &str) -> Response {
    (
        [("content-type", "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

type Counters = (Arc<AtomicUsize>, Arc<AtomicUsize>);

/// The page the `chaos` key last answered "no data" for (0: none): asked again, the API
/// answers it, as a real end of data would repeat.
static EMPTY_FOR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The `chaos` key's answer to request `n`, if it is a fault.
async fn chaos_fault(n: usize, start: u32) -> Option<Response> {
    // splitmix64 of the request number: faults spread evenly and replay the same.
    let mut x = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Some(match (x ^ (x >> 31)) % 100 {
        0..12 => (StatusCode::INTERNAL_SERVER_ERROR, "<html>Internal Server Error</html>").into_response(),
        12..20 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><RESULT><CODE>ERROR-500</CODE><MESSAGE>서버 오류입니다.</MESSAGE></RESULT>",
        )
            .into_response(),
        20..28 => {
            let page = PAGES[(start / 1000).min(2) as usize];
            json(&page[..page.len() / 2])
        }
        28..33 => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            json(PAGES[(start / 1000).min(2) as usize])
        }
        33..40 if start > 1 && EMPTY_FOR.swap(start, Ordering::SeqCst) != start => json(NO_DATA),
        _ => {
            let _ = EMPTY_FOR.compare_exchange(start, 0, Ordering::SeqCst, Ordering::SeqCst);
            return None;
        }
    })
}

async fn handler(
    State((calls, faults)): State<Counters>,
    Path((key, start, _end)): Path<(String, u32, u32)>,
) -> Response {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    if key.starts_with("chaos")
        && let Some(fault) = chaos_fault(n, start).await
    {
        faults.fetch_add(1, Ordering::SeqCst);
        return fault;
    }
    match key.as_str() {
        k if k.starts_with("bad") => json(r#"{"RESULT":{"CODE":"INFO-100","MESSAGE":"인증키가 유효하지 않습니다."}}"#),
        k if k.starts_with("flaky") && n < 2 => (StatusCode::INTERNAL_SERVER_ERROR, "<html>Internal Server Error</html>").into_response(),
        "xml336" => (
            [("content-type", "text/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><RESULT><CODE>ERROR-336</CODE><MESSAGE>데이터요청은 한번에 최대 1000건을 넘을 수 없습니다.</MESSAGE></RESULT>",
        )
            .into_response(),
        "down" => json(r#"{"CODE":"ERROR-500","MESSAGE":"서버 오류입니다."}"#),
        "e600" => json(r#"{"RESULT":{"CODE":"ERROR-600","MESSAGE":"데이터베이스 연결 오류입니다."}}"#),
        "nodata" => json(NO_DATA),
        "slow" if n == 0 => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            json(PAGES[0])
        }
        "cut" | "cutalways" if start == 1001 && (key == "cutalways" || n < 3) => {
            json(&PAGES[1][..PAGES[1].len() / 2])
        }
        _ => match start {
            1 => json(PAGES[0]),
            1001 => json(PAGES[1]),
            2001 => json(PAGES[2]),
            _ => json(NO_DATA),
        },
    }
}

/// Rows the recorded pages hold: the stations of one whole poll.
pub fn recorded_rows() -> usize {
    PAGES
        .iter()
        .map(|p| crate::api::parse_response(p.as_bytes()).map_or(0, |page| page.rows.len()))
        .sum()
}
