//! The bikeList row, the station status event on the topic, and its decoding for the lake.

use chrono::{DateTime, FixedOffset};
use rtlake_core::schema::RejectReason;
use rtlake_stream::config::UnknownFields;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// One row of the bikeList API, every field a string, exactly as the API sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiRow {
    /// Racks at the station.
    pub rack_tot_cnt: String,
    /// Display name, e.g. `102. 망원역 1번출구 앞`.
    pub station_name: String,
    /// Bikes parked now.
    pub parking_bike_tot_cnt: String,
    /// Bikes as a percentage of racks (can exceed 100).
    pub shared: String,
    /// Latitude, decimal degrees.
    pub station_latitude: String,
    /// Longitude, decimal degrees.
    pub station_longitude: String,
    /// Station id, e.g. `ST-4`: the Kafka key.
    pub station_id: String,
}

/// The value of a `bike.station-status` message: the API row verbatim plus `polledAt`.
///
/// Serialising it gives compact JSON in the contract's key order, non-ASCII kept as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StationEvent {
    /// See [`ApiRow::rack_tot_cnt`].
    pub rack_tot_cnt: String,
    /// See [`ApiRow::station_name`].
    pub station_name: String,
    /// See [`ApiRow::parking_bike_tot_cnt`].
    pub parking_bike_tot_cnt: String,
    /// See [`ApiRow::shared`].
    pub shared: String,
    /// See [`ApiRow::station_latitude`].
    pub station_latitude: String,
    /// See [`ApiRow::station_longitude`].
    pub station_longitude: String,
    /// See [`ApiRow::station_id`].
    pub station_id: String,
    /// The poll's start time, RFC 3339 with offset.
    pub polled_at: String,
}

impl StationEvent {
    /// The event of an API row polled at `polled_at`.
    pub fn new(row: ApiRow, polled_at: String) -> Self {
        Self {
            rack_tot_cnt: row.rack_tot_cnt,
            station_name: row.station_name,
            parking_bike_tot_cnt: row.parking_bike_tot_cnt,
            shared: row.shared,
            station_latitude: row.station_latitude,
            station_longitude: row.station_longitude,
            station_id: row.station_id,
            polled_at,
        }
    }

    /// The message value: one line of compact JSON (no newline).
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(self).expect("strings serialise")
    }
}

/// A decoded, validated station status: one row of `bronze.station_status` before enrichment.
#[derive(Clone, Debug, PartialEq)]
pub struct StationStatus {
    /// Station id.
    pub station_id: String,
    /// Station name.
    pub station_name: String,
    /// Racks.
    pub rack_total: i32,
    /// Bikes parked.
    pub bikes_parked: i32,
    /// Percentage shared.
    pub shared_pct: i32,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// When the station was polled.
    pub polled_at: DateTime<FixedOffset>,
    /// The event's fields the decoder does not know, as a JSON object, when asked to keep them.
    pub extra: Option<String>,
}

/// Why a message could not become a [`StationStatus`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// `decode` (not JSON of the right shape) or `validation` (a field's value is wrong).
    pub reason: RejectReason,
    /// The detail, naming the field and the value.
    pub error: String,
}

/// When a known field of a JSON object holds something else than the string the API sends:
/// says which and what (serde's own message gives only a line and column).
fn type_change(value: &[u8]) -> Option<String> {
    let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(value).ok()?;
    EVENT_FIELDS.iter().find_map(|k| {
        let v = obj.get(*k)?;
        let kind = match v {
            serde_json::Value::String(_) => return None,
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
        };
        Some(format!(
            "field {k} is {kind} ({v}), not the string the API sends: a type change is refused"
        ))
    })
}

/// The event's fields, as the producer writes them, in the contract's order.
pub const EVENT_FIELDS: [&str; 8] = [
    "rackTotCnt",
    "stationName",
    "parkingBikeTotCnt",
    "shared",
    "stationLatitude",
    "stationLongitude",
    "stationId",
    "polledAt",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent<'a> {
    #[serde(borrow)]
    rack_tot_cnt: Cow<'a, str>,
    #[serde(borrow)]
    station_name: Cow<'a, str>,
    #[serde(borrow)]
    parking_bike_tot_cnt: Cow<'a, str>,
    #[serde(borrow)]
    shared: Cow<'a, str>,
    #[serde(borrow)]
    station_latitude: Cow<'a, str>,
    #[serde(borrow)]
    station_longitude: Cow<'a, str>,
    #[serde(borrow)]
    station_id: Cow<'a, str>,
    #[serde(borrow)]
    polled_at: Cow<'a, str>,
}

impl<'a> From<[&'a str; 8]> for RawEvent<'a> {
    /// The values of [`EVENT_FIELDS`], in its order.
    fn from(fields: [&'a str; 8]) -> Self {
        let [rack, name, parked, shared, lat, lon, id, polled] = fields.map(Cow::Borrowed);
        Self {
            rack_tot_cnt: rack,
            station_name: name,
            parking_bike_tot_cnt: parked,
            shared,
            station_latitude: lat,
            station_longitude: lon,
            station_id: id,
            polled_at: polled,
        }
    }
}

fn invalid(error: String) -> DecodeError {
    DecodeError {
        reason: RejectReason::Validation,
        error,
    }
}

fn count(field: &str, v: &str) -> Result<i32, DecodeError> {
    match v.trim().parse::<i32>() {
        Ok(n) if n >= 0 => Ok(n),
        Ok(n) => Err(invalid(format!("{field} is negative: {n}"))),
        Err(_) => Err(invalid(format!("{field} is not a whole number: {v:?}"))),
    }
}

