//! Range and consistency checks, run once after the typed parse.

use super::{Acks, Config, ConfigError, Speed};
use std::collections::HashMap;

impl Config {
    /// Checks ranges and consistency; the error names the key, the value and its origin.
    pub fn validate(&self, origins: &HashMap<String, String>) -> Result<(), ConfigError> {
        let err = |key: &str, value: &dyn std::fmt::Display, reason: &str| ConfigError::Value {
            key: key.into(),
            value: value.to_string(),
            origin: origins.get(key).cloned().unwrap_or_else(|| "default".into()),
            reason: reason.into(),
        };
        check_brokers(&self.kafka.brokers).map_err(|r| err("kafka.brokers", &self.kafka.brokers, &r))?;
        if self.kafka.topic.is_empty() || self.kafka.topic.len() > 249 || !self.kafka.topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(err("kafka.topic", &self.kafka.topic, "a topic name is 1-249 of [a-zA-Z0-9._-]"));
        }
        if self.kafka.partitions < 1 {
            return Err(err("kafka.partitions", &self.kafka.partitions, "must be at least 1"));
        }
        if self.kafka.replication_factor < 1 {
            return Err(err("kafka.replication-factor", &self.kafka.replication_factor, "must be at least 1"));
        }
        if self.lake.uri.trim().is_empty() {
            return Err(err("lake.uri", &"\"\"", "must name a path or URL"));
        }
        self.broker
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| err("broker.listen", &self.broker.listen, "must be an IP address and port, e.g. 127.0.0.1:9092"))?;
        let p = &self.producer;
        if p.idempotence && p.acks != Acks::All {
            return Err(err("producer.acks", &format!("{:?}", p.acks).to_lowercase(), "idempotence needs acks = \"all\" (or set producer.idempotence = false)"));
        }
        if p.max_in_flight == 0 || (p.idempotence && p.max_in_flight > 5) {
            return Err(err("producer.max-in-flight", &p.max_in_flight, "must be 1 to 5 with idempotence (librdkafka's limit)"));
        }
        if p.batch_size.0 == 0 || p.batch_size.0 > i32::MAX as u64 {
            return Err(err("producer.batch-size", &p.batch_size, "must be between 1 byte and 2GiB"));
        }
        if p.linger.get() > std::time::Duration::from_secs(300) {
            return Err(err("producer.linger", &p.linger, "must be at most 5m"));
        }
        let s = &self.source;
        if s.interval.get().is_zero() {
            return Err(err("source.interval", &s.interval, "must be more than 0"));
        }
        if let Speed::Factor(f) = s.speed {
            if !(f.is_finite() && f > 0.0) {
                return Err(err("source.speed", &f, "must be more than 0, or max"));
            }
        }
        crate::time::parse_rfc3339(&s.start)
            .map_err(|e| err("source.start", &s.start, &format!("{e} (write RFC 3339 with an offset, e.g. 2025-10-01T08:00:00+09:00)")))?;
        if s.minutes == Some(0) {
            return Err(err("source.minutes", &0, "must be at least 1 (leave it out to run on)"));
        }
        if s.scale == 0 {
            return Err(err("source.scale", &0, "must be at least 1"));
        }
        if s.page_size == 0 || s.page_size > 1000 {
            return Err(err("source.page-size", &s.page_size, "the bikeList API serves 1 to 1000 rows a call"));
        }
        url_ok(&s.api_base).map_err(|r| err("source.api-base", &s.api_base, &r))?;
        let r = &self.run;
        if r.pipeline.is_empty() || !r.pipeline.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) {
            return Err(err("run.pipeline", &r.pipeline, "a pipeline name is letters, digits, _ and -"));
        }
        if r.max_batch_events == 0 {
            return Err(err("run.max-batch-events", &0, "must be at least 1"));
        }
        if r.max_batch_delay.get().is_zero() {
            return Err(err("run.max-batch-delay", &r.max_batch_delay, "must be more than 0"));
        }
        Ok(())
    }
}

fn check_brokers(list: &str) -> Result<(), String> {
    if list.trim().is_empty() {
        return Err("must list at least one host:port".into());
    }
    for b in list.split(',') {
        let b = b.trim();
        let (host, port) = b.rsplit_once(':').ok_or_else(|| format!("`{b}` has no port (write host:port)"))?;
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
