//! Serves a Kafka-compatible broker on one of the engines rtlake compared:
//!
//!   broker-engines ENGINE LISTEN DATA_DIR
//!
//! - `tansu-sqlite`: tansu 0.6 on SQLite, the embedded broker rtlake shipped before nisshi;
//! - `nisshi-sqlite`: nisshi 0.8.1's SQLite (libsql) engine;
//! - `nisshi-dynostore-fs`: nisshi's object-store engine on the local filesystem, through a
//!   wrapper that gives `LocalFileSystem` the conditional update (`PutMode::Update`) it lacks;
//! - `nisshi-memory`, `nisshi-slatedb-memory`: not durable, for the ceiling. (nisshi 0.8.1
//!   builds slatedb only on memory or S3; its engine type is private, so it cannot be given a
//!   local directory.)
//!
//! rtlake's own engine is `rtlake broker --storage log`; nisshi's SQLite engine is also
//! `rtlake broker --storage sqlite`.

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use std::sync::Arc;
use url::Url;

const NODE: i32 = 111;

/// `LocalFileSystem` with conditional updates: an update compares the stored e-tag under a
/// lock (one process writes the store, so a process-wide lock makes it atomic).
#[derive(Debug)]
struct ConditionalFs {
    inner: LocalFileSystem,
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Display for ConditionalFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConditionalFs({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ConditionalFs {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        match &opts.mode {
            PutMode::Update(v) => {
                let _g = self.lock.lock().await;
                let head = match self.inner.head(location).await {
                    Ok(h) => h,
                    Err(object_store::Error::NotFound { path, source }) => return Err(object_store::Error::Precondition { path, source }),
                    Err(e) => return Err(e),
                };
                if head.e_tag != v.e_tag {
                    return Err(object_store::Error::Precondition { path: location.to_string(), source: "e-tag changed".into() });
                }
                self.inner.put_opts(location, payload, PutOptions { mode: PutMode::Overwrite, ..opts }).await
            }
            _ => {
                let _g = self.lock.lock().await;
                self.inner.put_opts(location, payload, opts).await
            }
        }
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<Path>>) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn sqlite(dir: &std::path::Path, file: &str) -> Result<Url> {
    let abs = std::fs::canonicalize(dir)?.join(file);
    Ok(Url::parse(&format!("sqlite:///{}", abs.display()))?)
}

async fn tansu(listener: Url, storage: Url) -> Result<()> {
    use tansu_broker::broker::Broker;
    use tansu_broker::coordinator::group::administrator::Controller;
    use tansu_storage::StorageContainer;
    let mut b = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(NODE)
        .cluster_id("rtlake")
        .incarnation_id(uuid::Uuid::now_v7())
        .advertised_listener(listener.clone())
        .storage(storage)
        .listener(listener)
        .silent(true)
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("tansu: {e:?}"))?;
    b.serve(tokio::time::Instant::now()).await.map_err(|e| anyhow::anyhow!("tansu: {e:?}"))
}

async fn nisshi_url(listener: Url, storage: Url) -> Result<()> {
    use nisshi_broker::broker::Broker;
    let mut b = Broker::builder()
        .node_id(NODE)
        .cluster_id("rtlake")
        .incarnation_id(uuid::Uuid::now_v7())
        .advertised_listener(listener.clone())
        .storage(storage)
        .listener(listener)
        .silent(true)
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("nisshi: {e:?}"))?;
    b.serve(tokio::time::Instant::now()).await.map_err(|e| anyhow::anyhow!("nisshi: {e:?}"))
}

async fn nisshi_dynostore_fs(listener: Url, dir: &std::path::Path) -> Result<()> {
    use nisshi_broker::broker::Broker;
    use nisshi_broker::coordinator::group::administrator::{Controller, GroupCoordinatorConfig};
    use nisshi_storage::ArcDynStorage;
    let root = std::fs::canonicalize(dir)?.join("objects");
    std::fs::create_dir_all(&root)?;
    let fs = ConditionalFs { inner: LocalFileSystem::new_with_prefix(&root)?, lock: Default::default() };
    let store = nisshi_storage_dynostore::DynoStore::new("rtlake", NODE, fs).map_err(|e| anyhow::anyhow!("dynostore: {e:?}"))?.advertised_listener(listener.clone());
    let storage: ArcDynStorage = Arc::new(store);
    let groups = Controller::new(storage.clone(), GroupCoordinatorConfig::default());
    let mut b = Broker::new(NODE, "rtlake", listener.clone(), listener, storage, groups, uuid::Uuid::now_v7());
    b.serve(tokio::time::Instant::now()).await.map_err(|e| anyhow::anyhow!("nisshi: {e:?}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    let args: Vec<String> = std::env::args().collect();
    let [_, engine, listen, data] = args.as_slice() else { bail!("usage: broker-engines ENGINE LISTEN DATA_DIR") };
    std::fs::create_dir_all(data).with_context(|| data.clone())?;
    let dir = std::path::Path::new(data);
    let listener = Url::parse(&format!("tcp://{listen}"))?;
    let serve = async {
        match engine.as_str() {
            "tansu-sqlite" => tansu(listener, sqlite(dir, "tansu.db")?).await,
            "nisshi-sqlite" => nisshi_url(listener, sqlite(dir, "nisshi.db")?).await,
            "nisshi-memory" => nisshi_url(listener, Url::parse("memory://")?).await,
            "nisshi-slatedb-memory" => nisshi_url(listener, Url::parse("slatedb://memory")?).await,
            "nisshi-dynostore-fs" => nisshi_dynostore_fs(listener, dir).await,
            other => bail!("unknown engine {other}"),
        }
    };
    tokio::select! {
        r = serve => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
