//! Host functions guests may import. Everything is deny-by-default: the WASI preview-1 calls that
//! Rust's standard library links against are provided only so ordinary guests instantiate, and
//! grant nothing — no environment, no arguments, no files, no clock. Writes to stdout/stderr
//! (where a Rust panic message goes) become the guest's log lines.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::{Caller, Extern, Linker, ResourceLimiter};

/// Lines kept per deployment for `sluice transform logs`.
const KEPT_LINES: usize = 1000;
/// Longest line kept; longer guest writes are cut.
const MAX_LINE: usize = 4096;

/// WASI errno values used here.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_NOTCAPABLE: i32 = 76;

/// A guest's recent log lines, shared by its instances and read by the admin API.
#[derive(Debug, Default)]
pub struct GuestLog {
    lines: Mutex<VecDeque<String>>,
}

impl GuestLog {
    /// Records one line (also to the broker's log).
    pub fn push(&self, deployment: &str, level: i32, line: &str) {
        let mut line = line.trim_end().to_string();
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        match level {
            0 => tracing::error!(deployment, "guest: {line}"),
            1 => tracing::warn!(deployment, "guest: {line}"),
            2 => tracing::info!(deployment, "guest: {line}"),
            _ => tracing::debug!(deployment, "guest: {line}"),
        }
        let mut lines = self.lines.lock();
        if lines.len() >= KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock();
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The most recent line (a panic message, typically).
    pub fn last(&self) -> Option<String> {
        self.lines.lock().back().cloned()
    }
}

/// A guest's memory cap; remembers a refused growth so the failure can be called out of memory.
#[derive(Debug)]
pub struct MemoryCap {
    pub max_bytes: usize,
    pub refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        self.refused |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// What a deployment grants its guest beyond computing: one directory for files, and base URLs
/// for HTTP. Empty for transforms.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub file_dir: Option<std::path::PathBuf>,
    pub http_allow: Vec<String>,
}

/// Longest HTTP exchange a guest may wait for.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest HTTP response body handed to a guest.
const MAX_RESPONSE: u64 = 16 << 20;

/// What host functions reach through the store.
pub struct HostState {
    pub grants: Grants,
    /// The last HTTP response, waiting for `sluice.http_response`.
    pub response: Vec<u8>,
    /// The last capability error, for `sluice.error_message`.
    pub error: String,
    pub limits: MemoryCap,
    pub log: Arc<GuestLog>,
    pub deployment: String,
    /// xorshift state for `random_get` (randomness, not a clock, and not cryptographic).
    pub rng: u64,
    /// The current batch call's view of the deployment's state store and tables.
    pub state: super::state_host::CallState,
}

fn memory(caller: &mut Caller<'_, HostState>) -> Option<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// Reads `len` bytes at `ptr` of the guest's memory, `None` if out of bounds.
fn read(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let mem = memory(caller)?;
    let start = usize::try_from(ptr).ok()?;
    let len = usize::try_from(len).ok()?;
    mem.data(&caller)
        .get(start..start.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> bool {
    let Some(mem) = memory(caller) else {
        return false;
    };
    let Ok(start) = usize::try_from(ptr) else {
        return false;
    };
    match start
        .checked_add(bytes.len())
        .and_then(|end| mem.data_mut(&mut *caller).get_mut(start..end))
    {
        Some(slot) => {
            slot.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Adds every host function to `linker`.
pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "sluice",
        "log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            if let Some(bytes) = read(&mut caller, ptr, len.min(MAX_LINE as i32)) {
                let line = String::from_utf8_lossy(&bytes).into_owned();
                let state = caller.data();
                state.log.push(&state.deployment, level, &line);
            }
        },
    )?;

    linker.func_wrap(
        "sluice",
        "error_message",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> i32 {
            let message = caller.data().error.clone().into_bytes();
            let n = message.len().min(len.max(0) as usize);
            if write(&mut caller, ptr, &message[..n]) {
                n as i32
            } else {
                -1
            }
        },
    )?;
    linker.func_wrap(
        "sluice",
        "file_append",
        |mut caller: Caller<'_, HostState>,
         path_ptr: i32,
         path_len: i32,
         data_ptr: i32,
         data_len: i32|
         -> i32 {
            let (Some(path), Some(data)) = (
                read(&mut caller, path_ptr, path_len),
                read(&mut caller, data_ptr, data_len),
            ) else {
                caller.data_mut().error = "buffer outside guest memory".into();
                return -2;
            };
            let path = String::from_utf8_lossy(&path).into_owned();
            match append_granted(&caller.data().grants, &path, &data) {
                Ok(()) => 0,
                Err(e) => {
                    caller.data_mut().error = e;
                    -1
                }
            }
        },
    )?;
    linker.func_wrap(
        "sluice",
        "http_request",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> i32 {
            let Some(bytes) = read(&mut caller, ptr, len) else {
                caller.data_mut().error = "buffer outside guest memory".into();
                return -2;
            };
            match http_granted(&caller.data().grants, &bytes) {
                Ok(response) => {
                    let n = response.len() as i32;
                    caller.data_mut().response = response;
                    n
                }
                Err(e) => {
                    caller.data_mut().error = e;
                    -1
                }
            }
        },
    )?;
    linker.func_wrap(
        "sluice",
        "http_response",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> i32 {
            let response = std::mem::take(&mut caller.data_mut().response);
            let n = response.len().min(len.max(0) as usize);
            if write(&mut caller, ptr, &response[..n]) {
                n as i32
            } else {
                -1
            }
        },
    )?;

    const WASI: &str = "wasi_snapshot_preview1";
    // No environment and no arguments: report zero of each.
    for (get, sizes) in [
        ("environ_get", "environ_sizes_get"),
        ("args_get", "args_sizes_get"),
    ] {
        linker.func_wrap(WASI, get, |_: i32, _: i32| ERRNO_SUCCESS)?;
        linker.func_wrap(
            WASI,
            sizes,
            |mut caller: Caller<'_, HostState>, count: i32, size: i32| {
                if write(&mut caller, count, &0u32.to_le_bytes())
                    && write(&mut caller, size, &0u32.to_le_bytes())
                {
                    ERRNO_SUCCESS
                } else {
                    ERRNO_FAULT
                }
            },
        )?;
    }
    // stdout and stderr become log lines; no other descriptor exists.
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, HostState>, fd: i32, iovs: i32, iovs_len: i32, written: i32| {
            if fd != 1 && fd != 2 {
                return ERRNO_BADF;
            }
            let Some(table) = read(&mut caller, iovs, iovs_len.saturating_mul(8)) else {
                return ERRNO_FAULT;
            };
            let mut text = Vec::new();
            for i in 0..iovs_len.max(0) as usize {
                let (Some(ptr), Some(len)) = (u32_at(&table, i * 8), u32_at(&table, i * 8 + 4))
                else {
                    return ERRNO_FAULT;
                };
                let Some(bytes) = read(&mut caller, ptr as i32, len.min(MAX_LINE as u32) as i32)
                else {
                    return ERRNO_FAULT;
                };
                text.extend_from_slice(&bytes);
            }
            let total = text.len() as u32;
            let line = String::from_utf8_lossy(&text).into_owned();
            if !line.trim().is_empty() {
                let state = caller.data();
                state
                    .log
                    .push(&state.deployment, if fd == 2 { 1 } else { 2 }, &line);
            }
            if write(&mut caller, written, &total.to_le_bytes()) {
                ERRNO_SUCCESS
            } else {
                ERRNO_FAULT
            }
        },
    )?;
    linker.func_wrap(WASI, "fd_close", |_: i32| ERRNO_BADF)?;
    linker.func_wrap(WASI, "fd_fdstat_get", |_: i32, _: i32| ERRNO_BADF)?;
    linker.func_wrap(WASI, "fd_seek", |_: i32, _: i64, _: i32, _: i32| ERRNO_BADF)?;
    linker.func_wrap(WASI, "fd_read", |_: i32, _: i32, _: i32, _: i32| ERRNO_BADF)?;
    linker.func_wrap(WASI, "fd_prestat_get", |_: i32, _: i32| ERRNO_BADF)?;
    linker.func_wrap(WASI, "fd_prestat_dir_name", |_: i32, _: i32, _: i32| {
        ERRNO_BADF
    })?;
    linker.func_wrap(WASI, "clock_time_get", |_: i32, _: i64, _: i32| {
        ERRNO_NOTCAPABLE
    })?;
    linker.func_wrap(WASI, "clock_res_get", |_: i32, _: i32| ERRNO_NOTCAPABLE)?;
    linker.func_wrap(WASI, "sched_yield", || ERRNO_SUCCESS)?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
            let Ok(len) = usize::try_from(len) else {
                return ERRNO_FAULT;
            };
            let mut bytes = vec![0u8; len.min(1 << 20)];
            let state = caller.data_mut();
            for chunk in bytes.chunks_mut(8) {
                state.rng ^= state.rng << 13;
                state.rng ^= state.rng >> 7;
                state.rng ^= state.rng << 17;
                let n = chunk.len();
                chunk.copy_from_slice(&state.rng.to_le_bytes()[..n]);
            }
            if write(&mut caller, ptr, &bytes) {
                ERRNO_SUCCESS
            } else {
                ERRNO_FAULT
            }
        },
    )?;
    linker.func_wrap(WASI, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::format_err!("guest called proc_exit({code})"))
    })?;
    Ok(())
}

