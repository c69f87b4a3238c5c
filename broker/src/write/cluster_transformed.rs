//! A produce to a topic with transforms in cluster mode: the input's batches are validated as
//! any produce's, each active deployment's guest runs on each batch (on the guest pool), and the
//! input and every output batch go to the upload buffer as one submission: one object, one
//! PostgreSQL transaction. Each output batch follows its input batch in the commit
//! ([`crate::cluster::types::BatchAppend::follows`]): stored only if the input is, so an
//! idempotent retry through any broker (after a lost answer or a broker's death) adds no output
//! twice, and no output is ever visible without its input.
//!
//! Output batches are plain batches the broker builds (producer id -1), one per destination
//! partition per input batch, partitioned as on a single node ([`super::outputs`]). The guest
//! sees each batch at offset 0: final offsets are assigned by the commit, after it ran (a
//! dead-letter copy's `offset` header is relative to its batch, too).
//!
//! Stateless deployments only; the deploy refuses the rest ([`crate::cluster::deployments`]),
//! and a produce refuses a chain (an output topic with transforms of its own) by name.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::cluster::{appends, count_in, prepare, unsupported};
use super::outputs::OutputBatches;
use super::validate::Batch;
use crate::broker::Broker;
use crate::cluster::node::Cluster;
use crate::cluster::types::TopicMeta;
use crate::cluster::upload::{Answer, Submission};
use crate::log::AppendError;
use crate::records::batch::BatchHeader;
use crate::records::record::BatchMeta;
use crate::records::Compression;
use crate::transform::run::{self, Decision, Source};
use crate::transform::Running;
use crate::wasm::abi::BatchInput;

/// A topic a deployment writes: what building its batches needs.
#[derive(Debug, Clone)]
struct Target {
    meta: TopicMeta,
    rules: crate::records::BatchRules,
    max_message_bytes: u32,
}

/// An output batch, built: its input batch's index, where it goes, its bytes.
struct Output {
    leader: usize,
    topic: usize,
    partition: i32,
    batch: Vec<u8>,
}

/// Validates `records`, runs the topic's transforms on them and submits input and outputs to
/// the upload buffer together; the answer (the input's outcomes) arrives after the commit.
/// Called in the order a connection sent its produces.
pub async fn submit_transformed(
    broker: &Arc<Broker>,
    cluster: &Cluster,
    transactional_id: Option<&str>,
    topic: &TopicMeta,
    partition: i32,
    records: Bytes,
    now: i64,
) -> Result<Answer, AppendError> {
    let (records, batches) = prepare(cluster, transactional_id, topic, partition, records, now)?;
    let transforms = broker.transforms.for_topic(&topic.name);
    let mut names: Vec<String> = Vec::new();
    for t in &transforms {
        let d = t.deployment.read();
        if d.in_place || t.state.stateful || !d.tables.is_empty() {
            return Err(unsupported(&format!(
                "transform '{}' (in place, with state or tables)",
                d.name
            )));
        }
        for w in d.writes() {
            if !names.contains(&w) {
                names.push(w);
            }
        }
    }
    let mut targets = Vec::with_capacity(names.len());
    for name in &names {
        if broker.transforms.has_topic(name) {
            return Err(unsupported(&format!(
                "transform chains (output topic '{name}' has transforms of its own)"
            )));
        }
        let meta = cluster.topic_or_create(name).await.map_err(|e| {
            AppendError::Io(std::io::Error::other(format!("output topic {name}: {e}")))
        })?;
        let (log, rules) = crate::catalog::rules_of(&cluster.settings.topics, &meta.configs)
            .map_err(|e| AppendError::InvalidRecord(format!("output topic {name}: {e}")))?;
        targets.push(Target {
            meta,
            rules,
            max_message_bytes: log.max_message_bytes,
        });
    }
    let input = topic.name.clone();
    let b = broker.clone();
    let ran = {
        let records = records.clone();
        let targets = targets.clone();
        broker
            .guests
            .run(move || {
                run_all(
                    &b,
                    &input,
                    partition,
                    &records,
                    batches,
                    &transforms,
                    &targets,
                )
            })
            .await
            .map_err(|e| AppendError::Io(std::io::Error::other(e.to_string())))?
    };
    let (batches, outputs) = ran?;

    let mut appended = appends(topic, partition, &batches);
    let answered = appended.len();
    let mut body = BytesMut::with_capacity(
        records.len() + outputs.iter().map(|o| o.batch.len()).sum::<usize>(),
    );
    body.extend_from_slice(&records);
    for o in &outputs {
        let header = BatchHeader::parse(&o.batch)
            .ok_or_else(|| AppendError::CorruptMessage("a built batch has no header".into()))?;
        let target = &targets[o.topic];
        appended.push(crate::cluster::types::BatchAppend {
            topic_id: target.meta.topic_id,
            partition: o.partition,
            byte_offset: body.len() as u64,
            byte_length: o.batch.len() as u32,
            record_count: header.last_offset_delta + 1,
            base_timestamp: header.base_timestamp,
            max_timestamp: header.max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            is_transactional: false,
            is_control: false,
            follows: Some(o.leader),
        });
        body.extend_from_slice(&o.batch);
    }
    count_in(&topic.name, &records, &batches);
    Ok(cluster.uploads.submit(Submission {
        records: body.freeze(),
        batches: appended,
        answered,
    }))
}

