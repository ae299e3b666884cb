//! Event-time windows under a per-partition watermark (docs/architecture.md, "Exactly once").
//!
//! One [`WindowOperator`] serves one input partition. In offset order, the watermark before an
//! event is the largest event time seen earlier in that partition minus the allowed lateness; an
//! event below it is late and refused (the caller writes it to `_rejected` as `late`). So whether
//! an event is late does not depend on how the stream was cut into epochs. A window `[start,
//! end)` is final once the watermark is at or past its end. [`WindowOperator::emit`], called at
//! the end of each epoch, gives the rows of the output mode: append (final windows, once), update
//! (windows changed since the last emit) or complete (every window). Times are µs since the epoch.

use crate::operator::KeyMap;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::hash::Hash;

/// How events are grouped in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling {
        /// Window length, µs.
        size: i64,
    },
    /// Windows of `size` starting every `slide` (an event is in `size / slide` windows).
    Sliding {
        /// Window length, µs.
        size: i64,
        /// Distance between window starts, µs.
        slide: i64,
    },
    /// Per key, events closer than `gap` form one session `[first, last + gap)`.
    Session {
        /// Inactivity that closes a session, µs.
        gap: i64,
    },
}

impl WindowSpec {
    /// The fixed windows an event time falls in, in start order (none for sessions). An
    /// iterator, not a list: it runs once per event, and a tumbling window is one pair.
    pub fn windows_of(&self, t: i64) -> impl Iterator<Item = (i64, i64)> + use<> {
        let (size, slide) = match *self {
            Self::Tumbling { size } => (size, size),
            Self::Sliding { size, slide } => (size, slide),
            // An empty range: no fixed window.
            Self::Session { .. } => (1, 1),
        };
        let last = t.div_euclid(slide) * slide;
        let first = match self {
            Self::Session { .. } => last + slide,
            _ => last - (size - 1).div_euclid(slide) * slide,
        };
        std::iter::successors(Some(first), move |s| Some(s + slide))
            .take_while(move |s| *s <= last)
            .filter(move |s| *s <= t && t < s + size)
            .map(move |s| (s, s + size))
    }
}

/// Which rows [`WindowOperator::emit`] gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputMode {
    /// Each window once, when it is final.
    Append,
    /// Every window that changed since the last emit, final or not.
    Update,
    /// Every window held, each time.
    Complete,
}

/// The watermark of one input partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    lateness: i64,
    max_seen: Option<i64>,
}

impl Watermark {
    /// A watermark that trails the largest event time by `lateness` µs.
    pub fn new(lateness: i64) -> Self {
        Self {
            lateness,
            max_seen: None,
        }
    }

    /// The watermark now (none before the first event).
    pub fn current(&self) -> Option<i64> {
        self.max_seen.map(|m| m - self.lateness)
    }

    /// Checks an event against the watermark before it, then advances; `false` if it is late.
    pub fn observe(&mut self, t: i64) -> bool {
        let late = self.current().is_some_and(|w| t < w);
        self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
        !late
    }
}

/// Aggregates of a window over each value column: count, sum, min, max, avg and the last value
/// (of the latest event time; the later in offset order on a tie). Every field stays finite, so
/// the state serialises as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    /// Events.
    pub count: u64,
    /// Sum per column.
    pub sum: Vec<f64>,
    /// Minimum per column.
    pub min: Vec<f64>,
    /// Maximum per column.
    pub max: Vec<f64>,
    /// Last value per column.
    pub last: Vec<f64>,
    /// The event time of `last`.
    pub last_time: i64,
}

impl Acc {
    fn new(n: usize) -> Self {
        Self {
            count: 0,
            sum: vec![0.0; n],
            min: vec![0.0; n],
            max: vec![0.0; n],
            last: vec![0.0; n],
            last_time: i64::MIN,
        }
    }

