//! The SQL Server catalog as one flat list per `sys` view, and the pure
//! join of those lists into [`CatalogRows`].
//!
//! Each query reads one view with no joins: Babelfish parses T-SQL with a
//! parser whose cache starts empty in every session, and a query's first
//! parse grows with its joins and expressions (0.7 s for the single joined
//! column query, 0.25 s for its `sys.columns` part alone). Joining here
//! costs microseconds, and SQL Server answers single-view queries as fast.

use std::collections::HashMap;

use super::{ColumnParts, column_from_parts, referential_action};
use mssql_pg_migrate_schema::SchemaError;
use mssql_pg_migrate_schema::catalog::{
    CatalogRows, CheckRow, ColumnRow, ForeignKeyColumnRow, IndexColumnRow, KeyColumnRow, KeyKind, ObjectId, TableRow,
    UnsupportedRow,
};

/// A `sys.tables` row.
#[derive(Debug, Clone, PartialEq)]
pub struct TableFact {
    pub object_id: ObjectId,
    pub schema: String,
    pub name: String,
}

/// A `sys.partitions` row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionFact {
    pub object_id: ObjectId,
    pub index_id: i32,
    pub rows: i64,
}

/// A `sys.columns` row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnFact {
    pub object_id: ObjectId,
    pub column_id: i32,
    pub name: String,
    pub system_type_id: i32,
    pub user_type_id: i32,
    pub max_length: i16,
    pub precision: u8,
    pub scale: u8,
    pub nullable: bool,
    pub collation: Option<String>,
    /// `0` when the column has no default.
    pub default_object_id: ObjectId,
    pub is_identity: bool,
}

/// A `sys.types` row.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeFact {
    pub user_type_id: i32,
    pub name: String,
    pub is_user_defined: bool,
    pub is_assembly_type: bool,
}

/// A `sys.computed_columns` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedFact {
    pub object_id: ObjectId,
    pub column_id: i32,
    pub definition: String,
    pub persisted: bool,
}

/// An identity column's seed, increment and (once a value was generated)
/// current value, as the text of a `decimal(38, 0)`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityFact {
    pub object_id: ObjectId,
    pub column_id: i32,
    pub seed: Option<String>,
    pub increment: Option<String>,
    pub current: Option<String>,
}

/// A `sys.indexes` row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IndexFact {
    pub object_id: ObjectId,
    pub index_id: i32,
    /// `NULL` for a heap.
    pub name: Option<String>,
    pub kind: i32,
    pub kind_description: Option<String>,
    pub unique: bool,
    pub primary_key: bool,
    pub unique_constraint: bool,
    pub hypothetical: bool,
    pub disabled: bool,
    pub filter: Option<String>,
}

/// A `sys.index_columns` row.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IndexColumnFact {
    pub object_id: ObjectId,
    pub index_id: i32,
    pub index_column_id: i32,
    pub column_id: i32,
    /// `0` for an included column.
    pub key_ordinal: i32,
    pub descending: bool,
    pub included: bool,
}

/// A `sys.foreign_keys` row. The referenced table's names are `None` when
/// the login may not see that table.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKeyFact {
    pub object_id: ObjectId,
    pub parent_object_id: ObjectId,
    pub name: String,
    pub on_delete: i32,
    pub on_update: i32,
    pub disabled: bool,
    pub referenced_schema: Option<String>,
    pub referenced_table: Option<String>,
}

/// A `sys.foreign_key_columns` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKeyColumnFact {
    pub constraint_object_id: ObjectId,
    pub ordinal: i32,
    pub parent_column_id: i32,
    pub referenced_column: Option<String>,
}

/// A `sys.check_constraints` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckFact {
    pub object_id: ObjectId,
    pub name: String,
    pub definition: String,
    pub disabled: bool,
}

/// What the tables connection reads: tables and everything hanging off them
/// except columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectFacts {
    pub tables: Vec<TableFact>,
    pub partitions: Vec<PartitionFact>,
    /// Used bytes by table, where the server keeps them.
    pub sizes: HashMap<ObjectId, i64>,
    pub indexes: Vec<IndexFact>,
    pub index_columns: Vec<IndexColumnFact>,
    pub foreign_keys: Vec<ForeignKeyFact>,
    pub foreign_key_columns: Vec<ForeignKeyColumnFact>,
    pub checks: Vec<CheckFact>,
}

