//! Process metrics (`process_*`, the names Prometheus client libraries share), read from
//! `/proc/self` at scrape time. Off Linux there is no `/proc` and the families are left out.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;

use super::Scrape;

/// Linux reports CPU times in `/proc` in USER_HZ ticks, which the kernel ABI fixes at 100.
const TICKS_PER_SECOND: f64 = 100.0;

/// The process families, or none where `/proc/self` cannot be read.
pub fn families() -> Vec<MetricFamily> {
    let mut scrape = Scrape::default();
    let mut families = Vec::new();
    if let Some(cpu) = cpu_seconds() {
        if let Ok(c) = prometheus::Counter::new(
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds.",
        ) {
            c.inc_by(cpu);
            families.extend(c.collect());
        }
    }
    if let Some(rss) = status_kib("VmRSS:") {
        let g = Scrape::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[],
        );
        g.set(&[], rss * 1024.0);
        scrape.finish(g);
    }
    if let Some(vm) = status_kib("VmSize:") {
        let g = Scrape::gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &[],
        );
        g.set(&[], vm * 1024.0);
        scrape.finish(g);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let g = Scrape::gauge("process_open_fds", "Open file descriptors.", &[]);
        g.set(&[], fds.count() as f64);
        scrape.finish(g);
    }
    if let Some(max) = max_fds() {
        let g = Scrape::gauge(
            "process_max_fds",
            "Most open file descriptors allowed.",
            &[],
        );
        g.set(&[], max);
        scrape.finish(g);
    }
    families.extend(scrape.into_families());
    families
}

/// utime + stime from `/proc/self/stat` (fields 14 and 15; the command name in field 2 may hold
/// spaces and parentheses, so fields are counted after its closing parenthesis).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// A `kB` line of `/proc/self/status`.
fn status_kib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The soft "Max open files" limit from `/proc/self/limits`.
fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_process() {
        let names: Vec<String> = super::families()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(names.contains(&"process_cpu_seconds_total".to_string()));
            assert!(names.contains(&"process_open_fds".to_string()));
            assert!(names.contains(&"process_resident_memory_bytes".to_string()));
        }
    }
}
