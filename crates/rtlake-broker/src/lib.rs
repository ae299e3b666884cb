//! The embedded Kafka-compatible broker: nisshi (formerly tansu), in-process, durable on disk.
//!
//! Only `rtlake broker` and `rtlake demo` start one; everything else talks to any Kafka cluster.
//! nisshi serves the Kafka protocol (produce, fetch, consumer groups, admin); where it keeps
//! data is its storage engine's job. By default that is [`log::LogStorage`], rtlake's engine:
//! record batches in segment files as Kafka keeps them, topics, groups and offsets in nisshi's
//! SQLite engine. `broker.storage = "sqlite"` keeps records in SQLite too (nisshi's own engine,
//! several times slower; kept for comparison). The database is `<data>/meta.db`, the segment
//! logs `<data>/topics/<topic>/<partition>/`.
#![warn(missing_docs)]

pub mod config;
pub mod log;

pub use config::BrokerConfig;

use nisshi_broker::broker::Broker;
use nisshi_broker::coordinator::group::administrator::{Controller, GroupCoordinatorConfig};
use nisshi_storage::{ArcDynStorage, StorageContainer};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

/// The broker's node id.
const NODE_ID: i32 = 111;

/// Errors starting the broker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data folder cannot be made or used.
    #[error("broker data folder {path}: {cause}")]
    Data {
        /// The folder.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The listen address is in use or cannot be bound.
    #[error(
        "cannot listen on {addr}: {cause} (is another broker running? pick another with --listen)"
    )]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// The address is beyond loopback and `broker.allow-remote` was not given.
    #[error(
        "refusing to listen on {0}: the embedded broker has no authentication, so anyone who reaches that address could read and write every topic. Listen on 127.0.0.1, or pass --allow-remote (broker.allow-remote = true) if you mean it"
    )]
    Exposed(SocketAddr),
    /// nisshi refused to start.
    #[error("embedded broker failed to start: {0}")]
    Nisshi(String),
}

/// Where the broker keeps records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// Segment files of record batches, metadata in SQLite (rtlake's engine; the default).
    #[default]
    Log,
    /// Everything in SQLite, one row per record (nisshi's engine).
    Sqlite,
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "log" => Ok(Self::Log),
            "sqlite" => Ok(Self::Sqlite),
            other => Err(format!(
                "`{other}` is not a broker storage engine (log or sqlite)"
            )),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Refuses an address beyond loopback unless `allow_remote`: the broker serves Kafka with no
/// authentication. When allowed, the log says so, once, as a warning.
pub fn check_exposure(addr: SocketAddr, allow_remote: bool) -> Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !allow_remote {
        return Err(Error::Exposed(addr));
    }
    tracing::warn!(%addr, "the embedded broker listens beyond loopback with no authentication: anyone who reaches it reads and writes every topic");
    Ok(())
}

/// A running embedded broker; it stops when this is dropped or [`EmbeddedBroker::stop`]ped.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    task: JoinHandle<()>,
    cancel: CancellationToken,
}

impl EmbeddedBroker {
    /// Starts a broker on `addr` keeping its data in `data_dir` with the default engine, and
    /// waits until it accepts connections. Port 0 picks a free port (see [`EmbeddedBroker::addr`]).
    pub async fn start(addr: SocketAddr, data_dir: &Path) -> Result<Self> {
        Self::start_with(addr, data_dir, Engine::default()).await
    }