/// What the columns connection reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnFacts {
    pub columns: Vec<ColumnFact>,
    pub types: Vec<TypeFact>,
    /// Default definitions by the default constraint's `object_id`.
    pub defaults: HashMap<ObjectId, String>,
    pub computed: Vec<ComputedFact>,
    pub identities: Vec<IdentityFact>,
}

/// A table's row count: the heap's or clustered index's partitions, or,
/// on a server that keeps neither (Babelfish numbers indexes from 2), the
/// largest count any of its indexes holds.
fn row_count(partitions: &[PartitionFact]) -> i64 {
    let base: Vec<i64> = partitions.iter().filter(|p| matches!(p.index_id, 0 | 1)).map(|p| p.rows).collect();
    if base.is_empty() { partitions.iter().map(|p| p.rows).max().unwrap_or(0) } else { base.iter().sum() }
}

/// Joins the facts into the rows [`mssql_pg_migrate_schema::catalog::assemble`] takes, in the
/// order it needs (each object's columns consecutive and in order). Only
/// objects of the tables in `objects.tables` are kept.
///
/// # Errors
/// An identity value that is not an integer.
pub fn catalog_rows(objects: ObjectFacts, columns: ColumnFacts) -> Result<CatalogRows, SchemaError> {
    let mut rows = CatalogRows::default();
    let mut partitions: HashMap<ObjectId, Vec<PartitionFact>> = HashMap::new();
    for p in &objects.partitions {
        partitions.entry(p.object_id).or_default().push(*p);
    }
    let mut tables = objects.tables;
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    for t in tables {
        rows.tables.push(TableRow {
            object_id: t.object_id,
            estimated_rows: partitions.get(&t.object_id).map_or(0, |p| row_count(p)),
            estimated_bytes: objects.sizes.get(&t.object_id).copied().unwrap_or(0),
            schema: t.schema,
            name: t.name,
        });
    }
    let table_ids: std::collections::HashSet<ObjectId> = rows.tables.iter().map(|t| t.object_id).collect();
    let is_table = |id: ObjectId| table_ids.contains(&id);

    let types: HashMap<i32, &TypeFact> = columns.types.iter().map(|t| (t.user_type_id, t)).collect();
    let computed: HashMap<(ObjectId, i32), &ComputedFact> =
        columns.computed.iter().map(|c| ((c.object_id, c.column_id), c)).collect();
    let identities: HashMap<(ObjectId, i32), &IdentityFact> =
        columns.identities.iter().map(|i| ((i.object_id, i.column_id), i)).collect();
    let mut table_columns: Vec<&ColumnFact> = columns.columns.iter().filter(|c| is_table(c.object_id)).collect();
    table_columns.sort_by_key(|c| (c.object_id, c.column_id));
    let mut column_names: HashMap<(ObjectId, i32), &str> = HashMap::new();
    for c in table_columns {
        column_names.insert((c.object_id, c.column_id), &c.name);
        rows.columns
            .push(ColumnRow { object_id: c.object_id, column: column(c, &types, &columns, &computed, &identities)? });
    }

    let by_index: HashMap<(ObjectId, i32), &IndexFact> =
        objects.indexes.iter().map(|i| ((i.object_id, i.index_id), i)).collect();
    let mut index_columns: Vec<(&IndexFact, &IndexColumnFact)> = objects
        .index_columns
        .iter()
        .filter_map(|c| by_index.get(&(c.object_id, c.index_id)).map(|i| (*i, c)))
        .filter(|(i, _)| is_table(i.object_id) && !i.hypothetical && i.name.is_some())
        .collect();
    // Keys: primary first, then unique constraints by name; key columns in key order.
    index_columns.sort_by(|(a, ac), (b, bc)| {
        (a.object_id, !a.primary_key, &a.name, ac.included, ac.key_ordinal, ac.index_column_id).cmp(&(
            b.object_id,
            !b.primary_key,
            &b.name,
            bc.included,
            bc.key_ordinal,
            bc.index_column_id,
        ))
    });
    for (index, c) in &index_columns {
        let Some(column) = column_names.get(&(c.object_id, c.column_id)) else { continue };
        let name = index.name.clone().unwrap_or_default();
        if index.primary_key || index.unique_constraint {
            if c.key_ordinal > 0 {
                let kind = if index.primary_key { KeyKind::Primary } else { KeyKind::Unique };
                rows.keys.push(KeyColumnRow { object_id: c.object_id, name, kind, column: (*column).to_owned() });
            }
        } else if matches!(index.kind, 1 | 2) && !index.disabled {
            rows.indexes.push(IndexColumnRow {
                object_id: c.object_id,
                name,
                unique: index.unique,
                filter: index.filter.clone(),
                column: Some((*column).to_owned()),
                descending: c.descending,
                included: c.included,
                expression: None,
                opclass: None,
                method: None,
            });
        }
    }
    // `assemble` groups index rows by consecutive name, so non-key indexes
    // are ordered by name alone (the sort above put primary keys first).
    rows.indexes.sort_by(|a, b| (a.object_id, &a.name).cmp(&(b.object_id, &b.name)));

    let mut unsupported: Vec<&IndexFact> = objects
        .indexes
        .iter()
        .filter(|i| is_table(i.object_id) && !matches!(i.kind, 0..=2) && !i.hypothetical)
        .collect();
    unsupported.sort_by(|a, b| (a.object_id, &a.name).cmp(&(b.object_id, &b.name)));
    for i in unsupported {
        let name = i.name.as_deref().unwrap_or("(unnamed)");
        let kind = i.kind_description.as_deref().unwrap_or("unknown");
        rows.unsupported.push(UnsupportedRow {
            object_id: i.object_id,
            description: format!("index {name} of type {kind} has no PostgreSQL equivalent and is not carried over"),
        });
    }

    let mut fk_columns: HashMap<ObjectId, Vec<&ForeignKeyColumnFact>> = HashMap::new();
    for c in &objects.foreign_key_columns {
        fk_columns.entry(c.constraint_object_id).or_default().push(c);
    }
    let mut foreign_keys: Vec<&ForeignKeyFact> =
        objects.foreign_keys.iter().filter(|f| !f.disabled && is_table(f.parent_object_id)).collect();
    foreign_keys.sort_by(|a, b| (a.parent_object_id, &a.name).cmp(&(b.parent_object_id, &b.name)));
    for fk in foreign_keys {
        let mut parts = fk_columns.remove(&fk.object_id).unwrap_or_default();
        parts.sort_by_key(|c| c.ordinal);
        let (Some(schema), Some(table)) = (&fk.referenced_schema, &fk.referenced_table) else {
            rows.unsupported.push(UnsupportedRow {
                object_id: fk.parent_object_id,
                description: format!(
                    "foreign key {} references a table this login cannot see, and is not carried over",
                    fk.name
                ),
            });
            continue;
        };
        for part in parts {
            let (Some(column), Some(referenced)) =
                (column_names.get(&(fk.parent_object_id, part.parent_column_id)), &part.referenced_column)
            else {
                continue;
            };
            rows.foreign_keys.push(ForeignKeyColumnRow {
                object_id: fk.parent_object_id,
                name: fk.name.clone(),
                column: (*column).to_owned(),
                referenced_schema: schema.clone(),
                referenced_table: table.clone(),
                referenced_column: referenced.clone(),
                on_delete: referential_action(fk.on_delete),
                on_update: referential_action(fk.on_update),
            });
        }
    }

    let mut checks: Vec<CheckFact> =
        objects.checks.into_iter().filter(|c| !c.disabled && is_table(c.object_id)).collect();
    checks.sort_by(|a, b| (a.object_id, &a.name).cmp(&(b.object_id, &b.name)));
    rows.checks = checks
        .into_iter()
        .map(|c| CheckRow { object_id: c.object_id, name: c.name, expression: c.definition })
        .collect();
    Ok(rows)
}

