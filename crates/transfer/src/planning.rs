//! The target side of a run, decided before any server is touched: which
//! source tables become which target tables, and the statements that build
//! their keys, indexes and constraints after the load. Pure, so `run`,
//! `run --dry-run`, `validate` and `health-check` all plan alike.

use std::collections::BTreeSet;

use mssql_pg_migrate_config::{MigrationConfig, TargetMode};
use mssql_pg_migrate_postgres::ddl;
use mssql_pg_migrate_schema::Table;
use mssql_pg_migrate_schema::target::{
    Dialect, TargetOptions, TargetTable, assign_relation_names, plan_table, reject_collisions,
};

use crate::error::TransferError;
use crate::source::{ChangeKind, ReadSpec};

/// The source tables with their target plans, and those left out.
#[derive(Debug, Clone, Default)]
pub struct TargetPlan {
    pub tables: Vec<(Table, TargetTable)>,
    /// `(schema.table, why)` of tables that cannot be planned, when
    /// `continue_on_error` lets the run go on without them.
    pub skipped: Vec<(String, String)>,
}

/// Plans the target table of each source table.
///
/// # Errors
/// A table that cannot be planned (unless `continue_on_error`), or two
/// tables that land on the same target name.
pub fn plan_targets(
    tables: Vec<Table>,
    m: &MigrationConfig,
    target_schema: &str,
    dialect: Dialect,
) -> Result<TargetPlan, TransferError> {
    let migrated: BTreeSet<(String, String)> = tables.iter().map(|t| (t.schema.clone(), t.name.clone())).collect();
    let is_migrated = |s: &str, t: &str| migrated.contains(&(s.to_owned(), t.to_owned()));
    let opts = TargetOptions { schema: target_schema, case: m.identifier_case, overrides: &m.type_overrides, dialect };
    let mut plan = TargetPlan::default();
    let mut planned: Vec<(Table, TargetTable)> = Vec::new();
    for table in tables {
        match plan_table(&table, &is_migrated, &opts) {
            Ok(t) => planned.push((table, t)),
            Err(e) if m.continue_on_error => {
                let label = format!("{}.{}", table.schema, table.name);
                tracing::error!(table = %label, error = %e, "table skipped");
                plan.skipped.push((label, e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    reject_collisions(
        &format!("target schema {target_schema}"),
        planned.iter().map(|(_, t)| (&t.source_name, &t.name)),
    )?;
    let mut targets: Vec<TargetTable> = planned.iter().map(|(_, t)| t.clone()).collect();
    assign_relation_names(&mut targets);
    plan.tables = planned.into_iter().map(|(s, _)| s).zip(targets).collect();
    Ok(plan)
}

/// In upsert mode, gives each table without a primary key for which
/// `upsert_keys` names a unique index that index's columns as its key, so
/// it is chunked, merged and created as if it had that primary key.
///
/// # Errors
/// [`TransferError::Config`] naming the table and index when the index is
/// missing, not unique, filtered, or has a column that allows NULL (rows
/// with a NULL key can never be matched, so each sync would add them again).
pub fn apply_upsert_keys(tables: &mut [Table], m: &MigrationConfig) -> Result<(), TransferError> {
    if m.target_mode != TargetMode::Upsert {
        return Ok(());
    }
    for table in tables.iter_mut() {
        let Some(name) = m.upsert_key(&table.schema, &table.name) else { continue };
        let label = format!("{}.{}", table.schema, table.name);
        if table.primary_key.is_some() {
            tracing::warn!(table = %label, index = %name, "the table has a primary key; its upsert_keys entry is not used");
            continue;
        }
        let problem = |why: String| TransferError::Config(format!("migration.upsert_keys: table {label}: {why}"));
        let named = |n: &str| n == name || n.eq_ignore_ascii_case(name);
        let (index_name, columns) = if let Some(unique) = table.unique_constraints.iter().find(|u| named(&u.name)) {
            (unique.name.clone(), unique.columns.clone())
        } else {
            let index =
                table.indexes.iter().find(|i| named(&i.name)).ok_or_else(|| problem(format!("no index \"{name}\"")))?;
            if !index.unique {
                return Err(problem(format!("index \"{}\" is not unique", index.name)));
            }
            if index.filter.is_some() {
                return Err(problem(format!("index \"{}\" is filtered, so it does not cover every row", index.name)));
            }
            if index.columns.iter().any(|c| c.expression.is_some()) {
                return Err(problem(format!("index \"{}\" is on an expression, not on columns", index.name)));
            }
            (index.name.clone(), index.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
        };
        for column in &columns {
            let nullable = table.column(column).is_none_or(|c| c.nullable);
            if nullable {
                return Err(problem(format!(
                    "column \"{column}\" of index \"{index_name}\" allows NULL; rows with a NULL key cannot be matched"
                )));
            }
        }
        table.indexes.retain(|i| i.name != index_name);
        table.unique_constraints.retain(|u| u.name != index_name);
        table.primary_key = Some(mssql_pg_migrate_schema::Key { name: index_name, columns });
    }
    Ok(())
}

/// In upsert mode, refuses a plan with tables that have no key to merge on
/// (a primary key whose columns are all copied), naming every such table.
///
/// # Errors
/// [`TransferError::Config`] listing the tables, one per line, in the
/// guide's words.
pub fn require_upsert_keys(tables: &[(Table, TargetTable)], m: &MigrationConfig) -> Result<(), TransferError> {
    if m.target_mode != TargetMode::Upsert {
        return Ok(());
    }
    let keyless: Vec<String> = tables
        .iter()
        .filter(|(table, target)| ReadSpec::new(table, target).key.is_empty())
        .map(|(table, _)| {
            format!("Table '{}.{}' has no primary key, required for upsert mode", table.schema, table.name)
        })
        .collect();
    if keyless.is_empty() {
        return Ok(());
    }
    Err(TransferError::Config(format!(
        "{}\n(add a primary key at the source, name a unique index as its key in upsert_keys, leave the table out \
         with exclude_tables, or use target_mode: truncate)",
        keyless.join("\n")
    )))
}

/// The change column of `table` and how its values rise, when the
/// configuration names one (upsert only).
///
/// # Errors
/// [`TransferError::Config`] naming the table and column when the table
/// has no such column, or its type cannot serve.
pub fn change_column<'t>(
    table: &'t Table,
    m: &MigrationConfig,
) -> Result<Option<(&'t mssql_pg_migrate_schema::Column, ChangeKind)>, TransferError> {
    if m.target_mode != TargetMode::Upsert {
        return Ok(None);
    }
    let Some(name) = m.change_column(&table.schema, &table.name) else { return Ok(None) };
    let label = format!("{}.{}", table.schema, table.name);
    let column = table
        .columns
        .iter()
        .find(|c| c.name == name)
        .or_else(|| table.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
        .ok_or_else(|| {
            TransferError::Config(format!("migration.change_columns: table {label} has no column \"{name}\""))
        })?;
    let kind = ChangeKind::of(&column.data_type).ok_or_else(|| {
        TransferError::Config(format!(
            "migration.change_columns: column \"{}\" of {label} is {}, which cannot find changes; \
             use a rowversion, a date and time, or an integer that rises with every change",
            column.name, column.data_type
        ))
    })?;
    Ok(Some((column, kind)))
}

/// Checks every table's change column ([`change_column`]) before anything runs.
///
/// # Errors
/// The first table's problem.
pub fn require_change_columns(tables: &[(Table, TargetTable)], m: &MigrationConfig) -> Result<(), TransferError> {
    for (table, _) in tables {
        change_column(table, m)?;
    }
    Ok(())
}

/// One statement run after the load, with what it builds (for messages).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub sql: String,
    pub what: String,
}

/// The steps that complete a table created by the run, in order: primary
/// key, unique constraints, indexes, checks and `SET LOGGED` (autovacuum
/// comes back later, with [`closing_steps`]). `ANALYZE` comes first, unless an index has an
/// expression (whose statistics it gathers once the index exists) or the
/// table is rewritten by `SET LOGGED`: it samples rows on one core, so
/// before the keys it runs beside other tables' work, and the key builds,
/// which the server spreads over its parallel workers, end the table.
/// Otherwise the last table's `ANALYZE` ran alone after its key build,
/// leaving a core idle (docs/BENCHMARKS.md, issue 18).
pub fn post_load_steps(t: &TargetTable, m: &MigrationConfig) -> Vec<Step> {
    let mut steps = Vec::new();
    let index_expressions =
        m.create_indexes && t.indexes.iter().any(|i| i.columns.iter().any(|c| c.expression.is_some()));
    let analyze_first = !index_expressions && !m.use_unlogged_tables;
    if analyze_first {
        steps.extend(analyze_step(t, m));
    }
    if let Some(pk) = &t.primary_key {
        steps.push(Step { sql: ddl::add_primary_key(t, pk), what: format!("primary key {} on {}", pk.name, t.name) });
    }
    for key in &t.unique_constraints {
        steps
            .push(Step { sql: ddl::add_unique(t, key), what: format!("unique constraint {} on {}", key.name, t.name) });
    }
    if m.create_indexes {
        for index in &t.indexes {
            steps.push(Step { sql: ddl::create_index(t, index), what: format!("index {} on {}", index.name, t.name) });
        }
    }
    if m.create_check_constraints {
        for check in &t.checks {
            steps.push(Step {
                sql: ddl::add_check(t, &check.name, &check.expression),
                what: format!("check {} on {}", check.name, t.name),
            });
        }
    }
    if m.use_unlogged_tables {
        steps.push(Step { sql: ddl::set_logged(t), what: format!("SET LOGGED on {}", t.name) });
    }
    if !analyze_first {
        steps.extend(analyze_step(t, m));
    }
    steps
}

/// The steps run once every table of the run is complete, foreign keys
/// included: autovacuum back on for a table the run created (off while it
/// loads, see [`ddl::create_table`]). Given back table by table, a large
/// table finished early was vacuumed while the others still loaded, its
/// scan of every page competing with the copy: at scale 1 Comments'
/// vacuum had read 150 to 650 MB of it before each run ended
/// (docs/BENCHMARKS.md, issue 18).
pub fn closing_steps(t: &TargetTable) -> Vec<Step> {
    vec![Step { sql: ddl::enable_autovacuum(t), what: format!("autovacuum on {}", t.name) }]
}

/// The planner's statistics of a table just loaded, unless switched off.
pub fn analyze_step(t: &TargetTable, m: &MigrationConfig) -> Option<Step> {
    m.analyze_after_load.then(|| Step { sql: ddl::analyze(t), what: format!("analyzing {}", t.name) })
}

/// The foreign keys of a table created by the run, built after every
/// table's data is in place.
pub fn foreign_key_steps(t: &TargetTable, m: &MigrationConfig) -> Vec<Step> {
    if !m.create_foreign_keys {
        return Vec::new();
    }
    t.foreign_keys
        .iter()
        .map(|fk| Step { sql: ddl::add_foreign_key(t, fk), what: format!("foreign key {} on {}", fk.name, t.name) })
        .collect()
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_schema::{ColumnType, ForeignKey, Key, ReferentialAction};
    use mssql_pg_migrate_typemap::PgType;

    use super::*;
    use crate::testing::column;

    fn migration(extra: &str) -> MigrationConfig {
        crate::testing::config("postgres", &format!("identifier_case: snake, {extra}")).migration
    }

    fn table(name: &str, column_type: ColumnType, fk_to: Option<&str>) -> Table {
        Table {
            schema: "s".into(),
            name: name.into(),
            columns: vec![column("Id", column_type)],
            primary_key: Some(Key { name: format!("PK_{name}"), columns: vec!["Id".into()] }),
            unique_constraints: vec![],
            indexes: vec![],
            foreign_keys: fk_to
                .map(|to| ForeignKey {
                    name: format!("FK_{name}_{to}"),
                    columns: vec!["Id".into()],
                    referenced_schema: "s".into(),
                    referenced_table: to.into(),
                    referenced_columns: vec!["Id".into()],
                    on_delete: ReferentialAction::NoAction,
                    on_update: ReferentialAction::NoAction,
                })
                .into_iter()
                .collect(),
            checks: vec![],
            estimated_rows: 0,
            estimated_bytes: 0,
            unsupported: vec![],
        }
    }

    fn int() -> ColumnType {
        ColumnType::Postgres(PgType::Integer)
    }

    fn bad() -> ColumnType {
        ColumnType::Unsupported { type_name: "geometry".into(), reason: "no mapping".into() }
    }

    #[test]
    fn tables_that_cannot_be_planned_stop_the_run_or_are_skipped_by_name() {
        let tables = || vec![table("Good", int(), None), table("Shapes", bad(), None)];
        let err = plan_targets(tables(), &migration(""), "t", Dialect::Postgres).unwrap_err().to_string();
        assert!(err.contains("Shapes") && err.contains("geometry"), "{err}");

        let plan = plan_targets(tables(), &migration("continue_on_error: true"), "t", Dialect::Postgres).unwrap();
        assert_eq!(plan.tables.len(), 1);
        assert_eq!(plan.tables[0].1.name, "good");
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].0, "s.Shapes");
        assert!(plan.skipped[0].1.contains("geometry"), "{}", plan.skipped[0].1);
    }

    #[test]
    fn steps_follow_the_switches_and_foreign_keys_only_to_migrated_tables() {
        let tables = vec![table("Parent", int(), None), table("Child", int(), Some("Parent"))];
        let plan = plan_targets(tables, &migration(""), "t", Dialect::Postgres).unwrap();
        let child = &plan.tables.iter().find(|(s, _)| s.name == "Child").unwrap().1;
        let m = migration("");
        let steps = post_load_steps(child, &m);
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert_eq!(steps[0].sql, "ANALYZE \"t\".\"child\"", "statistics first: no index expression to wait for");
        assert!(steps[1].sql.starts_with("ALTER TABLE \"t\".\"child\" ADD CONSTRAINT"), "{}", steps[1].sql);
        assert!(steps[1].sql.contains("PRIMARY KEY (\"id\")"), "{}", steps[1].sql);
        assert_eq!(
            closing_steps(child),
            [Step {
                sql: "ALTER TABLE \"t\".\"child\" RESET (autovacuum_enabled, toast.autovacuum_enabled)".into(),
                what: "autovacuum on child".into()
            }],
            "autovacuum back on at the end of the run, not among the table's own steps"
        );
        let unanalyzed = post_load_steps(child, &migration("analyze_after_load: false"));
        assert_eq!(unanalyzed.len(), 1, "{unanalyzed:?}");
        assert!(unanalyzed[0].sql.contains("PRIMARY KEY"), "{}", unanalyzed[0].sql);
        let fks = foreign_key_steps(child, &m);
        assert_eq!(fks.len(), 1);
        assert!(fks[0].sql.contains("REFERENCES \"t\".\"parent\""), "{}", fks[0].sql);
        assert!(foreign_key_steps(child, &migration("create_foreign_keys: false")).is_empty());
        let unlogged = post_load_steps(child, &migration("use_unlogged_tables: true"));
        let last_two: Vec<&str> = unlogged.iter().rev().take(2).map(|s| s.sql.as_str()).collect();
        assert_eq!(last_two, ["ANALYZE \"t\".\"child\"", "ALTER TABLE \"t\".\"child\" SET LOGGED"]);

        // An index on an expression: ANALYZE gathers its statistics only once it exists.
        let mut with_expression = child.clone();
        with_expression.indexes.push(mssql_pg_migrate_schema::target::TargetIndex {
            name: "ix_lower".into(),
            columns: vec![mssql_pg_migrate_schema::target::TargetIndexColumn {
                expression: Some("lower(name)".into()),
                ..Default::default()
            }],
            included: vec![],
            unique: false,
            filter: None,
            method: None,
        });
        let steps = post_load_steps(&with_expression, &m);
        let order: Vec<&str> = steps.iter().map(|s| s.sql.split_whitespace().next().unwrap_or("")).collect();
        assert_eq!(order, ["ALTER", "CREATE", "ANALYZE"], "{steps:?}");
        assert!(steps[1].sql.contains("lower(name)"), "{}", steps[1].sql);
        let unindexed = post_load_steps(&with_expression, &migration("create_indexes: false"));
        assert_eq!(unindexed[0].sql, "ANALYZE \"t\".\"child\"", "no index built, nothing to wait for");

        // A foreign key to a table outside the run is left out.
        let alone = plan_targets(vec![table("Child", int(), Some("Parent"))], &m, "t", Dialect::Postgres).unwrap();
        assert!(foreign_key_steps(&alone.tables[0].1, &m).is_empty());
    }
}
