//! What "read-only" means for SQL that someone else wrote: the SQL API's requests and the views
//! stored in the lake (anyone who can write the bucket can write a view).
//!
//! Two checks, both needed. [`check`] reads the statement before it reaches the engine and names
//! what it refuses. [`options`] makes DataFusion itself refuse DDL, DML and session statements
//! while planning, which also catches what the text check cannot see: `SELECT ... INTO t` is a
//! query to the parser but a `CREATE TABLE` to the planner, and DataFusion runs DDL eagerly, at
//! plan time.

use datafusion::prelude::SQLOptions;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement};

/// The planner's options for read-only SQL: no DDL (`CREATE`, `DROP`, `SELECT INTO`), no DML
/// (`INSERT`, `COPY`), no statements (`SET`, transactions).
pub fn options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Checks that `sql` is one read-only statement: `SELECT`/`WITH` (without `INTO`), `EXPLAIN` of
/// such a query, `SHOW` or `DESCRIBE`. The error says what was refused.
pub fn check(sql: &str) -> Result<(), String> {
    let statements =
        DFParser::parse_sql(sql).map_err(|e| format!("cannot parse the statement: {e}"))?;
    match statements.len() {
        0 => return Err("no statement given".into()),
        1 => {}
        n => return Err(format!("one statement per request: got {n}")),
    }
    let query = |s: &Statement| match s {
        Statement::Query(q) => query_ok(q),
        _ => Err(()),
    };
    let ok = match &statements[0] {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ExplainTable { .. } => Ok(()),
            Statement::Explain { statement, .. } => query(statement),
            other => query(other),
        },
        DfStatement::Explain(e) => match e.statement.as_ref() {
            DfStatement::Statement(s) => query(s),
            _ => Err(()),
        },
        _ => Err(()),
    };
    ok.map_err(|()| {
        let upper = sql.to_uppercase();
        let first = upper.split_whitespace().next().unwrap_or("").to_string();
        let query = ["SELECT", "WITH", "(", "EXPLAIN"]
            .iter()
            .any(|q| first.starts_with(q));
        let word = if query && upper.split_whitespace().any(|w| w == "INTO") {
            "SELECT ... INTO (it creates a table)".to_string()
        } else {
            first
        };
        format!(
            "only read-only queries are allowed (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE); refused a {word} statement"
        )
    })
}

/// A query reads only: no `SELECT ... INTO` at any level of its set expression.
fn query_ok(q: &Query) -> Result<(), ()> {
    fn body_ok(b: &SetExpr) -> Result<(), ()> {
        match b {
            SetExpr::Select(s) if s.into.is_some() => Err(()),
            SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => Ok(()),
            SetExpr::Query(q) => query_ok(q),
            SetExpr::SetOperation { left, right, .. } => {
                body_ok(left)?;
                body_ok(right)
            }
            _ => Err(()),
        }
    }
    body_ok(&q.body)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn only_single_queries_pass() {
        for ok in [
            "SELECT 1",
            "with a as (select 1) select * from a",
            "SELECT 1 UNION ALL SELECT 2",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "DESCRIBE bronze.orders",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
        for (bad, says) in [
            ("DROP TABLE bronze.orders", "DROP"),
            ("INSERT INTO t VALUES (1)", "INSERT"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("CREATE TABLE t AS SELECT 1", "CREATE"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE",
            ),
            ("SELECT 1; SELECT 2", "one statement per request"),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'", "EXPLAIN"),
            ("SELECT * INTO x FROM bronze.orders", "SELECT ... INTO"),
            ("SELECT 1 UNION SELECT * INTO x FROM t", "SELECT ... INTO"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
