//! What both engines need: finding a binary, unused ports, polling with a deadline, signals, and
//! an unprivileged user to run a server as when the tests run as root (PostgreSQL refuses root).

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// `count` distinct ports nothing listens on right now. All listeners are held until every port
/// is picked, so the kernel cannot hand the same one out twice.
pub(crate) fn unused_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("binding an ephemeral 127.0.0.1 port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Calls `check` until it returns `Ok(Some(_))`, an error, or `timeout` passes; the error then
/// names `what` and the last reason `check` gave for not being ready.
pub(crate) fn poll<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Result<T, String>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check()? {
            Ok(ready) => return Ok(ready),
            Err(why) => why,
        };
        if Instant::now() > deadline {
            bail!("{what} not ready within {timeout:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (a name `kill` knows: TERM, INT, QUIT, STOP, CONT, KILL) to `child`.
/// The `kill` command, because sending a signal from Rust itself needs `unsafe` libc calls.
pub(crate) fn signal(child: &Child, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{signal} {} failed ({status})", child.id());
    }
    Ok(())
}

/// Sends `first` and waits up to `timeout` for `child` to exit, then SIGKILLs it.
/// Returns whether it exited by itself.
pub(crate) fn stop(child: &mut Child, first: &str, timeout: Duration) -> bool {
    if signal(child, first).is_ok() {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// SIGKILL and reap.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The tail of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A user to run a server as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct User {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// `None` when this process is not root (the server then runs as us); as root, the first of
/// `names` found in /etc/passwd.
pub(crate) fn unprivileged_user(names: &[&str]) -> anyhow::Result<Option<User>> {
    // /proc/self belongs to this process's effective user: no libc call needed.
    let euid = std::fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid();
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for name in names {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4 && fields[0] == *name {
                let uid = fields[2].parse().context("a uid in /etc/passwd")?;
                let gid = fields[3].parse().context("a gid in /etc/passwd")?;
                return Ok(Some(User { uid, gid }));
            }
        }
    }
    bail!(
        "running as root and none of the users {names:?} exists to run the server as \
         (Debian's postgresql package creates `postgres`)"
    )
}

/// Hands `path` to `user` (when there is one), so a server running as it can write there.
pub(crate) fn give_to(path: &Path, user: Option<User>) -> anyhow::Result<()> {
    if let Some(user) = user {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// The first `dir/name` that is a file, else `name` on `PATH`.
pub(crate) fn find_binary(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.iter()
        .chain(path_dirs.iter())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_ports_are_distinct() {
        let mut ports = unused_ports(8).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 8);
    }

    #[test]
    fn poll_names_what_was_not_ready_and_why() {
        let err = poll(Duration::from_millis(100), "the thing", || {
            Ok(Err::<(), _>("still warming up".to_string()))
        })
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("the thing"), "{message}");
        assert!(message.contains("still warming up"), "{message}");
    }

    #[test]
    fn find_binary_prefers_the_given_dirs_then_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sh"), "").unwrap();
        assert_eq!(
            find_binary("sh", &[dir.path().to_path_buf()]),
            Some(dir.path().join("sh"))
        );
        let on_path = find_binary("sh", &[]).unwrap();
        assert_ne!(on_path, dir.path().join("sh"));
        assert_eq!(find_binary("no-such-binary-anywhere", &[]), None);
    }
}
