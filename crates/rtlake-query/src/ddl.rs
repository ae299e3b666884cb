//! `rtlake lake ddl --for athena|glue|spark|trino`: the statements that register every table
//! and view of the lake in another engine's catalog, so it queries the same Delta tables.
//!
//! Iceberg tables on the file catalog are registered by their current metadata file (Trino's
//! `register_table`, Glue's `metadata_location`): such a registration does not follow later
//! commits in Trino's metastore or Glue, so the output says to run it again. Tables in a REST
//! catalog need no DDL: engines read them through the catalog, as the output says.

use crate::{Error, Result, views};
use arrow::datatypes::DataType;
use rtlake_lake::catalog::{CatalogEntry, list_tables};
use rtlake_lake::{Lake, TableFormat};

/// The engines DDL is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Amazon Athena (engine v3): external Delta tables in the Glue catalog, and views.
    Athena,
    /// The AWS Glue Data Catalog through the AWS CLI: databases and tables with their columns.
    Glue,
    /// Apache Spark with delta-spark: `CREATE TABLE ... USING DELTA LOCATION`, and views.
    Spark,
    /// Trino's Delta Lake connector (catalog `delta`): `register_table`, and views.
    Trino,
}

/// A table's location as engines name it: `s3a://` is `s3://` to all but Spark on Hadoop.
fn location(entry: &CatalogEntry, engine: Engine) -> String {
    let url = entry.url.as_str().trim_end_matches('/');
    match engine {
        Engine::Spark => url.to_string(),
        _ => url.replacen("s3a://", "s3://", 1),
    }
}

fn hive_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Float64 => "double".into(),
        DataType::Float32 => "float".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Binary | DataType::LargeBinary => "binary".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => format!("string /* {other} */"),
    }
}

fn json(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The statements for `engine`, one per line group, ready to paste or pipe; `builtin` are the
/// domain's views, registered too where their tables exist.
pub async fn statements(
    lake: &Lake,
    engine: Engine,
    builtin: crate::BuiltInViews,
) -> Result<String> {
    let tables = list_tables(lake).await?;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    // Glue's output is shell commands; the others' SQL.
    let rem = if engine == Engine::Glue { "#" } else { "--" };
    if !matches!(lake.root().scheme(), "s3" | "s3a") {
        line(format!(
            "{rem} The lake is at {}: other engines need it on storage they reach (s3://...).",
            lake.root()
        ));
    }
    let mut schemas: Vec<&str> = tables
        .iter()
        .map(|t| {
            if t.namespace.is_empty() {
                "default"
            } else {
                t.namespace.as_str()
            }
        })
        .collect();
    schemas.dedup();
    schemas.sort_unstable();
    schemas.dedup();
    let root = lake
        .root()
        .as_str()
        .trim_end_matches('/')
        .replacen("s3a://", "s3://", 1);
    let iceberg = tables.iter().any(|t| t.format == TableFormat::Iceberg);
    if iceberg && let Some(rest) = lake.rest_catalog() {
        line(format!(
            "{rem} The Iceberg tables are in the REST catalog {0}: engines read them through it, with no DDL.\n\
             {rem} Spark: spark.sql.catalog.lake=org.apache.iceberg.spark.SparkCatalog, spark.sql.catalog.lake.type=rest, spark.sql.catalog.lake.uri={0}\n\
             {rem} Trino: connector.name=iceberg, iceberg.catalog.type=rest, iceberg.rest-catalog.uri={0}",
            rest.uri()
        ));
    } else if iceberg {
        line(format!(
            "{rem} Iceberg tables are registered by their current metadata file: Trino's metastore and Glue do not follow\n\
             {rem} later commits, so run these again to see them (or use a REST catalog: lake.catalog, docs/iceberg.md)."
        ));
        if engine == Engine::Spark {
            line(format!(
                "-- Spark reads them with no DDL as a `hadoop` catalog on the lake root:\n\
                 -- spark.sql.catalog.lake=org.apache.iceberg.spark.SparkCatalog, spark.sql.catalog.lake.type=hadoop, spark.sql.catalog.lake.warehouse={root}"
            ));
        }
    }
    // Trino's catalog of each schema: `iceberg` if its tables are Iceberg tables.
    let trino_catalog = |s: &str| {
        let ice = tables.iter().any(|t| {
            t.format == TableFormat::Iceberg
                && (t.namespace == s || (t.namespace.is_empty() && s == "default"))
        });
        if ice { "iceberg" } else { "delta" }
    };
    for s in &schemas {
        if iceberg && (lake.rest_catalog().is_some() || engine == Engine::Spark) {
            continue;
        }
        line(match engine {
            Engine::Athena => format!("CREATE DATABASE IF NOT EXISTS {s};"),
            Engine::Spark => format!("CREATE SCHEMA IF NOT EXISTS {s};"),
            Engine::Trino => {
                format!(
                    "CREATE SCHEMA IF NOT EXISTS {}.{s} WITH (location = '{root}/{s}/');",
                    trino_catalog(s)
                )
            }
            Engine::Glue => format!(
                "aws glue create-database --database-input '{{\"Name\": {}}}'",
                json(s)
            ),
        });
    }
    for t in &tables {
        let schema = if t.namespace.is_empty() {
            "default"
        } else {
            t.namespace.as_str()
        };
        let loc = location(t, engine);
        if t.format == TableFormat::Iceberg {
            if let Some(l) = iceberg_table(lake, t, schema, &loc, engine).await? {
                line(l);
            }
            continue;
        }
        line(match engine {
            Engine::Athena => format!(
                "CREATE EXTERNAL TABLE IF NOT EXISTS {schema}.{} LOCATION '{loc}' TBLPROPERTIES ('table_type' = 'DELTA');",
                t.name
            ),
            Engine::Spark => format!(
                "CREATE TABLE IF NOT EXISTS {schema}.{} USING DELTA LOCATION '{loc}';",
                t.name
            ),
            Engine::Trino => format!(
                "CALL delta.system.register_table(schema_name => '{schema}', table_name => '{}', table_location => '{loc}');",
                t.name
            ),
            Engine::Glue => glue_table(lake, t, schema, &loc).await?,
        });
    }
    let views = views::all(lake, builtin).await?;
    for (name, sql) in &views {
        let base_exists = tables.iter().any(|t| sql.contains(&t.qualified()));
        if !base_exists {
            continue;
        }
        if iceberg {
            line(format!(
                "{rem} view {name}: not registered over Iceberg tables (docs/iceberg.md); its query: {}",
                sql.replace('\n', " ")
            ));
            continue;
        }
        line(match engine {
            Engine::Glue => format!(
                "# view {name}: create it with `rtlake lake ddl --for athena`, which stores it in Glue"
            ),
            Engine::Trino => format!(
                "CREATE OR REPLACE VIEW delta.{name} AS {};",
                qualify(sql, &tables)
            ),
            _ => format!("CREATE OR REPLACE VIEW {name} AS {sql};"),
        });
    }
    Ok(out)
}

/// The registration of an Iceberg table on the file catalog (`None` where the lake's REST
/// catalog holds it, or where the engine needs none).
async fn iceberg_table(
    lake: &Lake,
    t: &CatalogEntry,
    schema: &str,
    loc: &str,
    engine: Engine,
) -> Result<Option<String>> {
    if lake.rest_catalog().is_some() || engine == Engine::Spark {
        return Ok(None);
    }
    let loaded = rtlake_lake::iceberg::Catalog::of(lake)
        .load_at_url(&t.url, &t.qualified())
        .await?
        .ok_or_else(|| {
            Error::Lake(rtlake_lake::Error::Iceberg {
                table: t.qualified(),
                reason: "no metadata in its file catalog".into(),
            })
        })?;
    let file = loaded
        .location
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Some(match engine {
        Engine::Trino => format!(
            "CALL iceberg.system.register_table(schema_name => '{schema}', table_name => '{}', table_location => '{loc}', metadata_file_name => '{file}');",
            t.name
        ),
        Engine::Athena => format!(
            "-- {}: Athena reads Iceberg tables registered in Glue: `rtlake lake ddl --for glue` registers it",
            t.qualified()
        ),
        Engine::Glue => {
            let md = &loaded.metadata;
            let cols: Vec<_> = md
                .current_schema()
                .and_then(rtlake_lake::iceberg::schema::Schema::to_arrow)
                .map(|a| {
                    a.fields()
                        .iter()
                        .map(|f| serde_json::json!({"Name": f.name(), "Type": hive_type(f.data_type())}))
                        .collect()
                })
                .unwrap_or_default();
            let input = serde_json::json!({
                "Name": t.name,
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {
                    "table_type": "ICEBERG",
                    "metadata_location": format!("{loc}/metadata/{file}"),
                },
                "StorageDescriptor": {"Location": loc, "Columns": cols},
            });
            format!(
                "aws glue create-table --database-name {} --table-input '{}'",
                json(schema),
                input.to_string().replace('\'', "'\\''")
            )
        }
        Engine::Spark => return Ok(None),
    }))
}

