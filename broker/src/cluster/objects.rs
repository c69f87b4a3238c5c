//! The object store holding record batches: S3-compatible (`s3://BUCKET?endpoint=URL&region=R`,
//! credentials from the AWS env variables) or in memory (`memory://`, for tests), and a cache of
//! ranged reads bounded in bytes.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig};
use parking_lot::Mutex;

use super::config::ObjectsUrl;
use crate::metrics::{self, ObjectOp};

/// A request that has not finished in this long failed (a hung store must not hold a produce
/// forever: the upload fails with a retriable error and the producer retries).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries of one request inside the client (5xx, 429, connection errors), within this long.
/// Short: the caller (an upload, a fetch) has its own deadline and its own retry.
const MAX_RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an object store call failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The store cannot be set up (missing credentials, a bad endpoint).
    #[error("object store: {0}")]
    Config(String),
    #[error("object key '{key}' is not valid: {message}")]
    InvalidKey { key: String, message: String },
    #[error("object {key} does not exist")]
    NotFound { key: String },
    /// `put_if_absent` of a key that exists.
    #[error("object {key} already exists")]
    AlreadyExists { key: String },
    /// A range that is empty, reversed, or past the object's end: the coordinates do not
    /// match the object.
    #[error("object {key}: bytes {start}..{end} asked, {got} returned")]
    BadRange {
        key: String,
        start: u64,
        end: u64,
        got: u64,
    },
    #[error("object store {op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
}

impl ObjectsError {
    /// Whether trying again later may succeed: the store was unreachable, timed out or answered
    /// with a server error (after the client's own retries). Missing objects, refused
    /// credentials, existing keys and bad ranges stay as they are.
    pub fn is_retriable(&self) -> bool {
        match self {
            ObjectsError::Store { source, .. } => matches!(
                source,
                object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
            ),
            _ => false,
        }
    }

    fn from_store(op: &'static str, key: &str, source: object_store::Error) -> ObjectsError {
        let key = key.to_string();
        match source {
            object_store::Error::NotFound { .. } => ObjectsError::NotFound { key },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
                if op == "put_if_absent" =>
            {
                ObjectsError::AlreadyExists { key }
            }
            source => ObjectsError::Store { op, key, source },
        }
    }
}

/// The credentials S3 requests are signed with.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` if set). Both
    /// are required: without them the S3 client would ask an instance metadata service, which
    /// a broker outside AWS does not have, and fail late and obscurely.
    pub fn from_env() -> Result<Credentials, ObjectsError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => Err(ObjectsError::Config(
                "s3:// objects need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the \
                 environment"
                    .into(),
            )),
        }
    }
}

/// One object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

/// How the read cache has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

