//! Engines we did not write read every table rtlake wrote: Apache Spark with delta-spark, and
//! Trino (the engine behind Athena) with its Delta Lake connector, each with the tables
//! registered by the statements `rtlake lake ddl --for spark|trino` prints, run as printed.
//! The lake has many epochs, a compaction, a log checkpoint and a vacuum behind it, and rtlake
//! goes on writing while they read. Per table (and view), the row count, a checksum of every
//! column, the partition columns and the rows per partition equal rtlake's own SQL: at an
//! earlier version (`VERSION AS OF`) while rtlake writes, and at the newest once it stopped.
//!
//! The same for Iceberg tables registered in a real Iceberg REST catalog
//! (scripts/iceberg-rest.sh), compacted and vacuumed (snapshots expired, files deleted): Spark
//! with Iceberg's runtime and Trino's Iceberg connector find them through the catalog, nothing
//! to register; versions are snapshot ids.

use crate::common;

use common::engines::{Dialect, Kind, Rows, Spark, Trino, rtlake_sql_in, same, statements};
use common::faults::wave;
use common::{Guard, Succeeds, TestEnv, rtlake, signal, wait_for};
use rtlake_lake::{LakeConfig, TableFormat};
use std::path::{Path, PathBuf};

/// A table or view of the lake, as rtlake's SQL lists it.
struct Object {
    /// `public` for a table outside any namespace (`_rejected`).
    schema: String,
    name: String,
    view: bool,
    columns: Vec<(String, Kind)>,
    /// From the table's Delta log or Iceberg metadata (none for a view).
    partitions: Vec<String>,
    /// An Iceberg table (in the REST catalog) rather than a Delta table.
    iceberg: bool,
}

impl Object {
    fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The name in `d`'s catalog: rtlake's `public` is the others' `default`.
    fn in_dialect(&self, d: Dialect, version: Option<u64>) -> String {
        let schema = match (d, self.schema.as_str()) {
            (Dialect::Rtlake, s) => s,
            (_, "public") => "default",
            (_, s) => s,
        };
        d.table_in(self.iceberg, &format!("{schema}.{}", self.name), version)
    }

    fn path(&self, lake: &Path) -> PathBuf {
        match self.schema.as_str() {
            "public" => lake.join(&self.name),
            s => lake.join(s).join(&self.name),
        }
    }
}

/// The Iceberg metadata of `o` as the lake's catalog holds it.
async fn iceberg_metadata(
    cfg: &LakeConfig,
    o: &Object,
) -> rtlake_lake::iceberg::metadata::TableMetadata {
    let lake = rtlake_lake::Lake::open(cfg).unwrap();
    let url = url::Url::from_directory_path(o.path(Path::new(&cfg.uri))).unwrap();
    let qualified = if o.schema == "public" {
        o.name.clone()
    } else {
        o.qualified()
    };
    rtlake_lake::iceberg::Catalog::of(&lake)
        .load_at_url(&url, &qualified)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{qualified} is not in the catalog"))
        .metadata
}

