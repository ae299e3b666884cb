//! `rtlake lake status|optimize|checkpoint|vacuum`: table maintenance by hand.

use super::load;
use crate::cli::{Cli, EngineArg, FormatArg, LakeArgs, LakeCommand};
use anyhow::{Result, bail};
use rtlake_lake::catalog::{CatalogEntry, list_tables};
use rtlake_lake::{Lake, maintenance};
use std::num::NonZeroU64;
use std::time::Instant;

/// Runs a `rtlake lake` operation.
pub async fn lake(cli: &Cli, op: &LakeCommand) -> Result<()> {
    let args = match op {
        LakeCommand::Status { lake, .. }
        | LakeCommand::Checkpoint { lake }
        | LakeCommand::Optimize { lake, .. }
        | LakeCommand::Vacuum { lake, .. }
        | LakeCommand::Ddl { lake, .. } => lake,
    };
    let cfg = load(cli, |c, o| {
        args.lake.clone().apply(&mut c.lake, o);
        if let LakeCommand::Optimize {
            target_size,
            z_order,
            ..
        } = op
        {
            if let Some(t) = target_size {
                c.lake.target_file_size = *t;
                o.set("lake.target-file-size", "flag --target-size");
            }
            if !z_order.is_empty() {
                c.lake.z_order = z_order.clone();
                o.set("lake.z-order", "flag --z-order");
            }
        }
        if let LakeCommand::Vacuum {
            retention: Some(r), ..
        } = op
        {
            c.lake.vacuum_retention = *r;
            o.set("lake.vacuum-retention", "flag --retention");
        }
    })?;
    let lake = Lake::open(&cfg.lake)?;
    let tables = chosen(&lake, args).await?;
    let c = &cfg.lake;
    match op {
        LakeCommand::Status { format, .. } => status(&lake, &tables, *format).await,
        LakeCommand::Optimize { .. } => {
            let target = NonZeroU64::new(c.target_file_size.0).unwrap_or(NonZeroU64::MIN);
            for t in &tables {
                let t0 = Instant::now();
                let before = maintenance::health(&lake, t).await?;
                let done = maintenance::optimize(&lake, t, target, &c.z_order).await?;
                if let Some(holder) = done.skipped_for {
                    out!(
                        "{}: skipped, another compaction is running ({holder}); try again later",
                        t.qualified()
                    );
                    continue;
                }
                if let Some(why) = done.lost_race {
                    out!(
                        "{}: nothing committed, a commit changed the files it read ({why}); it is compacted next time",
                        t.qualified()
                    );
                    continue;
                }
                let after = maintenance::health(&lake, t).await?;
                out!(
                    "{}: {} files rewritten into {} ({} partitions); {} → {} files, average {} → {}, in {:.1} s",
                    t.qualified(),
                    done.files_removed,
                    done.files_added,
                    done.partitions,
                    before.files,
                    after.files,
                    human(before.avg_file_bytes()),
                    human(after.avg_file_bytes()),
                    t0.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        LakeCommand::Checkpoint { .. } => {
            for t in &tables {
                match maintenance::checkpoint(&lake, t).await? {
                    (Some(v), cleaned) => out!(
                        "{}: checkpoint at version {v}; {cleaned} expired log files removed",
                        t.qualified()
                    ),
                    (None, _) => out!("{}: no version yet", t.qualified()),
                }
            }
            Ok(())
        }
        LakeCommand::Ddl { engine, .. } => {
            use rtlake_query::ddl::{Engine, statements};
            let engine = match engine {
                EngineArg::Athena => Engine::Athena,
                EngineArg::Glue => Engine::Glue,
                EngineArg::Spark => Engine::Spark,
                EngineArg::Trino => Engine::Trino,
            };
            print!("{}", statements(&lake, engine, crate::config::VIEWS).await?);
            Ok(())
        }
        LakeCommand::Vacuum { .. } => {
            for t in &tables {
                let n = maintenance::vacuum(&lake, t, c.vacuum_retention.get()).await?;
                out!(
                    "{}: {n} unreferenced files older than {} deleted",
                    t.qualified(),
                    c.vacuum_retention
                );
            }
            Ok(())
        }
    }
}

/// The tables named by `--table`, or all of them; an unknown name is an error listing the rest.
async fn chosen(lake: &Lake, args: &LakeArgs) -> Result<Vec<CatalogEntry>> {
    let all = list_tables(lake).await?;
    if args.tables.is_empty() {
        if all.is_empty() {
            eprintln!("note: the lake at {} has no tables yet", lake.root());
        }
        return Ok(all);
    }
    let mut out = Vec::new();
    for name in &args.tables {
        match all.iter().find(|t| &t.qualified() == name) {
            Some(t) => out.push(t.clone()),
            None => bail!(
                "no table {name} in the lake at {}; its tables: {}",
                lake.root(),
                all.iter()
                    .map(CatalogEntry::qualified)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

async fn status(lake: &Lake, tables: &[CatalogEntry], format: FormatArg) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut rows = Vec::new();
    for t in tables {
        rows.push(maintenance::health(lake, t).await?);
    }
    let age = |ms: Option<i64>| ms.map(|t| (now - t) as f64 / 1000.0);
    match format {
        FormatArg::Json => {
            for h in &rows {
                let mut v = serde_json::to_value(h)?;
                v["avg_file_bytes"] = h.avg_file_bytes().into();
                v["age_s"] = serde_json::json!(age(h.last_commit_ms));
                v["freshness_s"] = serde_json::json!(age(h.newest_event_ms));
                out!("{v}");
            }
        }
        FormatArg::Csv | FormatArg::Table => {
            let header = [
                "table",
                "version",
                "files",
                "avg file",
                "rows",
                "last commit",
                "age",
                "operation",
                "freshness",
            ];
            let cells: Vec<[String; 9]> = rows
                .iter()
                .map(|h| {
                    [
                        h.table.clone(),
                        h.version.map_or("-".into(), |v| v.to_string()),
                        h.files.to_string(),
                        human(h.avg_file_bytes()),
                        h.rows.to_string(),
                        h.last_commit_ms
                            .and_then(chrono::DateTime::from_timestamp_millis)
                            .map_or("-".into(), |t| {
                                t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                            }),
                        age(h.last_commit_ms).map_or("-".into(), |a| format!("{a:.0} s")),
                        h.last_operation.clone().unwrap_or_default(),
                        age(h.newest_event_ms).map_or("-".into(), |a| format!("{a:.1} s")),
                    ]
                })
                .collect();
            if matches!(format, FormatArg::Csv) {
                out!("{}", header.join(","));
                for c in &cells {
                    out!("{}", c.join(","));
                }
                return Ok(());
            }
            let width: Vec<usize> = (0..9)
                .map(|i| {
                    cells
                        .iter()
                        .map(|c| c[i].chars().count())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |c: Vec<&str>| {
                c.iter()
                    .zip(&width)
                    .map(|(s, w)| format!("{s:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            out!("{}", line(header.to_vec()));
            for c in &cells {
                out!("{}", line(c.iter().map(String::as_str).collect()));
            }
        }
    }
    Ok(())
}

/// Bytes as people read them: `512 B`, `3.2 KiB`, `61.0 MiB`.
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
    }
}
