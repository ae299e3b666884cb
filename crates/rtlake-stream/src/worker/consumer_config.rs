//! The worker's consumer properties: librdkafka's defaults that idled or bloated a drain.

use crate::config::PipelineConfig as Config;
use crate::config::Trigger;
use rtlake_kafka::config::KafkaConfig;

/// The consumer's librdkafka properties: the pipeline's, with the worker's defaults where the
/// pipeline sets none.
pub(super) fn consumer_config(cfg: &Config) -> KafkaConfig {
    let mut kafka = cfg.kafka.clone();
    // Statistics carry the high watermarks behind the lag gauges.
    kafka
        .properties
        .entry("statistics.interval.ms".into())
        .or_insert_with(|| "1000".into());
    // librdkafka stops fetching a partition whose local queue is past its thresholds and,
    // by default, waits a whole second (fetch.queue.backoff.ms = 1000) before asking again:
    // draining a backlog, the engine then sat idle two thirds of the time (119k events/s
    // instead of 227k on the 90-minute replay, from the embedded broker and from Apache
    // Kafka alike; bench/README.md, "Where the Kafka path's time went").
    kafka
        .properties
        .entry("fetch.queue.backoff.ms".into())
        .or_insert_with(|| "10".into());
    // librdkafka keeps fetching a partition until its local queue holds queued.min.messages
    // (100,000 by default): three partitions of the replay held ~90 MB before the worker
    // took them. The worker takes an epoch ahead itself (see `epoch`), so a fifth of that
    // per partition keeps the fetches going at the same drain speed with 50 MB less peak
    // memory (bench/README.md, "The Kafka path, second step").
    kafka
        .properties
        .entry("queued.min.messages".into())
        .or_insert_with(|| "20000".into());
    if cfg.run.trigger == Trigger::LowLatency {
        // Fetches answer at once when data is there; bound the wait when it is not.
        kafka
            .properties
            .entry("fetch.wait.max.ms".into())
            .or_insert_with(|| "50".into());
    }
    kafka
}
