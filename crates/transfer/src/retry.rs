//! One retry policy for everything the engine retries: chunks after a
//! transient failure, finalization steps, state saves, and foreign keys
//! that lost a deadlock.
//!
//! Two kinds of transient failure are told apart ([`Transience`]): a
//! deadlock or throttling is retried `max_retries` times; a server that went
//! away (a restart, a failover) is reconnected to for up to
//! `reconnect_timeout`, however many attempts that takes, because managed
//! servers take 30-120 s to come back and a count cannot express that.

use std::future::Future;
use std::time::Duration;

use mssql_pg_migrate_config::MigrationConfig;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Side, TransferError, Transience};
use crate::events::{Event, EventSink, emit};

/// Exponential backoff with a cap, and how long to wait out an outage.
#[derive(Clone)]
pub struct Backoff {
    /// Retries after the first attempt, for [`Transience::Retry`] failures.
    pub max_retries: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// How long a server may stay away ([`Transience::Outage`]) before the
    /// work fails.
    pub reconnect_timeout: Duration,
    /// Whether an outage of the target is waited out. Not with
    /// `use_unlogged_tables`: a crashed server empties UNLOGGED tables, and
    /// only a resume checks for that before going on.
    pub wait_for_target: bool,
    /// Told of every retry ([`Event::Retrying`]).
    pub events: Option<EventSink>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("max_retries", &self.max_retries)
            .field("first_delay", &self.first_delay)
            .field("max_delay", &self.max_delay)
            .field("reconnect_timeout", &self.reconnect_timeout)
            .field("wait_for_target", &self.wait_for_target)
            .field("events", &self.events.is_some())
            .finish()
    }
}

/// The longest pause between two reconnection attempts: a server back
/// after a 30 s restart is found within this.
const MAX_OUTAGE_DELAY: Duration = Duration::from_secs(5);

impl Backoff {
    /// The policy for `max_retries` retries (0.5 s, 1 s, 2 s ... at most
    /// 30 s apart) and outages of up to `reconnect_timeout`.
    pub fn new(max_retries: u32, reconnect_timeout: Duration) -> Self {
        Backoff {
            max_retries,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            reconnect_timeout,
            wait_for_target: true,
            events: None,
        }
    }

    /// The policy a configuration's `max_retries` and `reconnect_timeout` set.
    pub fn for_migration(m: &MigrationConfig) -> Self {
        Backoff {
            wait_for_target: !m.use_unlogged_tables,
            ..Backoff::new(m.max_retries, Duration::from_secs(u64::from(m.reconnect_timeout)))
        }
    }

    /// The wait before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before reconnection attempt number `attempt` (1-based).
    fn outage_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt).min(MAX_OUTAGE_DELAY)
    }
}

