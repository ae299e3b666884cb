//! The `[run]` section's checks: its own values, then the pipeline (declared parts and sinks)
//! against what the domain registered.

use super::{RunConfig, SinkConfig, SinkMode};
use crate::registry::Registry;
use rtlake_core::config::{ConfigError, Origins, Section, check_listen};

impl Section for RunConfig {
    const NAME: &'static str = "run";

    fn check(&self, at: &Origins) -> Result<(), ConfigError> {
        if self.pipeline.is_empty()
            || !self
                .pipeline
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            return Err(at.err(
                "run.pipeline",
                &self.pipeline,
                "a pipeline name is letters, digits, _ and -",
            ));
        }
        if self.max_batch_events == 0 {
            return Err(at.err("run.max-batch-events", &0, "must be at least 1"));
        }
        if self.max_batch_bytes.0 == 0 {
            return Err(at.err("run.max-batch-bytes", &0, "must be at least 1"));
        }
        if self.max_batch_delay.get().is_zero() {
            return Err(at.err(
                "run.max-batch-delay",
                &self.max_batch_delay,
                "must be more than 0",
            ));
        }
        if let Some(parts) = &self.partitions {
            if parts.is_empty() || parts.iter().any(|p| *p < 0) {
                return Err(at.err(
                    "run.partitions",
                    &format!("{parts:?}"),
                    "list partition numbers, e.g. [0, 2]",
                ));
            }
            if self.assignment != super::Assignment::Static {
                return Err(at.err(
                    "run.partitions",
                    &format!("{parts:?}"),
                    "partitions are chosen with assignment = \"static\"; a group assigns them itself",
                ));
            }
        }
        if self.instance_id.is_some() && self.assignment == super::Assignment::Static {
            return Err(at.err(
                "run.instance-id",
                &self.instance_id.clone().unwrap_or_default(),
                "a static member id is for assignment = \"group\"",
            ));
        }
        let secs = |d: &rtlake_core::units::HumanDuration| d.get().as_secs_f64();
        if !(1.0..=3600.0).contains(&secs(&self.session_timeout)) {
            return Err(at.err(
                "run.session-timeout",
                &self.session_timeout,
                "must be between 1s and 1h",
            ));
        }
        if secs(&self.stall_timeout) < 1.0 {
            return Err(at.err(
                "run.stall-timeout",
                &self.stall_timeout,
                "must be at least 1s",
            ));
        }
        if secs(&self.sink_timeout) < 1.0 {
            return Err(at.err(
                "run.sink-timeout",
                &self.sink_timeout,
                "must be at least 1s",
            ));
        }
        if self.max_offsets_per_trigger == Some(0) {
            return Err(at.err(
                "run.max-offsets-per-trigger",
                &0,
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        self.starting_offsets
            .parse::<super::StartingOffsets>()
            .map_err(|e| at.err("run.starting-offsets", &self.starting_offsets, &e))?;
        if self.source != "kafka"
            && self.file_source().is_none_or(|p| p.is_empty())
            && self.bronze_source().is_none_or(|p| p.is_empty())
        {
            return Err(at.err(
                "run.source",
                &self.source,
                "write kafka, file:PATH (a JSON Lines file or a folder of them) or bronze:LAKE (a lake whose bronze table to replay)",
            ));
        }
        check_listen(at, "run.metrics-listen", &self.metrics_listen, true)
    }
}

impl RunConfig {
    /// Checks the pipeline: the declared input, tables and stages, and the sinks (the domain's
    /// default when none are named), whose operators are the registry's or declared stages.
    pub fn check_pipeline(&self, at: &Origins, registry: &Registry) -> Result<(), ConfigError> {
        let operators: Vec<String> = registry.names().map(String::from).collect();
        super::declared::validate(
            self.input.as_ref(),
            &self.tables,
            &self.stages,
            Some(&operators),
        )
        .map_err(|(k, v, reason)| at.err(&k, &v, &reason))?;
        validate_sinks(
            &self.sinks(registry.default_sinks()),
            &self.stages,
            registry,
        )
        .map_err(|(i, reason)| at.err(&format!("run.sinks[{i}]"), &"…", &reason))
    }
}

/// Checks the sinks; the error is (the sink's index, reason).
fn validate_sinks(
    sinks: &[SinkConfig],
    stages: &[super::StageConfig],
    registry: &Registry,
) -> Result<(), (usize, String)> {
    let ops: Vec<&str> = registry.names().collect();
    if sinks.is_empty() {
        return Err((0, "a pipeline needs at least one sink ([[sinks]])".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, s) in sinks.iter().enumerate() {
        let stage = stages.iter().find(|st| st.name == s.operator);
        if !ops.contains(&s.operator.as_str()) && stage.is_none() {
            let names: Vec<&str> = ops
                .iter()
                .copied()
                .chain(stages.iter().map(|st| st.name.as_str()))
                .collect();
            return Err((
                i,
                format!(
                    "operator {:?} is not one of {}",
                    s.operator,
                    names.join(", ")
                ),
            ));
        }
        if let Some(st) = stage {
            if s.table.is_none() && s.topic.is_none() {
                return Err((
                    i,
                    format!(
                        "stage {} has no table of its own: name the sink's table or topic",
                        st.name
                    ),
                ));
            }
            if s.topic.is_some() && s.key.is_none() {
                return Err((
                    i,
                    "a Kafka sink of a declared stage names its key column".into(),
                ));
            }
            if s.topic.is_some() && st.is_window() {
                return Err((
                    i,
                    format!(
                        "stage {} emits window rows; a Kafka sink takes the rows of a SQL stage",
                        st.name
                    ),
                ));
            }
        }
        if s.table.is_some() && s.topic.is_some() {
            return Err((i, "a sink writes a table or a topic, not both".into()));
        }
        if let Some(t) = &s.table {
            let ok = t.split_once('.').is_some_and(|(ns, n)| {
                let ident = |x: &str| {
                    !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                };
                ident(ns) && ident(n)
            });
            if !ok {
                return Err((
                    i,
                    format!("table {t:?} must be namespace.name (letters, digits, _)"),
                ));
            }
        }
        if s.sql.is_some() && s.topic.is_some() {
            return Err((
                i,
                "sql is for table sinks: a Kafka sink's headers name each row's input message"
                    .into(),
            ));
        }
        if s.sql.is_some() && s.table.is_none() {
            return Err((
                i,
                "a sink with sql writes rows of its own shape: name its table".into(),
            ));
        }
        if s.key.is_some() && s.topic.is_none() {
            return Err((i, "key is for Kafka sinks (set topic)".into()));
        }
        if s.format.is_some() && s.topic.is_some() {
            return Err((
                i,
                "format (delta or iceberg) is for table sinks: a Kafka sink's is value-format (json or avro)".into(),
            ));
        }
        if (s.value_format.is_some() || s.schema_registry.is_some()) && s.topic.is_none() {
            return Err((
                i,
                "value-format and schema-registry are for Kafka sinks (set topic)".into(),
            ));
        }
        match (s.value_format.as_deref(), s.schema_registry.as_deref()) {
            (None | Some("json"), None) => {}
            (None | Some("json"), Some(_)) => {
                return Err((
                    i,
                    "a registry is for value-format = \"avro\"; JSON rows need none".into(),
                ));
            }
            (Some("avro"), None) => {
                return Err((
                    i,
                    "value-format = \"avro\" registers its schema: set schema-registry".into(),
                ));
            }
            (Some("avro"), Some(url)) => {
                rtlake_registry::RegistryConfig::from_env("schema-registry", url)
                    .map_err(|e| (i, e.to_string()))?;
            }
            (Some(other), _) => {
                return Err((
                    i,
                    format!("value-format {other} is not a Kafka sink's format (json, avro)"),
                ));
            }
        }
        let upsert_keys =
            !s.primary_key.is_empty() || s.delete_when.is_some() || s.order_by.is_some();
        match s.mode {
            SinkMode::Upsert if s.topic.is_some() => {
                return Err((
                    i,
                    "mode = \"upsert\" is for table sinks: a Kafka sink's messages are keyed by key (a compacted topic keeps the last per key)".into(),
                ));
            }
            SinkMode::Upsert if s.primary_key.is_empty() => {
                return Err((
                    i,
                    "an upsert sink names the columns that identify a row: primary-key = [\"id\"]"
                        .into(),
                ));
            }
            SinkMode::Append if upsert_keys => {
                return Err((
                    i,
                    "primary-key, delete-when and order-by are for upsert sinks: set mode = \"upsert\"".into(),
                ));
            }
            _ => {}
        }
        if s.topic.is_some() && stage.is_none() && registry.key(&s.operator).is_none() {
            return Err((
                i,
                format!(
                    "operator {} has no message key (it emits window rows): a Kafka sink takes \
                     the rows of an operator with one, {}",
                    s.operator,
                    ops.iter()
                        .filter(|o| registry.key(o).is_some())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let target = s
            .topic
            .clone()
            .map(|t| format!("topic {t}"))
            .or(s.table.clone())
            .unwrap_or_else(|| format!("table of {}", s.operator));
        if !seen.insert(target.clone()) {
            return Err((i, format!("{target} is written by two sinks")));
        }
    }
    Ok(())
}
