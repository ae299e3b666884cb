//! Time travel: `<table> VERSION AS OF <n>` and `<table> TIMESTAMP AS OF '<time>'` in a query
//! are replaced by a table registered for the statement, the Delta table loaded as it was.

use crate::{Error, LakeSql, Result};

/// One `... AS OF ...` clause found in a statement.
#[derive(Debug, PartialEq)]
struct Clause {
    /// Byte range in the statement, table name included.
    range: std::ops::Range<usize>,
    table: String,
    at: At,
}

#[derive(Debug, PartialEq)]
enum At {
    Version(u64),
    Timestamp(String),
}

/// Finds the clauses, left to right.
fn clauses(sql: &str) -> Result<Vec<Clause>> {
    let lower = sql.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(" as of ").map(|i| i + from) {
        let before = sql[..i].trim_end();
        let (kind_start, kind) = match before.rsplit_once(char::is_whitespace) {
            Some((head, k)) => (head.len() + 1, k.to_ascii_lowercase()),
            None => (0, before.to_ascii_lowercase()),
        };
        from = i + " as of ".len();
        if kind != "version" && kind != "timestamp" {
            continue;
        }
        let head = sql[..kind_start].trim_end();
        let table_start = head
            .rfind(|c: char| c.is_whitespace() || c == ',' || c == '(')
            .map_or(0, |p| p + 1);
        let table = head[table_start..].trim_matches('"').to_string();
        if table.is_empty() {
            return Err(Error::Output(format!(
                "{} AS OF needs a table before it",
                kind.to_uppercase()
            )));
        }
        let rest = &sql[from..];
        let (at, len) = if kind == "version" {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let v = digits.parse().map_err(|_| {
                Error::Output(format!(
                    "VERSION AS OF takes a number, as in `{table} VERSION AS OF 3`"
                ))
            })?;
            (At::Version(v), digits.len())
        } else {
            let quoted = rest.strip_prefix('\'').and_then(|r| r.split_once('\''));
            let Some((t, _)) = quoted else {
                return Err(Error::Output(format!(
                    "TIMESTAMP AS OF takes a quoted time, as in `{table} TIMESTAMP AS OF '2026-12-02 10:00:00'`"
                )));
            };
            (At::Timestamp(t.to_string()), t.len() + 2)
        };
        out.push(Clause {
            range: table_start..from + len,
            table,
            at,
        });
        from += len;
    }
    Ok(out)
}

fn parse_time(t: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.to_utc())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").map(|d| d.and_utc())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        })
        .map_err(|_| {
            Error::Output(format!(
                "`{t}` is not a time: write RFC 3339 (2026-12-02T10:00:00+09:00) or 2026-12-02 10:00:00 (UTC)"
            ))
        })
}

/// The statement with each clause replaced by a table registered for it.
pub async fn resolve(sql: &LakeSql, statement: &str) -> Result<String> {
    let found = clauses(statement)?;
    if found.is_empty() {
        return Ok(statement.to_string());
    }
    let entries = rtlake_lake::catalog::list_tables(&sql.lake).await?;
    let mut out = statement.to_string();
    for (n, c) in found.iter().enumerate().rev() {
        let entry = entries
            .iter()
            .find(|e| {
                e.qualified() == c.table
                    || (e.namespace.is_empty() && format!("public.{}", e.name) == c.table)
            })
            .ok_or_else(|| {
                Error::Output(format!("time travel: no table {} in the lake", c.table))
            })?;
        let name = format!("__as_of_{n}");
        if entry.format == rtlake_lake::TableFormat::Iceberg {
            // Iceberg: VERSION AS OF names a snapshot id (as Spark and Trino take it);
            // TIMESTAMP AS OF the snapshot current at that time.
            let (snapshot, time) = match &c.at {
                At::Version(v) => (Some(*v as i64), None),
                At::Timestamp(t) => (None, Some(parse_time(t)?.timestamp_millis())),
            };
            let provider =
                crate::iceberg::provider_at(&sql.lake, entry, &sql.ctx, snapshot, time).await?;
            let _ = sql.ctx.deregister_table(name.as_str());
            sql.ctx.register_table(name.as_str(), provider)?;
            out.replace_range(c.range.clone(), &name);
            continue;
        }
        let err = |cause| Error::Table {
            table: c.table.clone(),
            cause,
        };
        let mut table = deltalake::DeltaTable::try_from_url_with_storage_options(
            entry.url.clone(),
            sql.lake.storage_options().clone(),
        )
        .await
        .map_err(err)?;
        match &c.at {
            At::Version(v) => table.load_version(*v).await.map_err(err)?,
            At::Timestamp(t) => table
                .load_with_datetime(parse_time(t)?)
                .await
                .map_err(err)?,
        }
        table
            .update_datafusion_session(&sql.ctx.state())
            .map_err(err)?;
        let _ = sql.ctx.deregister_table(name.as_str());
        sql.ctx
            .register_table(name.as_str(), table.table_provider().await?)?;
        out.replace_range(c.range.clone(), &name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_are_found_with_their_table_and_point_in_time() {
        let sql = "SELECT count(*) FROM bronze.orders VERSION AS OF 12 JOIN x TIMESTAMP as of '2026-12-02 10:00:00' ON true";
        let c = clauses(sql).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].table, "bronze.orders");
        assert_eq!(c[0].at, At::Version(12));
        assert_eq!(&sql[c[0].range.clone()], "bronze.orders VERSION AS OF 12");
        assert_eq!(c[1].table, "x");
        assert_eq!(c[1].at, At::Timestamp("2026-12-02 10:00:00".into()));
        assert!(clauses("SELECT 1 AS of_course").unwrap().is_empty());
        assert!(clauses("SELECT * FROM t VERSION AS OF x").is_err());
    }
}
