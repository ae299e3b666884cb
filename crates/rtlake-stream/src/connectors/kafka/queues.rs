//! Each assigned partition on a queue of its own, taken in batches.
//!
//! rdkafka hands a consumer's messages over one poll at a time: per message a lock of the
//! consumer's queue, two or three clock reads, an event and an `Arc` (bench/README.md, "The
//! Kafka path, ninth step": about a tenth of a drain's CPU). librdkafka's batch call,
//! `rd_kafka_consume_batch_queue`, takes up to a batch per call, but on the consumer's own queue
//! it would also serve a rebalance itself (with rdkafka's event interface, an unassign), and the
//! source's positions depend on serving it. So each partition's queue is split off the
//! consumer's before the partition is assigned (split after, librdkafka may already have
//! forwarded its first messages to the consumer's queue), and only those are taken in batches;
//! the consumer's queue still carries rebalances, errors and commits' replies, served by
//! rdkafka's poll.

use rdkafka::bindings as rd;
use std::ffi::{CStr, c_void};
use std::ptr::NonNull;
use std::sync::Arc;
use tokio::sync::Notify;

/// What a batch take hands over, one at a time.
pub enum Taken<'a> {
    /// A message; its key and value live until the callback returns.
    Message {
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// Its key.
        key: Option<&'a [u8]>,
        /// Its value.
        payload: Option<&'a [u8]>,
        /// Its timestamp (ms since the Unix epoch), when it has one.
        timestamp: Option<i64>,
    },
    /// A consumer error delivered on the partition's queue (rdkafka's mapping).
    Error(rdkafka::error::KafkaError),
}

/// One partition's queue, split off the consumer's: librdkafka no longer forwards the
/// partition's messages to the consumer's queue while this handle lives or after (the split is
/// remembered by the partition; it is made again on every assignment).
pub struct PartitionQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    partition: i32,
    /// Kept alive as long as librdkafka may call [`wake`] with it.
    _wake: Arc<Notify>,
}

// SAFETY: librdkafka's queues are thread-safe (every operation takes the queue's lock); the
// handle is only read.
unsafe impl Send for PartitionQueue {}
// SAFETY: as above.
unsafe impl Sync for PartitionQueue {}

