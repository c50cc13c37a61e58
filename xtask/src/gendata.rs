//! `cargo xtask gen-data`: loads the [`crate::sodata`] data set into
//! PostgreSQL over binary COPY (keys added after the data, then VACUUM ANALYZE),
//! and optionally writes the same content as a T-SQL script.

use std::time::Instant;

use bytes::Bytes;
use futures_util::SinkExt as _;
use mssql_pg_migrate_transfer::copy::{CellEncoder as _, CopyEncoder};
use tokio_postgres::Client;

use crate::sodata::{self, Sizes, TABLES, Value};

/// The server's own message when there is one ("db error" says nothing).
pub fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Bytes of COPY data per message to the server.
const PIECE: usize = 1 << 20;

/// Creates schema `schema` with the nine tables and fills them at `scale`.
/// Returns the rows loaded.
pub async fn load(client: &Client, schema: &str, scale: f64) -> Result<u64, String> {
    let (create, keys) = sodata::pg_tables(schema);
    let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE;\n", schema.replace('"', "\"\""));
    client
        .batch_execute(&format!("{drop}{create}"))
        .await
        .map_err(|e| format!("creating the tables: {}", pg_error(&e)))?;
    let sizes = Sizes::at(scale);
    let mut total = 0;
    for (index, table) in TABLES.iter().enumerate() {
        let started = Instant::now();
        let rows = table.rows(scale);
        let sql = format!("COPY \"{schema}\".\"{}\" FROM STDIN (FORMAT binary)", table.name);
        let sink = client.copy_in::<_, Bytes>(&sql).await.map_err(|e| format!("{}: {}", table.name, pg_error(&e)))?;
        futures_util::pin_mut!(sink);
        let mut encoder = CopyEncoder::with_capacity(PIECE + PIECE / 4);
        let mut values = Vec::new();
        let fields = u16::try_from(table.columns.len()).map_err(|_| "too many columns".to_owned())?;
        for id in 1..=rows {
            sodata::row(index, id, sizes, &mut values);
            encoder.begin_row(fields);
            for v in &values {
                match v {
                    Value::Null => encoder.null(),
                    Value::Int(n) => encoder.int4(*n),
                    Value::Text(s) => encoder.text(s).map_err(|e| format!("{}: {e}", table.name))?,
                    Value::Timestamp(secs) => encoder.timestamp(secs * 1_000_000),
                }
            }
            if encoder.len() >= PIECE {
                sink.send(Bytes::from(encoder.take()))
                    .await
                    .map_err(|e| format!("{}: {}", table.name, pg_error(&e)))?;
            }
        }
        encoder.finish();
        sink.send(Bytes::from(encoder.into_bytes())).await.map_err(|e| format!("{}: {}", table.name, pg_error(&e)))?;
        let copied = sink.as_mut().finish().await.map_err(|e| format!("{}: {}", table.name, pg_error(&e)))?;
        total += copied;
        eprintln!("  {:<10} {:>10} rows in {:.1} s", table.name, copied, started.elapsed().as_secs_f64());
    }
    client.batch_execute(&keys).await.map_err(|e| format!("adding the primary keys: {}", pg_error(&e)))?;
    // VACUUM sets hint bits and the visibility map now, so the first read of
    // the data (the first benchmark run) does not pay for it.
    client.batch_execute("VACUUM ANALYZE").await.map_err(|e| format!("VACUUM ANALYZE: {}", pg_error(&e)))?;
    Ok(total)
}
