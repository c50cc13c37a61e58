//! The run state kept in a SQL Server target ([`StateStore`]), and the
//! chunk row a bulk load's transaction writes with its rows.
//!
//! Names are compared in a binary collation: the target database's own
//! may fold case, and two source tables may differ only in case.

use mssql_pg_migrate_dialect::TransferError;
use mssql_pg_migrate_dialect::store::{ChunkRecord, KeptMark, SavedRun, StateStore, StoreFuture};

use crate::error::target_error;
use crate::reader::{MssqlClient, MssqlSource};
use crate::target::{bound_rows as rows, execute, table_exists};

/// T-SQL has no `CREATE … IF NOT EXISTS`, and `CREATE SCHEMA` must begin
/// its batch, hence `EXEC`.
const CREATE_STORE: &str = "\
IF SCHEMA_ID(N'mssql_pg_migrate') IS NULL EXEC(N'CREATE SCHEMA [mssql_pg_migrate]');
IF OBJECT_ID(N'[mssql_pg_migrate].[runs]', N'U') IS NULL
CREATE TABLE [mssql_pg_migrate].[runs] (
    migration nvarchar(128) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY,
    run_id nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    state nvarchar(max) NOT NULL,
    updated_at datetime2(3) NOT NULL
);
IF OBJECT_ID(N'[mssql_pg_migrate].[chunks]', N'U') IS NULL
CREATE TABLE [mssql_pg_migrate].[chunks] (
    run_id nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    table_name nvarchar(300) COLLATE Latin1_General_100_BIN2 NOT NULL,
    partition_id int NOT NULL,
    last_pk nvarchar(max) NULL,
    rows_transferred bigint NOT NULL,
    completed bit NOT NULL,
    PRIMARY KEY (run_id, table_name, partition_id)
);";

const CREATE_MARKS: &str = "\
IF SCHEMA_ID(N'mssql_pg_migrate') IS NULL EXEC(N'CREATE SCHEMA [mssql_pg_migrate]');
IF OBJECT_ID(N'[mssql_pg_migrate].[marks]', N'U') IS NULL
CREATE TABLE [mssql_pg_migrate].[marks] (
    migration nvarchar(128) COLLATE Latin1_General_100_BIN2 NOT NULL,
    table_name nvarchar(300) COLLATE Latin1_General_100_BIN2 NOT NULL,
    change_column nvarchar(128) NOT NULL,
    mark nvarchar(max) NULL,
    updated_at datetime2(3) NOT NULL,
    PRIMARY KEY (migration, table_name)
);";

/// One writer per row at a time (the migration lock), so an UPDATE that
/// found nothing can INSERT without a race; MERGE is not on every server
/// this runs against (Babelfish).
///
/// A NULL is never bound: tiberius sends a `None` as the TDS NULL type,
/// which servers refuse in an RPC ("Data type 0x1F is unknown"). A
/// nullable text goes as text plus a flag saying whether it is there.
const RECORD_CHUNK: &str = "\
DECLARE @last_pk nvarchar(max) = IIF(@P7 = 1, @P4, NULL);
UPDATE [mssql_pg_migrate].[chunks] SET last_pk = @last_pk, rows_transferred = @P5, completed = @P6
 WHERE run_id = @P1 AND table_name = @P2 AND partition_id = @P3;
IF @@ROWCOUNT = 0
INSERT INTO [mssql_pg_migrate].[chunks] (run_id, table_name, partition_id, last_pk, rows_transferred, completed)
VALUES (@P1, @P2, @P3, @last_pk, @P5, @P6);";

const SAVE_RUN: &str = "\
UPDATE [mssql_pg_migrate].[runs] SET run_id = @P2, state = @P3, updated_at = SYSUTCDATETIME() WHERE migration = @P1;
IF @@ROWCOUNT = 0
INSERT INTO [mssql_pg_migrate].[runs] (migration, run_id, state, updated_at) VALUES (@P1, @P2, @P3, SYSUTCDATETIME());";

/// `@P5` says whether the mark `@P4` is there (see [`RECORD_CHUNK`]).
const KEEP_MARK: &str = "\
DECLARE @mark nvarchar(max) = IIF(@P5 = 1, @P4, NULL);
UPDATE [mssql_pg_migrate].[marks] SET change_column = @P3, mark = @mark, updated_at = SYSUTCDATETIME()
 WHERE migration = @P1 AND table_name = @P2;
IF @@ROWCOUNT = 0
INSERT INTO [mssql_pg_migrate].[marks] (migration, table_name, change_column, mark, updated_at)
VALUES (@P1, @P2, @P3, @mark, SYSUTCDATETIME());";

/// Runs a bound statement batch and reads every result.
async fn execute_bound(
    client: &mut MssqlClient,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
    context: &str,
) -> Result<(), TransferError> {
    client.execute(sql, params).await.map_err(|e| target_error(context, &e))?;
    Ok(())
}

/// Column `index` of `row`, named in the error when the store holds
/// something else (a table edited by hand).
fn cell<'a, R: tiberius::FromSql<'a>>(row: &'a tiberius::Row, index: usize, context: &str) -> Result<R, TransferError> {
    row.try_get::<R, _>(index).map_err(|e| target_error(context, &e))?.ok_or_else(|| {
        TransferError::State(format!("{context}: column {index} of the state store is NULL where a value belongs"))
    })
}

