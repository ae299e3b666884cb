//! An Iceberg REST catalog client: the catalog protocol Polaris, Nessie, Gravitino,
//! Lakekeeper, Unity, S3 Tables and the Iceberg project's own server speak.
//!
//! rtlake writes the data files, manifests and manifest lists itself, under the table's
//! location; the catalog holds the metadata. A commit sends the changes (a new snapshot, a
//! schema) with requirements, `assert-table-uuid` and `assert-ref-snapshot-id` on `main`, so
//! the catalog applies it only if the table is still at the snapshot the commit was made on;
//! otherwise it answers 409 and the sink reloads, as with the file catalog. An answer that
//! says nothing of the outcome (a 5xx, a lost connection) is reported as a conflict too: the
//! sink reloads and recognises its own commit by its `rtlake.commit-id`.
//!
//! Credentials come from the environment, never the config file: `RTLAKE_CATALOG_TOKEN` is
//! sent as a bearer token; `RTLAKE_CATALOG_CREDENTIAL` (`client_id:client_secret`) is
//! exchanged for one at the catalog's OAuth2 endpoint (`RTLAKE_CATALOG_SCOPE`, default
//! `PRINCIPAL_ROLE:ALL`, Polaris' convention).

use super::catalog::{Conflict, Loaded};
use super::metadata::{Change, TableMetadata};
use crate::{Error, Result};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};
use url::Url;

/// A table's name in the catalog: its namespace (one or more levels) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// The namespace's levels.
    pub namespace: Vec<String>,
    /// The table's name.
    pub name: String,
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace.join("."), self.name)
    }
}

/// A connection to one REST catalog.
pub struct RestCatalog {
    uri: String,
    http: reqwest::Client,
    warehouse: String,
    parent: Vec<String>,
    /// `v1/` or `v1/<prefix>/`, from the catalog's `/v1/config`.
    base: OnceCell<Url>,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for RestCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestCatalog")
            .field("uri", &self.uri)
            .field("warehouse", &self.warehouse)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

/// How long one request may take: a catalog that hangs fails the commit, which is retried.
const TIMEOUT: Duration = Duration::from_secs(30);

impl RestCatalog {
    /// A client of the catalog at `uri`; nothing is asked until a table is.
    pub fn new(uri: &str, warehouse: &str, parent_namespace: &str) -> Result<Self> {
        let uri = uri.trim().trim_end_matches('/').to_string();
        Url::parse(&format!("{uri}/")).map_err(|e| Error::Catalog {
            uri: uri.clone(),
            reason: format!("not a URL: {e}"),
        })?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| Error::Catalog {
                uri: uri.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            uri,
            http,
            warehouse: warehouse.trim().to_string(),
            parent: parent_namespace
                .split('.')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            base: OnceCell::new(),
            token: Mutex::new(std::env::var("RTLAKE_CATALOG_TOKEN").ok()),
        })
    }

    /// The catalog's URL.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The catalog name of the lake table `qualified` (`bronze.stations`, `_rejected`).
    pub fn ident(&self, qualified: &str) -> Ident {
        let mut namespace = self.parent.clone();
        let name = match qualified.rsplit_once('.') {
            Some((ns, name)) => {
                namespace.extend(ns.split('.').map(str::to_string));
                name
            }
            None => qualified,
        };
        if namespace.is_empty() {
            namespace.push("default".into());
        }
        Ident {
            namespace,
            name: name.to_string(),
        }
    }

    fn fail(&self, reason: impl std::fmt::Display) -> Error {
        Error::Catalog {
            uri: self.uri.clone(),
            reason: reason.to_string(),
        }
    }

