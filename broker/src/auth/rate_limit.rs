//! Failed authentications per source address over a sliding minute: past the limit, an address
//! is refused without its credentials being checked until its oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The window failures are counted over.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; past it the oldest entries are forgotten, so a spray of source
/// addresses cannot grow memory without bound.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug)]
pub struct FailureLimiter {
    /// Failures allowed per address per window (0: no limit).
    max_per_window: u32,
    /// Recent failure times per address.
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(max_per_window: u32) -> FailureLimiter {
        FailureLimiter {
            max_per_window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn record_failure(&self, ip: IpAddr) {
        if self.max_per_window == 0 {
            return;
        }
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&ip) {
            failures.retain(|_, times| times.back().is_some_and(|t| now - *t < WINDOW));
            if failures.len() >= MAX_ADDRESSES {
                failures.clear();
            }
        }
        let times = failures.entry(ip).or_default();
        times.push_back(now);
        while times.len() > self.max_per_window as usize {
            times.pop_front();
        }
    }

    /// Whether `ip` has used up its failures for now.
    pub fn is_locked_out(&self, ip: IpAddr) -> bool {
        if self.max_per_window == 0 {
            return false;
        }
        let now = Instant::now();
        let mut failures = self.failures.lock();
        let Some(times) = failures.get_mut(&ip) else {
            return false;
        };
        while times.front().is_some_and(|t| now - *t >= WINDOW) {
            times.pop_front();
        }
        if times.is_empty() {
            failures.remove(&ip);
            return false;
        }
        times.len() >= self.max_per_window as usize
    }
}
