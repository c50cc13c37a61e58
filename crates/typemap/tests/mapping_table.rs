//! Every SQL Server type, as the catalog describes it, through the default
//! mapping: target type, verdict, and the words that explain a loss.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use mssql_pg_migrate_typemap::{
    CatalogType, MappingOrigin, MssqlType, Override, OverrideScope, PgType, SourceColumn, TypeError, Verdict,
    conversion, map_column,
};

struct Row {
    name: &'static str,
    max_length: i16,
    precision: u8,
    scale: u8,
    assembly: bool,
    pg: &'static str,
    verdict: Verdict,
    reason_contains: &'static str,
}

const fn row(
    name: &'static str,
    max_length: i16,
    precision: u8,
    scale: u8,
    pg: &'static str,
    verdict: Verdict,
    reason_contains: &'static str,
) -> Row {
    Row { name, max_length, precision, scale, assembly: false, pg, verdict, reason_contains }
}

use Verdict::{Exact, Lossy, Widened};
use mssql_pg_migrate_testkit::check_generated;

// Catalog values are what sys.columns reports for each declaration.
const TABLE: &[Row] = &[
    row("bit", 1, 1, 0, "boolean", Exact, ""),
    row("tinyint", 1, 3, 0, "smallint", Widened, "wider range"),
    row("smallint", 2, 5, 0, "smallint", Exact, ""),
    row("int", 4, 10, 0, "integer", Exact, ""),
    row("bigint", 8, 19, 0, "bigint", Exact, ""),
    row("decimal", 9, 18, 2, "numeric(18,2)", Exact, ""),
    row("decimal", 17, 38, 0, "numeric(38,0)", Exact, ""),
    row("numeric", 17, 38, 38, "numeric(38,38)", Exact, ""),
    row("numeric", 5, 1, 0, "numeric(1,0)", Exact, ""),
    row("money", 8, 19, 4, "numeric(19,4)", Exact, ""),
    row("smallmoney", 4, 10, 4, "numeric(10,4)", Exact, ""),
    row("float", 8, 53, 0, "double precision", Exact, ""),
    row("real", 4, 24, 0, "real", Exact, ""),
    row("date", 3, 10, 0, "date", Exact, ""),
    row("time", 3, 8, 0, "time", Widened, "more fractional digits"),
    row("time", 5, 15, 6, "time", Exact, ""),
    row("time", 5, 16, 7, "time", Lossy, "100-nanosecond digit"),
    row("datetime", 8, 23, 3, "timestamp", Widened, "1/300-second"),
    row("datetime2", 6, 19, 0, "timestamp", Widened, "more fractional digits"),
    row("datetime2", 8, 26, 6, "timestamp", Exact, ""),
    row("datetime2", 8, 27, 7, "timestamp", Lossy, "100-nanosecond digit"),
    row("smalldatetime", 4, 16, 0, "timestamp", Widened, "minute precision"),
    row("datetimeoffset", 8, 26, 0, "timestamptz", Lossy, "offset"),
    row("datetimeoffset", 10, 33, 6, "timestamptz", Lossy, "offset"),
    row("datetimeoffset", 10, 34, 7, "timestamptz", Lossy, "100-nanosecond digit"),
    row("char", 10, 0, 0, "char(10)", Exact, ""),
    row("varchar", 50, 0, 0, "varchar(50)", Exact, ""),
    row("varchar", -1, 0, 0, "text", Exact, ""),
    row("nchar", 20, 0, 0, "char(10)", Exact, ""),
    row("nvarchar", 100, 0, 0, "varchar(50)", Exact, ""),
    row("nvarchar", -1, 0, 0, "text", Exact, ""),
    row("sysname", 256, 0, 0, "varchar(128)", Exact, ""),
    row("text", 16, 0, 0, "text", Exact, ""),
    row("ntext", 16, 0, 0, "text", Exact, ""),
    row("binary", 16, 0, 0, "bytea", Widened, "declared length"),
    row("varbinary", 100, 0, 0, "bytea", Widened, "declared length"),
    row("varbinary", -1, 0, 0, "bytea", Exact, ""),
    row("image", 16, 0, 0, "bytea", Exact, ""),
    row("uniqueidentifier", 16, 0, 0, "uuid", Exact, ""),
    row("xml", -1, 0, 0, "text", Widened, "serialises"),
    row("sql_variant", 8016, 0, 0, "text", Lossy, "base type"),
    row("timestamp", 8, 0, 0, "bytea", Widened, "8-byte"),
    row("rowversion", 8, 0, 0, "bytea", Widened, "8-byte"),
    Row { assembly: true, ..row("hierarchyid", 892, 0, 0, "text", Widened, "path string") },
    Row { assembly: true, ..row("geography", -1, 0, 0, "text", Lossy, "SRID") },
    Row { assembly: true, ..row("geometry", -1, 0, 0, "text", Lossy, "SRID") },
    Row { assembly: true, ..row("MyCompany.Point", 20, 0, 0, "bytea", Widened, "CLR") },
];

