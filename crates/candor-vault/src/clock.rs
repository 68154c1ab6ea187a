//! The one place Candor reads the time of day.
//!
//! Every rule with a deadline (token, grant, sign-in link and session expiry, break-glass
//! windows, request deadlines, the breach clock, retention) asks [`now`], so tests move time
//! instead of sleeping through it.
//!
//! In a debug build (the binary the test suite runs), `CANDOR_TEST_CLOCK_FILE` may name a file
//! holding a number of milliseconds to add to the system clock; a test writes a larger number to
//! move the running server's time forward. A release build ignores the variable entirely, so an
//! installation's clock cannot be moved from its environment.

use std::sync::OnceLock;

pub use candor_store::Millis;

const TEST_CLOCK_VAR: &str = "CANDOR_TEST_CLOCK_FILE";

/// The file that moves the clock, when this is a debug build and the variable is set.
fn offset_file() -> Option<&'static std::path::Path> {
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| {
        if !cfg!(debug_assertions) {
            return None;
        }
        std::env::var_os(TEST_CLOCK_VAR).map(std::path::PathBuf::from)
    })
    .as_deref()
}

/// Says so when this process's clock can be moved by a test clock file (debug builds only).
pub fn warn_if_movable() {
    if let Some(path) = offset_file() {
        tracing::warn!(file = %path.display(), "{TEST_CLOCK_VAR} is set: this debug build's clock is moved by a file");
    }
}

/// How far the test clock is ahead of the system clock (0 unless moved).
fn offset_millis() -> i64 {
    offset_file()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0)
}

/// The current time.
pub fn now() -> jiff::Timestamp {
    let system = jiff::Timestamp::now();
    match offset_millis() {
        0 => system,
        ms => system.checked_add(jiff::SignedDuration::from_millis(ms)).unwrap_or(system),
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    now().as_millisecond()
}

/// Where a [`crate::Vault`] reads the time: every expiry rule it applies (tokens, grants,
/// sign-in links and sessions, break-glass windows, request deadlines, the breach clock) asks
/// its clock, so an in-process test moves a [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> jiff::Timestamp;

    fn now_millis(&self) -> Millis {
        self.now().as_millisecond()
    }
}

/// The system clock ([`now`]: in a debug build, moved by `CANDOR_TEST_CLOCK_FILE` if set).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        now()
    }
}

/// A clock that moves only when told to: for tests of the rules that depend on time.
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn at(at: jiff::Timestamp) -> Self {
        Self(std::sync::atomic::AtomicI64::new(at.as_millisecond()))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.0.load(std::sync::atomic::Ordering::SeqCst)).expect("a valid time")
    }
}

/// A stored time (milliseconds since the epoch) as RFC 3339, as the API, reports and the log show
/// times: `2026-12-03T10:54:41.123Z`.
pub fn rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// A stored time (milliseconds since the epoch) as people read it in a terminal table:
/// `2026-12-03 10:54:41Z` (UTC, to the second).
pub fn utc_second(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_millis_agrees_with_now() {
        let (a, b) = (now_millis(), now().as_millisecond());
        assert!(b >= a && b - a < 60_000, "{a} {b}");
    }
}
