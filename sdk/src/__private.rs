//! The glue behind `#[transform]` and `#[sink]`: read the input batch, call the function per
//! record (or once with all records), leave the outputs in their section buffers. Target-
//! independent so the test harness and the benchmark run exactly this path natively; the raw
//! wasm entry points at the bottom exist only on `wasm32`.

use std::cell::RefCell;

use crate::codec::records::RecordReader;
use crate::codec::{self, CodecError, Deployment};
use crate::{Error, Output, Record};

thread_local! {
    /// The deployment given at init; a wasm instance is single-threaded.
    pub(crate) static DEPLOYMENT: RefCell<Deployment> = RefCell::new(Deployment::default());
}

/// An [`Output`] for the deployment's outputs (what the wasm entry keeps across batches).
pub fn new_output(outputs: Vec<String>) -> Output {
    Output::new(outputs)
}

/// Runs `transform` over every record of an input buffer, leaving what it wrote in `out`'s
/// sections and the records it refused in `out`'s errors. A record whose transform fails
/// contributes an error entry and none of what it wrote. `Err` only for a buffer that does not
/// follow the ABI.
pub fn run_batch<F>(out: &mut Output, input: &[u8], transform: &mut F) -> Result<(), CodecError>
where
    F: FnMut(Record<'_>, &mut Output) -> Result<(), Error>,
{
    let (header, records) = codec::decode_batch_input(input)?;
    out.start_batch();
    for (index, record) in RecordReader::new(&header, records).enumerate() {
        let record = record?;
        // At most `record_count` (a u32) records are read.
        out.start_record(index as u32, record.timestamp());
        match transform(record, out) {
            Ok(()) => crate::state::commit_record(),
            Err(e) => {
                crate::state::discard_record();
                out.refuse_record(e.message().to_string());
            }
        }
    }
    Ok(())
}

/// One output's records after [`run_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionView<'a> {
    pub output: u32,
    pub record_count: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// Kafka v2 records, offset deltas 0..record_count.
    pub records: &'a [u8],
}

/// The non-empty sections of `out`, in output order.
pub fn sections(out: &Output) -> impl Iterator<Item = SectionView<'_>> {
    out.sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.count > 0)
        .map(|(i, s)| SectionView {
            // The deployment's output list is bounded far below u32::MAX by the broker.
            output: i as u32,
            record_count: s.count,
            base_timestamp: s.base_timestamp,
            max_timestamp: s.base_timestamp.wrapping_add(s.max_delta),
            records: &s.records,
        })
}

/// The records `out`'s transform refused in the last batch.
pub fn errors(out: &Output) -> &[(u32, String)] {
    &out.errors
}

/// Installs the deployment (from the init buffer); returns the encoded init result.
pub fn init(buf: &[u8]) -> Vec<u8> {
    match codec::decode_deployment(buf) {
        Ok(deployment) => {
            DEPLOYMENT.with(|d| *d.borrow_mut() = deployment);
            codec::encode_init_result(None)
        }
        Err(e) => codec::encode_init_result(Some(&e.to_string())),
    }
}

/// The deployment's output topics.
#[cfg(target_arch = "wasm32")]
pub(crate) fn outputs() -> Vec<String> {
    DEPLOYMENT.with(|d| d.borrow().outputs.clone())
}

#[cfg(target_arch = "wasm32")]
pub use self::wasm::*;

#[cfg(target_arch = "wasm32")]
#[allow(
    unsafe_code,
    reason = "the ABI passes buffers as raw pointers into linear memory"
)]
mod wasm {
    use std::cell::RefCell;

    use crate::codec::{self, SectionRef};
    use crate::Output;

    thread_local! {
        /// Where the host writes the next input (from `sluice_alloc`).
        static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        /// The last result buffer (init result, output table, sink result); must stay put
        /// until the host's next call.
        static RESULT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        /// The section buffers, kept across batches (so also put until the next call).
        static OUTPUT: RefCell<Option<Output>> = const { RefCell::new(None) };
    }

