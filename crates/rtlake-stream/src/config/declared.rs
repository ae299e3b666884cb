//! A declared pipeline's parts (docs/pipelines.md, "Any topic"): the input's format and schema,
//! static tables for joins, and stages (SQL over the epoch's rows, or event-time windows) that
//! sinks name like the built-in operators.

use rtlake_core::ddl;
use rtlake_core::units::HumanDuration;
use serde::{Deserialize, Serialize};

/// How the input's messages are decoded.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InputConfig {
    /// The Kafka topic to read (a pipeline file's `input.topic` sets `kafka.topic`; `--topic`
    /// and `RTLAKE_KAFKA_TOPIC` still win).
    pub topic: Option<String>,
    /// `json`: one JSON object per message; numbers and booleans may come as strings.
    /// `avro`: Avro in the Confluent wire format, each message read by the schema whose id it
    /// carries (from `schema-registry`) as the subject's latest schema at start, whose fields
    /// are the columns. `json-schema` and `protobuf` likewise. `debezium`: Debezium's change
    /// events as JSON; the columns are the captured rows' (`schema`), plus `_op`,
    /// `_position`, `_source_ts` and `_table` from the envelope.
    #[serde(default = "json")]
    pub format: String,
    /// The columns (`json`, `debezium`): `name TYPE [NOT NULL], ...` (STRING, INT, BIGINT, DOUBLE,
    /// BOOLEAN, TIMESTAMP, DATE). With a registry the columns are the schema's.
    #[serde(default)]
    pub schema: String,
    /// The event-time column (a TIMESTAMP): window stages' default time, and `run.max-future`'s.
    pub event_time: Option<String>,
    /// The schema registry's URL (`avro`): Confluent's API (`http://registry:8081`, Apicurio's
    /// `.../apis/ccompat/v7`). Credentials come from `RTLAKE_SCHEMA_REGISTRY_USER` and
    /// `_PASSWORD`, or `_TOKEN`; a private CA from `RTLAKE_SCHEMA_REGISTRY_CA`.
    pub schema_registry: Option<String>,
    /// The subject whose latest schema gives the columns (default `<topic>-value`, the
    /// serializers' default naming).
    pub subject: Option<String>,
}

fn json() -> String {
    "json".into()
}

/// A table loaded once at start, for joins (`customers.csv` becomes table `customers`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticTable {
    /// Its name in SQL.
    pub name: String,
    /// A CSV file with a header row (`.csv`), or JSON Lines (`.json`, `.jsonl`, `.ndjson`).
    pub path: String,
}

/// Which window rows a window stage emits.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Each window once, when the watermark passes its end.
    #[default]
    Append,
    /// Every window that changed in the epoch.
    Update,
    /// Every window held, each epoch.
    Complete,
}

/// A stage: SQL over its input's rows, or a window aggregate of them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StageConfig {
    /// Its name, which sinks give as `operator`.
    pub name: String,
    /// `input` (the decoded messages, the default) or an earlier SQL stage.
    pub input: Option<String>,
    /// A query over the table `input` (and the static tables): projection, filter, joins,
    /// scalar functions. Row by row: no GROUP BY (a window stage aggregates).
    pub sql: Option<String>,
    /// `tumbling 5m`, `sliding 10m every 5m` or `session 2m`.
    pub window: Option<String>,
    /// A window stage's event-time column (default `input.event-time`).
    pub time: Option<String>,
    /// A window stage's grouping columns.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// A window stage's aggregates: `count(*) AS n, sum(x) AS total, ...` (count, sum, min,
    /// max, avg, last).
    pub aggregates: Option<String>,
    /// A window stage's output mode: `append` (default), `update` or `complete`.
    #[serde(default)]
    pub output_mode: Mode,
    /// A window stage's allowed lateness (default `run.lateness`).
    pub lateness: Option<HumanDuration>,
    /// A change stage's numeric column: per `key`, rows where it changed since the key's
    /// previous row, with `prev_<time>`, `prev_<column>`, `increase` and `decrease`.
    pub changes: Option<String>,
    /// A change stage's key column.
    pub key: Option<String>,
    /// A change stage's largest gap between a key's rows that still compares them (default:
    /// none).
    pub max_gap: Option<HumanDuration>,
}

