//! The bike pipeline on the stream engine: the station decoder, the operators `bronze`,
//! `changes`, `station-hourly` and `district-5min`, and the bronze replay source, registered
//! by name with [`register`].
//!
//! - [`bronze`]: every decodable station event as a `bronze.station_status` row.
//! - [`silver`]: the change rule ([`crate::changes`]) as `silver.station_changes`.
//! - [`gold`]: hourly windows per station; [`district`]: 5-minute partials per district.
//! - [`udf`]: `district(lat, lon)` for SQL.
//! - [`bronze_source`]: a lake's bronze table replayed as the messages it was made from.

pub mod bronze;
pub mod bronze_source;
pub mod district;
pub mod gold;
pub mod silver;
pub mod udf;

use crate::districts::DistrictCache;
use crate::model::{DecodeError, StationStatus};
use crate::tables;
use chrono::{DateTime, Utc};
use rtlake_core::schema::RejectReason;
use rtlake_stream::config::UnknownFields;
use rtlake_stream::config::{PipelineConfig, SinkConfig};
use rtlake_stream::input::{EpochInput, InputDecoder};
use rtlake_stream::registry::{Registry, Replay};
use rtlake_stream::source::RawMessage;
use std::any::Any;
use std::sync::Arc;

/// The bike pipeline's declaration (`pipelines/bikes.toml`, compiled in): the sinks `rtlake run`
/// runs when the configuration names none.
pub const PIPELINE: &str = include_str!("../../../../pipelines/bikes.toml");

/// The sinks of [`PIPELINE`]: bronze, silver (the changes, and each station's current status), both
/// gold tables and the changes topic.
pub fn pipeline() -> Vec<SinkConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        sinks: Vec<SinkConfig>,
    }
    // The file is part of the source tree; a unit test parses it.
    toml::from_str::<File>(PIPELINE)
        .expect("pipelines/bikes.toml parses")
        .sinks
}

/// Registers the bike pipeline's operators, decoder, SQL function `district`, replay source
/// and the pipeline itself (the default of `rtlake run`).
pub fn register(registry: &mut Registry) {
    let lateness = |cfg: &PipelineConfig| cfg.run.lateness.get().as_micros() as i64;
    // Station rows go to Kafka keyed by station; the window operators' rows do not go to Kafka.
    let key = Some("station_id");
    registry
        .operator("bronze", tables::BRONZE_STATION_STATUS, key, |cfg| {
            Ok(Box::new(bronze::BronzeOperator {
                keep_extra: cfg.run.unknown_fields == UnknownFields::Keep,
            }))
        })
        .operator("changes", tables::SILVER_STATION_CHANGES, key, |_| {
            Ok(Box::new(silver::SilverOperator::default()))
        })
        .operator(
            "station-hourly",
            tables::GOLD_STATION_HOURLY,
            None,
            move |cfg| Ok(Box::new(gold::HourlyOperator::new(lateness(cfg)))),
        )
        .operator(
            "district-5min",
            tables::GOLD_DISTRICT_5MIN,
            None,
            move |cfg| Ok(Box::new(district::District5MinOperator::new(lateness(cfg)))),
        )
        .decoder(move |cfg| {
            Box::new(StationDecoder {
                places: DistrictCache::default(),
                unknown: cfg.run.unknown_fields,
                max_future: cfg.run.max_future.get(),
                lateness: lateness(cfg),
            })
        })
        .udf(udf::district())
        .pipeline(pipeline())
        .replay(Replay {
            table: tables::BRONZE_STATION_STATUS,
            read: Box::new(|uri, lake| {
                Box::pin(async move { bronze_source::read(&uri, &lake).await })
            }),
        });
}

/// A registry with the bike pipeline in it.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register(&mut r);
    r
}

/// Decodes station events and places each station in its district (the stream-static join).
pub struct StationDecoder {
    places: DistrictCache,
    unknown: UnknownFields,
    max_future: std::time::Duration,
    /// `run.lateness`, µs: how far ahead of its partition one event may be on its own.
    lateness: i64,
}

impl InputDecoder for StationDecoder {
    fn decode(
        &mut self,
        _topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
    ) -> Box<dyn Any + Send + Sync> {
        Box::new(
            Stations::decode(msgs, &mut self.places, self.unknown)
                .guard_future(msgs, now, self.max_future)
                .guard_ahead(msgs, self.lateness),
        )
    }
}

/// An epoch's messages decoded as station status, each with its district, index for index.
pub struct Stations {
    /// Each message's decoding.
    pub decoded: Vec<Result<StationStatus, DecodeError>>,
    /// Each decoded message's district.
    pub districts: Vec<Option<Arc<str>>>,
}

impl Stations {
    /// The stations of an epoch the [`StationDecoder`] decoded, for operator `op`.
    pub fn of<'i>(input: &'i EpochInput<'_>, op: &str) -> rtlake_stream::Result<&'i Self> {
        input.decoded::<Self>(op)
    }