    /// `sluice_alloc`: a buffer of `len` bytes for the host to write into. Grown only, never
    /// zeroed again: the host overwrites all of it.
    pub fn wasm_alloc(len: i32) -> i32 {
        let Ok(len) = usize::try_from(len) else {
            return 0;
        };
        INPUT.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < len {
                b.resize(len, 0);
            } else {
                b.truncate(len);
            }
            b.as_mut_ptr() as i32
        })
    }

    fn packed(buf: &[u8]) -> i64 {
        ((buf.as_ptr() as u32 as i64) << 32) | (buf.len() as u32 as i64)
    }

    /// Runs `f` on the input buffer the host filled, keeps the result and returns its location.
    fn with_input(ptr: i32, len: i32, f: impl FnOnce(&[u8], &mut Vec<u8>) -> bool) -> i64 {
        INPUT.with(|b| {
            let b = b.borrow();
            // The host must pass back exactly the buffer it got from `sluice_alloc`; anything
            // else is refused rather than read.
            if ptr as usize != b.as_ptr() as usize || len as usize != b.len() {
                return -1;
            }
            RESULT.with(|r| {
                let mut r = r.borrow_mut();
                r.clear();
                if f(&b, &mut r) {
                    packed(&r)
                } else {
                    -1
                }
            })
        })
    }

    /// `sluice_init`.
    pub fn wasm_init(ptr: i32, len: i32) -> i64 {
        let result = with_input(ptr, len, |buf, result| {
            *result = super::init(buf);
            true
        });
        OUTPUT.with(|o| *o.borrow_mut() = Some(Output::new(super::outputs())));
        result
    }

    /// `sluice_on_batch`: runs the batch, then describes the sections where they lie.
    pub fn wasm_on_batch<F>(ptr: i32, len: i32, mut transform: F) -> i64
    where
        F: FnMut(crate::Record<'_>, &mut crate::Output) -> Result<(), crate::Error>,
    {
        OUTPUT.with(|o| {
            let mut o = o.borrow_mut();
            let out = o.get_or_insert_with(|| Output::new(super::outputs()));
            with_input(ptr, len, |buf, table| {
                if super::run_batch(out, buf, &mut transform).is_err() {
                    return false;
                }
                let sections: Vec<SectionRef> = super::sections(out)
                    .map(|s| SectionRef {
                        output: s.output,
                        record_count: s.record_count,
                        base_timestamp: s.base_timestamp,
                        max_timestamp: s.max_timestamp,
                        records_ptr: s.records.as_ptr() as u32,
                        records_len: s.records.len() as u32,
                    })
                    .collect();
                codec::encode_output_table(table, &sections, super::errors(out));
                true
            })
        })
    }

    #[link(wasm_import_module = "sluice")]
    extern "C" {
        #[link_name = "log"]
        fn host_log(level: i32, ptr: *const u8, len: usize);
        #[link_name = "file_append"]
        fn host_file_append(
            path: *const u8,
            path_len: usize,
            data: *const u8,
            data_len: usize,
        ) -> i32;
        #[link_name = "http_request"]
        fn host_http_request(request: *const u8, len: usize) -> i32;
        #[link_name = "http_response"]
        fn host_http_response(ptr: *mut u8, len: usize) -> i32;
        #[link_name = "error_message"]
        fn host_error_message(ptr: *mut u8, len: usize) -> i32;
        #[link_name = "state_get"]
        fn host_state_get(key: *const u8, key_len: usize, out: *mut u8, out_cap: usize) -> i32;
        #[link_name = "state_put"]
        fn host_state_put(key: *const u8, key_len: usize, value: *const u8, value_len: usize);
        #[link_name = "state_delete"]
        fn host_state_delete(key: *const u8, key_len: usize);
        #[link_name = "table_lookup"]
        fn host_table_lookup(
            table: *const u8,
            table_len: usize,
            key: *const u8,
            key_len: usize,
            out: *mut u8,
            out_cap: usize,
        ) -> i32;
    }

    thread_local! {
        /// Where looked-up values land, kept at the largest size seen so most lookups take one
        /// host call.
        static VALUE: RefCell<Vec<u8>> = RefCell::new(vec![0; 256]);
    }

    /// Calls a lookup that copies a value if it fits in `(out, cap)` and returns its length
    /// (negative: none); again with a buffer of that length if it did not fit.
    fn looked_up(mut call: impl FnMut(*mut u8, usize) -> i32) -> Option<Vec<u8>> {
        VALUE.with(|b| {
            let mut b = b.borrow_mut();
            let n = usize::try_from(call(b.as_mut_ptr(), b.len())).ok()?;
            if n > b.len() {
                b.resize(n, 0);
                let again = usize::try_from(call(b.as_mut_ptr(), b.len())).ok()?;
                if again != n {
                    return None;
                }
            }
            Some(b[..n].to_vec())
        })
    }

    /// `sluice.state_get`.
    pub fn wasm_state_get(key: &[u8]) -> Option<Vec<u8>> {
        // SAFETY: the key is live and only read; the host writes at most `cap` bytes into the
        // live buffer `out`.
        looked_up(|out, cap| unsafe { host_state_get(key.as_ptr(), key.len(), out, cap) })
    }

    /// `sluice.state_put`.
    pub fn wasm_state_put(key: &[u8], value: &[u8]) {
        // SAFETY: both buffers are live and only read by the host during the call.
        unsafe { host_state_put(key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
    }

    /// `sluice.state_delete`.
    pub fn wasm_state_delete(key: &[u8]) {
        // SAFETY: the key is live and only read by the host during the call.
        unsafe { host_state_delete(key.as_ptr(), key.len()) }
    }

    /// `sluice.table_lookup`.
    pub fn wasm_table_lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
        looked_up(|out, cap| {
            // SAFETY: table and key are live and only read; the host writes at most `cap`
            // bytes into the live buffer `out`.
            unsafe {
                host_table_lookup(
                    table.as_ptr(),
                    table.len(),
                    key.as_ptr(),
                    key.len(),
                    out,
                    cap,
                )
            }
        })
    }

    /// The host's message for the last refused or failed capability call.
    fn host_error() -> String {
        let mut buf = vec![0u8; 1024];
        // SAFETY: the host writes at most `buf.len()` bytes into the live buffer.
        let n = unsafe { host_error_message(buf.as_mut_ptr(), buf.len()) };
        buf.truncate(n.clamp(0, 1024) as usize);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// `sluice.file_append`.
    pub fn wasm_append_file(path: &str, data: &[u8]) -> Result<(), String> {
        // SAFETY: both pointers describe live buffers the host only reads during the call.
        let rc = unsafe { host_file_append(path.as_ptr(), path.len(), data.as_ptr(), data.len()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(host_error())
        }
    }

    /// `sluice.http_request` and `sluice.http_response`.
    pub fn wasm_http(request: &[u8]) -> Result<crate::sink::Response, String> {
        // SAFETY: the request buffer is live and only read by the host during the call.
        let len = unsafe { host_http_request(request.as_ptr(), request.len()) };
        if len < 0 {
            return Err(host_error());
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: the host copies exactly `len` bytes (what it just reported) into the buffer.
        unsafe { host_http_response(buf.as_mut_ptr(), buf.len()) };
        if buf.len() < 2 {
            return Err("short HTTP response from the host".into());
        }
        let status = u16::from_le_bytes([buf[0], buf[1]]);
        Ok(crate::sink::Response {
            status,
            body: buf.split_off(2),
        })
    }

    /// `sluice_on_sink_batch`.
    pub fn wasm_on_sink_batch<F>(ptr: i32, len: i32, mut sink: F) -> i64
    where
        F: FnMut(&[crate::Record<'_>]) -> Result<(), crate::SinkError>,
    {
        with_input(ptr, len, |buf, result| {
            *result = crate::sink::run_sink(buf, &mut sink);
            true
        })
    }

    /// Sends a log line to the host.
    pub fn wasm_log(level: i32, message: &str) {
        // SAFETY: the pointer and length describe a live string for the duration of the call;
        // the host only reads it.
        unsafe { host_log(level, message.as_ptr(), message.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::records::{write_record, RecordReader};
    use crate::codec::InputHeader;
    use crate::OwnedRecord;

    fn input(values: &[&str]) -> Vec<u8> {
        let mut area = Vec::new();
        for (i, v) in values.iter().enumerate() {
            write_record(
                &mut area,
                i as i32,
                i as i64,
                None,
                Some(v.as_bytes()),
                std::iter::empty(),
            );
        }
        let header = InputHeader {
            topic: "in",
            partition: 0,
            base_offset: 100,
            base_timestamp: 1000,
            record_count: values.len() as u32,
        };
        codec::encode_batch_input(&header, &area)
    }

    fn values(s: &SectionView<'_>) -> Vec<(String, i64)> {
        let header = InputHeader {
            topic: "",
            partition: 0,
            base_offset: 0,
            base_timestamp: s.base_timestamp,
            record_count: s.record_count,
        };
        RecordReader::new(&header, s.records)
            .map(|r| {
                let r = r.unwrap();
                (r.value_str().unwrap().to_string(), r.timestamp())
            })
            .collect()
    }

    #[test]
    fn sections_hold_each_outputs_records_and_a_refused_record_writes_nothing() {
        let mut out = new_output(vec!["a".into(), "b".into(), "c".into()]);
        let mut f = |r: Record<'_>, out: &mut Output| -> Result<(), Error> {
            let v = r.value_str().unwrap_or_default();
            out.write(r.with_value(Some(format!("a:{v}"))))?;
            if v == "both" {
                out.write_to("c", OwnedRecord::new().with_value("c").with_timestamp(5))?;
            }
            if v == "bad" {
                out.write_to("c", OwnedRecord::new().with_value("lost"))?;
                return Err(Error::new("bad record"));
            }
            Ok(())
        };
        for _ in 0..2 {
            // Twice: the second batch must not see the first's records.
            run_batch(&mut out, &input(&["x", "bad", "both"]), &mut f).unwrap();
            let sections: Vec<_> = sections(&out).collect();
            assert_eq!(sections.len(), 2);
            assert_eq!(sections[0].output, 0);
            assert_eq!(
                values(&sections[0]),
                vec![("a:x".into(), 1000), ("a:both".into(), 1002)]
            );
            assert_eq!(
                (sections[0].base_timestamp, sections[0].max_timestamp),
                (1000, 1002)
            );
            assert_eq!(sections[1].output, 2);
            assert_eq!(values(&sections[1]), vec![("c".into(), 5)]);
            assert_eq!(errors(&out), &[(1, "bad record".to_string())]);
        }
    }

    #[test]
    fn hostile_input_buffers_fail_the_batch_without_panicking() {
        let good = input(&["one", "two"]);
        let mut out = new_output(vec!["a".into()]);
        let mut f = |r: Record<'_>, out: &mut Output| out.write(r);
        for cut in 0..good.len() {
            assert!(
                run_batch(&mut out, &good[..cut], &mut f).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..good.len() {
            for b in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = run_batch(&mut out, &bad, &mut f);
            }
        }
        assert!(run_batch(&mut out, &good, &mut f).is_ok());
    }
}