/// The object store and its read cache; clones share both.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    cache: Arc<Mutex<RangeCache>>,
    /// The URL it was opened from, for logs.
    url: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Objects {
    /// Opens `url` with credentials from the environment (for `s3://`).
    pub fn open(url: &ObjectsUrl, cache_bytes: u64) -> Result<Objects, ObjectsError> {
        match url {
            ObjectsUrl::Memory => Ok(Objects::in_memory(cache_bytes)),
            ObjectsUrl::S3 { .. } => {
                Objects::open_with_credentials(url, Credentials::from_env()?, cache_bytes)
            }
        }
    }

    /// Opens `url` with the given credentials (unused for `memory://`).
    pub fn open_with_credentials(
        url: &ObjectsUrl,
        credentials: Credentials,
        cache_bytes: u64,
    ) -> Result<Objects, ObjectsError> {
        let ObjectsUrl::S3 {
            bucket,
            endpoint,
            region,
        } = url
        else {
            return Ok(Objects::in_memory(cache_bytes));
        };
        let mut options = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key)
            // Path-style requests (`ENDPOINT/BUCKET/KEY`): S3-compatible stores on an IP and
            // port have no per-bucket host names.
            .with_virtual_hosted_style_request(false)
            // `put_if_absent` sends `If-None-Match: *` (AWS S3, SeaweedFS, MinIO answer 412
            // when the key exists).
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            });
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = endpoint {
            // Plain HTTP only when the endpoint says so (a store on the same host or network).
            options = options.with_allow_http(endpoint.starts_with("http://"));
            builder = builder.with_endpoint(endpoint);
        }
        // The client options replace the builder's: set last, allow_http included.
        let store = builder
            .with_client_options(options)
            .build()
            .map_err(|e| ObjectsError::Config(e.to_string()))?;
        Ok(Objects::new(Arc::new(store), cache_bytes, url.to_string()))
    }

    /// A store in this process (`memory://`).
    pub fn in_memory(cache_bytes: u64) -> Objects {
        Objects::new(Arc::new(InMemory::new()), cache_bytes, "memory://".into())
    }

    fn new(store: Arc<dyn ObjectStore>, cache_bytes: u64, url: String) -> Objects {
        Objects {
            store,
            cache: Arc::new(Mutex::new(RangeCache::new(cache_bytes))),
            url,
        }
    }

    /// The URL it was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `key`, replacing what was there.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), ObjectsError> {
        let path = path(key)?;
        let size = data.len();
        self.cache.lock().forget(key);
        self.store
            .put(&path, PutPayload::from_bytes(data))
            .await
            .map_err(|e| ObjectsError::from_store("put", key, e))?;
        metrics::object_request(ObjectOp::Put, size);
        Ok(())
    }

    /// Writes `key` only if it does not exist (a conditional PUT): `AlreadyExists` otherwise,
    /// the existing object unchanged. Uploads use it so that no object is ever overwritten, which
    /// is also what lets the read cache keep ranges without ever checking them again.
    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), ObjectsError> {
        let path = path(key)?;
        let size = data.len();
        self.store
            .put_opts(
                &path,
                PutPayload::from_bytes(data),
                PutOptions::from(PutMode::Create),
            )
            .await
            .map_err(|e| ObjectsError::from_store("put_if_absent", key, e))?;
        metrics::object_request(ObjectOp::Put, size);
        Ok(())
    }

    /// The bytes `range` of `key`, from the cache or a ranged GET (then cached).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectsError> {
        let bad_range = |got: u64| ObjectsError::BadRange {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            got,
        };
        if range.start >= range.end {
            return Err(bad_range(0));
        }
        if let Some(bytes) = self.cache.lock().get(key, &range) {
            return Ok(bytes);
        }
        let path = path(key)?;
        let bytes = match self.store.get_range(&path, range.clone()).await {
            Ok(bytes) => bytes,
            // Stores refuse a range past the end in their own words (S3: 416, in memory: its
            // own error); the object's size tells whether that is what happened.
            Err(e @ object_store::Error::Generic { .. }) => {
                return Err(match self.store.head(&path).await {
                    Ok(meta) if range.end > meta.size => bad_range(0),
                    _ => ObjectsError::from_store("get_range", key, e),
                });
            }
            Err(e) => return Err(ObjectsError::from_store("get_range", key, e)),
        };
        metrics::object_request(ObjectOp::Get, bytes.len());
        // Some stores answer a range past the end with what there is: never hand on (or cache)
        // fewer bytes than the coordinates say.
        if bytes.len() as u64 != range.end - range.start {
            return Err(bad_range(bytes.len() as u64));
        }
        self.cache.lock().insert(key, range, bytes.clone());
        Ok(bytes)
    }

    /// The whole of `key` (not cached: background jobs read whole objects once).
    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectsError> {
        let path = path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| ObjectsError::from_store("get", key, e))?;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| ObjectsError::from_store("get", key, e))?;
        metrics::object_request(ObjectOp::Get, bytes.len());
        Ok(bytes)
    }

    /// Removes `key` (and its cached ranges); removing a key that does not exist succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        let path = path(key)?;
        self.cache.lock().forget(key);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ObjectsError::from_store("delete", key, e)),
        }
    }

    /// The objects whose keys start with the path `prefix` (whole `/`-separated segments:
    /// `a/b` lists `a/b/c`, not `a/bc`), with their sizes and last-modified times.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectsError> {
        let prefix_path = if prefix.is_empty() {
            None
        } else {
            Some(path(prefix.trim_end_matches('/'))?)
        };
        self.store
            .list(prefix_path.as_ref())
            .map_ok(|meta| ObjectInfo {
                key: meta.location.to_string(),
                size: meta.size,
                last_modified: SystemTime::from(meta.last_modified),
            })
            .try_collect()
            .await
            .map_err(|e| ObjectsError::from_store("list", prefix, e))
    }

    /// The read cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.lock().stats()
    }
}

