//! Schema evolution of an Iceberg table by field id: the new nullable columns of a pipeline's
//! rows become a new schema with the next ids; other changes are refused, naming the column.

use super::metadata::{Change, TableMetadata};
use super::schema;
use crate::{Error, Result};
use arrow::datatypes::SchemaRef;
use rtlake_core::schema::TableName;

fn err(table: TableName, reason: impl std::fmt::Display) -> Error {
    Error::Iceberg {
        table: table.to_string(),
        reason: reason.to_string(),
    }
}

fn refuse(table: TableName, reason: String) -> Error {
    Error::Schema {
        table: table.to_string(),
        reason,
    }
}

/// The schema change that makes `md` take `rows` (a new schema with the new nullable columns,
/// ids after `last-column-id`); `None` if it takes them already. A changed type, a new
/// required column or a dropped column is refused, naming it.
pub fn evolve(name: TableName, md: &TableMetadata, rows: &SchemaRef) -> Result<Option<Change>> {
    let current = md
        .current_schema()
        .ok_or_else(|| err(name, "the metadata names no current schema"))?;
    let mut next = current.clone();
    let mut id = md.last_column_id;
    for f in rows.fields() {
        let wanted = schema::iceberg_type(f.data_type());
        match current.field(f.name()) {
            Some(c) if c.field_type.as_str() == wanted => {}
            Some(c) => {
                return Err(refuse(
                    name,
                    format!(
                        "column {} is {} in the table but {} in this pipeline's rows: a type change is refused (write to a new table, or rewrite this one with the new type)",
                        f.name(),
                        c.field_type,
                        f.data_type()
                    ),
                ));
            }
            None if f.is_nullable() => {
                id += 1;
                next.fields
                    .push(schema::field_of(f, id).map_err(|r| refuse(name, r))?);
            }
            None => {
                return Err(refuse(
                    name,
                    format!(
                        "this pipeline's rows have a new column {} that may not be null: an existing table only takes new nullable columns",
                        f.name()
                    ),
                ));
            }
        }
    }
    if let Some(gone) = current
        .fields
        .iter()
        .find(|c| rows.field_with_name(&c.name).is_err())
    {
        return Err(refuse(
            name,
            format!(
                "the table has a column {} that this pipeline's rows do not: dropping a column is refused",
                gone.name
            ),
        ));
    }
    if next.fields.len() == current.fields.len() {
        return Ok(None);
    }
    next.schema_id = md.schemas.iter().map(|s| s.schema_id).max().unwrap_or(0) + 1;
    Ok(Some(Change {
        schema: Some(next),
        ..Change::default()
    }))
}