/// Runs `attempt` until it succeeds or fails for good: with an error that
/// is not transient, after `backoff.max_retries` retries of a
/// [`Transience::Retry`] failure, or once a server has been unavailable
/// for `backoff.reconnect_timeout`. `attempt` gets the attempt number (0 for
/// the first try). Waiting out an outage ends early, with
/// [`TransferError::Cancelled`], when `stop` is cancelled.
///
/// # Errors
/// The last error.
pub async fn with_retries<T, F, Fut>(
    backoff: &Backoff,
    what: &str,
    stop: &CancellationToken,
    mut attempt: F,
) -> Result<T, TransferError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, TransferError>>,
{
    let mut attempts = 0;
    let mut retries = 0;
    // When the current outage began, and how many reconnections it has seen.
    let mut outage: Option<(Instant, u32)> = None;
    loop {
        let e = match attempt(attempts).await {
            Ok(value) => {
                if let Some((since, _)) = outage {
                    tracing::info!(%what, after_ms = since.elapsed().as_millis() as u64, "reconnected");
                }
                return Ok(value);
            }
            Err(e) => e,
        };
        attempts += 1;
        match e.transience() {
            Transience::Outage if !backoff.wait_for_target && e.side() == Some(Side::Target) => {
                tracing::error!(%what, error = %e, "the target went away while use_unlogged_tables is on: a crash empties UNLOGGED tables, so the run stops here and `resume` checks them");
                return Err(e);
            }
            Transience::Outage => {
                let (since, tries) = outage.get_or_insert_with(|| (Instant::now(), 0));
                let waited = since.elapsed();
                let Some(left) = backoff.reconnect_timeout.checked_sub(waited).filter(|l| !l.is_zero()) else {
                    return Err(if backoff.reconnect_timeout.is_zero() { e } else { e.after_outage(waited) });
                };
                *tries += 1;
                let delay = backoff.outage_delay(*tries).min(left);
                emit(
                    backoff.events.as_ref(),
                    Event::Retrying { what: what.to_owned(), attempt: *tries, outage: true, error: e.to_string() },
                );
                // Said loudly once per outage; each further attempt quietly.
                if *tries == 1 {
                    tracing::warn!(
                        %what,
                        reconnect_timeout_s = backoff.reconnect_timeout.as_secs(),
                        error = %e,
                        "server unavailable; reconnecting"
                    );
                } else {
                    tracing::info!(%what, waited_s = waited.as_secs(), delay_ms = delay.as_millis() as u64, error = %e, "still reconnecting");
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return Err(TransferError::Cancelled),
                }
            }
            Transience::Retry if retries < backoff.max_retries => {
                outage = None;
                retries += 1;
                let delay = backoff.delay(retries);
                emit(
                    backoff.events.as_ref(),
                    Event::Retrying { what: what.to_owned(), attempt: retries, outage: false, error: e.to_string() },
                );
                tracing::warn!(%what, retry = retries, max = backoff.max_retries, delay_ms = delay.as_millis() as u64, error = %e, "transient failure; retrying");
                tokio::time::sleep(delay).await;
            }
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn failure(transience: Transience) -> TransferError {
        TransferError::Server {
            side: Side::Target,
            context: "copying".into(),
            message: "terminating connection".into(),
            transience,
        }
    }

    const NO_OUTAGES: Duration = Duration::ZERO;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::new(10, NO_OUTAGES);
        let delays: Vec<u64> = (1..=8).map(|r| b.delay(r).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(b.delay(200), Duration::from_secs(30), "no overflow");
        let outage: Vec<u64> = (1..=6).map(|r| b.outage_delay(r).as_millis() as u64).collect();
        assert_eq!(outage, [500, 1000, 2000, 4000, 5000, 5000], "reconnections poll at least every 5 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_catalog_read_that_may_pass_is_read_again_and_a_bad_catalog_is_not() {
        let catalog = |transient: bool| {
            TransferError::Schema(mssql_pg_migrate_schema::SchemaError::Catalog {
                server: "SQL Server",
                what: "columns",
                message: "connection reset".into(),
                transient,
            })
        };
        let stop = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let result = with_retries(&Backoff::new(3, NO_OUTAGES), "reading the source catalog", &stop, |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n == 0 { Err(catalog(true)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.unwrap(), 1, "read again once");
        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> =
            with_retries(&Backoff::new(3, NO_OUTAGES), "reading the source catalog", &stop, |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(catalog(false)) }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a catalog the tool cannot read fails at once");
        assert!(result.unwrap_err().to_string().contains("reading the SQL Server catalog (columns) failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_others_fail_fast() {
        let stop = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let result = with_retries(&Backoff::new(3, NO_OUTAGES), "chunk", &stop, |attempt| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(attempt, n);
                if n < 2 { Err(failure(Transience::Retry)) } else { Ok(n) }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> = with_retries(&Backoff::new(3, NO_OUTAGES), "chunk", &stop, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(TransferError::Config("bad".into())) }
        })
        .await;
        assert!(matches!(result, Err(TransferError::Config(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not transient: no retry");

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> = with_retries(&Backoff::new(2, NO_OUTAGES), "chunk", &stop, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(failure(Transience::Retry)) }
        })
        .await;
        assert!(result.unwrap_err().is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "first try plus two retries");
    }

    #[tokio::test(start_paused = true)]
    async fn every_retry_is_told_to_the_event_sink() {
        let stop = CancellationToken::new();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&seen);
        let backoff = Backoff {
            events: Some(std::sync::Arc::new(move |e: &Event| {
                if let Event::Retrying { what, attempt, outage, .. } = e {
                    sink.lock().unwrap().push((what.clone(), *attempt, *outage));
                }
            })),
            ..Backoff::new(3, Duration::from_secs(60))
        };
        let calls = AtomicU32::new(0);
        let result = with_retries(&backoff, "dbo.t", &stop, |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err(failure(Transience::Retry)),
                    1 | 2 => Err(failure(Transience::Outage)),
                    _ => Ok(()),
                }
            }
        })
        .await;
        assert!(result.is_ok());
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, [("dbo.t".into(), 1, false), ("dbo.t".into(), 1, true), ("dbo.t".into(), 2, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_waited_out_for_the_reconnect_timeout_whatever_max_retries_says() {
        let stop = CancellationToken::new();
        let backoff = Backoff::new(1, Duration::from_secs(60));
        // Down for 40 s of virtual time, then back: far more than one retry.
        let started = Instant::now();
        let calls = AtomicU32::new(0);
        let result = with_retries(&backoff, "chunk", &stop, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            let down = started.elapsed() < Duration::from_secs(40);
            async move { if down { Err(failure(Transience::Outage)) } else { Ok("copied") } }
        })
        .await;
        assert_eq!(result.unwrap(), "copied");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(40) && waited < Duration::from_secs(46), "{waited:?}");
        // Attempts at 0, 0.5, 1.5, 3.5, 7.5 s, then every 5 s: the 12th, at 42.5 s, finds it back.
        assert_eq!(calls.load(Ordering::SeqCst), 12);
        assert_eq!(waited, Duration::from_millis(42_500));

        // Down for good: fails once the timeout has passed, saying so.
        let started = Instant::now();
        let result: Result<(), _> =
            with_retries(&backoff, "chunk", &stop, |_| async { Err(failure(Transience::Outage)) }).await;
        let e = result.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(60), "the last attempt is at the deadline");
        assert_eq!(e.kind(), crate::error::ErrorKind::Connection, "an outage past the timeout is exit 2");
        assert!(e.to_string().contains("after reconnecting for 60 s; migration.reconnect_timeout"), "{e}");

        // reconnect_timeout 0: no waiting at all.
        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> = with_retries(&Backoff::new(3, NO_OUTAGES), "chunk", &stop, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(failure(Transience::Outage)) }
        })
        .await;
        assert!(!result.unwrap_err().to_string().contains("reconnecting"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn with_unlogged_tables_a_target_outage_stops_at_once_and_a_source_outage_is_waited_out() {
        let stop = CancellationToken::new();
        let backoff = Backoff { wait_for_target: false, ..Backoff::new(3, Duration::from_secs(60)) };
        let started = Instant::now();
        let result: Result<(), _> =
            with_retries(&backoff, "chunk", &stop, |_| async { Err(failure(Transience::Outage)) }).await;
        assert_eq!(result.unwrap_err().side(), Some(Side::Target));
        assert_eq!(started.elapsed(), Duration::ZERO);

        let source_down = || TransferError::Connect {
            side: Side::Source,
            address: "db:1433/app".into(),
            message: "connection refused".into(),
            transience: Transience::Outage,
        };
        let result: Result<(), _> = with_retries(&backoff, "chunk", &stop, |_| async { Err(source_down()) }).await;
        assert!(result.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_the_wait_for_a_server() {
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        let result: Result<(), _> =
            with_retries(&Backoff::new(3, Duration::from_secs(120)), "chunk", &stop, |_| async {
                Err(failure(Transience::Outage))
            })
            .await;
        assert!(matches!(result, Err(TransferError::Cancelled)));
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
