//! The `[lake]` section: where the tables live and how they are looked after.

use rtlake_core::config::{ConfigError, Options, Origins, Section};
use rtlake_core::time::UtcOffset;
use rtlake_core::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The open table format the lake's tables are written in.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Delta Lake: a `_delta_log` per table, offsets in `txn` actions.
    #[default]
    Delta,
    /// Apache Iceberg (v2): metadata in a file catalog under each table, offsets in the
    /// snapshot summary.
    Iceberg,
}

impl std::fmt::Display for TableFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Delta => "delta",
            Self::Iceberg => "iceberg",
        })
    }
}

/// The lake's location and upkeep.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LakeConfig {
    /// A local path (relative or absolute) or an object store URL (`file://`, `s3://`, ...).
    pub uri: String,
    /// The format of new tables: `delta` or `iceberg` (a table that exists keeps its own).
    pub format: TableFormat,
    /// Where Iceberg tables are registered: `file` (a file catalog under each table, no
    /// server) or the URL of an Iceberg REST catalog (`http://host:8181`; Polaris, Nessie,
    /// Gravitino, Lakekeeper, S3 Tables' endpoint, ...). A REST catalog's credentials come from
    /// the environment: `RTLAKE_CATALOG_TOKEN` (a bearer token) or `RTLAKE_CATALOG_CREDENTIAL`
    /// (`client_id:client_secret`, exchanged for a token at the catalog's OAuth2 endpoint).
    pub catalog: String,
    /// The warehouse to ask a REST catalog for (its `warehouse` parameter); empty: none.
    pub catalog_warehouse: String,
    /// A namespace above the lake's own in a REST catalog (`prod` makes `bronze.stations`
    /// `prod.bronze.stations`); tables without a namespace (`_rejected`) go in it, or in
    /// `default` if it is empty.
    pub catalog_namespace: String,
    /// Object store options (credentials, endpoint, region) passed to the store as is; the
    /// credentials are masked when the config is shown.
    pub storage_options: Options,
    /// How often the processor compacts, checkpoints and vacuums its tables (also by hand:
    /// `rtlake lake ...`); `0s` turns the schedule off.
    pub maintenance_interval: HumanDuration,
    /// Compaction writes files of about this size (a partition smaller than it becomes one file).
    pub target_file_size: ByteSize,
    /// Columns to Z-order compacted files by (e.g. `["customer_id"]`); empty: bin-packing only.
    pub z_order: Vec<String>,
    /// Vacuum deletes data files unreferenced for longer than this (readers of older versions,
    /// time travel, need them until then).
    pub vacuum_retention: HumanDuration,
    /// `_rejected` rows older than this (by their `date` partition) are deleted by the
    /// maintenance schedule; `0s` keeps them forever.
    pub rejected_retention: HumanDuration,
    /// The UTC offset of `_rejected`'s `date` and `hour` partitions (and of the retention's
    /// days), e.g. `+09:00` or `UTC`.
    pub time_zone: UtcOffset,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            uri: "./rtlake-data/lake".into(),
            format: TableFormat::Delta,
            catalog: "file".into(),
            catalog_warehouse: String::new(),
            catalog_namespace: String::new(),
            storage_options: Options::default(),
            maintenance_interval: HumanDuration(Duration::from_secs(600)),
            target_file_size: ByteSize(64 << 20),
            z_order: Vec::new(),
            vacuum_retention: HumanDuration(Duration::from_secs(7 * 86400)),
            rejected_retention: HumanDuration(Duration::from_secs(30 * 86400)),
            time_zone: UtcOffset::hours(9),
        }
    }
}

impl LakeConfig {
    /// The lake at `uri`, every other setting its default.
    pub fn at(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            ..Self::default()
        }
    }
}

impl Section for LakeConfig {
    const NAME: &'static str = "lake";

    fn check(&self, at: &Origins) -> Result<(), ConfigError> {
        if self.uri.trim().is_empty() {
            return Err(at.err("lake.uri", &"\"\"", "must name a path or URL"));
        }
        let c = self.catalog.trim();
        if c != "file" && !(c.starts_with("http://") || c.starts_with("https://")) {
            return Err(at.err(
                "lake.catalog",
                &self.catalog,
                "must be `file` or the http(s) URL of an Iceberg REST catalog",
            ));
        }
        if self.target_file_size.0 < 1 << 20 {
            return Err(at.err(
                "lake.target-file-size",
                &self.target_file_size,
                "must be at least 1MiB",
            ));
        }
        Ok(())
    }
}

rtlake_core::flags! {
    /// Which lake, as a flag.
    pub struct LakeFlags for LakeConfig {
        /// The lake: a path or URL [lake.uri; default ./rtlake-data/lake].
        #[arg(value_name = "URL_OR_PATH")]
        uri as "lake": String,
        /// The format of new tables [lake.format; default delta].
        #[arg(id = "lake_format", value_enum, value_name = "delta|iceberg")]
        format as "lake-format": TableFormat,
        /// Where Iceberg tables are registered: `file` or a REST catalog's URL
        /// [lake.catalog; default file].
        #[arg(value_name = "file|URL")]
        catalog: String,
    }
}
