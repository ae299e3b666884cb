//! Range and consistency checks, run once after the typed parse.

use super::{Acks, Config, ConfigError, Speed};
use std::collections::HashMap;

impl Config {
    /// Checks ranges and consistency; the error names the key, the value and its origin.
    ///
    /// `operators` are the names of the registered operators a sink may name besides the
    /// declared stages (the binary's registry); `None` leaves unknown names to the pipeline's
    /// builder, which lists what it knows.
    pub fn validate(
        &self,
        origins: &HashMap<String, String>,
        operators: Option<&[String]>,
    ) -> Result<(), ConfigError> {
        let err = |key: &str, value: &dyn std::fmt::Display, reason: &str| ConfigError::Value {
            key: key.into(),
            value: value.to_string(),
            origin: origins
                .get(key)
                .or_else(|| {
                    // `run.stages[2].window` and `run.input.schema` were set as `run.stages`
                    // and `run.input`.
                    let head: Vec<&str> = key.split(['.', '[']).take(2).collect();
                    origins.get(&head.join("."))
                })
                .cloned()
                .unwrap_or_else(|| "default".into()),
            reason: reason.into(),
        };
        check_brokers(&self.kafka.brokers)
            .map_err(|r| err("kafka.brokers", &self.kafka.brokers, &r))?;
        if self.kafka.topic.is_empty()
            || self.kafka.topic.len() > 249
            || !self
                .kafka
                .topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(err(
                "kafka.topic",
                &self.kafka.topic,
                "a topic name is 1-249 of [a-zA-Z0-9._-]",
            ));
        }
        if self.kafka.partitions < 1 {
            return Err(err(
                "kafka.partitions",
                &self.kafka.partitions,
                "must be at least 1",
            ));
        }
        if self.kafka.replication_factor < 1 && self.kafka.replication_factor != -1 {
            return Err(err(
                "kafka.replication-factor",
                &self.kafka.replication_factor,
                "must be at least 1, or -1 for the cluster's default.replication.factor",
            ));
        }
        if self.lake.uri.trim().is_empty() {
            return Err(err("lake.uri", &"\"\"", "must name a path or URL"));
        }
        if self.lake.target_file_size.0 < 1 << 20 {
            return Err(err(
                "lake.target-file-size",
                &self.lake.target_file_size,
                "must be at least 1MiB",
            ));
        }
        self.broker
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| {
                err(
                    "broker.listen",
                    &self.broker.listen,
                    "must be an IP address and port, e.g. 127.0.0.1:9092",
                )
            })?;
        if !matches!(self.broker.storage.as_str(), "log" | "sqlite") {
            return Err(err(
                "broker.storage",
                &self.broker.storage,
                "write log (segment files) or sqlite",
            ));
        }
        let p = &self.producer;
        if p.idempotence && p.acks != Acks::All {
            return Err(err(
                "producer.acks",
                &format!("{:?}", p.acks).to_lowercase(),
                "idempotence needs acks = \"all\" (or set producer.idempotence = false)",
            ));
        }
        if p.max_in_flight == 0 || (p.idempotence && p.max_in_flight > 5) {
            return Err(err(
                "producer.max-in-flight",
                &p.max_in_flight,
                "must be 1 to 5 with idempotence (librdkafka's limit)",
            ));
        }
        if p.batch_size.0 == 0 || p.batch_size.0 > i32::MAX as u64 {
            return Err(err(
                "producer.batch-size",
                &p.batch_size,
                "must be between 1 byte and 2GiB",
            ));
        }
        if p.linger.get() > std::time::Duration::from_secs(300) {
            return Err(err("producer.linger", &p.linger, "must be at most 5m"));
        }
        let s = &self.source;
        if s.interval.get().is_zero() {
            return Err(err("source.interval", &s.interval, "must be more than 0"));
        }
        if let Speed::Factor(f) = s.speed
            && !(f.is_finite() && f > 0.0)
        {
            return Err(err("source.speed", &f, "must be more than 0, or max"));
        }
        crate::time::parse_rfc3339(&s.start).map_err(|e| {
            err(
                "source.start",
                &s.start,
                &format!("{e} (write RFC 3339 with an offset, e.g. 2025-10-01T08:00:00+09:00)"),
            )
        })?;
        if s.minutes == Some(0) {
            return Err(err(
                "source.minutes",
                &0,
                "must be at least 1 (leave it out to run on)",
            ));
        }
        if s.scale == 0 {
            return Err(err("source.scale", &0, "must be at least 1"));
        }
        if s.page_size == 0 || s.page_size > 1000 {
            return Err(err(
                "source.page-size",
                &s.page_size,
                "the bikeList API serves 1 to 1000 rows a call",
            ));
        }
        url_ok(&s.api_base).map_err(|r| err("source.api-base", &s.api_base, &r))?;
        let r = &self.run;
        if r.pipeline.is_empty()
            || !r
                .pipeline
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            return Err(err(
                "run.pipeline",
                &r.pipeline,
                "a pipeline name is letters, digits, _ and -",
            ));
        }
        if r.max_batch_events == 0 {
            return Err(err("run.max-batch-events", &0, "must be at least 1"));
        }
        if r.max_batch_bytes.0 == 0 {
            return Err(err("run.max-batch-bytes", &0, "must be at least 1"));
        }
        if r.max_batch_delay.get().is_zero() {
            return Err(err(
                "run.max-batch-delay",
                &r.max_batch_delay,
                "must be more than 0",
            ));
        }
        if let Some(parts) = &r.partitions {
            if parts.is_empty() || parts.iter().any(|p| *p < 0) {
                return Err(err(
                    "run.partitions",
                    &format!("{parts:?}"),
                    "list partition numbers, e.g. [0, 2]",
                ));
            }
            if r.assignment != super::Assignment::Static {
                return Err(err(
                    "run.partitions",
                    &format!("{parts:?}"),
                    "partitions are chosen with assignment = \"static\"; a group assigns them itself",
                ));
            }
        }
        if r.instance_id.is_some() && r.assignment == super::Assignment::Static {
            return Err(err(
                "run.instance-id",
                &r.instance_id.clone().unwrap_or_default(),
                "a static member id is for assignment = \"group\"",
            ));
        }
        let secs = |d: &crate::units::HumanDuration| d.get().as_secs_f64();
        if !(1.0..=3600.0).contains(&secs(&r.session_timeout)) {
            return Err(err(
                "run.session-timeout",
                &r.session_timeout,
                "must be between 1s and 1h",
            ));
        }
        if secs(&r.stall_timeout) < 1.0 {
            return Err(err(
                "run.stall-timeout",
                &r.stall_timeout,
                "must be at least 1s",
            ));
        }
        if secs(&r.sink_timeout) < 1.0 {
            return Err(err(
                "run.sink-timeout",
                &r.sink_timeout,
                "must be at least 1s",
            ));
        }
        if r.max_offsets_per_trigger == Some(0) {
            return Err(err(
                "run.max-offsets-per-trigger",
                &0,
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        r.starting_offsets
            .parse::<super::StartingOffsets>()
            .map_err(|e| err("run.starting-offsets", &r.starting_offsets, &e))?;
        if r.source != "kafka"
            && r.file_source().is_none_or(|p| p.is_empty())
            && r.bronze_source().is_none_or(|p| p.is_empty())
        {
            return Err(err(
                "run.source",
                &r.source,
                "write kafka, file:PATH (a JSON Lines file or a folder of them) or bronze:LAKE (a lake whose bronze table to replay)",
            ));
        }
        for (key, v) in [
            ("run.metrics-listen", &r.metrics_listen),
            ("producer.metrics-listen", &self.producer.metrics_listen),
            ("serve.listen", &self.serve.listen),
        ] {
            if !(v == "off" && key != "serve.listen") && v.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(err(
                    key,
                    v,
                    "must be an IP address and port, e.g. 127.0.0.1:9464 (or off)",
                ));
            }
        }
        if let Some(t) = &self.serve.auth_token {
            let t = t.expose();
            if t.chars().count() < 16 || t.chars().any(char::is_whitespace) {
                return Err(err(
                    "serve.auth-token",
                    &"(hidden)",
                    "must be at least 16 characters, without spaces (e.g. `openssl rand -hex 24`)",
                ));
            }
        }
        if self.serve.sql_row_limit == 0 {
            return Err(err("serve.sql-row-limit", &0, "must be at least 1"));
        }
        if self.serve.sql_memory_limit.0 < 1 << 20 {
            return Err(err(
                "serve.sql-memory-limit",
                &self.serve.sql_memory_limit,
                "must be at least 1MiB",
            ));
        }
        super::declared::validate(r.input.as_ref(), &r.tables, &r.stages, operators)
            .map_err(|(k, v, reason)| err(&k, &v, &reason))?;
        validate_sinks(&r.sinks(), &r.stages, operators)
            .map_err(|(i, reason)| err(&format!("run.sinks[{i}]"), &"…", &reason))?;
        Ok(())
    }
}

