//! Cluster mode (`--cluster N,..`): a throwaway PostgreSQL and SeaweedFS (sluice-engines) and N
//! `sluice` brokers on them, each on ephemeral 127.0.0.1 ports with a temp data dir; the bench's
//! producer writes through all of them, and the brokers' `/metrics` say what the engines were
//! asked for: object PUTs and GETs, and uploads committed (one PostgreSQL transaction each).
//!
//! Each (brokers, linger) pair gets fresh brokers and its own topic on the same engines, so
//! the pairs of one run are measured on the same machine load and can be compared.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use sluice_engines::{Postgres, Weed};

/// How long a broker may take to report its ports, and the cluster to list every broker.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setup {
    pub(crate) brokers: usize,
    /// `cluster.upload.linger.ms`.
    pub(crate) linger_ms: u64,
}

/// What one configuration measured.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) rate: f64,
    pub(crate) latency: crate::latency::Percentiles,
    /// The brokers' counters, summed, over the produce.
    pub(crate) counters: Counters,
}

/// The `sluice_cluster_*` counters of the brokers, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counters {
    pub(crate) puts: f64,
    pub(crate) put_bytes: f64,
    pub(crate) gets: f64,
    pub(crate) commits: f64,
    pub(crate) upload_bytes: f64,
}

impl Counters {
    /// Adds the samples of one `/metrics` page.
    fn add(&mut self, page: &str) {
        for line in page.lines() {
            let Some((name, value)) = line.split_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let field = match name {
                "sluice_cluster_object_puts_total" => &mut self.puts,
                "sluice_cluster_object_put_bytes_total" => &mut self.put_bytes,
                "sluice_cluster_object_gets_total" => &mut self.gets,
                "sluice_cluster_upload_commits_total" => &mut self.commits,
                "sluice_cluster_upload_bytes_total" => &mut self.upload_bytes,
                _ => continue,
            };
            *field += value;
        }
    }

    fn since(&self, before: &Counters) -> Counters {
        Counters {
            puts: self.puts - before.puts,
            put_bytes: self.put_bytes - before.put_bytes,
            gets: self.gets - before.gets,
            commits: self.commits - before.commits,
            upload_bytes: self.upload_bytes - before.upload_bytes,
        }
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counters;
        let gb = c.upload_bytes / 1e9;
        let per_gb = |n: f64| if gb > 0.0 { n / gb } else { f64::NAN };
        write!(
            f,
            "{:.0} records/s, latency {}; {:.3} GB committed in {:.0} uploads = {:.0} PostgreSQL commits/GB; \
             {:.0} object PUTs ({:.0}/GB, merges included), {:.0} GETs",
            self.rate,
            self.latency,
            gb,
            c.commits,
            per_gb(c.commits),
            c.puts,
            per_gb(c.puts),
            c.gets,
        )
    }
}

/// The engines of a run.
pub(crate) struct Engines {
    pg: Postgres,
    weed: Weed,
}

impl Engines {
    pub(crate) fn start() -> anyhow::Result<Engines> {
        let pg = Postgres::start().context("starting PostgreSQL")?;
        let weed = Weed::start().context("starting SeaweedFS")?;
        Ok(Engines { pg, weed })
    }
}

/// A running broker, killed on drop.
struct Broker {
    child: Child,
    kafka: String,
    http: String,
    /// Holds the data dir, the config file and `broker.stderr`.
    dir: tempfile::TempDir,
}

impl Broker {
    fn start(sluice: &Path, engines: &Engines, toml: &str) -> anyhow::Result<Broker> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-bench-broker-")
            .tempdir()
            .context("creating a temp dir")?;
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, toml).context("writing the broker config")?;
        let stderr = std::fs::File::create(dir.path().join("broker.stderr"))
            .context("creating broker.stderr")?;
        let mut child = Command::new(sluice)
            .args(["serve", "--kafka-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .arg("--metadata")
            .arg(engines.pg.url())
            .arg("--objects")
            .arg(engines.weed.objects_url())
            .envs(engines.weed.env())
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", sluice.display()))?;
        let stdout = child.stdout.take().context("the broker's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the broker never blocks on a full pipe.
            for _ in lines {}
        });
        let mut broker = Broker {
            child,
            kafka: String::new(),
            http: String::new(),
            dir,
        };
        // The first line a broker prints names its bound listeners: `... kafka=ADDR http=ADDR`.
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| broker.failed("did not report its ports within 60 s"))?;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        match (field("kafka="), field("http=")) {
            (Some(kafka), Some(http)) => {
                broker.kafka = kafka;
                broker.http = http;
                Ok(broker)
            }
            _ => Err(broker.failed(&format!("printed {line:?}, not its ports"))),
        }
    }

    /// An error saying what went wrong, with the tail of the broker's log.
    fn failed(&self, what: &str) -> anyhow::Error {
        let log =
            std::fs::read_to_string(self.dir.path().join("broker.stderr")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        anyhow::anyhow!("the sluice broker {what}:\n{tail}")
    }

    fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("http://{}/metrics", self.http);
        ureq::get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading {url}"))
    }
}

