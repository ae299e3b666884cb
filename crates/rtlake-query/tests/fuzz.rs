//! Property-based fuzzing of the read-only check (`read_only::check` and the planner's
//! options), which stands between the SQL API (and the lake's view files) and the engine. It may
//! not panic on any text, and no statement it lets through may change the session: statements
//! are built from pieces of queries, DDL, DML and session statements, and whatever passes both
//! checks is planned and collected on a session that must still hold only its own table after.

use datafusion::prelude::SessionContext;
use proptest::prelude::*;
use rtlake_query::read_only;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: rtlake_core::testing::cases(1500),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const PIECES: &[&str] = &[
    "SELECT",
    "*",
    "1",
    "a",
    "FROM",
    "t",
    "INTO",
    "x",
    "WHERE",
    "a > 0",
    "UNION",
    "ALL",
    "WITH",
    "q AS (SELECT a FROM t)",
    "SELECT a FROM q",
    "(",
    ")",
    ";",
    "CREATE",
    "TABLE",
    "VIEW",
    "EXTERNAL",
    "STORED AS CSV",
    "LOCATION '/tmp/rtlake-fuzz-x'",
    "AS",
    "DROP",
    "INSERT",
    "VALUES (1)",
    "COPY",
    "TO '/tmp/rtlake-fuzz-y.csv'",
    "SET",
    "datafusion.execution.batch_size",
    "=",
    "10",
    "EXPLAIN",
    "ANALYZE",
    "SHOW",
    "TABLES",
    "DESCRIBE",
    "DELETE",
    "UPDATE",
    "a = 1",
    "PREPARE",
    "p",
    "EXECUTE",
    "DEALLOCATE",
    "BEGIN",
    "COMMIT",
    "ORDER BY a",
    "LIMIT 1",
];

fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(proptest::sample::select(PIECES), 1..12)
            .prop_map(|w| w.join(" ")),
        1 => any::<String>(),
    ]
}

fn session() -> SessionContext {
    let ctx = SessionContext::new();
    ctx.sql("CREATE TABLE t AS VALUES (1), (2)")
        .await_blocking()
        .unwrap();
    ctx
}

/// Runs a future on a small runtime of its own (proptest bodies are not async).
trait AwaitBlocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self)
    }
}
impl<F: std::future::Future> AwaitBlocking for F {}

fn tables(ctx: &SessionContext) -> Vec<String> {
    let mut names = Vec::new();
    for c in ctx.catalog_names() {
        let cat = ctx.catalog(&c).unwrap();
        for s in cat.schema_names() {
            names.extend(cat.schema(&s).unwrap().table_names());
        }
    }
    names.sort();
    names
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nothing_that_passes_changes_the_session(sql in statement()) {
        let ctx = session();
        let before = tables(&ctx);
        if read_only::check(&sql).is_ok() {
            let run = async {
                if let Ok(df) = ctx.sql_with_options(&sql, read_only::options()).await {
                    let _ = df.collect().await;
                }
            };
            run.await_blocking();
        }
        prop_assert_eq!(tables(&ctx), before, "{}", sql);
        prop_assert!(!std::path::Path::new("/tmp/rtlake-fuzz-x").exists());
        prop_assert!(!std::path::Path::new("/tmp/rtlake-fuzz-y.csv").exists());
    }

    #[test]
    fn ddl_and_dml_are_refused_by_the_text_check(
        verb in proptest::sample::select(&["CREATE TABLE x AS", "INSERT INTO t", "COPY (", "DROP TABLE t;", "SELECT * INTO x FROM t UNION", "SET a = 1;"][..]),
        rest in proptest::collection::vec(proptest::sample::select(PIECES), 0..6),
    ) {
        let sql = format!("{verb} {}", rest.join(" "));
        prop_assert!(read_only::check(&sql).is_err(), "{}", sql);
    }
}
