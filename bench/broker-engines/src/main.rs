//! Serves a Kafka-compatible broker on one of the engines rtlake compared:
//!
//!   broker-engines ENGINE LISTEN DATA_DIR
//!
//! - `tansu-sqlite`: tansu 0.6 on SQLite, the embedded broker rtlake shipped before nisshi;
//! - `nisshi-sqlite`: nisshi 0.8.1's SQLite (libsql) engine;
//! - `nisshi-memory`, `nisshi-slatedb-memory`: not durable, for the ceiling. (nisshi 0.8.1
//!   builds slatedb only on memory or S3; its engine type is private, so it cannot be given a
//!   local directory.)
//!
//! nisshi 0.8.1's object-store engine (dynostore) cannot be built on a local directory from
//! outside the crate (its constructor is `pub(crate)`), so it is not here.
//!
//! rtlake's own engine is `rtlake broker --storage log`; nisshi's SQLite engine is also
//! `rtlake broker --storage sqlite`.

use anyhow::{Context, Result, bail};
use url::Url;

const NODE: i32 = 111;

fn sqlite(dir: &std::path::Path, file: &str) -> Result<Url> {
    let abs = std::fs::canonicalize(dir)?.join(file);
    Ok(Url::parse(&format!("sqlite:///{}", abs.display()))?)
}

#[cfg(feature = "tansu")]
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

#[cfg(feature = "nisshi")]
async fn nisshi_url(listener: Url, storage: Url) -> Result<()> {
    use nisshi_broker::broker::Broker;
    use nisshi_broker::coordinator::group::administrator::Controller;
    use nisshi_storage::ArcDynStorage;
    let mut b = Broker::<Controller<ArcDynStorage>, ArcDynStorage>::builder()
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
            #[cfg(feature = "tansu")]
            "tansu-sqlite" => tansu(listener, sqlite(dir, "tansu.db")?).await,
            #[cfg(feature = "nisshi")]
            "nisshi-sqlite" => nisshi_url(listener, sqlite(dir, "nisshi.db")?).await,
            #[cfg(feature = "nisshi")]
            "nisshi-memory" => nisshi_url(listener, Url::parse("memory://")?).await,
            #[cfg(feature = "nisshi")]
            "nisshi-slatedb-memory" => nisshi_url(listener, Url::parse("slatedb://memory")?).await,
            other => bail!("unknown engine {other}"),
        }
    };
    tokio::select! {
        r = serve => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
