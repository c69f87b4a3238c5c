//! A live guest instance: its store (memory cap, CPU cap, log), and one call per batch.
//!
//! A trapped instance is not reused: its memory may be in any state, so the owner drops it and
//! instantiates afresh from the cached `InstancePre` for the next batch.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Memory, Store, Trap, TypedFunc};

use super::engine::{CompiledModule, WasmEngine, EPOCH_TICK};
use super::host::{Grants, GuestLog, HostState, MemoryCap};

/// Per-deployment resource caps.
#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    /// Linear memory a guest may grow to.
    pub memory_bytes: usize,
    /// CPU time one call may take.
    pub cpu_per_call: Duration,
}

impl Default for GuestLimits {
    fn default() -> GuestLimits {
        GuestLimits {
            memory_bytes: 64 << 20,
            cpu_per_call: Duration::from_secs(2),
        }
    }
}

/// How a guest call failed. None of these affect the broker or other deployments.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuestError {
    #[error("guest trapped: {0}")]
    Trap(String),
    #[error("guest exceeded its CPU time limit of {0:?} for one batch")]
    Timeout(Duration),
    #[error("guest exceeded its memory limit of {0} bytes")]
    OutOfMemory(usize),
    #[error("guest returned malformed output: {0}")]
    Malformed(String),
    #[error("guest refused to start: {0}")]
    Init(String),
}

/// One instance of a deployment's module.
pub struct Guest {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    init: TypedFunc<(i32, i32), i64>,
    on_batch: TypedFunc<(i32, i32), i64>,
    limits: GuestLimits,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest").finish_non_exhaustive()
    }
}

impl Guest {
    /// Instantiates `module` and hands it its deployment buffer (`sluice_init`).
    pub fn start(
        engine: &WasmEngine,
        module: &CompiledModule,
        limits: GuestLimits,
        log: Arc<GuestLog>,
        deployment: &str,
        init_buffer: &[u8],
    ) -> Result<Guest, GuestError> {
        Guest::start_with(
            engine,
            module,
            limits,
            log,
            deployment,
            init_buffer,
            Grants::default(),
        )
    }

    /// [`start`](Self::start) with capabilities granted (sinks).
    pub fn start_with(
        engine: &WasmEngine,
        module: &CompiledModule,
        limits: GuestLimits,
        log: Arc<GuestLog>,
        deployment: &str,
        init_buffer: &[u8],
        grants: Grants,
    ) -> Result<Guest, GuestError> {
        let mut store = Store::new(
            &engine.engine,
            HostState {
                grants,
                response: Vec::new(),
                error: String::new(),
                limits: MemoryCap {
                    max_bytes: limits.memory_bytes,
                    refused: false,
                },
                log,
                deployment: deployment.to_string(),
                rng: 0x2545_f491_4f6c_dd1d ^ (deployment.len() as u64),
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks(limits.cpu_per_call));
        let fail = |e: wasmtime::Error| GuestError::Init(format!("{e:#}"));
        let instance = module.pre.instantiate(&mut store).map_err(fail)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| GuestError::Init("no memory export".into()))?;
        let alloc = instance
            .get_typed_func(&mut store, "sluice_alloc")
            .map_err(fail)?;
        let init = instance
            .get_typed_func(&mut store, "sluice_init")
            .map_err(fail)?;
        let on_batch = instance
            .get_typed_func(&mut store, module.kind.entry())
            .map_err(fail)?;
        let mut guest = Guest {
            store,
            memory,
            alloc,
            init,
            on_batch,
            limits,
        };
        let init = guest.init.clone();
        let result = guest
            .call(init, init_buffer)
            .map_err(|e| GuestError::Init(e.to_string()))?;
        match sluice_sdk::codec::decode_init_result(&result) {
            Ok(None) => Ok(guest),
            Ok(Some(message)) => Err(GuestError::Init(message)),
            Err(e) => Err(GuestError::Init(format!("malformed init result: {e}"))),
        }
    }

    /// Runs one batch: the encoded input in, the encoded output (unchecked) out.
    /// Bytes of linear memory the instance has grown to (metrics).
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    pub fn on_batch(&mut self, input: &[u8]) -> Result<Vec<u8>, GuestError> {
        let on_batch = self.on_batch.clone();
        self.call(on_batch, input)
    }

    fn call(
        &mut self,
        func: TypedFunc<(i32, i32), i64>,
        input: &[u8],
    ) -> Result<Vec<u8>, GuestError> {
        self.store
            .set_epoch_deadline(ticks(self.limits.cpu_per_call));
        self.store.data_mut().limits.refused = false;
        let len = i32::try_from(input.len())
            .map_err(|_| GuestError::Malformed("input larger than 2 GiB".into()))?;
        let ptr = self
            .alloc
            .call(&mut self.store, len)
            .map_err(|e| self.classify(e))?;
        if ptr == 0 {
            return Err(
                self.out_of_memory_or(GuestError::Trap("sluice_alloc returned null".into()))
            );
        }
        self.write(ptr, input)?;
        let packed = func
            .call(&mut self.store, (ptr, len))
            .map_err(|e| self.classify(e))?;
        if packed < 0 {
            return Err(GuestError::Malformed(format!(
                "guest returned error status {packed}"
            )));
        }
        let out_ptr = (packed as u64 >> 32) as usize;
        let out_len = (packed as u64 & 0xffff_ffff) as usize;
        let data = self.memory.data(&self.store);
        out_ptr
            .checked_add(out_len)
            .and_then(|end| data.get(out_ptr..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                GuestError::Malformed(format!(
                    "output at {out_ptr}+{out_len} is outside guest memory"
                ))
            })
    }

    fn write(&mut self, ptr: i32, bytes: &[u8]) -> Result<(), GuestError> {
        let start = ptr as u32 as usize;
        let data = self.memory.data_mut(&mut self.store);
        match start
            .checked_add(bytes.len())
            .and_then(|end| data.get_mut(start..end))
        {
            Some(slot) => {
                slot.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(GuestError::Malformed(
                "sluice_alloc returned a buffer outside guest memory".into(),
            )),
        }
    }

    fn out_of_memory_or(&self, other: GuestError) -> GuestError {
        if self.store.data().limits.refused {
            GuestError::OutOfMemory(self.limits.memory_bytes)
        } else {
            other
        }
    }

    /// Names a failed call: CPU cap, memory cap, or a trap with the guest's last words.
    fn classify(&self, error: wasmtime::Error) -> GuestError {
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return GuestError::Timeout(self.limits.cpu_per_call);
        }
        // The trap itself says little ("unreachable executed"); a Rust guest's panic message,
        // written to stderr just before, says why.
        let trap = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let panic = self
            .store
            .data()
            .log
            .tail(5)
            .into_iter()
            .rev()
            .find(|l| l.contains("panicked"));
        let message = match panic {
            Some(p) => format!("{} ({trap})", p.replace('\n', " ")),
            None => trap,
        };
        self.out_of_memory_or(GuestError::Trap(message))
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}