/// librdkafka's callback when a queue served empty gets an op: once per serve, from the thread
/// that enqueued it (a broker's).
unsafe extern "C" fn wake(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Notify` of the queue's handle, which disables this callback
    // before it lets the `Notify` go.
    let notify = unsafe { &*(opaque as *const Notify) };
    notify.notify_one();
}

impl PartitionQueue {
    /// Splits `partition`'s queue off the consumer's; `wake` is notified when the queue, served
    /// empty, gets a message or an error. `None` if librdkafka does not know the partition.
    ///
    /// # Safety
    /// `rk` is a live consumer handle, and this handle is dropped before the consumer is
    /// destroyed.
    pub unsafe fn split(
        rk: *mut rd::rd_kafka_t,
        topic: &CStr,
        partition: i32,
        wake: &Arc<Notify>,
    ) -> Option<Self> {
        // SAFETY: `rk` is live (the caller's contract); librdkafka copies `topic`.
        let queue = NonNull::new(unsafe {
            rd::rd_kafka_queue_get_partition(rk, topic.as_ptr(), partition)
        })?;
        let wake = wake.clone();
        // SAFETY: the queue is ours; a null destination stops its forwarding, and marks it as
        // the application's, which librdkafka's fetch start then leaves alone. The callback's
        // opaque is the `Notify` held in `self._wake`.
        unsafe {
            rd::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut());
            rd::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(self::wake),
                Arc::as_ptr(&wake) as *mut c_void,
            );
        }
        Some(Self {
            queue,
            partition,
            _wake: wake,
        })
    }

    /// The partition it holds.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Takes up to `max` messages (and errors) already queued, without waiting, and hands each
    /// to `each` in offset order; returns how many were taken. Each message is freed once
    /// `each` returns.
    pub fn take(&self, max: usize, mut each: impl FnMut(Taken<'_>)) -> usize {
        const BATCH: usize = 512;
        let mut ptrs = [std::ptr::null_mut::<rd::rd_kafka_message_t>(); BATCH];
        let want = max.min(BATCH);
        if want == 0 {
            return 0;
        }
        // SAFETY: the queue is live; librdkafka writes at most `want` pointers into `ptrs`.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, ptrs.as_mut_ptr(), want)
        };
        let n = usize::try_from(n).unwrap_or(0);
        for &ptr in &ptrs[..n] {
            // SAFETY: librdkafka handed over `n` live messages, each ours until destroyed
            // below; the slices borrowed from it do not outlive the call to `each`.
            unsafe {
                each(view(&*ptr));
                rd::rd_kafka_message_destroy(ptr);
            }
        }
        n
    }
}

/// A message as [`Taken`].
///
/// # Safety
/// `m` is a live message whose payload and key pointers are valid for their lengths.
unsafe fn view(m: &rd::rd_kafka_message_t) -> Taken<'_> {
    use rd::rd_kafka_resp_err_t as E;
    use rdkafka::error::KafkaError;
    match m.err {
        E::RD_KAFKA_RESP_ERR_NO_ERROR => {}
        E::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
            return Taken::Error(KafkaError::PartitionEOF(m.partition));
        }
        e => return Taken::Error(KafkaError::MessageConsumption(e.into())),
    }
    let bytes = |p: *mut c_void, len: usize| {
        // SAFETY: librdkafka's pointer and length for the message's lifetime.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p as *const u8, len) })
    };
    let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    // SAFETY: `m` is live.
    let ts = unsafe { rd::rd_kafka_message_timestamp(m, &mut kind) };
    Taken::Message {
        partition: m.partition,
        offset: m.offset,
        key: bytes(m.key, m.key_len),
        payload: bytes(m.payload, m.len),
        timestamp: (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
            .then_some(ts),
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: the queue is ours; the callback is off before the `Notify` it points to may
        // go, and the handle is released once.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::{Duration, Instant};

    /// What the worker's batch taking relies on: a partition whose queue is split off before it
    /// is assigned has every message taken from that queue, in order, with its key, value and
    /// timestamp, and none handed over by the consumer's own queue (librdkafka 1.6 once
    /// forwarded split partitions' messages anyway: confluentinc/librdkafka#3231); a split
    /// queue that was taken empty wakes its waiter when a message comes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_split_before_their_assignment_are_taken_whole_from_their_own_queues() {
        const PER: i64 = 700; // more than a batch of `take`
        const T0: i64 = 1_760_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let broker =
            rtlake_broker::EmbeddedBroker::start("127.0.0.1:0".parse().unwrap(), dir.path())
                .await
                .unwrap();
        let kafka = rtlake_kafka::config::KafkaConfig {
            brokers: broker.bootstrap(),
            partitions: 3,
            ..Default::default()
        };
        let cluster = rtlake_kafka::Cluster::connect(&kafka).unwrap();
        let topic = "split";
        cluster.ensure_topic(topic).await.unwrap();
        let producer: FutureProducer = rtlake_kafka::client::base(&kafka).create().unwrap();
        let send = |p: i32, i: i64| {
            let (key, value) = (format!("k{p}-{i}"), format!("v{i}"));
            let record = FutureRecord::to(topic)
                .partition(p)
                .key(&key)
                .payload(&value)
                .timestamp(T0 + i);
            producer.send_result(record).map_err(|(e, _)| e).unwrap()
        };
        let sent = (0..3).flat_map(|p| (0..PER).map(move |i| (p, i)));
        for d in futures::future::join_all(sent.map(|(p, i)| send(p, i))).await {
            d.unwrap().unwrap();
        }

        let consumer: BaseConsumer =
            rtlake_kafka::client::consumer(&kafka, "split-test", "range")
                .create()
                .unwrap();
        consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let wake = Arc::new(Notify::new());
        let queues: Vec<PartitionQueue> = (0..3)
            .map(|p| {
                // SAFETY: the consumer is live, and the queues are dropped before it.
                unsafe { PartitionQueue::split(consumer.client().native_ptr(), c"split", p, &wake) }
                    .expect("a partition of a known topic splits")
            })
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();

        let mut got: Vec<Vec<Got>> = vec![Vec::new(); 3];
        let start = Instant::now();
        loop {
            if let Some(Ok(m)) = consumer.poll(Duration::ZERO) {
                panic!("the consumer's own queue handed over a message: {m:?}");
            }
            let taken: usize = queues.iter().map(|q| take(q, &mut got)).sum();
            if taken == 0 && queues.len() * PER as usize == got.iter().map(Vec::len).sum::<usize>() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "after 30 s, taken per partition: {:?}",
                got.iter().map(Vec::len).collect::<Vec<_>>()
            );
            if taken == 0 {
                let _ = tokio::time::timeout(Duration::from_millis(200), wake.notified()).await;
            }
        }
        for (p, msgs) in got.iter().enumerate() {
            let want: Vec<_> = (0..PER)
                .map(|i| (i, format!("k{p}-{i}"), format!("v{i}"), Some(T0 + i)))
                .collect();
            assert_eq!(msgs, &want, "partition {p}");
        }

        // Taken empty, a queue wakes its waiter when a message comes.
        let _ = wake.notified().now_or_never();
        send(1, PER).await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(10), wake.notified())
            .await
            .expect("partition 1's queue woke its waiter");
        assert_eq!(take(&queues[1], &mut got), 1);
        assert_eq!(got[1].last().map(|m| m.0), Some(PER));

        drop(queues);
        drop(consumer);
        broker.stop().await;
    }

    /// A message taken: its offset, key, value and timestamp.
    type Got = (i64, String, String, Option<i64>);

    /// Takes what `q` holds into `got` (by partition); how many were taken.
    fn take(q: &PartitionQueue, got: &mut [Vec<Got>]) -> usize {
        q.take(usize::MAX, |t| match t {
            Taken::Message {
                partition,
                offset,
                key,
                payload,
                timestamp,
            } => {
                let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                got[partition as usize].push((offset, text(key), text(payload), timestamp));
            }
            Taken::Error(e) => panic!("an error on partition {}'s queue: {e}", q.partition()),
        })
    }
}