/// Runs every deployment on every batch (on the guest pool) and builds the output batches.
/// Any `reject` verdict refuses the whole produce: nothing of it is stored.
fn run_all(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: &Bytes,
    batches: Vec<Batch>,
    transforms: &[Arc<Running>],
    targets: &[Target],
) -> Result<(Vec<Batch>, Vec<Output>), AppendError> {
    let known: Vec<(String, i32)> = targets
        .iter()
        .map(|t| (t.meta.name.clone(), t.meta.partitions))
        .collect();
    let source = Source { topic, partition };
    let mut outputs = Vec::new();
    for t in transforms {
        let deployed = t.deployment.read().outputs.clone();
        for (leader, b) in batches.iter().enumerate() {
            let count = b.header.records_count;
            if count <= 0 {
                continue;
            }
            let guest_input = BatchInput {
                topic,
                partition,
                // The commit assigns the offsets, after this: the guest sees the batch's own.
                base_offset: 0,
                base_timestamp: b.header.base_timestamp,
                record_count: count as u32,
                records: b.records(records),
            };
            let mut out = OutputBatches::new(broker, source, &deployed).with_partitions(&known);
            let decision = run::decide(
                &broker.transforms.engine,
                &broker.authorizer,
                t,
                source,
                &guest_input,
                &mut |s| out.section(s),
            );
            let dead_letters = match decision {
                Decision::Write { dead_letters } => dead_letters,
                Decision::Reject(message) => return Err(AppendError::InvalidRecord(message)),
            };
            if !dead_letters.is_empty() {
                out.records(dead_letters);
            }
            let codec = b.header.compression().unwrap_or(Compression::None);
            for ((name, p), builder) in out.into_batches()? {
                if builder.count() == 0 {
                    continue;
                }
                let Some(at) = targets.iter().position(|x| x.meta.name == name) else {
                    return Err(AppendError::InvalidRecord(format!(
                        "output topic '{name}' is not one of the deployment's"
                    )));
                };
                let target = &targets[at];
                let codec = target
                    .rules
                    .compression
                    .target_for(codec)
                    .map_or(codec, |c| c.compression);
                let batch = builder.finish(codec, &BatchMeta::default());
                if batch.len() > target.max_message_bytes as usize {
                    return Err(AppendError::MessageTooLarge {
                        size: batch.len(),
                        max: target.max_message_bytes,
                    });
                }
                outputs.push(Output {
                    leader,
                    topic: at,
                    partition: p,
                    batch,
                });
            }
        }
    }
    Ok((batches, outputs))
}
