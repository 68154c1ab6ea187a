//! Rate limiting of sign-in attempts and of message-code checks (one limiter each, so checking
//! messages never locks anyone out of signing in): a fixed one-minute window per client address,
//! or per /64 network for IPv6 (a client holds a whole /64 and could rotate within it).
//!
//! Sign-in link secrets carry 256 random bits, so guessing one is hopeless anyway; the limit
//! keeps a client from hammering the sign-in form (and the log that records attempts with known
//! links). It is per server process: behind several servers each counts on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked addresses, finished windows are dropped before counting.
const PRUNE_ABOVE: usize = 10_000;

pub struct SignInLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts an attempt from `ip` at `now`; `Err(seconds to wait)` when over the limit.
    pub fn attempt(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        self.window(ip, now, true)
    }

    /// Whether `ip` is over the limit at `now` (`Err(seconds to wait)`), without counting an
    /// attempt: for a question that costs nothing when its answer is good (opening a live link).
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        self.window(ip, now, false)
    }

    fn window(&self, ip: IpAddr, now: Instant, count_it: bool) -> Result<(), u64> {
        let ip = bucket(ip);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *count) = (now, 0);
        }
        if *count >= self.per_minute {
            let wait = WINDOW.saturating_sub(now.duration_since(*start));
            return Err(wait.as_secs().max(1));
        }
        if count_it {
            *count += 1;
        }
        Ok(())
    }
}

/// The unit an attempt is counted against: an IPv4 address, or the /64 of an IPv6 one (an
/// IPv4-mapped IPv6 address counts as its IPv4 address).
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotating_ipv6_addresses_within_a_64_counts_as_one_client() {
        let limiter = SignInLimiter::new(2);
        let t0 = Instant::now();
        assert!(limiter.attempt("2001:db8:1:2::1".parse().unwrap(), t0).is_ok());
        assert!(limiter.attempt("2001:db8:1:2:ffff::9".parse().unwrap(), t0).is_ok());
        assert!(limiter.attempt("2001:db8:1:2:abcd:1:2:3".parse().unwrap(), t0).is_err(), "same /64");
        assert!(limiter.attempt("2001:db8:1:3::1".parse().unwrap(), t0).is_ok(), "another /64");
        assert_eq!(bucket("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn attempts_beyond_the_limit_wait_for_the_next_window_per_address() {
        let limiter = SignInLimiter::new(3);
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.attempt(a, t0).is_ok());
        }
        let wait = limiter.attempt(a, t0 + Duration::from_secs(20)).unwrap_err();
        assert!((39..=40).contains(&wait), "{wait}");
        assert!(limiter.attempt(b, t0).is_ok(), "other addresses are not affected");
        assert!(limiter.attempt(a, t0 + WINDOW).is_ok(), "a new window starts afresh");
    }

    #[test]
    fn checking_counts_nothing_but_says_when_the_limit_is_reached() {
        let limiter = SignInLimiter::new(2);
        let a = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check(a, t0).is_ok());
        }
        assert!(limiter.attempt(a, t0).is_ok() && limiter.attempt(a, t0).is_ok());
        assert!(limiter.check(a, t0).is_err(), "over the limit");
    }
}
