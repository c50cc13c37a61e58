//! Auto-tuning: the concrete concurrency, chunk and buffer sizes for a run,
//! from the `migration` section (explicit values win) and the machine.

use mssql_pg_migrate_config::{MigrationConfig, TargetMode};
use serde::Serialize;

/// The settings a run actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tuning {
    /// Tables in flight at once.
    pub workers: usize,
    /// Reader tasks (partitions read at once, across tables).
    pub parallel_readers: usize,
    /// COPY streams open at once.
    pub write_ahead_writers: usize,
    /// Rows per chunk: one page read, one target transaction.
    pub chunk_size: u64,
    /// The least storage a chunk covers where the source reads storage
    /// ranges ([`MIN_STORAGE_CHUNK_BYTES`] unless `chunk_size` is set).
    pub min_chunk_bytes: u64,
    /// Pieces buffered between one reader and its writer.
    pub read_ahead_buffers: usize,
    /// Bytes per piece handed from reader to writer.
    pub piece_bytes: usize,
    pub max_source_connections: usize,
    pub max_target_connections: usize,
    /// The memory budget for buffered rows, in bytes.
    pub memory_budget_bytes: u64,
    /// Threads of the async runtime that runs the copy: the cores, or
    /// fewer when a server shares them (see [`Machine::local_servers`]).
    /// The CLI builds its runtime so; an embedder builds its own.
    pub runtime_threads: usize,
}

/// Facts about the machine the tuner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub cores: usize,
    pub memory_bytes: u64,
    /// How many of the run's two servers are on this machine, competing
    /// with the tool for its cores (judged by their host: a loopback
    /// address or `localhost`, or a Unix socket's folder).
    pub local_servers: usize,
}

impl Machine {
    /// Reads the core count and total memory (`/proc/meminfo`; 4 GiB when unknown).
    pub fn detect() -> Machine {
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).map(|kb| kb * 1024))
            })
            .unwrap_or(4 << 30);
        Machine { cores, memory_bytes, local_servers: 0 }
    }

    /// [`Machine::detect`], counting which of `config`'s servers run here.
    pub fn for_run(config: &mssql_pg_migrate_config::Config) -> Machine {
        let hosts = [config.source.host.as_str(), config.target.host.as_str()];
        Machine { local_servers: hosts.into_iter().filter(|h| is_local_host(h)).count(), ..Machine::detect() }
    }
}

/// Whether `host` names this machine: `localhost`, a loopback address, or
/// a Unix socket's folder (PostgreSQL's `host` may be one).
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim();
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.starts_with('/')
        || bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Largest piece handed from a reader to a writer.
const MAX_PIECE: usize = 1 << 20;
const MIN_PIECE: usize = 64 << 10;

/// The least heap a chunk read by storage blocks covers when `chunk_size`
/// is not set. 100,000 narrow rows are a few megabytes (Votes: 5 MB), and
/// each chunk costs a transaction on both servers, a state write, and its
/// reader idle while the writer drains the queued pieces and commits; a
/// chunk of 64 MiB is still redone in well under a second after a crash.
pub const MIN_STORAGE_CHUNK_BYTES: u64 = 64 << 20;

impl Tuning {
    /// Tables worked on at once when `workers` is auto: one per core, at
    /// least 2 and at most 8.
    pub fn default_workers(cores: usize) -> usize {
        cores.clamp(2, 8)
    }

    /// Resolves every `auto` setting. One reader and one writer per core keep
    /// both servers busy without oversubscribing a small machine; pieces are
    /// sized so that every buffer in flight fits in the memory budget.
    pub fn resolve(m: &MigrationConfig, machine: Machine, workers_override: Option<u32>) -> Tuning {
        let cores = machine.cores.max(1);
        let pick = |explicit: Option<u32>, auto: usize| explicit.map_or(auto, |v| v as usize).max(1);
        let workers = pick(workers_override.or(m.workers), Tuning::default_workers(cores));
        let parallel_readers = pick(m.parallel_readers, cores.clamp(2, 16));
        let upsert = m.target_mode == TargetMode::Upsert;
        // In upsert mode a chunk is the guide's upsert batch, and the
        // writers are its parallel upsert tasks.
        let write_ahead_writers =
            pick(m.upsert_parallel_tasks.filter(|_| upsert).or(m.write_ahead_writers), cores.clamp(2, 12));
        let read_ahead_buffers = pick(m.read_ahead_buffers, 4);
        let chunk_rows = m.upsert_batch_size.filter(|_| upsert).or(m.chunk_size);
        let chunk_size = chunk_rows.map_or(100_000, u64::from).max(1);
        // A chunk size set by hand is the user's bound on a transaction: kept to.
        let min_chunk_bytes = if chunk_rows.is_some() { 0 } else { MIN_STORAGE_CHUNK_BYTES };
        let memory_budget_bytes = machine.memory_bytes / 100 * u64::from(m.memory_budget_percent);
        // Each reader holds its encoder's buffer plus `read_ahead_buffers`
        // queued pieces, and its writer one more in flight.
        let slots = parallel_readers * (read_ahead_buffers + 2);
        let piece_bytes =
            usize::try_from(memory_budget_bytes / 4 / slots as u64).unwrap_or(MAX_PIECE).clamp(MIN_PIECE, MAX_PIECE);
        let max_source_connections = pick(m.max_mssql_connections, parallel_readers + 2);
        let max_target_connections = pick(m.max_pg_connections, write_ahead_writers.max(workers) + 2);
        // A server on this machine spends about a core of it on each copy
        // stream (measured with both servers local: the target's COPY a
        // core, the source and the tool a third of one each). The tool's
        // threads then only contend with the servers for the same cores:
        // with one thread instead of two on two cores, the tool spent 17%
        // less CPU for the same copy (docs/BENCHMARKS.md, issue 18).
        let runtime_threads = (cores / (machine.local_servers + 1)).max(1);
        Tuning {
            workers,
            parallel_readers,
            write_ahead_writers,
            chunk_size,
            min_chunk_bytes,
            read_ahead_buffers,
            piece_bytes,
            max_source_connections,
            max_target_connections,
            memory_budget_bytes,
            runtime_threads,
        }
    }

