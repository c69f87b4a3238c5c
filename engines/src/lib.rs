//! Dev only: the real engines cluster mode runs on, started for a test and thrown away after it.
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
