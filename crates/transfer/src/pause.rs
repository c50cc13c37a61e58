//! Pausing a run between chunks: no new chunk starts while paused; chunks
//! in flight finish, so nothing is held open on either server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A switch shared by the caller (a TUI key) and the engine's readers.
#[derive(Debug, Clone, Default)]
pub struct PauseSwitch {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    paused: AtomicBool,
    resumed: Notify,
}

impl PauseSwitch {
    pub fn pause(&self) {
        self.inner.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::SeqCst);
        self.inner.resumed.notify_waiters();
    }

    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::SeqCst)
    }

    /// Returns at once unless paused; otherwise when resumed or when `stop`
    /// is cancelled (a paused run can still be stopped).
    pub async fn wait_while_paused(&self, stop: &CancellationToken) {
        loop {
            // Registered before the check, so a resume in between is not missed.
            let resumed = self.inner.resumed.notified();
            if !self.is_paused() || stop.is_cancelled() {
                return;
            }
            tokio::select! {
                () = resumed => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_paused_switch_holds_until_resumed_or_stopped() {
        let switch = PauseSwitch::default();
        let stop = CancellationToken::new();
        switch.wait_while_paused(&stop).await; // not paused: returns

        switch.pause();
        let waiting = tokio::spawn({
            let (switch, stop) = (switch.clone(), stop.clone());
            async move { switch.wait_while_paused(&stop).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "held while paused");
        switch.resume();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();

        switch.pause();
        let waiting = tokio::spawn({
            let (switch, stop) = (switch.clone(), stop.clone());
            async move { switch.wait_while_paused(&stop).await }
        });
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(switch.is_paused(), "stopping does not unpause");
    }
}
