//! T-SQL DDL for a SQL Server target, generated from the schema model read
//! from a SQL Server source. Pure: every statement is built from a
//! [`Table`] with names through [`quote_mssql`] and literals through
//! [`literal_mssql`].
//!
//! A copy between two SQL Servers keeps every type as it is, so a column's
//! type is written as the source declared it. Expressions (defaults,
//! computed columns, checks, index filters) are the source server's own
//! definitions from its catalog, which SQL Server writes back in a form it
//! parses again; they are carried as they are.
//!
//! The order follows the load: [`create_table`] makes a bare table with
//! its columns, identities and defaults (defaults first, since a bulk load
//! with `KEEP_NULLS` never applies them); the data goes in; then
//! [`primary_key`], [`unique_constraints`], [`indexes`], [`checks`], the
//! identity's [`reseed_identity`], and last [`foreign_keys`], which need
//! the keys of the tables they reference.
//!
//! ```
//! use mssql_pg_migrate_mssql::ddl::create_table;
//! use mssql_pg_migrate_schema::{Column, ColumnType, Identity, Table};
//! use mssql_pg_migrate_typemap::{Length, MssqlType};
//!
//! let mut id = Column::new("Id", ColumnType::Mssql(MssqlType::Int));
//! id.identity = Some(Identity { seed: 1, increment: 1, current: Some(41) });
//! let mut name = Column::new("Name", ColumnType::Mssql(MssqlType::NVarChar(Length::Bounded(40))));
//! name.nullable = true;
//! let table = Table::new("dbo", "Users", vec![id, name]);
//! assert_eq!(
//!     create_table("copy", &table)?,
//!     "CREATE TABLE [copy].[Users] ([Id] int IDENTITY(1,1) NOT NULL, [Name] nvarchar(40) NULL)"
//! );
//! # Ok::<(), mssql_pg_migrate_dialect::TransferError>(())
//! ```

use std::fmt::Write as _;

use mssql_pg_migrate_dialect::TransferError;
use mssql_pg_migrate_dialect::store::{STATE_SCHEMA, seen_keys_table};
use mssql_pg_migrate_schema::ident::{literal_mssql, qualified_mssql, quote_mssql};
use mssql_pg_migrate_schema::{CheckConstraint, Column, ColumnType, ForeignKey, Index, Key, ReferentialAction, Table};
use mssql_pg_migrate_typemap::MssqlType;

/// A comma-separated list of quoted names.
fn names<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names.into_iter().map(|n| quote_mssql(n)).collect::<Vec<_>>().join(", ")
}

/// One column's definition in `CREATE TABLE`.
fn column_definition(table: &Table, column: &Column) -> Result<String, TransferError> {
    let name = quote_mssql(&column.name);
    if let Some(computed) = &column.computed {
        let persisted = if computed.persisted { " PERSISTED" } else { "" };
        return Ok(format!("{name} AS {}{persisted}", computed.expression));
    }
    let ty = match &column.data_type {
        ColumnType::Mssql(ty) => ty,
        other => {
            return Err(TransferError::Incompatible {
                table: format!("{}.{}", table.schema, table.name),
                message: format!(
                    "column {} has type {other}, which a SQL Server target cannot declare as it is",
                    column.name
                ),
            });
        }
    };
    let mut sql = format!("{name} {}", copy_type(ty));
    if let Some(collation) = &column.collation {
        // A collation name is a bare word (letters, digits, underscores);
        // anything else did not come from a catalog and is refused.
        if !collation.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(TransferError::Incompatible {
                table: format!("{}.{}", table.schema, table.name),
                message: format!("column {} has a collation that is not a name: {collation:?}", column.name),
            });
        }
        let _ = write!(sql, " COLLATE {collation}");
    }
    if let Some(identity) = &column.identity {
        let _ = write!(sql, " IDENTITY({},{})", identity.seed, identity.increment);
    }
    // A rowversion is never NULL and takes no NULL clause on SQL Server.
    if *ty != MssqlType::RowVersion {
        sql.push_str(if column.nullable { " NULL" } else { " NOT NULL" });
    }
    if let Some(default) = &column.default {
        let _ = write!(sql, " DEFAULT {default}");
    }
    Ok(sql)
}

