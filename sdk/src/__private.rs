//! The glue behind `#[transform]`: decode the input buffer, call the transform per record, encode
//! the output. Target-independent so the test harness runs exactly this path natively; the raw
//! wasm entry points at the bottom exist only on `wasm32`.

use std::cell::RefCell;

use crate::codec::{self, CodecError, Deployment};
use crate::{Error, Output, Record};

thread_local! {
    /// The deployment given at init; a wasm instance is single-threaded.
    pub(crate) static DEPLOYMENT: RefCell<Deployment> = RefCell::new(Deployment::default());
}

/// Runs `transform` over every record of an encoded input batch; returns the encoded output.
/// A record whose transform fails contributes an error entry and none of what it wrote.
pub fn run_batch<F>(input: &[u8], transform: &mut F) -> Result<Vec<u8>, CodecError>
where
    F: FnMut(Record<'_>, &mut Output) -> Result<(), Error>,
{
    let records = codec::decode_input(input)?;
    let outputs = DEPLOYMENT.with(|d| d.borrow().outputs.clone());
    let timestamps: Vec<i64> = records.iter().map(Record::timestamp).collect();
    let mut written = Vec::new();
    let mut errors = Vec::new();
    let mut out = Output::new(outputs);
    for (index, record) in records.into_iter().enumerate() {
        // A batch holds far fewer than u32::MAX records (the host bounds it).
        let index = index as u32;
        out.written.clear();
        match transform(record, &mut out) {
            Ok(()) => written.extend(out.written.drain(..).map(|(o, r)| (index, o, r))),
            Err(e) => errors.push((index, e.message().to_string())),
        }
    }
    Ok(codec::encode_output(&written, &timestamps, &errors))
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

#[cfg(target_arch = "wasm32")]
pub use self::wasm::*;

#[cfg(target_arch = "wasm32")]
#[allow(
    unsafe_code,
    reason = "the ABI passes buffers as raw pointers into linear memory"
)]
mod wasm {
    use std::cell::RefCell;

    thread_local! {
        /// Where the host writes the next input (from `sluice_alloc`).
        static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        /// The last output; must stay put until the host's next call.
        static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// `sluice_alloc`: a buffer of `len` bytes for the host to write into.
    pub fn wasm_alloc(len: i32) -> i32 {
        let Ok(len) = usize::try_from(len) else {
            return 0;
        };
        INPUT.with(|b| {
            let mut b = b.borrow_mut();
            b.clear();
            b.resize(len, 0);
            b.as_mut_ptr() as i32
        })
    }

    /// Runs `f` on the input buffer the host filled, keeps the output and returns its location.
    fn with_input(ptr: i32, len: i32, f: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> i64 {
        let result = INPUT.with(|b| {
            let b = b.borrow();
            // The host must pass back exactly the buffer it got from `sluice_alloc`; anything
            // else is refused rather than read.
            if ptr as usize != b.as_ptr() as usize || len as usize != b.len() {
                return None;
            }
            f(&b)
        });
        match result {
            Some(out) => OUTPUT.with(|o| {
                let mut o = o.borrow_mut();
                *o = out;
                ((o.as_ptr() as u32 as i64) << 32) | (o.len() as u32 as i64)
            }),
            None => -1,
        }
    }

    /// `sluice_init`.
    pub fn wasm_init(ptr: i32, len: i32) -> i64 {
        with_input(ptr, len, |buf| Some(super::init(buf)))
    }

    /// `sluice_on_batch`.
    pub fn wasm_on_batch<F>(ptr: i32, len: i32, mut transform: F) -> i64
    where
        F: FnMut(crate::Record<'_>, &mut crate::Output) -> Result<(), crate::Error>,
    {
        with_input(ptr, len, |buf| super::run_batch(buf, &mut transform).ok())
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
        with_input(ptr, len, |buf| Some(crate::sink::run_sink(buf, &mut sink)))
    }

    /// Sends a log line to the host.
    pub fn wasm_log(level: i32, message: &str) {
        // SAFETY: the pointer and length describe a live string for the duration of the call;
        // the host only reads it.
        unsafe { host_log(level, message.as_ptr(), message.len()) }
    }
}
