//! [`LogStorage`]: nisshi's `Storage` over segment logs for records and SQLite for the rest.

use super::partition::{LogError, PartitionLog};
use async_trait::async_trait;
use nisshi_sans_io::describe_configs_response::DescribeConfigsResult;
use nisshi_sans_io::{
    ConfigResource, ErrorCode, IsolationLevel, ListOffset, ScramMechanism,
    create_topics_request::CreatableTopic,
    delete_groups_response::DeletableGroupResult,
    delete_records_request::DeleteRecordsTopic,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    describe_cluster_response::DescribeClusterBroker,
    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic,
    fetch_response::AbortedTransaction,
    incremental_alter_configs_request::AlterConfigsResource,
    incremental_alter_configs_response::AlterConfigsResourceResponse,
    record::deflated,
    txn_offset_commit_response::TxnOffsetCommitResponseTopic,
};
use nisshi_storage::{
    ArcDynStorage, BrokerRegistrationRequest, DELETE_RECORDS_INVALID_LOW_WATERMARK, Error,
    GroupDetail, ListOffsetResponse, MetadataResponse, NamedGroupDetail, OffsetCommitRequest,
    OffsetStage, ProducerIdResponse, Result, ScramCredential, Storage, TopicId, Topition,
    TxnAddPartitionsRequest, TxnAddPartitionsResponse, TxnOffsetCommitRequest, UpdateError,
    Version, delete_records_cutoff, max_message_bytes,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use url::Url;
use uuid::Uuid;

/// Kafka's default segment size.
const SEGMENT_BYTES: u64 = 1 << 30;
/// Kafka's default retention: 7 days.
const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// What the engine needs of a topic's metadata and config.
#[derive(Clone, Debug)]
struct TopicInfo {
    partitions: i32,
    retention_ms: i64,
    retention_bytes: i64,
    segment_bytes: u64,
    max_message_bytes: Option<String>,
}

type Shared = Arc<Mutex<PartitionLog>>;

/// The embedded broker's storage: segment logs under `<data>/topics/<topic>/<partition>/`,
/// and nisshi's SQLite engine for metadata, groups and offsets.
#[derive(Clone)]
pub struct LogStorage {
    inner: ArcDynStorage,
    root: PathBuf,
    logs: Arc<Mutex<HashMap<Topition, Shared>>>,
    topics: Arc<Mutex<HashMap<String, TopicInfo>>>,
}

impl std::fmt::Debug for LogStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStorage")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn storage_error(e: LogError) -> Error {
    match e {
        LogError::Io { path, cause } => {
            tracing::error!(path = %path.display(), error = %cause, "broker log I/O failed");
            Error::Io(Arc::new(std::io::Error::new(
                cause.kind(),
                format!("{}: {cause}", path.display()),
            )))
        }
        LogError::OutOfOrder { .. } => Error::Api(ErrorCode::OutOfOrderSequenceNumber),
        LogError::Fenced { .. } => Error::Api(ErrorCode::InvalidProducerEpoch),
        LogError::OutOfRange(_) => Error::Api(ErrorCode::OffsetOutOfRange),
    }
}

impl LogStorage {
    /// The engine over `inner` (nisshi's SQLite engine) with segment logs under `dir`. Logs
    /// already there are opened (and recovered) now.
    pub fn open(inner: ArcDynStorage, dir: &Path) -> std::io::Result<Self> {
        let root = dir.join("topics");
        std::fs::create_dir_all(&root)?;
        let mut logs = HashMap::new();
        for topic in std::fs::read_dir(&root)?.flatten() {
            let Some(name) = topic.file_name().to_str().map(String::from) else {
                continue;
            };
            for part in std::fs::read_dir(topic.path())?.flatten() {
                let Some(p) = part
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                else {
                    continue;
                };
                let log = PartitionLog::open(&part.path())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                logs.insert(Topition::new(name.clone(), p), Arc::new(Mutex::new(log)));
            }
        }
        tracing::debug!(partitions = logs.len(), root = %root.display(), "broker logs opened");
        Ok(Self {
            inner,
            root,
            logs: Arc::new(Mutex::new(logs)),
            topics: Arc::default(),
        })
    }

