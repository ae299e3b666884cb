//! `rtlake bench consume`: how fast a cluster hands a topic over to a plain consumer.
//!
//! The consumer takes every partition directly (no group, so no rebalance in the figure) from
//! the earliest offset, and reads until it has every message the topic held at the start (or
//! `count` messages, for a topic still being written to). The figure is the broker's read
//! ceiling for rtlake's client settings (`fetch.queue.backoff.ms = 10`, as `rtlake run` sets it,
//! unless configured), without any processing.

use crate::cluster::Cluster;
use crate::{Context, Result, client};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// What a read took.
#[derive(Clone, Copy, Debug)]
pub struct ConsumeReport {
    /// Messages read.
    pub messages: u64,
    /// Key and value bytes read.
    pub bytes: u64,
    /// From the assignment to the last message.
    pub elapsed: Duration,
}

/// Reads `topic` from the start until the end it had at the start (or `count` messages).
pub async fn consume(cluster: &Cluster, topic: &str, count: Option<u64>) -> Result<ConsumeReport> {
    let marks = cluster.watermarks(topic).await?;
    let topic = topic.to_string();
    cluster
        .blocking(move |cl| {
            let mut c = client::base(&cl.kafka);
            // As `rtlake run` does: librdkafka's default (1000 ms) idles a consumer whose
            // queue filled, and the figure read 200,000 events/s where the cluster hands over
            // a million (bench/README.md, "The Kafka path, second step").
            if !cl.kafka.properties.contains_key("fetch.queue.backoff.ms") {
                c.set("fetch.queue.backoff.ms", "10");
            }
            c.set("group.id", "rtlake-bench")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false");
            let consumer: BaseConsumer = c.create().context("create bench consumer")?;
            let mut tpl = TopicPartitionList::new();
            for (p, _, _) in &marks {
                tpl.add_partition_offset(&topic, *p, Offset::Beginning)
                    .context("assign")?;
            }
            consumer.assign(&tpl).context("assign")?;
            let target: u64 = count.unwrap_or_else(|| {
                marks
                    .iter()
                    .map(|(_, lo, hi)| (hi - lo).max(0) as u64)
                    .sum()
            });
            let (mut messages, mut bytes) = (0u64, 0u64);
            let start = Instant::now();
            let mut idle = Instant::now();
            while messages < target {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        messages += 1;
                        bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                        idle = Instant::now();
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "bench consumer error"),
                    None if idle.elapsed() > Duration::from_secs(60) => {
                        return Err(crate::Error::Topic {
                            topic: topic.clone(),
                            message: format!("no message for 60 s after {messages} of {target}"),
                        });
                    }
                    None => {}
                }
            }
            Ok(ConsumeReport {
                messages,
                bytes,
                elapsed: start.elapsed(),
            })
        })
        .await
}
