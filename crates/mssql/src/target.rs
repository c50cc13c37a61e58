//! What a SQL Server target runs besides the bulk load ([`crate::writer`]):
//! statements on a session, the migration's application lock, the foreign
//! keys to drop before a table is replaced, and finalization statements
//! that accept finding their object built already.

use mssql_pg_migrate_dialect::TransferError;
use mssql_pg_migrate_dialect::store::MIGRATION_LOCK_GRACE;
use mssql_pg_migrate_schema::ident::{literal_mssql, qualified_mssql, quote_mssql};

use tiberius::Client;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::Compat;

use crate::error::target_error;
use crate::reader::MssqlClient;

/// Runs a batch of statements and reads every result.
///
/// # Errors
/// [`TransferError::Server`] with `context`.
pub async fn execute<S>(client: &mut Client<Compat<S>>, sql: &str, context: &str) -> Result<(), TransferError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    results(client, sql, context).await.map(|_| ())
}

/// Runs a batch of statements and answers every result's rows.
async fn results<S>(
    client: &mut Client<Compat<S>>,
    sql: &str,
    context: &str,
) -> Result<Vec<Vec<tiberius::Row>>, TransferError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    tracing::debug!(sql, "target");
    client
        .simple_query(sql)
        .await
        .map_err(|e| target_error(context, &e))?
        .into_results()
        .await
        .map_err(|e| target_error(context, &e))
}

/// Runs a finalization statement once; an object that already exists (built
/// by the interrupted run this one resumes) counts as done.
///
/// # Errors
/// [`TransferError::Server`] with `what`.
pub async fn execute_once(client: &mut MssqlClient, sql: &str, what: &str) -> Result<(), TransferError> {
    tracing::debug!(sql, "target");
    let result = match client.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        // 1779: the table has a primary key already; 1913: the index
        // exists; 2714: an object (the constraint) of that name exists.
        Err(tiberius::error::Error::Server(token)) if matches!(token.code(), 1779 | 1913 | 2714) => {
            tracing::info!(step = %what, "already in place");
            Ok(())
        }
        Err(e) => Err(target_error(what, &e)),
    }
}

/// The first row of a bound query, if any.
async fn first_row(
    client: &mut MssqlClient,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
    context: &str,
) -> Result<Option<tiberius::Row>, TransferError> {
    Ok(bound_rows(client, sql, params, context).await?.into_iter().next())
}

/// Every row of the first result of a bound query.
pub(crate) async fn bound_rows(
    client: &mut MssqlClient,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
    context: &str,
) -> Result<Vec<tiberius::Row>, TransferError> {
    client
        .query(sql, params)
        .await
        .map_err(|e| target_error(context, &e))?
        .into_first_result()
        .await
        .map_err(|e| target_error(context, &e))
}

/// Whether the table `qualified` (a quoted `[schema].[name]`) exists.
///
/// # Errors
/// [`TransferError::Server`] with `context`.
pub async fn table_exists(client: &mut MssqlClient, qualified: &str, context: &str) -> Result<bool, TransferError> {
    let found = bound_rows(client, "SELECT OBJECT_ID(@P1, N'U')", &[&qualified], context).await?;
    Ok(found.first().and_then(|r| r.get::<i32, _>(0)).is_some())
}

/// Runs a batch whose last result is one `bigint` count, and answers it.
///
/// # Errors
/// [`TransferError::Server`] with `context`, also when no count comes back.
pub async fn single_count(client: &mut MssqlClient, sql: &str, context: &str) -> Result<u64, TransferError> {
    results(client, sql, context)
        .await?
        .iter()
        .flatten()
        .last()
        .and_then(|row| row.get::<i64, _>(0))
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| TransferError::State(format!("{context}: the server answered no count")))
}

/// `IF … CREATE SCHEMA`: T-SQL has no `IF NOT EXISTS` for schemas.
pub fn create_schema(schema: &str) -> String {
    format!(
        "IF SCHEMA_ID({}) IS NULL EXEC({})",
        literal_mssql(schema),
        literal_mssql(&format!("CREATE SCHEMA {}", quote_mssql(schema)))
    )
}

