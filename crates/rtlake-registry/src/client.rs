//! A client of the Confluent Schema Registry REST API: schemas by id (cached: an id's schema
//! never changes), a subject's latest version, and registering a schema under a subject.
//!
//! Credentials come from the environment, never the config file: `RTLAKE_SCHEMA_REGISTRY_USER`
//! and `RTLAKE_SCHEMA_REGISTRY_PASSWORD` for HTTP basic auth (Confluent Cloud's API key and
//! secret), or `RTLAKE_SCHEMA_REGISTRY_TOKEN` for a bearer token. `https://` registries are
//! checked against the system's roots, plus `RTLAKE_SCHEMA_REGISTRY_CA` (a PEM file) if set.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// The schema languages a registry holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Apache Avro (the registry's default when `schemaType` is absent).
    #[default]
    Avro,
    /// Protocol Buffers (a `.proto` file's text).
    Protobuf,
    /// JSON Schema.
    Json,
}

impl std::fmt::Display for SchemaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        })
    }
}

/// A schema as the registry stores it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    /// Its language.
    #[serde(default)]
    pub schema_type: SchemaType,
    /// Its text (Avro's JSON, a `.proto` file, a JSON Schema document).
    pub schema: String,
    /// Schemas it imports by subject and version (none for a self-contained schema).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<serde_json::Value>,
}

/// A schema registered under a subject.
#[derive(Clone, Debug)]
pub struct Registered {
    /// The subject (`<topic>-value` by the default naming strategy).
    pub subject: String,
    /// Its version in the subject.
    pub version: i64,
    /// Its id, which messages carry.
    pub id: u32,
    /// The schema.
    pub schema: Arc<Schema>,
}

/// How the client proves who it is.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic auth.
    Basic {
        /// The user (an API key).
        user: String,
        /// The password (an API secret).
        password: String,
    },
    /// A bearer token.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    // Never the secret itself: configs are logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// Where a registry is and how to reach it.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Its base URL (`http://registry:8081`, `https://.../apis/ccompat/v7`).
    pub url: Url,
    /// Credentials.
    pub auth: Auth,
    /// A PEM file of extra trusted roots, for a registry behind a private CA.
    pub ca: Option<String>,
}

impl RegistryConfig {
    /// The registry at `url` (the config key `key` names it in errors), with credentials and a
    /// CA from the environment.
    pub fn from_env(key: &str, url: &str) -> Result<Self> {
        Self::new(key, url, |name| std::env::var(name).ok())
    }

    /// As [`RegistryConfig::from_env`], reading variables through `var`.
    pub fn new(key: &str, url: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            key: key.to_string(),
            reason,
        };
        let mut parsed = Url::parse(url).map_err(|e| bad(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(format!("{url}: a registry URL is http:// or https://")));
        }
        if !parsed.path().ends_with('/') {
            let path = format!("{}/", parsed.path());
            parsed.set_path(&path);
        }
        let user = var("RTLAKE_SCHEMA_REGISTRY_USER").filter(|v| !v.is_empty());
        let password = var("RTLAKE_SCHEMA_REGISTRY_PASSWORD").filter(|v| !v.is_empty());
        let token = var("RTLAKE_SCHEMA_REGISTRY_TOKEN").filter(|v| !v.is_empty());
        let auth = match (user, password, token) {
            (Some(_), _, Some(_)) => {
                return Err(Error::Config {
                    key: "RTLAKE_SCHEMA_REGISTRY_TOKEN".into(),
                    reason: "set either a token or a user and password, not both".into(),
                });
            }
            (Some(user), Some(password), None) => Auth::Basic { user, password },
            (Some(_), None, None) => {
                return Err(Error::Config {
                    key: "RTLAKE_SCHEMA_REGISTRY_PASSWORD".into(),
                    reason: "RTLAKE_SCHEMA_REGISTRY_USER is set without a password".into(),
                });
            }
            (None, Some(_), _) => {
                return Err(Error::Config {
                    key: "RTLAKE_SCHEMA_REGISTRY_USER".into(),
                    reason: "RTLAKE_SCHEMA_REGISTRY_PASSWORD is set without a user".into(),
                });
            }
            (None, None, Some(token)) => Auth::Bearer(token),
            (None, None, None) => Auth::None,
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(format!(
                "{}: put the registry's credentials in RTLAKE_SCHEMA_REGISTRY_USER and \
                 RTLAKE_SCHEMA_REGISTRY_PASSWORD, not in the URL (configs are logged)",
                redact(&parsed)
            )));
        }
        let ca = var("RTLAKE_SCHEMA_REGISTRY_CA").filter(|v| !v.is_empty());
        Ok(Self {
            url: parsed,
            auth,
            ca,
        })
    }
}

fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// A connection to one registry, with the schemas it has given out so far.
pub struct SchemaRegistry {
    config: RegistryConfig,
    http: reqwest::Client,
    by_id: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.config.url.as_str())
            .field("auth", &self.config.auth)
            .finish_non_exhaustive()
    }
}

/// The registry's error body: `{"error_code": 40401, "message": "Subject not found"}`.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionBody {
    subject: Option<String>,
    version: i64,
    id: u32,
    #[serde(default)]
    schema_type: SchemaType,
    schema: String,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

impl SchemaRegistry {
    /// A client of the registry `config` describes (no request is made yet).
    pub fn new(config: RegistryConfig) -> Result<Self> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("rtlake/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca {
            let key = || "RTLAKE_SCHEMA_REGISTRY_CA".to_string();
            let pem = std::fs::read(path).map_err(|e| Error::Config {
                key: key(),
                reason: format!("{path}: {e}"),
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Config {
                key: key(),
                reason: format!("{path}: not a PEM certificate: {e}"),
            })?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| Error::Config {
            key: "schema-registry".into(),
            reason: format!("HTTP client: {e}"),
        })?;
        Ok(Self {
            config,
            http,
            by_id: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &Url {
        &self.config.url
    }

    fn url_of(&self, path: &str) -> Result<Url> {
        self.config.url.join(path).map_err(|e| Error::Config {
            key: "schema-registry".into(),
            reason: format!("{}{path}: {e}", self.config.url),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let url = self.url_of(path)?;
        let mut req = self.http.request(method, url.clone()).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        req = match &self.config.auth {
            Auth::None => req,
            Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
            Auth::Bearer(token) => req.bearer_auth(token),
        };
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
            source: Some(e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
            let message = body
                .as_ref()
                .and_then(|b| b.message.clone())
                .unwrap_or_else(|| text.chars().take(200).collect());
            let err = Error::Refused {
                url: url.to_string(),
                status: status.as_u16(),
                code: body.and_then(|b| b.error_code),
                message,
            };
            if err.is_transient() {
                return Err(Error::Unreachable {
                    url: url.to_string(),
                    reason: err.to_string(),
                    source: None,
                });
            }
            return Err(err);
        }
        serde_json::from_str(&text).map_err(|e| Error::Protocol {
            url: url.to_string(),
            reason: format!("{e}: {}", text.chars().take(200).collect::<String>()),
        })
    }

    /// The schema with id `id` (asked once; ids never change meaning).
    pub async fn schema(&self, id: u32) -> Result<Arc<Schema>> {
        if let Some(s) = self.cached(id) {
            return Ok(s);
        }
        let schema: Schema = self
            .call(reqwest::Method::GET, &format!("schemas/ids/{id}"), None)
            .await?;
        Ok(self.remember(id, schema))
    }

    /// The schema with id `id` if it was fetched or registered before.
    pub fn cached(&self, id: u32) -> Option<Arc<Schema>> {
        self.by_id.lock().ok()?.get(&id).cloned()
    }

    fn remember(&self, id: u32, schema: Schema) -> Arc<Schema> {
        let schema = Arc::new(schema);
        if let Ok(mut m) = self.by_id.lock() {
            m.insert(id, schema.clone());
        }
        schema
    }

    /// The newest version registered under `subject`. Asked as the list of versions and then
    /// the highest, which every registry answers (some mishandle `versions/latest`).
    pub async fn latest(&self, subject: &str) -> Result<Registered> {
        let path = format!("subjects/{}/versions", encode(subject));
        let versions: Vec<i64> = self.call(reqwest::Method::GET, &path, None).await?;
        let Some(newest) = versions.iter().max() else {
            return Err(Error::Refused {
                url: self.url_of(&path)?.to_string(),
                status: 404,
                code: Some(40401),
                message: format!("subject {subject} has no versions"),
            });
        };
        let v: VersionBody = self
            .call(reqwest::Method::GET, &format!("{path}/{newest}"), None)
            .await?;
        let schema = self.remember(
            v.id,
            Schema {
                schema_type: v.schema_type,
                schema: v.schema,
                references: v.references,
            },
        );
        Ok(Registered {
            subject: v.subject.unwrap_or_else(|| subject.to_string()),
            version: v.version,
            id: v.id,
            schema,
        })
    }

    /// Registers `schema` under `subject` (the registry checks it against the subject's
    /// compatibility rule), returning its id; registering the same schema again returns the same id.
    pub async fn register(&self, subject: &str, schema: &Schema) -> Result<u32> {
        #[derive(Deserialize)]
        struct Id {
            id: u32,
        }
        let body = serde_json::to_value(schema).map_err(|e| Error::Protocol {
            url: self.config.url.to_string(),
            reason: e.to_string(),
        })?;
        let path = format!("subjects/{}/versions", encode(subject));
        let id: Id = self.call(reqwest::Method::POST, &path, Some(body)).await?;
        self.remember(id.id, schema.clone());
        Ok(id.id)
    }
}

/// A subject as one path segment (subjects may hold `/` or `:`).
fn encode(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for b in subject.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn credentials_come_from_the_environment_and_never_show() {
        let c = RegistryConfig::new(
            "run.input.schema-registry",
            "https://sr.example.com/apis/ccompat/v7",
            env(&[
                ("RTLAKE_SCHEMA_REGISTRY_USER", "key"),
                ("RTLAKE_SCHEMA_REGISTRY_PASSWORD", "s3cret"),
            ]),
        )
        .unwrap();
        assert_eq!(c.url.as_str(), "https://sr.example.com/apis/ccompat/v7/");
        assert_eq!(
            c.url.join("schemas/ids/1").unwrap().as_str(),
            "https://sr.example.com/apis/ccompat/v7/schemas/ids/1"
        );
        let shown = format!("{c:?}");
        assert!(
            shown.contains("key") && !shown.contains("s3cret"),
            "{shown}"
        );
        let t = RegistryConfig::new(
            "k",
            "http://sr:8081",
            env(&[("RTLAKE_SCHEMA_REGISTRY_TOKEN", "tok")]),
        )
        .unwrap();
        assert_eq!(t.auth, Auth::Bearer("tok".into()));
        assert!(!format!("{t:?}").contains("tok\""));
    }

    #[test]
    fn a_bad_url_or_half_a_credential_is_refused_by_name() {
        let e = RegistryConfig::new("run.input.schema-registry", "sr:8081", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("run.input.schema-registry"), "{e}");
        let e = RegistryConfig::new("k", "http://u:p@sr:8081", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("RTLAKE_SCHEMA_REGISTRY_USER") && !e.contains(":p@"),
            "{e}"
        );
        let e = RegistryConfig::new(
            "k",
            "http://sr:8081",
            env(&[("RTLAKE_SCHEMA_REGISTRY_USER", "u")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("without a password"), "{e}");
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(encode("orders-value"), "orders-value");
        assert_eq!(encode("a/b:c"), "a%2Fb%3Ac");
    }

    #[tokio::test]
    async fn a_registry_that_is_not_there_is_a_transient_error() {
        let c = RegistryConfig::new("k", "http://127.0.0.1:9", env(&[])).unwrap();
        let e = SchemaRegistry::new(c).unwrap().schema(1).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    }
}