fn coord(field: &str, v: &str, limit: f64) -> Result<f64, DecodeError> {
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x.abs() <= limit => Ok(x),
        _ => Err(invalid(format!("{field} is not a coordinate: {v:?}"))),
    }
}

impl StationStatus {
    /// Decodes and validates a message value.
    pub fn decode(value: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(value, UnknownFields::Ignore)
    }

    /// [`StationStatus::decode`], with a policy for fields it does not know.
    pub fn decode_with(value: &[u8], unknown: UnknownFields) -> Result<Self, DecodeError> {
        let mut s = Self::decode_known(value)?;
        if unknown != UnknownFields::Ignore {
            // Parsed a second time only when asked: the object's keys beyond the known ones.
            let all: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(value)
                .map_err(|e| DecodeError {
                    reason: RejectReason::Decode,
                    error: e.to_string(),
                })?;
            let extra: serde_json::Map<String, serde_json::Value> = all
                .into_iter()
                .filter(|(k, _)| !EVENT_FIELDS.contains(&k.as_str()))
                .collect();
            match unknown {
                UnknownFields::Reject if !extra.is_empty() => {
                    let names: Vec<&str> = extra.keys().map(String::as_str).collect();
                    return Err(DecodeError {
                        reason: RejectReason::Decode,
                        error: format!(
                            "fields this pipeline does not know: {} (run.unknown-fields = reject)",
                            names.join(", ")
                        ),
                    });
                }
                UnknownFields::Keep if !extra.is_empty() => {
                    s.extra = Some(serde_json::Value::Object(extra).to_string());
                }
                _ => {}
            }
        }
        Ok(s)
    }

    fn decode_known(value: &[u8]) -> Result<Self, DecodeError> {
        let raw = match crate::flat_json::flat_strings(value, &EVENT_FIELDS) {
            Some(fields) => RawEvent::from(fields),
            // Any other shape, and every error's message, is serde's.
            None => serde_json::from_slice(value).map_err(|e| DecodeError {
                reason: RejectReason::Decode,
                error: type_change(value).unwrap_or_else(|| e.to_string()),
            })?,
        };
        if raw.station_id.trim().is_empty() {
            return Err(invalid("stationId is empty".into()));
        }
        let polled_at = rtlake_core::time::parse_rfc3339(&raw.polled_at).map_err(|e| {
            invalid(format!(
                "polledAt is not an RFC 3339 time with offset: {:?} ({e})",
                raw.polled_at
            ))
        })?;
        Ok(Self {
            rack_total: count("rackTotCnt", &raw.rack_tot_cnt)?,
            bikes_parked: count("parkingBikeTotCnt", &raw.parking_bike_tot_cnt)?,
            shared_pct: count("shared", &raw.shared)?,
            lat: coord("stationLatitude", &raw.station_latitude, 90.0)?,
            lon: coord("stationLongitude", &raw.station_longitude, 180.0)?,
            station_id: raw.station_id.into_owned(),
            station_name: raw.station_name.into_owned(),
            polled_at,
            extra: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"rackTotCnt":"15","stationName":"102. 망원역 1번출구 앞","parkingBikeTotCnt":"16","shared":"107","stationLatitude":"37.55564880","stationLongitude":"126.91062927","stationId":"ST-4","polledAt":"2025-10-01T08:00:15+09:00"}"#;

    #[test]
    fn event_json_has_the_contract_key_order_and_keeps_korean() {
        let e: StationEvent = serde_json::from_str(GOOD).unwrap();
        assert_eq!(e.to_json(), GOOD);
    }

    #[test]
    fn decodes_a_good_event() {
        let s = StationStatus::decode(GOOD.as_bytes()).unwrap();
        assert_eq!(
            (
                s.station_id.as_str(),
                s.rack_total,
                s.bikes_parked,
                s.shared_pct
            ),
            ("ST-4", 15, 16, 107)
        );
        assert_eq!(s.polled_at.timestamp(), 1759273215);
    }

    #[test]
    fn the_fast_path_and_serde_decode_alike() {
        let fast = StationStatus::decode(GOOD.as_bytes()).unwrap();
        assert!(crate::flat_json::flat_strings(GOOD.as_bytes(), &EVENT_FIELDS).is_some());
        // With a space after each comma the message is serde's to read.
        let spaced = GOOD.replace(r#"",""#, r#"", ""#);
        assert!(crate::flat_json::flat_strings(spaced.as_bytes(), &EVENT_FIELDS).is_none());
        assert_eq!(StationStatus::decode(spaced.as_bytes()).unwrap(), fast);
        assert_eq!(fast.station_name, "102. 망원역 1번출구 앞");
    }

    #[test]
    fn bad_messages_say_why() {
        let e = StationStatus::decode(b"not json").unwrap_err();
        assert_eq!(e.reason, RejectReason::Decode);
        let e = StationStatus::decode(GOOD.replace(r#""stationId":"ST-4","#, "").as_bytes())
            .unwrap_err();
        assert_eq!(e.reason, RejectReason::Decode);
        assert!(e.error.contains("stationId"), "{}", e.error);
        let e = StationStatus::decode(GOOD.replace(r#""16""#, r#""many""#).as_bytes()).unwrap_err();
        assert_eq!(e.reason, RejectReason::Validation);
        assert!(
            e.error.contains("parkingBikeTotCnt") && e.error.contains("many"),
            "{}",
            e.error
        );
        let e = StationStatus::decode(
            GOOD.replace("2025-10-01T08:00:15+09:00", "yesterday")
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.reason, RejectReason::Validation);
        assert!(e.error.contains("polledAt"), "{}", e.error);
    }
}
