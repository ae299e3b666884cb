//! What a run did: epochs, messages, rows per output, and the event-to-lake latency.

use std::collections::BTreeMap;

/// The event-to-lake latency's histogram counts milliseconds up to this; longer ones (a backlog
/// older than a minute) share its last bucket.
pub const LATENCY_CAP_MS: u64 = 60_000;

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Epochs committed.
    pub epochs: u64,
    /// Messages processed (including re-reads after a rebalance).
    pub messages: u64,
    /// Rows committed per output (`_rejected` included).
    pub rows: BTreeMap<String, u64>,
    /// Event-to-lake latency: from a message's Kafka timestamp to the end of its epoch's
    /// commits, counted per millisecond up to [`LATENCY_CAP_MS`] (the last bucket holds the rest).
    pub latency_ms: Vec<u64>,
}

impl RunReport {
    /// Rows committed to an output so far.
    pub fn rows_of(&self, output: &str) -> u64 {
        self.rows.get(output).copied().unwrap_or(0)
    }

    /// A quantile (0..=1) of the event-to-lake latency in ms, if any message had a timestamp;
    /// [`LATENCY_CAP_MS`] means that long or longer.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency_ms.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.latency_ms.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Some(ms as u64);
            }
        }
        None
    }

    /// Adds another report's counts (an epoch's, as it lands).
    pub(super) fn add(&mut self, other: RunReport) {
        self.epochs += other.epochs;
        self.messages += other.messages;
        for (output, rows) in other.rows {
            *self.rows.entry(output).or_default() += rows;
        }
        for (ms, n) in other.latency_ms.iter().enumerate() {
            if *n > 0 {
                if self.latency_ms.is_empty() {
                    self.latency_ms = vec![0; other.latency_ms.len()];
                }
                self.latency_ms[ms] += n;
            }
        }
    }

    pub(super) fn record_latency(&mut self, ms: i64) {
        const BUCKETS: usize = LATENCY_CAP_MS as usize + 1;
        if self.latency_ms.is_empty() {
            self.latency_ms = vec![0; BUCKETS];
        }
        self.latency_ms[(ms.max(0) as usize).min(BUCKETS - 1)] += 1;
    }
}
