//! CPU time a process has used, from `/proc/PID/stat` (Linux): the broker's CPU per record is
//! a steadier measure of a hot-path cost than records/s when client and broker share the cores
//! and the wall clock swings with scheduling.

use anyhow::{bail, Context};

/// Kernel clock ticks per second for `/proc` times (`USER_HZ`, 100 on every Linux ABI Sluice
/// runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds used so far by every thread of process `pid`.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("{path}: no command field");
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let tick = |n: usize| -> anyhow::Result<f64> {
        let field = fields
            .get(n - 3)
            .with_context(|| format!("{path}: field {n} missing"))?;
        Ok(field
            .parse::<u64>()
            .with_context(|| format!("{path}: field {n} is {field:?}"))? as f64)
    };
    Ok((tick(14)? + tick(15)?) / TICKS_PER_SECOND)
}

/// CPU time the calling thread has used: what one side of a comparison run on this thread
/// cost, however often the thread was preempted by other processes.
#[allow(unsafe_code, reason = "clock_gettime(2) on a local timespec")]
pub(crate) fn thread_cpu_time() -> std::time::Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live local it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu() {
        let before = cpu_seconds(std::process::id()).unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = cpu_seconds(std::process::id()).unwrap();
        assert!(after > before, "{before} -> {after}");
    }
}