    /// Decodes the messages and places each station in its district.
    pub fn decode(msgs: &[RawMessage], places: &mut DistrictCache, unknown: UnknownFields) -> Self {
        let decode = |m: &RawMessage| match &m.payload {
            Some(p) => StationStatus::decode_with(p, unknown),
            None => Err(DecodeError {
                reason: RejectReason::Decode,
                error: "message has no value".into(),
            }),
        };
        // Large epochs are decoded on every core, in order.
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let decoded: Vec<_> = if msgs.len() < 20_000 || threads < 2 {
            msgs.iter().map(decode).collect()
        } else {
            let chunk = msgs.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let parts: Vec<_> = msgs
                    .chunks(chunk)
                    .map(|c| scope.spawn(move || c.iter().map(decode).collect::<Vec<_>>()))
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        let districts = decoded
            .iter()
            .map(|d| d.as_ref().ok().and_then(|s| places.district(s.lat, s.lon)))
            .collect();
        Self { decoded, districts }
    }

    /// Turns each decoded event whose time is more than `max_future` ahead of the clock into a
    /// `future` rejection, so that one bad clock upstream moves no watermark and no state. The
    /// clock is the time the message entered Kafka (its timestamp), or the epoch's time `now` if
    /// that is earlier or missing (the file source): a re-run of the epoch decides the same.
    pub fn guard_future(
        mut self,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
    ) -> Self {
        let now_ms = now.timestamp_millis();
        let ahead = i64::try_from(max_future.as_millis()).unwrap_or(i64::MAX);
        for (m, d) in msgs.iter().zip(self.decoded.iter_mut()) {
            let Ok(s) = d else { continue };
            let clock = m.timestamp.map_or(now_ms, |t| t.min(now_ms));
            let at = s.polled_at.timestamp_millis();
            if at.saturating_sub(clock) > ahead {
                let clock = DateTime::<Utc>::from_timestamp_millis(clock).unwrap_or(now);
                let error = format!(
                    "event time {} is {} ahead of the clock ({}); run.max-future is {}",
                    s.polled_at.to_rfc3339(),
                    humanize(std::time::Duration::from_millis(
                        (at - clock.timestamp_millis()) as u64
                    )),
                    clock.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    humanize(max_future)
                );
                *d = Err(DecodeError {
                    reason: RejectReason::Future,
                    error,
                });
            }
        }
        self
    }

    /// Turns each event that [`rtlake_stream::ahead::screen`] finds alone far ahead of its
    /// partition into a `future` rejection: a bad clock upstream moves no watermark and pins no
    /// station's state.
    pub fn guard_ahead(mut self, msgs: &[RawMessage], lateness: i64) -> Self {
        let events = msgs
            .iter()
            .zip(&self.decoded)
            .enumerate()
            .filter_map(|(i, (m, d))| {
                d.as_ref()
                    .ok()
                    .map(|s| (i, m.partition, s.polled_at.timestamp_micros()))
            });
        for a in rtlake_stream::ahead::screen(events, lateness) {
            let error = a.describe("polledAt", msgs[a.index].partition, lateness);
            self.decoded[a.index] = Err(DecodeError {
                reason: RejectReason::Future,
                error,
            });
        }
        self
    }

    /// Each message with its decoding and district.
    pub fn iter<'i>(
        &'i self,
        msgs: &'i [RawMessage],
    ) -> impl Iterator<
        Item = (
            &'i RawMessage,
            &'i Result<StationStatus, DecodeError>,
            Option<&'i Arc<str>>,
        ),
    > {
        msgs.iter()
            .zip(&self.decoded)
            .zip(&self.districts)
            .map(|((m, d), p)| (m, d, p.as_ref()))
    }
}

/// An epoch of station events as the engine hands it to the operators (for tests).
#[cfg(test)]
pub(crate) fn epoch<'a>(msgs: &'a [RawMessage], now: DateTime<Utc>) -> EpochInput<'a> {
    let stations = Stations::decode(
        msgs,
        &mut DistrictCache::default(),
        UnknownFields::default(),
    );
    EpochInput::domain("t", msgs, now, Box::new(stations))
}

/// A duration in its two largest units, zeros left out: `73d 4h`, `1h`, `2m 5s`.
fn humanize(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let units = [
        (s / 86_400, "d"),
        (s % 86_400 / 3600, "h"),
        (s % 3600 / 60, "m"),
        (s % 60, "s"),
    ];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    let parts: Vec<String> = units[first..(first + 2).min(4)]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod pipeline_tests {
    use super::*;

    #[test]
    fn the_default_pipeline_is_pipelines_bikes_toml() {
        let sinks = pipeline();
        let ops: Vec<(&str, Option<&str>)> = sinks
            .iter()
            .map(|s| (s.operator.as_str(), s.topic.as_deref()))
            .collect();
        assert_eq!(
            ops,
            [
                ("bronze", None),
                ("changes", None),
                ("bronze", None),
                ("station-hourly", None),
                ("district-5min", None),
                ("changes", Some("bike.station-changes")),
            ]
        );
        let r = registry();
        assert_eq!(r.default_sinks(), sinks);
        let run = rtlake_stream::config::RunConfig::default();
        assert_eq!(run.sinks(r.default_sinks()), sinks);
        run.check_pipeline(&Default::default(), &r)
            .expect("the default pipeline passes its own checks");
    }

    #[test]
    fn a_window_operator_is_not_a_kafka_sink() {
        let mut run = rtlake_stream::config::RunConfig::default();
        let mut s = pipeline().remove(3);
        assert_eq!(s.operator, "station-hourly");
        s.topic = Some("hourly".into());
        run.sinks = Some(vec![s]);
        let e = run
            .check_pipeline(&Default::default(), &registry())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("station-hourly has no message key") && e.contains("bronze, changes"),
            "{e}"
        );
    }
}
