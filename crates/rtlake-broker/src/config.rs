//! The `[broker]` section: the embedded broker of `rtlake broker` and `rtlake demo`.

use rtlake_core::config::{ConfigError, Origins, Section};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The embedded broker.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BrokerConfig {
    /// The address it listens on, and advertises to clients.
    pub listen: String,
    /// The folder where it keeps its data, relative or absolute.
    pub data: PathBuf,
    /// Where it keeps records: `log` (segment files, the default) or `sqlite` (nisshi's own
    /// engine, one row per record, several times slower).
    pub storage: String,
    /// Listen on an address beyond loopback. The embedded broker has no authentication, so
    /// anyone who reaches the address can read and write every topic: off by default.
    pub allow_remote: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9092".into(),
            data: "./rtlake-data/broker".into(),
            storage: "log".into(),
            allow_remote: false,
        }
    }
}

impl Section for BrokerConfig {
    const NAME: &'static str = "broker";

    fn check(&self, at: &Origins) -> Result<(), ConfigError> {
        self.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            at.err(
                "broker.listen",
                &self.listen,
                "must be an IP address and port, e.g. 127.0.0.1:9092",
            )
        })?;
        if self.storage.parse::<crate::Engine>().is_err() {
            return Err(at.err(
                "broker.storage",
                &self.storage,
                "write log (segment files) or sqlite",
            ));
        }
        Ok(())
    }
}

rtlake_core::flags! {
    /// `rtlake broker`'s settings, as flags.
    pub struct BrokerFlags for BrokerConfig {
        /// The address to listen on and advertise [broker.listen; default 127.0.0.1:9092].
        #[arg(value_name = "ADDR")]
        listen: String,
        /// The data folder, relative or absolute [broker.data; default ./rtlake-data/broker].
        #[arg(value_name = "DIR")]
        data: PathBuf,
        /// Where records are kept: log (segment files, fast) or sqlite (nisshi's own engine, a
        /// row per record) [broker.storage; default log].
        #[arg(value_name = "log|sqlite")]
        storage: String,
    }
    switches {
        /// Listen on an address beyond loopback (0.0.0.0, a LAN address). The embedded broker
        /// has no authentication: whoever reaches the address reads and writes every topic.
        /// Without this flag such an address is refused [broker.allow-remote; default false].
        allow_remote as "allow-remote" = true,
    }
}
