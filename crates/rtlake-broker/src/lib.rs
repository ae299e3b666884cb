//! The embedded Kafka-compatible broker: tansu, in-process, durable on SQLite.
//!
//! Only `rtlake broker` and `rtlake demo` start one; everything else talks to any Kafka cluster.
//! tansu takes its SQLite path relative to the working directory (FINDINGS.md), so
//! [`EmbeddedBroker::start`] turns any path, absolute or relative, into that form.
#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

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
    #[error("cannot listen on {addr}: {cause} (is another broker running? pick another with --listen)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// tansu refused to start.
    #[error("embedded broker failed to start: {0}")]
    Tansu(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running embedded broker; it stops when this is dropped or [`EmbeddedBroker::stop`]ped.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts a broker listening on `addr` with its SQLite database in `data_dir`, and waits
    /// until it accepts connections. Port 0 picks a free port (see [`EmbeddedBroker::addr`]).
    pub async fn start(addr: SocketAddr, data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|cause| Error::Data { path: data_dir.into(), cause })?;
        let addr = if addr.port() == 0 {
            // tansu advertises the port it is given, so a free one is chosen here.
            let l = std::net::TcpListener::bind(addr).map_err(|cause| Error::Listen { addr, cause })?;
            l.local_addr().map_err(|cause| Error::Listen { addr, cause })?
        } else {
            // Fail early and clearly when the port is taken.
            drop(std::net::TcpListener::bind(addr).map_err(|cause| Error::Listen { addr, cause })?);
            addr
        };
        let storage = sqlite_url(&data_dir.join("tansu.db")).map_err(|cause| Error::Data { path: data_dir.into(), cause })?;
        let listener = Url::parse(&format!("tcp://{addr}")).map_err(|e| Error::Tansu(e.to_string()))?;
        tracing::info!(%addr, data = %data_dir.display(), "starting embedded broker");
        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(111)
            .cluster_id("rtlake")
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(listener.clone())
            .storage(storage)
            .listener(listener)
            .silent(true)
            .build()
            .await
            .map_err(|e| Error::Tansu(format!("{e:?}")))?;
        let task = tokio::spawn(async move {
            if let Err(e) = broker.serve(tokio::time::Instant::now()).await {
                tracing::error!(error = ?e, "embedded broker stopped");
            }
        });
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Self { addr, task });
            }
            if task.is_finished() {
                return Err(Error::Tansu("the broker task ended during start-up (see the log)".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        task.abort();
        Err(Error::Tansu(format!("not accepting connections on {addr} after 5 s")))
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the broker. SQLite keeps what was acknowledged.
    pub async fn stop(mut self) {
        self.task.abort();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `sqlite://` URL tansu needs for a database file, relative or absolute.
///
/// tansu joins the URL's path (less its leading `/`) onto the working directory with
/// `PathBuf::push`, and the URL parser folds `..` segments, so a path outside the working
/// directory cannot be written relatively. `push` of an absolute path replaces the base, though:
/// a URL path of `//abs/path` becomes `/abs/path`.
fn sqlite_url(path: &Path) -> std::io::Result<Url> {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
    let abs = normalize(&abs);
    Url::parse(&format!("sqlite:///{}", abs.display()))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: {e}", abs.display())))
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
    fn any_path_becomes_the_absolute_path_tansu_opens() {
        // What tansu does with the URL (tansu-storage lite.rs, Builder::build).
        let tansu_path = |u: &Url| {
            let mut p = std::env::current_dir().unwrap();
            p.push(u.path().strip_prefix('/').unwrap_or(u.path()));
            p
        };
        let u = sqlite_url(Path::new("/tmp/rtlake-x/../rtlake-y/tansu.db")).unwrap();
        assert_eq!(tansu_path(&u), PathBuf::from("/tmp/rtlake-y/tansu.db"));
        let u = sqlite_url(Path::new("./data/tansu.db")).unwrap();
        assert_eq!(tansu_path(&u), std::env::current_dir().unwrap().join("data/tansu.db"));
    }
}
