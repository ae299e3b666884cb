//! Views kept with the lake: `<lake>/_views/<ns>.<name>.sql`, one query per file.

use crate::{BuiltInViews, Error, LakeSql, Result};
use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use rtlake_lake::Lake;
use std::sync::Arc;

fn folder(lake: &Lake) -> Result<Arc<dyn object_store::ObjectStore>> {
    let url = lake
        .root()
        .join("_views/")
        .map_err(|e| Error::Output(format!("views folder: {e}")))?;
    Ok(lake.store_at(&url)?)
}

fn store_err(e: object_store::Error) -> Error {
    Error::Output(format!("views: {e}"))
}

/// The views stored in the lake, by name, sorted.
pub async fn stored(lake: &Lake) -> Result<Vec<(String, String)>> {
    // Reading must not make the folder: a lake may be read-only to this process.
    if let Ok(root) = lake.root().to_file_path()
        && !root.join("_views").is_dir()
    {
        return Ok(Vec::new());
    }
    let store = folder(lake)?;
    let listing = store.list_with_delimiter(None).await.map_err(store_err)?;
    let mut out = Vec::new();
    for o in listing.objects {
        let Some(name) = o.location.filename().and_then(|f| f.strip_suffix(".sql")) else {
            continue;
        };
        let bytes = store
            .get(&o.location)
            .await
            .map_err(store_err)?
            .bytes()
            .await
            .map_err(store_err)?;
        out.push((
            name.to_string(),
            String::from_utf8_lossy(&bytes).trim().to_string(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Every view: those stored, and the built-in ones the lake does not redefine.
pub async fn all(lake: &Lake, builtin: BuiltInViews) -> Result<Vec<(String, String)>> {
    let mut out = stored(lake).await?;
    for (name, sql) in builtin {
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name.to_string(), sql.to_string()));
        }
    }
    out.sort();
    Ok(out)
}

fn said(what: String) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "result",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![what]))],
    )
    .expect("one string column");
    (schema, vec![batch])
}

/// A view name: `ns.name` of plain identifiers.
fn checked(name: &str) -> Result<String> {
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match name.split_once('.') {
        Some((ns, n)) if ok(ns) && ok(n) => Ok(name.to_ascii_lowercase()),
        _ => Err(Error::Output(format!(
            "a view is named schema.name (letters, digits, _), as in gold.shop_daily; not `{name}`"
        ))),
    }
}

/// Runs `CREATE [OR REPLACE] VIEW` and `DROP VIEW [IF EXISTS]` against the lake's views;
/// `None` for any other statement.
pub(crate) async fn statement(
    sql: &LakeSql,
    text: &str,
) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
    let t = text.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = t.split_whitespace().collect();
    let upper: Vec<String> = words
        .iter()
        .take(5)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let u: Vec<&str> = upper.iter().map(String::as_str).collect();
    let (replace, name_at) = match u.as_slice() {
        ["CREATE", "OR", "REPLACE", "VIEW", ..] => (true, 4),
        ["CREATE", "VIEW", ..] => (false, 2),
        ["DROP", "VIEW", "IF", "EXISTS", ..] => return drop_view(sql, words.get(4), true).await,
        ["DROP", "VIEW", ..] => return drop_view(sql, words.get(2), false).await,
        _ => return Ok(None),
    };
    let name = checked(words.get(name_at).copied().unwrap_or_default())?;
    if !words
        .get(name_at + 1)
        .is_some_and(|w| w.eq_ignore_ascii_case("as"))
    {
        return Err(Error::Output(format!(
            "write CREATE VIEW {name} AS SELECT ..."
        )));
    }
    // The query: everything after `AS`, as written.
    let after_name = t
        .find(words[name_at])
        .map(|i| i + words[name_at].len())
        .unwrap_or(0);
    let query = t[after_name..].trim_start()[2..].trim().to_string();
    let exists = all(&sql.lake, sql.builtin)
        .await?
        .iter()
        .any(|(n, _)| *n == name);
    if exists && !replace {
        return Err(Error::Output(format!(
            "view {name} exists; CREATE OR REPLACE VIEW replaces it"
        )));
    }
    // Checked before it is kept: only a read-only query is a view, and a view that does not
    // plan is refused with DataFusion's words.
    crate::read_only::check(&query).map_err(|e| Error::Output(format!("view {name}: {e}")))?;
    let view = sql
        .ctx
        .sql_with_options(&query, crate::read_only::options())
        .await?
        .into_view();
    let (ns, _) = name.split_once('.').expect("checked");
    if sql
        .ctx
        .catalog("datafusion")
        .and_then(|c| c.schema(ns))
        .is_none()
    {
        return Err(Error::Output(format!("no schema {ns} in the lake")));
    }
    let _ = sql.ctx.deregister_table(name.as_str());
    sql.ctx.register_table(name.as_str(), view)?;
    folder(&sql.lake)?
        .put(
            &Path::from(format!("{name}.sql")),
            format!("{query}\n").into(),
        )
        .await
        .map_err(store_err)?;
    Ok(Some(said(format!(
        "{} view {name}, kept in {}_views/",
        if exists { "replaced" } else { "created" },
        sql.lake.root()
    ))))
}

async fn drop_view(
    sql: &LakeSql,
    name: Option<&&str>,
    if_exists: bool,
) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
    let name = checked(name.copied().unwrap_or_default())?;
    let stored = stored(&sql.lake).await?;
    if !stored.iter().any(|(n, _)| *n == name) {
        if sql.builtin.iter().any(|(n, _)| *n == name) {
            return Err(Error::Output(format!(
                "{name} is built in; CREATE OR REPLACE VIEW redefines it"
            )));
        }
        if if_exists {
            return Ok(Some(said(format!("no view {name}"))));
        }
        return Err(Error::Output(format!("no view {name} in the lake")));
    }
    folder(&sql.lake)?
        .delete(&Path::from(format!("{name}.sql")))
        .await
        .map_err(store_err)?;
    let _ = sql.ctx.deregister_table(name.as_str());
    Ok(Some(said(format!("dropped view {name}"))))
}