/// The type a copied column is declared with: the source's, except the
/// deprecated `text`, `ntext` and `image`, which become `varchar(max)`,
/// `nvarchar(max)` and `varbinary(max)` (the types Microsoft names as their
/// replacements, holding the same values): the TDS bulk load cannot write
/// an `image` at all, and writes an empty `text` as NULL.
pub fn copy_type(ty: &MssqlType) -> std::borrow::Cow<'_, MssqlType> {
    use mssql_pg_migrate_typemap::Length;
    use std::borrow::Cow;
    match ty {
        MssqlType::Text => Cow::Owned(MssqlType::VarChar(Length::Max)),
        MssqlType::NText => Cow::Owned(MssqlType::NVarChar(Length::Max)),
        MssqlType::Image => Cow::Owned(MssqlType::VarBinary(Length::Max)),
        other => Cow::Borrowed(other),
    }
}

/// `CREATE TABLE` in `schema` with the table's columns, identities and
/// defaults, and no keys, indexes or constraints (they come after the data).
///
/// # Errors
/// [`TransferError::Incompatible`] for a column whose type is not a SQL
/// Server type (a table read from PostgreSQL), or whose collation is not a
/// name.
pub fn create_table(schema: &str, table: &Table) -> Result<String, TransferError> {
    let columns = table.columns.iter().map(|c| column_definition(table, c)).collect::<Result<Vec<_>, _>>()?.join(", ");
    Ok(format!("CREATE TABLE {} ({columns})", qualified_mssql(schema, &table.name)))
}

/// Adds `column` (one the source gained since the copy was made) to the
/// table's copy in `schema`: nullable, without identity or default, so the
/// rows already there take NULL until a sync fills them.
///
/// # Errors
/// As [`create_table`].
pub fn add_column(schema: &str, table: &Table, column: &Column) -> Result<String, TransferError> {
    let mut added = column.clone();
    added.nullable = true;
    added.identity = None;
    added.default = None;
    let definition = column_definition(table, &added)?;
    Ok(format!("ALTER TABLE {} ADD {definition}", qualified_mssql(schema, &table.name)))
}

/// Drops the table in `schema` if it is there. Foreign keys that reference
/// it from other tables stop the drop, as they should: the run names them.
pub fn drop_table(schema: &str, table: &str) -> String {
    format!("DROP TABLE IF EXISTS {}", qualified_mssql(schema, table))
}

/// The columns a bulk load writes, in order: every column but computed
/// ones and rowversions, whose values the target server makes itself.
pub fn loaded_columns(table: &Table) -> impl Iterator<Item = &Column> {
    table
        .columns
        .iter()
        .filter(|c| c.computed.is_none() && !matches!(c.data_type, ColumnType::Mssql(MssqlType::RowVersion)))
}

/// `ALTER TABLE … ADD CONSTRAINT name body` on the table's copy in `schema`.
fn add_constraint(schema: &str, table: &Table, name: &str, body: &str) -> String {
    format!("ALTER TABLE {} ADD CONSTRAINT {} {body}", qualified_mssql(schema, &table.name), quote_mssql(name))
}

/// The primary key, added after the data.
pub fn primary_key(schema: &str, table: &Table) -> Option<String> {
    let key = table.primary_key.as_ref()?;
    Some(add_constraint(schema, table, &key.name, &format!("PRIMARY KEY ({})", names(&key.columns))))
}

/// The unique constraints, added after the data.
pub fn unique_constraints(schema: &str, table: &Table) -> Vec<String> {
    let unique = |key: &Key| add_constraint(schema, table, &key.name, &format!("UNIQUE ({})", names(&key.columns)));
    table.unique_constraints.iter().map(unique).collect()
}

