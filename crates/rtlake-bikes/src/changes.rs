//! The change rule (docs/data-contracts.md): per station, in offset order, compare each snapshot with the
//! stored previous one; `d = prev_bikes − bikes`, `rentals = max(d, 0)`, `returns = max(−d, 0)`.
//!
//! No change row for a station's first snapshot, nor across a gap of more than 600 s; in both
//! cases the snapshot becomes the stored one. A snapshot not after the stored one is a duplicate
//! or stale: no row, the stored one stays, and the caller rejects it with reason `stale`. Rows
//! with both counts zero are not written. The state is keyed by station and lives with the
//! station's input partition.

use rtlake_stream::operator::KeyMap;
use rtlake_stream::ops::changes::Change;

/// The largest gap between two snapshots of a station that still yields a change row.
pub const MAX_GAP_MICROS: i64 = 600 * 1_000_000;

/// A station's snapshot as the rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The station.
    pub station_id: String,
    /// When it was polled, µs since the epoch.
    pub polled_at: i64,
    /// Bikes parked.
    pub bikes: i32,
}

/// The stored previous snapshot of a station.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Last {
    /// When, µs since the epoch.
    pub polled_at: i64,
    /// Bikes parked.
    pub bikes: i32,
}

/// What the rule made of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The station's first snapshot: stored, no row.
    First,
    /// More than 600 s after the stored one: stored, no row.
    Reset {
        /// The gap, µs.
        gap: i64,
    },
    /// Not after the stored one: a duplicate or stale; the stored one stays; reject as `stale`.
    Stale {
        /// The stored snapshot's time, µs.
        stored: i64,
    },
    /// The same count as before: stored, no row.
    Unchanged,
    /// Bikes went out or came in: a row of `silver.station_changes`.
    Change {
        /// The previous snapshot.
        prev: Last,
        /// Bikes taken (`max(prev − now, 0)`).
        rentals: i32,
        /// Bikes returned (`max(now − prev, 0)`).
        returns: i32,
    },
}

/// The rule itself: what snapshot `now` makes of the station's stored one, `prev` (`None`: the
/// first). The one definition of rentals and returns: silver's rows and the gold aggregates both
/// come from it. The stored snapshot becomes `now` unless the outcome is [`Outcome::Stale`].
pub fn rule(prev: Option<Last>, now: Last) -> Outcome {
    // The engine's change rule (`rtlake_stream::ops::changes::rule`), with bikes as the value:
    // a decrease is rentals, an increase returns.
    let change = rtlake_stream::ops::changes::rule(
        prev.map(|p| (p.polled_at, i64::from(p.bikes))),
        (now.polled_at, i64::from(now.bikes)),
        MAX_GAP_MICROS,
    );
    match (prev, change) {
        (Some(before), Change::Changed { increase, decrease }) => Outcome::Change {
            prev: before,
            // A difference of two counts, clamped should it not fit an i32.
            rentals: i32::try_from(decrease).unwrap_or(i32::MAX),
            returns: i32::try_from(increase).unwrap_or(i32::MAX),
        },
        (_, Change::Stale { stored }) => Outcome::Stale { stored },
        (_, Change::Reset { gap }) => Outcome::Reset { gap },
        (_, Change::Unchanged) => Outcome::Unchanged,
        (_, Change::First | Change::Changed { .. }) => Outcome::First,
    }
}

/// The per-station state of one input partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<(String, Last)>", into = "Vec<(String, Last)>")]
pub struct ChangeState {
    last: KeyMap<String, Last>,
}

impl ChangeState {
    /// Applies the rule to the next snapshot of its station (in offset order).
    pub fn apply(&mut self, s: &Snapshot) -> Outcome {
        let now = Last {
            polled_at: s.polled_at,
            bikes: s.bikes,
        };
        let Some(stored) = self.last.get_mut(&s.station_id) else {
            self.last.insert(s.station_id.clone(), now);
            return Outcome::First;
        };
        let outcome = rule(Some(*stored), now);
        if !matches!(outcome, Outcome::Stale { .. }) {
            *stored = now;
        }
        outcome
    }