impl StageConfig {
    /// Whether it is a window stage.
    pub fn is_window(&self) -> bool {
        self.window.is_some()
    }

    /// Whether it keeps state (a window or change stage).
    pub fn is_stateful(&self) -> bool {
        self.window.is_some() || self.changes.is_some()
    }
}

/// Checks the declared parts; the error is (key, value, reason).
pub(super) fn validate(
    input: Option<&InputConfig>,
    tables: &[StaticTable],
    stages: &[StageConfig],
    operators: Option<&[String]>,
) -> Result<(), (String, String, String)> {
    let e = |k: String, v: &str, r: String| Err((k, v.to_string(), r));
    let fail = |k: String, v: &str, r: String| (k, v.to_string(), r);
    if input.is_none() && !stages.is_empty() {
        return e(
            "run.stages".into(),
            "…",
            "declared stages read a declared input: add [input] with its schema".into(),
        );
    }
    let Some(input) = input else { return Ok(()) };
    // The columns of a registry's schema are known when the pipeline starts: its event-time
    // column is checked then.
    let declared = match (input.format.as_str(), &input.schema_registry) {
        ("json" | "debezium", None) => true,
        (f @ ("json" | "debezium"), Some(url)) => {
            return e(
                "run.input.schema-registry".into(),
                url,
                format!(
                    "a {f} input has a declared schema; a registry is for format = \"avro\", \"json-schema\" or \"protobuf\""
                ),
            );
        }
        (f @ ("avro" | "json-schema" | "protobuf"), None) => {
            return e(
                "run.input.schema-registry".into(),
                "",
                format!("a {f} input reads its schemas from a registry: set its URL"),
            );
        }
        (f @ ("avro" | "json-schema" | "protobuf"), Some(url)) => {
            if !input.schema.trim().is_empty() {
                return e(
                    "run.input.schema".into(),
                    &input.schema,
                    format!("a {f} input's columns are the registry's schema: leave schema out"),
                );
            }
            rtlake_registry::RegistryConfig::from_env("run.input.schema-registry", url)
                .map_err(|r| fail("run.input.schema-registry".into(), url, r.to_string()))?;
            false
        }
        (other, _) => {
            return e(
                "run.input.format".into(),
                other,
                "the formats are: json, avro, json-schema, protobuf, debezium".into(),
            );
        }
    };
    if declared {
        check_declared(input)?;
    }
    let ident = |x: &str| {
        !x.is_empty()
            && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !x.starts_with(|c: char| c.is_ascii_digit())
    };
    for (i, t) in tables.iter().enumerate() {
        if !ident(&t.name) || t.name == "input" {
            return e(
                format!("run.tables[{i}].name"),
                &t.name,
                "a table name is letters, digits and _, and not `input`".into(),
            );
        }
        let ext = t.path.rsplit('.').next().unwrap_or("");
        if !["csv", "json", "jsonl", "ndjson"].contains(&ext) {
            return e(
                format!("run.tables[{i}].path"),
                &t.path,
                "a static table is a .csv file (with a header row) or JSON Lines (.json, .jsonl, .ndjson)".into(),
            );
        }
    }
    for (i, s) in stages.iter().enumerate() {
        let key = |k: &str| format!("run.stages[{i}].{k}");
        if !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
            || s.name.is_empty()
            || s.name == "input"
            || operators.is_some_and(|o| o.contains(&s.name))
            || stages[..i].iter().any(|o| o.name == s.name)
        {
            return e(
                key("name"),
                &s.name,
                "a stage name is letters, digits, _ and -, not `input`, a registered operator's or another stage's".into(),
            );
        }
        if let Some(inp) = &s.input
            && inp != "input"
            && !stages[..i]
                .iter()
                .any(|o| &o.name == inp && o.sql.is_some())
        {
            return e(
                key("input"),
                inp,
                "a stage reads `input` or an earlier SQL stage".into(),
            );
        }
        if s.changes.is_some() {
            if s.sql.is_some() || s.window.is_some() || s.aggregates.is_some() {
                return e(
                    key("changes"),
                    "…",
                    "a change stage has no sql, window or aggregates: put SQL in a stage before it"
                        .into(),
                );
            }
            if s.key.is_none() {
                return e(key("key"), "", "a change stage names its key column".into());
            }
            if s.time.is_none() && input.event_time.is_none() {
                return e(
                    key("time"),
                    "",
                    "a change stage needs a time column: set time, or input.event-time".into(),
                );
            }
            continue;
        }
        if s.key.is_some() || s.max_gap.is_some() {
            return e(
                key("key"),
                "…",
                "key and max-gap are for change stages".into(),
            );
        }
        match (&s.sql, &s.window) {
            (Some(_), Some(_)) | (None, None) => {
                return e(
                    key("sql"),
                    "…",
                    "a stage has sql, window or changes (a window stage aggregates its input; put SQL in a stage before it)".into(),
                );
            }
            (Some(_), None) => {
                if s.aggregates.is_some() || !s.group_by.is_empty() || s.time.is_some() {
                    return e(
                        key("aggregates"),
                        "…",
                        "time, group-by and aggregates are for window stages".into(),
                    );
                }
            }
            (None, Some(w)) => {
                ddl::parse_window(w).map_err(|r| fail(key("window"), w, r))?;
                let Some(a) = &s.aggregates else {
                    return e(
                        key("aggregates"),
                        "",
                        "a window stage names its aggregates, like `count(*) AS n`".into(),
                    );
                };
                ddl::parse_aggregates(a).map_err(|r| fail(key("aggregates"), a, r))?;
                if s.time.is_none() && input.event_time.is_none() {
                    return e(
                        key("time"),
                        "",
                        "a window stage needs an event-time column: set time, or input.event-time"
                            .into(),
                    );
                }
            }
        }
    }
    Ok(())
}