    /// The most bytes of encoded rows buffered at once.
    pub fn buffered_bytes_bound(&self) -> u64 {
        (self.parallel_readers * (self.read_ahead_buffers + 2) * self.piece_bytes * 5 / 4) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(extra: &str) -> MigrationConfig {
        crate::testing::config("postgres", extra).migration
    }

    #[test]
    fn auto_settings_follow_the_machine_and_explicit_values_win() {
        let small = Machine { cores: 2, memory_bytes: 24 << 30, local_servers: 0 };
        let t = Tuning::resolve(&migration(""), small, None);
        assert_eq!((t.workers, t.parallel_readers, t.write_ahead_writers), (2, 2, 2));
        assert_eq!(t.piece_bytes, 1 << 20);
        assert_eq!((t.chunk_size, t.min_chunk_bytes), (100_000, 64 << 20));
        let t = Tuning::resolve(&migration("workers: 3, chunk_size: 500, parallel_readers: 5"), small, Some(7));
        assert_eq!((t.workers, t.parallel_readers, t.chunk_size), (7, 5, 500));
        assert_eq!(t.min_chunk_bytes, 0, "a chunk size set by hand is kept to");
        assert_eq!(t.max_source_connections, 7);
    }

    #[test]
    fn in_upsert_mode_batches_and_parallel_tasks_set_chunks_and_writers() {
        let small = Machine { cores: 2, memory_bytes: 24 << 30, local_servers: 0 };
        let upsert = "target_mode: upsert, upsert_batch_size: 2000, upsert_parallel_tasks: 4";
        let t = Tuning::resolve(&migration(upsert), small, None);
        assert_eq!((t.chunk_size, t.write_ahead_writers), (2000, 4));
        let t =
            Tuning::resolve(&migration("target_mode: upsert, chunk_size: 5000, write_ahead_writers: 3"), small, None);
        assert_eq!((t.chunk_size, t.write_ahead_writers), (5000, 3), "auto: the general settings");
        // The upsert settings mean nothing to the other modes.
        let t = Tuning::resolve(&migration("upsert_batch_size: 2000, upsert_parallel_tasks: 4"), small, None);
        assert_eq!((t.chunk_size, t.write_ahead_writers), (100_000, 2));
    }

    #[test]
    fn pieces_shrink_to_fit_a_small_budget() {
        let tiny = Machine { cores: 16, memory_bytes: 256 << 20, local_servers: 0 };
        let t = Tuning::resolve(&migration("memory_budget_percent: 10"), tiny, None);
        assert!(t.piece_bytes < 1 << 20, "{}", t.piece_bytes);
        assert!(t.buffered_bytes_bound() <= t.memory_budget_bytes / 2, "{t:?}");
    }

    #[test]
    fn servers_on_this_machine_leave_the_tool_fewer_threads() {
        let remote = Machine { cores: 8, memory_bytes: 24 << 30, local_servers: 0 };
        let threads = |m: Machine| Tuning::resolve(&migration(""), m, None).runtime_threads;
        assert_eq!(threads(remote), 8);
        assert_eq!(threads(Machine { local_servers: 1, ..remote }), 4);
        assert_eq!(threads(Machine { local_servers: 2, ..remote }), 2);
        assert_eq!(threads(Machine { cores: 2, local_servers: 2, ..remote }), 1);
        assert_eq!(threads(Machine { cores: 1, local_servers: 0, ..remote }), 1);
    }

    #[test]
    fn local_hosts_are_loopback_names_addresses_and_socket_folders() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.0.1.1", "::1", "[::1]", "/var/run/postgresql"] {
            assert!(is_local_host(host), "{host}");
        }
        for host in ["db.example.com", "10.0.0.5", "localhost.example.com", "", "::2"] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}
