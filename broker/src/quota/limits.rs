//! Broker-wide limits on connections and on request bytes in memory: `max.connections`,
//! `max.connections.per.ip` (with `max.connections.per.ip.overrides`) and
//! `queued.max.request.bytes`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connection limits, shared by every listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimitsConfig {
    /// `max.connections`.
    pub max_connections: usize,
    /// `max.connections.per.ip`.
    pub max_per_ip: usize,
    /// `max.connections.per.ip.overrides`: per-address exceptions to `max_per_ip`.
    pub per_ip_overrides: HashMap<IpAddr, usize>,
}

impl Default for ConnectionLimitsConfig {
    /// Kafka's defaults: no limit (2147483647).
    fn default() -> ConnectionLimitsConfig {
        ConnectionLimitsConfig {
            max_connections: i32::MAX as usize,
            max_per_ip: i32::MAX as usize,
            per_ip_overrides: HashMap::new(),
        }
    }
}

/// Parses `max.connections.per.ip.overrides`: `address:count,...` (IPv6 addresses too: the
/// count follows the last colon).
pub fn parse_overrides(text: &str) -> Result<HashMap<IpAddr, usize>, String> {
    let mut out = HashMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("'{entry}' is not address:count"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("'{host}' is not an IP address (host names are not resolved)"))?;
        let count: usize = count
            .parse()
            .map_err(|_| format!("'{count}' in '{entry}' is not a connection count"))?;
        out.insert(ip, count);
    }
    Ok(out)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max.connections` reached.
    Broker,
    /// The address's `max.connections.per.ip` (or override) reached.
    PerIp,
}

impl Refusal {
    /// The setting that refused it.
    pub fn setting(self) -> &'static str {
        match self {
            Refusal::Broker => "max.connections",
            Refusal::PerIp => "max.connections.per.ip",
        }
    }
}

/// Counts open connections, broker-wide and per address.
#[derive(Debug)]
pub struct ConnectionLimits {
    config: ConnectionLimitsConfig,
    open: Mutex<OpenCounts>,
}

#[derive(Debug, Default)]
struct OpenCounts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// An admitted connection; its slot is freed when this is dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(config: ConnectionLimitsConfig) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            config,
            open: Mutex::new(OpenCounts::default()),
        })
    }

    /// Takes a slot for a connection from `ip`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let mut open = self.open.lock();
        if open.total >= self.config.max_connections {
            return Err(Refusal::Broker);
        }
        let limit = self
            .config
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.config.max_per_ip);
        let count = open.per_ip.entry(ip).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                open.per_ip.remove(&ip);
            }
            return Err(Refusal::PerIp);
        }
        *count += 1;
        open.total += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// `queued.max.request.bytes`: the bytes of requests read but not yet answered, across the
/// broker. A connection waits before reading a request's body until its bytes fit; a request
/// larger than the whole bound waits for all of it and is then served.
#[derive(Debug, Clone)]
pub struct QueuedBytes {
    /// `None`: unbounded (Kafka's default, -1).
    bound: Option<(Arc<Semaphore>, u32)>,
}

impl QueuedBytes {
    /// `bound` of `None` leaves request memory unbounded.
    pub fn new(bound: Option<u32>) -> QueuedBytes {
        let bound = bound.map(|b| {
            let b = b.clamp(1, Semaphore::MAX_PERMITS as u32);
            (Arc::new(Semaphore::new(b as usize)), b)
        });
        QueuedBytes { bound }
    }

    /// Waits until `size` bytes of request fit under the bound and holds them until the permit
    /// is dropped.
    pub async fn reserve(&self, size: usize) -> Option<OwnedSemaphorePermit> {
        let (semaphore, bound) = self.bound.as_ref()?;
        let wanted = u32::try_from(size).unwrap_or(u32::MAX).clamp(1, *bound);
        // The semaphore is never closed, so acquiring only fails if it were.
        semaphore.clone().acquire_many_owned(wanted).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_refuses_the_next_connection_and_frees_on_close() {
        let limits = ConnectionLimits::new(ConnectionLimitsConfig {
            max_per_ip: 2,
            per_ip_overrides: parse_overrides("10.0.0.9:0, ::1:3").unwrap(),
            ..ConnectionLimitsConfig::default()
        });
        let a = limits.admit(ip("127.0.0.1")).unwrap();
        let _b = limits.admit(ip("127.0.0.1")).unwrap();
        assert_eq!(limits.admit(ip("127.0.0.1")).unwrap_err(), Refusal::PerIp);
        assert!(limits.admit(ip("127.0.0.2")).is_ok());
        drop(a);
        assert!(limits.admit(ip("127.0.0.1")).is_ok());
        assert_eq!(limits.admit(ip("10.0.0.9")).unwrap_err(), Refusal::PerIp);
        let six: Vec<_> = (0..3).map(|_| limits.admit(ip("::1")).unwrap()).collect();
        assert_eq!(limits.admit(ip("::1")).unwrap_err(), Refusal::PerIp);
        drop(six);
    }

    #[test]
    fn broker_limit_counts_every_address() {
        let limits = ConnectionLimits::new(ConnectionLimitsConfig {
            max_connections: 2,
            ..ConnectionLimitsConfig::default()
        });
        let _a = limits.admit(ip("127.0.0.1")).unwrap();
        let _b = limits.admit(ip("127.0.0.2")).unwrap();
        assert_eq!(limits.admit(ip("127.0.0.3")).unwrap_err(), Refusal::Broker);
    }

    #[test]
    fn overrides_are_checked() {
        assert!(parse_overrides("").unwrap().is_empty());
        assert!(parse_overrides("host.example:5").is_err());
        assert!(parse_overrides("127.0.0.1").is_err());
        assert!(parse_overrides("127.0.0.1:x").is_err());
        assert_eq!(parse_overrides("[::1]:4").unwrap()[&ip("::1")], 4);
    }

    #[tokio::test]
    async fn queued_bytes_wait_for_room_and_a_large_request_still_passes() {
        let queued = QueuedBytes::new(Some(100));
        let first = queued.reserve(60).await;
        assert!(first.is_some());
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), queued.reserve(60));
        assert!(waiting.await.is_err(), "60 more bytes do not fit beside 60");
        drop(first);
        let big = queued.reserve(10_000).await;
        assert!(
            big.is_some(),
            "a request over the bound takes the whole bound"
        );
        assert!(QueuedBytes::new(None).reserve(1 << 30).await.is_none());
    }
}