/// Writes a chunk's progress row in the chunk's transaction, on `session`.
///
/// # Errors
/// Server errors, naming the chunk's table.
pub async fn record_chunk(session: &mut MssqlClient, run_id: &str, chunk: &ChunkRecord) -> Result<(), TransferError> {
    let context = format!("recording the progress of {}", chunk.table);
    let params: [&dyn tiberius::ToSql; 7] = [
        &run_id,
        &chunk.table.as_str(),
        &chunk.partition,
        &chunk.last_pk.as_deref().unwrap_or_default(),
        &chunk.rows_transferred,
        &chunk.completed,
        &chunk.last_pk.is_some(),
    ];
    execute_bound(session, RECORD_CHUNK, &params, &context).await
}

/// The state store of a SQL Server target, on the target's pool.
#[derive(Debug, Clone)]
pub struct MssqlStateStore {
    server: MssqlSource,
}

impl MssqlStateStore {
    pub fn new(server: MssqlSource) -> MssqlStateStore {
        MssqlStateStore { server }
    }
}

impl StateStore for MssqlStateStore {
    fn address(&self) -> String {
        self.server.endpoint().address()
    }

    fn load<'a>(&'a self, migration: &'a str) -> StoreFuture<'a, Option<SavedRun>> {
        Box::pin(async move {
            let mut session = self.server.session().await?;
            let context = "reading the saved run state";
            if !table_exists(&mut session, "[mssql_pg_migrate].[runs]", context).await? {
                return Ok(None);
            }
            let found = rows(
                &mut session,
                "SELECT state, run_id FROM [mssql_pg_migrate].[runs] WHERE migration = @P1",
                &[&migration],
                context,
            )
            .await?;
            let Some(run) = found.first() else { return Ok(None) };
            let document = cell::<&str>(run, 0, context)?.to_owned();
            let run_id = cell::<&str>(run, 1, context)?.to_owned();
            let chunks = rows(
                &mut session,
                "SELECT table_name, partition_id, last_pk, rows_transferred, completed \
                 FROM [mssql_pg_migrate].[chunks] WHERE run_id = @P1",
                &[&run_id.as_str()],
                context,
            )
            .await?
            .iter()
            .map(|row| {
                Ok(ChunkRecord {
                    table: cell::<&str>(row, 0, context)?.to_owned(),
                    partition: cell(row, 1, context)?,
                    last_pk: row.try_get::<&str, _>(2).map_err(|e| target_error(context, &e))?.map(str::to_owned),
                    rows_transferred: cell(row, 3, context)?,
                    completed: cell(row, 4, context)?,
                })
            })
            .collect::<Result<Vec<_>, TransferError>>()?;
            Ok(Some(SavedRun { document, chunks }))
        })
    }

    fn open<'a>(&'a self, migration: &'a str, run_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut session = self.server.session().await?;
            execute(&mut session, CREATE_STORE, "creating the state schema").await?;
            execute_bound(
                &mut session,
                "DELETE FROM [mssql_pg_migrate].[chunks] WHERE run_id IN \
                 (SELECT run_id FROM [mssql_pg_migrate].[runs] WHERE migration = @P1 AND run_id <> @P2)",
                &[&migration, &run_id],
                "clearing the progress of an earlier run",
            )
            .await
        })
    }

    fn forget_chunks<'a>(&'a self, run_id: &'a str, table: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut session = self.server.session().await?;
            execute_bound(
                &mut session,
                "DELETE FROM [mssql_pg_migrate].[chunks] WHERE run_id = @P1 AND table_name = @P2",
                &[&run_id, &table],
                &format!("clearing the progress of {table}"),
            )
            .await
        })
    }

    fn save<'a>(&'a self, migration: &'a str, run_id: &'a str, document: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut session = self.server.session().await?;
            execute_bound(&mut session, SAVE_RUN, &[&migration, &run_id, &document], "saving the run state").await
        })
    }

    fn load_marks<'a>(&'a self, migration: &'a str) -> StoreFuture<'a, Vec<KeptMark>> {
        Box::pin(async move {
            let mut session = self.server.session().await?;
            let context = "reading the incremental marks";
            if !table_exists(&mut session, "[mssql_pg_migrate].[marks]", context).await? {
                return Ok(Vec::new());
            }
            rows(
                &mut session,
                "SELECT table_name, change_column, mark FROM [mssql_pg_migrate].[marks] WHERE migration = @P1",
                &[&migration],
                context,
            )
            .await?
            .iter()
            .map(|row| {
                Ok(KeptMark {
                    table: cell::<&str>(row, 0, context)?.to_owned(),
                    change_column: cell::<&str>(row, 1, context)?.to_owned(),
                    mark: row.try_get::<&str, _>(2).map_err(|e| target_error(context, &e))?.map(str::to_owned),
                })
            })
            .collect()
        })
    }

    fn keep_mark<'a>(&'a self, migration: &'a str, mark: &'a KeptMark) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut session = self.server.session().await?;
            let context = "keeping the incremental mark";
            execute(&mut session, CREATE_MARKS, context).await?;
            let params: [&dyn tiberius::ToSql; 5] = [
                &migration,
                &mark.table.as_str(),
                &mark.change_column.as_str(),
                &mark.mark.as_deref().unwrap_or_default(),
                &mark.mark.is_some(),
            ];
            execute_bound(&mut session, KEEP_MARK, &params, context).await
        })
    }
}