    fn topic_dir(&self, topic: &str) -> PathBuf {
        self.root.join(topic)
    }

    /// The topic's partition count and config, from SQLite (cached until the topic changes).
    async fn topic(&self, name: &str) -> Result<Option<TopicInfo>> {
        if let Some(t) = lock(&self.topics).get(name) {
            return Ok(Some(t.clone()));
        }
        let meta = self
            .inner
            .metadata(Some(&[TopicId::Name(name.to_string())]))
            .await?;
        let Some(partitions) = meta
            .topics()
            .iter()
            .find(|t| t.name.as_deref() == Some(name) && t.error_code == i16::from(ErrorCode::None))
            .map(|t| t.partitions.as_ref().map_or(0, |p| p.len() as i32))
        else {
            return Ok(None);
        };
        let configs = self
            .inner
            .describe_config(name, ConfigResource::Topic, None)
            .await?;
        let get = |key: &str| {
            configs
                .configs
                .as_ref()
                .and_then(|c| c.iter().find(|c| c.name == key))
                .and_then(|c| c.value.clone())
        };
        let num = |key: &str, default: i64| {
            get(key)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        let info = TopicInfo {
            partitions,
            retention_ms: num("retention.ms", RETENTION_MS),
            retention_bytes: num("retention.bytes", -1),
            segment_bytes: u64::try_from(num("segment.bytes", SEGMENT_BYTES as i64))
                .unwrap_or(SEGMENT_BYTES)
                .max(1 << 14),
            max_message_bytes: get("max.message.bytes"),
        };
        lock(&self.topics).insert(name.to_string(), info.clone());
        Ok(Some(info))
    }

    /// The partition's log, opened on first use; `UNKNOWN_TOPIC_OR_PARTITION` if the topic or
    /// partition does not exist.
    async fn log(&self, tp: &Topition) -> Result<(Shared, TopicInfo)> {
        let info = self
            .topic(tp.topic())
            .await?
            .ok_or(Error::Api(ErrorCode::UnknownTopicOrPartition))?;
        if tp.partition() < 0 || tp.partition() >= info.partitions {
            return Err(Error::Api(ErrorCode::UnknownTopicOrPartition));
        }
        if let Some(l) = lock(&self.logs).get(tp) {
            return Ok((l.clone(), info));
        }
        let dir = self.topic_dir(tp.topic()).join(tp.partition().to_string());
        let opened = PartitionLog::open(&dir).map_err(storage_error)?;
        let shared = lock(&self.logs)
            .entry(tp.clone())
            .or_insert_with(|| Arc::new(Mutex::new(opened)))
            .clone();
        Ok((shared, info))
    }

    /// Forgets a topic's logs and deletes their files (a topic deleted or created anew).
    fn drop_topic(&self, name: &str) {
        lock(&self.topics).remove(name);
        lock(&self.logs).retain(|tp, _| tp.topic() != name);
        let dir = self.topic_dir(name);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(topic = name, error = %e, "could not delete the topic's log files");
        }
    }

    /// Forces every partition written since the last call to disk.
    pub fn sync(&self) {
        let logs: Vec<Shared> = lock(&self.logs).values().cloned().collect();
        for l in logs {
            if let Err(e) = lock(&l).sync() {
                tracing::error!(error = %e, "fsync of a broker log failed");
            }
        }
    }

    async fn topic_name(&self, topic: &TopicId) -> Result<Option<String>> {
        match topic {
            TopicId::Name(n) => Ok(Some(n.clone())),
            TopicId::Id(_) => {
                let meta = self
                    .inner
                    .metadata(Some(std::slice::from_ref(topic)))
                    .await?;
                Ok(meta.topics().first().and_then(|t| t.name.clone()))
            }
        }
    }