async fn objects(cfg: &LakeConfig) -> Vec<Object> {
    let lake = Path::new(&cfg.uri);
    let rtlake_sql = |q: String| async move { rtlake_sql_in(cfg, &q).await };
    let q = "SELECT table_schema, table_name, table_type FROM information_schema.tables \
             WHERE table_schema <> 'information_schema' ORDER BY 1, 2";
    let mut out = Vec::new();
    for r in rtlake_sql(q.to_string()).await.unwrap() {
        let (schema, name) = (r[0].as_str().unwrap(), r[1].as_str().unwrap());
        let cols = rtlake_sql(format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = '{schema}' AND table_name = '{name}' ORDER BY ordinal_position"
        ))
        .await
        .unwrap();
        let mut o = Object {
            schema: schema.into(),
            name: name.into(),
            view: r[2].as_str() == Some("VIEW"),
            columns: cols
                .iter()
                .map(|c| {
                    (
                        c[0].as_str().unwrap().to_string(),
                        Kind::of(c[1].as_str().unwrap()),
                    )
                })
                .collect(),
            partitions: Vec::new(),
            iceberg: cfg.format == TableFormat::Iceberg,
        };
        if o.iceberg && !o.view {
            let md = iceberg_metadata(cfg, &o).await;
            let schema = md.current_schema().unwrap();
            o.partitions = md
                .default_spec()
                .unwrap()
                .fields
                .iter()
                .map(|p| {
                    schema
                        .fields
                        .iter()
                        .find(|f| f.id == p.source_id)
                        .unwrap()
                        .name
                        .clone()
                })
                .collect();
        } else if !o.view {
            let first = o.path(lake).join("_delta_log/00000000000000000000.json");
            let log = std::fs::read_to_string(&first).unwrap();
            let meta = log
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find_map(|a| a.get("metaData").cloned())
                .expect("metaData in the first commit");
            o.partitions = serde_json::from_value(meta["partitionColumns"].clone()).unwrap();
        }
        out.push(o);
    }
    out
}

/// The newest version of a table: its highest numbered commit, or its current Iceberg snapshot.
async fn version_of(cfg: &LakeConfig, o: &Object) -> u64 {
    if o.iceberg {
        let md = iceberg_metadata(cfg, o).await;
        return md.current_snapshot().expect("a snapshot").snapshot_id as u64;
    }
    version(&o.path(Path::new(&cfg.uri)))
}

fn version(table: &Path) -> u64 {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_suffix(".json")?.parse().ok()
        })
        .max()
        .unwrap()
}

/// Spark and Trino, whichever is here.
struct Readers {
    spark: Option<Spark>,
    trino: Option<Trino>,
}

impl Readers {
    async fn sql(&mut self, d: Dialect, q: &str) -> Result<Rows, String> {
        match d {
            Dialect::Spark => self.spark.as_mut().unwrap().sql(q),
            Dialect::Trino => self.trino.as_ref().unwrap().sql(q).await,
            Dialect::Rtlake => unreachable!(),
        }
    }

    fn dialects(&self) -> Vec<Dialect> {
        let mut d = Vec::new();
        if self.spark.is_some() {
            d.push(Dialect::Spark);
        }
        if self.trino.is_some() {
            d.push(Dialect::Trino);
        }
        d
    }

    /// Registers the lake with the statements `rtlake lake ddl --for <engine>` prints, after
    /// removing what an earlier run against the same server registered.
    async fn register(&mut self, lake: &Path, objects: &[Object]) {
        for d in self.dialects() {
            let (engine, cleanup): (&str, Vec<String>) = match d {
                Dialect::Trino => ("trino", {
                    let mut c = Vec::new();
                    for o in objects {
                        let (schema, name) = (
                            if o.schema == "public" {
                                "default"
                            } else {
                                &o.schema
                            },
                            &o.name,
                        );
                        c.push(if o.view {
                            format!("DROP VIEW IF EXISTS delta.{schema}.{name}")
                        } else {
                            format!("CALL delta.system.unregister_table(schema_name => '{schema}', table_name => '{name}')")
                        });
                    }
                    c
                }),
                _ => ("spark", Vec::new()),
            };
            for q in cleanup {
                let _ = self.sql(d, &q).await;
            }
            let out = rtlake()
                .args(["lake", "ddl", "--for", engine, "--lake"])
                .arg(lake)
                .succeeds_within(60);
            let ddl = String::from_utf8(out.stdout).unwrap();
            for s in statements(&ddl) {
                if let Err(e) = self.sql(d, &s).await {
                    panic!(
                        "{d:?} refused a statement of `rtlake lake ddl --for {engine}`:\n{s}\n{e}"
                    );
                }
            }
            eprintln!(
                "{d:?}: {} statements of `rtlake lake ddl --for {engine}` ran",
                statements(&ddl).len()
            );
        }
    }

