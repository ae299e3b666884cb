//! Engines we did not write, reading the lake: Apache Spark with delta-spark (scripts/spark.sh,
//! a local session driven over stdin) and Trino (scripts/trino.sh, its HTTP protocol), beside
//! rtlake's own SQL; and the per-table figures all of them must agree on, written in each one's
//! dialect.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// A result: rows of JSON values (numbers, strings, null).
pub type Rows = Vec<Vec<Value>>;

/// Whose SQL a statement is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// rtlake's (DataFusion's).
    Rtlake,
    Spark,
    Trino,
}

/// What a column's checksum sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Number,
    Text,
    Timestamp,
    Date,
    Bool,
    /// Counted only (lists, structs, binary).
    Other,
}

impl Kind {
    /// From DataFusion's `information_schema.columns.data_type`.
    pub fn of(data_type: &str) -> Kind {
        let t = data_type.to_ascii_lowercase();
        if t.starts_with("int")
            || t.starts_with("uint")
            || t.starts_with("float")
            || t.starts_with("decimal")
        {
            Kind::Number
        } else if t.contains("utf8") {
            Kind::Text
        } else if t.starts_with("timestamp") {
            Kind::Timestamp
        } else if t.starts_with("date") {
            Kind::Date
        } else if t == "boolean" {
            Kind::Bool
        } else {
            Kind::Other
        }
    }
}

