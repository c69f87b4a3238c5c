//! A rate measured over a sliding window of samples (Kafka's `quota.window.num` samples of
//! `quota.window.size.seconds` each), and the throttle time that brings a client over its quota
//! back to it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How rates are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `quota.window.num`: samples kept.
    pub samples: u32,
    /// `quota.window.size.seconds`: the span of one sample.
    pub size: Duration,
}

impl Default for Window {
    /// Kafka's defaults: 11 samples of one second.
    fn default() -> Window {
        Window {
            samples: 11,
            size: Duration::from_secs(1),
        }
    }
}

/// One entity's recorded amounts, per sample.
#[derive(Debug)]
pub struct Rate {
    /// `(start, total)` of each sample, oldest first; the last one is the current sample.
    samples: VecDeque<(Instant, f64)>,
}

impl Rate {
    pub fn new() -> Rate {
        Rate {
            samples: VecDeque::new(),
        }
    }

    /// Adds `amount` at `now`.
    pub fn record(&mut self, window: Window, amount: f64, now: Instant) {
        self.purge(window, now);
        match self.samples.back_mut() {
            Some((start, total)) if now.saturating_duration_since(*start) < window.size => {
                *total += amount
            }
            _ => self.samples.push_back((now, amount)),
        }
    }

    /// Drops samples that ended before the window that ends at `now`.
    fn purge(&mut self, window: Window, now: Instant) {
        let span = window.size * window.samples;
        while let Some((start, _)) = self.samples.front() {
            if now.saturating_duration_since(*start) >= span {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// The amount per second over the samples kept, and the time they span. The span is at
    /// least one sample, so the first request of a client does not look like an infinite rate
    /// (Kafka floors it at all but one sample, which lets a new client send ten seconds' worth
    /// at once before it is throttled; one sample keeps the start as even as the rest).
    pub fn measure(&mut self, window: Window, now: Instant) -> (f64, Duration) {
        self.purge(window, now);
        let Some((oldest, _)) = self.samples.front() else {
            return (0.0, window.size);
        };
        let span = now.saturating_duration_since(*oldest).max(window.size);
        let total: f64 = self.samples.iter().map(|(_, t)| t).sum();
        (total / span.as_secs_f64(), span)
    }

    /// Whether nothing was recorded within the window ending at `now`.
    pub fn is_idle(&mut self, window: Window, now: Instant) -> bool {
        self.purge(window, now);
        self.samples.is_empty()
    }

    /// How long the client must wait so that its rate falls back to `limit`: Kafka's
    /// `(rate - limit) / limit × window`, bounded by one sample's span (Kafka's bound too, so a
    /// quota lowered under a busy client does not stall it for the whole window).
    pub fn throttle_time(&mut self, window: Window, limit: f64, now: Instant) -> Duration {
        let (rate, span) = self.measure(window, now);
        if rate <= limit || limit <= 0.0 {
            return Duration::ZERO;
        }
        let secs = (rate - limit) / limit * span.as_secs_f64();
        Duration::from_secs_f64(secs.min(window.size.as_secs_f64()))
    }
}

impl Default for Rate {
    fn default() -> Rate {
        Rate::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_steady_client_under_its_limit_is_not_throttled() {
        let w = Window::default();
        let mut rate = Rate::new();
        let t0 = Instant::now();
        for i in 0..100 {
            rate.record(w, 10_000.0, t0 + secs(i as f64 * 0.1));
        }
        let (r, _) = rate.measure(w, t0 + secs(10.0));
        assert!((r - 100_000.0).abs() < 2_000.0, "{r}");
        assert_eq!(
            rate.throttle_time(w, 200_000.0, t0 + secs(10.0)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_client_over_its_limit_waits_in_proportion_to_the_excess() {
        let w = Window::default();
        let mut rate = Rate::new();
        let t0 = Instant::now();
        // 10 s at 110 units/s against a limit of 100: 10% over a 10 s span is 1 s, the bound.
        for i in 0..100 {
            rate.record(w, 11.0, t0 + secs(i as f64 * 0.1));
        }
        let t = rate.throttle_time(w, 100.0, t0 + secs(10.0));
        assert!(t > secs(0.9) && t <= secs(1.0), "{t:?}");
        // 5% over: half a second.
        let mut rate = Rate::new();
        for i in 0..100 {
            rate.record(w, 10.5, t0 + secs(i as f64 * 0.1));
        }
        let t = rate.throttle_time(w, 100.0, t0 + secs(10.0));
        assert!(t > secs(0.4) && t < secs(0.6), "{t:?}");
    }

    #[test]
    fn old_samples_leave_the_window() {
        let w = Window {
            samples: 2,
            size: Duration::from_secs(1),
        };
        let mut rate = Rate::new();
        let t0 = Instant::now();
        rate.record(w, 1_000.0, t0);
        assert!(rate.throttle_time(w, 10.0, t0 + secs(0.5)) > Duration::ZERO);
        assert!(rate.is_idle(w, t0 + secs(2.5)));
        assert_eq!(rate.throttle_time(w, 10.0, t0 + secs(2.5)), Duration::ZERO);
    }
}