    fn add(&mut self, t: i64, values: &[f64]) {
        let first = self.count == 0;
        self.count += 1;
        for (i, v) in values.iter().enumerate() {
            self.sum[i] += v;
            self.min[i] = if first { *v } else { self.min[i].min(*v) };
            self.max[i] = if first { *v } else { self.max[i].max(*v) };
        }
        if t >= self.last_time {
            self.last.copy_from_slice(values);
            self.last_time = t;
        }
    }

    fn merge(&mut self, o: &Acc) {
        let (mine, theirs) = (self.count > 0, o.count > 0);
        self.count += o.count;
        for i in 0..self.sum.len() {
            self.sum[i] += o.sum[i];
            if theirs {
                self.min[i] = if mine {
                    self.min[i].min(o.min[i])
                } else {
                    o.min[i]
                };
                self.max[i] = if mine {
                    self.max[i].max(o.max[i])
                } else {
                    o.max[i]
                };
            }
        }
        if o.last_time >= self.last_time {
            self.last.clone_from(&o.last);
            self.last_time = o.last_time;
        }
    }

    /// The mean of column `i`.
    pub fn avg(&self, i: usize) -> f64 {
        self.sum[i] / self.count as f64
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Win {
    start: i64,
    end: i64,
    acc: Acc,
    dirty: bool,
}

/// A window's row as emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowRow<K> {
    /// The grouping key.
    pub key: K,
    /// Window start, inclusive.
    pub start: i64,
    /// Window end, exclusive.
    pub end: i64,
    /// The aggregates.
    pub acc: Acc,
    /// Whether the watermark has passed the end (no event can change it any more).
    pub is_final: bool,
}

/// An event below the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Late {
    /// The event's time.
    pub time: i64,
    /// The watermark it fell below.
    pub watermark: i64,
}

impl Late {
    /// What a `_rejected` row says of it: `<what> <time> is below partition <p>'s watermark <w>`.
    pub fn describe(&self, what: &str, partition: i32) -> String {
        let at = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        };
        format!(
            "{what} {} is below partition {partition}'s watermark {}",
            at(self.time),
            at(self.watermark)
        )
    }
}

/// Keyed event-time window aggregation for one input partition; serialisable as a state snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowOperator<K: Ord + Hash + Clone> {
    spec: WindowSpec,
    mode: OutputMode,
    columns: usize,
    watermark: Watermark,
    /// Hashed, not ordered: an event's key is found in one hash instead of a dozen string
    /// comparisons; [`WindowOperator::emit`] sorts the rows it gives. As a list of pairs in
    /// snapshots, so any key type (tuples too) serialises as JSON.
    #[serde(
        with = "pairs",
        bound(serialize = "K: Serialize", deserialize = "K: Deserialize<'de>")
    )]
    windows: KeyMap<K, Vec<Win>>,
}