fn check_brokers(list: &str) -> Result<(), String> {
    if list.trim().is_empty() {
        return Err("must list at least one host:port".into());
    }
    for b in list.split(',') {
        let b = b.trim();
        let (host, port) = b
            .rsplit_once(':')
            .ok_or_else(|| format!("`{b}` has no port (write host:port)"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("`{b}` is not host:port"));
        }
    }
    Ok(())
}

fn url_ok(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(u) => Err(format!("scheme `{}` is not http or https", u.scheme())),
        Err(e) => Err(e.to_string()),
    }
}

fn validate_sinks(
    sinks: &[super::SinkConfig],
    stages: &[super::StageConfig],
    operators: Option<&[String]>,
) -> Result<(), (usize, String)> {
    if sinks.is_empty() {
        return Err((0, "a pipeline needs at least one sink ([[sinks]])".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, s) in sinks.iter().enumerate() {
        let stage = stages.iter().find(|st| st.name == s.operator);
        if let Some(ops) = operators
            && !ops.contains(&s.operator)
            && stage.is_none()
        {
            let names: Vec<&str> = ops
                .iter()
                .map(String::as_str)
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
        if s.topic.is_some()
            && stage.is_none()
            && !matches!(s.operator.as_str(), "bronze" | "changes")
        {
            return Err((
                i,
                format!(
                    "operator {} emits window rows; a Kafka sink takes bronze or changes rows",
                    s.operator
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
