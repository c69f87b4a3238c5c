//! The per-broker upload buffer: produced batches of every partition wait here until the linger
//! deadline or the size limit, go up as one object, and are committed in one transaction.
