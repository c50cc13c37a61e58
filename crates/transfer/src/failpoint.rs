//! Named points where a test can freeze the engine to kill it there.
//!
//! With `MSSQL_PG_MIGRATE_FAILPOINT=name` (or `name:n` for the n-th time
//! that point is reached), the task that reaches it prints
//! `failpoint name reached` on stderr and never continues; with
//! `name:n:ms` it continues after `ms` milliseconds instead, which gives a
//! test time to act (kill the server session, say) at that step. The crash tests
//! wait for that line and send SIGKILL, so each kill lands at a known step
//! while the rest of the process keeps running as it would. Unset, a
//! failpoint costs one atomic load; they sit per chunk, never per row.

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a failpoint.
pub const FAILPOINT_VAR: &str = "MSSQL_PG_MIGRATE_FAILPOINT";

struct Armed {
    name: String,
    nth: u64,
    pause_ms: Option<u64>,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(FAILPOINT_VAR).ok()?;
            let mut parts = value.split(':');
            let name = parts.next()?.to_owned();
            let nth = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            let pause_ms = parts.next().and_then(|ms| ms.parse().ok());
            Some(Armed { name, nth, pause_ms, seen: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Freezes the calling task if `name` is the armed failpoint's.
pub(crate) async fn reached(name: &str) {
    let Some(armed) = armed() else { return };
    if armed.name != name || armed.seen.fetch_add(1, Ordering::SeqCst) + 1 != armed.nth {
        return;
    }
    // The test harness reads this line; a closed stderr must not panic.
    let _ = writeln!(std::io::stderr(), "failpoint {name} reached");
    match armed.pause_ms {
        Some(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        None => std::future::pending::<()>().await,
    }
}
