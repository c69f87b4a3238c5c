//! The deployed transforms: their modules, live instances, counters and logs; persisted in
//! `__sluice/transforms.json` with modules stored by hash in `__sluice/modules/`, and their
//! progress in `__sluice/transform-progress.json` (see [`super::progress`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use super::deployment::Deployment;
use super::progress::{self, PartitionProgress};
use crate::meta::MetaDir;
use crate::wasm::engine::ModuleError;
use crate::wasm::host::GuestLog;
use crate::wasm::{CompiledModule, Guest, GuestError, GuestLimits, WasmEngine};

/// Why a deployment change was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Invalid(String),
    #[error("no module with hash {0} was uploaded")]
    UnknownModule(String),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("the module failed to start with this deployment's config: {0}")]
    Start(GuestError),
    #[error("transform '{0}' already exists")]
    Exists(String),
    #[error("no transform named '{0}'")]
    NotFound(String),
    #[error("deploying '{name}' would close a cycle: {path}")]
    Cycle { name: String, path: String },
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// Orders transformed appends to one input partition.
type PartitionLock = Arc<Mutex<()>>;

/// Counters shown by `describe`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub batches: AtomicU64,
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub rejected: AtomicU64,
    pub skipped: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub failures: AtomicU64,
}

/// A deployment and what runs it.
pub struct Running {
    /// Per input partition progress. Changed only under the partition's lock (see
    /// [`TransformRegistry::partition_lock`]), so a copy taken under it is a batch boundary.
    pub progress: Mutex<BTreeMap<i32, PartitionProgress>>,
    /// The progress changed since the last checkpoint.
    pub(crate) progress_dirty: std::sync::atomic::AtomicBool,
    pub deployment: RwLock<Deployment>,
    module: Arc<CompiledModule>,
    /// Idle instances; a call takes one (or starts one) and gives it back unless it trapped.
    idle: Mutex<Vec<Guest>>,
    pub log: Arc<GuestLog>,
    pub stats: Stats,
    pub last_error: Mutex<Option<String>>,
    limits: GuestLimits,
    /// Its state stores and tables (empty unless the module imports the state calls or the
    /// deployment names tables).
    pub state: Arc<super::state::DeploymentState>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("deployment", &*self.deployment.read())
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Runs `work` on an idle instance (started if there is none), timed for the metrics. The
    /// instance is kept for the next batch unless `work` failed: a failed instance's memory may
    /// be in any state.
    pub fn with_guest<R>(
        &self,
        engine: &WasmEngine,
        work: impl FnOnce(&mut Guest) -> Result<R, GuestError>,
    ) -> Result<R, GuestError> {
        let guest = self.idle.lock().pop();
        let mut guest = match guest {
            Some(g) => g,
            None => {
                let d = self.deployment.read().clone();
                // An in-place transform's one output is its input topic.
                let outputs = if d.in_place {
                    vec![d.input.clone()]
                } else {
                    d.outputs.clone()
                };
                let init = sluice_sdk::codec::encode_deployment(&sluice_sdk::codec::Deployment {
                    outputs,
                    env: d.env.clone(),
                });
                Guest::start(
                    engine,
                    &self.module,
                    self.limits(),
                    self.log.clone(),
                    &d.name,
                    &init,
                )?
            }
        };
        let started = crate::metrics::clock();
        let result = work(&mut guest);
        if started.is_some() {
            let failure = result.as_ref().err().map(failure_kind);
            crate::metrics::transform_call(&self.deployment.read().name, started, failure);
        }
        if result.is_ok() {
            self.idle.lock().push(guest);
        }
        result
    }

    /// Idle instances kept for the next batches and their linear memory in bytes (metrics).
    pub fn idle_instances(&self) -> (usize, usize) {
        let idle = self.idle.lock();
        (idle.len(), idle.iter().map(Guest::memory_bytes).sum())
    }

    pub fn name(&self) -> String {
        self.deployment.read().name.clone()
    }

    /// The memory and CPU caps its guests run with: the deployment's own, else the broker's.
    pub fn limits(&self) -> GuestLimits {
        self.deployment.read().limits(self.limits)
    }

