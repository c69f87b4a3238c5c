//! The object store holding record batches: S3-compatible (`s3://BUCKET?endpoint=URL&region=R`,
//! credentials from the AWS env variables) or in memory (`memory://`, for tests), and a cache of
//! ranged reads bounded in bytes.