/// Whether SQL Server can build `index`: one on an expression (only
/// PostgreSQL has them) cannot.
fn buildable(index: &Index) -> bool {
    index.columns.iter().all(|c| c.expression.is_none())
}

/// The indexes, with their sort directions, included columns and filters.
/// An index on an expression (only PostgreSQL has them) is left out.
pub fn indexes(schema: &str, table: &Table) -> Vec<String> {
    table
        .indexes
        .iter()
        .filter(|index| buildable(index))
        .map(|index| {
            let columns = index
                .columns
                .iter()
                .map(|c| format!("{}{}", quote_mssql(&c.name), if c.descending { " DESC" } else { "" }))
                .collect::<Vec<_>>()
                .join(", ");
            let mut sql = format!(
                "CREATE {}INDEX {} ON {} ({columns})",
                if index.unique { "UNIQUE " } else { "" },
                quote_mssql(&index.name),
                qualified_mssql(schema, &table.name)
            );
            if !index.included.is_empty() {
                let _ = write!(sql, " INCLUDE ({})", names(&index.included));
            }
            if let Some(filter) = &index.filter {
                let _ = write!(sql, " WHERE {filter}");
            }
            sql
        })
        .collect()
}

/// The check constraints, added after the data (so the load does not
/// check each row) and checked as they are added: `WITH CHECK` is what
/// SQL Server assumes for a new constraint, so it is not written
/// (Babelfish refuses the clause).
pub fn checks(schema: &str, table: &Table) -> Vec<String> {
    let check = |c: &CheckConstraint| {
        add_constraint(schema, table, &c.name, &format!("CHECK {}", parenthesized(&c.expression)))
    };
    table.checks.iter().map(check).collect()
}

/// `expression` in parentheses, unless the catalog already wrote them.
fn parenthesized(expression: &str) -> String {
    let trimmed = expression.trim();
    if trimmed.starts_with('(') && trimmed.ends_with(')') { trimmed.to_owned() } else { format!("({trimmed})") }
}

fn action(action: ReferentialAction) -> &'static str {
    match action {
        // T-SQL has no RESTRICT; NO ACTION refuses the same changes.
        ReferentialAction::NoAction | ReferentialAction::Restrict => "NO ACTION",
        ReferentialAction::Cascade => "CASCADE",
        ReferentialAction::SetNull => "SET NULL",
        ReferentialAction::SetDefault => "SET DEFAULT",
    }
}

/// `sql` run only if `schema` has no object (a constraint) named `name`:
/// a resumed run redoes every step, and one done already is skipped on the
/// server, SQL Server and Babelfish alike, rather than failing.
fn unless_object(schema: &str, name: &str, sql: String) -> String {
    format!("IF OBJECT_ID({}) IS NULL {sql}", literal_mssql(&qualified_mssql(schema, name)))
}

/// What completes a loaded table, in order, each statement with what it
/// builds (for messages): the primary key, unique constraints, indexes
/// (`with_indexes`) and checks (`with_checks`). Each is skipped when its
/// object exists already (built by the run a resume continues).
pub fn after_load(schema: &str, table: &Table, with_indexes: bool, with_checks: bool) -> Vec<(String, String)> {
    let on = |kind: &str, name: &str| format!("{kind} {name} on {}", table.name);
    let mut steps: Vec<(String, String)> = Vec::new();
    if let (Some(key), Some(sql)) = (&table.primary_key, primary_key(schema, table)) {
        steps.push((on("primary key", &key.name), unless_object(schema, &key.name, sql)));
    }
    let unique = table.unique_constraints.iter().zip(unique_constraints(schema, table));
    steps.extend(unique.map(|(key, sql)| (on("unique constraint", &key.name), unless_object(schema, &key.name, sql))));
    if with_indexes {
        let built = table.indexes.iter().filter(|index| buildable(index)).zip(indexes(schema, table));
        steps.extend(built.map(|(index, sql)| {
            let guarded = format!(
                "IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID({}) AND name = {}) {sql}",
                literal_mssql(&qualified_mssql(schema, &table.name)),
                literal_mssql(&index.name)
            );
            (on("index", &index.name), guarded)
        }));
    }
    if with_checks {
        let checks = table.checks.iter().zip(checks(schema, table));
        steps.extend(checks.map(|(c, sql)| (on("check", &c.name), unless_object(schema, &c.name, sql))));
    }
    steps
}

