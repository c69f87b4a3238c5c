//! Run a transform natively, in plain `cargo test`: records in, what it wrote out. The records go
//! through the same ABI v2 buffers and per-record loop as inside the broker.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::codec::records::{write_record, RecordReader};
use crate::codec::{self, Deployment, InputHeader};
use crate::{Error, Output, OwnedRecord, Record};

/// Test records as an ABI input buffer: offsets 0, 1, ...; missing timestamps are 0.
fn input_buffer(topic: &str, partition: i32, records: &[OwnedRecord]) -> Vec<u8> {
    let base_timestamp = records.first().and_then(|r| r.timestamp).unwrap_or(0);
    let mut area = Vec::new();
    for (i, r) in records.iter().enumerate() {
        write_record(
            &mut area,
            i as i32,
            r.timestamp.unwrap_or(0).wrapping_sub(base_timestamp),
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
    }
    let header = InputHeader {
        topic,
        partition,
        base_offset: 0,
        base_timestamp,
        record_count: records.len() as u32,
    };
    codec::encode_batch_input(&header, &area)
}

/// One record the transform wrote, with the output topic it went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Which input record (0-based) produced it.
    pub input_index: usize,
    pub topic: String,
    pub record: OwnedRecord,
}

/// The outcome of a run: what was written, what was refused, what was logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRun {
    pub written: Vec<Written>,
    /// `(input index, message)` per refused record.
    pub errors: Vec<(usize, String)>,
    pub logs: Vec<String>,
}

/// A state store or table in memory: key -> value.
pub type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

/// A test deployment: input topic, outputs and env, like `sluice transform deploy` would give,
/// and its state store and `--table` topics in memory. The store is kept across
/// [`run`](Harness::run)s, as the broker keeps it across batches.
#[derive(Debug, Clone)]
pub struct Harness {
    topic: String,
    partition: i32,
    deployment: Deployment,
    state: RefCell<Rows>,
    tables: BTreeMap<String, Rows>,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness {
            topic: "input".into(),
            partition: 0,
            deployment: Deployment {
                outputs: vec!["output".into()],
                env: Vec::new(),
            },
            state: RefCell::new(Rows::new()),
            tables: BTreeMap::new(),
        }
    }
}

impl Harness {
    /// Input topic `input`, one output topic `output`, no env.
    pub fn new() -> Harness {
        Harness::default()
    }
    /// The input topic name the records carry.
    pub fn input(mut self, topic: &str) -> Harness {
        self.topic = topic.to_string();
        self
    }
    /// The output topics (the first is the default).
    pub fn outputs(mut self, outputs: &[&str]) -> Harness {
        self.deployment.outputs = outputs.iter().map(|o| o.to_string()).collect();
        self
    }
    /// One `--env KEY=VALUE` pair.
    pub fn env(mut self, key: &str, value: &str) -> Harness {
        self.deployment
            .env
            .push((key.to_string(), value.to_string()));
        self
    }

