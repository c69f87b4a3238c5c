//! `sluice transform ...`: scaffold, build and manage transforms. Management commands talk to a
//! running broker's HTTP admin API (`/v1/...`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::admin::{call, Admin};

/// `sluice transform` subcommands.
#[derive(Debug, clap::Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only obscure the clap definitions"
)]
pub(super) enum TransformCommand {
    /// Create a transform crate that depends on sluice-sdk and builds as is.
    Init {
        /// Crate name (and directory).
        name: String,
        /// Parent directory [default: .].
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Build the transform crate in the current (or given) directory for wasm32-wasip1.
    Build {
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Upload a .wasm module and deploy it.
    Deploy {
        /// The module file.
        module: PathBuf,
        #[arg(long)]
        name: String,
        /// Topic whose writes the transform runs on.
        #[arg(long)]
        input: String,
        /// Output topic (repeatable; the first is the default output).
        #[arg(long = "output")]
        outputs: Vec<String>,
        /// KEY=VALUE the transform can read (repeatable).
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// reject | skip | dead-letter=TOPIC.
        #[arg(long = "on-error", default_value = "reject")]
        on_error: String,
        /// The output replaces what the input topic stores.
        #[arg(long)]
        in_place: bool,
        /// Memory one instance may use (e.g. 64MiB) [default: the broker's, 64 MiB].
        #[arg(long, value_parser = parse_size)]
        memory: Option<u64>,
        /// CPU time one batch may take (e.g. 2s, 500ms) [default: the broker's, 2 s].
        #[arg(long, value_parser = parse_duration_ms)]
        timeout: Option<u64>,
        /// A topic the transform may look up with `table::lookup` (repeatable; it must exist).
        #[arg(long = "table")]
        tables: Vec<String>,
        /// Cap on the transform's state store, keys plus values (e.g. 16MiB) [default: 64 MiB].
        #[arg(long, value_parser = parse_size)]
        state_max_bytes: Option<u64>,
        /// Where to start in the input: latest (only new writes), earliest, an OFFSET, or a
        /// TIMESTAMP (RFC 3339 like 2026-12-01T10:00:00Z, or @MILLIS); records already stored
        /// from there are run in the background, then new writes inline.
        #[arg(long, default_value = "latest", value_parser = parse_from)]
        from: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// List deployments.
    List {
        #[command(flatten)]
        admin: Admin,
    },
    /// Show one deployment with its counters.
    Describe {
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Show a deployment's recent log lines.
    Logs {
        name: String,
        #[arg(long, default_value_t = 100)]
        tail: usize,
        #[command(flatten)]
        admin: Admin,
    },
    /// Stop running a deployment on new writes.
    Pause {
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Run a paused deployment again.
    Resume {
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Remove a deployment.
    Remove {
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
}

pub(super) fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

/// A byte size: a number with an optional unit (B, KiB/K, MiB/M, GiB/G; KB, MB, GB are powers
/// of ten).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 64MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "'{other}' is not a size unit (use B, KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// A duration in milliseconds: a number with a unit (ms, s, m).
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, factor) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(format!("'{text}' is not a duration like 2s or 500ms"));
    };
    let n: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 2s or 500ms"))?;
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too long"))
}

/// `--from` as the admin API takes it: `latest`, `earliest`, `offset:N` or `timestamp:MS`.
fn parse_from(text: &str) -> Result<String, String> {
    match text {
        "latest" | "earliest" => return Ok(text.to_string()),
        _ => {}
    }
    if let Ok(offset) = text.parse::<u64>() {
        return Ok(format!("offset:{offset}"));
    }
    if let Some(ms) = text.strip_prefix('@') {
        return ms
            .parse::<u64>()
            .map(|ms| format!("timestamp:{ms}"))
            .map_err(|_| format!("'{text}' is not @MILLIS"));
    }
    rfc3339_ms(text).map(|ms| format!("timestamp:{ms}")).ok_or_else(|| {
        format!("'{text}' is not earliest, latest, an offset, @MILLIS or a time like 2026-12-01T10:00:00Z")
    })
}

/// Milliseconds since the epoch of a UTC RFC 3339 time `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn rfc3339_ms(text: &str) -> Option<i64> {
    let t = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut h = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return None;
    }
    let millis = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(3).collect();
        format!("{digits:0<3}").parse::<i64>().ok()?
    };
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + millis)
}