    async fn list_one(&self, tp: &Topition, what: ListOffset) -> Result<ListOffsetResponse> {
        let (log, _) = match self.log(tp).await {
            Ok(l) => l,
            Err(Error::Api(code)) => {
                return Ok(ListOffsetResponse {
                    error_code: code,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e),
        };
        let (start, hw, plan) = {
            let l = lock(&log);
            let plan = match what {
                ListOffset::Timestamp(t) => {
                    let ms = t
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    l.batch_at_time(ms).map(|p| (p, ms))
                }
                _ => None,
            };
            (l.log_start(), l.high_watermark(), plan)
        };
        let offset = match what {
            ListOffset::Earliest => Some(start),
            ListOffset::Latest => Some(hw),
            ListOffset::Timestamp(_) => {
                let Some((plan, ms)) = plan else {
                    return Ok(ListOffsetResponse::default());
                };
                let batch = plan.read().map_err(storage_error)?.into_iter().next();
                let Some(batch) = batch else {
                    return Ok(ListOffsetResponse::default());
                };
                let inflated = nisshi_storage::inflate(batch).await?;
                let found = inflated
                    .records
                    .iter()
                    .map(|r| {
                        (
                            inflated.base_offset + i64::from(r.offset_delta),
                            inflated.record_timestamp(r),
                        )
                    })
                    .find(|(o, ts)| *ts >= ms && *o >= start);
                let Some((o, ts)) = found else {
                    return Ok(ListOffsetResponse::default());
                };
                return Ok(ListOffsetResponse {
                    error_code: ErrorCode::None,
                    timestamp: Some(
                        SystemTime::UNIX_EPOCH + Duration::from_millis(ts.max(0) as u64),
                    ),
                    offset: Some(o),
                });
            }
        };
        Ok(ListOffsetResponse {
            error_code: ErrorCode::None,
            timestamp: None,
            offset,
        })
    }
}

#[async_trait]
impl Storage for LogStorage {
    async fn register_broker(&self, r: BrokerRegistrationRequest) -> Result<()> {
        self.inner.register_broker(r).await
    }

    async fn create_topic(&self, topic: CreatableTopic, validate_only: bool) -> Result<Uuid> {
        let name = topic.name.clone();
        let id = self.inner.create_topic(topic, validate_only).await?;
        // Leftovers of an earlier topic of that name must not become the new one's records.
        self.drop_topic(&name);
        Ok(id)
    }

    async fn incremental_alter_resource(
        &self,
        resource: AlterConfigsResource,
    ) -> Result<AlterConfigsResourceResponse> {
        let name = resource.resource_name.clone();
        let r = self.inner.incremental_alter_resource(resource).await;
        lock(&self.topics).remove(&name);
        r
    }

    async fn delete_records(
        &self,
        topics: &[DeleteRecordsTopic],
    ) -> Result<Vec<DeleteRecordsTopicResult>> {
        let mut out = Vec::new();
        for topic in topics {
            let mut results = Vec::new();
            for p in topic.partitions.iter().flatten() {
                let tp = Topition::new(topic.name.as_str(), p.partition_index);
                let (code, low) = match self.log(&tp).await {
                    Err(Error::Api(code)) => (code, DELETE_RECORDS_INVALID_LOW_WATERMARK),
                    Err(e) => return Err(e),
                    Ok((log, _)) => {
                        let mut l = lock(&log);
                        let stage = OffsetStage {
                            last_stable: l.high_watermark(),
                            high_watermark: l.high_watermark(),
                            log_start: l.log_start(),
                        };
                        match delete_records_cutoff(p.offset, &stage) {
                            Err(code) => (code, DELETE_RECORDS_INVALID_LOW_WATERMARK),
                            Ok(cut) => {
                                l.truncate_before(cut).map_err(storage_error)?;
                                (ErrorCode::None, l.log_start())
                            }
                        }
                    }
                };
                results.push(
                    DeleteRecordsPartitionResult::default()
                        .partition_index(p.partition_index)
                        .low_watermark(low)
                        .error_code(code.into()),
                );
            }
            out.push(
                DeleteRecordsTopicResult::default()
                    .name(topic.name.clone())
                    .partitions(Some(results)),
            );
        }
        Ok(out)
    }

    async fn delete_topic(&self, topic: &TopicId) -> Result<ErrorCode> {
        let name = self.topic_name(topic).await?;
        let code = self.inner.delete_topic(topic).await?;
        if code == ErrorCode::None
            && let Some(n) = name
        {
            self.drop_topic(&n);
        }
        Ok(code)
    }

    async fn brokers(&self) -> Result<Vec<DescribeClusterBroker>> {
        self.inner.brokers().await
    }

    async fn produce(
        &self,
        transaction_id: Option<&str>,
        tp: &Topition,
        batch: deflated::Batch,
    ) -> Result<i64> {
        if transaction_id.is_some() || batch.is_transactional() || batch.is_control() {
            return Err(Error::Api(ErrorCode::TransactionalIdAuthorizationFailed));
        }
        if batch.magic != 2 {
            return Err(Error::Api(ErrorCode::UnsupportedForMessageFormat));
        }
        if batch.computed_crc() != batch.crc {
            return Err(Error::Api(ErrorCode::CorruptMessage));
        }
        let (log, info) = self.log(tp).await?;
        max_message_bytes::ensure_batch_fits(
            &batch,
            max_message_bytes::limit(tp.topic(), info.max_message_bytes.as_deref()),
        )?;
        let base = lock(&log).append(batch, info.segment_bytes);
        base.map_err(storage_error)
    }

    async fn fetch(
        &self,
        tp: &'_ Topition,
        offset: i64,
        _min_bytes: u32,
        max_bytes: u32,
        _isolation: IsolationLevel,
        _max_wait: Duration,
    ) -> Result<Vec<deflated::Batch>> {
        let (log, _) = self.log(tp).await?;
        let plan = lock(&log).plan(offset, max_bytes).map_err(storage_error)?;
        match plan {
            None => Ok(Vec::new()),
            Some(p) => p.read().map_err(storage_error),
        }
    }

    async fn offset_stage(&self, tp: &Topition) -> Result<OffsetStage> {
        let (log, _) = self.log(tp).await?;
        let l = lock(&log);
        Ok(OffsetStage {
            last_stable: l.high_watermark(),
            high_watermark: l.high_watermark(),
            log_start: l.log_start(),
        })
    }

    async fn list_offsets(
        &self,
        _isolation: IsolationLevel,
        offsets: &[(Topition, ListOffset)],
    ) -> Result<Vec<(Topition, ListOffsetResponse)>> {
        let mut out = Vec::with_capacity(offsets.len());
        for (tp, what) in offsets {
            out.push((tp.clone(), self.list_one(tp, *what).await?));
        }
        Ok(out)
    }

    async fn offset_commit(
        &self,
        group_id: &str,
        retention: Option<Duration>,
        offsets: &[(Topition, OffsetCommitRequest)],
    ) -> Result<Vec<(Topition, ErrorCode)>> {
        self.inner.offset_commit(group_id, retention, offsets).await
    }

    async fn offset_fetch(
        &self,
        group_id: Option<&str>,
        topics: &[Topition],
        require_stable: Option<bool>,
    ) -> Result<BTreeMap<Topition, i64>> {
        self.inner
            .offset_fetch(group_id, topics, require_stable)
            .await
    }

    async fn committed_offset_topitions(&self, group_id: &str) -> Result<BTreeMap<Topition, i64>> {
        self.inner.committed_offset_topitions(group_id).await
    }

    async fn metadata(&self, topics: Option<&[TopicId]>) -> Result<MetadataResponse> {
        self.inner.metadata(topics).await
    }

    async fn upsert_user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    ) -> Result<()> {
        self.inner
            .upsert_user_scram_credential(user, mechanism, credential)
            .await
    }

    async fn delete_user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<()> {
        self.inner
            .delete_user_scram_credential(user, mechanism)
            .await
    }

    async fn user_scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredential>> {
        self.inner.user_scram_credential(user, mechanism).await
    }

    async fn describe_config(
        &self,
        name: &str,
        resource: ConfigResource,
        keys: Option<&[String]>,
    ) -> Result<DescribeConfigsResult> {
        self.inner.describe_config(name, resource, keys).await
    }

    async fn list_groups(&self) -> Result<Vec<NamedGroupDetail>> {
        self.inner.list_groups().await
    }

    async fn delete_groups(
        &self,
        group_ids: Option<&[String]>,
    ) -> Result<Vec<DeletableGroupResult>> {
        self.inner.delete_groups(group_ids).await
    }

    async fn describe_groups(
        &self,
        group_ids: Option<&[String]>,
        include_authorized_operations: bool,
    ) -> Result<Vec<NamedGroupDetail>> {
        self.inner
            .describe_groups(group_ids, include_authorized_operations)
            .await
    }

    async fn describe_topic_partitions(
        &self,
        topics: Option<&[TopicId]>,
        partition_limit: i32,
        cursor: Option<Topition>,
    ) -> Result<Vec<DescribeTopicPartitionsResponseTopic>> {
        self.inner
            .describe_topic_partitions(topics, partition_limit, cursor)
            .await
    }

    async fn group_with_version(&self, group_id: &str) -> Result<Option<(GroupDetail, Version)>> {
        self.inner.group_with_version(group_id).await
    }

    async fn update_group(
        &self,
        group_id: &str,
        detail: GroupDetail,
        version: Option<Version>,
    ) -> Result<Version, UpdateError<GroupDetail>> {
        self.inner.update_group(group_id, detail, version).await
    }

    async fn init_producer(
        &self,
        transaction_id: Option<&str>,
        transaction_timeout_ms: i32,
        producer_id: Option<i64>,
        producer_epoch: Option<i16>,
    ) -> Result<ProducerIdResponse> {
        self.inner
            .init_producer(
                transaction_id,
                transaction_timeout_ms,
                producer_id,
                producer_epoch,
            )
            .await
    }

    async fn txn_add_offsets(
        &self,
        transaction_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
    ) -> Result<ErrorCode> {
        self.inner
            .txn_add_offsets(transaction_id, producer_id, producer_epoch, group_id)
            .await
    }

    async fn txn_add_partitions(
        &self,
        partitions: TxnAddPartitionsRequest,
    ) -> Result<TxnAddPartitionsResponse> {
        self.inner.txn_add_partitions(partitions).await
    }

    async fn txn_offset_commit(
        &self,
        offsets: TxnOffsetCommitRequest,
    ) -> Result<Vec<TxnOffsetCommitResponseTopic>> {
        self.inner.txn_offset_commit(offsets).await
    }

    async fn txn_end(
        &self,
        transaction_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        committed: bool,
    ) -> Result<ErrorCode> {
        self.inner
            .txn_end(transaction_id, producer_id, producer_epoch, committed)
            .await
    }

    async fn maintain(&self, now: SystemTime) -> Result<()> {
        self.inner.maintain(now).await?;
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let logs: Vec<(Topition, Shared)> = lock(&self.logs)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (tp, log) in logs {
            let Some(info) = self.topic(tp.topic()).await? else {
                continue;
            };
            let gone = lock(&log)
                .apply_retention(now_ms, info.retention_ms, info.retention_bytes)
                .map_err(storage_error)?;
            if gone > 0 {
                tracing::info!(
                    topic = tp.topic(),
                    partition = tp.partition(),
                    offsets = gone,
                    "retention deleted old segments"
                );
            }
        }
        Ok(())
    }

    async fn maintain_transactions(&self, now: SystemTime) -> Result<()> {
        self.inner.maintain_transactions(now).await
    }

    async fn aborted_transactions(
        &self,
        _tp: &Topition,
        _offset: i64,
        _last_stable: i64,
    ) -> Result<Vec<AbortedTransaction>> {
        Ok(Vec::new())
    }

    async fn cluster_id(&self) -> Result<String> {
        self.inner.cluster_id().await
    }

    async fn node(&self) -> Result<i32> {
        self.inner.node().await
    }

    async fn advertised_listener(&self) -> Result<Url> {
        self.inner.advertised_listener().await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}
