//! The tests that inject faults and time the recovery: the availability suite (`chaos`, printed
//! by `scripts/chaos.sh`) and the pipeline healing itself (`healing`). A binary of their own,
//! because a test beside them on two cores skews what they measure; within it, a timing test
//! holds `alone()` and the others `beside()`.

#[path = "../common/mod.rs"]
mod common;

mod chaos;
mod healing;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static TIMING: RwLock<()> = RwLock::const_new(());

/// Waits until no other test of this binary runs, and keeps them out while held.
pub async fn alone() -> RwLockWriteGuard<'static, ()> {
    TIMING.write().await
}

/// Runs beside the other `beside()` tests, but never beside an `alone()` one.
pub async fn beside() -> RwLockReadGuard<'static, ()> {
    TIMING.read().await
}
