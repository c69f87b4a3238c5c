//! The fenced lease shared by everything one broker at a time must do (coordinate a group, run
//! a connector's task): a row per leased thing naming its holder's node id and broker epoch and
//! an expiry, in a table of its own.
//!
//! A lease is free once it expires, or once its holder's registration in `sluice_brokers` lapses
//! or is superseded by a newer epoch, so a dead holder's work moves as soon as the broker itself
//! is known dead. Every write made under a lease locks the lease row and checks it in the same
//! transaction ([`LeaseSql::lock_held`]): a takeover has to update that row, so it waits for a
//! write in flight and then sees it, and a write from a zombie (lapsed, superseded) stores
//! nothing. All times are the database's (`now()`).

/// The statements of one lease table. Parameters: `$1` the leased key, `$2`/`$3` the broker's
/// node id and epoch, `$4` (acquire) the lease length in milliseconds, then the table's extra
/// columns in order.
#[derive(Debug)]
pub(crate) struct LeaseSql {
    /// Takes or renews the lease (writing the extra columns too); returns a row when held, with
    /// the caller's `returning` columns and then how long, in milliseconds, the lease is good
    /// for: the sooner of its own expiry and its holder's registration's.
    pub(crate) acquire: String,
    /// Locks the lease row when `$2`/`$3` hold it live (use it inside the write's transaction).
    pub(crate) lock_held: String,
    /// Ends `$2`/`$3`'s lease at once.
    pub(crate) release: String,
    /// The holder of a live lease: node id, host, port, rack.
    pub(crate) holder: String,
}

impl LeaseSql {
    /// The statements for `table`, whose key column is `key`, whose `extra` columns are written
    /// at each acquire, and whose `returning` columns (prefixed `l.`) are answered by it.
    pub(crate) fn new(table: &str, key: &str, extra: &[&str], returning: &str) -> LeaseSql {
        let columns: String = extra.iter().map(|c| format!(", {c}")).collect();
        let values: String = (0..extra.len()).map(|i| format!(", ${}", i + 5)).collect();
        let updates: String = extra
            .iter()
            .map(|c| format!(", {c} = EXCLUDED.{c}"))
            .collect();
        let returning = if returning.is_empty() {
            String::new()
        } else {
            format!("{returning}, ")
        };
        LeaseSql {
            acquire: format!(
                "INSERT INTO {table} AS l ({key}, node_id, broker_epoch, lease_expires{columns})
                 SELECT $1, b.node_id, b.epoch, now() + $4::bigint * interval '1 millisecond'{values}
                   FROM sluice_brokers b
                  WHERE b.node_id = $2 AND b.epoch = $3 AND b.lease_expires > now()
                 ON CONFLICT ({key}) DO UPDATE
                    SET node_id = EXCLUDED.node_id,
                        broker_epoch = EXCLUDED.broker_epoch,
                        lease_expires = EXCLUDED.lease_expires{updates}
                  WHERE (l.node_id = EXCLUDED.node_id AND l.broker_epoch = EXCLUDED.broker_epoch)
                     OR l.lease_expires <= now()
                     OR NOT EXISTS (SELECT 1 FROM sluice_brokers o
                                     WHERE o.node_id = l.node_id AND o.epoch = l.broker_epoch
                                       AND o.lease_expires > now())
                 RETURNING {returning}
                    (SELECT (extract(epoch FROM least(l.lease_expires, r.lease_expires) - now())
                             * 1000)::bigint
                       FROM sluice_brokers r
                      WHERE r.node_id = l.node_id AND r.epoch = l.broker_epoch)"
            ),
            lock_held: format!(
                "SELECT 1 FROM {table} l
                   JOIN sluice_brokers b ON b.node_id = l.node_id AND b.epoch = l.broker_epoch
                  WHERE l.{key} = $1 AND l.node_id = $2 AND l.broker_epoch = $3
                    AND l.lease_expires > now() AND b.lease_expires > now()
                    FOR UPDATE OF l"
            ),
            release: format!(
                "UPDATE {table} SET lease_expires = now()
                  WHERE {key} = $1 AND node_id = $2 AND broker_epoch = $3"
            ),
            holder: format!(
                "SELECT b.node_id, b.host, b.port, b.rack FROM {table} l
                   JOIN sluice_brokers b ON b.node_id = l.node_id AND b.epoch = l.broker_epoch
                  WHERE l.{key} = $1 AND l.lease_expires > now() AND b.lease_expires > now()"
            ),
        }
    }
}

/// A lease length in milliseconds, as the statements take it.
pub(crate) fn millis(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}
