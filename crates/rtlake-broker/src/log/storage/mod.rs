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

mod topics;

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
