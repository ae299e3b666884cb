//! The engine's own side of [`LogStorage`]: opening the logs, topic metadata and offsets.

use super::*;

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

    pub(super) fn topic_dir(&self, topic: &str) -> PathBuf {
        self.root.join(topic)
    }

    /// The topic's partition count and config, from SQLite (cached until the topic changes).
    pub(super) async fn topic(&self, name: &str) -> Result<Option<TopicInfo>> {
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
    pub(super) async fn log(&self, tp: &Topition) -> Result<(Shared, TopicInfo)> {
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
    pub(super) fn drop_topic(&self, name: &str) {
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

    pub(super) async fn topic_name(&self, topic: &TopicId) -> Result<Option<String>> {
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

    pub(super) async fn list_one(
        &self,
        tp: &Topition,
        what: ListOffset,
    ) -> Result<ListOffsetResponse> {
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
