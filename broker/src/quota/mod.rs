//! Client quotas and connection limits, as Kafka has them.
//!
//! - [`store`]: the quota configs (per user and/or client id, with `<default>` entities), durable
//!   in `data/__sluice/client-quotas.json`, resolved in Kafka's precedence order.
//! - [`rate`]: rates over a sliding window of samples and the throttle time past a quota.
//! - [`limits`]: `max.connections`, `max.connections.per.ip` and `queued.max.request.bytes`.
//!
//! [`Quotas`] measures each quota entity's produce bytes, fetch bytes and request handling time,
//! and says how long a client over its quota is held back (KIP-219: the response carries
//! `throttle_time_ms`, then the connection is not read for that long).

pub mod limits;
pub mod rate;
pub mod store;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use rate::Window;
pub use store::{Client, QuotaKind, QuotaStore};

use rate::Rate;

/// Measurements are dropped once idle this many windows, so client ids that come and go do not
/// grow the map without bound.
const IDLE_WINDOWS: u32 = 2;
/// How many measurements may accumulate before idle ones are swept.
const SWEEP_ABOVE: usize = 4096;

/// What one measurement is kept for: the quota kind, and the user and client id (`None` where
/// the quota that applies is not per that component).
type MeasuredEntity = (QuotaKind, Option<String>, Option<String>);

/// The quota configs and the measurements they are enforced on.
#[derive(Debug)]
pub struct Quotas {
    pub store: QuotaStore,
    window: Window,
    rates: Mutex<HashMap<MeasuredEntity, Rate>>,
}

impl Quotas {
    pub fn new(store: QuotaStore, window: Window) -> Quotas {
        Quotas {
            store,
            window,
            rates: Mutex::new(HashMap::new()),
        }
    }

    /// Whether no quota is configured (requests skip quota work).
    pub fn is_off(&self) -> bool {
        self.store.is_empty()
    }

    /// Records `amount` (bytes, or percent-seconds of handling time for [`QuotaKind::Request`])
    /// against `client`'s quota of `kind` and returns how long it must be held back; zero when
    /// no quota of that kind applies to it.
    pub fn record(&self, kind: QuotaKind, client: Client<'_>, amount: f64) -> Duration {
        let Some(resolved) = self.store.resolve(kind, client) else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut rates = self.rates.lock();
        if rates.len() > SWEEP_ABOVE {
            let idle = Window {
                samples: self.window.samples * IDLE_WINDOWS,
                ..self.window
            };
            rates.retain(|_, r| !r.is_idle(idle, now));
        }
        let rate = rates
            .entry((kind, resolved.user, resolved.client_id))
            .or_default();
        rate.record(self.window, amount, now);
        let throttle = rate.throttle_time(self.window, resolved.limit, now);
        if !throttle.is_zero() {
            crate::metrics::throttled(kind.key(), throttle);
        }
        throttle
    }

    /// Records a request's handling time against `client`'s `request_percentage` quota.
    pub fn record_handling(&self, client: Client<'_>, handling: Duration) -> Duration {
        // 100% is one thread busy all the time: a second of handling per second.
        self.record(QuotaKind::Request, client, handling.as_secs_f64() * 100.0)
    }
}

/// A throttle time as the `throttle_time_ms` of a response.
pub fn throttle_ms(throttle: Duration) -> i32 {
    i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::store::{EntityName, QuotaEntity, PRODUCER_BYTE_RATE};
    use super::*;

    #[test]
    fn clients_without_a_quota_are_never_held_back_and_others_are_measured_apart() {
        let dir = tempfile::tempdir().unwrap();
        let quotas = Quotas::new(QuotaStore::open(dir.path()).unwrap(), Window::default());
        let client = Client {
            user: "ANONYMOUS",
            client_id: "slow",
        };
        assert!(quotas.is_off());
        assert_eq!(
            quotas.record(QuotaKind::Produce, client, 1e9),
            Duration::ZERO
        );
        quotas
            .store
            .alter(&[(
                QuotaEntity {
                    user: None,
                    client_id: Some(EntityName::Named("slow".into())),
                },
                vec![(PRODUCER_BYTE_RATE.to_string(), Some(1000.0))],
            )])
            .unwrap();
        assert!(quotas.record(QuotaKind::Produce, client, 10_000.0) > Duration::ZERO);
        let other = Client {
            user: "ANONYMOUS",
            client_id: "fast",
        };
        assert_eq!(
            quotas.record(QuotaKind::Produce, other, 1e9),
            Duration::ZERO
        );
        assert_eq!(quotas.record(QuotaKind::Fetch, client, 1e9), Duration::ZERO);
    }
}
