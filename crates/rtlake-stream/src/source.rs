//! What every source hands the engine: messages with their partition and offset, and the rule
//! that says where a partition resumes. The sources themselves are in [`crate::connectors`].

use rdkafka::Message;

/// A message copied out of the consumer.
#[derive(Clone, Debug)]
pub struct RawMessage {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub payload: Option<Vec<u8>>,
    /// Its timestamp (ms since the Unix epoch), when it has one.
    pub timestamp: Option<i64>,
}

impl RawMessage {
    /// Bytes of its key and value: what `run.max-batch-bytes` counts.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len)
    }

    /// Copies a consumed message.
    pub fn from_message(m: &impl Message) -> Self {
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis(),
        }
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