fn parse(r: &Row) -> MssqlType {
    MssqlType::from_catalog(CatalogType {
        name: r.name,
        max_length: r.max_length,
        precision: r.precision,
        scale: r.scale,
        is_assembly_type: r.assembly,
    })
    .unwrap_or_else(|e| panic!("{}: {e}", r.name))
}

#[test]
fn every_sql_server_type_has_a_default_mapping_and_verdict() {
    let mut failures = Vec::new();
    for r in TABLE {
        let t = parse(r);
        let column = SourceColumn::new("dbo", "t", "c", &t);
        let m = map_column(&column, &[]).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let reason = m.fidelity.reason().unwrap_or("");
        if m.pg_type.to_string() != r.pg
            || m.fidelity.verdict() != r.verdict
            || !reason.contains(r.reason_contains)
            || (r.verdict == Exact) != reason.is_empty()
        {
            failures.push(format!(
                "{t}: got {} / {:?} ({reason}); want {} / {:?} (containing {:?})",
                m.pg_type,
                m.fidelity.verdict(),
                r.pg,
                r.verdict,
                r.reason_contains
            ));
        }
        assert_eq!(m.origin, MappingOrigin::Default);
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn the_table_covers_every_base_type_name() {
    for name in MssqlType::BASE_NAMES {
        let covered = TABLE.iter().any(|r| parse(r).matches_base_name(name));
        assert!(covered, "no row for {name}");
    }
}

#[test]
fn unknown_and_malformed_catalog_types_are_errors_that_name_the_type() {
    let err = MssqlType::from_catalog(CatalogType {
        name: "vector",
        max_length: 8,
        precision: 0,
        scale: 0,
        is_assembly_type: false,
    })
    .unwrap_err();
    assert_eq!(err, TypeError::UnknownType { type_name: "vector".into() });
    let err = MssqlType::from_catalog(CatalogType {
        name: "decimal",
        max_length: 17,
        precision: 39,
        scale: 0,
        is_assembly_type: false,
    })
    .unwrap_err();
    assert!(err.to_string().contains("decimal") && err.to_string().contains("39"), "{err}");
    let err = MssqlType::from_catalog(CatalogType {
        name: "nvarchar",
        max_length: 7,
        precision: 0,
        scale: 0,
        is_assembly_type: false,
    })
    .unwrap_err();
    assert!(err.to_string().contains("max_length 7"), "{err}");
}

#[test]
fn identity_columns_keep_identity_when_the_target_is_an_integer() {
    let int = MssqlType::Int;
    let mut c = SourceColumn::new("dbo", "t", "id", &int);
    c.identity = true;
    let m = map_column(&c, &[]).unwrap();
    assert!(m.identity);
    assert_eq!(m.fidelity, mssql_pg_migrate_typemap::Fidelity::Exact);

    let small_decimal = MssqlType::Decimal { precision: 12, scale: 0 };
    let mut c = SourceColumn::new("dbo", "t", "id", &small_decimal);
    c.identity = true;
    let m = map_column(&c, &[]).unwrap();
    assert_eq!((m.pg_type, m.identity), (PgType::BigInt, true));
    assert_eq!(m.fidelity.verdict(), Widened);

    let huge_decimal = MssqlType::Decimal { precision: 30, scale: 0 };
    let mut c = SourceColumn::new("dbo", "t", "id", &huge_decimal);
    c.identity = true;
    let m = map_column(&c, &[]).unwrap();
    assert_eq!((m.pg_type, m.identity), (PgType::Numeric(Some((30, 0))), false));
    assert_eq!(m.fidelity.verdict(), Lossy);
    assert!(m.fidelity.reason().unwrap().contains("IDENTITY property is dropped"));
}

#[test]
fn case_insensitive_collations_are_reported_on_text_columns() {
    let t = MssqlType::NVarChar(mssql_pg_migrate_typemap::Length::Bounded(40));
    let mut c = SourceColumn::new("dbo", "t", "name", &t);
    c.collation = Some("SQL_Latin1_General_CP1_CI_AS");
    let m = map_column(&c, &[]).unwrap();
    assert_eq!(m.fidelity.verdict(), Widened);
    assert!(m.fidelity.reason().unwrap().contains("SQL_Latin1_General_CP1_CI_AS"));
    c.collation = Some("Latin1_General_100_BIN2");
    assert_eq!(map_column(&c, &[]).unwrap().fidelity.verdict(), Exact);
}

#[test]
fn column_overrides_beat_type_overrides_which_beat_defaults() {
    let t = MssqlType::DateTimeOffset { scale: 7 };
    let overrides = [
        Override { scope: OverrideScope::SourceType("datetimeoffset".into()), target: PgType::Text },
        Override {
            scope: OverrideScope::Column { schema: None, table: "Orders".into(), column: "At".into() },
            target: PgType::TimestampTz(Some(6)),
        },
    ];
    let other = SourceColumn::new("dbo", "Orders", "Other", &t);
    let m = map_column(&other, &overrides).unwrap();
    assert_eq!((m.pg_type, m.origin), (PgType::Text, MappingOrigin::TypeOverride));
    assert_eq!(m.fidelity.verdict(), Widened, "text keeps the offset: {:?}", m.fidelity);

    let at = SourceColumn::new("dbo", "Orders", "At", &t);
    let m = map_column(&at, &overrides).unwrap();
    assert_eq!((m.pg_type, m.origin), (PgType::TimestampTz(Some(6)), MappingOrigin::ColumnOverride));
    assert_eq!(m.fidelity.verdict(), Lossy);

    // numeric and decimal are one type; a type override by either name applies.
    let d = MssqlType::Decimal { precision: 10, scale: 2 };
    let o = [Override { scope: OverrideScope::SourceType("NUMERIC".into()), target: PgType::Numeric(None) }];
    let m = map_column(&SourceColumn::new("dbo", "t", "c", &d), &o).unwrap();
    assert_eq!(m.pg_type, PgType::Numeric(None));
}

#[test]
fn overrides_that_could_fail_to_load_are_refused_with_the_reason() {
    let cases: &[(MssqlType, &str, &str)] = &[
        (MssqlType::Int, "smallint", "may not fit"),
        (MssqlType::Decimal { precision: 20, scale: 2 }, "numeric(10,2)", "integer digits"),
        (MssqlType::Decimal { precision: 9, scale: 2 }, "integer", "fractional digits"),
        (MssqlType::NVarChar(mssql_pg_migrate_typemap::Length::Max), "varchar(100)", "longer"),
        (MssqlType::VarBinary(mssql_pg_migrate_typemap::Length::Max), "text", "no conversion"),
        (MssqlType::Int, "boolean", "only bit"),
        (MssqlType::Geography, "uuid", "no conversion"),
    ];
    for (source, target, why) in cases {
        let target: PgType = target.parse().unwrap();
        let err = conversion(source, target).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(why) && text.contains(&source.to_string()) && text.contains(&target.to_string()),
            "{source} -> {target}: {text}"
        );
    }
}

#[test]
fn lossy_overrides_are_accepted_and_say_so() {
    let cases: &[(MssqlType, &str, Verdict)] = &[
        (MssqlType::Float, "real", Lossy),
        (MssqlType::Decimal { precision: 10, scale: 4 }, "numeric(12,2)", Lossy),
        (MssqlType::DateTime2 { scale: 7 }, "timestamptz", Lossy),
        (MssqlType::DateTime2 { scale: 3 }, "timestamp(3)", Exact),
        (MssqlType::Geometry, "bytea", Widened),
        (MssqlType::HierarchyId, "bytea", Widened),
        (MssqlType::Xml, "xml", Exact),
        (MssqlType::RowVersion, "bigint", Widened),
        (MssqlType::Bit, "smallint", Widened),
        (MssqlType::Money, "numeric", Widened),
        (MssqlType::Time { scale: 7 }, "text", Widened),
    ];
    for (source, target, verdict) in cases {
        let target: PgType = target.parse().unwrap();
        let f = conversion(source, target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.verdict(), *verdict, "{source} -> {target}: {f}");
    }
}

#[test]
fn target_type_names_parse_in_every_common_spelling() {
    let cases = [
        ("INT", PgType::Integer),
        ("int4", PgType::Integer),
        ("Double   Precision", PgType::DoublePrecision),
        ("character varying(20)", PgType::Varchar(Some(20))),
        ("varchar", PgType::Varchar(None)),
        ("numeric(38, 10)", PgType::Numeric(Some((38, 10)))),
        ("decimal(5)", PgType::Numeric(Some((5, 0)))),
        ("timestamp(3) with time zone", PgType::TimestampTz(Some(3))),
        ("timestamp without time zone", PgType::Timestamp(None)),
        ("timestamptz", PgType::TimestampTz(None)),
        ("char", PgType::Char(1)),
        ("bool", PgType::Boolean),
    ];
    for (text, want) in cases {
        assert_eq!(text.parse::<PgType>().unwrap(), want, "{text}");
        // Rendering then parsing again is the identity.
        assert_eq!(want.to_string().parse::<PgType>().unwrap(), want);
    }
    for bad in [
        "int; drop table x",
        "numeric(2,5)",
        "timestamp(9)",
        "varchar(0)",
        "geometry",
        "time with time zone",
        "text(5)",
        "numeric(1",
        "",
    ] {
        let err = bad.parse::<PgType>().unwrap_err();
        assert!(matches!(err, TypeError::UnsupportedTarget { .. }), "{bad}: {err}");
    }
}

#[test]
fn a_computed_decimal_that_cannot_hold_a_whole_number_becomes_unbounded_numeric() {
    // Babelfish types `salary * 0.1` on decimal(12,2) as decimal(38,38).
    let impossible = MssqlType::Decimal { precision: 38, scale: 38 };
    let mut c = SourceColumn::new("dbo", "t", "bonus", &impossible);
    c.computed = true;
    let m = map_column(&c, &[]).unwrap();
    assert_eq!(m.pg_type, PgType::Numeric(None));
    assert_eq!(m.fidelity.verdict(), Widened);
    assert!(m.fidelity.reason().unwrap().contains("decimal(38,38)"), "{:?}", m.fidelity);

    // A declared decimal(38,38) column keeps its type, and so does a
    // computed column whose derived type can hold whole numbers.
    c.computed = false;
    assert_eq!(map_column(&c, &[]).unwrap().pg_type, PgType::Numeric(Some((38, 38))));
    let derived = MssqlType::Decimal { precision: 15, scale: 3 };
    let mut c = SourceColumn::new("dbo", "t", "bonus", &derived);
    c.computed = true;
    assert_eq!(map_column(&c, &[]).unwrap().pg_type, PgType::Numeric(Some((15, 3))));
}

#[test]
fn declared_types_parse_with_sql_servers_defaults() {
    use mssql_pg_migrate_typemap::Length;
    let t = |name: &str, args: &[u32], max: bool| MssqlType::from_declaration(name, args, max).unwrap();
    assert_eq!(t("nvarchar", &[4], false), MssqlType::NVarChar(Length::Bounded(4)));
    assert_eq!(t("NVARCHAR", &[], true), MssqlType::NVarChar(Length::Max));
    assert_eq!(t("varchar", &[], false), MssqlType::VarChar(Length::Bounded(1)));
    assert_eq!(t("decimal", &[12, 2], false), MssqlType::Decimal { precision: 12, scale: 2 });
    assert_eq!(t("numeric", &[], false), MssqlType::Decimal { precision: 18, scale: 0 });
    assert_eq!(t("datetime2", &[3], false), MssqlType::DateTime2 { scale: 3 });
    assert_eq!(t("time", &[], false), MssqlType::Time { scale: 7 });
    assert_eq!(t("float", &[24], false), MssqlType::Real);
    assert_eq!(t("float", &[], false), MssqlType::Float);
    assert_eq!(t("int", &[], false), MssqlType::Int);
    assert!(MssqlType::from_declaration("decimal", &[40, 2], false).is_err());
    assert!(MssqlType::from_declaration("nvarchar", &[5000], false).is_err());
    assert!(MssqlType::from_declaration("vector", &[3], false).is_err());
}

#[test]
fn the_type_reference_is_generated_from_the_mapping() {
    let mut doc = String::from(
        "# Type mapping reference\n\n\
         Generated by `cargo xtask docs` from the type map itself (the test\n\
         `crates/typemap/tests/mapping_table.rs` fails when this file is stale).\n\
         Each SQL Server declaration, as the catalog describes it, with its default\n\
         PostgreSQL type, the verdict, and why it is not exact. `type_overrides`\n\
         chooses another target.\n\n\
         | SQL Server | PostgreSQL | verdict | why |\n|---|---|---|---|\n",
    );
    for r in TABLE {
        let t = parse(r);
        let m = map_column(&SourceColumn::new("dbo", "t", "c", &t), &[]).unwrap();
        let verdict = format!("{:?}", m.fidelity.verdict()).to_lowercase();
        let reason = m.fidelity.reason().unwrap_or("").replace('|', "\\|");
        doc.push_str(&format!("| {t} | {} | {verdict} | {reason} |\n", m.pg_type));
    }
    doc.push_str(
        "\nFrom a PostgreSQL source every column keeps its type; built-in types\n\
         without a model of their own (json, jsonb, inet, interval, arrays...)\n\
         pass through with PostgreSQL's spelling and bytes.\n",
    );
    check_generated("docs/TYPES.md", &doc);
}