    /// How many outputs the guest may name (an in-place transform's one is its input topic).
    pub fn output_count(&self) -> usize {
        let d = self.deployment.read();
        if d.in_place {
            1
        } else {
            d.outputs.len().max(1)
        }
    }

    /// Whether inputs before the deployment are still being run in `partition` (`--from`).
    pub fn is_backfilling(&self, partition: i32) -> bool {
        self.progress
            .lock()
            .get(&partition)
            .is_some_and(|p| p.backfilling)
    }

    /// Applies `change` to input `partition`'s progress; the caller holds the partition lock.
    pub(crate) fn update_progress(
        &self,
        partition: i32,
        change: impl FnOnce(&mut PartitionProgress),
    ) {
        change(self.progress.lock().entry(partition).or_default());
        self.progress_dirty.store(true, Ordering::Release);
    }

    /// Remembers a failure for `describe` (and counts it).
    pub fn failed(&self, message: &str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(message.to_string());
    }
}

/// The metrics' name for a guest failure.
fn failure_kind(e: &GuestError) -> crate::metrics::GuestFailure {
    use crate::metrics::GuestFailure as F;
    match e {
        GuestError::Trap(_) => F::Trap,
        GuestError::Timeout(_) => F::Timeout,
        GuestError::OutOfMemory(_) => F::OutOfMemory,
        GuestError::Malformed(_) => F::MalformedOutput,
        GuestError::Init(_) => F::Start,
    }
}

/// All deployments.
#[derive(Debug)]
pub struct TransformRegistry {
    meta: MetaDir,
    pub engine: Arc<WasmEngine>,
    deployments: RwLock<BTreeMap<String, Arc<Running>>>,
    /// Serializes deploy/remove so the cycle check sees a stable graph.
    admin: Mutex<()>,
    /// One lock per transformed input partition (offsets predicted, guests run, appends made).
    partition_locks: Mutex<HashMap<(String, i32), PartitionLock>>,
    limits: GuestLimits,
}

impl TransformRegistry {
    /// Loads the deployments under `meta_dir` (modules are recompiled; a module that no longer
    /// validates is logged and left out).
    pub fn open(
        meta: &MetaDir,
        engine: Arc<WasmEngine>,
        limits: GuestLimits,
    ) -> std::io::Result<TransformRegistry> {
        std::fs::create_dir_all(meta.modules())?;
        let registry = TransformRegistry {
            meta: meta.clone(),
            engine,
            deployments: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            partition_locks: Mutex::new(HashMap::new()),
            limits,
        };
        let path = registry.meta.transforms();
        let saved: Vec<Deployment> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not valid: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut saved_progress = progress::load(meta)?;
        for d in saved {
            match registry.compile_stored(&d.module) {
                Ok(module) => {
                    let running = registry.running(d.clone(), module);
                    if let Some(p) = saved_progress.remove(&d.name) {
                        *running.progress.lock() = p;
                    }
                    registry.deployments.write().insert(d.name.clone(), running);
                }
                Err(e) => tracing::error!(transform = %d.name, "cannot load transform: {e}"),
            }
        }
        Ok(registry)
    }

    fn running(&self, deployment: Deployment, module: Arc<CompiledModule>) -> Arc<Running> {
        let state = Arc::new(super::state::DeploymentState::new(
            &deployment.name,
            module.stateful,
            deployment
                .state_max_bytes
                .unwrap_or(super::state::DEFAULT_MAX_BYTES),
            &deployment.tables,
        ));
        Arc::new(Running {
            state,
            progress: Mutex::new(BTreeMap::new()),
            progress_dirty: std::sync::atomic::AtomicBool::new(false),
            deployment: RwLock::new(deployment),
            module,
            idle: Mutex::new(Vec::new()),
            log: Arc::new(GuestLog::default()),
            stats: Stats::default(),
            last_error: Mutex::new(None),
            limits: self.limits,
        })
    }

    fn module_path(&self, hash: &str) -> PathBuf {
        self.meta.module(hash)
    }

