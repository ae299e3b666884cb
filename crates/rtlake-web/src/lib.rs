//! `rtlake serve`: the live dashboard, the pipeline and Kafka pages, the read-only SQL API and
//! `/metrics`, all from one axum server with its assets built in (no CDN: it works offline).
//!
//! - [`auth`]: the token `/api/` needs when the server listens beyond loopback.
//! - [`live`]: the live stream (server-sent events) that a domain's view publishes into.
//! - [`sql_api`]: `POST /api/sql`, queries only, with a row limit and a timeout.
//! - [`status`]: what the pipeline and Kafka pages show.
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod live;
pub mod sql_api;
pub mod status;

use crate::config::WebConfig as Config;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use rtlake_lake::Lake;
use rtlake_query::LakeSql;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors of the web server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {addr} ({key}): {cause}")]
    Bind {
        /// The address.
        addr: String,
        /// The config key that set it.
        key: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The lake could not be opened.
    #[error(transparent)]
    Lake(#[from] rtlake_lake::Error),
    /// The server would listen beyond loopback without a token.
    #[error(
        "refusing to serve the lake on {0} without a token: the SQL API reads every table. Set serve.auth-token (or RTLAKE_SERVE_AUTH_TOKEN, e.g. $(openssl rand -hex 24)), or listen on 127.0.0.1"
    )]
    Unprotected(String),
    /// The Kafka clients could not be made (a bad client property).
    #[error(transparent)]
    Kafka(#[from] rtlake_kafka::Error),
    /// The SQL engine could not be set up (its memory pool).
    #[error("sql engine: {0}")]
    Sql(#[from] rtlake_query::Error),
    /// Serving failed.
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The configuration.
    pub cfg: Arc<Config>,
    /// The domain's built-in views, in every SQL session (see [`Domain::views`]).
    pub views: &'static [(&'static str, &'static str)],
    /// The lake.
    pub lake: Lake,
    /// The live stream's hub.
    pub live: Arc<live::Live>,
    /// The one handle on the Kafka cluster every page asks.
    pub cluster: rtlake_kafka::Cluster,
    /// The address the server is bound to (requests must name it in `Host`).
    pub bound: std::net::SocketAddr,
    session: Arc<tokio::sync::Mutex<Option<CachedSession>>>,
    /// One memory pool for every SQL session (`serve.sql-memory-limit`).
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    rates: Arc<Mutex<status::Rates>>,
}

/// A SQL session over the lake and when it was opened (it is reopened when tables change).
type CachedSession = (Instant, Arc<LakeSql>);

impl AppState {
    /// A SQL session over the lake, reopened when older than a second (tables move on).
    pub async fn session(&self) -> Result<Arc<LakeSql>, rtlake_query::Error> {
        let mut s = self.session.lock().await;
        if let Some((at, sql)) = s.as_ref()
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(sql.clone());
        }
        let sql = Arc::new(LakeSql::open_with(&self.lake, self.runtime.clone(), self.views).await?);
        *s = Some((Instant::now(), sql.clone()));
        Ok(sql)
    }
}

/// Binds an address, naming the config key in the error.
pub async fn bind(addr: &str, key: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|cause| Error::Bind {
        addr: addr.into(),
        key: key.into(),
        cause,
    })
}

/// Binds `serve.listen` for [`serve`], first refusing an address beyond loopback without a
/// token (so nothing listens there even for a moment); `key` names the setting in errors.
pub async fn bind_dashboard(cfg: &Config, key: &str) -> Result<TcpListener, Error> {
    if let Ok(addr) = cfg.serve.listen.parse() {
        auth::check_exposure(addr, cfg.serve.auth_token.as_ref().map(|t| t.expose()))?;
    }
    bind(&cfg.serve.listen, key).await
}

/// Serves the pages, APIs and `/metrics` on `listener` until `shutdown`, with a domain's pages
/// and views when one is given.
pub async fn serve(
    cfg: &Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    domain: Option<Domain>,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    auth::check_exposure(addr, cfg.serve.auth_token.as_ref().map(|t| t.expose()))?;
    let lake = Lake::open(&cfg.lake)?;
    let runtime = rtlake_query::bounded_runtime(cfg.serve.sql_memory_limit.0 as usize)?;
    let state = AppState {
        cfg: Arc::new(cfg.clone()),
        views: domain.as_ref().map_or(&[], |d| d.views),
        lake,
        live: live::Live::new(),
        cluster: rtlake_kafka::Cluster::connect(&cfg.kafka)?,
        bound: addr,
        session: Arc::default(),
        runtime,
        rates: Arc::default(),
    };
    let app = router(state, domain.as_ref(), shutdown.clone());
    tracing::info!(url = %format!("http://{addr}/"), "dashboard serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Serve)
}

/// What a domain adds to the server: its pages and APIs, their OpenAPI entries, and the views
/// its tables need in every SQL session.
#[derive(Clone, Copy)]
pub struct Domain {
    /// Builds the domain's routes (they include `/`, its home page) and starts whatever feeds
    /// them (publishing into [`AppState::live`]), which stops at the token.
    pub routes: fn(&AppState, CancellationToken) -> Router<AppState>,
    /// The routes' entries for `/api/openapi.json`'s `paths`.
    pub openapi: fn() -> Value,
    /// Built-in views, `(name, query)`, unless the lake holds a view of the same name.
    pub views: &'static [(&'static str, &'static str)],
}

/// Serves only `/metrics` (for `rtlake run` and `rtlake produce`) until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let app = Router::new().route("/metrics", get(metrics));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Serve)
}

