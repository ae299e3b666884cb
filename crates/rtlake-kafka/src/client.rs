//! Client configurations built from rtlake's typed config.

use crate::config::{Acks, KafkaConfig, ProducerConfig};
use rdkafka::ClientConfig;

/// The settings every client shares: bootstrap servers, a short reconnect backoff, and the
/// user's extra properties (which override anything set here).
pub fn base(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    // librdkafka logs connection errors itself; route them through the log crate quietly.
    c.set("log_level", "3");
    // librdkafka backs off up to 10 s between attempts to reach a broker that went away, so a
    // broker back after 2 s was reached only 8-12 s later (measured: tests/recovery/chaos.rs,
    // broker SIGKILL). One second at most: a dead broker costs a refused connection a second.
    c.set("reconnect.backoff.max.ms", "1000");
    // librdkafka opens its first connection to any broker at most once per half of
    // `reconnect.backoff.ms` (its sparse-connection interval), and a client's first connection
    // is to the bootstrap address, which it drops once the metadata names the brokers: the
    // connection to the broker itself then waited out the rest of that interval, 50 ms at the
    // default, in every new client (a run from a topic reached its first message 20-60 ms
    // later; bench/README.md, "The Kafka path, sixteenth step"). At 20 ms the interval is 11.
    c.set("reconnect.backoff.ms", "20");
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// A producer configuration: acks, idempotence, linger, batching, compression, in-flight limit.
pub fn producer(kafka: &KafkaConfig, p: &ProducerConfig) -> ClientConfig {
    let mut c = base(kafka);
    c.set(
        "acks",
        match p.acks {
            Acks::All => "all",
            Acks::One => "1",
            Acks::Zero => "0",
        },
    )
    .set("enable.idempotence", p.idempotence.to_string())
    .set("linger.ms", p.linger.get().as_millis().to_string())
    .set("batch.size", p.batch_size.0.to_string())
    .set("compression.type", p.compression.as_str())
    .set(
        "max.in.flight.requests.per.connection",
        p.max_in_flight.to_string(),
    )
    .set(
        "delivery.timeout.ms",
        p.delivery_timeout.get().as_millis().to_string(),
    )
    // Keep the default queue large enough for a whole poll of a scaled replay.
    .set("queue.buffering.max.messages", "1000000")
    .set("queue.buffering.max.kbytes", "1048576");
    c
}

/// Connects a new producer to a broker now, on a thread of its own, by asking for `topic`'s
/// metadata; the caller goes on at once.
///
/// An idempotent producer asks for its producer id at once and then every 500 ms until a broker
/// is up, but opens no connection for it (librdkafka connects sparsely): without one, the id
/// came a second after the producer's creation, and the first sends waited for it (the Kafka
/// sink's first epoch landed in 600 ms instead of 90 in two of five drains; bench/README.md,
/// "The Kafka path, eleventh step"). With a connection the id comes at the first retry. A
/// failure here is only logged: the producer keeps trying on its own, and its sends report.
pub fn connect_early<P, C>(producer: &P, topic: &str)
where
    P: rdkafka::producer::Producer<C> + Clone + Send + 'static,
    C: rdkafka::producer::ProducerContext,
{
    let producer = producer.clone();
    let topic = topic.to_string();
    std::thread::spawn(move || {
        if let Err(e) = producer
            .client()
            .fetch_metadata(Some(&topic), std::time::Duration::from_secs(10))
        {
            tracing::debug!(error = %e, %topic, "a producer's first connection failed (it retries on its own)");
        }
    });
}

/// `init_transactions` of a new transactional producer, without librdkafka's half-second wait.
///
/// A transactional producer asks for its transaction coordinator only through a broker that is
/// up; a new client has none yet (it connects sparsely), and then asks again on a 500 ms timer,
/// or when a metadata response arrives. The Kafka sink's producers, one per input partition,
/// each waited out that timer at the start of a run (debug log: "No brokers available for
/// Transactions", then "Coordinator query timer" 500 ms later; the default pipeline from Apache
/// Kafka started its first epoch a second late; bench/README.md, "The Kafka path, eighteenth
/// step"). Here a thread asks for `topic`'s metadata every 10 ms while the call waits, so the
/// first broker to answer serves the coordinator query at once.
pub fn init_transactions_promptly<P, C>(
    producer: &P,
    topic: &str,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<()>
where
    P: rdkafka::producer::Producer<C> + Clone + Send + 'static,
    C: rdkafka::producer::ProducerContext,
{
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let kicker = {
        let (producer, topic, done) = (producer.clone(), topic.to_string(), done.clone());
        move || {
            while !done.load(Ordering::Relaxed) {
                // An error only means no answer yet: the loop, or librdkafka's timer, goes on.
                let _ = producer
                    .client()
                    .fetch_metadata(Some(&topic), std::time::Duration::from_millis(500));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("txn-init-kick".into())
        .spawn(kicker)
    {
        tracing::debug!(error = %e, "no thread to hasten init_transactions; librdkafka's timer serves");
    }
    let result = producer.init_transactions(timeout);
    done.store(true, Ordering::Relaxed);
    result
}

/// A consumer configuration for a group; offsets are never auto-committed (the lake holds the
/// truth) and a group without committed offsets starts from the earliest.
pub fn consumer(kafka: &KafkaConfig, group: &str, assignment: &str) -> ClientConfig {
    let mut c = base(kafka);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", assignment)
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    c
}

/// Whether `e` is a coordinator error that clears by itself once the group's coordinator has
/// moved or finished loading (after a broker restart or a preferred-leader election).
pub fn coordinator_moving(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::NotCoordinator | C::CoordinatorLoadInProgress | C::CoordinatorNotAvailable)
    )
}

/// Whether `e` clears by itself once a partition's leadership has settled: the leader was on a
/// broker that went away, or a broker is restarting. A question asked again a moment later gets
/// an answer from the new leader.
pub fn leader_moving(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::NotEnoughReplicas
        )
    )
}

/// The group's committed offsets of `tpl`, asked again (up to ten times, about 11 s in all)
/// while the group's coordinator is moving: Apache Kafka answers `NotCoordinator` for a moment
/// when leadership of `__consumer_offsets` changes, and that is no failure of the caller.
pub fn committed_offsets<
    C: rdkafka::consumer::Consumer<X>,
    X: rdkafka::consumer::ConsumerContext,
>(
    consumer: &C,
    tpl: rdkafka::TopicPartitionList,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<rdkafka::TopicPartitionList> {
    let mut tries = 0u64;
    loop {
        match consumer.committed_offsets(tpl.clone(), timeout) {
            Err(e) if coordinator_moving(&e) && tries < 10 => {
                tries += 1;
                tracing::debug!(error = %e, tries, "group coordinator moving; asking again");
                std::thread::sleep(std::time::Duration::from_millis(200 * tries));
            }
            other => return other,
        }
    }
}
