//! The aborted-transaction index of a partition: for every transaction ended by an abort marker,
//! its producer, first offset and the marker's offset, so a read_committed Fetch can tell the
//! client which records to drop (Kafka's `.txnindex`).
//!
//! Kept in memory and rebuilt at open by the same scan of batch headers that rebuilds the
//! producer state (the marker batches are read for their type), rather than in a file per
//! segment: the scan already runs at every open, markers are few, and one source of truth (the
//! log itself) cannot disagree with an index after a torn tail is truncated. Entries are dropped
//! when retention or DeleteRecords moves the log start past their marker, and when the cleaner
//! removes their marker.

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

/// Aborted transactions in marker order.
#[derive(Debug, Default, Clone)]
pub(crate) struct AbortedIndex {
    /// Sorted by `last_offset` (markers are appended in offset order).
    entries: Vec<AbortedTxn>,
}

impl AbortedIndex {
    pub(crate) fn push(&mut self, txn: AbortedTxn) {
        self.entries.push(txn);
    }

    /// The aborted transactions with records in `[from, to)`: those whose marker is at or past
    /// `from` and whose first batch is before `to`, by first offset (what clients expect).
    pub(crate) fn overlapping(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.entries.partition_point(|t| t.last_offset < from);
        let mut out: Vec<AbortedTxn> = self.entries[start..]
            .iter()
            .filter(|t| t.first_offset < to)
            .copied()
            .collect();
        out.sort_by_key(|t| t.first_offset);
        out
    }

    /// Forgets transactions whose marker is below `log_start_offset`.
    pub(crate) fn prune_below(&mut self, log_start_offset: i64) {
        let n = self
            .entries
            .partition_point(|t| t.last_offset < log_start_offset);
        self.entries.drain(..n);
    }

    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// Forgets the transactions whose abort markers at `markers` the cleaner removed: a client
    /// told of an aborted transaction drops the producer's batches until it reads the marker, so
    /// an entry without its marker would hide the producer's later, committed records.
    pub(crate) fn remove_markers(&mut self, markers: &[i64]) {
        if !markers.is_empty() {
            self.entries.retain(|t| !markers.contains(&t.last_offset));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(producer_id: i64, first_offset: i64, last_offset: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
        }
    }

    #[test]
    fn overlapping_finds_transactions_with_records_in_the_range() {
        let mut index = AbortedIndex::default();
        index.push(txn(1, 0, 5));
        index.push(txn(2, 3, 9));
        index.push(txn(3, 12, 14));
        assert_eq!(index.overlapping(6, 12), vec![txn(2, 3, 9)]);
        assert_eq!(index.overlapping(0, 4), vec![txn(1, 0, 5), txn(2, 3, 9)]);
        assert_eq!(index.overlapping(10, 12), vec![]);
        assert_eq!(index.overlapping(10, 13), vec![txn(3, 12, 14)]);
        index.prune_below(6);
        assert_eq!(index.entries(), &[txn(2, 3, 9), txn(3, 12, 14)]);
    }
}
