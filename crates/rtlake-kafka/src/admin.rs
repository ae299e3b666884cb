//! What `topics list` and `topics describe` show: topics with their message counts, and a
//! topic's partitions, offsets, config and consumer groups with their lag.

use crate::cluster::{Cluster, TIMEOUT};
use crate::config::KafkaConfig;
use crate::{Context, Error, Result, client};
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::cluster::TopicSpec;

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

impl Cluster {
    /// Lists the cluster's topics (internal ones, starting with `__`, left out).
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        self.blocking(move |cl| {
            let c = cl.meta()?;
            let md = cl.metadata(None)?;
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

    /// Describes a topic: partitions, offsets, config and the lag of every group that consumes it
    /// (the groups the cluster lists, plus `groups`, which are checked even when listing fails).
    pub async fn describe_topic(&self, topic: &str, groups: &[String]) -> Result<TopicDescription> {
        let extra = groups.to_vec();
        let config = self.topic_config(topic).await.unwrap_or_default();
        let topic = topic.to_string();
        self.blocking(move |cl| {
            let c = cl.meta()?;
            let kafka = &cl.kafka;
            let md = cl.metadata(Some(&topic))?;
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
            let groups = group_lag(kafka, &names, &extra, &topic, &partitions, &mut notes)?;
            members.retain(|m| groups.iter().any(|g| g.group == m.group));
            Ok(TopicDescription { name: topic, partitions, config, groups, members, notes })
        })
        .await
    }

    /// The topic's configs that are set (not defaults), plus retention and cleanup policy.
    pub async fn topic_config(&self, topic: &str) -> Result<Vec<(String, String)>> {
        let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
        let res = self
            .0
            .admin()?
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
