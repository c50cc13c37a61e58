//! Helpers for the crate's unit tests.

use mssql_pg_migrate_config::{Config, Loader};
use mssql_pg_migrate_schema::{Column, ColumnType};

/// A loaded config from `source_type` (`mssql` or `postgres`, schema `s`)
/// into schema `t`, with `migration` keys given inline as YAML.
pub(crate) fn config(source_type: &str, migration: &str) -> Config {
    let yaml = format!(
        "source: {{type: {source_type}, host: h, database: d, user: u, password: p, schema: s}}\n\
         target: {{type: postgres, host: h, database: d, user: u, password: p, schema: t}}\n\
         migration: {{{migration}}}\n"
    );
    match Loader::new().load_str(&yaml, "yaml") {
        Ok(config) => config,
        Err(e) => panic!("test config does not load: {e}"),
    }
}

/// A NOT NULL column without default, identity or computation.
pub(crate) fn column(name: &str, data_type: ColumnType) -> Column {
    Column::new(name, data_type)
}
