//! Run a transform natively, in plain `cargo test`: records in, what it wrote out. The records go
//! through the same ABI encoding and per-record loop as inside the broker.

use crate::codec::{self, Deployment, InRecord};
use crate::{Error, Output, OwnedRecord, Record};

/// Test records as ABI input records: offsets 0, 1, ...; missing timestamps are 0.
fn in_records(records: &[OwnedRecord]) -> Vec<InRecord<'_>> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| InRecord {
            offset: i as i64,
            timestamp: r.timestamp.unwrap_or(0),
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect(),
        })
        .collect()
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

/// A test deployment: input topic, outputs and env, like `sluice transform deploy` would give.
#[derive(Debug, Clone)]
pub struct Harness {
    topic: String,
    partition: i32,
    deployment: Deployment,
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
        let inputs = in_records(&records);
        let input = codec::encode_input(&self.topic, self.partition, &inputs);
        crate::__private::init(&codec::encode_deployment(&self.deployment));
        crate::log::CAPTURED.with(|c| c.borrow_mut().clear());
        // The encoder and decoder are this crate's own; a failure here is a bug in the SDK.
        let output =
            crate::__private::run_batch(&input, &mut transform).expect("SDK codec round trip");
        let decoded = codec::decode_output(&output, inputs.len(), self.deployment.outputs.len())
            .expect("SDK codec round trip");
        TestRun {
            written: decoded
                .records
                .into_iter()
                .map(|r| Written {
                    input_index: r.input_index as usize,
                    topic: self
                        .deployment
                        .outputs
                        .get(r.output as usize)
                        .cloned()
                        .unwrap_or_default(),
                    record: OwnedRecord {
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                        timestamp: Some(r.timestamp),
                    },
                })
                .collect(),
            errors: decoded
                .errors
                .into_iter()
                .map(|(i, m)| (i as usize, m))
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
    /// Files a sink under test appended to: `(path, bytes)`.
    static SINK_FILES: std::cell::RefCell<Vec<(String, Vec<u8>)>> = const { std::cell::RefCell::new(Vec::new()) };
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
        let inputs = in_records(&records);
        crate::__private::init(&codec::encode_deployment(&Deployment {
            outputs: Vec::new(),
            env: self.env.clone(),
        }));
        SINK_FILES.with(|f| f.borrow_mut().clear());
        let out = crate::sink::run_sink(&codec::encode_input("input", 0, &inputs), &mut sink);
        SinkRun {
            result: crate::sink::decode_result(&out)
                .unwrap_or(Err(crate::SinkError::Permanent("malformed result".into()))),
            files: SINK_FILES.with(|f| f.borrow().clone()),
        }
    }
}
