//! The compaction lease: one compaction of a table at a time, on local disk and on S3 alike.

use super::MAX_COMPACTION;
use crate::catalog::CatalogEntry;
use crate::{Error, Lake, Result};
use std::time::Duration;

/// Runs `work` while renewing `lease`. The work is dropped (so it never commits) when a renewal
/// finds the lease taken over, when the lease could not be renewed before it expired (a stalled
/// process, a store that did not answer), or past [`MAX_COMPACTION`]. Gives the lease back
/// unless it was lost.
pub(super) async fn while_held<T>(
    mut lease: Lease,
    entry: &CatalogEntry,
    work: impl std::future::Future<Output = Result<T>>,
) -> (Option<Lease>, Result<T>) {
    let every = lease.ttl / 5;
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(started + every, every);
    tokio::pin!(work);
    let lost = |why: String| Error::Maintenance {
        table: entry.qualified(),
        reason: why,
    };
    loop {
        tokio::select! {
            biased;
            _ = tick.tick() => {
                if started.elapsed() > MAX_COMPACTION {
                    let e = lost(format!("compaction abandoned after {} min (the longest it may run); it is tried again later", MAX_COMPACTION.as_secs() / 60));
                    return (Some(lease), Err(e));
                }
                if chrono::Utc::now().timestamp_millis() >= lease.expires_ms() {
                    // Another writer may hold it by now: committing could double rows.
                    return (None, Err(lost("the compaction lease expired before it could be renewed; compaction abandoned before its commit".into())));
                }
                match lease.renew().await {
                    Ok(Ok(())) => {}
                    Ok(Err(holder)) => {
                        return (None, Err(lost(format!("the compaction lease was taken over by {holder}; compaction abandoned before its commit"))));
                    }
                    Err(e) => tracing::warn!(table = %entry.qualified(), error = %e, "could not renew the compaction lease; trying again"),
                }
            }
            r = &mut work => return (Some(lease), r),
        }
    }
}

/// A table's compaction lease: `<lake>/_maintenance/<table>/lease-<n>.json`, numbered. Taking
/// it is creating the next number with a create-only put, which one writer wins; the holder
/// renews it while it compacts ([`Lease::renew`], every [`Lease::RENEW_EVERY`]) and marks it
/// released when done. A lease neither renewed nor released within its TTL (its holder died)
/// may be taken over the same way, by creating the next number.
///
/// Only the newest number counts. Old numbers are deleted, so a taker that stalled between its
/// listing and its create could create a number below the newest; it lists again after its
/// create and gives up when a newer number exists ([`Lease::still_mine`]), as a renewal does.
pub struct Lease {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    number: u64,
    body: serde_json::Value,
    ttl: Duration,
}

type Store = std::sync::Arc<dyn object_store::ObjectStore>;

fn lease_path(n: u64) -> object_store::path::Path {
    object_store::path::Path::from(format!("lease-{n:012}.json"))
}

impl Lease {
    /// How long a lease holds without being renewed or released.
    pub const TTL: Duration = Duration::from_secs(15 * 60);
    /// How often a holder renews its lease, at the default TTL: a fifth of it.
    pub const RENEW_EVERY: Duration = Duration::from_secs(3 * 60);

    /// Takes the lease, or says who holds it (`Ok(Err(holder))`).
    pub async fn take(
        lake: &Lake,
        entry: &CatalogEntry,
    ) -> Result<std::result::Result<Self, String>> {
        Self::take_for(lake, entry, Self::TTL).await
    }