/// The declared columns of a JSON input, and its event-time column among them.
fn check_declared(input: &InputConfig) -> Result<(), (String, String, String)> {
    let e = |k: String, v: &str, r: String| Err((k, v.to_string(), r));
    let schema = ddl::parse_schema(&input.schema)
        .map_err(|r| ("run.input.schema".to_string(), input.schema.clone(), r))?;
    if let Some(t) = &input.event_time {
        match schema.field_with_name(t) {
            Ok(f) if matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..)) => {}
            Ok(_) => {
                return e(
                    "run.input.event-time".into(),
                    t,
                    "the event-time column must be a TIMESTAMP".into(),
                );
            }
            Err(_) => {
                return e(
                    "run.input.event-time".into(),
                    t,
                    "not a column of run.input.schema".into(),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(format: &str, schema: &str, registry: Option<&str>) -> InputConfig {
        InputConfig {
            topic: None,
            format: format.into(),
            schema: schema.into(),
            event_time: None,
            schema_registry: registry.map(String::from),
            subject: None,
        }
    }

    fn check(i: &InputConfig) -> Result<(), (String, String, String)> {
        validate(Some(i), &[], &[], None)
    }

    #[test]
    fn an_avro_input_names_its_registry_and_declares_no_columns() {
        assert!(check(&input("avro", "", Some("http://sr:8081"))).is_ok());
        let (key, _, why) = check(&input("avro", "", None)).unwrap_err();
        assert_eq!(key, "run.input.schema-registry");
        assert!(why.contains("set its URL"), "{why}");
        let (key, _, why) = check(&input("avro", "id STRING", Some("http://sr:8081"))).unwrap_err();
        assert_eq!(key, "run.input.schema");
        assert!(why.contains("leave schema out"), "{why}");
        let (key, value, _) = check(&input("avro", "", Some("sr:8081"))).unwrap_err();
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("run.input.schema-registry", "sr:8081")
        );
        let (key, _, _) = check(&input("json", "id STRING", Some("http://sr:8081"))).unwrap_err();
        assert_eq!(key, "run.input.schema-registry");
        let (key, value, why) = check(&input("thrift", "", None)).unwrap_err();
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("run.input.format", "thrift")
        );
        assert!(why.contains("json, avro"), "{why}");
    }
}