mod pairs {
    use crate::operator::KeyMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::hash::Hash;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &KeyMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<
        'de,
        K: Deserialize<'de> + Hash + Eq,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    >(
        d: D,
    ) -> Result<KeyMap<K, V>, D::Error> {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl<K: Ord + Hash + Clone> WindowOperator<K> {
    /// An operator over `columns` value columns, with `lateness` µs of allowed lateness.
    pub fn new(spec: WindowSpec, lateness: i64, mode: OutputMode, columns: usize) -> Self {
        Self {
            spec,
            mode,
            columns,
            watermark: Watermark::new(lateness),
            windows: KeyMap::default(),
        }
    }

    /// The partition's watermark.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark.current()
    }

    /// Windows held.
    pub fn state_len(&self) -> usize {
        self.windows.values().map(Vec::len).sum()
    }

    /// Adds an event (in offset order); a late one changes nothing and is returned.
    pub fn process(&mut self, key: K, t: i64, values: &[f64]) -> Result<(), Late> {
        self.observe(t)?;
        let wins = self.windows.entry(key).or_default();
        add_event(self.spec, self.columns, wins, t, values);
        Ok(())
    }

    /// The same with a borrowed key: `own` makes the key only when it is new to the state, so
    /// an event of a key already held costs a lookup, not a copy of its key.
    pub fn process_by<Q>(
        &mut self,
        key: &Q,
        own: impl FnOnce() -> K,
        t: i64,
        values: &[f64],
    ) -> Result<(), Late>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.observe(t)?;
        let wins = match self.windows.get_mut(key) {
            Some(wins) => wins,
            None => self.windows.entry(own()).or_default(),
        };
        add_event(self.spec, self.columns, wins, t, values);
        Ok(())
    }

    /// Checks an event's time against the watermark before it, then advances the watermark.
    fn observe(&mut self, t: i64) -> Result<(), Late> {
        let before = self.watermark.current();
        if self.watermark.observe(t) {
            Ok(())
        } else {
            Err(Late {
                time: t,
                watermark: before.unwrap_or(i64::MIN),
            })
        }
    }

    /// Adds `delta` to column `column`'s sum in `key`'s open windows that contain `t`, without
    /// counting an event (for figures known only later, like time spent empty). Windows already
    /// final and gone are not changed; returns how many windows took it.
    pub fn adjust<Q>(&mut self, key: &Q, t: i64, column: usize, delta: f64) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(wins) = self.windows.get_mut(key) else {
            return 0;
        };
        let mut n = 0;
        for w in wins.iter_mut().filter(|w| w.start <= t && t < w.end) {
            w.acc.sum[column] += delta;
            w.dirty = true;
            n += 1;
        }
        n
    }

    /// The rows of the output mode at the end of an epoch. Final windows leave the state in
    /// append and update modes; complete mode keeps every window.
    pub fn emit(&mut self) -> Vec<WindowRow<K>> {
        let wm = self.watermark.current();
        let is_final = |w: &Win| wm.is_some_and(|wm| wm >= w.end);
        let mut out = Vec::new();
        for (key, wins) in self.windows.iter_mut() {
            for w in wins.iter_mut() {
                let fin = is_final(w);
                let show = match self.mode {
                    OutputMode::Append => fin,
                    OutputMode::Update => w.dirty,
                    OutputMode::Complete => true,
                };
                if show {
                    out.push(WindowRow {
                        key: key.clone(),
                        start: w.start,
                        end: w.end,
                        acc: w.acc.clone(),
                        is_final: fin,
                    });
                }
                w.dirty = false;
            }
            if self.mode != OutputMode::Complete {
                wins.retain(|w| !is_final(w));
            }
        }
        self.windows.retain(|_, w| !w.is_empty());
        // In key order, each key's windows in start order (the sort is stable), whatever the
        // map's order: the rows of an epoch do not depend on its hashing.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// Adds an event to a key's windows (kept in start order), opening or merging windows as the
/// spec says.
fn add_event(spec: WindowSpec, cols: usize, wins: &mut Vec<Win>, t: i64, values: &[f64]) {
    match spec {
        WindowSpec::Session { gap } => {
            let mut merged = Win {
                start: t,
                end: t + gap,
                acc: Acc::new(cols),
                dirty: true,
            };
            merged.acc.add(t, values);
            // Every session the new one touches joins it (an event can bridge two).
            let mut i = 0;
            while i < wins.len() {
                let w = &wins[i];
                if w.start < merged.end && merged.start < w.end {
                    let w = wins.remove(i);
                    merged.start = merged.start.min(w.start);
                    merged.end = merged.end.max(w.end);
                    merged.acc.merge(&w.acc);
                } else {
                    i += 1;
                }
            }
            let at = wins.partition_point(|w| w.start < merged.start);
            wins.insert(at, merged);
        }
        spec => {
            for (start, end) in spec.windows_of(t) {
                let at = wins.partition_point(|w| w.start < start);
                if wins.get(at).is_none_or(|w| w.start != start) {
                    wins.insert(
                        at,
                        Win {
                            start,
                            end,
                            acc: Acc::new(cols),
                            dirty: false,
                        },
                    );
                }
                let w = &mut wins[at];
                w.acc.add(t, values);
                w.dirty = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
