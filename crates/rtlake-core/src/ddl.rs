//! The small languages of a declared pipeline: an input schema (`order_id STRING NOT NULL,
//! amount DOUBLE`), a window (`tumbling 5m`, `sliding 10m every 5m`, `session 2m`) and a list of
//! aggregates (`count(*) AS orders, sum(amount) AS revenue`). Each parser says what it expected
//! and where.

use crate::units::HumanDuration;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use std::time::Duration;

/// The types a declared column may have, as written and as Arrow stores them.
pub const TYPES: &[(&str, &str)] = &[
    ("STRING", "text (also VARCHAR, TEXT)"),
    ("INT", "32-bit integer (also INTEGER)"),
    ("BIGINT", "64-bit integer (also LONG)"),
    ("DOUBLE", "64-bit float (also FLOAT)"),
    ("BOOLEAN", "true or false (also BOOL)"),
    (
        "TIMESTAMP",
        "an instant, RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC)",
    ),
    ("DATE", "a calendar day, `YYYY-MM-DD`"),
];

fn data_type(word: &str) -> Option<DataType> {
    Some(match word.to_ascii_uppercase().as_str() {
        "STRING" | "VARCHAR" | "TEXT" => DataType::Utf8,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" | "LONG" => DataType::Int64,
        "DOUBLE" | "FLOAT" => DataType::Float64,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "DATE" => DataType::Date32,
        _ => return None,
    })
}

/// Column names the engine adds to every input row: where the message came from.
pub const METADATA_COLUMNS: &[&str] = &["_topic", "_partition", "_offset", "_timestamp", "_key"];

/// Parses `name TYPE [NOT NULL], ...` into a schema.
pub fn parse_schema(text: &str) -> Result<Schema, String> {
    let mut fields: Vec<Field> = Vec::new();
    for (i, col) in text.split(',').enumerate() {
        let words: Vec<&str> = col.split_whitespace().collect();
        let n = i + 1;
        let (name, ty, rest) = match words.as_slice() {
            [name, ty, rest @ ..] => (*name, *ty, rest),
            [] if text.trim().is_empty() => return Err("the schema names no column".into()),
            _ => {
                return Err(format!(
                    "column {n} ({:?}) must be `name TYPE`, like `amount DOUBLE`",
                    col.trim()
                ));
            }
        };
        let nullable = match rest
            .iter()
            .map(|w| w.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => true,
            [a, b] if a == "NOT" && b == "NULL" => false,
            _ => {
                return Err(format!(
                    "column {name}: after the type only NOT NULL may follow, not {:?}",
                    rest.join(" ")
                ));
            }
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!(
                "column name {name:?} must be letters, digits and _ (not starting with a digit)"
            ));
        }
        if METADATA_COLUMNS.contains(&name) {
            return Err(format!(
                "column name {name} is taken by the engine's metadata columns ({})",
                METADATA_COLUMNS.join(", ")
            ));
        }
        if fields.iter().any(|f| f.name() == name) {
            return Err(format!("column {name} is declared twice"));
        }
        let Some(dt) = data_type(ty) else {
            let known: Vec<&str> = TYPES.iter().map(|(t, _)| *t).collect();
            return Err(format!(
                "column {name}: type {ty:?} is not one of {}",
                known.join(", ")
            ));
        };
        fields.push(Field::new(name, dt, nullable));
    }
    Ok(Schema::new(fields))
}

/// How a window stage groups events in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowDecl {
    /// `tumbling SIZE`.
    Tumbling(Duration),
    /// `sliding SIZE every SLIDE`.
    Sliding(Duration, Duration),
    /// `session GAP`.
    Session(Duration),
}

/// Parses `tumbling 5m`, `sliding 10m every 5m` or `session 2m`.
pub fn parse_window(text: &str) -> Result<WindowDecl, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let dur = |w: &str| -> Result<Duration, String> {
        let d: HumanDuration = w
            .parse()
            .map_err(|e| format!("{w:?} is not a duration: {e}"))?;
        if d.get().is_zero() {
            return Err(format!("{w:?}: a window lasts longer than 0"));
        }
        Ok(d.get())
    };
    let w = match words.as_slice() {
        [kind, size] if kind.eq_ignore_ascii_case("tumbling") => WindowDecl::Tumbling(dur(size)?),
        [kind, size, every, slide]
            if kind.eq_ignore_ascii_case("sliding") && every.eq_ignore_ascii_case("every") =>
        {
            let (size, slide) = (dur(size)?, dur(slide)?);
            if slide > size {
                return Err("a sliding window's slide must not be longer than its size".into());
            }
            WindowDecl::Sliding(size, slide)
        }
        [kind, gap] if kind.eq_ignore_ascii_case("session") => WindowDecl::Session(dur(gap)?),
        _ => {
            return Err(format!(
                "{text:?}: write `tumbling 5m`, `sliding 10m every 5m` or `session 2m`"
            ));
        }
    };
    Ok(w)
}