    /// Asks for a token with the OAuth2 client credentials in `RTLAKE_CATALOG_CREDENTIAL`.
    async fn authorize(&self) -> Result<Option<String>> {
        let mut token = self.token.lock().await;
        if token.is_some() {
            return Ok(token.clone());
        }
        let Ok(credential) = std::env::var("RTLAKE_CATALOG_CREDENTIAL") else {
            return Ok(None);
        };
        let (id, secret) = credential.split_once(':').ok_or_else(|| {
            self.fail("RTLAKE_CATALOG_CREDENTIAL must be client_id:client_secret")
        })?;
        let scope =
            std::env::var("RTLAKE_CATALOG_SCOPE").unwrap_or_else(|_| "PRINCIPAL_ROLE:ALL".into());
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", id)
            .append_pair("client_secret", secret)
            .append_pair("scope", &scope)
            .finish();
        let r = self
            .http
            .post(format!("{}/v1/oauth/tokens", self.uri))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| self.fail(format!("OAuth2 token request: {e}")))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        let t = v["access_token"].as_str().ok_or_else(|| {
            self.fail(format!(
                "OAuth2 token request answered {status}: {}",
                error_message(&v)
            ))
        })?;
        *token = Some(t.to_string());
        Ok(token.clone())
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let mut req = self.http.request(method.clone(), url.clone());
        if let Some(t) = self.authorize().await? {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req
            .send()
            .await
            .map_err(|e| self.fail(format!("{method} {url}: {e}")))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(self.fail(format!(
                "{method} {url} answered {status}: {} (credentials: RTLAKE_CATALOG_TOKEN or RTLAKE_CATALOG_CREDENTIAL)",
                error_message(&v)
            )));
        }
        Ok((status, v))
    }

    /// `<uri>/v1/<prefix>/`, asking the catalog's config once.
    async fn base(&self) -> Result<&Url> {
        self.base
            .get_or_try_init(|| async {
                let mut url =
                    Url::parse(&format!("{}/v1/config", self.uri)).map_err(|e| self.fail(e))?;
                if !self.warehouse.is_empty() {
                    url.query_pairs_mut()
                        .append_pair("warehouse", &self.warehouse);
                }
                let (status, v) = self.request(reqwest::Method::GET, url, None).await?;
                if !status.is_success() {
                    return Err(self.fail(format!(
                        "GET /v1/config answered {status}: {}",
                        error_message(&v)
                    )));
                }
                let prefix = v["overrides"]["prefix"]
                    .as_str()
                    .or(v["defaults"]["prefix"].as_str())
                    .unwrap_or("");
                let base = if prefix.is_empty() {
                    format!("{}/v1/", self.uri)
                } else {
                    format!("{}/v1/{}/", self.uri, encode(prefix))
                };
                Url::parse(&base).map_err(|e| self.fail(e))
            })
            .await
    }

    async fn url(&self, path: &str) -> Result<Url> {
        self.base().await?.join(path).map_err(|e| self.fail(e))
    }

    fn table_path(id: &Ident) -> String {
        format!(
            "namespaces/{}/tables/{}",
            encode(&id.namespace.join("\u{1f}")),
            encode(&id.name)
        )
    }

    /// Loads a table (`None`: the catalog has no such table).
    pub async fn load(&self, id: &Ident) -> Result<Option<Loaded>> {
        let url = self.url(&Self::table_path(id)).await?;
        let (status, v) = self.request(reqwest::Method::GET, url, None).await?;
        match status.as_u16() {
            200 => self.loaded(id, v).map(Some),
            404 => Ok(None),
            _ => Err(self.fail(format!(
                "loading {id} answered {status}: {}",
                error_message(&v)
            ))),
        }
    }

    fn loaded(&self, id: &Ident, v: Value) -> Result<Loaded> {
        let location = v["metadata-location"]
            .as_str()
            .ok_or_else(|| self.fail(format!("{id}: the answer names no metadata-location")))?
            .to_string();
        let metadata: TableMetadata = serde_json::from_value(v["metadata"].clone())
            .map_err(|e| self.fail(format!("{id}: its metadata: {e}")))?;
        // `00003-<uuid>.metadata.json`: the catalog's version number, for status pages.
        let version = location
            .rsplit('/')
            .next()
            .and_then(|f| f.split('-').next())
            .and_then(|n| n.trim_start_matches('v').parse().ok())
            .unwrap_or(0);
        Ok(Loaded {
            metadata,
            location,
            version,
        })
    }

    /// Makes the namespace and each level above it, if missing.
    async fn ensure_namespace(&self, namespace: &[String]) -> Result<()> {
        for depth in 1..=namespace.len() {
            let ns = &namespace[..depth];
            let url = self.url("namespaces").await?;
            let (status, v) = self
                .request(
                    reqwest::Method::POST,
                    url,
                    Some(&json!({"namespace": ns, "properties": {}})),
                )
                .await?;
            if !status.is_success() && status.as_u16() != 409 {
                return Err(self.fail(format!(
                    "creating namespace {} answered {status}: {}",
                    ns.join("."),
                    error_message(&v)
                )));
            }
        }
        Ok(())
    }

    /// Creates a table with `metadata`'s schema, partition spec, properties and location;
    /// [`Conflict`] if it exists. The catalog assigns the field ids: the returned metadata is
    /// the one to write with.
    pub async fn create(
        &self,
        id: &Ident,
        metadata: &TableMetadata,
    ) -> Result<std::result::Result<Loaded, Conflict>> {
        self.ensure_namespace(&id.namespace).await?;
        let url = self
            .url(&format!(
                "namespaces/{}/tables",
                encode(&id.namespace.join("\u{1f}"))
            ))
            .await?;
        let body = json!({
            "name": id.name,
            "location": metadata.location,
            "schema": metadata.current_schema(),
            "partition-spec": metadata.default_spec(),
            "properties": metadata.properties,
            "stage-create": false,
        });
        let (status, v) = self
            .request(reqwest::Method::POST, url, Some(&body))
            .await?;
        match status.as_u16() {
            200 => self.loaded(id, v).map(Ok),
            409 => Ok(Err(Conflict)),
            _ => Err(self.fail(format!(
                "creating {id} answered {status}: {}",
                error_message(&v)
            ))),
        }
    }

    /// Commits `change` on top of `base`: [`Conflict`] if the table moved since `base` was
    /// loaded, or if the outcome is unknown (reload and look for the commit).
    pub async fn commit(
        &self,
        id: &Ident,
        base: &Loaded,
        change: &Change,
    ) -> Result<std::result::Result<Loaded, Conflict>> {
        let md = &base.metadata;
        let mut requirements = vec![
            json!({"type": "assert-table-uuid", "uuid": md.table_uuid}),
            json!({"type": "assert-ref-snapshot-id", "ref": "main",
                   "snapshot-id": md.current_snapshot().map(|s| s.snapshot_id)}),
        ];
        let mut updates = Vec::new();
        if let Some(s) = &change.schema {
            requirements.push(json!({"type": "assert-current-schema-id",
                                     "current-schema-id": md.current_schema_id}));
            updates.push(json!({"action": "add-schema", "schema": s,
                                "last-column-id": md.last_column_id.max(s.max_id())}));
            updates.push(json!({"action": "set-current-schema", "schema-id": -1}));
        }
        if let Some(s) = &change.snapshot {
            updates.push(json!({"action": "add-snapshot", "snapshot": s}));
            updates.push(json!({"action": "set-snapshot-ref", "ref-name": "main",
                                "type": "branch", "snapshot-id": s.snapshot_id}));
        }
        if !change.remove_snapshots.is_empty() {
            updates.push(json!({"action": "remove-snapshots",
                                "snapshot-ids": change.remove_snapshots}));
        }
        let body = json!({
            "identifier": {"namespace": id.namespace, "name": id.name},
            "requirements": requirements,
            "updates": updates,
        });
        let url = self.url(&Self::table_path(id)).await?;
        let (status, v) = match self.request(reqwest::Method::POST, url, Some(&body)).await {
            Ok(r) => r,
            // The request may or may not have reached the catalog.
            Err(e) => {
                tracing::warn!(table = %id, error = %e, "Iceberg commit outcome unknown; reloading");
                return Ok(Err(Conflict));
            }
        };
        match status.as_u16() {
            200 => self.loaded(id, v).map(Ok),
            409 => Ok(Err(Conflict)),
            500 | 502 | 503 | 504 => {
                tracing::warn!(table = %id, %status, reason = error_message(&v), "Iceberg commit outcome unknown; reloading");
                Ok(Err(Conflict))
            }
            _ => Err(self.fail(format!(
                "committing to {id} answered {status}: {}",
                error_message(&v)
            ))),
        }
    }
}

