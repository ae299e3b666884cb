//! Prometheus metrics of every rtlake process (docs/architecture.md, "Observability").
//!
//! Names are `rtlake_<what>_<unit>[_total]` in base units; labels are bounded (pipeline, topic,
//! partition, table, reason, route). One process-wide registry; [`render`] gives the text
//! exposition format that `/metrics` serves.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// Latency buckets, seconds: 1 ms to 60 s.
const LATENCY: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
    30.0, 60.0,
];

/// `rtlake produce`.
pub struct ProduceMetrics {
    /// Events delivered to Kafka, by topic.
    pub events: IntCounterVec,
    /// Payload bytes delivered, by topic.
    pub bytes: IntCounterVec,
    /// Deliveries that failed, by topic.
    pub errors: IntCounterVec,
    /// Time from enqueue to the broker's acknowledgement, by topic.
    pub delivery_latency: HistogramVec,
    /// Polls of the source completed, by source.
    pub polls: IntCounterVec,
    /// Failed polls of the source (after retries), by source.
    pub poll_errors: IntCounterVec,
}

/// `rtlake run`.
pub struct RunMetrics {
    /// Messages read, by pipeline, topic and partition.
    pub events_in: IntCounterVec,
    /// Rows committed, by pipeline and output table (or `kafka:<topic>`).
    pub rows_out: IntCounterVec,
    /// Rows written to `_rejected`, by pipeline, refusing table and reason.
    pub rejected: IntCounterVec,
    /// Late events (also in `rejected` with reason `late`), by pipeline and table.
    pub late: IntCounterVec,
    /// Epochs committed, by pipeline.
    pub epochs: IntCounterVec,
    /// Wall time of an epoch from decode to the commit log, by pipeline.
    pub epoch_duration: HistogramVec,
    /// Wall time of one output's commit, by pipeline and table.
    pub commit_duration: HistogramVec,
    /// From a message's Kafka timestamp to its epoch's commit, by pipeline.
    pub event_to_lake: HistogramVec,
    /// Next offset committed to the lake, by pipeline, topic and partition.
    pub committed_offset: IntGaugeVec,
    /// The partition's high watermark as the consumer last saw it.
    pub high_watermark: IntGaugeVec,
    /// High watermark minus the next offset committed to the lake.
    pub consumer_lag: IntGaugeVec,
    /// Unix time of an output's last commit, by pipeline and table.
    pub last_commit: IntGaugeVec,
    /// The Kafka timestamp (Unix seconds) of the newest event an output's commits hold, by
    /// pipeline and table: set through [`RunMetrics::committed_through`].
    pub newest_event: GaugeVec,
    /// Now minus [`RunMetrics::newest_event`], seconds, computed at each [`render`]: how far
    /// behind the topic's newest arrivals the table is. It grows while nothing arrives.
    pub freshness: GaugeVec,
    /// The newest event per (pipeline, table), ms: what `freshness` is computed from.
    newest: Mutex<BTreeMap<(String, String), i64>>,
    /// Keys held in state (keys of keyed operators, windows), by pipeline and operator.
    pub state_keys: IntGaugeVec,
    /// Consumers torn down and started again by the worker's watchdog, by reason.
    pub consumer_restarts: IntCounterVec,
    /// Epochs that failed (and were retried from the lake's positions).
    pub epoch_failures: IntCounterVec,
    /// Kafka sinks that run at least once because the transaction probe failed for a reason
    /// other than "this cluster has no transactions" (a timeout, an authorization error), by
    /// pipeline, topic and reason.
    pub sink_downgrades: IntCounterVec,
}