    /// [`Lease::take`] with a TTL of one's own (tests use seconds).
    pub async fn take_for(
        lake: &Lake,
        entry: &CatalogEntry,
        ttl: Duration,
    ) -> Result<std::result::Result<Self, String>> {
        use object_store::ObjectStoreExt;
        let url = lake
            .root()
            .join(&format!(
                "_maintenance/{}/",
                entry.qualified().replace('.', "/")
            ))
            .map_err(|e| Error::Location {
                uri: entry.qualified(),
                reason: e.to_string(),
            })?;
        let store = lake.store_at(&url)?;
        let numbers = numbers(&store).await?;
        let now = chrono::Utc::now().timestamp_millis();
        if let Some(&last) = numbers.last() {
            let held = read(&store, last).await?;
            let released = held["released"].as_bool().unwrap_or(false);
            let expired = held["expires_ms"].as_i64().is_none_or(|t| t < now);
            if !released && !expired {
                return Ok(Err(held["holder"].as_str().unwrap_or("?").to_string()));
            }
            // Old leases go; the newest few stay for the record.
            for old in numbers.iter().rev().skip(4) {
                let _ = store.delete(&lease_path(*old)).await;
            }
        }
        Self::create(store, numbers.last().map_or(0, |n| n + 1), ttl).await
    }

    /// Creates lease number `next`, unless it exists, then checks it is the newest.
    pub(crate) async fn create(
        store: Store,
        next: u64,
        ttl: Duration,
    ) -> Result<std::result::Result<Self, String>> {
        use object_store::{PutMode, PutOptions};
        let now = chrono::Utc::now().timestamp_millis();
        let holder = format!(
            "{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
            std::process::id()
        );
        let body = serde_json::json!({
            "holder": holder,
            "taken_ms": now,
            "expires_ms": now + ttl.as_millis() as i64,
            "released": false,
        });
        let put = store
            .put_opts(
                &lease_path(next),
                body.to_string().into(),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Ok(Err("another writer, who took it just now".into()));
            }
            Err(e) => return Err(store_err(e)),
        }
        let lease = Self {
            store,
            number: next,
            body,
            ttl,
        };
        match lease.still_mine().await? {
            Ok(()) => Ok(Ok(lease)),
            Err(holder) => {
                // Ours is below the newest: it never counted. Mark it released for the record.
                lease.release().await;
                Ok(Err(holder))
            }
        }
    }

    /// Whether no newer lease exists; otherwise who holds the newest.
    pub async fn still_mine(&self) -> Result<std::result::Result<(), String>> {
        let numbers = numbers(&self.store).await?;
        match numbers.last() {
            Some(&newest) if newest > self.number => {
                let held = read(&self.store, newest).await?;
                Ok(Err(held["holder"].as_str().unwrap_or("?").to_string()))
            }
            _ => Ok(Ok(())),
        }
    }

    /// Extends the lease by its TTL from now, if it is still the newest; `Ok(Err(holder))` when
    /// it is not (the holder must stop: someone else took the table over).
    pub async fn renew(&mut self) -> Result<std::result::Result<(), String>> {
        use object_store::ObjectStoreExt;
        if let Err(holder) = self.still_mine().await? {
            return Ok(Err(holder));
        }
        let now = chrono::Utc::now().timestamp_millis();
        self.body["expires_ms"] = (now + self.ttl.as_millis() as i64).into();
        self.store
            .put(&lease_path(self.number), self.body.to_string().into())
            .await
            .map_err(store_err)?;
        Ok(Ok(()))
    }

    /// When the lease expires unless renewed, ms since the Unix epoch.
    pub fn expires_ms(&self) -> i64 {
        self.body["expires_ms"].as_i64().unwrap_or(0)
    }

    /// Marks the lease released (if that fails, it expires after its TTL).
    pub async fn release(mut self) {
        use object_store::ObjectStoreExt;
        self.body["released"] = true.into();
        let path = lease_path(self.number);
        if let Err(e) = self.store.put(&path, self.body.to_string().into()).await {
            tracing::warn!(lease = %path, error = %e, "could not release the compaction lease; it expires by itself");
        }
    }
}

fn store_err(e: object_store::Error) -> Error {
    Error::Location {
        uri: "_maintenance".into(),
        reason: e.to_string(),
    }
}