/// Takes the exclusive application lock `resource` for the life of
/// `session` (`sp_getapplock` owned by the session), waiting for it up to
/// [`MIGRATION_LOCK_GRACE`]. Returns whether it was granted.
///
/// # Errors
/// [`TransferError::Server`].
pub async fn take_app_lock(session: &mut MssqlClient, resource: &str) -> Result<bool, TransferError> {
    let context = "taking the migration lock";
    // sp_getapplock returns 0 or 1 when granted, below 0 when not.
    let sql = "DECLARE @granted int; \
               EXEC @granted = sp_getapplock @Resource = @P1, @LockMode = 'Exclusive', \
               @LockOwner = 'Session', @LockTimeout = @P2; SELECT @granted";
    let wait_ms = i32::try_from(MIGRATION_LOCK_GRACE.as_millis()).unwrap_or(i32::MAX);
    let row = first_row(session, sql, &[&resource, &wait_ms], context).await?;
    Ok(row.and_then(|r| r.get::<i32, _>(0)).is_some_and(|granted| granted >= 0))
}

/// The foreign keys that reference the table `qualified` (a quoted
/// `[schema].[name]`) from any table, as `ALTER TABLE … DROP CONSTRAINT`s:
/// they stop the table being dropped or emptied.
///
/// # Errors
/// [`TransferError::Server`].
pub async fn drop_referencing_keys(client: &mut MssqlClient, qualified: &str) -> Result<Vec<String>, TransferError> {
    let context = format!("reading the foreign keys that reference {qualified}");
    let sql = "SELECT fk.name, OBJECT_SCHEMA_NAME(fk.parent_object_id), OBJECT_NAME(fk.parent_object_id) \
               FROM sys.foreign_keys fk WHERE fk.referenced_object_id = OBJECT_ID(@P1)";
    let rows = bound_rows(client, sql, &[&qualified], &context).await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let (name, schema, owner) = (r.get::<&str, _>(0)?, r.get::<&str, _>(1)?, r.get::<&str, _>(2)?);
            Some(format!("ALTER TABLE {} DROP CONSTRAINT {}", qualified_mssql(schema, owner), quote_mssql(name)))
        })
        .collect())
}

/// What the login may do where a copy goes: create tables in the database,
/// and alter `schema` (`None` when the schema does not exist yet, which
/// then needs `CREATE SCHEMA`), with the database's and the login's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPermissions {
    pub create_table: bool,
    pub alter_schema: Option<bool>,
    pub create_schema: bool,
    pub database: String,
    pub login: String,
}

/// Asks the server what the login may do for a copy into `schema`.
///
/// # Errors
/// [`TransferError::Server`].
pub async fn copy_permissions(client: &mut MssqlClient, schema: &str) -> Result<CopyPermissions, TransferError> {
    let context = "checking the target's permissions";
    let sql = "SELECT CAST(HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE TABLE') AS int), \
               CAST(CASE WHEN SCHEMA_ID(@P1) IS NULL THEN NULL \
                    ELSE HAS_PERMS_BY_NAME(QUOTENAME(@P1), 'SCHEMA', 'ALTER') END AS int), \
               CAST(HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE SCHEMA') AS int), \
               CAST(DB_NAME() AS nvarchar(128)), CAST(SUSER_SNAME() AS nvarchar(128))";
    let row = first_row(client, sql, &[&schema], context)
        .await?
        .ok_or_else(|| TransferError::Config(format!("{context}: the server returned no row")))?;
    let flag = |i: usize| row.get::<i32, _>(i).map(|v| v == 1);
    let text = |i: usize| row.get::<&str, _>(i).unwrap_or_default().to_owned();
    Ok(CopyPermissions {
        create_table: flag(0).unwrap_or(false),
        alter_schema: flag(1),
        create_schema: flag(2).unwrap_or(false),
        database: text(3),
        login: text(4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_is_created_only_when_missing_with_its_name_quoted_twice_over() {
        assert_eq!(create_schema("o'k]"), "IF SCHEMA_ID(N'o''k]') IS NULL EXEC(N'CREATE SCHEMA [o''k]]]')");
    }
}
