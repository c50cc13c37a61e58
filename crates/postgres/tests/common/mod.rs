//! What the reader tests share.

use bytes::Bytes;
use mssql_pg_migrate_postgres::sink::PieceSink;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A PostgreSQL target's sink whose pieces are gathered into one stream:
/// the bytes a writer would get.
pub fn gathering_sink() -> (PieceSink, JoinHandle<Vec<u8>>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let gathered = tokio::spawn(async move {
        let mut stream = Vec::new();
        while let Some(piece) = rx.recv().await {
            stream.extend_from_slice(&piece);
        }
        stream
    });
    (PieceSink::new(tx, 64 << 10), gathered)
}
