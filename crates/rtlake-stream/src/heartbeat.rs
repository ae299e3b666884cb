//! The worker loop's heartbeat, watched from a thread of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the loop may stay in one step before the [`Beat`]'s thread says where it is.
const BLOCKED: Duration = Duration::from_secs(60);

/// The loop's heartbeat, watched from a thread of its own: the watchdog above runs inside the
/// loop, so a step that never returns (an await with no timeout) would silence it too. The
/// thread logs which step has held the loop for [`BLOCKED`], once per step, so such a hang
/// names itself in the log.
pub(crate) struct Beat {
    since: Instant,
    /// When the loop last moved on, ms since `since`.
    at: AtomicU64,
    doing: Mutex<&'static str>,
}

impl Beat {
    pub(crate) fn start() -> Arc<Self> {
        let beat = Arc::new(Self {
            since: Instant::now(),
            at: AtomicU64::new(0),
            doing: Mutex::new("starting"),
        });
        let weak = Arc::downgrade(&beat);
        let spawned = std::thread::Builder::new()
            .name("rtlake-heartbeat".into())
            .spawn(move || {
                let mut told = None;
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    let Some(beat) = weak.upgrade() else { return };
                    let at = beat.at.load(Ordering::Acquire);
                    let idle = beat
                        .since
                        .elapsed()
                        .saturating_sub(Duration::from_millis(at));
                    if idle >= BLOCKED && told != Some(at) {
                        told = Some(at);
                        let doing = *beat.doing.lock().unwrap_or_else(|p| p.into_inner());
                        tracing::warn!(
                            step = doing,
                            blocked_secs = idle.as_secs(),
                            "the worker's loop has not moved for {} s: it is {doing}",
                            idle.as_secs()
                        );
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %rtlake_core::error::Chain(&e), "cannot start the heartbeat thread");
        }
        beat
    }

    /// The loop moved on to `doing`.
    pub(crate) fn step(&self, doing: &'static str) {
        *self.doing.lock().unwrap_or_else(|p| p.into_inner()) = doing;
        self.at
            .store(self.since.elapsed().as_millis() as u64, Ordering::Release);
    }
}