    /// Forgets stations silent for longer than the engine's state TTL
    /// ([`rtlake_stream::ops::changes::STATE_TTL_MICROS`]) behind the newest snapshot held.
    pub fn expire(&mut self) -> usize {
        rtlake_stream::ops::changes::expire(&mut self.last, |l| l.polled_at)
    }

    /// Stations held.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no station is held.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The state as sorted (station, last) pairs, for a checkpoint.
    pub fn snapshot(&self) -> Vec<(String, Last)> {
        let mut v: Vec<(String, Last)> = self.last.iter().map(|(k, l)| (k.clone(), *l)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Restores a state written by [`ChangeState::snapshot`].
    pub fn restore(entries: impl IntoIterator<Item = (String, Last)>) -> Self {
        Self {
            last: entries.into_iter().collect(),
        }
    }
}

impl From<Vec<(String, Last)>> for ChangeState {
    fn from(v: Vec<(String, Last)>) -> Self {
        Self::restore(v)
    }
}

impl From<ChangeState> for Vec<(String, Last)> {
    fn from(s: ChangeState) -> Self {
        s.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn snap(id: &str, secs: i64, bikes: i32) -> Snapshot {
        Snapshot {
            station_id: id.into(),
            polled_at: secs * S,
            bikes,
        }
    }

    #[test]
    fn rentals_and_returns_from_consecutive_snapshots() {
        let mut st = ChangeState::default();
        assert_eq!(st.apply(&snap("ST-4", 0, 10)), Outcome::First);
        assert_eq!(
            st.apply(&snap("ST-4", 15, 7)),
            Outcome::Change {
                prev: Last {
                    polled_at: 0,
                    bikes: 10
                },
                rentals: 3,
                returns: 0
            }
        );
        assert_eq!(
            st.apply(&snap("ST-4", 30, 9)),
            Outcome::Change {
                prev: Last {
                    polled_at: 15 * S,
                    bikes: 7
                },
                rentals: 0,
                returns: 2
            }
        );
        assert_eq!(st.apply(&snap("ST-4", 45, 9)), Outcome::Unchanged);
        // Stations do not interfere.
        assert_eq!(st.apply(&snap("ST-5", 45, 1)), Outcome::First);
    }

    #[test]
    fn a_duplicate_or_stale_snapshot_is_stale_and_keeps_the_stored_one() {
        let mut st = ChangeState::default();
        st.apply(&snap("ST-4", 30, 10));
        assert_eq!(
            st.apply(&snap("ST-4", 30, 10)),
            Outcome::Stale { stored: 30 * S },
            "duplicate"
        );
        assert_eq!(
            st.apply(&snap("ST-4", 15, 2)),
            Outcome::Stale { stored: 30 * S },
            "older"
        );
        // The stored one stayed: the next change is against 10 bikes at 30 s.
        assert_eq!(
            st.apply(&snap("ST-4", 45, 8)),
            Outcome::Change {
                prev: Last {
                    polled_at: 30 * S,
                    bikes: 10
                },
                rentals: 2,
                returns: 0
            }
        );
    }

    #[test]
    fn a_gap_over_600_seconds_writes_no_row_and_restarts_from_the_new_snapshot() {
        let mut st = ChangeState::default();
        st.apply(&snap("ST-4", 0, 10));
        assert_eq!(
            st.apply(&snap("ST-4", 601, 3)),
            Outcome::Reset { gap: 601 * S }
        );
        assert_eq!(
            st.apply(&snap("ST-4", 616, 4)),
            Outcome::Change {
                prev: Last {
                    polled_at: 601 * S,
                    bikes: 3
                },
                rentals: 0,
                returns: 1
            }
        );
        // Exactly 600 s is not more than 600 s: a row.
        assert!(matches!(
            st.apply(&snap("ST-4", 1216, 0)),
            Outcome::Change { rentals: 4, .. }
        ));
    }

    #[test]
    fn state_survives_a_snapshot_and_restore() {
        let mut st = ChangeState::default();
        st.apply(&snap("ST-4", 0, 10));
        st.apply(&snap("ST-9", 0, 1));
        let mut back = ChangeState::restore(st.snapshot());
        assert_eq!(back, st);
        assert_eq!(
            back.apply(&snap("ST-4", 15, 9)),
            st.apply(&snap("ST-4", 15, 9))
        );
    }
}