impl Dialect {
    fn quote(self, name: &str) -> String {
        match self {
            Dialect::Spark => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// A Delta table (`ns.name`), at a version if given.
    pub fn table(self, qualified: &str, version: Option<u64>) -> String {
        self.table_in(false, qualified, version)
    }

    /// A Delta or Iceberg table (`ns.name`), at a version (an Iceberg snapshot id) if given:
    /// Spark's `ice` and Trino's `iceberg` catalogs are the Iceberg REST catalog.
    pub fn table_in(self, iceberg: bool, qualified: &str, version: Option<u64>) -> String {
        let name = match (self, iceberg) {
            (Dialect::Trino, false) => format!("delta.{qualified}"),
            (Dialect::Trino, true) => format!("iceberg.{qualified}"),
            (Dialect::Spark, true) => format!("ice.{qualified}"),
            _ => qualified.to_string(),
        };
        match (self, version) {
            (_, None) => name,
            (Dialect::Trino, Some(v)) => format!("{name} FOR VERSION AS OF {v}"),
            (_, Some(v)) => format!("{name} VERSION AS OF {v}"),
        }
    }

    /// An expression whose sum is the column's checksum, as a double.
    fn summand(self, col: &str, kind: Kind) -> Option<String> {
        let c = self.quote(col);
        Some(match (kind, self) {
            (Kind::Number, _) => format!("CAST({c} AS DOUBLE)"),
            (Kind::Text, _) => format!("CAST(length({c}) AS DOUBLE)"),
            // Whole seconds: Trino reads Delta timestamps at millisecond precision.
            (Kind::Timestamp, Dialect::Rtlake) => format!("CAST(to_unixtime({c}) AS DOUBLE)"),
            (Kind::Timestamp, Dialect::Spark) => format!("CAST(unix_seconds({c}) AS DOUBLE)"),
            (Kind::Timestamp, Dialect::Trino) => format!("floor(to_unixtime({c}))"),
            (Kind::Date, Dialect::Rtlake) => format!("CAST(CAST({c} AS INT) AS DOUBLE)"),
            (Kind::Date, Dialect::Spark) => format!("CAST(unix_date({c}) AS DOUBLE)"),
            (Kind::Date, Dialect::Trino) => {
                format!("CAST(date_diff('day', DATE '1970-01-01', {c}) AS DOUBLE)")
            }
            (Kind::Bool, _) => format!("CASE WHEN {c} THEN 1.0 ELSE 0.0 END"),
            (Kind::Other, _) => return None,
        })
    }

    /// One row: the row count, then per column its non-null count and the sum of its summand.
    pub fn checksum(self, table: &str, columns: &[(String, Kind)]) -> String {
        let mut items = vec!["CAST(COUNT(*) AS DOUBLE)".to_string()];
        for (col, kind) in columns {
            items.push(format!("CAST(COUNT({}) AS DOUBLE)", self.quote(col)));
            if let Some(s) = self.summand(col, *kind) {
                items.push(format!("SUM({s})"));
            }
        }
        format!("SELECT {} FROM {table}", aliased(items))
    }

    /// Rows per value of the partition columns, as strings, sorted.
    pub fn partitions(self, table: &str, columns: &[String]) -> String {
        let text = if self == Dialect::Spark {
            "STRING"
        } else {
            "VARCHAR"
        };
        let mut items: Vec<String> = columns
            .iter()
            .map(|c| format!("CAST({} AS {text})", self.quote(c)))
            .collect();
        let keys = (1..=items.len())
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        items.push("CAST(COUNT(*) AS DOUBLE)".into());
        format!(
            "SELECT {} FROM {table} GROUP BY {keys} ORDER BY {keys}",
            aliased(items)
        )
    }
}

/// The select list, each item named by its place (`c000`, `c001`, ...).
fn aliased(items: Vec<String>) -> String {
    items
        .into_iter()
        .enumerate()
        .map(|(i, e)| format!("{e} AS c{i:03}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Two results equal. Whole numbers (counts, and sums of whole numbers, exact in a double below
/// 2^53) exactly; other doubles within a relative 1e-12, since a sum taken in another order
/// rounds otherwise.
pub fn same(a: &Rows, b: &Rows) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(u, v)| match (u.as_f64(), v.as_f64()) {
                        (Some(u), Some(v)) if u.fract() == 0.0 && v.fract() == 0.0 => u == v,
                        (Some(u), Some(v)) => (u - v).abs() <= 1e-12 * u.abs().max(v.abs()),
                        _ => u == v,
                    })
        })
}

/// rtlake's SQL over a lake, in this process.
pub async fn rtlake_sql(lake: &Path, q: &str) -> Result<Rows, String> {
    rtlake_sql_in(&rtlake_lake::LakeConfig::at(lake.display().to_string()), q).await
}

/// rtlake's SQL over the lake `cfg` names (its catalog too), in this process.
pub async fn rtlake_sql_in(cfg: &rtlake_lake::LakeConfig, q: &str) -> Result<Rows, String> {
    let (names, out) = super::sql_written(cfg, q, rtlake_query::Format::Json).await?;
    Ok(String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let o: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
            names
                .iter()
                .map(|n| o.get(n).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect())
}

/// A local Spark session with delta-spark (crates/rtlake/tests/engines/spark_sql.py).
pub struct Spark {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Spark {
    /// `None` (after recording a skip) where scripts/spark.sh's Python and jars are not given.
    pub fn start(warehouse: &Path) -> Option<Spark> {
        let (Ok(python), Ok(jars)) = (
            std::env::var("RTLAKE_TEST_SPARK_PYTHON"),
            std::env::var("RTLAKE_TEST_SPARK_JARS"),
        ) else {
            rtlake_core::testing::skip_missing(
                "Spark: RTLAKE_TEST_SPARK_PYTHON and RTLAKE_TEST_SPARK_JARS are not set (scripts/test.sh sets them from scripts/spark.sh)",
            );
            return None;
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/engines/spark_sql.py");
        // The Iceberg REST catalog, if there is one, as Spark's `ice` catalog.
        let rest = std::env::var("RTLAKE_TEST_ICEBERG_REST").unwrap_or_default();
        let mut child = Command::new(python)
            .args([script, &jars, &warehouse.display().to_string(), &rest])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start Spark");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("Spark's first line");
        assert!(line.contains("ready"), "Spark did not start: {line:?}");
        Some(Spark {
            child,
            stdin,
            stdout,
        })
    }

    pub fn sql(&mut self, q: &str) -> Result<Rows, String> {
        self.sql_named(q).map(|(_, rows)| rows)
    }

    /// The result's column names, and its rows.
    pub fn sql_named(&mut self, q: &str) -> Result<(Vec<String>, Rows), String> {
        writeln!(self.stdin, "{}", Value::String(q.into())).expect("write to Spark");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from Spark");
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line:?}"))?;
        match v.get("error") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_string()),
            None => Ok((
                serde_json::from_value(v["columns"].clone()).unwrap(),
                serde_json::from_value(v["rows"].clone()).unwrap(),
            )),
        }
    }

    /// A Delta table's partition columns, as `DESCRIBE DETAIL` gives them; an Iceberg
    /// table's (in `ice`), as `SHOW CREATE TABLE` does.
    pub fn partition_columns(&mut self, table: &str) -> Result<Vec<String>, String> {
        if table.starts_with("ice.") {
            let rows = self.sql(&format!("SHOW CREATE TABLE {table}"))?;
            let create = rows[0][0].as_str().unwrap_or_default();
            let Some(i) = create.find("PARTITIONED BY (") else {
                return Ok(Vec::new());
            };
            let rest = &create[i + "PARTITIONED BY (".len()..];
            return Ok(rest[..rest.find(')').unwrap_or(0)]
                .split(',')
                .map(|s| s.trim().trim_matches('`').to_string())
                .filter(|s| !s.is_empty())
                .collect());
        }
        let (cols, rows) = self.sql_named(&format!("DESCRIBE DETAIL {table}"))?;
        let i = cols
            .iter()
            .position(|c| c == "partitionColumns")
            .ok_or("no partitionColumns")?;
        Ok(serde_json::from_value(rows[0][i].clone()).unwrap())
    }
}

impl Drop for Spark {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Trino server (scripts/trino.sh) with a `delta` catalog, over its HTTP protocol.
pub struct Trino {
    url: String,
    http: reqwest::Client,
}

impl Trino {
    /// `None` (after recording a skip) where `RTLAKE_TEST_TRINO` does not name a server.
    pub fn connect() -> Option<Trino> {
        let Ok(url) = std::env::var("RTLAKE_TEST_TRINO") else {
            rtlake_core::testing::skip_missing(
                "Trino: RTLAKE_TEST_TRINO is not set (scripts/test.sh starts scripts/trino.sh)",
            );
            return None;
        };
        Some(Trino {
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        })
    }

