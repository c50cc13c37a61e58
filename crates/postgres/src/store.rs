//! The run state kept in a PostgreSQL target ([`StateStore`]), and the
//! chunk row a COPY's transaction writes with its rows.

use mssql_pg_migrate_dialect::store::{ChunkRecord, KeptMark, SavedRun, StateStore, StoreFuture};
use mssql_pg_migrate_dialect::{Side, TransferError};

use crate::error::pg_error;
use crate::pool::PgPool;

const CREATE_STORE: &str = "CREATE SCHEMA IF NOT EXISTS mssql_pg_migrate;
CREATE TABLE IF NOT EXISTS mssql_pg_migrate.runs (
    migration text PRIMARY KEY,
    run_id text NOT NULL,
    state jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS mssql_pg_migrate.chunks (
    run_id text NOT NULL,
    table_name text NOT NULL,
    partition_id integer NOT NULL,
    last_pk text,
    rows_transferred bigint NOT NULL,
    completed boolean NOT NULL,
    PRIMARY KEY (run_id, table_name, partition_id)
);";

const CREATE_MARKS: &str = "CREATE SCHEMA IF NOT EXISTS mssql_pg_migrate;
CREATE TABLE IF NOT EXISTS mssql_pg_migrate.marks (
    migration text NOT NULL,
    table_name text NOT NULL,
    change_column text NOT NULL,
    mark text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, table_name)
);";

const RECORD_CHUNK: &str = "INSERT INTO mssql_pg_migrate.chunks \
     (run_id, table_name, partition_id, last_pk, rows_transferred, completed) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, table_name, partition_id) DO UPDATE \
     SET last_pk = EXCLUDED.last_pk, rows_transferred = EXCLUDED.rows_transferred, completed = EXCLUDED.completed";

fn target_error(context: &str, e: &tokio_postgres::Error) -> TransferError {
    pg_error(Side::Target, context, e)
}

/// Whether the target has the relation `qualified` (a quoted `schema.name`).
///
/// # Errors
/// Server errors, with `context`.
pub async fn relation_exists(
    client: &tokio_postgres::Client,
    qualified: &str,
    context: &str,
) -> Result<bool, TransferError> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| target_error(context, &e))
}

/// Writes a chunk's progress row in the chunk's transaction `tx`.
///
/// # Errors
/// Server errors, naming the chunk's table.
pub async fn record_chunk(
    tx: &tokio_postgres::Transaction<'_>,
    run_id: &str,
    chunk: &ChunkRecord,
) -> Result<(), TransferError> {
    tx.execute(
        RECORD_CHUNK,
        &[&run_id, &chunk.table, &chunk.partition, &chunk.last_pk, &chunk.rows_transferred, &chunk.completed],
    )
    .await
    .map_err(|e| target_error(&format!("recording the progress of {}", chunk.table), &e))?;
    Ok(())
}

/// The state store of a PostgreSQL target, on the target's control pool.
#[derive(Debug, Clone)]
pub struct PgStateStore {
    pool: PgPool,
}

impl PgStateStore {
    pub fn new(pool: PgPool) -> PgStateStore {
        PgStateStore { pool }
    }
}

impl StateStore for PgStateStore {
    fn address(&self) -> String {
        self.pool.address().to_owned()
    }

    fn load<'a>(&'a self, migration: &'a str) -> StoreFuture<'a, Option<SavedRun>> {
        Box::pin(async move {
            let client = self.pool.get(Side::Target).await?;
            let context = "reading the saved run state";
            if !relation_exists(&client, "mssql_pg_migrate.runs", context).await? {
                return Ok(None);
            }
            let Some(row) = client
                .query_opt("SELECT state::text, run_id FROM mssql_pg_migrate.runs WHERE migration = $1", &[&migration])
                .await
                .map_err(|e| target_error(context, &e))?
            else {
                return Ok(None);
            };
            let document: String = row.try_get(0).map_err(|e| target_error(context, &e))?;
            let run_id: String = row.try_get(1).map_err(|e| target_error(context, &e))?;
            let rows = client
                .query(
                    "SELECT table_name, partition_id, last_pk, rows_transferred, completed \
                     FROM mssql_pg_migrate.chunks WHERE run_id = $1",
                    &[&run_id],
                )
                .await
                .map_err(|e| target_error(context, &e))?;
            let mut chunks = Vec::with_capacity(rows.len());
            for row in rows {
                chunks.push(ChunkRecord {
                    table: row.try_get(0).map_err(|e| target_error(context, &e))?,
                    partition: row.try_get(1).map_err(|e| target_error(context, &e))?,
                    last_pk: row.try_get(2).map_err(|e| target_error(context, &e))?,
                    rows_transferred: row.try_get(3).map_err(|e| target_error(context, &e))?,
                    completed: row.try_get(4).map_err(|e| target_error(context, &e))?,
                });
            }
            Ok(Some(SavedRun { document, chunks }))
        })
    }