pub(super) fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub(super) fn run(command: TransformCommand) -> anyhow::Result<()> {
    match command {
        TransformCommand::Init { name, path } => init(&name, &path),
        TransformCommand::Build { path } => build(&path).map(|wasm| println!("{}", wasm.display())),
        TransformCommand::Deploy {
            module,
            name,
            input,
            outputs,
            env,
            on_error,
            in_place,
            memory,
            timeout,
            tables,
            state_max_bytes,
            from,
            admin,
        } => {
            let http = admin.connect()?;
            let bytes = std::fs::read(&module)
                .with_context(|| format!("cannot read {}", module.display()))?;
            let a = &http.agent;
            let uploaded = call(
                a.post(format!("{}/v1/modules", http.base))
                    .header("content-type", "application/wasm")
                    .send(&bytes[..]),
                "upload",
            )?;
            let hash = uploaded
                .get("module")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let env: serde_json::Map<String, Value> = env
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let deployed = call(
                a.put(format!("{}/v1/transforms/{name}", http.base))
                    .send_json(json!({
                        "module": hash,
                        "input": input,
                        "outputs": outputs,
                        "env": env,
                        "on_error": on_error,
                        "in_place": in_place,
                        "memory_bytes": memory,
                        "timeout_ms": timeout,
                        "tables": tables,
                        "state_max_bytes": state_max_bytes,
                        "from": from,
                    })),
                "deploy",
            )?;
            if let Some(created) = deployed.get("created_topics").and_then(Value::as_array) {
                for t in created {
                    let t = t.as_str().unwrap_or_default();
                    if t.starts_with("__sluice-state-") {
                        println!("created changelog topic {t} (compacted) for the state store");
                    } else {
                        println!("created topic {t} with broker defaults");
                    }
                }
            }
            println!(
                "deployed {name}: {input} -> {}",
                if in_place {
                    "(in place)".to_string()
                } else {
                    deployed["outputs"].to_string()
                }
            );
            Ok(())
        }
        TransformCommand::List { admin } => {
            let http = admin.connect()?;
            let all = call(
                http.agent
                    .get(format!("{}/v1/transforms", http.base))
                    .call(),
                "list",
            )?;
            for d in all.as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{} -> {}\t{}",
                    d["name"].as_str().unwrap_or_default(),
                    d["state"].as_str().unwrap_or_default(),
                    d["input"].as_str().unwrap_or_default(),
                    d["outputs"],
                    d["on_error"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        TransformCommand::Describe { name, admin } => {
            let http = admin.connect()?;
            print(&call(
                http.agent
                    .get(format!("{}/v1/transforms/{name}", http.base))
                    .call(),
                "describe",
            )?);
            Ok(())
        }
        TransformCommand::Logs { name, tail, admin } => {
            let http = admin.connect()?;
            let logs = call(
                http.agent
                    .get(format!(
                        "{}/v1/transforms/{name}/logs?tail={tail}",
                        http.base
                    ))
                    .call(),
                "logs",
            )?;
            for line in logs["lines"].as_array().into_iter().flatten() {
                println!("{}", line.as_str().unwrap_or_default());
            }
            Ok(())
        }
        TransformCommand::Pause { name, admin } => {
            let http = admin.connect()?;
            call(
                http.agent
                    .post(format!("{}/v1/transforms/{name}/pause", http.base))
                    .send_empty(),
                "pause",
            )?;
            println!("paused {name}");
            Ok(())
        }
        TransformCommand::Resume { name, admin } => {
            let http = admin.connect()?;
            call(
                http.agent
                    .post(format!("{}/v1/transforms/{name}/resume", http.base))
                    .send_empty(),
                "resume",
            )?;
            println!("resumed {name}");
            Ok(())
        }
        TransformCommand::Remove { name, admin } => {
            let http = admin.connect()?;
            call(
                http.agent
                    .delete(format!("{}/v1/transforms/{name}", http.base))
                    .call(),
                "remove",
            )?;
            println!("removed {name}");
            Ok(())
        }
    }
}

/// Where this build's SDK lives (the scaffold depends on it by path until it is published).
fn sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sdk")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"))
}

