//! What the registry's formats (`avro`, `json-schema`) share: the input's [`Subject`] in a
//! schema registry, whose latest schema at start gives the columns; the writer schemas that
//! messages name, fetched once; and the rule for a newer schema with more fields (the pipeline
//! starts again with them as columns, [`Kind::NewSchema`]).

use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use rtlake_registry::{Registered, RegistryConfig, Schema, SchemaRegistry, SchemaType, wire};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a registry that does not answer is waited for before the epoch fails (and is
/// retried from the lake's positions).
const WAIT: Duration = Duration::from_secs(60);

/// An input's subject in its registry.
pub(crate) struct Subject {
    registry: SchemaRegistry,
    /// `run.input.subject`, or `<topic>-value`.
    pub name: String,
    /// The language its schemas must be in.
    language: SchemaType,
    /// The id of the latest schema at start (the columns).
    pub reader_id: u32,
}

impl Subject {
    /// The subject of `input` (reading `topic`) and its latest schema, which must be in
    /// `language`; waits a while for a registry that does not answer.
    pub async fn open(
        input: &InputConfig,
        topic: &str,
        language: SchemaType,
    ) -> Result<(Self, Registered)> {
        let key = "run.input.schema-registry";
        let url = input.schema_registry.as_deref().ok_or_else(|| {
            Error::new(
                Kind::Config,
                format!("{key}: a {} input needs one", input.format),
            )
        })?;
        let registry = connect(key, url)?;
        let name = input
            .subject
            .clone()
            .unwrap_or_else(|| format!("{topic}-value"));
        let latest = match patiently(|| registry.latest(&name)).await {
            Ok(l) => l,
            Err(e) if e.is_not_found() => {
                return Err(Error::caused(
                    Kind::Config,
                    format!(
                        "subject {name} is not in the schema registry {url}: register the topic's \
                         schema first (a producer's serializer does, so does `rtlake produce --format {}`), \
                         or name another subject (run.input.subject)",
                        input.format
                    ),
                    e,
                ));
            }
            Err(e) => {
                return Err(Error::caused(
                    registry_kind(&e),
                    format!("subject {name}'s latest schema"),
                    e,
                ));
            }
        };
        if latest.schema.schema_type != language {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "subject {name}'s latest schema (id {}) is {}, and run.input.format is {}",
                    latest.id, latest.schema.schema_type, input.format
                ),
            ));
        }
        let subject = Self {
            registry,
            name,
            language,
            reader_id: latest.id,
        };
        Ok((subject, latest))
    }

    /// A subject of `registry` whose columns are schema `reader_id`'s, without asking it (for
    /// tests of the decoders).
    #[cfg(test)]
    pub fn known(
        registry: SchemaRegistry,
        name: &str,
        language: SchemaType,
        reader_id: u32,
    ) -> Self {
        Self {
            registry,
            name: name.into(),
            language,
            reader_id,
        }
    }

    /// The schema ids `msgs` carry for which `known` is false, in order.
    pub fn unknown_ids(&self, msgs: &[RawMessage], known: impl Fn(u32) -> bool) -> BTreeSet<u32> {
        msgs.iter()
            .filter_map(|m| m.payload.as_deref())
            .filter_map(|p| wire::split(p).ok())
            .map(|(id, _)| id)
            .filter(|id| !known(*id))
            .collect()
    }

    /// Writer schema `id`: `Ok(Err(why))` when its messages cannot be read (the registry does
    /// not hold it, or it is in another language); an error when the registry does not answer.
    pub async fn writer(&self, id: u32) -> Result<std::result::Result<Arc<Schema>, String>> {
        match patiently(|| self.registry.schema(id)).await {
            Ok(s) if s.schema_type != self.language => Ok(Err(format!(
                "schema id {id} is a {} schema, and this input reads {}",
                s.schema_type, self.language
            ))),
            Ok(s) => Ok(Ok(s)),
            Err(e) if e.is_not_found() => Ok(Err(format!(
                "schema id {id} is not in the schema registry {}",
                self.registry.url()
            ))),
            Err(e) => Err(Error::caused(
                registry_kind(&e),
                format!("schema id {id}"),
                e,
            )),
        }
    }

    /// A writer schema `id` has fields the columns lack (`new`): if the subject's latest
    /// version is newer than the columns', the pipeline is built again with it
    /// ([`Kind::NewSchema`]), so the new fields become columns; otherwise (an older schema, or
    /// one registered under another subject) they are skipped.
    pub async fn adopt_if_latest(&self, id: u32, new: &[String]) -> Result<()> {
        let latest = patiently(|| self.registry.latest(&self.name))
            .await
            .map_err(|e| {
                Error::caused(
                    registry_kind(&e),
                    format!("subject {}'s latest schema", self.name),
                    e,
                )
            })?;
        if latest.id == self.reader_id {
            tracing::info!(subject = %self.name, id, fields = ?new, "an older writer schema's extra fields are skipped");
            return Ok(());
        }
        Err(Error::new(
            Kind::NewSchema,
            format!(
                "subject {} has a new schema (id {}, version {}) with fields {}: the pipeline \
                 starts again with them as columns",
                self.name,
                latest.id,
                latest.version,
                new.join(", ")
            ),
        ))
    }
}