/// One column of the model. An alias type resolves to its base type
/// (`sys.types` by the column's `system_type_id`); a CLR type keeps its own name.
fn column(
    c: &ColumnFact,
    types: &HashMap<i32, &TypeFact>,
    facts: &ColumnFacts,
    computed: &HashMap<(ObjectId, i32), &ComputedFact>,
    identities: &HashMap<(ObjectId, i32), &IdentityFact>,
) -> Result<mssql_pg_migrate_schema::Column, SchemaError> {
    let declared = types.get(&c.user_type_id);
    let is_assembly_type = declared.is_some_and(|t| t.is_assembly_type);
    let base_type = if is_assembly_type {
        declared.map(|t| t.name.as_str())
    } else {
        types.get(&c.system_type_id).or(declared).map(|t| t.name.as_str())
    };
    let missing;
    let base_type = match base_type {
        Some(name) => name,
        // Named rather than dropped: planning that table then fails on it.
        None => {
            missing = format!("(user_type_id {} is missing from sys.types)", c.user_type_id);
            missing.as_str()
        }
    };
    let identity = if c.is_identity { identities.get(&(c.object_id, c.column_id)) } else { None };
    let generated = computed.get(&(c.object_id, c.column_id));
    column_from_parts(&ColumnParts {
        name: &c.name,
        base_type,
        alias_type: declared.filter(|t| t.is_user_defined && !t.is_assembly_type).map(|t| t.name.as_str()),
        is_assembly_type,
        max_length: c.max_length,
        precision: c.precision,
        scale: c.scale,
        nullable: c.nullable,
        collation: c.collation.as_deref(),
        default: if c.default_object_id == 0 {
            None
        } else {
            facts.defaults.get(&c.default_object_id).map(String::as_str)
        },
        identity_seed: identity.and_then(|i| i.seed.as_deref()),
        identity_increment: identity.and_then(|i| i.increment.as_deref()),
        identity_current: identity.and_then(|i| i.current.as_deref()),
        computed: generated.map(|g| g.definition.as_str()),
        persisted: generated.is_some_and(|g| g.persisted),
    })
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_typemap::{Length, MssqlType};

    use super::*;
    use mssql_pg_migrate_schema::catalog::assemble;
    use mssql_pg_migrate_schema::{ColumnType, Computed, Identity, IndexColumn, Key, ReferentialAction};

    fn table(object_id: ObjectId, name: &str) -> TableFact {
        TableFact { object_id, schema: "dbo".into(), name: name.into() }
    }

    fn col(object_id: ObjectId, column_id: i32, name: &str, type_id: i32) -> ColumnFact {
        ColumnFact {
            object_id,
            column_id,
            name: name.into(),
            system_type_id: type_id,
            user_type_id: type_id,
            max_length: 4,
            precision: 10,
            ..ColumnFact::default()
        }
    }

    fn ty(user_type_id: i32, name: &str) -> TypeFact {
        TypeFact { user_type_id, name: name.into(), is_user_defined: false, is_assembly_type: false }
    }

    fn index(object_id: ObjectId, index_id: i32, name: &str, kind: i32) -> IndexFact {
        IndexFact { object_id, index_id, name: Some(name.into()), kind, ..IndexFact::default() }
    }

    fn part(object_id: ObjectId, index_id: i32, column_id: i32, key_ordinal: i32) -> IndexColumnFact {
        IndexColumnFact {
            object_id,
            index_id,
            index_column_id: column_id,
            column_id,
            key_ordinal,
            ..Default::default()
        }
    }

    /// Two tables (orders 10, lines 20) and a view (30) whose columns the
    /// column query also returns; facts arrive in no particular order.
    fn fixture() -> (ObjectFacts, ColumnFacts) {
        let objects = ObjectFacts {
            tables: vec![table(20, "lines"), table(10, "orders")],
            partitions: vec![
                PartitionFact { object_id: 10, index_id: 1, rows: 7 },
                PartitionFact { object_id: 10, index_id: 1, rows: 5 },
                PartitionFact { object_id: 10, index_id: 2, rows: 12 },
                // Babelfish: no heap or clustered index partition.
                PartitionFact { object_id: 20, index_id: 2, rows: 3 },
                PartitionFact { object_id: 20, index_id: 3, rows: 4 },
            ],
            sizes: HashMap::from([(10, 16384)]),
            indexes: vec![
                IndexFact { primary_key: true, unique: true, ..index(20, 2, "pk_lines", 2) },
                IndexFact { unique_constraint: true, unique: true, ..index(20, 3, "uq_lines", 2) },
                IndexFact { filter: Some("([qty]>(0))".into()), ..index(20, 4, "ix_b", 2) },
                index(20, 5, "ix_a", 2),
                IndexFact { disabled: true, ..index(20, 6, "ix_disabled", 2) },
                IndexFact { hypothetical: true, ..index(20, 7, "ix_hypo", 2) },
                IndexFact { kind_description: Some("XML".into()), ..index(20, 8, "xml_doc", 3) },
                IndexFact { name: None, ..index(10, 0, "", 0) },
                index(30, 2, "ix_on_view", 2),
            ],
            index_columns: vec![
                part(20, 2, 2, 2),
                part(20, 2, 1, 1),
                part(20, 3, 3, 1),
                IndexColumnFact { included: true, ..part(20, 4, 4, 0) },
                IndexColumnFact { descending: true, ..part(20, 4, 3, 1) },
                part(20, 5, 2, 1),
                part(20, 6, 2, 1),
                part(30, 2, 1, 1),
            ],
            foreign_keys: vec![
                ForeignKeyFact {
                    object_id: 40,
                    parent_object_id: 20,
                    name: "fk_lines_orders".into(),
                    on_delete: 1,
                    on_update: 0,
                    disabled: false,
                    referenced_schema: Some("dbo".into()),
                    referenced_table: Some("orders".into()),
                },
                ForeignKeyFact {
                    object_id: 41,
                    parent_object_id: 20,
                    name: "fk_hidden".into(),
                    on_delete: 0,
                    on_update: 0,
                    disabled: false,
                    referenced_schema: None,
                    referenced_table: None,
                },
                ForeignKeyFact {
                    object_id: 42,
                    parent_object_id: 20,
                    name: "fk_off".into(),
                    on_delete: 0,
                    on_update: 0,
                    disabled: true,
                    referenced_schema: Some("dbo".into()),
                    referenced_table: Some("orders".into()),
                },
            ],
            foreign_key_columns: vec![
                ForeignKeyColumnFact {
                    constraint_object_id: 40,
                    ordinal: 1,
                    parent_column_id: 1,
                    referenced_column: Some("id".into()),
                },
                ForeignKeyColumnFact {
                    constraint_object_id: 41,
                    ordinal: 1,
                    parent_column_id: 2,
                    referenced_column: None,
                },
            ],
            checks: vec![
                CheckFact { object_id: 20, name: "ck_z".into(), definition: "([qty]>=(0))".into(), disabled: false },
                CheckFact { object_id: 20, name: "ck_a".into(), definition: "([line]>(0))".into(), disabled: false },
                CheckFact { object_id: 20, name: "ck_off".into(), definition: "(1=0)".into(), disabled: true },
            ],
        };
        let columns = ColumnFacts {
            columns: vec![
                col(20, 4, "note", 231),
                col(20, 2, "line", 56),
                col(20, 1, "order_id", 56),
                col(20, 3, "qty", 56),
                ColumnFact { is_identity: true, ..col(10, 1, "id", 56) },
                ColumnFact { user_type_id: 300, default_object_id: 50, nullable: true, ..col(10, 2, "phone", 231) },
                ColumnFact { precision: 38, scale: 2, max_length: 17, ..col(10, 3, "total", 106) },
                ColumnFact { user_type_id: 999, ..col(10, 4, "mystery", 999) },
                col(30, 1, "view_col", 56),
            ],
            types: vec![
                ty(56, "int"),
                ty(106, "decimal"),
                ty(231, "nvarchar"),
                TypeFact { user_type_id: 300, name: "Phone".into(), is_user_defined: true, is_assembly_type: false },
            ],
            defaults: HashMap::from([(50, "(N'none')".to_owned())]),
            computed: vec![ComputedFact {
                object_id: 10,
                column_id: 3,
                definition: "([a]*(2))".into(),
                persisted: true,
            }],
            identities: vec![IdentityFact {
                object_id: 10,
                column_id: 1,
                seed: Some("100".into()),
                increment: Some("5".into()),
                current: None,
            }],
        };
        (objects, columns)
    }

    #[test]
    fn facts_join_into_tables() {
        let (objects, columns) = fixture();
        let tables = assemble(catalog_rows(objects, columns).unwrap(), &|_, _| true);
        assert_eq!(tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["lines", "orders"]);
        let (lines, orders) = (&tables[0], &tables[1]);

        assert_eq!((orders.estimated_rows, orders.estimated_bytes), (12, 16384), "heap/clustered partitions summed");
        assert_eq!((lines.estimated_rows, lines.estimated_bytes), (4, 0), "else the largest index");

        let names: Vec<&str> = lines.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["order_id", "line", "qty", "note"], "in column order; the view's column is not here");
        let phone = &orders.columns[1];
        assert_eq!(phone.data_type, ColumnType::Mssql(MssqlType::NVarChar(Length::Bounded(2))));
        assert_eq!(phone.alias_type.as_deref(), Some("Phone"));
        assert_eq!(phone.default.as_deref(), Some("(N'none')"));
        assert!(phone.nullable);
        assert_eq!(orders.columns[0].identity, Some(Identity { seed: 100, increment: 5, current: None }));
        assert_eq!(orders.columns[2].computed, Some(Computed { expression: "([a]*(2))".into(), persisted: true }));
        assert_eq!(orders.columns[2].identity, None);
        match &orders.columns[3].data_type {
            ColumnType::Unsupported { type_name, .. } => {
                assert_eq!(type_name, "(user_type_id 999 is missing from sys.types)");
            }
            other => panic!("{other:?}"),
        }

        assert_eq!(
            lines.primary_key,
            Some(Key { name: "pk_lines".into(), columns: vec!["order_id".into(), "line".into()] })
        );
        assert_eq!(lines.unique_constraints, vec![Key { name: "uq_lines".into(), columns: vec!["qty".into()] }]);
        let indexes: Vec<&str> = lines.indexes.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(indexes, ["ix_a", "ix_b"], "disabled and hypothetical indexes left out");
        assert_eq!(
            lines.indexes[1].columns,
            vec![IndexColumn { name: "qty".into(), descending: true, ..IndexColumn::default() }]
        );
        assert_eq!(lines.indexes[1].included, vec!["note".to_owned()]);
        assert_eq!(lines.indexes[1].filter.as_deref(), Some("([qty]>(0))"));
        assert_eq!(lines.foreign_keys.len(), 1, "the disabled key and the one to a hidden table are left out");
        let fk = &lines.foreign_keys[0];
        assert_eq!((fk.columns.clone(), fk.referenced_table.as_str()), (vec!["order_id".to_owned()], "orders"));
        assert_eq!(fk.referenced_columns, vec!["id".to_owned()]);
        assert_eq!(fk.on_delete, ReferentialAction::Cascade);
        assert_eq!(
            lines.unsupported,
            vec![
                "index xml_doc of type XML has no PostgreSQL equivalent and is not carried over".to_owned(),
                "foreign key fk_hidden references a table this login cannot see, and is not carried over".to_owned(),
            ]
        );
        let checks: Vec<(&str, &str)> = lines.checks.iter().map(|c| (c.name.as_str(), c.expression.as_str())).collect();
        assert_eq!(checks, [("ck_a", "([line]>(0))"), ("ck_z", "([qty]>=(0))")]);
        assert!(orders.indexes.is_empty() && orders.primary_key.is_none());
    }

    #[test]
    fn a_clr_type_keeps_its_own_name() {
        let (objects, mut columns) = fixture();
        columns.types.push(TypeFact {
            user_type_id: 128,
            name: "hierarchyid".into(),
            is_user_defined: false,
            is_assembly_type: true,
        });
        // As SQL Server has it: CLR types share system_type_id 240, which no
        // sys.types row has as its user_type_id.
        columns.columns.push(ColumnFact { user_type_id: 128, ..col(10, 5, "node", 240) });
        let rows = catalog_rows(objects, columns).unwrap();
        let node = rows.columns.iter().find(|c| c.column.name == "node").unwrap();
        assert_eq!(node.column.alias_type, None);
        assert_eq!(node.column.data_type, ColumnType::Mssql(MssqlType::HierarchyId));
    }
}