fn init(name: &str, parent: &Path) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("'{name}' is not a valid crate name (letters, digits, '-' and '_')");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let sdk = sdk_path();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nsluice-sdk = {{ path = {:?} }}\n\n[profile.release]\nopt-level = \"s\"\nlto = true\nstrip = true\n\n# Not part of any enclosing workspace.\n[workspace]\n",
            sdk.display().to_string()
        ),
    )?;
    let fn_name = name.replace('-', "_");
    std::fs::write(
        dir.join("src/lib.rs"),
        format!(
            "//! A Sluice transform: runs inside the broker on every write to its input topic.\n\nuse sluice_sdk::prelude::*;\n\n#[transform]\npub fn {fn_name}(record: Record<'_>, out: &mut Output) -> Result<(), Error> {{\n    // Write the record on unchanged; change key, value or headers here.\n    out.write(record.to_owned_record())\n}}\n\n#[cfg(test)]\nmod tests {{\n    use super::*;\n\n    #[test]\n    fn passes_records_through() {{\n        let written = sluice_sdk::testing::run({fn_name}, [OwnedRecord::new().with_value(\"hi\")]).unwrap();\n        assert_eq!(written[0].record.value.as_deref(), Some(&b\"hi\"[..]));\n    }}\n}}\n"
        ),
    )?;
    std::fs::write(dir.join(".gitignore"), "target/\n")?;
    println!(
        "created {} (build it with: sluice transform build --path {})",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Builds the crate at `path` for wasm32-wasip1; returns the module's path.
fn build(path: &Path) -> anyhow::Result<PathBuf> {
    let manifest = path.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("no Cargo.toml in {}", path.display()))?;
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(out) = installed {
        if out.status.success()
            && !String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip1")
        {
            bail!(
                "the wasm32-wasip1 target is not installed; run: rustup target add wasm32-wasip1"
            );
        }
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let name = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("name")
                .and_then(|r| r.split('"').nth(1))
        })
        .context("no package name in Cargo.toml")?
        .replace('-', "_");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| path.join("target"));
    let wasm = target_dir
        .join("wasm32-wasip1/release")
        .join(format!("{name}.wasm"));
    if !wasm.exists() {
        bail!("build succeeded but {} is missing", wasm.display());
    }
    Ok(wasm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_starts_parse() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").unwrap_err().contains("size"));
        assert!(parse_size("5 parsecs").unwrap_err().contains("unit"));
        assert_eq!(parse_duration_ms("2s").unwrap(), 2000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("soon").is_err());
        assert_eq!(parse_from("earliest").unwrap(), "earliest");
        assert_eq!(parse_from("42").unwrap(), "offset:42");
        assert_eq!(
            parse_from("@1700000000000").unwrap(),
            "timestamp:1700000000000"
        );
        assert_eq!(
            parse_from("2023-11-14T22:13:20Z").unwrap(),
            "timestamp:1700000000000"
        );
        assert_eq!(
            parse_from("1970-01-01T00:00:01.5Z").unwrap(),
            "timestamp:1500"
        );
        assert!(parse_from("yesterday").unwrap_err().contains("earliest"));
    }
}
