//! Object stores: where the lake and the checkpoints live, a local folder or S3.
//!
//! `s3://bucket/prefix` (and `s3a://`) is served by object_store's S3 client, set up the way the
//! AWS tools are: the `AWS_*` environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...), then the shared
//! profile files (`~/.aws/credentials` and `~/.aws/config`, profile `AWS_PROFILE` or `default`),
//! then the instance or container credentials. `[lake.storage-options]` overrides them all.
//!
//! Commits are safe with several writers without a lock service: a Delta commit is a put of
//! `_delta_log/<version>.json` with `If-None-Match: *` (S3's conditional put), so of two writers
//! racing for one version one wins and the other sees the conflict and retries on top of it.
//! Every request is retried with exponential backoff (object_store's retry, up to 10 times
//! within 3 minutes) before an error reaches the pipeline, which then retries its epoch.

use crate::{Error, Result};
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::{
    DynObjectStore, ObjectStore, ObjectStoreScheme, aws::AmazonS3Builder, local::LocalFileSystem,
    path::Path, prefix::PrefixStore,
};
use std::collections::HashMap;
use std::sync::{Arc, Once};
use url::Url;

/// The URL schemes served by the S3 client.
pub const S3_SCHEMES: [&str; 2] = ["s3", "s3a"];

/// Makes `s3://` and `s3a://` known to delta-rs (once per process; later calls do nothing).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in S3_SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).expect("scheme parses");
            object_store_factories().insert(url.clone(), Arc::new(S3Factory));
            logstore_factories().insert(url, Arc::new(S3Factory));
        }
        // Availability tests fail a share of the lake's requests ([`crate::faults`]): local
        // lakes then go through a factory of ours too.
        if crate::faults::enabled() {
            let url = Url::parse("file://").expect("scheme parses");
            object_store_factories().insert(url, Arc::new(LocalFactory));
        }
    });
}

struct LocalFactory;

impl ObjectStoreFactory for LocalFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)?;
        Ok((crate::faults::wrap(Arc::from(store)), path))
    }
}

struct S3Factory;

impl ObjectStoreFactory for S3Factory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let store = s3(url, &config.raw).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let store = crate::faults::wrap(store);
        let path =
            Path::from_url_path(url.path()).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        Ok((store, path))
    }
}

impl LogStoreFactory for S3Factory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        // The default log store commits with a create-only put, which S3 does as a conditional
        // put (`If-None-Match: *`): no lock table needed.
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// The S3 client for the bucket of `url`: the environment, then the profile files, then
/// `options` on top.
fn s3(url: &Url, options: &HashMap<String, String>) -> Result<Arc<DynObjectStore>> {
    use object_store::aws::AmazonS3ConfigKey;
    let mut builder = AmazonS3Builder::from_env();
    // The profile fills what the environment left unset; its keys only when the environment
    // has none (a key from one place and a secret from another would never sign).
    let env_has_key = builder
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_some();
    for (key, value) in profile::settings() {
        let Ok(k) = key.parse::<AmazonS3ConfigKey>() else {
            continue;
        };
        let credential = key.starts_with("aws_access")
            || key.starts_with("aws_secret")
            || key.starts_with("aws_session");
        if builder.get_config_value(&k).is_none() && !(credential && env_has_key) {
            builder = builder.with_config(k, value);
        }
    }
    builder = builder.with_url(url.as_str());
    for (key, value) in options {
        let k = key.to_ascii_lowercase();
        let k = if k.starts_with("aws_") {
            k
        } else {
            format!("aws_{k}")
        };
        match k.parse() {
            Ok(k) => builder = builder.with_config(k, value),
            // delta-rs' own options (retries, limits) are not the client's.
            Err(_) => tracing::debug!(option = %key, "storage option not for the S3 client"),
        }
    }
    let store = builder.build().map_err(|e| Error::Location {
        uri: url.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(store))
}

/// The store holding everything under `url` (a folder: local paths are made if missing), with
/// paths relative to it.
pub fn open(url: &Url, options: &HashMap<String, String>) -> Result<Arc<DynObjectStore>> {
    open_plain(url, options).map(crate::faults::wrap)
}

fn open_plain(url: &Url, options: &HashMap<String, String>) -> Result<Arc<DynObjectStore>> {
    let err = |reason: String| Error::Location {
        uri: url.to_string(),
        reason,
    };
    match ObjectStoreScheme::parse(url)
        .map_err(|e| err(e.to_string()))?
        .0
    {
        ObjectStoreScheme::Local => {
            let dir = url
                .to_file_path()
                .map_err(|_| err("not a local path".into()))?;
            std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
            let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| err(e.to_string()))?;
            Ok(Arc::new(store))
        }
        ObjectStoreScheme::AmazonS3 => {
            let prefix = Path::from_url_path(url.path()).map_err(|e| err(e.to_string()))?;
            let root = s3(url, options)?;
            Ok(Arc::new(PrefixStore::new(root, prefix)))
        }
        ObjectStoreScheme::Memory => Ok(Arc::new(object_store::memory::InMemory::new())),
        other => Err(err(format!(
            "{other:?} storage is not supported by this build (local paths, file:// and s3:// are)"
        ))),
    }
}

/// Whether `store` answers: lists its root once, so a wrong endpoint, bucket or key is
/// reported at start with the store's own words.
pub async fn probe(url: &Url, store: &dyn ObjectStore) -> Result<()> {
    store
        .list_with_delimiter(None)
        .await
        .map(|_| ())
        .map_err(|e| Error::Location {
            uri: url.to_string(),
            reason: e.to_string(),
        })
}

/// The shared AWS profile files, read the way the AWS CLI does (the part S3 needs).
mod profile {
    use std::path::PathBuf;

    fn home() -> Option<PathBuf> {
        std::env::var_os("HOME").map(PathBuf::from)
    }

    /// `[section]`'s `key = value` lines of an INI file.
    fn section(text: &str, name: &str) -> Vec<(String, String)> {
        let mut inside = false;
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                inside = s.trim() == name;
            } else if inside && let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        out
    }

    /// The profile's credentials, region and endpoint as object_store keys (`aws_...`).
    pub fn settings() -> Vec<(String, String)> {
        let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        let read = |env: &str, default: &str| {
            std::env::var_os(env)
                .map(PathBuf::from)
                .or_else(|| home().map(|h| h.join(".aws").join(default)))
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default()
        };
        let credentials = read("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config = read("AWS_CONFIG_FILE", "config");
        let config_section = if name == "default" {
            "default".to_string()
        } else {
            format!("profile {name}")
        };
        let mut out = Vec::new();
        for (k, v) in section(&credentials, &name)
            .into_iter()
            .chain(section(&config, &config_section))
        {
            let key = match k.as_str() {
                "aws_access_key_id" | "aws_secret_access_key" | "aws_session_token" => k,
                "region" => "aws_region".into(),
                "endpoint_url" => "aws_endpoint".into(),
                _ => continue,
            };
            out.push((key, v));
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn a_named_profile_section_is_read_and_others_are_not() {
            let text =
                "[default]\naws_access_key_id = A\n[other]\naws_access_key_id = B\nregion=x\n";
            assert_eq!(
                super::section(text, "other"),
                vec![
                    ("aws_access_key_id".to_string(), "B".to_string()),
                    ("region".to_string(), "x".to_string())
                ]
            );
        }
    }
}