    /// An uploaded module, compiled (sinks use this too).
    pub fn module(&self, hash: &str) -> Result<Arc<CompiledModule>, DeployError> {
        self.compile_stored(hash)
    }

    fn compile_stored(&self, hash: &str) -> Result<Arc<CompiledModule>, DeployError> {
        if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(DeployError::UnknownModule(hash.to_string()));
        }
        let bytes = std::fs::read(self.module_path(hash))
            .map_err(|_| DeployError::UnknownModule(hash.to_string()))?;
        Ok(self.engine.compile(&bytes)?)
    }

    /// The bytes of an uploaded module as stored here, if this broker has it (cluster mode
    /// shares them through the object store).
    pub fn module_bytes(&self, hash: &str) -> Option<Vec<u8>> {
        if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        std::fs::read(self.module_path(hash)).ok()
    }

    /// Whether this broker has module `hash` stored (without reading it).
    pub fn has_module(&self, hash: &str) -> bool {
        !hash.is_empty()
            && hash.chars().all(|c| c.is_ascii_hexdigit())
            && self.module_path(hash).is_file()
    }

    /// Validates and stores an uploaded module; returns its hash.
    pub fn upload_module(&self, bytes: &[u8]) -> Result<String, DeployError> {
        let compiled = self.engine.compile(bytes)?;
        let path = self.module_path(&compiled.hash);
        if !path.exists() {
            crate::meta::write_atomically(&path, bytes)?;
        }
        Ok(compiled.hash.clone())
    }

    /// Adds a deployment (its module must have been uploaded).
    /// `start` is where each input partition starts: at its end (only new writes are
    /// transformed) or, for a backfill, at an earlier offset the background catch-up runs from.
    pub fn deploy(
        &self,
        deployment: Deployment,
        start: Vec<(i32, PartitionProgress)>,
    ) -> Result<Arc<Running>, DeployError> {
        deployment.validate().map_err(DeployError::Invalid)?;
        let _admin = self.admin.lock();
        if self.deployments.read().contains_key(&deployment.name) {
            return Err(DeployError::Exists(deployment.name));
        }
        let module = self.compile_stored(&deployment.module)?;
        if module.kind != crate::wasm::engine::ModuleKind::Transform {
            return Err(DeployError::Invalid(
                "this module is a sink (it exports sluice_on_sink_batch); deploy it as a connector"
                    .into(),
            ));
        }
        if let Some(path) = self.cycle_with(&deployment) {
            return Err(DeployError::Cycle {
                name: deployment.name,
                path,
            });
        }
        let running = self.running(deployment.clone(), module);
        // Start one instance now (and run it on an empty batch) so a module that rejects its
        // config fails the deploy, not the first produce. What it answers to nothing is not
        // judged: a malformed answer fails its batches later, under the deployment's policy.
        let empty = crate::wasm::abi::BatchInput {
            topic: &deployment.input,
            partition: 0,
            base_offset: 0,
            base_timestamp: 0,
            record_count: 0,
            records: &[],
        };
        let outputs = u32::try_from(running.output_count()).unwrap_or(u32::MAX);
        match running.with_guest(&self.engine, |g| g.transform(&empty, outputs).map(drop)) {
            Ok(()) | Err(GuestError::Malformed(_)) => {}
            Err(e) => return Err(DeployError::Start(e)),
        }
        {
            // Inputs already stored before the deployment are not transformed.
            let mut progress = running.progress.lock();
            progress.clear();
            progress.extend(start);
        }
        running.progress_dirty.store(true, Ordering::Release);
        self.deployments
            .write()
            .insert(deployment.name.clone(), running.clone());
        if let Err(e) = self.save().and_then(|()| self.checkpoint()) {
            self.deployments.write().remove(&deployment.name);
            return Err(e.into());
        }
        Ok(running)
    }

    /// A path `a -> b -> ... -> a` the new deployment would create, if any.
    fn cycle_with(&self, new: &Deployment) -> Option<String> {
        let mut edges: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.deployments.read().values() {
            let d = r.deployment.read();
            edges
                .entry(d.input.clone())
                .or_default()
                .extend(d.outputs.iter().cloned());
        }
        edges
            .entry(new.input.clone())
            .or_default()
            .extend(new.outputs.iter().cloned());
        // Depth-first from each of the new outputs: reaching the new input closes a cycle.
        for start in &new.outputs {
            let mut stack = vec![vec![new.input.clone(), start.clone()]];
            let mut seen = HashSet::new();
            while let Some(path) = stack.pop() {
                let Some(last) = path.last().cloned() else {
                    continue;
                };
                if last == new.input {
                    return Some(path.join(" -> "));
                }
                if !seen.insert(last.clone()) {
                    continue;
                }
                for next in edges.get(&last).into_iter().flatten() {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push(p);
                }
            }
        }
        None
    }

    pub fn remove(&self, name: &str) -> Result<(), DeployError> {
        let _admin = self.admin.lock();
        if self.deployments.write().remove(name).is_none() {
            return Err(DeployError::NotFound(name.to_string()));
        }
        self.save()?;
        self.checkpoint()?;
        Ok(())
    }

    pub fn set_paused(&self, name: &str, paused: bool) -> Result<(), DeployError> {
        let _admin = self.admin.lock();
        let running = self
            .get(name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        running.deployment.write().paused = paused;
        self.save()?;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Running>> {
        self.deployments.read().get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Running>> {
        self.deployments.read().values().cloned().collect()
    }

    /// Whether any active deployment reads `topic`.
    pub fn has_topic(&self, topic: &str) -> bool {
        self.deployments.read().values().any(|r| {
            let d = r.deployment.read();
            d.input == topic && !d.paused
        })
    }

    /// Active (not paused) deployments reading `topic`, in-place ones first.
    pub fn for_topic(&self, topic: &str) -> Vec<Arc<Running>> {
        let deployments = self.deployments.read();
        if deployments.is_empty() {
            return Vec::new();
        }
        let mut found: Vec<Arc<Running>> = deployments
            .values()
            .filter(|r| {
                let d = r.deployment.read();
                d.input == topic && !d.paused
            })
            .cloned()
            .collect();
        found.sort_by_key(|r| !r.deployment.read().in_place);
        found
    }

    /// The lock ordering transformed appends to `topic`/`partition`.
    pub fn partition_lock(&self, topic: &str, partition: i32) -> Arc<Mutex<()>> {
        self.partition_locks
            .lock()
            .entry((topic.to_string(), partition))
            .or_default()
            .clone()
    }

    fn save(&self) -> std::io::Result<()> {
        let all: Vec<Deployment> = self
            .deployments
            .read()
            .values()
            .map(|r| r.deployment.read().clone())
            .collect();
        let json = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
        crate::meta::write_atomically(&self.meta.transforms(), &json)
    }

    /// Saves every deployment's progress if any changed since the last checkpoint. Each
    /// partition's progress is copied under its partition lock, so the file always holds batch
    /// boundaries. It is written periodically rather than per batch: a checkpoint older than the
    /// log only makes recovery re-run more inputs, whose outputs the output logs recognise by
    /// their sequence numbers.
    pub fn checkpoint(&self) -> std::io::Result<()> {
        let all = self.list();
        let changed = all
            .iter()
            .any(|r| r.progress_dirty.swap(false, Ordering::AcqRel));
        if !changed && self.meta.transform_progress().exists() {
            return Ok(());
        }
        let mut snapshot = BTreeMap::new();
        for running in &all {
            let (name, input) = {
                let d = running.deployment.read();
                (d.name.clone(), d.input.clone())
            };
            let partitions: Vec<i32> = running.progress.lock().keys().copied().collect();
            let mut copy = BTreeMap::new();
            for p in partitions {
                let lock = self.partition_lock(&input, p);
                let _turn = lock.lock();
                if let Some(pp) = running.progress.lock().get(&p) {
                    copy.insert(p, pp.clone());
                }
            }
            snapshot.insert(name, copy);
        }
        let saved = progress::save(&self.meta, &snapshot);
        if saved.is_err() {
            for r in &all {
                r.progress_dirty.store(true, Ordering::Release);
            }
        }
        saved
    }
}
