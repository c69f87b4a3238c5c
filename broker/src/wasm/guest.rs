//! A live guest instance: its store (memory cap, CPU cap, log), and one call per batch.
//!
//! A trapped instance is not reused: its memory may be in any state, so the owner drops it and
//! instantiates afresh from the cached `InstancePre` for the next batch.

use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::SinkError;
use wasmtime::{Memory, Store, Trap, TypedFunc};

use super::abi::{self, BatchInput, GuestOutput};
use super::engine::{CompiledModule, ModuleKind, WasmEngine, EPOCH_TICK};
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
    kind: ModuleKind,
    /// The input header of the last call, kept to reuse its allocation.
    header: Vec<u8>,
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
                state: Default::default(),
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
            kind: module.kind,
            header: Vec::new(),
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

    /// Runs a transform over one batch's records (ABI v2): the records are copied once, into
    /// guest memory; what comes back borrows guest memory, checked, until the next call.
    /// `outputs` is how many outputs the deployment has (section indices must be below it).
    pub fn transform<'g>(
        &'g mut self,
        input: &BatchInput<'_>,
        outputs: u32,
    ) -> Result<GuestOutput<'g>, GuestError> {
        if self.kind != ModuleKind::Transform {
            return Err(GuestError::Malformed(
                "the module is a sink, not a transform".into(),
            ));
        }
        let table = self.call_with_batch(input)?;
        let this: &'g Guest = self;
        abi::read_output(
            this.memory.data(&this.store),
            table,
            input.record_count,
            outputs,
        )
    }

    /// Delivers one batch's records to a sink (ABI v2): `Ok` with the sink's own verdict, `Err`
    /// when the guest failed (trap, limits, a result that does not parse).
    pub fn sink_batch(
        &mut self,
        input: &BatchInput<'_>,
    ) -> Result<Result<(), SinkError>, GuestError> {
        if self.kind != ModuleKind::Sink {
            return Err(GuestError::Malformed(
                "the module is a transform, not a sink".into(),
            ));
        }
        let result = self.call_with_batch(input)?;
        let bytes = self
            .memory
            .data(&self.store)
            .get(result)
            .unwrap_or_default();
        sluice_sdk::sink::decode_result(bytes)
            .ok_or_else(|| GuestError::Malformed("the sink result buffer does not parse".into()))
    }

    /// The state store the next calls read and write (`sluice.state_*`), their writes reset.
    pub fn set_state(&mut self, state: super::state_host::CallState) {
        self.store.data_mut().state = state;
    }

    /// The state writes of the last call (take them only once it succeeded).
    pub fn take_state_changes(&mut self) -> std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.store.data_mut().state.take_changes()
    }

    /// Bytes of linear memory the instance has grown to (metrics).
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Writes the input buffer for `input` (header, then the records: their one copy) into
    /// guest memory and calls the batch entry; returns where its result lies.
    fn call_with_batch(
        &mut self,
        input: &BatchInput<'_>,
    ) -> Result<std::ops::Range<usize>, GuestError> {
        let mut header = std::mem::take(&mut self.header);
        header.clear();
        let result = input.encode_header(&mut header).and_then(|()| {
            let on_batch = self.on_batch.clone();
            self.invoke(on_batch, &[&header, input.records])
        });
        self.header = header;
        result
    }

    fn call(
        &mut self,
        func: TypedFunc<(i32, i32), i64>,
        input: &[u8],
    ) -> Result<Vec<u8>, GuestError> {
        let range = self.invoke(func, &[input])?;
        Ok(self.memory.data(&self.store)[range].to_vec())
    }

    /// Asks the guest for a buffer, writes `parts` into it one after the other, calls `func` on
    /// it and returns the range of guest memory its result points at.
    fn invoke(
        &mut self,
        func: TypedFunc<(i32, i32), i64>,
        parts: &[&[u8]],
    ) -> Result<std::ops::Range<usize>, GuestError> {
        self.store
            .set_epoch_deadline(ticks(self.limits.cpu_per_call));
        self.store.data_mut().limits.refused = false;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let len = i32::try_from(total)
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
        let mut at = ptr as u32 as usize;
        for part in parts {
            self.write(at, part)?;
            at += part.len();
        }
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
        let size = self.memory.data_size(&self.store);
        match out_ptr.checked_add(out_len) {
            Some(end) if end <= size => Ok(out_ptr..end),
            _ => Err(GuestError::Malformed(format!(
                "output at {out_ptr}+{out_len} is outside guest memory"
            ))),
        }
    }

    fn write(&mut self, start: usize, bytes: &[u8]) -> Result<(), GuestError> {
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
            // A host function's refusal (a state store over its cap, ...) is the root cause;
            // the outer layers only say where in the guest it happened.
            None => error.root_cause().to_string(),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::records::record::{write_record, RecordIter};
    use crate::wasm::engine::ModuleError;
    use sluice_sdk::codec::{encode_deployment, encode_output_table, Deployment, SectionRef};

    const TABLE_AT: u32 = 1024;
    const RECORDS_AT: u32 = 4096;

    fn escaped(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("\\{b:02x}")).collect()
    }

    /// A module that answers every batch with `table` (at 1024) over `records` (at 4096), or
    /// points its result at `result` if given.
    fn scripted(version: i32, table: &[u8], records: &[u8], result: Option<(u32, u32)>) -> Vec<u8> {
        let (ptr, len) = result.unwrap_or((TABLE_AT, table.len() as u32));
        let packed = (u64::from(ptr) << 32) | u64::from(len);
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 2)
                (data (i32.const 512) "\00")
                (data (i32.const {TABLE_AT}) "{}")
                (data (i32.const {RECORDS_AT}) "{}")
                (func (export "sluice_abi_version") (result i32) i32.const {version})
                (func (export "sluice_alloc") (param i32) (result i32) i32.const 32768)
                (func (export "sluice_init") (param i32 i32) (result i64) i64.const 2199023255553)
                (func (export "sluice_on_batch") (param i32 i32) (result i64) i64.const {packed}))"#,
            escaped(table),
            escaped(records)
        ))
        .unwrap()
    }

    fn start(engine: &WasmEngine, module: &[u8]) -> Guest {
        let compiled = engine.compile(module).unwrap();
        let init = encode_deployment(&Deployment {
            outputs: vec!["out".into()],
            env: vec![],
        });
        Guest::start(
            engine,
            &compiled,
            GuestLimits::default(),
            Arc::new(GuestLog::default()),
            "test",
            &init,
        )
        .unwrap()
    }

    fn two_records() -> Vec<u8> {
        let mut area = Vec::new();
        write_record(&mut area, 0, 0, Some(b"k"), Some(b"A"), std::iter::empty());
        write_record(&mut area, 1, 7, None, Some(b"B"), std::iter::empty());
        area
    }

    fn table(sections: &[SectionRef], errors: &[(u32, String)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_output_table(&mut out, sections, errors);
        out
    }

    fn section(records: &[u8]) -> SectionRef {
        SectionRef {
            output: 0,
            record_count: 2,
            base_timestamp: 100,
            max_timestamp: 107,
            records_ptr: RECORDS_AT,
            records_len: records.len() as u32,
        }
    }

    const INPUT: BatchInput<'static> = BatchInput {
        topic: "in",
        partition: 0,
        base_offset: 0,
        base_timestamp: 0,
        record_count: 2,
        records: &[],
    };

    #[test]
    fn a_module_of_another_abi_version_is_refused_naming_both() {
        let engine = WasmEngine::new().unwrap();
        let err = engine.compile(&scripted(1, &[], &[], None)).unwrap_err();
        assert!(matches!(
            err,
            ModuleError::AbiVersion {
                found: 1,
                expected: 2
            }
        ));
        let message = err.to_string();
        assert!(
            message.contains("ABI version 1") && message.contains("speaks version 2"),
            "{message}"
        );
    }

    #[test]
    fn well_formed_sections_are_borrowed_from_guest_memory() {
        let engine = WasmEngine::new().unwrap();
        let records = two_records();
        let module = scripted(
            2,
            &table(&[section(&records)], &[(1, "why".into())]),
            &records,
            None,
        );
        let mut guest = start(&engine, &module);
        let out = guest.transform(&INPUT, 1).unwrap();
        assert_eq!(out.errors, vec![(1, "why".to_string())]);
        assert_eq!(out.sections.len(), 1);
        let s = out.sections[0];
        assert_eq!(
            (s.output, s.record_count, s.base_timestamp, s.max_timestamp),
            (0, 2, 100, 107)
        );
        assert_eq!(s.records, &records[..]);
        let values: Vec<_> = RecordIter::new(s.records)
            .map(|r| r.unwrap().value)
            .collect();
        assert_eq!(values, vec![Some(&b"A"[..]), Some(&b"B"[..])]);
    }

    #[test]
    fn malformed_output_sections_are_classified_as_malformed() {
        let engine = WasmEngine::new().unwrap();
        let records = two_records();
        let good = section(&records);
        let mut bad_varint = records.clone();
        bad_varint[0] = 0xff; // the first length never ends within the record
        type Case = (&'static str, Vec<u8>, Vec<u8>, Option<(u32, u32)>);
        let cases: Vec<Case> = vec![
            ("bad varint", table(&[good], &[]), vec![0xff; 16], None),
            ("bad length", table(&[good], &[]), bad_varint, None),
            (
                "lengths not summing (bytes past the last record)",
                table(
                    &[SectionRef {
                        records_len: good.records_len + 3,
                        ..good
                    }],
                    &[],
                ),
                [records.clone(), vec![0, 0, 0]].concat(),
                None,
            ),
            (
                "lengths not summing (cut short)",
                table(
                    &[SectionRef {
                        records_len: good.records_len - 1,
                        ..good
                    }],
                    &[],
                ),
                records.clone(),
                None,
            ),
            (
                "count mismatch",
                table(
                    &[SectionRef {
                        record_count: 3,
                        ..good
                    }],
                    &[],
                ),
                records.clone(),
                None,
            ),
            (
                "max timestamp mismatch",
                table(
                    &[SectionRef {
                        max_timestamp: 1,
                        ..good
                    }],
                    &[],
                ),
                records.clone(),
                None,
            ),
            (
                "output index out of range",
                table(&[SectionRef { output: 1, ..good }], &[]),
                records.clone(),
                None,
            ),
            (
                "error for an input out of range",
                table(&[good], &[(2, "x".into())]),
                records.clone(),
                None,
            ),
            (
                "records pointer out of bounds",
                table(
                    &[SectionRef {
                        records_ptr: 131_068,
                        ..good
                    }],
                    &[],
                ),
                records.clone(),
                None,
            ),
            (
                "table pointer out of bounds",
                table(&[good], &[]),
                records.clone(),
                Some((131_060, 100)),
            ),
            (
                "table cut short",
                table(&[good], &[]),
                records.clone(),
                Some((TABLE_AT, 20)),
            ),
        ];
        let expected = [
            "not a varint",
            "negative",
            "bytes follow",
            "overruns",
            "announces 3",
            "max_timestamp",
            "output index 1",
            "input record 2",
            "outside guest memory",
            "outside guest memory",
            "claims",
        ];
        for ((what, table, records, result), expected) in cases.into_iter().zip(expected) {
            let mut guest = start(&engine, &scripted(2, &table, &records, result));
            match guest.transform(&INPUT, 1) {
                Err(GuestError::Malformed(message)) => {
                    assert!(message.contains(expected), "{what}: {message}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    /// Builds guest examples for wasm32-wasip1 (as the e2e harness does) and returns the path
    /// of `name`'s module.
    fn built_guest(name: &str) -> std::path::PathBuf {
        static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let dir = BUILT.get_or_init(|| {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--profile", "guest", "--target", "wasm32-wasip1"])
                .args(["-p", "uppercase", "-p", "jsonl-sink"])
                .current_dir(&root)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "building the guests (is wasm32-wasip1 installed?)"
            );
            // A relative CARGO_TARGET_DIR is the workspace root's, as cargo reads it.
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root.join("target"), |t| root.join(t));
            target.join("wasm32-wasip1").join("guest")
        });
        dir.join(format!("{}.wasm", name.replace('-', "_")))
    }

    /// A test record: its value and headers.
    type TestRecord<'a> = (Option<&'a [u8]>, &'a [(&'a [u8], Option<&'a [u8]>)]);

    fn kafka_records(values: &[TestRecord<'_>]) -> Vec<u8> {
        let mut area = Vec::new();
        for (i, (value, headers)) in values.iter().enumerate() {
            write_record(
                &mut area,
                i as i32,
                i as i64 * 10,
                Some(b"key"),
                *value,
                headers.iter().copied(),
            );
        }
        area
    }

    #[test]
    fn a_real_guest_transforms_kafka_records_into_a_batch() {
        use crate::records::batch;
        use crate::records::build::{build_encoded, BatchMeta, EncodedRecords};
        use crate::records::record::decode_records;
        use crate::records::Compression;

        let engine = WasmEngine::new().unwrap();
        let module = std::fs::read(built_guest("uppercase")).unwrap();
        let mut guest = start(&engine, &module);
        let area = kafka_records(&[
            (Some(b"hello"), &[(b"h", Some(b"v"))]),
            (None, &[]),
            (Some(b"third one"), &[(b"n", None)]),
        ]);
        // The whole batch, then its last two records alone (a sub-range, same bases).
        let first_len = RecordIter::new(&area).next().unwrap().unwrap().raw.len();
        for (records, count, first) in [(&area[..], 3u32, 0usize), (&area[first_len..], 2, 1)] {
            let input = BatchInput {
                topic: "in",
                partition: 2,
                base_offset: 500,
                base_timestamp: 1_000,
                record_count: count,
                records,
            };
            let out = guest.transform(&input, 1).unwrap();
            assert!(out.errors.is_empty());
            let [s] = out.sections[..] else {
                panic!("one section expected: {:?}", out.sections)
            };
            assert_eq!(s.record_count, count);
            assert_eq!(s.base_timestamp, 1_000 + 10 * first as i64);
            assert_eq!(s.max_timestamp, 1_020);
            let built = build_encoded(
                &EncodedRecords {
                    records: s.records,
                    count: s.record_count as i32,
                    base_timestamp: s.base_timestamp,
                    max_timestamp: s.max_timestamp,
                },
                Compression::Lz4,
                &BatchMeta::default(),
            );
            batch::validate(&built, 1 << 20).unwrap();
            let (_, decoded) = decode_records(&built, 1 << 20).unwrap();
            let expected: Vec<(Option<&[u8]>, i64)> = [
                (Some(&b"HELLO"[..]), 1_000),
                (None, 1_010),
                (Some(&b"THIRD ONE"[..]), 1_020),
            ][first..]
                .to_vec();
            let got: Vec<(Option<&[u8]>, i64)> = decoded
                .iter()
                .map(|r| (r.value.as_deref(), r.timestamp))
                .collect();
            assert_eq!(got, expected);
            assert!(decoded
                .iter()
                .all(|r| r.key.as_deref() == Some(&b"key"[..])));
            assert_eq!(
                decoded.last().unwrap().headers,
                vec![("n".to_string(), None)]
            );
        }
        // Records that do not frame: the SDK refuses the batch (a negative result), the host
        // calls that a failed batch, and nothing panics on either side.
        for garbage in [
            vec![0xff; 40],
            vec![0x02, 0x00],
            area[..area.len() - 1].to_vec(),
        ] {
            let input = BatchInput {
                topic: "in",
                partition: 2,
                base_offset: 0,
                base_timestamp: 0,
                record_count: 3,
                records: &garbage,
            };
            assert!(matches!(
                guest.transform(&input, 1),
                Err(GuestError::Malformed(m)) if m.contains("error status")
            ));
        }
    }

    #[test]
    fn a_real_sink_reads_offsets_and_timestamps_from_the_bases() {
        let engine = WasmEngine::new().unwrap();
        let module = engine
            .compile(&std::fs::read(built_guest("jsonl-sink")).unwrap())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let init = encode_deployment(&Deployment::default());
        let grants = Grants {
            file_dir: Some(dir.path().to_path_buf()),
            http_allow: vec![],
        };
        // The sink syncs what it appends: on a busy disk that can take longer than the default
        // per-call limit, which this test is not about.
        let limits = GuestLimits {
            cpu_per_call: Duration::from_secs(60),
            ..GuestLimits::default()
        };
        let mut guest = Guest::start_with(
            &engine,
            &module,
            limits,
            Arc::new(GuestLog::default()),
            "sink",
            &init,
            grants,
        )
        .unwrap();
        let area = kafka_records(&[(Some(b"a"), &[]), (Some(b"b"), &[(b"h", Some(b"1"))])]);
        let input = BatchInput {
            topic: "in",
            partition: 1,
            base_offset: 40,
            base_timestamp: 7_000,
            record_count: 2,
            records: &area,
        };
        assert_eq!(guest.sink_batch(&input).unwrap(), Ok(()));
        assert!(
            guest.transform(&input, 1).is_err(),
            "a sink is not a transform"
        );
        let text = std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0]["offset"].as_i64(), lines[0]["timestamp"].as_i64()),
            (Some(40), Some(7_000))
        );
        assert_eq!(
            (lines[1]["offset"].as_i64(), lines[1]["timestamp"].as_i64()),
            (Some(41), Some(7_010))
        );
        assert_eq!(lines[1]["headers"]["h"], "1");
        assert_eq!(lines[1]["partition"], 1);
    }
}
