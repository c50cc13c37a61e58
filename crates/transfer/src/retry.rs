//! One retry policy for everything the engine retries: chunks after a
//! transient failure, and foreign keys that lost a deadlock.

use std::future::Future;
use std::time::Duration;

use crate::error::TransferError;

/// Exponential backoff with a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Backoff {
    /// The policy for `max_retries` retries: 0.5 s, 1 s, 2 s ... at most 30 s.
    pub fn new(max_retries: u32) -> Self {
        Backoff { max_retries, first_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }

    /// The wait before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Runs `attempt` until it succeeds, fails with an error that is not
/// transient, or has been retried `backoff.max_retries` times. `attempt`
/// gets the retry number (0 for the first try) so it can change how it
/// redoes work that may have half-happened.
///
/// # Errors
/// The last error.
pub async fn with_retries<T, F, Fut>(backoff: Backoff, what: &str, mut attempt: F) -> Result<T, TransferError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, TransferError>>,
{
    let mut retry = 0;
    loop {
        match attempt(retry).await {
            Err(e) if e.is_transient() && retry < backoff.max_retries => {
                retry += 1;
                let delay = backoff.delay(retry);
                tracing::warn!(%what, retry, max = backoff.max_retries, delay_ms = delay.as_millis() as u64, error = %e, "transient failure; retrying");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::Side;

    fn transient() -> TransferError {
        TransferError::Server {
            side: Side::Target,
            context: "copying".into(),
            message: "terminating connection".into(),
            transient: true,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::new(10);
        let delays: Vec<u64> = (1..=8).map(|r| b.delay(r).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(b.delay(200), Duration::from_secs(30), "no overflow");
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_others_fail_fast() {
        let calls = AtomicU32::new(0);
        let result = with_retries(Backoff::new(3), "chunk", |retry| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(retry, n);
                if n < 2 { Err(transient()) } else { Ok(n) }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> = with_retries(Backoff::new(3), "chunk", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(TransferError::Config("bad".into())) }
        })
        .await;
        assert!(matches!(result, Err(TransferError::Config(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not transient: no retry");

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> = with_retries(Backoff::new(2), "chunk", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(transient()) }
        })
        .await;
        assert!(result.unwrap_err().is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "first try plus two retries");
    }
}
