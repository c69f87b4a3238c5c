//! Fetches in cluster mode: batch coordinates from PostgreSQL (cached) and bytes by ranged GETs,
//! with each batch's base offset patched into its header (outside the CRC).