/// An aggregate function of a window stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    /// Rows in the window (`count(*)`).
    Count,
    /// Sum of a column.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean.
    Avg,
    /// The value of the row with the latest event time (the later in offset order on a tie).
    Last,
}

/// One aggregate: `func(column) AS name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    /// The function.
    pub func: AggFunc,
    /// Its column (`None` for `count(*)`).
    pub column: Option<String>,
    /// The output column.
    pub name: String,
}

/// Parses `count(*) AS n, sum(amount) AS revenue, ...`.
pub fn parse_aggregates(text: &str) -> Result<Vec<Aggregate>, String> {
    let mut out: Vec<Aggregate> = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let bad = || {
            format!(
                "{part:?}: write `func(column) AS name`, func one of count, sum, min, max, avg, last"
            )
        };
        let (call, name) = match part.rsplit_once(|c: char| c.is_whitespace()) {
            Some((left, name)) => {
                let left = left.trim_end();
                let call = left
                    .strip_suffix(" AS")
                    .or_else(|| left.strip_suffix(" as"))
                    .ok_or_else(bad)?;
                (call.trim(), name.trim())
            }
            None => return Err(bad()),
        };
        let (func, arg) = call
            .strip_suffix(')')
            .and_then(|c| c.split_once('('))
            .ok_or_else(bad)?;
        let arg = arg.trim();
        let func = match func.trim().to_ascii_lowercase().as_str() {
            "count" => AggFunc::Count,
            "sum" => AggFunc::Sum,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "avg" => AggFunc::Avg,
            "last" => AggFunc::Last,
            _ => return Err(bad()),
        };
        let column = match (func, arg) {
            (AggFunc::Count, "*" | "") => None,
            (_, "*" | "") => return Err(format!("{part:?}: {func:?} needs a column")),
            (_, c) => Some(c.to_string()),
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{part:?}: {name:?} is not a column name"));
        }
        if out.iter().any(|a| a.name == name) {
            return Err(format!("{name} is named twice"));
        }
        out.push(Aggregate {
            func,
            column,
            name: name.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_reads_like_spark_ddl() {
        let s = parse_schema("id STRING NOT NULL, amount double, at TIMESTAMP").unwrap();
        assert_eq!(s.fields().len(), 3);
        assert!(!s.field(0).is_nullable());
        assert_eq!(s.field(1).data_type(), &DataType::Float64);
        for (bad, says) in [
            ("id", "must be `name TYPE`"),
            ("id STRNG", "type \"STRNG\" is not one of"),
            ("id STRING, id INT", "declared twice"),
            ("_offset BIGINT", "metadata"),
            ("id STRING NULL", "only NOT NULL"),
        ] {
            let e = parse_schema(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn windows_and_aggregates_parse_or_say_why() {
        assert_eq!(
            parse_window("tumbling 5m").unwrap(),
            WindowDecl::Tumbling(Duration::from_secs(300))
        );
        assert_eq!(
            parse_window("sliding 10m every 5m").unwrap(),
            WindowDecl::Sliding(Duration::from_secs(600), Duration::from_secs(300))
        );
        assert!(
            parse_window("hopping 5m")
                .unwrap_err()
                .contains("tumbling 5m")
        );
        assert!(parse_window("sliding 5m every 10m").is_err());
        let a = parse_aggregates("count(*) AS n, sum(amount) as total, last(price) AS p").unwrap();
        assert_eq!(a[0].func, AggFunc::Count);
        assert_eq!(a[1].column.as_deref(), Some("amount"));
        assert_eq!(a[2].name, "p");
        assert!(
            parse_aggregates("median(x) AS m")
                .unwrap_err()
                .contains("func one of")
        );
        assert!(
            parse_aggregates("sum(*) AS m")
                .unwrap_err()
                .contains("needs a column")
        );
        assert!(parse_aggregates("sum(x)").is_err());
    }
}
