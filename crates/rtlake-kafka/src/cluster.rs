//! [`Cluster`]: one handle on a Kafka cluster, kept for the life of whatever uses it (the engine,
//! the web server), asked for topics, partitions, watermarks and offsets. Its clients are made
//! once: a metadata client and an admin client (librdkafka connects lazily and reconnects by
//! itself), instead of a client per question.

use crate::config::KafkaConfig;
use crate::{Context, Error, Result, client};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long one question to the cluster may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

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

/// One handle on a cluster; cheap to clone (the clients are shared).
#[derive(Clone)]
pub struct Cluster(pub(crate) Arc<Inner>);

/// The clients are made on first use: each is a librdkafka instance with threads of its own,
/// and the admin client's drop waits out its polling thread's 100 ms poll. A run from a file
/// asked nothing of the cluster and still paid both at every start and exit (a tenth of a
/// second of `rtlake run`'s wall time, and of every `rtlake topics` call).
pub(crate) struct Inner {
    pub(crate) kafka: KafkaConfig,
    meta: OnceLock<BaseConsumer>,
    admin: OnceLock<AdminClient<DefaultClientContext>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({})", self.0.kafka.brokers)
    }
}

impl Cluster {
    /// A handle on the cluster of `kafka.brokers`. Nothing is sent yet: a cluster that is down
    /// shows in the first question's answer ([`Error::Unreachable`]).
    pub fn connect(kafka: &KafkaConfig) -> Result<Self> {
        Ok(Self(Arc::new(Inner {
            kafka: kafka.clone(),
            meta: OnceLock::new(),
            admin: OnceLock::new(),
        })))
    }

    /// The settings it was made with.
    pub fn config(&self) -> &KafkaConfig {
        &self.0.kafka
    }

    /// Runs `f` with the clients on a thread that may block (librdkafka's metadata calls do).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .unwrap_or_else(|e| {
                Err(Error::Topic {
                    topic: String::new(),
                    message: format!("internal: admin task failed: {e}"),
                })
            })
    }

    /// The partition ids of a topic, or [`Error::NoSuchTopic`].
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let topic = topic.to_string();
        self.blocking(move |c| {
            let md = c.metadata(Some(&topic))?;
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

    /// Low and high watermarks of every partition of a topic: `(partition, low, high)`. Asked
    /// again while a partition's leadership moves (a broker of the cluster went down), so that
    /// a run started then waits for the new leader instead of failing.
    pub async fn watermarks(&self, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
        let parts = self.partitions(topic).await?;
        let topic = topic.to_string();
        self.blocking(move |c| {
            parts
                .into_iter()
                .map(|p| {
                    let (lo, hi) = fetch_watermarks(c.meta()?, &topic, p)?;
                    Ok((p, lo, hi))
                })
                .collect()
        })
        .await
    }

    /// Per partition, the first offset whose timestamp is at or after `ms` (ms since the Unix
    /// epoch); -1 (the end) for a partition with no such message.
    pub async fn offsets_for_time(&self, topic: &str, ms: i64) -> Result<BTreeMap<i32, i64>> {
        let parts = self.partitions(topic).await?;
        let topic = topic.to_string();
        self.blocking(move |c| {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for p in &parts {
                tpl.add_partition_offset(&topic, *p, rdkafka::Offset::Offset(ms))
                    .context("offsets for time")?;
            }
            let found = c
                .meta()?
                .offsets_for_times(tpl, TIMEOUT)
                .context("offsets for time")?;
            Ok(found
                .elements_for_topic(&topic)
                .iter()
                .map(|e| {
                    let at = match e.offset() {
                        rdkafka::Offset::Offset(o) => o,
                        _ => -1,
                    };
                    (e.partition(), at)
                })
                .collect())
        })
        .await
    }

    /// Creates a topic; `Ok(false)` when it already existed.
    pub async fn create_topic(&self, spec: &TopicSpec) -> Result<bool> {
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions,
            TopicReplication::Fixed(spec.replication_factor),
        );
        for (k, v) in &spec.config {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        let admin = self.0.admin()?;
        // librdkafka drops its bootstrap broker handles once the metadata names the brokers;
        // a request queued on one then fails with DestroyBroker without reaching a broker (seen
        // once in CI against Apache Kafka). Asked again, it goes to a broker that stays; a topic
        // the first request did create answers "already exists".
        let mut attempt = 1;
        let results = loop {
            match admin.create_topics([&topic], &opts).await {
                Err(rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::DestroyBroker))
                    if attempt < 3 =>
                {
                    tracing::debug!(topic = %spec.name, attempt, "create topic: broker handle destroyed; asking again");
                    attempt += 1;
                }
                r => break r.context(format!("create topic {}", spec.name))?,
            }
        };
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
    pub async fn ensure_topic(&self, name: &str) -> Result<()> {
        match self.partitions(name).await {
            Ok(_) => return Ok(()),
            Err(Error::NoSuchTopic(_)) => {}
            Err(e) => return Err(e),
        }
        let kafka = self.config();
        let spec = TopicSpec {
            name: name.into(),
            partitions: kafka.partitions,
            replication_factor: kafka.replication_factor,
            config: vec![],
        };
        if self.create_topic(&spec).await? {
            tracing::info!(topic = name, partitions = kafka.partitions, "created topic");
        }
        // Metadata takes a moment to show a new topic; wait until it does.
        for _ in 0..50 {
            if self.partitions(name).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.partitions(name).await.map(|_| ())
    }
}

impl Inner {
    /// The client for metadata, watermarks and offsets.
    pub(crate) fn meta(&self) -> Result<&BaseConsumer> {
        lazy(&self.meta, || {
            client::base(&self.kafka)
                .create()
                .context("create metadata client")
        })
    }

    /// The client for topics and configs.
    pub(crate) fn admin(&self) -> Result<&AdminClient<DefaultClientContext>> {
        lazy(&self.admin, || {
            client::base(&self.kafka)
                .create()
                .context("create admin client")
        })
    }

    /// Fetches metadata, turning a timeout into [`Error::Unreachable`] with advice.
    pub(crate) fn metadata(&self, topic: Option<&str>) -> Result<rdkafka::metadata::Metadata> {
        self.meta()?
            .fetch_metadata(topic, TIMEOUT)
            .map_err(|e| Error::Unreachable {
                brokers: self.kafka.brokers.clone(),
                detail: e.to_string(),
            })
    }
}

/// The client in `cell`, made by `make` if there is none yet (of two made at once, one is kept).
fn lazy<T>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(c) = cell.get() {
        return Ok(c);
    }
    let made = make()?;
    Ok(cell.get_or_init(|| made))
}

/// One partition's watermarks, asked again (up to about 30 s) while its leader moves.
fn fetch_watermarks(meta: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64)> {
    let mut tries = 0u64;
    loop {
        match meta.fetch_watermarks(topic, partition, TIMEOUT) {
            Err(e) if client::leader_moving(&e) && tries < 12 => {
                tries += 1;
                tracing::debug!(error = %e, topic, partition, tries, "leader moving; asking again");
                std::thread::sleep(Duration::from_millis(400 * tries));
            }
            other => return other.context(format!("fetch watermarks of {topic}[{partition}]")),
        }
    }
}
