//! The cluster-mode harness: a throwaway PostgreSQL and SeaweedFS (sluice-engines) and N
//! `sluice serve --metadata .. --objects ..` brokers on them, each on its own fixed 127.0.0.1
//! port (kept across restarts, so a bootstrap list stays valid) with a temp data dir; kill -9,
//! SIGSTOP/SIGCONT and restarts of a broker, of PostgreSQL and of the object store.

use sluice_engines::{Postgres, Weed};

use super::{unused_port, Broker, Options};

/// A running cluster. Dropping it kills the brokers, then the engines.
pub struct Cluster {
    /// Declared first: dropped (killed) before the engines they use.
    pub brokers: Vec<Broker>,
    pub pg: Postgres,
    pub weed: Weed,
    /// The TOML every broker gets (Kafka names and `cluster.*`).
    toml: String,
}

/// Short lingers and leases, so the tests run in seconds: uploads at 20 ms, a lapsed lease
/// noticed within 3 s.
pub const FAST: &str = "\"cluster.upload.linger.ms\" = 20\n\"cluster.lease.ms\" = 3000\n";

impl Cluster {
    /// `brokers` brokers with [`FAST`] settings; `None` (the test is skipped) outside CI when
    /// PostgreSQL or weed is not installed.
    pub fn start(brokers: usize) -> Option<Cluster> {
        Cluster::start_with(brokers, FAST)
    }

    /// `brokers` brokers, each with `toml` as its config file.
    pub fn start_with(brokers: usize, toml: &str) -> Option<Cluster> {
        if !sluice_engines::require("PostgreSQL", Postgres::installed())
            || !sluice_engines::require("SeaweedFS (weed)", Weed::installed())
        {
            return None;
        }
        let pg = Postgres::start().expect("start PostgreSQL");
        let weed = Weed::start().expect("start weed");
        let mut cluster = Cluster {
            brokers: Vec::new(),
            pg,
            weed,
            toml: toml.to_string(),
        };
        for _ in 0..brokers {
            cluster.add_broker();
        }
        Some(cluster)
    }

    /// One broker per rack in `racks` (its `--rack`), with [`FAST`] settings; `None` as
    /// [`Cluster::start`].
    pub fn start_in_racks(racks: &[&str]) -> Option<Cluster> {
        let mut cluster = Cluster::start_with(0, FAST)?;
        for rack in racks {
            cluster.add_broker_with(&["--rack", rack]);
        }
        Some(cluster)
    }

    /// Starts one more broker (waited for until it reports its ports); returns its index.
    pub fn add_broker(&mut self) -> usize {
        self.add_broker_with(&[])
    }

    /// [`Cluster::add_broker`] with more `sluice serve` arguments.
    pub fn add_broker_with(&mut self, extra: &[&str]) -> usize {
        let mut args = vec![
            "--metadata".into(),
            self.pg.url(),
            "--objects".into(),
            self.weed.objects_url(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let options = Options {
            kafka_port: Some(unused_port()),
            toml: self.toml.clone(),
            args,
            env: self
                .weed
                .env()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Options::default()
        };
        self.brokers.push(Broker::start_with(options));
        self.brokers.len() - 1
    }

    /// Every broker's Kafka address, comma-separated: a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.kafka.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Broker `i`'s Kafka address.
    pub fn kafka(&self, i: usize) -> &str {
        &self.brokers[i].kafka
    }

    /// SIGKILL of broker `i`: a crash, nothing flushed or deregistered.
    pub fn kill9(&mut self, i: usize) {
        self.brokers[i].kill9();
    }

    /// Starts broker `i` again (same port, same data dir) after a kill or stop.
    pub fn start_again(&mut self, i: usize) {
        self.brokers[i].start_again();
    }

    /// Stops broker `i` cleanly and starts it again.
    pub fn restart(&mut self, i: usize) {
        self.brokers[i].restart();
    }

    /// SIGSTOP of broker `i`: it hangs (its lease lapses) until [`Cluster::resume`].
    pub fn pause(&self, i: usize) {
        self.brokers[i].signal("STOP");
    }

    /// SIGCONT of broker `i`.
    pub fn resume(&self, i: usize) {
        self.brokers[i].signal("CONT");
    }

    /// Stops PostgreSQL (fast shutdown) and starts it again on the same port.
    pub fn restart_pg(&mut self) {
        self.pg.restart().expect("restart PostgreSQL");
    }

    /// Stops the object store and starts it again on the same ports and data.
    pub fn restart_weed(&mut self) {
        self.weed.restart().expect("restart weed");
    }

    /// Every broker's stderr, for failure messages.
    pub fn logs(&self) -> String {
        self.brokers
            .iter()
            .enumerate()
            .map(|(i, b)| format!("---- broker {i} ----\n{}", b.stderr()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
