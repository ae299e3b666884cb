//! Iceberg schemas and partition specs, made from the Arrow schemas the pipelines write.
//!
//! Every column gets a field id (1, 2, ... in order for a new table; a column added later gets
//! the next id after `last-column-id`), written into the Parquet files as `PARQUET:field_id` so
//! that readers resolve columns by id, not by name. The tables' time partitions (`date`, `hour`,
//! in `lake.time-zone`) are kept as columns and partitioned by identity: Iceberg's hidden `day`
//! and `hour` transforms are in UTC only, which would split the lake's local days differently
//! from the Delta tables'.

use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Field ids of partition fields start here (the spec's convention).
pub const FIRST_PARTITION_FIELD_ID: i32 = 1000;

/// One column of an Iceberg schema.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct NestedField {
    /// The field id, stable for the column's life.
    pub id: i32,
    /// The column name.
    pub name: String,
    /// Whether every row has a value.
    pub required: bool,
    /// The Iceberg type: a name (`long`) for the primitive types rtlake writes, an object for
    /// nested types written by other tools (kept as they are).
    #[serde(rename = "type")]
    pub field_type: serde_json::Value,
    /// The column's documentation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

/// An Iceberg schema (`{"type": "struct", "schema-id": .., "fields": [..]}`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Schema {
    /// Always `struct`.
    #[serde(rename = "type", default = "struct_type")]
    pub kind: String,
    /// The schema's id within the table.
    pub schema_id: i32,
    /// Key columns, if declared (none for appended tables).
    #[serde(default)]
    pub identifier_field_ids: Vec<i32>,
    /// The columns.
    pub fields: Vec<NestedField>,
}

fn struct_type() -> String {
    "struct".into()
}

/// One field of a partition spec.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartitionField {
    /// The column it is computed from.
    pub source_id: i32,
    /// Its own id (1000 and up).
    pub field_id: i32,
    /// The partition field's name.
    pub name: String,
    /// `identity` here; other writers' transforms are kept as they are.
    pub transform: String,
}

/// A partition spec.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartitionSpec {
    /// The spec's id within the table.
    pub spec_id: i32,
    /// Its fields, in order.
    pub fields: Vec<PartitionField>,
}

/// The Iceberg type name of an Arrow type rtlake writes, `None` for the others.
pub fn iceberg_type(t: &DataType) -> Option<&'static str> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Int32 => "int",
        DataType::Int64 => "long",
        DataType::Float32 => "float",
        DataType::Float64 => "double",
        DataType::Boolean => "boolean",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary",
        DataType::Date32 => "date",
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "timestamptz",
        DataType::Timestamp(TimeUnit::Microsecond, None) => "timestamp",
        _ => return None,
    })
}

/// The Arrow type a primitive Iceberg type is read as (`None`: a type rtlake does not read).
pub fn arrow_type(t: &serde_json::Value) -> Option<DataType> {
    Some(match t.as_str()? {
        "string" => DataType::Utf8,
        "int" => DataType::Int32,
        "long" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "binary" => DataType::Binary,
        "date" => DataType::Date32,
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        _ => return None,
    })
}

impl Schema {
    /// A new table's schema: the columns of `arrow` with ids 1, 2, ...; the columns' type names
    /// if one cannot be written.
    pub fn from_arrow(arrow: &ArrowSchema) -> Result<Self, String> {
        let mut fields = Vec::new();
        for (i, f) in arrow.fields().iter().enumerate() {
            fields.push(field_of(f, i as i32 + 1)?);
        }
        Ok(Self {
            kind: struct_type(),
            schema_id: 0,
            identifier_field_ids: Vec::new(),
            fields,
        })
    }

    /// The largest field id.
    pub fn max_id(&self) -> i32 {
        self.fields.iter().map(|f| f.id).max().unwrap_or(0)
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&NestedField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The Arrow schema of the table, each field carrying its id as `PARQUET:field_id` (the
    /// Parquet writer turns it into the file's field ids); `None` if a column has a type rtlake
    /// does not read.
    pub fn to_arrow(&self) -> Option<SchemaRef> {
        let mut fields = Vec::new();
        for f in &self.fields {
            fields.push(with_id(
                Field::new(&f.name, arrow_type(&f.field_type)?, !f.required),
                f.id,
            ));
        }
        Some(Arc::new(ArrowSchema::new(fields)))
    }
}

/// The Iceberg field of an Arrow field, with id `id`.
pub fn field_of(f: &Field, id: i32) -> Result<NestedField, String> {
    let t = iceberg_type(f.data_type()).ok_or_else(|| {
        format!(
            "column {} has type {} that the Iceberg sink cannot write",
            f.name(),
            f.data_type()
        )
    })?;
    Ok(NestedField {
        id,
        name: f.name().clone(),
        required: !f.is_nullable(),
        field_type: serde_json::Value::String(t.into()),
        doc: None,
    })
}

/// `f` with `PARQUET:field_id` set to `id`.
pub fn with_id(f: Field, id: i32) -> Field {
    let mut md: HashMap<String, String> = f.metadata().clone();
    md.insert(
        parquet::arrow::PARQUET_FIELD_ID_META_KEY.into(),
        id.to_string(),
    );
    f.with_metadata(md)
}

/// Identity partitions on `columns` of `schema`, ids from 1000.
pub fn identity_spec(schema: &Schema, columns: &[&str]) -> Result<PartitionSpec, String> {
    let mut fields = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let source = schema
            .field(c)
            .ok_or_else(|| format!("partition column {c} is not a column of the table"))?;
        fields.push(PartitionField {
            source_id: source.id,
            field_id: FIRST_PARTITION_FIELD_ID + i as i32,
            name: (*c).to_string(),
            transform: "identity".into(),
        });
    }
    Ok(PartitionSpec { spec_id: 0, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_get_ids_in_order_and_come_back_with_them() {
        let arrow = ArrowSchema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("date", DataType::Date32, false),
        ]);
        let s = Schema::from_arrow(&arrow).unwrap();
        assert_eq!(s.fields.iter().map(|f| f.id).collect::<Vec<_>>(), [1, 2, 3]);
        let back = s.to_arrow().unwrap();
        assert_eq!(
            back.field(1).metadata()[parquet::arrow::PARQUET_FIELD_ID_META_KEY],
            "2"
        );
        assert!(back.field(1).is_nullable());
        let spec = identity_spec(&s, &["date"]).unwrap();
        assert_eq!(spec.fields[0].source_id, 3);
        assert_eq!(spec.fields[0].field_id, 1000);
        let bad = ArrowSchema::new(vec![Field::new(
            "l",
            DataType::List(Arc::new(Field::new("x", DataType::Int8, true))),
            true,
        )]);
        assert!(Schema::from_arrow(&bad).unwrap_err().contains("column l"));
    }
}
