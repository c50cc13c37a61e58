//! The encoder against a real server: every value's bytes equal what
//! PostgreSQL itself sends for binary COPY, and a multi-row stream loads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use futures_util::{SinkExt, StreamExt};
use mssql_pg_migrate_postgres::copy::{
    CellEncoder as _, CopyEncoder, UNIX_TO_PG_EPOCH_DAYS, UNIX_TO_PG_EPOCH_MICROS, days_from_civil,
};
use mssql_pg_migrate_testkit::PgCluster;

type Encode = Box<dyn Fn(&mut CopyEncoder)>;
/// id, amount, note, raw, at: one loaded row as the server prints it.
type LoadedRow = (i64, Option<String>, Option<String>, Vec<u8>, String);

fn date(y: i32, m: u32, d: u32) -> i32 {
    days_from_civil(y, m, d) - UNIX_TO_PG_EPOCH_DAYS
}

fn micros(y: i32, m: u32, d: u32, h: i64, min: i64, s: i64, us: i64) -> i64 {
    i64::from(days_from_civil(y, m, d)) * 86_400_000_000 + ((h * 60 + min) * 60 + s) * 1_000_000 + us
        - UNIX_TO_PG_EPOCH_MICROS
}

fn cases() -> Vec<(&'static str, Encode)> {
    let max38 = 10i128.pow(38) - 1;
    vec![
        ("NULL::int4", Box::new(|e| e.null())),
        ("true", Box::new(|e| e.bool(true))),
        ("(-32768)::int2", Box::new(|e| e.int2(i16::MIN))),
        ("2147483647::int4", Box::new(|e| e.int4(i32::MAX))),
        ("(-9223372036854775808)::int8", Box::new(|e| e.int8(i64::MIN))),
        ("'-0'::float8", Box::new(|e| e.float8(-0.0))),
        ("'1.7976931348623157e308'::float8", Box::new(|e| e.float8(f64::MAX))),
        ("'5e-324'::float8", Box::new(|e| e.float8(5e-324))),
        ("'-3.4028235e38'::float4", Box::new(|e| e.float4(f32::MIN))),
        ("'12.50'::numeric(10,2)", Box::new(|e| e.numeric(1250, 2).unwrap())),
        ("'0.0000'::numeric(10,4)", Box::new(|e| e.numeric(0, 4).unwrap())),
        ("'99999999999999999999999999999999999999'::numeric(38,0)", Box::new(move |e| e.numeric(max38, 0).unwrap())),
        ("'-99999999999999999999999999999999999999'::numeric(38,0)", Box::new(move |e| e.numeric(-max38, 0).unwrap())),
        (
            "'0.99999999999999999999999999999999999999'::numeric(38,38)",
            Box::new(move |e| e.numeric(max38, 38).unwrap()),
        ),
        ("'-0.00000000000000000000000000000000000001'::numeric(38,38)", Box::new(|e| e.numeric(-1, 38).unwrap())),
        ("'123456789.123456789'::numeric(38,9)", Box::new(|e| e.numeric(123_456_789_123_456_789, 9).unwrap())),
        ("'100000000'::numeric(18,0)", Box::new(|e| e.numeric(100_000_000, 0).unwrap())),
        // money's extremes as numeric(19,4): SQL Server sends them as i64 ten-thousandths.
        ("'-922337203685477.5808'::numeric(19,4)", Box::new(|e| e.numeric(i128::from(i64::MIN), 4).unwrap())),
        ("'922337203685477.5807'::numeric(19,4)", Box::new(|e| e.numeric(i128::from(i64::MAX), 4).unwrap())),
        ("'-214748.3648'::numeric(10,4)", Box::new(|e| e.numeric(i128::from(i32::MIN), 4).unwrap())),
        ("''::text", Box::new(|e| e.text("").unwrap())),
        (
            "E'tab\\there\\nnew line \\\\ back \"double\" ''single'' 😀 𝄞 Ünï'::text",
            Box::new(|e| e.text("tab\there\nnew line \\ back \"double\" 'single' 😀 𝄞 Ünï").unwrap()),
        ),
        (
            "'utf16 😀 Ünï 中文'::varchar(40)",
            Box::new(|e| e.text_utf16(&"utf16 😀 Ünï 中文".encode_utf16().collect::<Vec<_>>()).unwrap()),
        ),
        ("'\\x00ff10'::bytea", Box::new(|e| e.bytea(&[0, 0xff, 0x10]).unwrap())),
        ("''::bytea", Box::new(|e| e.bytea(&[]).unwrap())),
        (
            "'6f9619ff-8b86-d011-b42d-00c04fc964ff'::uuid",
            Box::new(|e| {
                e.uuid([0x6f, 0x96, 0x19, 0xff, 0x8b, 0x86, 0xd0, 0x11, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff])
            }),
        ),
        ("'0001-01-01'::date", Box::new(|e| e.date(date(1, 1, 1)))),
        ("'9999-12-31'::date", Box::new(|e| e.date(date(9999, 12, 31)))),
        ("'23:59:59.999999'::time", Box::new(|e| e.time(86_399_999_999))),
        ("'0001-01-01 00:00:00'::timestamp", Box::new(|e| e.timestamp(micros(1, 1, 1, 0, 0, 0, 0)))),
        (
            "'9999-12-31 23:59:59.999999'::timestamp",
            Box::new(|e| e.timestamp(micros(9999, 12, 31, 23, 59, 59, 999_999))),
        ),
        (
            "'2024-02-29 12:00:00.5+05:30'::timestamptz",
            Box::new(|e| e.timestamp(micros(2024, 2, 29, 6, 30, 0, 500_000))),
        ),
    ]
}

