//! The transfer engine of mssql-pg-migrate.
//!
//! It will plan chunks by key range, read them in parallel with keyset
//! paging, encode PostgreSQL binary COPY straight into buffers, and stream
//! them through parallel writers within a memory budget. The pure parts
//! (chunk planning, COPY encoding) are kept free of I/O so they are tested
//! without servers. Until the engine lands this crate exports nothing, and
//! the CLI offers no `run` command rather than one that does not work.
