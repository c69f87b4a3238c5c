//! The host side of a transform's state store and table lookups: `sluice.state_get`,
//! `state_put`, `state_delete` and `table_lookup` (`sdk/ABI.md`).
//!
//! A call's puts and deletes are held here, in the call's own overlay, and handed to the owner
//! only once the call succeeded ([`CallState::take_changes`]): a trapped call leaves nothing.
//! Reads see the overlay first, then the committed store behind [`StateBackend`].

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::{Caller, Extern, Linker};

use super::host::HostState;

/// Longest key a guest may use (as the SDK's `state::MAX_KEY_BYTES`).
pub const MAX_KEY_BYTES: usize = sluice_sdk::state::MAX_KEY_BYTES;

/// What a guest's state calls read from: the deployment's committed store and its tables.
pub trait StateBackend: Send + Sync {
    /// The committed value of `key` in input `partition`'s store.
    fn get(&self, partition: i32, key: &[u8]) -> Option<Vec<u8>>;
    /// Bytes (keys plus values) the deployment's store holds, all partitions together.
    fn used_bytes(&self) -> u64;
    /// The deployment's cap on [`used_bytes`](Self::used_bytes).
    fn max_bytes(&self) -> u64;
    /// The latest value of `key` in the table topic `table`; `Err` names why the lookup is
    /// refused (not one of the deployment's tables).
    fn lookup(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// The deployment's name, for messages.
    fn name(&self) -> &str;
}

/// One call's view of the store. Empty (no backend) outside a transform's batch call.
#[derive(Default)]
pub struct CallState {
    backend: Option<(Arc<dyn StateBackend>, i32)>,
    /// The call's writes: key -> new value (`None`: deleted).
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// How much the overlay adds to the committed store's size (may be negative).
    delta: i64,
}

impl std::fmt::Debug for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallState")
            .field("writes", &self.overlay.len())
            .finish_non_exhaustive()
    }
}

impl CallState {
    /// A call for input `partition`, reading from `backend`.
    pub fn new(backend: Arc<dyn StateBackend>, partition: i32) -> CallState {
        CallState {
            backend: Some((backend, partition)),
            overlay: BTreeMap::new(),
            delta: 0,
        }
    }

    /// The call's writes, once it succeeded.
    pub fn take_changes(&mut self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.delta = 0;
        std::mem::take(&mut self.overlay)
    }

