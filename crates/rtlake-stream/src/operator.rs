//! The operator interface: what the epoch loop asks of every stage of a pipeline.
//!
//! An operator turns an epoch's decoded input into one Arrow batch for its sinks. It sees the
//! messages of the partitions this worker holds, in offset order per partition, and skips those
//! every one of its sinks already holds (`owed`). Stateful operators keep their state per input
//! partition, so the loop can snapshot it per epoch and restore it per partition on a
//! rebalance; the state hooks default to "no state".

use crate::input::EpochInput;
use crate::rejected::RejectedColumns;
use crate::source::RawMessage;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use rtlake_core::schema::RejectReason;
use std::collections::HashMap;

/// What an operator emits for an epoch.
pub struct Emitted {
    /// The rows, in the operator's schema.
    pub batch: RecordBatch,
    /// For each row, the (partition, offset) of the input message that produced it: a sink
    /// whose version is past that offset already holds the row.
    pub origins: Vec<(i32, i64)>,
}

/// Where an operator puts the messages it refuses (stale, late): `_rejected`, unless that
/// table already holds the message.
pub struct Rejections<'a> {
    cols: &'a mut RejectedColumns,
    owed: &'a (dyn Fn(&RawMessage) -> bool + Sync),
    topic: &'a str,
    now: DateTime<Utc>,
}

impl<'a> Rejections<'a> {
    /// Rejections into `cols` for messages `owed` to `_rejected`.
    pub fn new(
        cols: &'a mut RejectedColumns,
        owed: &'a (dyn Fn(&RawMessage) -> bool + Sync),
        topic: &'a str,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            cols,
            owed,
            topic,
            now,
        }
    }

    /// Rejects `m` on behalf of `sink`; `error` is only built when the row is written.
    pub fn push(
        &mut self,
        m: &RawMessage,
        reason: RejectReason,
        sink: &str,
        error: impl FnOnce() -> String,
    ) {
        if (self.owed)(m) {
            self.cols
                .push(self.topic, m, reason, &error(), sink, self.now);
        }
    }
}

/// The last offset of each partition among the messages `owed` in an epoch: the origin of the
/// windows that partition's messages made final.
pub fn last_offsets(
    input: &EpochInput<'_>,
    owed: &dyn Fn(&RawMessage) -> bool,
) -> HashMap<i32, i64> {
    let mut out = HashMap::new();
    for m in input.msgs.iter().filter(|m| owed(m)) {
        let e = out.entry(m.partition).or_insert(m.offset);
        *e = (*e).max(m.offset);
    }
    out
}

/// One stage of a pipeline.
pub trait Operator: Send + Sync {
    /// The operator's name as pipelines spell it (`changes`, `shop-hourly`, ...).
    fn kind(&self) -> &'static str;

    /// The schema of the batches it emits.
    fn schema(&self) -> SchemaRef;

    /// Processes an epoch. `owed` says whether a message is past what every sink holds;
    /// refused messages go to `rejected` under the name `sink`. An error fails the epoch (a
    /// configuration error, such as a query that cannot run on the rows, stops the run).
    fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected: &mut Rejections<'_>,
        sink: &str,
    ) -> crate::Result<Emitted>;

    /// Its keyed state, if it keeps any (snapshotted each epoch, restored on assignment).
    fn state(&self) -> Option<&dyn PartitionState> {
        None
    }

    /// The same, to restore or drop partitions.
    fn state_mut(&mut self) -> Option<&mut dyn PartitionState> {
        None
    }
}

/// A hash map for lookups made once per event: foldhash instead of std's SipHash, still seeded
/// at random per map (keys come from messages). Iteration order is arbitrary: sort what is
/// emitted.
pub type KeyMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An operator's state, kept per input partition.
pub trait PartitionState: Send + Sync {
    /// Sets a partition's state from a snapshot (`None`: no state yet).
    fn restore(&mut self, partition: i32, bytes: Option<&[u8]>) -> Result<(), serde_json::Error>;
    /// A partition's state as a snapshot.
    fn snapshot(&self, partition: i32) -> Vec<u8>;
    /// Forgets a partition this worker no longer holds.
    fn remove(&mut self, partition: i32);
    /// Keys (entities, windows) held over all partitions.
    fn keys(&self) -> usize;
}

/// State of type `S` per partition, created fresh by `new` and serialised as JSON.
pub struct PerPartition<S> {
    parts: KeyMap<i32, S>,
    new: Box<dyn Fn() -> S + Send + Sync>,
    keys: fn(&S) -> usize,
}

impl<S> PerPartition<S> {
    /// Empty; `new` makes a partition's first state, `keys` counts what one holds.
    pub fn new(new: impl Fn() -> S + Send + Sync + 'static, keys: fn(&S) -> usize) -> Self {
        Self {
            parts: KeyMap::default(),
            new: Box::new(new),
            keys,
        }
    }

    /// A partition's state, created on first use.
    pub fn get(&mut self, partition: i32) -> &mut S {
        let new = &self.new;
        self.parts.entry(partition).or_insert_with(new)
    }

    /// Every partition's state.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&i32, &mut S)> {
        self.parts.iter_mut()
    }
}

impl<S: serde::Serialize + serde::de::DeserializeOwned + Send + Sync> PartitionState
    for PerPartition<S>
{
    fn restore(&mut self, partition: i32, bytes: Option<&[u8]>) -> Result<(), serde_json::Error> {
        let state = match bytes {
            Some(b) => serde_json::from_slice(b)?,
            None => (self.new)(),
        };
        self.parts.insert(partition, state);
        Ok(())
    }

    fn snapshot(&self, partition: i32) -> Vec<u8> {
        // Operator state is strings and finite numbers: it always serialises.
        match self.parts.get(&partition) {
            Some(s) => serde_json::to_vec(s).expect("state serialises"),
            None => serde_json::to_vec(&(self.new)()).expect("state serialises"),
        }
    }

    fn remove(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }

    fn keys(&self) -> usize {
        self.parts.values().map(self.keys).sum()
    }
}
