//! The replay simulator: station counts start from the recorded bikeList snapshot and move with
//! the recorded trips, one full poll per interval. Its output matches
//! `shared/bench/gen_events.py` byte for byte for the same parameters (docs/data-contracts.md).

use crate::model::{ApiRow, StationEvent};
use crate::{Error, Result};
use chrono::{DateTime, FixedOffset, NaiveDateTime};
use std::collections::HashMap;
use std::path::Path;

/// The recorded data: the station snapshot and the day's trips.
#[derive(Clone, Debug)]
pub struct RecordedData {
    stations: Vec<ApiRow>,
    /// (time in µs since the epoch, station index, +1 return / -1 rental), in time order.
    moves: Vec<(i64, usize, i64)>,
}

/// The copy of `data/seoul-bike` built into the binary, so the replay needs no files.
const BUILTIN_PAGES: [(&str, &str); 3] = [
    (
        "bikeList_now_1001_2000.json",
        include_str!("../../../data/seoul-bike/bikeList_now_1001_2000.json"),
    ),
    (
        "bikeList_now_1_1000.json",
        include_str!("../../../data/seoul-bike/bikeList_now_1_1000.json"),
    ),
    (
        "bikeList_now_2001_3000.json",
        include_str!("../../../data/seoul-bike/bikeList_now_2001_3000.json"),
    ),
];
const BUILTIN_TRIPS: &str = include_str!("../../../data/seoul-bike/trips_2025-10-01.csv");

impl RecordedData {
    /// The data built into the binary.
    pub fn builtin() -> Result<Self> {
        let pages: Vec<(String, String)> = BUILTIN_PAGES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        Self::parse(pages, BUILTIN_TRIPS)
    }

    /// Reads `bikeList_now_*.json` and `trips_2025-10-01.csv` from a folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let io = |p: &Path, e: std::io::Error| Error::Data(format!("{}: {e}", p.display()));
        let mut pages = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("bikeList_now_") && name.ends_with(".json") {
                pages.push((
                    name,
                    std::fs::read_to_string(entry.path()).map_err(|e| io(&entry.path(), e))?,
                ));
            }
        }
        if pages.is_empty() {
            return Err(Error::Data(format!(
                "{}: no bikeList_now_*.json files",
                dir.display()
            )));
        }
        let trips_path = dir.join("trips_2025-10-01.csv");
        let trips = std::fs::read_to_string(&trips_path).map_err(|e| io(&trips_path, e))?;
        Self::parse(pages, &trips)
    }

    fn parse(mut pages: Vec<(String, String)>, trips: &str) -> Result<Self> {
        // Files in name order, then a stable sort by the station number: gen_events.py's order.
        pages.sort_by(|a, b| a.0.cmp(&b.0));
        let mut stations = Vec::new();
        for (name, text) in &pages {
            let page = crate::api::parse_response(text.as_bytes())
                .map_err(|e| Error::Data(format!("{name}: {e}")))?;
            stations.extend(page.rows);
        }
        let number = |r: &ApiRow| {
            r.station_id
                .split('-')
                .nth(1)
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(i64::MAX)
        };
        stations.sort_by_key(number);
        let index: HashMap<&str, usize> = stations
            .iter()
            .enumerate()
            .map(|(i, r)| (r.station_id.as_str(), i))
            .collect();
        let kst = crate::seoul::kst();
        let time = |s: &str, line: usize| -> Result<i64> {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .map(|t| {
                    t.and_local_timezone(kst)
                        .single()
                        .map(|t| t.timestamp_micros())
                        .unwrap_or_default()
                })
                .map_err(|e| Error::Data(format!("trips line {line}: bad time {s:?}: {e}")))
        };
        let mut moves = Vec::new();
        let mut lines = trips.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .ok_or_else(|| Error::Data(format!("trips: no column {name}")))
        };
        let (rent_t, ret_t, rent_s, ret_s) = (
            col("rental_datetime")?,
            col("return_datetime")?,
            col("rental_station_id")?,
            col("return_station_id")?,
        );
        for (n, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            let get = |i: usize| {
                f.get(i)
                    .copied()
                    .ok_or_else(|| Error::Data(format!("trips line {}: too few fields", n + 2)))
            };
            let (rt, tt) = (time(get(rent_t)?, n + 2)?, time(get(ret_t)?, n + 2)?);
            // A move of an unknown station changes nothing; keep its place in the order anyway.
            moves.push((
                rt,
                index.get(get(rent_s)?).copied().unwrap_or(usize::MAX),
                -1,
            ));
            moves.push((tt, index.get(get(ret_s)?).copied().unwrap_or(usize::MAX), 1));
        }
        moves.sort_by_key(|m| m.0); // stable, like Python's sort
        Ok(Self { stations, moves })
    }

    /// The number of stations in the snapshot.
    pub fn station_count(&self) -> usize {
        self.stations.len()
    }
}

/// One poll of the simulated API: every station at one instant.
#[derive(Clone, Debug)]
pub struct Poll {
    /// The poll's number, from 0 at the replay's start.
    pub index: u64,
    /// The poll's time.
    pub polled_at: DateTime<FixedOffset>,
    /// One event per station (per copy of the city).
    pub events: Vec<StationEvent>,
}

/// The simulator: yields polls in order from a start time at a fixed interval.
#[derive(Clone, Debug)]
pub struct Replay {
    data: RecordedData,
    start: DateTime<FixedOffset>,
    interval_us: i64,
    scale: u32,
    parked: Vec<i64>,
    next_move: usize,
    next_poll: u64,
}

