//! An epoch's input as every operator reads it: the messages, and their decoding.
//!
//! A pipeline decodes its messages one of two ways. A declared input (`[input]` in a pipeline
//! file) is decoded by its format's [`Decoder`](crate::ops::decode::Decoder) into Arrow columns
//! of its schema ([`EpochInput::records`]). A domain crate may instead register an
//! [`InputDecoder`] (see [`Registry`](crate::registry::Registry)); its decoding travels with
//! the epoch as [`EpochInput::domain`] for the domain's own operators to read.

use crate::ops::decode::Records;
use crate::source::RawMessage;
use chrono::{DateTime, Utc};
use std::any::Any;

/// One epoch's messages, each decoded once, as every operator reads them.
pub struct EpochInput<'a> {
    /// The topic the messages came from.
    pub topic: &'a str,
    /// The messages, in offset order per partition.
    pub msgs: &'a [RawMessage],
    /// A declared input's rows (Arrow columns of its schema).
    pub records: Option<Records>,
    /// A registered decoder's decoding of the messages.
    pub domain: Option<Box<dyn Any + Send + Sync>>,
    /// The epoch's processing time (`ingested_at`, `rejected_at`).
    pub now: DateTime<Utc>,
}

impl<'a> EpochInput<'a> {
    /// An epoch of a declared input, decoded to `records`.
    pub fn declared(
        topic: &'a str,
        msgs: &'a [RawMessage],
        now: DateTime<Utc>,
        records: Records,
    ) -> Self {
        Self {
            topic,
            msgs,
            records: Some(records),
            domain: None,
            now,
        }
    }

    /// An epoch decoded by a registered decoder.
    pub fn domain(
        topic: &'a str,
        msgs: &'a [RawMessage],
        now: DateTime<Utc>,
        decoded: Box<dyn Any + Send + Sync>,
    ) -> Self {
        Self {
            topic,
            msgs,
            records: None,
            domain: Some(decoded),
            now,
        }
    }

    /// The registered decoder's decoding, if it is a `T`; an operator of a domain asks for its
    /// own type and gets a configuration error when the pipeline decodes otherwise.
    pub fn decoded<T: 'static>(&self, operator: &str) -> crate::Result<&T> {
        self.domain
            .as_ref()
            .and_then(|d| d.downcast_ref::<T>())
            .ok_or_else(|| {
                crate::Error::new(
                    crate::Kind::Config,
                    format!(
                        "operator {operator} reads its domain's decoding of the messages, and this \
                     pipeline decodes them otherwise (a declared [input]?)"
                    ),
                )
            })
    }
}

/// A domain's decoding of an epoch's messages, for its operators (`EpochInput::domain`).
pub trait InputDecoder: Send + Sync {
    /// Decodes `msgs` of `topic` at processing time `now`. Refusals are the operators' to
    /// make: a decoding holds, per message, what they need to reject it.
    fn decode(
        &mut self,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
    ) -> Box<dyn Any + Send + Sync>;
}
