//! The real engines cluster mode runs on, started for a test (or `sluice-bench --cluster`) and
//! thrown away after it.
//! Each listens on unused 127.0.0.1 ports only, keeps its files in a temp dir, can be stopped,
//! killed and started again on the same dir and ports, and is killed and removed on drop.
//!
//! - [`postgres`]: [`Postgres`], a PostgreSQL cluster (trust auth, user `postgres`).
//! - [`weed`]: [`Weed`], a SeaweedFS S3 server with one signed identity and one bucket.
//! - `process`: finding binaries, unused ports, polling with a deadline, signals.
//!
//! ```no_run
//! let pg = sluice_engines::Postgres::start()?;
//! let s3 = sluice_engines::Weed::start()?;
//! let mut sluice = std::process::Command::new("sluice");
//! sluice.args(["serve", "--metadata", &pg.url(), "--objects", &s3.objects_url()]).envs(s3.env());
//! # anyhow::Ok(())
//! ```

pub mod postgres;
mod process;
pub mod weed;

pub use postgres::Postgres;
pub use weed::Weed;

/// Whether a test that needs `engine` runs: `true` when it is installed; when it is not, a
/// panic under CI (`CI` set: scripts/test.sh installs every engine), else `false` after a
/// `SKIPPED` line, as the harness does for missing client tools.
///
/// ```no_run
/// if !sluice_engines::require("PostgreSQL", sluice_engines::Postgres::installed()) {
///     return;
/// }
/// ```
pub fn require(engine: &str, installed: bool) -> bool {
    if installed {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{engine} is not installed: scripts/test.sh installs it"
    );
    eprintln!("SKIPPED: {engine} is not installed (run scripts/test.sh)");
    false
}
