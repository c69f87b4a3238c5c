//! Maintenance: retention, record deletion, orphaned objects, object rewrites.
