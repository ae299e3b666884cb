//! The Kafka sink's transaction probe (`run.sink-transactions = auto`): does the cluster give a
//! transactional producer id? The embedded broker refuses at once; Apache Kafka answers. A
//! failure that is not "no transactions here" (a timeout, a refused credential) is a warning and
//! `rtlake_run_sink_downgrades_total`, not a silent downgrade.

use super::sink::{KafkaSink, bounded};
use crate::config::PipelineConfig as Config;
use crate::{Error, Kind};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, config::RDKafkaLogLevel};
use std::time::Duration;

/// Whether the probe's error is the cluster saying it has no transactions: the embedded broker
/// refuses a transactional id (`TRANSACTIONAL_ID_AUTHORIZATION_FAILED`), an old broker does not
/// know the API.
fn no_transactions_here(e: &Error) -> bool {
    let Error::Kafka(rtlake_kafka::Error::Kafka { cause, .. }) = e else {
        return false;
    };
    matches!(
        cause.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::UnsupportedVersion
                | RDKafkaErrorCode::UnsupportedFeature
        )
    )
}

/// The transaction probe's client context: a cluster that refuses transactions (the embedded
/// broker) makes librdkafka log the refusal as a fatal error, which here is an expected answer,
/// not a failure; its logs go to debug level.
struct QuietProbe;

impl ClientContext for QuietProbe {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(fac, message, "kafka sink: transaction probe");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka sink: transaction probe");
    }
}

/// Asks the cluster for a transactional producer id: the embedded broker refuses at once.
/// The probe's id is unique to the process: two workers of one pipeline starting together
/// must not fence each other's probe (on the embedded broker that left one waiting).
pub(super) async fn cluster_has_transactions(cfg: &Config, group_id: &str, topic: &str) -> bool {
    let id = format!("{group_id}.probe.{}", std::process::id());
    let p = match KafkaSink::transactional_config(cfg, &id)
        .create_with_context::<_, FutureProducer<QuietProbe>>(QuietProbe)
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %rtlake_core::error::Chain(&e), "cannot create a transactional producer; the Kafka sink runs at least once");
            return false;
        }
    };
    let timeout = Duration::from_secs(15);
    let answer = bounded(
        &p,
        timeout,
        format!("init transactions of {id}"),
        {
            let topic = topic.to_string();
            move |p| rtlake_kafka::client::init_transactions_promptly(p, &topic, timeout)
        },
    )
    .await;
    // The probe is destroyed on a thread of its own: librdkafka's destroy of a producer that
    // was refused waits out a poll (~100 ms), which held up every sink's open.
    std::thread::spawn(move || drop(p));
    match answer {
        Ok(()) => true,
        Err(e) if no_transactions_here(&e) => {
            tracing::debug!(error = %rtlake_core::error::Chain(&e), "the cluster refused a transactional producer");
            false
        }
        Err(e) => {
            // Not "this cluster has no transactions": a timeout, a coordinator that did
            // not answer, a refused credential. The user asked for `auto`, not for a
            // silent downgrade: say why, and count it.
            let reason = match &e {
                Error::Engine {
                    kind: Kind::Sink, ..
                } => "timeout".to_string(),
                Error::Kafka(rtlake_kafka::Error::Kafka { cause, .. }) => cause
                    .rdkafka_error_code()
                    .map_or_else(|| "error".to_string(), |c| format!("{c:?}")),
                _ => "error".to_string(),
            };
            rtlake_core::metrics::global()
                .run
                .sink_downgrades
                .with_label_values(&[cfg.run.pipeline.as_str(), topic, &reason])
                .inc();
            tracing::warn!(error = %rtlake_core::error::Chain(&e), %reason, topic, "the transaction probe failed; the Kafka sink runs at least once (run.sink-transactions = on makes this an error)");
            false
        }
    }
}
