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
    #[error("broker data folder {path}: {source}")]
    Data {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The listen address is in use or cannot be bound.
    #[error("cannot listen on {addr}: {source} (is another broker running? pick another with --listen)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
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
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Data { path: data_dir.into(), source })?;
        let addr = if addr.port() == 0 {
            // tansu advertises the port it is given, so a free one is chosen here.
            let l = std::net::TcpListener::bind(addr).map_err(|source| Error::Listen { addr, source })?;
            l.local_addr().map_err(|source| Error::Listen { addr, source })?
        } else {
            // Fail early and clearly when the port is taken.
            drop(std::net::TcpListener::bind(addr).map_err(|source| Error::Listen { addr, source })?);
            addr
        };
        let db = data_dir.join("tansu.db");
        let rel = relative_to_cwd(&db).map_err(|source| Error::Data { path: data_dir.into(), source })?;
        let storage = Url::parse(&format!("sqlite://{}", rel.display())).map_err(|e| Error::Tansu(e.to_string()))?;
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

/// `path` expressed relative to the working directory (tansu's SQLite engine prefixes it).
fn relative_to_cwd(path: &Path) -> std::io::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    let abs = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let abs = normalize(&abs);
    let cwd = normalize(&cwd);
    let a: Vec<_> = abs.components().collect();
    let c: Vec<_> = cwd.components().collect();
    let common = a.iter().zip(&c).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..c.len() {
        rel.push("..");
    }
    for comp in &a[common..] {
        rel.push(comp.as_os_str());
    }
    Ok(rel)
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
    fn absolute_paths_become_relative_to_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        let target = Path::new("/tmp/rtlake-x/tansu.db");
        let rel = relative_to_cwd(target).unwrap();
        assert!(rel.is_relative());
        assert_eq!(normalize(&cwd.join(&rel)), normalize(target));
        assert_eq!(relative_to_cwd(Path::new("./a/b.db")).unwrap(), PathBuf::from("a/b.db"));
    }
}