/// The message of a REST error answer (`{"error": {"message": ...}}`), or the answer.
fn error_message(v: &Value) -> String {
    match v["error"]["message"].as_str() {
        Some(m) => m.to_string(),
        None => {
            let s = v.to_string();
            s.chars().take(300).collect()
        }
    }
}

/// Percent-encodes one path segment.
fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lake_tables_map_to_catalog_names() {
        let c = RestCatalog::new("http://127.0.0.1:1/", "", "").unwrap();
        assert_eq!(c.ident("bronze.stations").to_string(), "bronze.stations");
        assert_eq!(c.ident("_rejected").to_string(), "default._rejected");
        let c = RestCatalog::new("http://127.0.0.1:1", "", "prod.lake").unwrap();
        assert_eq!(
            c.ident("bronze.stations"),
            Ident {
                namespace: vec!["prod".into(), "lake".into(), "bronze".into()],
                name: "stations".into()
            }
        );
        assert_eq!(c.ident("_rejected").to_string(), "prod.lake._rejected");
        assert_eq!(encode("a\u{1f}b c"), "a%1Fb%20c");
    }

    #[test]
    fn a_catalog_that_is_not_a_url_is_refused() {
        let e = RestCatalog::new("http://exa mple", "", "").unwrap_err();
        assert!(e.to_string().contains("not a URL"), "{e}");
    }
}