impl Replay {
    /// A replay whose poll 0 is at `start`, one poll every `interval`, `scale` copies of the city.
    pub fn new(
        data: RecordedData,
        start: DateTime<FixedOffset>,
        interval: std::time::Duration,
        scale: u32,
    ) -> Self {
        let n = data.stations.len();
        let mut parked = Vec::with_capacity(n * scale as usize);
        for _ in 0..scale {
            parked.extend(
                data.stations
                    .iter()
                    .map(|r| r.parking_bike_tot_cnt.trim().parse::<i64>().unwrap_or(0)),
            );
        }
        Self {
            data,
            start,
            interval_us: interval.as_micros() as i64,
            scale,
            parked,
            next_move: 0,
            next_poll: 0,
        }
    }

    /// The index of the next poll [`Replay::next_poll`] will give.
    pub fn position(&self) -> u64 {
        self.next_poll
    }

    /// The time of poll `index`.
    pub fn poll_time(&self, index: u64) -> DateTime<FixedOffset> {
        self.start + chrono::Duration::microseconds(self.interval_us * index as i64)
    }

    /// Moves the simulation forward so that the next poll is `index` (no events are made).
    pub fn skip_to(&mut self, index: u64) {
        while self.next_poll < index {
            self.advance(self.next_poll);
            self.next_poll += 1;
        }
    }

    fn advance(&mut self, index: u64) {
        let t = self.poll_time(index).timestamp_micros();
        let n = self.data.stations.len();
        while let Some(&(mt, station, delta)) = self.data.moves.get(self.next_move) {
            if mt > t {
                break;
            }
            self.next_move += 1;
            if station == usize::MAX {
                continue;
            }
            for copy in 0..self.scale as usize {
                let p = &mut self.parked[copy * n + station];
                *p = (*p + delta).max(0);
            }
        }
    }

    /// Simulates the next poll.
    pub fn next_poll(&mut self) -> Poll {
        let index = self.next_poll;
        self.advance(index);
        self.next_poll += 1;
        let polled_at = self.poll_time(index);
        let stamp = rtlake_core::time::isoformat(&polled_at);
        let n = self.data.stations.len();
        let mut events = Vec::with_capacity(n * self.scale as usize);
        for copy in 0..self.scale as usize {
            for (i, r) in self.data.stations.iter().enumerate() {
                let bikes = self.parked[copy * n + i];
                let racks: i64 = r.rack_tot_cnt.trim().parse().unwrap_or(0);
                let shared = if racks == 0 {
                    0
                } else {
                    (bikes as f64 * 100.0 / racks as f64).round_ties_even() as i64
                };
                let station_id = if copy == 0 {
                    r.station_id.clone()
                } else {
                    format!("{}-k{copy}", r.station_id)
                };
                events.push(StationEvent {
                    rack_tot_cnt: r.rack_tot_cnt.clone(),
                    station_name: r.station_name.clone(),
                    parking_bike_tot_cnt: bikes.to_string(),
                    shared: shared.to_string(),
                    station_latitude: r.station_latitude.clone(),
                    station_longitude: r.station_longitude.clone(),
                    station_id,
                    polled_at: stamp.clone(),
                });
            }
        }
        Poll {
            index,
            polled_at,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn replay() -> Replay {
        let start = rtlake_core::time::parse_rfc3339("2025-10-01T08:00:00+09:00").unwrap();
        Replay::new(
            RecordedData::builtin().unwrap(),
            start,
            std::time::Duration::from_secs(15),
            1,
        )
    }

    fn sha256_of_polls(r: &mut Replay, polls: u64) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for _ in 0..polls {
            for e in r.next_poll().events {
                h.update(e.to_json().as_bytes());
                h.update(b"\n");
            }
        }
        format!("{:x}", h.finalize())
    }

    /// shared/bench/README.md publishes the sha256 of `gen_events.py --minutes 5`.
    #[test]
    fn five_minutes_match_gen_events_digest() {
        let mut r = replay();
        assert_eq!(r.data.station_count(), 2721);
        assert_eq!(
            sha256_of_polls(&mut r, 20),
            "d79f125648bb3771b2984ead09b2784a19d23e061d25ca5e256d0ec274bb18ef"
        );
    }

    #[test]
    fn skipping_ahead_gives_the_same_polls_as_playing_through() {
        let mut a = replay();
        for _ in 0..7 {
            a.next_poll();
        }
        let mut b = replay();
        b.skip_to(7);
        let (pa, pb) = (a.next_poll(), b.next_poll());
        assert_eq!(pa.index, 7);
        assert_eq!(pa.events, pb.events);
    }

    /// Byte-for-byte against the generator itself, with a scaled city, when python3 and the
    /// shared bench folder are there (CI has both).
    #[test]
    fn matches_gen_events_py_with_scale() {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/gen_events.py");
        if !script.exists() {
            rtlake_core::testing::skip_missing(&format!(
                "{} not found (the shared bench folder beside the clone)",
                script.display()
            ));
            return;
        }
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args([
                "--minutes",
                "2",
                "--scale",
                "2",
                "--start",
                "2025-10-01T18:59:00+09:00",
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let start = rtlake_core::time::parse_rfc3339("2025-10-01T18:59:00+09:00").unwrap();
        let mut r = Replay::new(
            RecordedData::builtin().unwrap(),
            start,
            std::time::Duration::from_secs(15),
            2,
        );
        let mut mine = Vec::new();
        for _ in 0..8 {
            for e in r.next_poll().events {
                writeln!(mine, "{}", e.to_json()).unwrap();
            }
        }
        assert!(mine == out.stdout, "replay differs from gen_events.py");
    }
}