#[tokio::test]
async fn every_encoded_value_equals_the_servers_own_binary_copy() {
    let cluster = PgCluster::start().unwrap();
    let client = cluster.connect("postgres").await.unwrap();
    let mut mismatches = Vec::new();
    for (sql, encode) in cases() {
        let stream = client.copy_out(&format!("COPY (SELECT {sql}) TO STDOUT (FORMAT binary)")).await.unwrap();
        let chunks: Vec<bytes::Bytes> = stream.map(|c| c.unwrap()).collect().await;
        let server: Vec<u8> = chunks.concat();

        let mut ours = CopyEncoder::new();
        ours.begin_row(1);
        encode(&mut ours);
        ours.finish();
        let ours = ours.take();
        if ours != server {
            mismatches.push(format!("{sql}\n  server: {server:02x?}\n  ours:   {ours:02x?}"));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[tokio::test]
async fn a_multi_row_stream_with_nulls_loads_through_copy_from() {
    let cluster = PgCluster::start().unwrap();
    let client = cluster.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE \"Mixed Case\" (id int8, amount numeric(19,4), note text, raw bytea, at timestamp)",
        )
        .await
        .unwrap();
    let mut enc = CopyEncoder::new();
    for id in 0..1000i64 {
        enc.begin_row(5);
        enc.int8(id);
        if id % 3 == 0 {
            enc.null()
        } else {
            enc.numeric(i128::from(id) * -12_345, 4).unwrap()
        }
        if id % 5 == 0 {
            enc.null()
        } else {
            enc.text(&format!("row {id} 😀")).unwrap()
        }
        enc.bytea(&id.to_be_bytes()).unwrap();
        enc.timestamp(micros(2020, 1, 1, 0, 0, 0, id));
    }
    enc.finish();
    let sink = client.copy_in("COPY \"Mixed Case\" FROM STDIN (FORMAT binary)").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(enc.take())).await.unwrap();
    let loaded = sink.finish().await.unwrap();
    assert_eq!(loaded, 1000);

    let rows = client
        .query(
            "SELECT id, amount::text, note, raw, at::text FROM \"Mixed Case\" WHERE id IN (0, 1, 7, 999) ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<LoadedRow> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    assert_eq!(
        got,
        [
            (0, None, None, 0i64.to_be_bytes().to_vec(), "2020-01-01 00:00:00".to_owned()),
            (
                1,
                Some("-1.2345".to_owned()),
                Some("row 1 😀".to_owned()),
                1i64.to_be_bytes().to_vec(),
                "2020-01-01 00:00:00.000001".to_owned()
            ),
            (
                7,
                Some("-8.6415".to_owned()),
                Some("row 7 😀".to_owned()),
                7i64.to_be_bytes().to_vec(),
                "2020-01-01 00:00:00.000007".to_owned()
            ),
            (
                999,
                None,
                Some("row 999 😀".to_owned()),
                999i64.to_be_bytes().to_vec(),
                "2020-01-01 00:00:00.000999".to_owned()
            ),
        ]
    );
}