/// Every route: the server's and the domain's.
pub fn router(state: AppState, domain: Option<&Domain>, shutdown: CancellationToken) -> Router {
    let (pages, paths) = match domain {
        Some(d) => ((d.routes)(&state, shutdown), (d.openapi)()),
        // Without a domain, the home page is the pipeline's.
        None => (
            Router::new().route(
                "/",
                get(|| async { axum::response::Redirect::to("/pipeline") }),
            ),
            json!({}),
        ),
    };
    let openapi = openapi_document(paths);
    Router::new()
        .merge(pages)
        .route("/pipeline", get(|| page(PIPELINE)))
        .route("/kafka", get(|| page(KAFKA)))
        .route("/assets/app.css", get(|| asset("text/css", APP_CSS)))
        .route(
            "/assets/common.js",
            get(|| asset("text/javascript", COMMON_JS)),
        )
        .route(
            "/assets/pipeline.js",
            get(|| asset("text/javascript", PIPELINE_JS)),
        )
        .route(
            "/assets/kafka.js",
            get(|| asset("text/javascript", KAFKA_JS)),
        )
        .route(auth::LIVE_PATH, get(live_stream))
        .route("/api/pipeline", get(pipeline_status))
        .route("/api/kafka", get(kafka_status))
        .route("/api/kafka/topics/{topic}/messages", get(peek))
        .route("/api/sql", post(sql_api::handle))
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc).into_response() }
            }),
        )
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check_host,
        ))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

const PIPELINE: &str = include_str!("../assets/pipeline.html");
const KAFKA: &str = include_str!("../assets/kafka.html");
const APP_CSS: &str = include_str!("../assets/app.css");
const COMMON_JS: &str = include_str!("../assets/common.js");
const PIPELINE_JS: &str = include_str!("../assets/pipeline.js");
const KAFKA_JS: &str = include_str!("../assets/kafka.js");
const OPENAPI: &str = include_str!("../assets/openapi.json");

/// The server's OpenAPI document with a domain's `paths` added.
fn openapi_document(paths: Value) -> String {
    let mut doc: Value = serde_json::from_str(OPENAPI).unwrap_or_else(|_| json!({}));
    if let (Some(all), Value::Object(more)) =
        (doc.get_mut("paths").and_then(Value::as_object_mut), paths)
    {
        all.extend(more);
    }
    doc.to_string()
}

/// An HTML page built into the binary.
pub async fn page(html: &'static str) -> Html<&'static str> {
    Html(html)
}

/// A script or style sheet built into the binary, asked for again on each load (`no-cache`) so
/// that a new binary's page never runs an old script.
pub async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn count_requests(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = &rtlake_core::metrics::global().serve;
    m.requests
        .with_label_values(&[&route, resp.status().as_str()])
        .inc();
    m.duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, rtlake_core::metrics::CONTENT_TYPE)],
        rtlake_core::metrics::render(),
    )
        .into_response()
}

async fn live_stream(State(s): State<AppState>) -> Response {
    let max = s.cfg.serve.live_max_clients;
    let Some(slot) = s.live.join(max) else {
        return sql_api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{max} pages follow the live stream already (serve.live-max-clients)"),
        );
    };
    let mut rx = s.live.updates.subscribe();
    let stream = async_stream(move |tx| async move {
        let _slot = slot;
        loop {
            // A page that left gives its slot back at once, not at the next burst.
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = tx.closed() => break,
            };
            match next {
                Ok(update) => {
                    let (event, text) = update.as_ref();
                    if tx
                        .send(Event::default().event(*event).data(text.as_str()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                // A slow page missed bursts: tell it to reload the full snapshot.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if tx
                        .send(Event::default().event("resync").data("{}"))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A stream fed by a task through a channel (ends when the task does or the client leaves).
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

async fn pipeline_status(State(s): State<AppState>) -> Response {
    match status::pipeline(&s).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => sql_api::error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn kafka_status(State(s): State<AppState>) -> Response {
    match status::kafka(&s).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => sql_api::error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(serde::Deserialize)]
struct PeekQuery {
    limit: Option<i64>,
}

async fn peek(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    Query(q): Query<PeekQuery>,
) -> Response {
    match s
        .cluster
        .peek(&topic, q.limit.unwrap_or(10).clamp(1, 100))
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => sql_api::error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// Record batches as the text of a JSON array of objects.
pub fn rows_json_text(
    batches: &[arrow::array::RecordBatch],
) -> Result<String, arrow::error::ArrowError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(if buf.is_empty() {
        "[]".into()
    } else {
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Record batches as a JSON array of objects.
pub fn rows_json(batches: &[arrow::array::RecordBatch]) -> Value {
    rows_json_text(batches)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Array(vec![]))
}
