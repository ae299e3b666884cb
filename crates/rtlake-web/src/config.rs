//! The `[serve]` section: the web server's address, limits and token; and [`WebConfig`],
//! everything `rtlake serve` reads.

use rtlake_core::config::{ConfigError, Origins, Secret, Section, check_listen};
use rtlake_core::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

/// The web server: dashboard, status pages, SQL API and metrics.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServeConfig {
    /// Address to listen on (loopback unless you mean it).
    pub listen: String,
    /// Most rows one SQL API answer holds.
    pub sql_row_limit: usize,
    /// Longest a SQL API query may run.
    pub sql_timeout: HumanDuration,
    /// Most memory the SQL API's queries hold together (sorts, joins, aggregations); past it a
    /// query answers "Resources exhausted" instead of the server being killed for memory.
    pub sql_memory_limit: ByteSize,
    /// Most pages following the live stream at once; one more is answered 503.
    pub live_max_clients: usize,
    /// The token every `/api/` request must carry (`Authorization: Bearer TOKEN`); required when
    /// `listen` is not a loopback address. Set it through `RTLAKE_SERVE_AUTH_TOKEN` rather than
    /// a file others can read.
    pub auth_token: Option<Secret>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            sql_row_limit: 10_000,
            sql_timeout: HumanDuration::from_secs(30),
            sql_memory_limit: ByteSize(1 << 30),
            live_max_clients: 100,
            auth_token: None,
        }
    }
}

impl Section for ServeConfig {
    const NAME: &'static str = "serve";

    fn check(&self, at: &Origins) -> Result<(), ConfigError> {
        check_listen(at, "serve.listen", &self.listen, false)?;
        if let Some(t) = &self.auth_token {
            let t = t.expose();
            if t.chars().count() < 16 || t.chars().any(char::is_whitespace) {
                return Err(at.err(
                    "serve.auth-token",
                    &"(hidden)",
                    "must be at least 16 characters, without spaces (e.g. `openssl rand -hex 24`)",
                ));
            }
        }
        if self.sql_row_limit == 0 {
            return Err(at.err("serve.sql-row-limit", &0, "must be at least 1"));
        }
        if self.sql_memory_limit.0 < 1 << 20 {
            return Err(at.err(
                "serve.sql-memory-limit",
                &self.sql_memory_limit,
                "must be at least 1MiB",
            ));
        }
        Ok(())
    }
}

rtlake_core::flags! {
    /// `rtlake serve`'s settings, as flags.
    pub struct ServeFlags for ServeConfig {
        /// The address to listen on [serve.listen; default 127.0.0.1:8080]. Use 0.0.0.0:PORT
        /// only if other machines should reach it: the SQL API reads the whole lake, so any
        /// address but loopback needs a token in RTLAKE_SERVE_AUTH_TOKEN [serve.auth-token],
        /// which every /api/ request then carries (Authorization: Bearer TOKEN; the pages: open
        /// /#token=TOKEN).
        #[arg(value_name = "ADDR")]
        listen: String,
    }
}

/// What the web server reads: the cluster and topic (its status pages and live view), the
/// lake (the SQL API) and its own section.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// The Kafka cluster and the topic the pages follow.
    pub kafka: rtlake_kafka::config::KafkaConfig,
    /// The lake the SQL API reads.
    pub lake: rtlake_lake::LakeConfig,
    /// The server itself.
    pub serve: ServeConfig,
}
