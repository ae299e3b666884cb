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
    // How long the broker holds a fetch that finds no data. librdkafka has one fetch in flight
    // per broker, and leaves out the partitions whose local queue is full: when the partition
    // in a fetch has reached its end while the others wait to be taken, the broker holds that
    // fetch for the whole wait, and the others, taken meanwhile, are not asked for until it
    // returns. With librdkafka's 500 ms, drains of the 90-minute replay stalled 0.35-0.5 s in
    // two runs of eleven (bench/README.md, "The Kafka path, seventeenth step"). Low latency
    // answers at once when data is there and bounds the wait when it is not; a drain waits
    // least; a continuous run keeps an idle fetch at ten a second per broker.
    let wait = match cfg.run.trigger {
        Trigger::LowLatency => "50",
        Trigger::AvailableNow => "20",
        Trigger::ProcessingTime => "100",
    };
    kafka
        .properties
        .entry("fetch.wait.max.ms".into())
        .or_insert_with(|| wait.into());
    kafka
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(trigger: Trigger, set: Option<&str>) -> String {
        let mut cfg = Config::default();
        cfg.run.trigger = trigger;
        if let Some(v) = set {
            cfg.kafka
                .properties
                .insert("fetch.wait.max.ms".into(), v.into());
        }
        consumer_config(&cfg).properties["fetch.wait.max.ms"].clone()
    }

    #[test]
    fn an_empty_fetch_is_held_briefly_unless_the_user_says_otherwise() {
        assert_eq!(wait(Trigger::AvailableNow, None), "20");
        assert_eq!(wait(Trigger::LowLatency, None), "50");
        assert_eq!(wait(Trigger::ProcessingTime, None), "100");
        assert_eq!(wait(Trigger::AvailableNow, Some("500")), "500");
    }
}
