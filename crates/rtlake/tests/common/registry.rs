//! A schema registry of a test's own: the server `scripts/schema-registry.sh build` makes
//! (Conduit's Schema Registry, Confluent's REST API, in memory), named by
//! `RTLAKE_TEST_SCHEMA_REGISTRY_BIN`, on a free loopback port, with HTTP basic auth. Its
//! schemas live as long as the process: a test pauses it (SIGSTOP) to take it away, rather
//! than stopping it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The credentials every test registry requires.
pub const USER: &str = "rtlake-test";
pub const PASSWORD: &str = "typed-topics";

pub struct Registry {
    child: Child,
    /// Its base URL.
    pub url: String,
}

impl Registry {
    /// Starts one; `None` (the test is recorded as skipped) when no binary is named.
    pub fn start() -> Option<Self> {
        let Ok(bin) = std::env::var("RTLAKE_TEST_SCHEMA_REGISTRY_BIN") else {
            rtlake_core::testing::skip_missing(
                "RTLAKE_TEST_SCHEMA_REGISTRY_BIN is not set (scripts/schema-registry.sh build prints it)",
            );
            return None;
        };
        let mut child = Command::new(&bin)
            .args(["-addr", "127.0.0.1:0"])
            .env("SCHEMA_REGISTRY_BASIC_AUTH", format!("{USER}:{PASSWORD}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the registry prints its URL");
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "registry said {line:?}"
        );
        Some(Self { child, url })
    }

    /// The environment rtlake and the Python client read the credentials from.
    pub fn credentials(&self, c: &mut Command) {
        c.env("RTLAKE_SCHEMA_REGISTRY_USER", USER)
            .env("RTLAKE_SCHEMA_REGISTRY_PASSWORD", PASSWORD);
    }

    /// Freezes it: connections are accepted by the kernel and never answered.
    pub fn pause(&self) {
        super::signal(self.child.id(), "-STOP");
    }

    /// Lets it answer again.
    pub fn resume(&self) {
        super::signal(self.child.id(), "-CONT");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