    fn open<'a>(&'a self, migration: &'a str, run_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.pool.get(Side::Target).await?;
            client.batch_execute(CREATE_STORE).await.map_err(|e| target_error("creating the state schema", &e))?;
            client
                .execute(
                    "DELETE FROM mssql_pg_migrate.chunks c USING mssql_pg_migrate.runs r \
                     WHERE r.migration = $1 AND c.run_id = r.run_id AND r.run_id <> $2",
                    &[&migration, &run_id],
                )
                .await
                .map_err(|e| target_error("clearing the progress of an earlier run", &e))?;
            Ok(())
        })
    }

    fn forget_chunks<'a>(&'a self, run_id: &'a str, table: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.pool.get(Side::Target).await?;
            client
                .execute(
                    "DELETE FROM mssql_pg_migrate.chunks WHERE run_id = $1 AND table_name = $2",
                    &[&run_id, &table],
                )
                .await
                .map_err(|e| target_error(&format!("clearing the progress of {table}"), &e))?;
            Ok(())
        })
    }

    fn save<'a>(&'a self, migration: &'a str, run_id: &'a str, document: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.pool.get(Side::Target).await?;
            client
                .execute(
                    "INSERT INTO mssql_pg_migrate.runs (migration, run_id, state, updated_at) \
                     VALUES ($1, $2, $3::text::jsonb, now()) ON CONFLICT (migration) DO UPDATE \
                     SET run_id = EXCLUDED.run_id, state = EXCLUDED.state, updated_at = now()",
                    &[&migration, &run_id, &document],
                )
                .await
                .map_err(|e| target_error("saving the run state", &e))?;
            Ok(())
        })
    }

    fn load_marks<'a>(&'a self, migration: &'a str) -> StoreFuture<'a, Vec<KeptMark>> {
        Box::pin(async move {
            let client = self.pool.get(Side::Target).await?;
            let context = "reading the incremental marks";
            if !relation_exists(&client, "mssql_pg_migrate.marks", context).await? {
                return Ok(Vec::new());
            }
            let rows = client
                .query(
                    "SELECT table_name, change_column, mark FROM mssql_pg_migrate.marks WHERE migration = $1",
                    &[&migration],
                )
                .await
                .map_err(|e| target_error(context, &e))?;
            let mut marks = Vec::with_capacity(rows.len());
            for row in rows {
                marks.push(KeptMark {
                    table: row.try_get(0).map_err(|e| target_error(context, &e))?,
                    change_column: row.try_get(1).map_err(|e| target_error(context, &e))?,
                    mark: row.try_get(2).map_err(|e| target_error(context, &e))?,
                });
            }
            Ok(marks)
        })
    }

    fn keep_mark<'a>(&'a self, migration: &'a str, mark: &'a KeptMark) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.pool.get(Side::Target).await?;
            let context = "keeping the incremental mark";
            client.batch_execute(CREATE_MARKS).await.map_err(|e| target_error(context, &e))?;
            client
                .execute(
                    "INSERT INTO mssql_pg_migrate.marks (migration, table_name, change_column, mark) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (migration, table_name) DO UPDATE \
                     SET change_column = EXCLUDED.change_column, mark = EXCLUDED.mark, updated_at = now()",
                    &[&migration, &mark.table, &mark.change_column, &mark.mark],
                )
                .await
                .map_err(|e| target_error(context, &e))?;
            Ok(())
        })
    }
}