/// `key` as a store path, refused unless it is already in the store's canonical form (so the
/// key we commit to PostgreSQL is the key the object is stored under).
fn path(key: &str) -> Result<Path, ObjectsError> {
    let invalid = |message: String| ObjectsError::InvalidKey {
        key: key.to_string(),
        message,
    };
    let path = Path::parse(key).map_err(|e| invalid(e.to_string()))?;
    if key.is_empty() || path.as_ref() != key {
        return Err(invalid("empty, or not in canonical form (a/b/c)".into()));
    }
    Ok(path)
}

/// Ranges of objects, least recently used evicted first once their bytes pass the bound.
///
/// Keyed by (object key, start, end): objects are never overwritten once uploaded
/// (`put_if_absent` with fresh keys), so a cached range is never stale; fetches ask for the
/// exact byte ranges of batches that the coordinates in PostgreSQL name, so the same batch read
/// again (consumers of one topic, a lagging consumer catching up) asks for the same range.
struct RangeCache {
    /// The bound in bytes (of cached data; the bookkeeping is not counted).
    capacity: u64,
    bytes: u64,
    /// Each entry's data and when it was last used.
    entries: HashMap<(String, u64, u64), (Bytes, u64)>,
    /// Last use → entry: the first is the least recently used.
    by_use: std::collections::BTreeMap<u64, (String, u64, u64)>,
    /// The cached ranges of each object, so `forget` does not scan everything.
    by_object: HashMap<String, HashSet<(u64, u64)>>,
    /// A counter standing for time: each use takes the next value.
    clock: u64,
    hits: u64,
    misses: u64,
}