    /// Each engine's figures for `o` (at `version`) equal rtlake's.
    async fn agree(&mut self, cfg: &LakeConfig, o: &Object, version: Option<u64>) {
        let mine = rtlake_sql_in(
            cfg,
            &Dialect::Rtlake.checksum(&o.in_dialect(Dialect::Rtlake, version), &o.columns),
        )
        .await
        .unwrap_or_else(|e| panic!("rtlake on {}: {e}", o.qualified()));
        let parts = if o.partitions.is_empty() {
            None
        } else {
            let q =
                Dialect::Rtlake.partitions(&o.in_dialect(Dialect::Rtlake, version), &o.partitions);
            Some(rtlake_sql_in(cfg, &q).await.unwrap())
        };
        for d in self.dialects() {
            let at = o.in_dialect(d, version);
            let theirs = self
                .sql(d, &d.checksum(&at, &o.columns))
                .await
                .unwrap_or_else(|e| panic!("{d:?} on {at}: {e}"));
            assert!(
                same(&mine, &theirs),
                "{at}: {d:?} {theirs:?}, rtlake {mine:?}"
            );
            if let Some(mine) = &parts {
                let theirs = self
                    .sql(d, &d.partitions(&at, &o.partitions))
                    .await
                    .unwrap();
                assert!(
                    same(mine, &theirs),
                    "{at} partitions: {d:?} {theirs:?}, rtlake {mine:?}"
                );
                if version.is_none() {
                    let cols = match d {
                        Dialect::Spark => self.spark.as_mut().unwrap().partition_columns(&at),
                        _ => self.trino.as_ref().unwrap().partition_columns(&at).await,
                    };
                    let cols =
                        cols.unwrap_or_else(|e| panic!("{d:?}: {at}'s partition columns: {e}"));
                    assert_eq!(cols, o.partitions, "{d:?}: {at}'s partition columns");
                }
            }
        }
        eprintln!(
            "{} at {version:?}: {} rows, the same in every engine",
            o.qualified(),
            mine[0][0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_and_trino_read_every_table_as_rtlake_does() {
    read_every_table(TableFormat::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_and_trino_read_every_iceberg_table_through_the_rest_catalog() {
    read_every_table(TableFormat::Iceberg).await;
}

async fn read_every_table(format: TableFormat) {
    let rest = match format {
        TableFormat::Delta => String::new(),
        TableFormat::Iceberg => match std::env::var("RTLAKE_TEST_ICEBERG_REST") {
            Ok(u) => u,
            Err(_) => {
                rtlake_core::testing::skip_missing(
                    "RTLAKE_TEST_ICEBERG_REST names no Iceberg REST catalog (scripts/test.sh starts scripts/iceberg-rest.sh)",
                );
                return;
            }
        },
    };
    let env = TestEnv::new("engines").await;
    let mut readers = Readers {
        spark: Spark::start(&env.dir.path().join("spark-warehouse")),
        trino: Trino::connect(),
    };
    if readers.dialects().is_empty() {
        return;
    }
    let lake = env.lake();
    let mut lake_cfg = LakeConfig::at(lake.display().to_string());
    lake_cfg.format = format;
    // Eight minutes of the replay in epochs of 6,000 events: about 15 commits a table; with a
    // minute's lateness the first 5-minute windows close, so gold has rows (the hourly table
    // stays empty: its first hour would need 70 minutes).
    let mut run = vec![
        "--max-batch-events",
        "6000",
        "--lateness",
        "1m",
        "--metrics-listen",
        "off",
    ];
    if format == TableFormat::Iceberg {
        // The catalog outlives the test: forget what an earlier run registered there.
        common::engines::forget_iceberg_tables(&rest, &["bronze", "silver", "gold", "default"])
            .await;
        lake_cfg.catalog = rest.clone();
        run.extend(["--lake-format", "iceberg", "--catalog", rest.as_str()]);
    }
    let mut cfg = env.config();
    cfg.source.state_file = Some(env.dir.path().join("replay.json"));
    wave(&mut cfg, 8).await;
    env.run_cmd(&[&run[..], &["--trigger", "available-now"]].concat())
        .succeeds_within(180);
    for args in [
        &["optimize"][..],
        &["checkpoint"],
        &["vacuum", "--retention", "0s"],
    ] {
        let mut c = rtlake();
        c.arg("lake").args(args).arg("--lake").arg(&lake);
        if format == TableFormat::Iceberg {
            c.args(["--catalog", rest.as_str()]);
        }
        c.succeeds_within(120);
    }
    let mut objects = objects(&lake_cfg).await;
    if format == TableFormat::Iceberg {
        // rtlake's views are registered in the engines by `rtlake lake ddl`, for Delta only.
        objects.retain(|o| !o.view);
    }
    let tables: Vec<&Object> = objects.iter().filter(|o| !o.view).collect();
    assert!(
        tables.len() >= 4,
        "bronze, silver and two gold tables: {:?}",
        tables.iter().map(|o| o.qualified()).collect::<Vec<_>>()
    );
    if format == TableFormat::Iceberg {
        // The engines read what maintenance left: bronze compacted, older snapshots expired.
        let bronze = tables.iter().find(|o| o.name == "station_status").unwrap();
        let md = iceberg_metadata(&lake_cfg, bronze).await;
        let current = md.current_snapshot().unwrap();
        assert_eq!(
            current.summary["operation"], "replace",
            "bronze was compacted"
        );
        assert_eq!(
            md.snapshots.len(),
            1,
            "the vacuum expired every older snapshot"
        );
    }
    let mut versions = Vec::new();
    for o in &tables {
        versions.push(version_of(&lake_cfg, o).await);
    }
    if format == TableFormat::Delta {
        readers.register(&lake, &objects).await;
    }

    // rtlake goes on writing (two more minutes) while the engines read the versions above.
    let mut writer = Guard::spawn(env.run_cmd(&run));
    wave(&mut cfg, 10).await;
    for (o, v) in tables.iter().zip(&versions) {
        readers.agree(&lake_cfg, o, Some(*v)).await;
    }
    let total = common::replay_lines(40).len();
    wait_for(
        "the writer to land the ten minutes in bronze",
        180,
        async || {
            rtlake_sql_in(
                &lake_cfg,
                "SELECT CAST(count(*) AS DOUBLE) FROM bronze.station_status",
            )
            .await
            .is_ok_and(|r| r[0][0].as_f64() == Some(total as f64))
        },
    )
    .await;
    signal(writer.0.id(), "-TERM");
    assert!(writer.wait_within(60).success(), "rtlake run stops cleanly");
    for (o, v) in tables.iter().zip(&versions) {
        let now = version_of(&lake_cfg, o).await;
        assert!(format == TableFormat::Iceberg || now >= *v);
    }
    for o in &objects {
        readers.agree(&lake_cfg, o, None).await;
    }
}

/// The same checks on a lake made elsewhere (the 90-minute replay, say), by hand:
/// `RTLAKE_ENGINES_LAKE=PATH cargo test -p rtlake --test it -- --ignored engines::` with the
/// engines' variables as scripts/test.sh sets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reads the lake named by RTLAKE_ENGINES_LAKE"]
async fn an_existing_lake_reads_the_same_in_every_engine() {
    let lake = PathBuf::from(std::env::var("RTLAKE_ENGINES_LAKE").expect("RTLAKE_ENGINES_LAKE"));
    let dir = tempfile::tempdir().unwrap();
    let mut readers = Readers {
        spark: Spark::start(&dir.path().join("spark-warehouse")),
        trino: Trino::connect(),
    };
    let cfg = LakeConfig::at(lake.display().to_string());
    let objects = objects(&cfg).await;
    readers.register(&lake, &objects).await;
    for o in &objects {
        readers.agree(&cfg, o, None).await;
    }
}