/// The lease numbers in the folder, ascending.
async fn numbers(store: &Store) -> Result<Vec<u64>> {
    let listing = store.list_with_delimiter(None).await.map_err(store_err)?;
    let mut numbers: Vec<u64> = listing
        .objects
        .iter()
        .filter_map(|o| {
            o.location
                .filename()?
                .strip_prefix("lease-")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// Lease `n`'s body (`Null` when it is gone).
async fn read(store: &Store, n: u64) -> Result<serde_json::Value> {
    use object_store::ObjectStoreExt;
    match store.get(&lease_path(n)).await {
        Ok(r) => {
            Ok(serde_json::from_slice(&r.bytes().await.map_err(store_err)?).unwrap_or_default())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(serde_json::Value::Null),
        Err(e) => Err(store_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lake() -> (tempfile::TempDir, Lake, CatalogEntry) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&crate::LakeConfig {
            uri: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let entry = CatalogEntry {
            namespace: "bronze".into(),
            name: "t".into(),
            url: lake.root().join("bronze/t/").unwrap(),
            format: crate::TableFormat::Delta,
        };
        (dir, lake, entry)
    }

    #[tokio::test]
    async fn a_renewed_lease_outlives_its_ttl_and_an_unrenewed_one_is_taken_over() {
        let (_dir, lake, entry) = lake();
        let ttl = Duration::from_millis(600);
        let mut a = Lease::take_for(&lake, &entry, ttl).await.unwrap().unwrap();
        // Kept alive past three TTLs: nobody else gets in.
        for _ in 0..6 {
            tokio::time::sleep(ttl / 3).await;
            a.renew().await.unwrap().unwrap();
            assert!(
                Lease::take_for(&lake, &entry, ttl).await.unwrap().is_err(),
                "taken while its holder renews it"
            );
        }
        // Not renewed: after the TTL another writer takes it, and the old holder learns so.
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        let b = Lease::take_for(&lake, &entry, ttl).await.unwrap().unwrap();
        assert!(a.still_mine().await.unwrap().is_err());
        assert!(
            a.renew().await.unwrap().is_err(),
            "a renewal after a takeover fails"
        );
        b.release().await;
    }

    #[tokio::test]
    async fn a_stalled_taker_that_creates_an_old_number_does_not_get_the_lease() {
        let (_dir, lake, entry) = lake();
        for _ in 0..7 {
            Lease::take(&lake, &entry)
                .await
                .unwrap()
                .unwrap()
                .release()
                .await;
        }
        let holder = Lease::take(&lake, &entry).await.unwrap().unwrap();
        assert_eq!(holder.number, 7);
        // A taker that listed long ago, when 1 was next, creates it now (old numbers were
        // deleted, so the create-only put succeeds).
        let stale = Lease::create(holder.store.clone(), 1, Lease::TTL)
            .await
            .unwrap();
        assert!(stale.is_err(), "a lease below the newest is not held");
        assert!(holder.still_mine().await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn work_is_dropped_before_it_finishes_when_the_lease_is_taken_over() {
        let (_dir, lake, entry) = lake();
        let ttl = Duration::from_millis(500);
        let a = Lease::take_for(&lake, &entry, ttl).await.unwrap().unwrap();
        // Another writer takes over (as after a stall): number 1 created beside 0.
        let other = Lease::create(a.store.clone(), 1, ttl)
            .await
            .unwrap()
            .unwrap();
        let committed = std::sync::atomic::AtomicBool::new(false);
        let work = async {
            tokio::time::sleep(ttl * 3).await;
            committed.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        let (kept, r) = while_held(a, &entry, work).await;
        let e = r.unwrap_err().to_string();
        assert!(e.contains("taken over"), "{e}");
        assert!(kept.is_none());
        assert!(
            !committed.load(std::sync::atomic::Ordering::SeqCst),
            "the work never committed"
        );
        other.release().await;
    }
}
