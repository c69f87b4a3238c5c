//! TEMPORARY (cluster-data): a bare object store handle until `cluster-infra`'s
//! [`super::objects`] lands; then this file is deleted and `Objects` comes from there.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStore;

/// The object store the batches live in.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Objects")
    }
}

impl Objects {
    /// `memory://` or `s3://BUCKET?endpoint=URL&region=R` (credentials from the AWS env).
    pub fn open(url: &str) -> Result<Objects, String> {
        if url.starts_with("memory://") {
            return Ok(Objects::memory());
        }
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("--objects {url:?}: not s3://BUCKET?... or memory://"))?;
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) => {
                    builder = builder
                        .with_endpoint(v)
                        .with_allow_http(v.starts_with("http://"))
                }
                Some(("region", v)) => builder = builder.with_region(v),
                _ => return Err(format!("--objects: unknown parameter {pair:?}")),
            }
        }
        let store = builder.build().map_err(|e| format!("--objects: {e}"))?;
        Ok(Objects {
            store: Arc::new(store),
        })
    }

    pub fn memory() -> Objects {
        Objects {
            store: Arc::new(object_store::memory::InMemory::new()),
        }
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), String> {
        self.store
            .put(&Path::from(key), body.into())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, String> {
        self.store
            .get_range(&Path::from(key), range)
            .await
            .map_err(|e| e.to_string())
    }
}