/// `rtlake serve`.
pub struct ServeMetrics {
    /// HTTP requests, by route and status.
    pub requests: IntCounterVec,
    /// HTTP request duration, by route.
    pub duration: HistogramVec,
    /// Browsers connected to the live stream.
    pub live_clients: IntGauge,
    /// From an event's Kafka timestamp to its dispatch on the live stream.
    pub live_latency: HistogramVec,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// The producer's.
    pub produce: ProduceMetrics,
    /// The processor's.
    pub run: RunMetrics,
    /// The web server's.
    pub serve: ServeMetrics,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

fn float_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let m = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let m = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY.to_vec()),
        labels,
    )
    .expect("valid metric");
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let produce = ProduceMetrics {
            events: counter(
                &r,
                "rtlake_produce_events_total",
                "Events delivered to Kafka.",
                &["topic"],
            ),
            bytes: counter(
                &r,
                "rtlake_produce_bytes_total",
                "Payload bytes delivered to Kafka.",
                &["topic"],
            ),
            errors: counter(
                &r,
                "rtlake_produce_errors_total",
                "Deliveries that failed.",
                &["topic"],
            ),
            delivery_latency: histogram(
                &r,
                "rtlake_produce_delivery_latency_seconds",
                "Enqueue to broker acknowledgement.",
                &["topic"],
            ),
            polls: counter(
                &r,
                "rtlake_produce_polls_total",
                "Polls of the source completed.",
                &["source"],
            ),
            poll_errors: counter(
                &r,
                "rtlake_produce_poll_errors_total",
                "Polls of the source that failed after retries.",
                &["source"],
            ),
        };
        let p = &["pipeline"];
        let pt = &["pipeline", "table"];
        let ptp = &["pipeline", "topic", "partition"];
        let run = RunMetrics {
            events_in: counter(
                &r,
                "rtlake_run_events_in_total",
                "Messages read from the source.",
                ptp,
            ),
            rows_out: counter(
                &r,
                "rtlake_run_rows_out_total",
                "Rows committed to an output.",
                pt,
            ),
            rejected: counter(
                &r,
                "rtlake_run_rejected_total",
                "Rows written to _rejected.",
                &["pipeline", "table", "reason"],
            ),
            late: counter(
                &r,
                "rtlake_run_late_events_total",
                "Events below their partition's watermark.",
                pt,
            ),
            epochs: counter(&r, "rtlake_run_epochs_total", "Epochs committed.", p),
            epoch_duration: histogram(
                &r,
                "rtlake_run_epoch_duration_seconds",
                "Wall time of an epoch.",
                p,
            ),
            commit_duration: histogram(
                &r,
                "rtlake_run_commit_duration_seconds",
                "Wall time of one output's commit.",
                pt,
            ),
            event_to_lake: histogram(
                &r,
                "rtlake_run_event_to_lake_latency_seconds",
                "Kafka timestamp to the epoch's commit.",
                p,
            ),
            committed_offset: gauge(
                &r,
                "rtlake_run_committed_offset",
                "Next offset committed to the lake.",
                ptp,
            ),
            high_watermark: gauge(
                &r,
                "rtlake_run_high_watermark_offset",
                "The partition's high watermark as last seen.",
                ptp,
            ),
            consumer_lag: gauge(
                &r,
                "rtlake_run_consumer_lag_messages",
                "High watermark minus the next offset committed.",
                ptp,
            ),
            last_commit: gauge(
                &r,
                "rtlake_run_last_commit_timestamp_seconds",
                "Unix time of an output's last commit.",
                pt,
            ),
            newest_event: float_gauge(
                &r,
                "rtlake_run_newest_event_timestamp_seconds",
                "Kafka timestamp of the newest event the output's commits hold.",
                pt,
            ),
            freshness: float_gauge(
                &r,
                "rtlake_run_freshness_seconds",
                "Now minus the Kafka timestamp of the newest event the output's commits hold.",
                pt,
            ),
            newest: Mutex::default(),
            state_keys: gauge(
                &r,
                "rtlake_run_state_keys",
                "Keys held in operator state.",
                &["pipeline", "operator"],
            ),
            consumer_restarts: counter(
                &r,
                "rtlake_run_consumer_restarts_total",
                "Consumers restarted by the watchdog (stall, no partitions, errors, a failed epoch).",
                &["pipeline", "reason"],
            ),
            epoch_failures: counter(
                &r,
                "rtlake_run_epoch_failures_total",
                "Epochs that failed and were retried.",
                p,
            ),
            sink_downgrades: counter(
                &r,
                "rtlake_run_sink_downgrades_total",
                "Kafka sinks run at least once because the transaction probe failed unexpectedly.",
                &["pipeline", "topic", "reason"],
            ),
        };
        let live_clients = IntGauge::new(
            "rtlake_serve_live_clients",
            "Browsers connected to the live stream.",
        )
        .expect("valid metric");
        r.register(Box::new(live_clients.clone()))
            .expect("metric registered once");
        let serve = ServeMetrics {
            requests: counter(
                &r,
                "rtlake_serve_requests_total",
                "HTTP requests.",
                &["route", "status"],
            ),
            duration: histogram(
                &r,
                "rtlake_serve_request_duration_seconds",
                "HTTP request duration.",
                &["route"],
            ),
            live_clients,
            live_latency: histogram(
                &r,
                "rtlake_serve_live_latency_seconds",
                "Kafka timestamp to dispatch on the live stream.",
                &["topic"],
            ),
        };
        Self {
            registry: r,
            produce,
            run,
            serve,
        }
    }
}