impl Drop for Broker {
    /// Stops the broker cleanly first (SIGTERM: it deregisters, so the next pair's brokers on
    /// the same database do not see it in Metadata until its lease lapses), killing it only
    /// if it has not exited within a deadline.
    fn drop(&mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if term.is_ok_and(|s| s.success()) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `sluice` binary next to this one (`target/release/`), where `cargo build --release -p
/// sluice -p sluice-bench` puts both.
pub(crate) fn default_sluice() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("finding this binary")?;
    let dir = me.parent().context("this binary's directory")?;
    Ok(dir.join("sluice"))
}

/// Starts `setup.brokers` brokers, creates `topic` with `partitions` partitions and produces
/// `records` × `size` B through every broker's address (`produce` is the bench's producer,
/// given the bootstrap list), reading the brokers' counters before and after.
pub(crate) fn measure(
    engines: &Engines,
    sluice: &Path,
    setup: Setup,
    topic: &str,
    partitions: i32,
    produce: impl FnOnce(&str) -> anyhow::Result<(f64, crate::latency::Percentiles)>,
) -> anyhow::Result<Measured> {
    let toml = format!("\"cluster.upload.linger.ms\" = {}\n", setup.linger_ms);
    let brokers = (0..setup.brokers)
        .map(|_| Broker::start(sluice, engines, &toml))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bootstrap = brokers
        .iter()
        .map(|b| b.kafka.as_str())
        .collect::<Vec<_>>()
        .join(",");
    wait_for_brokers(&bootstrap, setup.brokers)?;
    crate::create_topics(
        &bootstrap,
        &[crate::NewTopicSpec {
            name: topic,
            partitions,
            config: None,
        }],
    )?;
    let counters = |brokers: &[Broker]| -> anyhow::Result<Counters> {
        let mut sum = Counters::default();
        for b in brokers {
            sum.add(&b.metrics()?);
        }
        Ok(sum)
    };
    let before = counters(&brokers)?;
    let (rate, latency) = produce(&bootstrap)?;
    let after = counters(&brokers)?;
    Ok(Measured {
        rate,
        latency,
        counters: after.since(&before),
    })
}

/// Polls Metadata until it lists `count` brokers (each registers its lease in PostgreSQL as it
/// starts), so a multi-broker run really spreads partition leaders over all of them.
fn wait_for_brokers(bootstrap: &str, count: usize) -> anyhow::Result<()> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating a metadata client")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let seen = client
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.brokers().len())
            .unwrap_or(0);
        if seen >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Metadata lists {seen} of {count} brokers after {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_the_cluster_families_of_every_page_and_skip_the_rest() {
        let page = "# HELP sluice_cluster_object_puts_total x\n\
                    # TYPE sluice_cluster_object_puts_total counter\n\
                    sluice_cluster_object_puts_total 4\n\
                    sluice_cluster_object_put_bytes_total 4000\n\
                    sluice_cluster_upload_commits_total 3\n\
                    sluice_cluster_upload_bytes_total 3000\n\
                    sluice_cluster_object_gets_total 1\n\
                    sluice_topic_bytes_in_total{topic=\"t\"} 99\n";
        let mut sum = Counters::default();
        sum.add(page);
        sum.add(page);
        assert_eq!(
            sum,
            Counters {
                puts: 8.0,
                put_bytes: 8000.0,
                gets: 2.0,
                commits: 6.0,
                upload_bytes: 6000.0,
            }
        );
        assert_eq!(sum.since(&sum), Counters::default());
    }
}