    /// Starts the state store with `value` under `key`.
    pub fn state(self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Harness {
        self.state
            .borrow_mut()
            .insert(key.as_ref().to_vec(), value.as_ref().to_vec());
        self
    }
    /// One row of the `--table` topic `table`: its latest value for `key`.
    pub fn table(mut self, table: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Harness {
        self.tables
            .entry(table.to_string())
            .or_default()
            .insert(key.as_ref().to_vec(), value.as_ref().to_vec());
        self
    }
    /// What the state store holds under `key` after the runs so far.
    pub fn stored(&self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.state.borrow().get(key.as_ref()).cloned()
    }
    /// The whole state store after the runs so far.
    pub fn stored_all(&self) -> Rows {
        self.state.borrow().clone()
    }

    /// Runs `transform` over `records` (offsets 0, 1, ...; missing timestamps are 0).
    pub fn run<F>(
        &self,
        mut transform: F,
        records: impl IntoIterator<Item = OwnedRecord>,
    ) -> TestRun
    where
        F: FnMut(Record<'_>, &mut Output) -> Result<(), Error>,
    {
        let records: Vec<OwnedRecord> = records.into_iter().collect();
        let input = input_buffer(&self.topic, self.partition, &records);
        crate::__private::init(&codec::encode_deployment(&self.deployment));
        crate::log::CAPTURED.with(|c| c.borrow_mut().clear());
        let mut out = Output::new(self.deployment.outputs.clone());
        out.trace = Some(Vec::new());
        STATE.with(|s| *s.borrow_mut() = self.state.borrow().clone());
        TABLES.with(|t| *t.borrow_mut() = self.tables.clone());
        // The encoder and decoder are this crate's own; a failure here is a bug in the SDK.
        crate::__private::run_batch(&mut out, &input, &mut transform)
            .expect("SDK codec round trip");
        *self.state.borrow_mut() = STATE.with(|s| std::mem::take(&mut *s.borrow_mut()));
        // Each output's records in order; the trace says in which order they were written
        // across outputs.
        let mut readers: Vec<Option<RecordReader<'_>>> =
            self.deployment.outputs.iter().map(|_| None).collect();
        for s in crate::__private::sections(&out) {
            let header = InputHeader {
                topic: "",
                partition: 0,
                base_offset: 0,
                base_timestamp: s.base_timestamp,
                record_count: s.record_count,
            };
            readers[s.output as usize] = Some(RecordReader::new(&header, s.records));
        }
        let written = out
            .trace
            .iter()
            .flatten()
            .map(|&(input_index, output)| {
                let r = readers[output as usize]
                    .as_mut()
                    .and_then(Iterator::next)
                    .expect("one record per traced write")
                    .expect("SDK codec round trip");
                Written {
                    input_index: input_index as usize,
                    topic: self.deployment.outputs[output as usize].clone(),
                    record: OwnedRecord {
                        key: r.key().map(<[u8]>::to_vec),
                        value: r.value().map(<[u8]>::to_vec),
                        headers: r
                            .headers()
                            .iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect(),
                        timestamp: Some(r.timestamp()),
                    },
                }
            })
            .collect();
        TestRun {
            written,
            errors: out
                .errors
                .iter()
                .map(|(i, m)| (*i as usize, m.clone()))
                .collect(),
            logs: crate::log::CAPTURED
                .with(|c| c.borrow().iter().map(|(_, m)| m.clone()).collect()),
        }
    }
}

/// Runs `transform` with the default [`Harness`]; the first refused record is the error.
pub fn run<F>(
    transform: F,
    records: impl IntoIterator<Item = OwnedRecord>,
) -> Result<Vec<Written>, Error>
where
    F: FnMut(Record<'_>, &mut Output) -> Result<(), Error>,
{
    let run = Harness::new().run(transform, records);
    match run.errors.into_iter().next() {
        Some((i, message)) => Err(Error::new(format!("record {i}: {message}"))),
        None => Ok(run.written),
    }
}

thread_local! {
    /// The state store of the transform under test (see [`Harness::state`]).
    pub(crate) static STATE: RefCell<Rows> = const { RefCell::new(BTreeMap::new()) };
    /// The `--table` topics of the transform under test.
    pub(crate) static TABLES: RefCell<BTreeMap<String, Rows>> = const { RefCell::new(BTreeMap::new()) };
    /// Files a sink under test appended to: `(path, bytes)`.
    static SINK_FILES: RefCell<Vec<(String, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    /// Answers HTTP requests of a sink under test.
    #[allow(clippy::type_complexity)]
    static SINK_HTTP: std::cell::RefCell<Option<Box<dyn FnMut(crate::sink::Request) -> crate::sink::Response>>> = std::cell::RefCell::new(None);
}

pub(crate) fn sink_append_file(path: &str, data: &[u8]) -> Result<(), String> {
    SINK_FILES.with(|f| f.borrow_mut().push((path.to_string(), data.to_vec())));
    Ok(())
}

pub(crate) fn sink_http(request: &[u8]) -> Result<crate::sink::Response, String> {
    let request = crate::sink::decode_request(request).ok_or("malformed request")?;
    SINK_HTTP.with(|h| match h.borrow_mut().as_mut() {
        Some(answer) => Ok(answer(request)),
        None => Err("no HTTP responder in this test (SinkHarness::http)".to_string()),
    })
}

/// Runs a sink natively: files it appends to are captured, HTTP requests answered by a closure.
#[derive(Default)]
pub struct SinkHarness {
    env: Vec<(String, String)>,
}

/// What a sink did in a test.
#[derive(Debug)]
pub struct SinkRun {
    pub result: Result<(), crate::SinkError>,
    pub files: Vec<(String, Vec<u8>)>,
}

impl SinkHarness {
    pub fn new() -> SinkHarness {
        SinkHarness::default()
    }
    pub fn env(mut self, key: &str, value: &str) -> SinkHarness {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// Answers the sink's HTTP requests with `answer`.
    pub fn http(
        self,
        answer: impl FnMut(crate::sink::Request) -> crate::sink::Response + 'static,
    ) -> SinkHarness {
        SINK_HTTP.with(|h| *h.borrow_mut() = Some(Box::new(answer)));
        self
    }
    /// Delivers `records` with `sink`.
    pub fn run<F>(&self, mut sink: F, records: impl IntoIterator<Item = OwnedRecord>) -> SinkRun
    where
        F: FnMut(&[Record<'_>]) -> Result<(), crate::SinkError>,
    {
        let records: Vec<OwnedRecord> = records.into_iter().collect();
        crate::__private::init(&codec::encode_deployment(&Deployment {
            outputs: Vec::new(),
            env: self.env.clone(),
        }));
        SINK_FILES.with(|f| f.borrow_mut().clear());
        let out = crate::sink::run_sink(&input_buffer("input", 0, &records), &mut sink);
        SinkRun {
            result: crate::sink::decode_result(&out)
                .unwrap_or(Err(crate::SinkError::Permanent("malformed result".into()))),
            files: SINK_FILES.with(|f| f.borrow().clone()),
        }
    }
}