impl RunMetrics {
    /// An output of `pipeline` committed events up to one whose Kafka timestamp is `newest_ms`.
    pub fn committed_through(&self, pipeline: &str, table: &str, newest_ms: i64) {
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        let at = newest
            .entry((pipeline.to_string(), table.to_string()))
            .or_insert(newest_ms);
        *at = (*at).max(newest_ms);
        self.newest_event
            .with_label_values(&[pipeline, table])
            .set(*at as f64 / 1000.0);
    }

    /// Sets every table's freshness as of `now_ms`.
    fn refresh_freshness(&self, now_ms: i64) {
        let newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        for ((pipeline, table), at) in newest.iter() {
            self.freshness
                .with_label_values(&[pipeline, table])
                .set((now_ms - at).max(0) as f64 / 1000.0);
        }
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Every metric in the Prometheus text exposition format.
pub fn render() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    global().run.refresh_freshness(now_ms);
    let mut buf = Vec::new();
    // Encoding into memory cannot fail for well-formed metrics.
    let _ = TextEncoder::new().encode(&global().registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention_and_render() {
        let m = global();
        m.run
            .rows_out
            .with_label_values(&["orders", "bronze.orders"])
            .inc_by(3);
        m.run
            .event_to_lake
            .with_label_values(&["orders"])
            .observe(0.2);
        let text = render();
        assert!(
            text.contains(
                "rtlake_run_rows_out_total{pipeline=\"orders\",table=\"bronze.orders\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rtlake_run_event_to_lake_latency_seconds_bucket{pipeline=\"orders\",le=\"0.25\"} 1"
            ),
            "{text}"
        );
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(name.starts_with("rtlake_"), "{name}");
        }
    }

    #[test]
    fn freshness_is_now_minus_the_newest_committed_event() {
        let m = &global().run;
        m.committed_through("fresh", "bronze.t", 10_000);
        // An older epoch (a partition behind the others) does not make the table look older.
        m.committed_through("fresh", "bronze.t", 9_000);
        m.refresh_freshness(10_250);
        let labels = ["fresh", "bronze.t"];
        assert_eq!(m.newest_event.with_label_values(&labels).get(), 10.0);
        assert_eq!(m.freshness.with_label_values(&labels).get(), 0.25);
        m.refresh_freshness(12_000);
        assert_eq!(m.freshness.with_label_values(&labels).get(), 2.0);
        assert!(
            render()
                .contains("rtlake_run_freshness_seconds{pipeline=\"fresh\",table=\"bronze.t\"}")
        );
    }
}