    /// [`EmbeddedBroker::start`] with a chosen storage engine.
    pub async fn start_with(addr: SocketAddr, data_dir: &Path, engine: Engine) -> Result<Self> {
        let data = |cause| Error::Data {
            path: data_dir.into(),
            cause,
        };
        std::fs::create_dir_all(data_dir).map_err(data)?;
        let addr = if addr.port() == 0 {
            // The broker advertises the port it is given, so a free one is chosen here.
            let l =
                std::net::TcpListener::bind(addr).map_err(|cause| Error::Listen { addr, cause })?;
            l.local_addr()
                .map_err(|cause| Error::Listen { addr, cause })?
        } else {
            // Fail early and clearly when the port is taken.
            drop(std::net::TcpListener::bind(addr).map_err(|cause| Error::Listen { addr, cause })?);
            addr
        };
        let db = match engine {
            Engine::Log => "meta.db",
            Engine::Sqlite => "nisshi.db",
        };
        let sqlite = sqlite_url(&data_dir.join(db)).map_err(data)?;
        let listener =
            Url::parse(&format!("tcp://{addr}")).map_err(|e| Error::Nisshi(e.to_string()))?;
        tracing::info!(%addr, data = %data_dir.display(), ?engine, "starting embedded broker");
        let cancel = CancellationToken::new();
        let mut builder = StorageContainer::builder();
        builder.with_factory(Arc::new(nisshi_storage_sql::LiteEngineFactory));
        let meta = builder
            .cluster_id("rtlake")
            .node_id(NODE_ID)
            .advertised_listener(listener.clone())
            .storage(sqlite)
            .cancellation(cancel.clone())
            .silent(true)
            .build()
            .await
            .map_err(|e| {
                Error::Nisshi(format!("opening {}: {e:?}", data_dir.join(db).display()))
            })?;
        let (storage, logs): (ArcDynStorage, Option<log::LogStorage>) = match engine {
            Engine::Sqlite => (meta, None),
            Engine::Log => {
                let logs = log::LogStorage::open(meta, data_dir).map_err(data)?;
                (Arc::new(logs.clone()), Some(logs))
            }
        };
        // Kafka waits 3 s for more members of a new group before its first assignment, so that
        // consumers started together are assigned once. Every start and restart of a pipeline
        // pays that wait (a tenth of a second here before, 7% of draining the 90-minute
        // replay); a member joining later costs one cooperative rebalance, in which the
        // first keeps the partitions it does not give away. As in the Kafka cluster of
        // scripts/kafka.sh (`group.initial.rebalance.delay.ms=0`), a group is assigned at once.
        let groups = Controller::new(
            storage.clone(),
            GroupCoordinatorConfig {
                initial_rebalance_delay: Duration::ZERO,
                ..Default::default()
            },
        );
        let mut broker = Broker::new(
            NODE_ID,
            "rtlake",
            listener.clone(),
            listener,
            storage,
            groups,
            uuid::Uuid::now_v7(),
        );
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                r = broker.serve(tokio::time::Instant::now()) => if let Err(e) = r {
                    tracing::error!(error = ?e, "embedded broker stopped");
                },
                _ = token.cancelled() => {}
            }
        });
        if let Some(logs) = logs {
            tokio::spawn(sync_every_second(logs, cancel.clone()));
        }
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Self { addr, task, cancel });
            }
            if task.is_finished() {
                return Err(Error::Nisshi(
                    "the broker task ended during start-up (see the log)".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        cancel.cancel();
        task.abort();
        Err(Error::Nisshi(format!(
            "not accepting connections on {addr} after 10 s"
        )))
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the broker. What was acknowledged is on disk (flushed to the OS at once, fsynced
    /// now).
    pub async fn stop(mut self) {
        self.cancel.cancel();
        self.task.abort();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.task.abort();
    }
}

/// Fsyncs the logs written in the last second, and once more at the end.
async fn sync_every_second(logs: log::LogStorage, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            _ = cancel.cancelled() => true,
        };
        let l = logs.clone();
        let _ = tokio::task::spawn_blocking(move || l.sync()).await;
        if stop {
            break;
        }
    }
}

/// The `sqlite://` URL nisshi needs for a database file, relative or absolute.
///
/// nisshi (as tansu did) joins the URL's path (less its leading `/`) onto the working directory with
/// `PathBuf::push`, and the URL parser folds `..` segments, so a path outside the working
/// directory cannot be written relatively. `push` of an absolute path replaces the base, though:
/// a URL path of `//abs/path` becomes `/abs/path`.
fn sqlite_url(path: &Path) -> std::io::Result<Url> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let abs = normalize(&abs);
    Url::parse(&format!("sqlite:///{}", abs.display())).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: {e}", abs.display()),
        )
    })
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_beyond_loopback_needs_allow_remote() {
        let any: SocketAddr = "0.0.0.0:9092".parse().unwrap();
        let e = check_exposure(any, false).unwrap_err().to_string();
        assert!(
            e.contains("0.0.0.0:9092") && e.contains("--allow-remote"),
            "{e}"
        );
        assert!(check_exposure(any, true).is_ok());
        assert!(check_exposure("[::]:9092".parse().unwrap(), false).is_err());
        assert!(check_exposure("127.0.0.1:9092".parse().unwrap(), false).is_ok());
        assert!(check_exposure("[::1]:9092".parse().unwrap(), false).is_ok());
    }

    #[test]
    fn any_path_becomes_the_absolute_path_nisshi_opens() {
        // What nisshi does with the URL (nisshi-storage-sql's SQLite factory).
        let opened = |u: &Url| {
            let mut p = std::env::current_dir().unwrap();
            p.push(u.path().strip_prefix('/').unwrap_or(u.path()));
            p
        };
        let u = sqlite_url(Path::new("/tmp/rtlake-x/../rtlake-y/meta.db")).unwrap();
        assert_eq!(opened(&u), PathBuf::from("/tmp/rtlake-y/meta.db"));
        let u = sqlite_url(Path::new("./data/meta.db")).unwrap();
        assert_eq!(
            opened(&u),
            std::env::current_dir().unwrap().join("data/meta.db")
        );
    }
}