/// Appends to `path` under the granted directory; refuses anything that could leave it.
fn append_granted(grants: &Grants, path: &str, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let Some(dir) = &grants.file_dir else {
        return Err("this deployment is not granted a directory (sink.file.dir)".into());
    };
    let relative = std::path::Path::new(path);
    let escapes = path.is_empty()
        || relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)));
    if escapes {
        return Err(format!(
            "'{path}' is not a plain relative path inside the granted directory"
        ));
    }
    let full = dir.join(relative);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&full)
        .map_err(|e| format!("cannot open {}: {e}", full.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_data())
        .map_err(|e| format!("cannot write {}: {e}", full.display()))
}

/// Performs a guest's HTTP request if its URL is under a granted base URL. The response buffer
/// is `u16 status (LE)` followed by the body.
fn http_granted(grants: &Grants, request: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let r = sluice_sdk::sink::decode_request(request).ok_or("malformed HTTP request buffer")?;
    let allowed = grants.http_allow.iter().any(|base| {
        r.url == *base
            || (r.url.starts_with(base.as_str())
                && (base.ends_with('/') || r.url[base.len()..].starts_with(['/', '?'])))
    });
    if !allowed {
        return Err(format!(
            "{} is not under a granted base URL (sink.http.allow)",
            r.url
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(r.method.as_str())
        .uri(r.url.as_str());
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder
        .body(r.body)
        .map_err(|e| format!("invalid request: {e}"))?;
    let mut response = agent
        .run(request)
        .map_err(|e| format!("{} {}: {e}", r.method, r.url))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_RESPONSE)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the response: {e}"))?;
    let mut out = status.to_le_bytes().to_vec();
    out.extend(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_stay_inside_the_granted_directory() {
        let dir = tempfile::tempdir().unwrap();
        let grants = Grants {
            file_dir: Some(dir.path().to_path_buf()),
            http_allow: vec![],
        };
        append_granted(&grants, "a/b.txt", b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b.txt")).unwrap(), b"x");
        for bad in ["../escape", "/etc/passwd", "a/../../x", ""] {
            assert!(append_granted(&grants, bad, b"x").is_err(), "{bad}");
        }
        assert!(append_granted(&Grants::default(), "a", b"x")
            .unwrap_err()
            .contains("not granted"));
    }

    #[test]
    fn http_only_reaches_granted_base_urls() {
        let grants = Grants {
            file_dir: None,
            http_allow: vec!["http://127.0.0.1:1/hook".into()],
        };
        let req = |url: &str| sluice_sdk::sink::encode_request("GET", url, &[], b"");
        for bad in [
            "http://127.0.0.1:1/hookx",
            "http://127.0.0.1:2/hook",
            "http://evil/hook",
        ] {
            assert!(
                http_granted(&grants, &req(bad))
                    .unwrap_err()
                    .contains("not under a granted"),
                "{bad}"
            );
        }
        // Granted, but nothing listens on port 1: a network error, not a refusal.
        let err = http_granted(&grants, &req("http://127.0.0.1:1/hook/x")).unwrap_err();
        assert!(!err.contains("not under a granted"), "{err}");
    }
}