    fn backend(&self) -> Result<(&Arc<dyn StateBackend>, i32), wasmtime::Error> {
        match &self.backend {
            Some((b, p)) => Ok((b, *p)),
            None => Err(wasmtime::format_err!(
                "state and tables are only available to a transform while it runs a batch"
            )),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, wasmtime::Error> {
        let (backend, partition) = self.backend()?;
        Ok(match self.overlay.get(key) {
            Some(v) => v.clone(),
            None => backend.get(partition, key),
        })
    }

    fn size_of(&self, key: &[u8]) -> Result<i64, wasmtime::Error> {
        Ok(self.get(key)?.map_or(0, |v| (key.len() + v.len()) as i64))
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), wasmtime::Error> {
        if key.is_empty() {
            return Err(wasmtime::format_err!("state keys must not be empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(wasmtime::format_err!(
                "state key of {} bytes is longer than {MAX_KEY_BYTES}",
                key.len()
            ));
        }
        let before = self.size_of(&key)?;
        let after = value.as_ref().map_or(0, |v| (key.len() + v.len()) as i64);
        let delta = self.delta + after - before;
        if after > before {
            let (backend, _) = self.backend()?;
            let total = backend.used_bytes() as i64 + delta;
            if total > backend.max_bytes() as i64 {
                return Err(wasmtime::format_err!(
                    "the state store of transform '{}' would grow to {total} bytes, over its cap of {} bytes (--state-max-bytes)",
                    backend.name(),
                    backend.max_bytes()
                ));
            }
        }
        self.delta = delta;
        self.overlay.insert(key, value);
        Ok(())
    }
}

fn memory(caller: &mut Caller<'_, HostState>) -> Option<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// `len` bytes at `ptr` of guest memory; a bad buffer traps the call.
fn read(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, wasmtime::Error> {
    let bytes = memory(caller).and_then(|mem| {
        let start = usize::try_from(ptr).ok()?;
        let len = usize::try_from(len).ok()?;
        mem.data(&caller)
            .get(start..start.checked_add(len)?)
            .map(<[u8]>::to_vec)
    });
    bytes.ok_or_else(|| wasmtime::format_err!("a state call's buffer is outside guest memory"))
}

/// Copies `value` to `(out, cap)` if it fits; returns its length, or -1 for no value.
fn answer(
    caller: &mut Caller<'_, HostState>,
    value: Option<Vec<u8>>,
    out: i32,
    cap: i32,
) -> Result<i32, wasmtime::Error> {
    let Some(value) = value else {
        return Ok(-1);
    };
    let n = i32::try_from(value.len())
        .map_err(|_| wasmtime::format_err!("a state value is larger than 2 GiB"))?;
    if n <= cap {
        let fits = memory(caller).and_then(|mem| {
            let start = usize::try_from(out).ok()?;
            let slot = mem
                .data_mut(&mut *caller)
                .get_mut(start..start.checked_add(value.len())?)?;
            slot.copy_from_slice(&value);
            Some(())
        });
        fits.ok_or_else(|| wasmtime::format_err!("a state call's buffer is outside guest memory"))?;
    }
    Ok(n)
}

/// Adds the state and table imports to `linker`.
pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "sluice",
        "state_get",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         out: i32,
         cap: i32|
         -> wasmtime::Result<i32> {
            let key = read(&mut caller, key_ptr, key_len)?;
            let value = caller.data().state.get(&key)?;
            answer(&mut caller, value, out, cap)
        },
    )?;
    linker.func_wrap(
        "sluice",
        "state_put",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> wasmtime::Result<()> {
            let key = read(&mut caller, key_ptr, key_len)?;
            let value = read(&mut caller, value_ptr, value_len)?;
            caller.data_mut().state.write(key, Some(value))
        },
    )?;
    linker.func_wrap(
        "sluice",
        "state_delete",
        |mut caller: Caller<'_, HostState>, key_ptr: i32, key_len: i32| -> wasmtime::Result<()> {
            let key = read(&mut caller, key_ptr, key_len)?;
            caller.data_mut().state.write(key, None)
        },
    )?;
    linker.func_wrap(
        "sluice",
        "table_lookup",
        |mut caller: Caller<'_, HostState>,
         table_ptr: i32,
         table_len: i32,
         key_ptr: i32,
         key_len: i32,
         out: i32,
         cap: i32|
         -> wasmtime::Result<i32> {
            let table = read(&mut caller, table_ptr, table_len)?;
            let table = String::from_utf8_lossy(&table).into_owned();
            let key = read(&mut caller, key_ptr, key_len)?;
            let (backend, _) = caller.data().state.backend()?;
            let value = backend.lookup(&table, &key).map_err(wasmtime::Error::msg)?;
            answer(&mut caller, value, out, cap)
        },
    )?;
    Ok(())
}

/// Whether a module imports any of the state calls (and so needs a changelog).
pub fn imports_state(module: &wasmtime::Module) -> bool {
    module.imports().any(|i| {
        i.module() == "sluice" && matches!(i.name(), "state_get" | "state_put" | "state_delete")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(BTreeMap<Vec<u8>, Vec<u8>>, u64);

    impl StateBackend for Fixed {
        fn get(&self, _: i32, key: &[u8]) -> Option<Vec<u8>> {
            self.0.get(key).cloned()
        }
        fn used_bytes(&self) -> u64 {
            self.0.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
        }
        fn max_bytes(&self) -> u64 {
            self.1
        }
        fn lookup(&self, table: &str, _: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Err(format!("no table {table}"))
        }
        fn name(&self) -> &str {
            "t"
        }
    }

    #[test]
    fn writes_are_read_back_and_the_cap_counts_what_they_add() {
        let committed = BTreeMap::from([(b"a".to_vec(), b"123".to_vec())]);
        let mut call = CallState::new(Arc::new(Fixed(committed, 10)), 0);
        assert_eq!(call.get(b"a").unwrap(), Some(b"123".to_vec()));
        // 4 bytes used; replacing "a"'s value by 6 bytes makes 7, adding "bb" -> "wxyz" 13:
        // over 10.
        call.write(b"a".to_vec(), Some(b"123456".to_vec())).unwrap();
        let err = call
            .write(b"bb".to_vec(), Some(b"wxyz".to_vec()))
            .unwrap_err();
        assert!(
            err.to_string().contains("over its cap of 10 bytes"),
            "{err}"
        );
        // Deleting frees room.
        call.write(b"a".to_vec(), None).unwrap();
        call.write(b"bb".to_vec(), Some(b"x".to_vec())).unwrap();
        assert_eq!(call.get(b"a").unwrap(), None);
        assert!(call.write(Vec::new(), Some(vec![])).is_err());
        let changes = call.take_changes();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[&b"a".to_vec()], None);
    }

    #[test]
    fn outside_a_batch_call_state_is_refused() {
        let call = CallState::default();
        assert!(call.get(b"a").is_err());
    }
}