    /// A table's partition columns, as `SHOW CREATE TABLE` gives them (Delta's
    /// `partitioned_by`, Iceberg's `partitioning`).
    pub async fn partition_columns(&self, table: &str) -> Result<Vec<String>, String> {
        let rows = self.sql(&format!("SHOW CREATE TABLE {table}")).await?;
        let create = rows[0][0].as_str().unwrap_or_default();
        let Some((i, key)) = ["partitioned_by = ARRAY[", "partitioning = ARRAY["]
            .iter()
            .find_map(|k| create.find(k).map(|i| (i, *k)))
        else {
            return Ok(Vec::new());
        };
        let rest = &create[i + key.len()..];
        Ok(rest[..rest.find(']').unwrap_or(0)]
            .split(',')
            .map(|s| s.trim().trim_matches('\'').to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }

    pub async fn sql(&self, q: &str) -> Result<Rows, String> {
        let mut r: Value = self
            .http
            .post(format!("{}/v1/statement", self.url))
            .header("X-Trino-User", "rtlake-test")
            .body(q.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let mut rows = Rows::new();
        loop {
            if let Some(e) = r.get("error") {
                return Err(e["message"].as_str().unwrap_or_default().to_string());
            }
            if let Some(data) = r.get("data") {
                rows.extend(serde_json::from_value::<Rows>(data.clone()).unwrap());
            }
            let Some(next) = r.get("nextUri").and_then(Value::as_str).map(String::from) else {
                return Ok(rows);
            };
            r = self
                .http
                .get(next)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
        }
    }
}

/// Drops (without purging files) every table of `namespaces` from the Iceberg REST catalog at
/// `rest`: what an earlier run registered.
pub async fn forget_iceberg_tables(rest: &str, namespaces: &[&str]) {
    let http = reqwest::Client::new();
    for ns in namespaces {
        let Ok(r) = http
            .get(format!("{rest}/v1/namespaces/{ns}/tables"))
            .send()
            .await
        else {
            continue;
        };
        let v: Value = r.json().await.unwrap_or(Value::Null);
        for id in v["identifiers"].as_array().into_iter().flatten() {
            let name = id["name"].as_str().unwrap_or_default();
            let r = http
                .delete(format!("{rest}/v1/namespaces/{ns}/tables/{name}"))
                .send()
                .await
                .expect("the REST catalog answers");
            assert!(
                r.status().is_success(),
                "dropping {ns}.{name}: {}",
                r.status()
            );
        }
    }
}

/// The statements of a DDL script (`rtlake lake ddl`), as a client sends them: comment lines
/// dropped, each statement ending at a line that ends with `;`.
pub fn statements(ddl: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in ddl.lines().filter(|l| !l.trim_start().starts_with("--")) {
        cur.push_str(l);
        cur.push('\n');
        if l.trim_end().ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}
