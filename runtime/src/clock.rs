//! Time, injectable so tests can move it.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to: for tests of timestamp windows and retry delays.
///
/// Clones share the same time, so a test keeps one and gives another to the app.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// A clock at `secs` seconds since the Unix epoch.
    pub fn at_secs(secs: i64) -> Self {
        let clock = Self::default();
        clock.set_secs(secs);
        clock
    }

    /// Moves the clock to `secs` seconds since the Unix epoch.
    pub fn set_secs(&self, secs: i64) {
        self.0.store(
            secs.saturating_mul(1000),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Moves the clock forward (or back, for a negative `millis`).
    pub fn advance_ms(&self, millis: i64) {
        self.0
            .fetch_add(millis, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