impl RangeCache {
    fn new(capacity: u64) -> RangeCache {
        RangeCache {
            capacity,
            bytes: 0,
            entries: HashMap::new(),
            by_use: Default::default(),
            by_object: HashMap::new(),
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    fn get(&mut self, key: &str, range: &Range<u64>) -> Option<Bytes> {
        let id = (key.to_string(), range.start, range.end);
        self.clock += 1;
        match self.entries.get_mut(&id) {
            Some((bytes, used)) => {
                self.by_use.remove(used);
                *used = self.clock;
                self.by_use.insert(self.clock, id);
                self.hits += 1;
                Some(bytes.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    fn insert(&mut self, key: &str, range: Range<u64>, bytes: Bytes) {
        let size = bytes.len() as u64;
        // Larger than the whole cache: it would only push everything else out.
        if size > self.capacity {
            return;
        }
        let id = (key.to_string(), range.start, range.end);
        self.remove(&id);
        while self.bytes + size > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
        self.clock += 1;
        self.bytes += size;
        self.by_use.insert(self.clock, id.clone());
        self.by_object
            .entry(id.0.clone())
            .or_default()
            .insert((id.1, id.2));
        self.entries.insert(id, (bytes, self.clock));
    }

    fn remove(&mut self, id: &(String, u64, u64)) {
        if let Some((bytes, used)) = self.entries.remove(id) {
            self.bytes -= bytes.len() as u64;
            self.by_use.remove(&used);
            if let Some(ranges) = self.by_object.get_mut(&id.0) {
                ranges.remove(&(id.1, id.2));
                if ranges.is_empty() {
                    self.by_object.remove(&id.0);
                }
            }
        }
    }

    /// Drops every cached range of `key` (it is being replaced or deleted).
    fn forget(&mut self, key: &str) {
        let ranges: Vec<(u64, u64)> = self
            .by_object
            .get(key)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default();
        for (start, end) in ranges {
            self.remove(&(key.to_string(), start, end));
        }
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len(),
            bytes: self.bytes,
            hits: self.hits,
            misses: self.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[tokio::test]
    async fn ranged_reads_are_served_from_the_cache_the_second_time() {
        let objects = Objects::in_memory(1024);
        let data = Bytes::from_static(b"0123456789abcdef");
        objects.put_if_absent("o/1", data.clone()).await.unwrap();
        assert_eq!(objects.get_range("o/1", 2..6).await.unwrap(), "2345");
        assert_eq!(objects.get_range("o/1", 2..6).await.unwrap(), "2345");
        assert_eq!(objects.get_range("o/1", 10..16).await.unwrap(), "abcdef");
        let stats = objects.cache_stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 2));
        assert_eq!(stats.bytes, 10);
        assert_eq!(objects.get("o/1").await.unwrap(), data);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bound_and_evicts_the_least_recently_used() {
        let objects = Objects::in_memory(100);
        objects.put("o", bytes(400, 7)).await.unwrap();
        for start in [0u64, 40, 80] {
            objects.get_range("o", start..start + 40).await.unwrap();
        }
        // 120 bytes asked, 100 allowed: the first range went.
        let stats = objects.cache_stats();
        assert_eq!((stats.entries, stats.bytes), (2, 80));
        objects.get_range("o", 40..80).await.unwrap(); // a hit: now the most recent
        objects.get_range("o", 120..160).await.unwrap(); // evicts 80..120, not 40..80
        let before = objects.cache_stats().hits;
        objects.get_range("o", 40..80).await.unwrap();
        assert_eq!(objects.cache_stats().hits, before + 1);
        objects.get_range("o", 80..120).await.unwrap();
        assert_eq!(
            objects.cache_stats().hits,
            before + 1,
            "80..120 was evicted"
        );
        assert!(objects.cache_stats().bytes <= 100);
        // Bigger than the whole cache: served, not cached.
        objects.get_range("o", 0..200).await.unwrap();
        assert!(objects.cache_stats().bytes <= 100);
    }

    #[tokio::test]
    async fn put_if_absent_refuses_an_existing_key_and_keeps_the_object() {
        let objects = Objects::in_memory(0);
        objects
            .put_if_absent("k", Bytes::from_static(b"first"))
            .await
            .unwrap();
        let err = objects
            .put_if_absent("k", Bytes::from_static(b"second"))
            .await
            .unwrap_err();
        assert!(matches!(err, ObjectsError::AlreadyExists { .. }), "{err:?}");
        assert!(!err.is_retriable());
        assert_eq!(objects.get("k").await.unwrap(), "first");
    }

    #[tokio::test]
    async fn delete_drops_the_object_and_its_cached_ranges() {
        let objects = Objects::in_memory(1024);
        objects.put("d/1", bytes(10, 1)).await.unwrap();
        objects.get_range("d/1", 0..5).await.unwrap();
        objects.delete("d/1").await.unwrap();
        assert_eq!(objects.cache_stats().entries, 0);
        let err = objects.get_range("d/1", 0..5).await.unwrap_err();
        assert!(matches!(err, ObjectsError::NotFound { .. }), "{err:?}");
        assert!(!err.is_retriable());
        objects.delete("d/1").await.unwrap();
    }

    // A reversed range is what this test hands in on purpose.
    #[allow(clippy::reversed_empty_ranges)]
    #[tokio::test]
    async fn bad_ranges_and_keys_are_refused() {
        let objects = Objects::in_memory(1024);
        objects.put("r", bytes(10, 1)).await.unwrap();
        for range in [5..5, 6..2, 8..20, 20..30] {
            let err = objects.get_range("r", range.clone()).await.unwrap_err();
            assert!(
                matches!(err, ObjectsError::BadRange { .. }),
                "{range:?}: {err:?}"
            );
        }
        assert_eq!(objects.cache_stats().entries, 0);
        for key in ["", "/a", "a//b", "a/../b", "a/"] {
            let err = objects.put(key, bytes(1, 0)).await.unwrap_err();
            assert!(
                matches!(err, ObjectsError::InvalidKey { .. }),
                "{key:?}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn list_gives_keys_under_a_prefix_with_sizes_and_times() {
        let objects = Objects::in_memory(0);
        let before = SystemTime::now() - Duration::from_secs(5);
        objects.put("up/1", bytes(3, 0)).await.unwrap();
        objects.put("up/2", bytes(5, 0)).await.unwrap();
        objects.put("upper", bytes(1, 0)).await.unwrap();
        let mut listed = objects.list("up").await.unwrap();
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
        assert_eq!(keys, [("up/1", 3), ("up/2", 5)]);
        assert!(listed.iter().all(|o| o.last_modified >= before));
        assert_eq!(objects.list("").await.unwrap().len(), 3);
    }

    #[test]
    fn s3_needs_credentials_and_hides_the_secret() {
        let url = ObjectsUrl::parse("s3://bucket?endpoint=http://127.0.0.1:1&region=r").unwrap();
        let credentials = Credentials {
            access_key_id: "id".into(),
            secret_access_key: "very-secret".into(),
            session_token: None,
        };
        assert!(!format!("{credentials:?}").contains("very-secret"));
        let objects = Objects::open_with_credentials(&url, credentials, 0).unwrap();
        assert!(objects.url().starts_with("s3://bucket"));
    }

    #[tokio::test]
    async fn an_unreachable_store_gives_retriable_errors() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let url = ObjectsUrl::parse("s3://bucket?endpoint=http://127.0.0.1:1&region=r").unwrap();
        let credentials = Credentials {
            access_key_id: "id".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        let objects = Objects::open_with_credentials(&url, credentials, 0).unwrap();
        let err = objects.put_if_absent("k", bytes(1, 0)).await.unwrap_err();
        assert!(err.is_retriable(), "{err:?}");
        let err = objects.get_range("k", 0..1).await.unwrap_err();
        assert!(err.is_retriable(), "{err:?}");
    }

    /// Against a real S3 server (SeaweedFS), requests signed with the test identity.
    mod weed {
        use super::*;
        use sluice_engines::Weed;

        fn open(weed: &Weed, secret: Option<&str>) -> Objects {
            let url = ObjectsUrl::parse(&weed.objects_url()).unwrap();
            let env: HashMap<&str, &str> = weed.env().into_iter().collect();
            let credentials = Credentials {
                access_key_id: env["AWS_ACCESS_KEY_ID"].to_string(),
                secret_access_key: secret.unwrap_or(env["AWS_SECRET_ACCESS_KEY"]).to_string(),
                session_token: None,
            };
            Objects::open_with_credentials(&url, credentials, 1 << 20).unwrap()
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn puts_reads_lists_and_deletes_on_s3() {
            if !sluice_engines::require("SeaweedFS (weed)", Weed::installed()) {
                return;
            }
            let weed = tokio::task::spawn_blocking(Weed::start)
                .await
                .unwrap()
                .unwrap();
            let objects = open(&weed, None);
            let data = Bytes::from_static(b"batch-one|batch-two");
            objects
                .put_if_absent("uploads/0001", data.clone())
                .await
                .unwrap();
            let err = objects
                .put_if_absent("uploads/0001", bytes(3, 0))
                .await
                .unwrap_err();
            assert!(matches!(err, ObjectsError::AlreadyExists { .. }), "{err:?}");
            assert_eq!(objects.get("uploads/0001").await.unwrap(), data);
            assert_eq!(
                objects.get_range("uploads/0001", 10..19).await.unwrap(),
                "batch-two"
            );
            assert_eq!(
                objects.get_range("uploads/0001", 10..19).await.unwrap(),
                "batch-two"
            );
            assert_eq!(objects.cache_stats().hits, 1);
            let err = objects.get_range("uploads/0001", 10..40).await.unwrap_err();
            assert!(matches!(err, ObjectsError::BadRange { .. }), "{err:?}");

            objects.put("uploads/0002", bytes(7, 1)).await.unwrap();
            objects.put("other/1", bytes(1, 1)).await.unwrap();
            let mut listed = objects.list("uploads").await.unwrap();
            listed.sort_by(|a, b| a.key.cmp(&b.key));
            let keys: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
            assert_eq!(keys, [("uploads/0001", 19), ("uploads/0002", 7)]);
            let age = SystemTime::now()
                .duration_since(listed[0].last_modified)
                .unwrap_or_default();
            assert!(age < Duration::from_secs(120), "{age:?}");

            objects.delete("uploads/0001").await.unwrap();
            let err = objects.get("uploads/0001").await.unwrap_err();
            assert!(matches!(err, ObjectsError::NotFound { .. }), "{err:?}");

            let forged = open(&weed, Some("not-the-secret"));
            let err = forged.get("uploads/0002").await.unwrap_err();
            assert!(!err.is_retriable(), "{err:?}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_stopped_store_fails_retriably_then_recovers() {
            if !sluice_engines::require("SeaweedFS (weed)", Weed::installed()) {
                return;
            }
            let mut weed = tokio::task::spawn_blocking(Weed::start)
                .await
                .unwrap()
                .unwrap();
            let objects = open(&weed, None);
            objects.put("k/1", bytes(4, 2)).await.unwrap();
            let mut weed = tokio::task::spawn_blocking(move || {
                weed.stop();
                weed
            })
            .await
            .unwrap();
            let err = objects.put_if_absent("k/2", bytes(4, 2)).await.unwrap_err();
            assert!(err.is_retriable(), "{err:?}");
            let weed = tokio::task::spawn_blocking(move || weed.start_again().map(|()| weed))
                .await
                .unwrap()
                .unwrap();
            // The same client, its pooled connections dead: its own retries get through.
            objects.put_if_absent("k/2", bytes(4, 3)).await.unwrap();
            assert_eq!(objects.get_range("k/1", 0..4).await.unwrap(), bytes(4, 2));
            drop(weed);
        }
    }
}
