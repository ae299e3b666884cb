//! What every source hands the engine: messages with their partition and offset, and the rule
//! that says where a partition resumes. The sources themselves are in [`crate::connectors`].

use bytes::{Bytes, BytesMut};
use rdkafka::Message;

/// A message copied out of the consumer. Its key and value are [`Bytes`]: cheap to clone, and
/// from the Kafka source slices of shared blocks ([`Arena`]) rather than an allocation each.
#[derive(Clone, Debug)]
pub struct RawMessage {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its value.
    pub payload: Option<Bytes>,
    /// Its timestamp (ms since the Unix epoch), when it has one.
    pub timestamp: Option<i64>,
}

impl RawMessage {
    /// Bytes of its key and value: what `run.max-batch-bytes` counts.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len) + self.payload.as_ref().map_or(0, Bytes::len)
    }

    /// Copies a consumed message, its key and value into `arena`.
    pub fn from_message(m: &impl Message, arena: &mut Arena) -> Self {
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| arena.copy(k)),
            payload: m.payload().map(|v| arena.copy(v)),
            timestamp: m.timestamp().to_millis(),
        }
    }
}

/// Blocks that consumed messages' keys and values are copied into: two allocations per message
/// (a fifth of the Kafka path's CPU went to malloc and free) become one per block. A block is
/// freed once every message in it is dropped, which is at the end of its epoch.
#[derive(Debug, Default)]
pub struct Arena(BytesMut);

impl Arena {
    /// The size of a block, unless a message is larger.
    const BLOCK: usize = 1 << 20;

    /// A copy of `bytes` in the current block (a new one when it is full).
    pub fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.0.capacity() < bytes.len() {
            self.0 = BytesMut::with_capacity(Self::BLOCK.max(bytes.len()));
        }
        self.0.extend_from_slice(bytes);
        self.0.split().freeze()
    }
}

/// Where a partition resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// No output holds anything of it: a new pipeline, which starts at the starting offsets.
    Start,
    /// Some output holds nothing of it (a sink added later): from the earliest.
    Earliest,
    /// The smallest next offset over the outputs.
    At(i64),
}

impl Resume {
    /// The rule over the outputs' versions (`None`: the output never wrote the partition).
    pub fn of(versions: impl IntoIterator<Item = Option<i64>>) -> Self {
        let v: Vec<Option<i64>> = versions.into_iter().collect();
        if v.iter().all(Option::is_none) {
            Self::Start
        } else if v.iter().any(Option::is_none) {
            Self::Earliest
        } else {
            v.into_iter().flatten().min().map_or(Self::Start, Self::At)
        }
    }

    /// The offset the run loop expects first (0 when not known).
    pub fn expected(self) -> i64 {
        match self {
            Self::At(o) => o,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Arena;

    #[test]
    fn arena_copies_share_blocks_and_stay_intact() {
        let mut arena = Arena::default();
        let a = arena.copy(b"first");
        let b = arena.copy(b"second");
        assert_eq!((&a[..], &b[..]), (&b"first"[..], &b"second"[..]));
        // Both in one block: the second starts where the first ends.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        // A value larger than a block gets a block of its own; the earlier copies are untouched.
        let big = vec![7u8; Arena::BLOCK + 1];
        let c = arena.copy(&big);
        assert_eq!(&c[..], &big[..]);
        assert_eq!(&a[..], b"first");
        let d = arena.copy(b"after");
        assert_eq!(&d[..], b"after");
        drop(arena);
        assert_eq!(&b[..], b"second");
    }
}
