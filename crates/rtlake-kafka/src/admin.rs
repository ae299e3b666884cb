//! Topic administration through the Kafka admin API, and what `topics describe` shows.

use crate::config::KafkaConfig;
use crate::{Context, Error, Result, client};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A topic to create.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    /// Its name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i32,
    /// Topic configs, e.g. `retention.ms`, `cleanup.policy`.
    pub config: Vec<(String, String)>,
}

fn admin(kafka: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>> {
    client::base(kafka).create().context("create admin client")
}

/// Creates a topic; `Ok(false)` when it already existed.
pub async fn create_topic(kafka: &KafkaConfig, spec: &TopicSpec) -> Result<bool> {
    let admin = admin(kafka)?;
    let mut topic = NewTopic::new(
        &spec.name,
        spec.partitions,
        TopicReplication::Fixed(spec.replication_factor),
    );
    for (k, v) in &spec.config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .context(format!("create topic {}", spec.name))?;
    // One topic asked for, one answer.
    match results.into_iter().next() {
        Some(Ok(_)) | None => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((name, code))) => Err(Error::Topic {
            topic: name,
            message: code.to_string(),
        }),
    }
}

/// Creates the topic with the configured partitions and replication unless it exists.
pub async fn ensure_topic(kafka: &KafkaConfig, name: &str) -> Result<()> {
    match topic_partitions(kafka, name).await {
        Ok(_) => return Ok(()),
        Err(Error::NoSuchTopic(_)) => {}
        Err(e) => return Err(e),
    }
    let spec = TopicSpec {
        name: name.into(),
        partitions: kafka.partitions,
        replication_factor: kafka.replication_factor,
        config: vec![],
    };
    if create_topic(kafka, &spec).await? {
        tracing::info!(topic = name, partitions = kafka.partitions, "created topic");
    }
    // Metadata takes a moment to show a new topic; wait until it does.
    for _ in 0..50 {
        if topic_partitions(kafka, name).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    topic_partitions(kafka, name).await.map(|_| ())
}

pub(crate) fn metadata_consumer(kafka: &KafkaConfig) -> Result<BaseConsumer> {
    client::base(kafka)
        .create()
        .context("create metadata client")
}

/// Fetches metadata, turning a timeout into [`Error::Unreachable`] with advice.
pub(crate) fn metadata(
    kafka: &KafkaConfig,
    c: &BaseConsumer,
    topic: Option<&str>,
) -> Result<rdkafka::metadata::Metadata> {
    c.fetch_metadata(topic, TIMEOUT)
        .map_err(|e| Error::Unreachable {
            brokers: kafka.brokers.clone(),
            detail: e.to_string(),
        })
}

/// The partition ids of a topic, or [`Error::NoSuchTopic`].
pub async fn topic_partitions(kafka: &KafkaConfig, topic: &str) -> Result<Vec<i32>> {
    let kafka = kafka.clone();
    let topic = topic.to_string();
    blocking(move || {
        let c = metadata_consumer(&kafka)?;
        let md = metadata(&kafka, &c, Some(&topic))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| Error::NoSuchTopic(topic.clone()))?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(Error::NoSuchTopic(topic.clone()));
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        Ok(ids)
    })
    .await
}

/// One line of `topics list`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TopicSummary {
    /// The topic.
    pub name: String,
    /// Its partition count.
    pub partitions: usize,
    /// Messages held: the sum over partitions of high minus low watermark.
    pub messages: i64,
}

