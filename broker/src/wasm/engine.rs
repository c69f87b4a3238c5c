//! The process's wasmtime engine, its epoch ticker, and compiled modules cached by content hash.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, ExternType, InstancePre, Linker, Module, OptLevel, Store, ValType};

use super::host::{self, GuestLog, HostState, MemoryCap};
use super::ABI_VERSION;

/// One epoch tick; CPU caps are whole numbers of ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The largest module accepted at deploy time.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Why a module cannot be deployed.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("module is {size} bytes; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("not a WebAssembly module: {0}")]
    NotWasm(String),
    #[error("module does not export {0}")]
    MissingExport(String),
    #[error("export {name} has the wrong type: expected {expected}")]
    WrongExportType { name: String, expected: String },
    #[error("module imports {0}, which Sluice does not provide (no files, clock, network or environment are granted)")]
    UnknownImport(String),
    #[error("module speaks guest ABI version {found}; this broker speaks version {expected} (rebuild it with a sluice-sdk that speaks version {expected})")]
    AbiVersion { found: i32, expected: i32 },
    #[error("module failed while starting: {0}")]
    Start(String),
}

/// A validated, compiled module, ready to instantiate.
pub struct CompiledModule {
    /// Hex SHA-256 of the module bytes.
    pub hash: String,
    pub kind: ModuleKind,
    /// It imports the state calls: its deployment keeps a store and a changelog.
    pub stateful: bool,
    pub(crate) pre: InstancePre<HostState>,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("hash", &self.hash)
            .finish()
    }
}

/// The engine shared by every guest.
pub struct WasmEngine {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    /// `(module, name)` of every import the linker provides.
    provided: std::collections::HashSet<(String, String)>,
    cache: Mutex<HashMap<String, Arc<CompiledModule>>>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine").finish_non_exhaustive()
    }
}

/// The signatures `sdk/ABI.md` requires of every module, as (name, params, results).
const EXPORTS: &[(&str, &[ValType], &[ValType])] = &[
    ("sluice_abi_version", &[], &[ValType::I32]),
    ("sluice_alloc", &[ValType::I32], &[ValType::I32]),
    (
        "sluice_init",
        &[ValType::I32, ValType::I32],
        &[ValType::I64],
    ),
];

/// What a module is, by the entry point it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// Exports `sluice_on_batch`.
    Transform,
    /// Exports `sluice_on_sink_batch`.
    Sink,
}

impl ModuleKind {
    pub fn entry(self) -> &'static str {
        match self {
            ModuleKind::Transform => "sluice_on_batch",
            ModuleKind::Sink => "sluice_on_sink_batch",
        }
    }
}

impl WasmEngine {
    /// Builds the engine and starts its epoch ticker (a thread that ends with the engine).
    pub fn new() -> wasmtime::Result<Arc<WasmEngine>> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        host::define(&mut linker)?;
        super::state_host::define(&mut linker)?;
        let mut store = Store::new(&engine, placeholder_state());
        let provided = linker
            .iter(&mut store)
            .map(|(module, name, _)| (module.to_string(), name.to_string()))
            .collect();
        drop(store);
        let wasm = Arc::new(WasmEngine {
            engine,
            linker,
            provided,
            cache: Mutex::new(HashMap::new()),
        });
        let weak: Weak<WasmEngine> = Arc::downgrade(&wasm);
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while let Some(wasm) = weak.upgrade() {
                    wasm.engine.increment_epoch();
                    drop(wasm);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(wasmtime::Error::from)?;
        Ok(wasm)
    }

