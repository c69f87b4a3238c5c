//! End-to-end tests for Sluice live in `tests/`.