/// Lists the cluster's topics (internal ones, starting with `__`, left out).
pub async fn list_topics(kafka: &KafkaConfig) -> Result<Vec<TopicSummary>> {
    let kafka = kafka.clone();
    blocking(move || {
        let c = metadata_consumer(&kafka)?;
        let md = metadata(&kafka, &c, None)?;
        let mut out = Vec::new();
        for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
            let mut messages = 0;
            for p in t.partitions() {
                let (lo, hi) = c
                    .fetch_watermarks(t.name(), p.id(), TIMEOUT)
                    .context("fetch watermarks")?;
                messages += hi - lo;
            }
            out.push(TopicSummary {
                name: t.name().into(),
                partitions: t.partitions().len(),
                messages,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await
}

/// A partition as `topics describe` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionInfo {
    /// Partition id.
    pub id: i32,
    /// Leader broker id.
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// Earliest offset still held.
    pub low: i64,
    /// Next offset to be written (the high watermark).
    pub high: i64,
}

/// A consumer group's position on one partition.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupLag {
    /// The group.
    pub group: String,
    /// Partition id.
    pub partition: i32,
    /// The group's committed offset, if any.
    pub committed: Option<i64>,
    /// High watermark minus committed offset (everything, when nothing is committed).
    pub lag: i64,
}

/// Everything `topics describe` shows about a topic.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TopicDescription {
    /// The topic.
    pub name: String,
    /// Its partitions with offsets.
    pub partitions: Vec<PartitionInfo>,
    /// Non-default topic configs (and retention/cleanup, always).
    pub config: Vec<(String, String)>,
    /// Consumer groups that have committed offsets on it, per partition.
    pub groups: Vec<GroupLag>,
    /// The members of those groups (when the cluster lists them).
    pub members: Vec<GroupMember>,
    /// Anything that could not be shown, and why.
    pub notes: Vec<String>,
}

static GROUP_LISTING_FAILED: AtomicBool = AtomicBool::new(false);

/// A member of a consumer group.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupMember {
    /// The group.
    pub group: String,
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its client id.
    pub client_id: String,
    /// Its host.
    pub host: String,
}

/// Describes a topic: partitions, offsets, config and the lag of every group that consumes it
/// (the groups the cluster lists, plus `groups`, which are checked even when listing fails).
pub async fn describe_topic(
    kafka: &KafkaConfig,
    topic: &str,
    groups: &[String],
) -> Result<TopicDescription> {
    let extra = groups.to_vec();
    let config = topic_config(kafka, topic).await.unwrap_or_default();
    let kafka = kafka.clone();
    let topic = topic.to_string();
    blocking(move || {
        let c = metadata_consumer(&kafka)?;
        let md = metadata(&kafka, &c, Some(&topic))?;
        let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| Error::NoSuchTopic(topic.clone()))?;
        if t.partitions().is_empty() {
            return Err(Error::NoSuchTopic(topic.clone()));
        }
        let mut partitions = Vec::new();
        for p in t.partitions() {
            let (low, high) = c.fetch_watermarks(&topic, p.id(), TIMEOUT).context("fetch watermarks")?;
            partitions.push(PartitionInfo { id: p.id(), leader: p.leader(), replicas: p.replicas().to_vec(), low, high });
        }
        partitions.sort_by_key(|p| p.id);
        let mut notes = Vec::new();
        let mut members = Vec::new();
        // A cluster that cannot list groups (tansu 0.6 could not) is not asked again by this process.
        let listing = if GROUP_LISTING_FAILED.load(Ordering::Relaxed) {
            Err("it failed earlier in this process".to_string())
        } else {
            c.fetch_group_list(None, TIMEOUT).map_err(|e| {
                GROUP_LISTING_FAILED.store(true, Ordering::Relaxed);
                e.to_string()
            })
        };
        let mut names: Vec<String> = match listing {
            Ok(list) => {
                for g in list.groups() {
                    for m in g.members() {
                        members.push(GroupMember { group: g.name().into(), member_id: m.id().into(), client_id: m.client_id().into(), host: m.client_host().into() });
                    }
                }
                list.groups().iter().map(|g| g.name().to_string()).collect()
            }
            Err(e) => {
                notes.push(format!("the cluster did not list its consumer groups and members ({e}); showing the named groups' lag"));
                Vec::new()
            }
        };
        names.extend(extra.iter().cloned());
        names.sort();
        names.dedup();
        let groups = group_lag(&kafka, &names, &extra, &topic, &partitions, &mut notes)?;
        members.retain(|m| groups.iter().any(|g| g.group == m.group));
        Ok(TopicDescription { name: topic, partitions, config, groups, members, notes })
    })
    .await
}