/// The foreign keys as [`foreign_keys`], each with what it builds (for
/// messages) and skipped when it exists already.
pub fn named_foreign_keys(schema: &str, table: &Table) -> Vec<(String, String)> {
    table
        .foreign_keys
        .iter()
        .zip(foreign_keys(schema, table))
        .map(|(fk, sql)| (format!("foreign key {} on {}", fk.name, table.name), unless_object(schema, &fk.name, sql)))
        .collect()
}

/// The foreign keys, added last. A key referencing a table in the source
/// table's own schema references the copy in `schema`; one referencing
/// another schema keeps it.
pub fn foreign_keys(schema: &str, table: &Table) -> Vec<String> {
    let foreign_key = |fk: &ForeignKey| {
        let referenced_schema = if fk.referenced_schema == table.schema { schema } else { &fk.referenced_schema };
        let body = format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} ON UPDATE {}",
            names(&fk.columns),
            qualified_mssql(referenced_schema, &fk.referenced_table),
            names(&fk.referenced_columns),
            action(fk.on_delete),
            action(fk.on_update)
        );
        add_constraint(schema, table, &fk.name, &body)
    };
    table.foreign_keys.iter().map(foreign_key).collect()
}

/// Sets the identity's current value to the source's, so the next row the
/// copy takes gets the number the source would give next. Without a current
/// value from the source (a table that never took a row), the server sets
/// it from the rows the copy holds.
pub fn reseed_identity(schema: &str, table: &Table) -> Option<String> {
    let identity = table.columns.iter().find_map(|c| c.identity)?;
    // DBCC takes the table's name as text. Plain names go as the documented
    // 'schema.table', which both SQL Server and Babelfish read (Babelfish
    // takes brackets, and an N prefix, as part of the name); others need
    // brackets and Unicode on SQL Server.
    let plain = |name: &str| {
        name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let name = if plain(schema) && plain(&table.name) {
        format!("'{schema}.{}'", table.name)
    } else {
        literal_mssql(&qualified_mssql(schema, &table.name))
    };
    Some(match identity.current {
        Some(current) => format!("DBCC CHECKIDENT ({name}, RESEED, {current}) WITH NO_INFOMSGS"),
        None => format!("DBCC CHECKIDENT ({name}, RESEED) WITH NO_INFOMSGS"),
    })
}

/// Drops and creates, in [`STATE_SCHEMA`], the table that collects the
/// keys an upsert with `delete_missing` reads for `table`'s copy in
/// `schema` ([`seen_keys_table`]): the key columns with their types and
/// collations, so they compare with the copy's exactly.
///
/// # Errors
/// As [`create_table`], and [`TransferError::Incompatible`] for a key
/// column the table does not have.
pub fn create_seen_keys(schema: &str, table: &Table, key_columns: &[&str]) -> Result<String, TransferError> {
    let model = seen_keys_model(schema, table, key_columns)?;
    Ok(format!(
        "{}; DROP TABLE IF EXISTS {}; {}",
        crate::target::create_schema(STATE_SCHEMA),
        seen_keys(schema, &table.name),
        create_table(STATE_SCHEMA, &model)?
    ))
}

/// The table [`create_seen_keys`] makes, as a table a load can fill: the
/// key columns with their types and collations, never NULL, without
/// identity, default or computation.
///
/// # Errors
/// [`TransferError::Incompatible`] for a key column the table does not have.
pub fn seen_keys_model(schema: &str, table: &Table, key_columns: &[&str]) -> Result<Table, TransferError> {
    let columns = key_columns
        .iter()
        .map(|name| {
            let column = table.column(name).ok_or_else(|| TransferError::Incompatible {
                table: format!("{}.{}", table.schema, table.name),
                message: format!("key column {name} is not a column of the table"),
            })?;
            Ok(Column { nullable: false, identity: None, default: None, computed: None, ..column.clone() })
        })
        .collect::<Result<Vec<_>, TransferError>>()?;
    Ok(Table::new(STATE_SCHEMA, seen_keys_table(schema, &table.name), columns))
}

/// The name of [`create_seen_keys`]'s table, quoted.
pub fn seen_keys(schema: &str, table: &str) -> String {
    qualified_mssql(STATE_SCHEMA, &seen_keys_table(schema, table))
}

/// Deletes the rows of `table`'s copy in `schema` whose key the sync did
/// not read (is not in [`create_seen_keys`]'s table), answers how many,
/// and drops that table: run in one transaction, and redone after a kill
/// only while that table is there.
pub fn delete_unseen(schema: &str, table: &str, key_columns: &[&str]) -> String {
    let seen = seen_keys(schema, table);
    let matches =
        key_columns.iter().map(|k| format!("s.{0} = t.{0}", quote_mssql(k))).collect::<Vec<_>>().join(" AND ");
    format!(
        "DECLARE @mpm_deleted bigint; \
         DELETE t FROM {} AS t WHERE NOT EXISTS (SELECT 1 FROM {seen} AS s WHERE {matches}); \
         SET @mpm_deleted = @@ROWCOUNT; DROP TABLE {seen}; SELECT @mpm_deleted",
        qualified_mssql(schema, table)
    )
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_schema::{CheckConstraint, Computed, ForeignKey, Identity, Index, IndexColumn, Key};
    use mssql_pg_migrate_typemap::Length;

    use super::*;

    fn ms(ty: MssqlType) -> ColumnType {
        ColumnType::Mssql(ty)
    }

    fn orders() -> Table {
        let mut id = Column::new("Id", ms(MssqlType::BigInt));
        id.identity = Some(Identity { seed: 100, increment: 5, current: Some(1_000) });
        let mut note = Column::new("Note]s", ms(MssqlType::NVarChar(Length::Max)));
        note.nullable = true;
        note.collation = Some("Latin1_General_CI_AS".into());
        let mut qty = Column::new("Qty", ms(MssqlType::Decimal { precision: 18, scale: 4 }));
        qty.default = Some("((0))".into());
        let mut total = Column::new("Total", ms(MssqlType::Decimal { precision: 38, scale: 4 }));
        total.computed = Some(Computed { expression: "([Qty]*(2))".into(), persisted: true });
        let version = Column::new("Version", ms(MssqlType::RowVersion));
        let at = Column::new("At", ms(MssqlType::DateTime2 { scale: 7 }));
        let mut scan = Column::new("Scan", ms(MssqlType::Image));
        scan.nullable = true;
        let memo = Column::new("Memo", ms(MssqlType::NText));
        let mut table = Table::new("sales", "Orders", vec![id, note, qty, total, version, at, scan, memo]);
        table.primary_key = Some(Key { name: "PK_Orders".into(), columns: vec!["Id".into()] });
        table.unique_constraints = vec![Key { name: "UQ_At".into(), columns: vec!["At".into(), "Id".into()] }];
        table.indexes = vec![Index {
            name: "IX_Qty".into(),
            columns: vec![
                IndexColumn { name: "Qty".into(), descending: true, ..IndexColumn::default() },
                IndexColumn { name: "At".into(), ..IndexColumn::default() },
            ],
            included: vec!["Note]s".into()],
            unique: false,
            filter: Some("([Qty]>(0))".into()),
            method: None,
        }];
        table.checks = vec![CheckConstraint { name: "CK_Qty".into(), expression: "([Qty]>=(0))".into() }];
        table.foreign_keys = vec![
            ForeignKey {
                name: "FK_Same".into(),
                columns: vec!["Id".into()],
                referenced_schema: "sales".into(),
                referenced_table: "Heads".into(),
                referenced_columns: vec!["HeadId".into()],
                on_delete: ReferentialAction::Cascade,
                on_update: ReferentialAction::Restrict,
            },
            ForeignKey {
                name: "FK_Other".into(),
                columns: vec!["Qty".into()],
                referenced_schema: "ref".into(),
                referenced_table: "Qtys".into(),
                referenced_columns: vec!["Q".into()],
                on_delete: ReferentialAction::SetNull,
                on_update: ReferentialAction::NoAction,
            },
        ];
        table
    }

    #[test]
    fn the_keys_a_sync_read_are_kept_with_the_keys_types_and_collations_and_unseen_rows_deleted_by_them() {
        let seen = format!("[mssql_pg_migrate].[{}]", seen_keys_table("copy", "Orders"));
        assert_eq!(seen_keys("copy", "Orders"), seen);
        let sql = create_seen_keys("copy", &orders(), &["Id", "Note]s"]).unwrap();
        assert_eq!(
            sql,
            format!(
                "IF SCHEMA_ID(N'mssql_pg_migrate') IS NULL EXEC(N'CREATE SCHEMA [mssql_pg_migrate]'); \
                 DROP TABLE IF EXISTS {seen}; \
                 CREATE TABLE {seen} ([Id] bigint NOT NULL, [Note]]s] nvarchar(max) COLLATE Latin1_General_CI_AS NOT NULL)"
            ),
            "no identity, no default, never NULL"
        );
        let missing = create_seen_keys("copy", &orders(), &["Nope"]).unwrap_err();
        assert!(missing.to_string().contains("key column Nope"), "{missing}");
        assert_eq!(
            delete_unseen("copy", "Orders", &["Id", "Note]s"]),
            format!(
                "DECLARE @mpm_deleted bigint; DELETE t FROM [copy].[Orders] AS t WHERE NOT EXISTS \
                 (SELECT 1 FROM {seen} AS s WHERE s.[Id] = t.[Id] AND s.[Note]]s] = t.[Note]]s]); \
                 SET @mpm_deleted = @@ROWCOUNT; DROP TABLE {seen}; SELECT @mpm_deleted"
            )
        );
    }

    #[test]
    fn a_table_is_created_with_its_types_identities_collations_defaults_computed_columns_and_no_deprecated_lob_types() {
        assert_eq!(
            create_table("copy", &orders()).unwrap(),
            "CREATE TABLE [copy].[Orders] ([Id] bigint IDENTITY(100,5) NOT NULL, \
             [Note]]s] nvarchar(max) COLLATE Latin1_General_CI_AS NULL, \
             [Qty] decimal(18,4) NOT NULL DEFAULT ((0)), \
             [Total] AS ([Qty]*(2)) PERSISTED, \
             [Version] rowversion, \
             [At] datetime2(7) NOT NULL, \
             [Scan] varbinary(max) NULL, \
             [Memo] nvarchar(max) NOT NULL)"
        );
    }

    #[test]
    fn a_bulk_load_writes_neither_computed_columns_nor_rowversions() {
        let table = orders();
        let loaded: Vec<&str> = loaded_columns(&table).map(|c| c.name.as_str()).collect();
        assert_eq!(loaded, ["Id", "Note]s", "Qty", "At", "Scan", "Memo"]);
    }

    #[test]
    fn keys_indexes_and_checks_come_after_the_data_with_every_name_quoted() {
        let table = orders();
        assert_eq!(
            primary_key("copy", &table).unwrap(),
            "ALTER TABLE [copy].[Orders] ADD CONSTRAINT [PK_Orders] PRIMARY KEY ([Id])"
        );
        assert_eq!(
            unique_constraints("copy", &table),
            ["ALTER TABLE [copy].[Orders] ADD CONSTRAINT [UQ_At] UNIQUE ([At], [Id])"]
        );
        assert_eq!(
            indexes("copy", &table),
            ["CREATE INDEX [IX_Qty] ON [copy].[Orders] ([Qty] DESC, [At]) INCLUDE ([Note]]s]) WHERE ([Qty]>(0))"]
        );
        assert_eq!(checks("copy", &table), ["ALTER TABLE [copy].[Orders] ADD CONSTRAINT [CK_Qty] CHECK ([Qty]>=(0))"]);
    }

    #[test]
    fn a_resumed_run_skips_each_finalization_step_whose_object_exists() {
        let steps = after_load("copy", &orders(), true, false);
        let what: Vec<&str> = steps.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(
            what,
            ["primary key PK_Orders on Orders", "unique constraint UQ_At on Orders", "index IX_Qty on Orders"]
        );
        assert_eq!(
            steps[0].1,
            "IF OBJECT_ID(N'[copy].[PK_Orders]') IS NULL \
             ALTER TABLE [copy].[Orders] ADD CONSTRAINT [PK_Orders] PRIMARY KEY ([Id])"
        );
        assert!(
            steps[2].1.starts_with(
                "IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'[copy].[Orders]') \
                 AND name = N'IX_Qty') CREATE INDEX [IX_Qty]"
            ),
            "{}",
            steps[2].1
        );
        let fks = named_foreign_keys("copy", &orders());
        assert_eq!(fks[0].0, "foreign key FK_Same on Orders");
        assert!(fks[0].1.starts_with("IF OBJECT_ID(N'[copy].[FK_Same]') IS NULL ALTER TABLE"), "{}", fks[0].1);
    }

    #[test]
    fn a_column_the_source_gained_is_added_nullable_without_identity_or_default() {
        let mut table = orders();
        let mut gained = table.columns[0].clone();
        gained.name = "Extra".into();
        gained.default = Some("((7))".into());
        table.columns.push(gained.clone());
        assert_eq!(add_column("copy", &table, &gained).unwrap(), "ALTER TABLE [copy].[Orders] ADD [Extra] bigint NULL");
    }

    #[test]
    fn foreign_keys_follow_the_schema_their_table_moved_to_and_restrict_becomes_no_action() {
        assert_eq!(
            foreign_keys("copy", &orders()),
            [
                "ALTER TABLE [copy].[Orders] ADD CONSTRAINT [FK_Same] FOREIGN KEY ([Id]) \
                 REFERENCES [copy].[Heads] ([HeadId]) ON DELETE CASCADE ON UPDATE NO ACTION",
                "ALTER TABLE [copy].[Orders] ADD CONSTRAINT [FK_Other] FOREIGN KEY ([Qty]) \
                 REFERENCES [ref].[Qtys] ([Q]) ON DELETE SET NULL ON UPDATE NO ACTION",
            ]
        );
    }

    #[test]
    fn the_identity_is_reseeded_to_the_source_current_value_or_from_the_rows_naming_the_table_as_text() {
        let mut table = orders();
        assert_eq!(
            reseed_identity("co'py", &table).unwrap(),
            "DBCC CHECKIDENT (N'[co''py].[Orders]', RESEED, 1000) WITH NO_INFOMSGS"
        );
        table.columns[0].identity = Some(Identity { seed: 1, increment: 1, current: None });
        assert_eq!(
            reseed_identity("copy", &table).unwrap(),
            "DBCC CHECKIDENT ('copy.Orders', RESEED) WITH NO_INFOMSGS"
        );
        table.columns[0].identity = None;
        assert_eq!(reseed_identity("copy", &table), None);
    }

    #[test]
    fn a_column_that_is_not_a_sql_server_type_or_has_an_odd_collation_is_refused_by_name() {
        let mut table = orders();
        table.columns[5].data_type = ColumnType::Postgres(mssql_pg_migrate_typemap::PgType::Text);
        let error = create_table("copy", &table).unwrap_err().to_string();
        assert!(error.contains("sales.Orders") && error.contains("column At has type text"), "{error}");
        let mut table = orders();
        table.columns[1].collation = Some("x; DROP TABLE y".into());
        let error = create_table("copy", &table).unwrap_err().to_string();
        assert!(error.contains("column Note]s has a collation that is not a name"), "{error}");
    }
}
