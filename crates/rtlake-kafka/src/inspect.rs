//! What a Kafka UI shows beyond topics: the brokers, and a peek at a topic's newest messages.

use crate::cluster::{Cluster, TIMEOUT};
use crate::{Context, Result, client};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// A broker of the cluster.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BrokerInfo {
    /// Its id.
    pub id: i32,
    /// Host it advertises.
    pub host: String,
    /// Port it advertises.
    pub port: i32,
}

/// A message as peeked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeekedMessage {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp, ms since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Key as UTF-8 (lossy).
    pub key: Option<String>,
    /// Value as UTF-8 (lossy), cut at 4 KiB.
    pub value: Option<String>,
    /// Headers as UTF-8 (lossy).
    pub headers: Vec<(String, String)>,
}

impl Cluster {
    /// The brokers in the cluster's metadata.
    pub async fn brokers(&self) -> Result<Vec<BrokerInfo>> {
        self.blocking(move |cl| {
            let md = cl.metadata(None)?;
            Ok(md
                .brokers()
                .iter()
                .map(|b| BrokerInfo {
                    id: b.id(),
                    host: b.host().to_string(),
                    port: b.port(),
                })
                .collect())
        })
        .await
    }

    /// The newest `n` messages of each partition of `topic`, newest first overall.
    pub async fn peek(&self, topic: &str, n: i64) -> Result<Vec<PeekedMessage>> {
        let parts = self.watermarks(topic).await?;
        let topic = topic.to_string();
        self.blocking(move |cl| {
            let c: BaseConsumer = client::base(&cl.kafka)
                .set("group.id", "rtlake-peek")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false")
                .create()
                .context("create peek consumer")?;
            let mut tpl = TopicPartitionList::new();
            let mut left = std::collections::BTreeMap::new();
            for (p, lo, hi) in &parts {
                if hi > lo {
                    tpl.add_partition_offset(&topic, *p, Offset::Offset((*hi - n).max(*lo)))
                        .context("peek")?;
                    left.insert(*p, *hi);
                }
            }
            c.assign(&tpl).context("assign")?;
            let mut out = Vec::new();
            let t0 = Instant::now();
            while !left.is_empty() && t0.elapsed() < TIMEOUT {
                let Some(m) = c.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let m = m.context("peek")?;
                let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(4096)]).to_string();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_string(), x.value.map(text).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(PeekedMessage {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key().map(text),
                    value: m.payload().map(text),
                    headers,
                });
                if left
                    .get(&m.partition())
                    .is_some_and(|hi| m.offset() + 1 >= *hi)
                {
                    left.remove(&m.partition());
                }
            }
            out.sort_by_key(|m| std::cmp::Reverse((m.timestamp, m.offset)));
            Ok(out)
        })
        .await
    }
}
