//! An object store that fails a share of its requests, for availability tests
//! (`tests/recovery/chaos.rs`): set `RTLAKE_STORE_FAULTS` to a file's path, and while that file
//! holds a number between 0 and 1, that share of reads, writes, lists, copies and renames fail with
//! `injected fault`. No file (or no variable): no faults, and no cost beyond one check at start.

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming the control file.
pub const VAR: &str = "RTLAKE_STORE_FAULTS";

/// Wraps `store` when [`VAR`] is set; returns it as is otherwise.
pub fn wrap(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    match std::env::var_os(VAR) {
        Some(control) => Arc::new(Faulty {
            inner: store,
            control: control.into(),
            dice: AtomicU64::new(u64::from(std::process::id()) | 1),
        }),
        None => store,
    }
}

/// Whether fault injection is on in this process.
pub fn enabled() -> bool {
    std::env::var_os(VAR).is_some()
}

#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    control: std::path::PathBuf,
    dice: AtomicU64,
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl Faulty {
    /// Fails this request with the control file's probability.
    fn roll(&self, op: &str, path: &Path) -> Result<()> {
        let rate: f64 = std::fs::read_to_string(&self.control)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0.0);
        if rate <= 0.0 {
            return Ok(());
        }
        // xorshift64: enough to spread faults, no dependency.
        let mut x = self.dice.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.dice.store(x, Ordering::Relaxed);
        if (x % 10_000) as f64 / 10_000.0 < rate {
            return Err(object_store::Error::Generic {
                store: "faults",
                source: format!("injected fault: {op} {path}").into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.roll("put", location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.roll("multipart put", location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.roll("get", location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.roll("get ranges", location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.roll("list", prefix.unwrap_or(&Path::default()))?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.roll("copy", from)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.roll("rename", from)?;
        self.inner.rename_opts(from, to, options).await
    }
}
