//! `POST /api/sql`: read-only SQL over the lake, with a row limit and a timeout.
//!
//! One statement per request, and only queries: `SELECT`/`WITH`, `EXPLAIN` of a query, `SHOW`
//! and `DESCRIBE` ([`rtlake_query::read_only`]). Anything else (`DROP`, `INSERT`, `COPY`,
//! `CREATE`, `SELECT ... INTO`, ...) is refused with 400 before it reaches the engine, and the
//! planner refuses it again. Memory is bounded by `serve.sql-memory-limit`, time by
//! `serve.sql-timeout`. Answers are JSON, or an Arrow IPC stream when asked with
//! `Accept: application/vnd.apache.arrow.stream`.

use crate::AppState;
use arrow::array::RecordBatch;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rtlake_query::read_only;
use std::time::Instant;

/// The Arrow IPC stream media type.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The request body.
#[derive(serde::Deserialize)]
pub struct SqlRequest {
    /// The statement.
    pub sql: String,
    /// At most this many rows (capped by `serve.sql-row-limit`).
    pub limit: Option<usize>,
}

/// A JSON error answer.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// `POST /api/sql`.
pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req: SqlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body must be JSON like {{\"sql\": \"SELECT 1\"}}: {e}"),
            );
        }
    };
    if let Err(e) = read_only::check(&req.sql) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let cap = state.cfg.serve.sql_row_limit;
    let limit = req.limit.unwrap_or(cap).min(cap);
    let started = Instant::now();
    let timeout = state.cfg.serve.sql_timeout.get();
    let result = tokio::time::timeout(timeout, run(&state, &req.sql, limit)).await;
    let (batches, truncated) = match result {
        Err(_) => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the query ran longer than {} (serve.sql-timeout)",
                    state.cfg.serve.sql_timeout
                ),
            );
        }
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        Ok(Ok(r)) => r,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    if wants_arrow {
        return match arrow_ipc(&batches) {
            Ok(bytes) => ([(header::CONTENT_TYPE, ARROW_STREAM)], bytes).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    }
    match json(&batches, truncated, elapsed_ms) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Runs the query on a fresh view of the lake; at most `limit` rows, and whether more existed.
async fn run(
    state: &AppState,
    sql: &str,
    limit: usize,
) -> Result<(Vec<RecordBatch>, bool), String> {
    let session = state.session().await.map_err(|e| e.to_string())?;
    let df = session
        .context()
        .sql_with_options(sql, read_only::options())
        .await
        .map_err(|e| e.strip_backtrace())?;
    let df = df
        .limit(0, Some(limit + 1))
        .map_err(|e| e.strip_backtrace())?;
    let batches = df.collect().await.map_err(|e| e.strip_backtrace())?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if total <= limit {
        return Ok((batches, false));
    }
    let schema = batches.first().map(RecordBatch::schema).ok_or("no rows")?;
    let all = arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
    Ok((vec![all.slice(0, limit)], true))
}

fn arrow_ipc(batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(buf);
    };
    let mut w =
        arrow::ipc::writer::StreamWriter::try_new(&mut buf, &schema).map_err(|e| e.to_string())?;
    for b in batches {
        w.write(b).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(buf)
}

fn json(batches: &[RecordBatch], truncated: bool, elapsed_ms: u64) -> Result<String, String> {
    let columns: Vec<serde_json::Value> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect()
        })
        .unwrap_or_default();
    let rows = crate::rows_json_text(batches).map_err(|e| e.to_string())?;
    let count: usize = batches.iter().map(RecordBatch::num_rows).sum();
    Ok(format!(
        "{{\"columns\":{},\"rows\":{rows},\"row_count\":{count},\"truncated\":{truncated},\"elapsed_ms\":{elapsed_ms}}}",
        serde_json::Value::Array(columns)
    ))
}
