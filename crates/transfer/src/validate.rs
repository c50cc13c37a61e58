//! `validate`: a quick check that every selected table holds as many rows
//! in the target as in the source. Counts are exact (`COUNT(*)` on both
//! sides, at the same moment per table), so a source that is still being
//! written to can differ for that reason alone.

use std::collections::HashSet;
use std::sync::Arc;

use mssql_pg_migrate_config::{Config, TargetKind};
use mssql_pg_migrate_mssql::MssqlSource;
use mssql_pg_migrate_postgres::{ddl, pg_error};
use mssql_pg_migrate_schema::target::TargetTable;
use serde::Serialize;

use crate::connect::{SourceJob, mssql_target_endpoint, target_endpoint, with_source};
use crate::engine::read_selected_tables;
use crate::error::{Side, TransferError};
use crate::planning::plan_targets;
use crate::pool::PgPool;
use crate::source::{ReadSpec, Source};

#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    pub source_schema: Option<String>,
    pub target_schema: Option<String>,
}

/// One table's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    /// `schema.table` in the source and in the target.
    pub source: String,
    pub target: String,
    pub source_rows: u64,
    /// `None` when the target table does not exist.
    pub target_rows: Option<u64>,
    pub matches: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    pub tables: Vec<TableCount>,
    pub matched: usize,
    pub mismatched: usize,
}

impl ValidationReport {
    fn new(tables: Vec<TableCount>) -> ValidationReport {
        let matched = tables.iter().filter(|t| t.matches).count();
        ValidationReport { mismatched: tables.len() - matched, matched, tables }
    }

    pub fn is_success(&self) -> bool {
        self.mismatched == 0
    }

    pub fn mismatches(&self) -> impl Iterator<Item = &TableCount> {
        self.tables.iter().filter(|t| !t.matches)
    }
}

/// Counts the rows of every selected table on both sides.
///
/// # Errors
/// A server that cannot be reached or a count that fails. A missing target
/// table is a mismatch in the report, not an error.
pub async fn validate(config: &Config, options: &ValidateOptions) -> Result<ValidationReport, TransferError> {
    let target = match config.target.kind {
        TargetKind::Postgres => Counted::Postgres(PgPool::new(&target_endpoint(&config.target), Side::Target, 2)?),
        TargetKind::Mssql => Counted::Mssql(MssqlSource::connect(mssql_target_endpoint(&config.target), 2).await?),
    };
    with_source(&config.source, 2, ValidateJob { config, options, target }).await
}

/// The target whose rows are counted.
enum Counted {
    Postgres(PgPool),
    /// A SQL Server target, counted as a SQL Server source is.
    Mssql(MssqlSource),
}

impl Counted {
    /// The tables a SQL Server target has, as `(schema, name)` in
    /// [`Counted::listed_as`]'s spelling (`None` for PostgreSQL, whose
    /// count says when a table is missing).
    async fn tables(&self) -> Result<Option<HashSet<(String, String)>>, TransferError> {
        match self {
            Counted::Postgres(_) => Ok(None),
            Counted::Mssql(server) => {
                let listed = server.list_tables().await?;
                Ok(Some(listed.into_iter().map(|t| self.listed_as(&t.schema, &t.name)).collect()))
            }
        }
    }

    /// A table name as the target's catalog lists it: as it is on SQL
    /// Server; folded to lower case on Babelfish, whose `sys.tables` does
    /// so (the count itself names the table as it is spelled).
    fn listed_as(&self, schema: &str, name: &str) -> (String, String) {
        match self {
            Counted::Mssql(server) if server.is_babelfish() => (schema.to_lowercase(), name.to_lowercase()),
            _ => (schema.to_owned(), name.to_owned()),
        }
    }