/// Trino resolves `schema.table` in the session's catalog: name the catalog in a view's query.
fn qualify(sql: &str, tables: &[CatalogEntry]) -> String {
    let mut out = sql.to_string();
    for t in tables.iter().filter(|t| !t.namespace.is_empty()) {
        out = out.replace(
            &format!(" {}", t.qualified()),
            &format!(" delta.{}", t.qualified()),
        );
    }
    out
}

async fn glue_table(lake: &Lake, t: &CatalogEntry, schema: &str, loc: &str) -> Result<String> {
    let table = deltalake::DeltaTable::try_from_url_with_storage_options(
        t.url.clone(),
        lake.storage_options().clone(),
    )
    .await
    .map_err(|cause| Error::Table {
        table: t.qualified(),
        cause,
    })?;
    let state = table.snapshot().map_err(|cause| Error::Table {
        table: t.qualified(),
        cause,
    })?;
    let partitions = state.metadata().partition_columns().to_vec();
    let arrow = state.snapshot().arrow_schema();
    let col = |f: &arrow::datatypes::Field| serde_json::json!({"Name": f.name(), "Type": hive_type(f.data_type())});
    let input = serde_json::json!({
        "Name": t.name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "table_type": "DELTA",
            "classification": "delta",
            "spark.sql.sources.provider": "delta",
        },
        "StorageDescriptor": {
            "Location": loc,
            "Columns": arrow.fields().iter().filter(|f| !partitions.contains(f.name())).map(|f| col(f)).collect::<Vec<_>>(),
            "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
        },
        "PartitionKeys": arrow.fields().iter().filter(|f| partitions.contains(f.name())).map(|f| col(f)).collect::<Vec<_>>(),
    });
    Ok(format!(
        "aws glue create-table --database-name {} --table-input '{}'",
        json(schema),
        input.to_string().replace('\'', "'\\''")
    ))
}