/// The committed offsets of every group in `names` on `topic`, with the lag of each partition.
/// A group the user `named` must answer; one the cluster only listed is reported in `notes`
/// when its coordinator cannot say (another team's group must not fail this description).
fn group_lag(
    kafka: &KafkaConfig,
    names: &[String],
    named: &[String],
    topic: &str,
    parts: &[PartitionInfo],
    notes: &mut Vec<String>,
) -> Result<Vec<GroupLag>> {
    let mut out = Vec::new();
    for name in names {
        // A consumer configured with the group's id reads its committed offsets without joining.
        let gc: BaseConsumer = client::consumer(kafka, name, "range")
            .create()
            .context("create group reader")?;
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            tpl.add_partition(topic, p.id);
        }
        let committed = client::committed_offsets(&gc, tpl, TIMEOUT);
        let committed = match committed {
            Ok(c) => c,
            Err(e) if !named.contains(name) => {
                notes.push(format!("the lag of group {name} is not known: {e}"));
                continue;
            }
            Err(e) => return Err(e).context(format!("committed offsets of group {name}")),
        };
        let mut any = false;
        let mut rows = Vec::new();
        for p in parts {
            let off = committed
                .find_partition(topic, p.id)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            any |= off.is_some();
            rows.push(GroupLag {
                group: name.clone(),
                partition: p.id,
                committed: off,
                lag: p.high - off.unwrap_or(p.low),
            });
        }
        if any {
            out.extend(rows);
        }
    }
    out.sort_by(|a, b| (&a.group, a.partition).cmp(&(&b.group, b.partition)));
    Ok(out)
}

/// The topic's configs that are set (not defaults), plus retention and cleanup policy.
pub async fn topic_config(kafka: &KafkaConfig, topic: &str) -> Result<Vec<(String, String)>> {
    let admin = admin(kafka)?;
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let res = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
        .context("describe configs")?;
    let mut out = Vec::new();
    for r in res {
        let r = r.map_err(|code| Error::Topic {
            topic: topic.into(),
            message: code.to_string(),
        })?;
        for e in r.entries {
            let always = matches!(
                e.name.as_str(),
                "retention.ms" | "retention.bytes" | "cleanup.policy"
            );
            if let Some(v) = e.value.filter(|_| always || !e.is_default) {
                out.push((e.name, v));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// High watermarks of every partition of a topic.
pub async fn high_watermarks(kafka: &KafkaConfig, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
    let kafka = kafka.clone();
    let topic = topic.to_string();
    let parts = topic_partitions(&kafka, &topic).await?;
    blocking(move || {
        let c = metadata_consumer(&kafka)?;
        parts
            .into_iter()
            .map(|p| {
                let (lo, hi) = c
                    .fetch_watermarks(&topic, p, TIMEOUT)
                    .context("fetch watermarks")?;
                Ok((p, lo, hi))
            })
            .collect()
    })
    .await
}

/// Per partition, the first offset whose timestamp is at or after `ms` (ms since the Unix
/// epoch); -1 (the end) for a partition with no such message.
pub async fn offsets_for_time(
    kafka: &KafkaConfig,
    topic: &str,
    ms: i64,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    let kafka = kafka.clone();
    let topic = topic.to_string();
    let parts = topic_partitions(&kafka, &topic).await?;
    blocking(move || {
        let c = metadata_consumer(&kafka)?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition_offset(&topic, *p, rdkafka::Offset::Offset(ms))
                .context("offsets for time")?;
        }
        let found = c
            .offsets_for_times(tpl, TIMEOUT)
            .context("offsets for time")?;
        Ok(found
            .elements_for_topic(&topic)
            .iter()
            .map(|e| {
                (
                    e.partition(),
                    match e.offset() {
                        rdkafka::Offset::Offset(o) => o,
                        _ => -1,
                    },
                )
            })
            .collect())
    })
    .await
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::Topic {
            topic: String::new(),
            message: format!("internal: admin task failed: {e}"),
        })
    })
}
