//! The live stream (`/api/live`, server-sent events): a hub that a domain's view publishes
//! bursts of updates into, and that every page following the stream reads, at most
//! `serve.live-max-clients` of them at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::broadcast;

/// One burst: the event's name (`stations`) and its JSON.
pub type Update = Arc<(&'static str, String)>;

/// The hub shared by the handlers and the publishers.
pub struct Live {
    /// Bursts of updates, as the pages receive them.
    pub updates: broadcast::Sender<Update>,
    /// Pages following the stream now.
    clients: AtomicUsize,
}

/// A page's place among the live stream's clients; given back when dropped.
pub struct ClientSlot(Arc<Live>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
        rtlake_core::metrics::global().serve.live_clients.dec();
    }
}

impl Live {
    /// A hub nobody follows yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            updates: broadcast::channel(256).0,
            clients: AtomicUsize::new(0),
        })
    }

    /// A place for one more page on the live stream, unless `max` pages follow it already.
    pub fn join(self: &Arc<Self>, max: usize) -> Option<ClientSlot> {
        let taken = self
            .clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        taken.ok().map(|_| {
            rtlake_core::metrics::global().serve.live_clients.inc();
            ClientSlot(self.clone())
        })
    }

    /// Sends a burst of updates from `topic` as event `event`: `body(now, oldest)` makes its
    /// JSON from the send time and the oldest of the updates' Kafka timestamps (ms), and each
    /// update's time from Kafka to here is observed (`rtlake_serve_live_latency_seconds`).
    pub fn publish(
        &self,
        topic: &str,
        event: &'static str,
        kafka_ts: &[i64],
        body: impl FnOnce(i64, Option<i64>) -> serde_json::Value,
    ) {
        let now = chrono::Utc::now().timestamp_millis();
        let latency = rtlake_core::metrics::global()
            .serve
            .live_latency
            .with_label_values(&[topic]);
        for ts in kafka_ts {
            latency.observe((now - ts).max(0) as f64 / 1000.0);
        }
        let oldest = kafka_ts.iter().min().copied();
        if let Ok(text) = serde_json::to_string(&body(now, oldest)) {
            let _ = self.updates.send(Arc::new((event, text)));
        }
    }
}
