//! Operators by name: what a domain crate adds to the engine.
//!
//! The engine itself knows the declared stages of a pipeline file (SQL, window and change
//! stages over a declared input). A domain crate registers what a file cannot declare: keyed
//! operators written in Rust, the decoder their input needs, SQL functions, a replay source,
//! and the pipeline that runs when the configuration names no sinks. A pipeline's sinks name operators; a name that is neither a declared stage nor a
//! registered operator fails at start.

use crate::Result;
use crate::config::{PipelineConfig as Config, SinkConfig};
use crate::input::InputDecoder;
use crate::operator::Operator;
use crate::source::RawMessage;
use datafusion::logical_expr::ScalarUDF;
use futures::future::BoxFuture;
use rtlake_core::schema::TableName;
use rtlake_lake::LakeConfig;
use std::collections::BTreeMap;

/// Builds an operator for a pipeline's configuration.
pub type OperatorFactory = Box<dyn Fn(&Config) -> Result<Box<dyn Operator>> + Send + Sync>;

/// Builds a domain's input decoder for a pipeline's configuration.
pub type DecoderFactory = Box<dyn Fn(&Config) -> Box<dyn InputDecoder> + Send + Sync>;

/// Reads a lake's table back as the messages it was made from, by partition, each in offset
/// order (`run.source = "bronze:LAKE"`).
pub type ReplayFn = Box<
    dyn Fn(String, LakeConfig) -> BoxFuture<'static, Result<BTreeMap<i32, Vec<RawMessage>>>>
        + Send
        + Sync,
>;

/// A registered operator.
struct Registered {
    build: OperatorFactory,
    table: TableName,
    key: Option<&'static str>,
}

/// A replay source: the table it reads, and how.
pub struct Replay {
    /// The table replayed (a backfill does not write it again).
    pub table: TableName,
    /// Reads it.
    pub read: ReplayFn,
}

/// Operators, a decoder and a replay source registered by domain crates.
#[derive(Default)]
pub struct Registry {
    operators: BTreeMap<&'static str, Registered>,
    decoder: Option<DecoderFactory>,
    replay: Option<Replay>,
    udfs: Vec<ScalarUDF>,
    pipeline: Vec<SinkConfig>,
}

impl Registry {
    /// Nothing registered: only declared pipelines run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers operator `name`: its rows go to `table` when a sink names no table, and to
    /// Kafka keyed by column `key` when a sink names no key.
    pub fn operator(
        &mut self,
        name: &'static str,
        table: TableName,
        key: Option<&'static str>,
        build: impl Fn(&Config) -> Result<Box<dyn Operator>> + Send + Sync + 'static,
    ) -> &mut Self {
        self.operators.insert(
            name,
            Registered {
                build: Box::new(build),
                table,
                key,
            },
        );
        self
    }

    /// Registers the decoder of pipelines without a declared `[input]`.
    pub fn decoder(
        &mut self,
        build: impl Fn(&Config) -> Box<dyn InputDecoder> + Send + Sync + 'static,
    ) -> &mut Self {
        self.decoder = Some(Box::new(build));
        self
    }

    /// Registers the replay source of `run.source = "bronze:LAKE"`.
    pub fn replay(&mut self, replay: Replay) -> &mut Self {
        self.replay = Some(replay);
        self
    }

    /// Registers a SQL function for every query of a pipeline (SQL stages and sink queries).
    pub fn udf(&mut self, f: ScalarUDF) -> &mut Self {
        self.udfs.push(f);
        self
    }

    /// Registers the domain's pipeline: the sinks that run when the configuration names none.
    pub fn pipeline(&mut self, sinks: Vec<SinkConfig>) -> &mut Self {
        self.pipeline = sinks;
        self
    }

    /// The domain's pipeline (empty when none is registered).
    pub fn default_sinks(&self) -> &[SinkConfig] {
        &self.pipeline
    }

    /// The registered SQL functions.
    pub fn udfs(&self) -> &[ScalarUDF] {
        &self.udfs
    }

    /// Builds operator `name`, if one is registered under it.
    pub fn build(&self, name: &str, cfg: &Config) -> Option<Result<Box<dyn Operator>>> {
        self.operators.get(name).map(|r| (r.build)(cfg))
    }

    /// The default table of operator `name`.
    pub fn table(&self, name: &str) -> Option<TableName> {
        self.operators.get(name).map(|r| r.table)
    }

    /// The default Kafka key column of operator `name`.
    pub fn key(&self, name: &str) -> Option<&'static str> {
        self.operators.get(name).and_then(|r| r.key)
    }

    /// The registered operators' names.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.operators.keys().copied()
    }

    /// A new decoder for `cfg`, if one is registered.
    pub fn new_decoder(&self, cfg: &Config) -> Option<Box<dyn InputDecoder>> {
        self.decoder.as_ref().map(|b| b(cfg))
    }

    /// The replay source, if one is registered.
    pub fn replay_source(&self) -> Option<&Replay> {
        self.replay.as_ref()
    }
}