    /// The rows of the target table, or `None` when it is missing.
    async fn rows(
        &self,
        target: &TargetTable,
        spec: &ReadSpec,
        present: Option<&HashSet<(String, String)>>,
    ) -> Result<Option<u64>, TransferError> {
        match self {
            Counted::Postgres(pool) => {
                let client = pool.get(Side::Target).await?;
                let sql = format!("SELECT count(*) FROM {}", ddl::table_name(target));
                let context = format!("counting the rows of {}", ddl::table_name(target));
                match client.query_one(&sql, &[]).await {
                    Ok(row) => {
                        let n: i64 = row.try_get(0).map_err(|e| pg_error(Side::Target, context.as_str(), &e))?;
                        Ok(Some(u64::try_from(n).unwrap_or(0)))
                    }
                    Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
                    Err(e) => Err(pg_error(Side::Target, context, &e)),
                }
            }
            Counted::Mssql(server) => {
                // The copy keeps the source's table names.
                let key = self.listed_as(&target.schema, &spec.table);
                if !present.is_some_and(|p| p.contains(&key)) {
                    return Ok(None);
                }
                let copy = ReadSpec {
                    schema: target.schema.clone(),
                    label: format!("{}.{}", target.schema, spec.table),
                    ..spec.clone()
                };
                server.count_rows(&copy).await.map(Some)
            }
        }
    }

    /// `schema.table` of the target table.
    fn label(&self, target: &TargetTable, spec: &ReadSpec) -> String {
        match self {
            Counted::Postgres(_) => format!("{}.{}", target.schema, target.name),
            Counted::Mssql(_) => format!("{}.{}", target.schema, spec.table),
        }
    }
}

struct ValidateJob<'a> {
    config: &'a Config,
    options: &'a ValidateOptions,
    target: Counted,
}

impl SourceJob for ValidateJob<'_> {
    type Output = ValidationReport;

    async fn call<S: Source>(self, source: Arc<S>) -> Result<ValidationReport, TransferError> {
        let schemas = (self.options.source_schema.as_deref(), self.options.target_schema.as_deref());
        let plan = compared_tables(source.as_ref(), self.config, schemas).await?;
        let present = self.target.tables().await?;
        let mut counts = Vec::with_capacity(plan.tables.len());
        for (table, target) in &plan.tables {
            let spec = ReadSpec::new(table, target);
            let target_rows = self.target.rows(target, &spec, present.as_ref());
            let (source_rows, target_rows) = tokio::join!(source.count_rows(&spec), target_rows);
            let (source_rows, target_rows) = (source_rows?, target_rows?);
            counts.push(TableCount {
                source: spec.label.clone(),
                target: self.target.label(target, &spec),
                source_rows,
                target_rows,
                matches: target_rows == Some(source_rows),
            });
        }
        Ok(ValidationReport::new(counts))
    }
}

/// The selected source tables with their target plans, for the commands
/// that compare the two sides; `schemas` (source, target) override the
/// config's.
pub(crate) async fn compared_tables<S: Source>(
    source: &S,
    config: &Config,
    schemas: (Option<&str>, Option<&str>),
) -> Result<crate::planning::TargetPlan, TransferError> {
    let m = &config.migration;
    let source_schema = schemas.0.unwrap_or(&config.source.schema);
    let tables = read_selected_tables(source, source_schema, m).await?;
    plan_targets(tables, m, schemas.1.unwrap_or(&config.target.schema), source.dialect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(source_rows: u64, target_rows: Option<u64>) -> TableCount {
        TableCount {
            source: "s.t".into(),
            target: "p.t".into(),
            source_rows,
            target_rows,
            matches: target_rows == Some(source_rows),
        }
    }

    #[test]
    fn a_missing_table_or_a_different_count_is_a_mismatch() {
        let report = ValidationReport::new(vec![count(3, Some(3)), count(3, Some(2)), count(0, None)]);
        assert_eq!((report.matched, report.mismatched), (1, 2));
        assert!(!report.is_success());
        assert_eq!(report.mismatches().map(|t| t.target_rows).collect::<Vec<_>>(), vec![Some(2), None]);
        assert!(ValidationReport::new(vec![count(0, Some(0))]).is_success());
    }
}