/// The writer schemas a decoder met, by id: those it reads (each as the decoder keeps it, `T`)
/// and those whose messages it refuses, with why.
pub(crate) struct Writers<T> {
    read: BTreeMap<u32, T>,
    refused: BTreeMap<u32, String>,
}

impl<T> Writers<T> {
    /// Only the columns' own schema, `id`.
    pub fn new(id: u32, reader: T) -> Self {
        Self {
            read: [(id, reader)].into(),
            refused: BTreeMap::new(),
        }
    }

    /// A set of writer schemas met: `read` and `refused` ones, by id.
    #[cfg(test)]
    pub fn of_known(read: BTreeMap<u32, T>, refused: BTreeMap<u32, String>) -> Self {
        Self { read, refused }
    }

    /// The schemas read, by id.
    pub fn read(&self) -> &BTreeMap<u32, T> {
        &self.read
    }

    /// Fetches the schemas `msgs` name that were not met before and decides with `check`
    /// whether each is read (as a `T`, with the fields it has beyond the columns, which
    /// [`Subject::adopt_if_latest`] weighs) or refused (why). `format` names the input in logs.
    pub async fn learn(
        &mut self,
        subject: &Subject,
        msgs: &[RawMessage],
        format: &str,
        mut check: impl FnMut(u32, &Schema) -> std::result::Result<(T, Option<Vec<String>>), String>,
    ) -> Result<()> {
        let new = subject.unknown_ids(msgs, |id| {
            self.read.contains_key(&id) || self.refused.contains_key(&id)
        });
        for id in new {
            let read = match subject.writer(id).await? {
                Err(why) => Err(why),
                Ok(s) => check(id, &s),
            };
            match read {
                Ok((writer, new)) => {
                    if let Some(new) = new {
                        subject.adopt_if_latest(id, &new).await?;
                    }
                    tracing::info!(subject = %subject.name, id, format, "a new writer schema");
                    self.read.insert(id, writer);
                }
                Err(why) => {
                    tracing::warn!(subject = %subject.name, id, format, reason = %why, "messages of this schema are refused");
                    self.refused.insert(id, why);
                }
            }
        }
        Ok(())
    }

    /// A message's writer schema, its id and its payload after the header; or why the message
    /// is refused. An error when the id was not met by [`Writers::learn`] first.
    pub fn of<'a>(
        &self,
        m: &'a RawMessage,
    ) -> Result<std::result::Result<(&T, u32, &'a [u8]), String>> {
        let Some(p) = m.payload.as_deref() else {
            return Ok(Err("the message has no value".into()));
        };
        let (id, rest) = match wire::split(p) {
            Ok(split) => split,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if let Some(why) = self.refused.get(&id) {
            return Ok(Err(why.clone()));
        }
        match self.read.get(&id) {
            Some(w) => Ok(Ok((w, id, rest))),
            None => Err(Error::new(
                Kind::Source,
                format!("schema id {id} was not fetched before decoding"),
            )),
        }
    }
}

/// The registry at `url` (config key `key`), its credentials from the environment.
pub(crate) fn connect(key: &str, url: &str) -> Result<SchemaRegistry> {
    let config =
        RegistryConfig::from_env(key, url).map_err(|e| Error::caused(Kind::Config, key, e))?;
    SchemaRegistry::new(config).map_err(|e| Error::caused(Kind::Config, key, e))
}

/// A registry that does not answer is waited for (the epoch is retried); one that refuses
/// (bad credentials, a bad request) will refuse again: the run stops and says so.
pub(crate) fn registry_kind(e: &rtlake_registry::Error) -> Kind {
    if e.is_transient() {
        Kind::Registry
    } else {
        Kind::Config
    }
}

/// Asks `f` again while the registry does not answer, for a while.
pub(crate) async fn patiently<T, F, Fut>(mut f: F) -> rtlake_registry::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = rtlake_registry::Result<T>>,
{
    let deadline = Instant::now() + WAIT;
    let mut pause = Duration::from_millis(250);
    loop {
        match f().await {
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "schema registry does not answer; waiting");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            r => return r,
        }
    }
}
