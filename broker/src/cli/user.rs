//! `sluice user add|list|remove`: SCRAM users in a data dir, before the broker starts (the way
//! `kafka-storage format --add-scram` bootstraps Kafka). While a broker runs on the data dir these
//! refuse, since the broker keeps the credentials in memory and would not see the change; use
//! AlterUserScramCredentials from an admin client then.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::auth::credentials::{
    CredentialStore, ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS,
};
use crate::meta::MetaDir;

/// `sluice user` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(super) enum UserCommand {
    /// Add a SCRAM user (or replace its password), reading the password from stdin.
    Add {
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512 (repeat for both).
        #[arg(long = "mechanism", required = true, value_parser = parse_mechanism)]
        mechanisms: Vec<ScramMechanism>,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// PBKDF2 iterations.
        #[arg(long, default_value_t = MIN_ITERATIONS)]
        iterations: u32,
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// List the users and their mechanisms.
    List {
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Remove a user (every mechanism, or the ones named).
    Remove {
        name: String,
        #[arg(long = "mechanism", value_parser = parse_mechanism)]
        mechanisms: Vec<ScramMechanism>,
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
}

fn parse_mechanism(text: &str) -> Result<ScramMechanism, String> {
    ScramMechanism::from_name(text)
        .ok_or_else(|| format!("'{text}' is not SCRAM-SHA-256 or SCRAM-SHA-512"))
}

pub(super) fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            mechanisms,
            password_stdin: _,
            iterations,
            data_dir,
        } => {
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                anyhow::bail!("--iterations must be within [{MIN_ITERATIONS}, {MAX_ITERATIONS}]");
            }
            crate::auth::credentials::validate_name(&name)?;
            let password = read_password()?;
            let (store, _lock) = open(&data_dir, true)?;
            let mut upsertions = Vec::new();
            for m in &mechanisms {
                upsertions.push((
                    name.clone(),
                    *m,
                    ScramCredential::new(*m, password.as_bytes(), iterations)?,
                ));
            }
            store.apply(&[], upsertions)?;
            let names: Vec<_> = mechanisms.iter().map(|m| m.name()).collect();
            println!("user {name}: {} stored", names.join(", "));
            Ok(())
        }
        UserCommand::List { data_dir } => {
            let (store, _lock) = open(&data_dir, false)?;
            for (user, mechs) in store.list() {
                let mechs: Vec<_> = mechs
                    .iter()
                    .map(|(m, i)| format!("{}(iterations={i})", m.name()))
                    .collect();
                println!("{user}\t{}", mechs.join(" "));
            }
            Ok(())
        }
        UserCommand::Remove {
            name,
            mechanisms,
            data_dir,
        } => {
            let (store, _lock) = open(&data_dir, true)?;
            let have: Vec<ScramMechanism> = store
                .list()
                .into_iter()
                .find(|(u, _)| *u == name)
                .map(|(_, m)| m.into_iter().map(|(m, _)| m).collect())
                .unwrap_or_default();
            let remove: Vec<_> = if mechanisms.is_empty() {
                have
            } else {
                mechanisms
            };
            if remove.is_empty() {
                anyhow::bail!("no user '{name}' in {}", data_dir.display());
            }
            let deletions: Vec<_> = remove.iter().map(|m| (name.clone(), *m)).collect();
            store.apply(&deletions, Vec::new())?;
            println!("user {name}: removed");
            Ok(())
        }
    }
}

/// The first line of stdin, without its line ending.
fn read_password() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .context("cannot read the password from stdin")?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        anyhow::bail!("empty password on stdin");
    }
    Ok(password)
}

/// Opens the credentials of `data_dir`, holding the data-dir lock so no broker starts meanwhile.
fn open(data_dir: &Path, create: bool) -> anyhow::Result<(CredentialStore, std::fs::File)> {
    let meta_dir = MetaDir::of(data_dir);
    let meta = meta_dir.root().to_path_buf();
    if create {
        std::fs::create_dir_all(&meta)
            .with_context(|| format!("cannot create {}", meta.display()))?;
    } else if !meta.is_dir() {
        anyhow::bail!("{} is not a sluice data dir", data_dir.display());
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(meta_dir.lock())
        .with_context(|| format!("cannot open the lock in {}", meta.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "data dir {} is in use by a running broker; change users with AlterUserScramCredentials from an admin client instead",
            data_dir.display()
        )
    })?;
    Ok((CredentialStore::open(&meta)?, lock))
}