    /// Hex SHA-256 of `bytes`: the cache key and the file name modules are stored under.
    pub fn hash(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Validates and compiles `bytes` (or returns the cached compilation).
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, ModuleError> {
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(ModuleError::TooLarge {
                size: bytes.len(),
                max: MAX_MODULE_BYTES,
            });
        }
        let hash = Self::hash(bytes);
        if let Some(found) = self.cache.lock().get(&hash) {
            return Ok(found.clone());
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(ModuleError::NotWasm(
                "the file does not start with the wasm magic number".into(),
            ));
        }
        let module =
            Module::new(&self.engine, bytes).map_err(|e| ModuleError::NotWasm(format!("{e:#}")))?;
        // Imports first: asking for a capability we never grant is the most telling refusal.
        for import in module.imports() {
            if !self
                .provided
                .contains(&(import.module().to_string(), import.name().to_string()))
            {
                return Err(ModuleError::UnknownImport(format!(
                    "{}.{}",
                    import.module(),
                    import.name()
                )));
            }
        }
        for (name, params, results) in EXPORTS {
            match module.get_export(name) {
                Some(ExternType::Func(f)) => {
                    let ok = f
                        .params()
                        .map(|p| p.to_string())
                        .eq(params.iter().map(|p| p.to_string()))
                        && f.results()
                            .map(|r| r.to_string())
                            .eq(results.iter().map(|r| r.to_string()));
                    if !ok {
                        return Err(ModuleError::WrongExportType {
                            name: (*name).to_string(),
                            expected: format!("func {params:?} -> {results:?}"),
                        });
                    }
                }
                Some(_) => {
                    return Err(ModuleError::WrongExportType {
                        name: (*name).to_string(),
                        expected: "a function".into(),
                    })
                }
                None => return Err(ModuleError::MissingExport((*name).to_string())),
            }
        }
        let kind = match (module.get_export("sluice_on_batch"), module.get_export("sluice_on_sink_batch")) {
            (Some(_), None) => ModuleKind::Transform,
            (None, Some(_)) => ModuleKind::Sink,
            (Some(_), Some(_)) => {
                return Err(ModuleError::WrongExportType {
                    name: "sluice_on_batch".into(),
                    expected: "either sluice_on_batch (a transform) or sluice_on_sink_batch (a sink), not both".into(),
                })
            }
            (None, None) => {
                return Err(ModuleError::MissingExport(
                    "sluice_on_batch (transform) or sluice_on_sink_batch (sink)".into(),
                ))
            }
        };
        let entry_ok = match module.get_export(kind.entry()) {
            Some(ExternType::Func(f)) => {
                f.params()
                    .map(|p| p.to_string())
                    .eq(["i32", "i32"].map(String::from))
                    && f.results()
                        .map(|r| r.to_string())
                        .eq(["i64"].map(String::from))
            }
            _ => false,
        };
        if !entry_ok {
            return Err(ModuleError::WrongExportType {
                name: kind.entry().into(),
                expected: "func (i32, i32) -> i64".into(),
            });
        }
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(ModuleError::MissingExport("memory".into()));
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| ModuleError::Start(format!("{e:#}")))?;
        let compiled = Arc::new(CompiledModule {
            hash: hash.clone(),
            kind,
            stateful: super::state_host::imports_state(&module),
            pre,
        });
        // The ABI version is asked of a throwaway instance, so a module of another version is
        // refused at deploy time rather than at the first batch.
        let mut store = Store::new(&self.engine, placeholder_state());
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(100);
        let instance = compiled
            .pre
            .instantiate(&mut store)
            .map_err(|e| ModuleError::Start(format!("{e:#}")))?;
        let version = instance
            .get_typed_func::<(), i32>(&mut store, "sluice_abi_version")
            .and_then(|f| f.call(&mut store, ()))
            .map_err(|e| ModuleError::Start(format!("{e:#}")))?;
        if version != ABI_VERSION {
            return Err(ModuleError::AbiVersion {
                found: version,
                expected: ABI_VERSION,
            });
        }
        self.cache.lock().insert(hash, compiled.clone());
        Ok(compiled)
    }
}

/// Host state for validation-only stores.
fn placeholder_state() -> HostState {
    HostState {
        grants: super::host::Grants::default(),
        response: Vec::new(),
        error: String::new(),
        limits: MemoryCap {
            max_bytes: 64 << 20,
            refused: false,
        },
        log: Arc::new(GuestLog::default()),
        deployment: "(validation)".into(),
        rng: 0x9e37_79b9_7f4a_7c15,
        state: Default::default(),
    }
}
