//! Stock clients other than the Rust one: the tutorial's kafkajs examples unchanged, kafkajs,
//! kcat (Debian's, librdkafka 2.0.2), confluent-kafka and kafka-python.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{run, tool, workspace_root, Broker, Options};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Every (key, value) of partition 0 of `topic`, read with librdkafka up to the high watermark.
fn read_all(broker: &Broker, topic: &str) -> Vec<(Option<String>, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&tpl).expect("assign");
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut next = 0;
    while next < high {
        assert!(
            std::time::Instant::now() < deadline,
            "read {next} of {high} records of {topic}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            next = m.offset() + 1;
            got.push((text(m.key()), text(m.payload())));
        }
    }
    got
}

fn node(script: &str, broker: Option<&Broker>) -> Option<common::Run> {
    let mut cmd = tool("node")?;
    let dir = workspace_root().join("tests/node");
    if !dir.join("node_modules/kafkajs").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tests/node has no node_modules: run scripts/test.sh"
        );
        eprintln!("SKIPPED: tests/node/node_modules missing (run scripts/test.sh)");
        return None;
    }
    cmd.arg(script)
        .current_dir(dir)
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
    if let Some(b) = broker {
        cmd.env("KAFKA_BROKER", &b.kafka);
    }
    Some(run(cmd, SCRIPT_TIMEOUT))
}

/// The tutorial's scripts connect to localhost:9092 and :8083, so this is the only test that
/// binds fixed ports; keeping every seed script in this one test means they never overlap.
#[test]
fn seed_examples_run_unchanged() {
    let broker = Broker::start_with(Options {
        kafka_port: Some(9092),
        http_port: Some(8083),
        ..Options::default()
    });

    let Some(producer) = node("seed/producer.js", None) else {
        return;
    };
    // producer.js reports failures with console.error and still exits 0: stderr must be empty.
    assert!(
        producer.status.success() && producer.stderr.trim().is_empty(),
        "producer.js failed:\n{}\n{}",
        producer.stdout,
        producer.stderr
    );
    assert_eq!(
        read_all(&broker, "test-topic"),
        vec![(
            Some("key1".to_string()),
            Some("Hello KafkaJS user!".to_string())
        )],
        "test-topic holds what producer.js sent"
    );

    let Some(admin) = node("seed/admin.js", None) else {
        return;
    };
    assert!(
        admin.status.success() && admin.stderr.trim().is_empty(),
        "admin.js failed:\n{}\n{}",
        admin.stdout,
        admin.stderr
    );
    assert!(
        admin.stdout.contains("Topic created successfully!"),
        "{}",
        admin.stdout
    );
    let listed = admin
        .stdout
        .lines()
        .find(|l| l.starts_with("Existing topics:"))
        .unwrap_or_default();
    assert!(
        listed.contains("'new-topic'") && listed.contains("'test-topic'"),
        "{listed}"
    );

    // consumer.js joins test-group and prints what producer.js sent, before and after it started.
    let Some(mut consumer) = tool("node") else {
        return;
    };
    let mut consumer = consumer
        .arg("seed/consumer.js")
        .current_dir(workspace_root().join("tests/node"))
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node seed/consumer.js");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let stdout = consumer.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().expect("lines").push(line);
        }
    });
    let received = |n: usize| {
        common::eventually(SCRIPT_TIMEOUT, || {
            let count = lines
                .lock()
                .expect("lines")
                .iter()
                .filter(|l| l.as_str() == "Received message: Hello KafkaJS user!")
                .count();
            (count >= n).then_some(())
        })
    };
    let first = received(1);
    // node and its packages were found above, so this run happens.
    let again = node("seed/producer.js", None);
    let second = received(2);
    let _ = consumer.kill();
    let _ = consumer.wait();
    let seen = lines.lock().expect("lines").clone();
    assert!(
        again.is_some_and(|r| r.status.success()),
        "producer.js ran again"
    );
    assert!(first.is_some(), "consumer.js printed: {seen:?}");
    assert!(
        second.is_some(),
        "a message produced while consumer.js runs: {seen:?}"
    );

    // connector.js creates a FileStreamSource on /path/to/input-file.txt; lines appended to it
    // become records of test-topic, once each, also across a broker restart.
    let seed_dir = std::path::Path::new("/path/to");
    let created_dirs = !seed_dir.exists();
    if std::fs::create_dir_all(seed_dir).is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot create /path/to for connector.js"
        );
        eprintln!("SKIPPED: connector.js needs /path/to (not writable here)");
        return;
    }
    let seed_file = seed_dir.join("input-file.txt");
    let _ = std::fs::remove_file(&seed_file);
    let created = node("seed/connector.js", None);
    assert!(
        created
            .as_ref()
            .is_some_and(|r| r.stdout.contains("Connector created successfully!")),
        "connector.js: {:?}",
        created.map(|r| (r.stdout, r.stderr))
    );
    let append = |line: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&seed_file)
            .expect("seed input file");
        f.write_all(line.as_bytes()).expect("append");
    };
    let topic_values = |broker: &Broker| {
        read_all(broker, "test-topic")
            .into_iter()
            .map(|(_, value)| value.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    append("first line\nsecond line\n");
    let after_lines = |broker: &Broker, want: &[&str]| {
        common::eventually(SCRIPT_TIMEOUT, || {
            let values = topic_values(broker);
            let tail: Vec<&str> = values.iter().skip(2).map(String::as_str).collect();
            (tail == want).then_some(())
        })
    };
    let got = after_lines(&broker, &["first line", "second line"]);
    let mut broker = broker;
    broker.restart();
    append("third line\n");
    let again = after_lines(&broker, &["first line", "second line", "third line"]);
    let _ = std::fs::remove_file(&seed_file);
    if created_dirs {
        let _ = std::fs::remove_dir("/path/to");
        let _ = std::fs::remove_dir("/path");
    }
    assert!(
        got.is_some(),
        "lines appended to the file reached test-topic: {:?}",
        topic_values(&broker)
    );
    assert!(
        again.is_some(),
        "after a restart only the new line arrives: {:?}",
        topic_values(&broker)
    );
}

#[test]
fn kafkajs_produces_batches_and_reads_topic_offsets() {
    let broker = Broker::start();
    let Some(out) = node("produce_check.js", Some(&broker)) else {
        return;
    };
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok 300"), "{}", out.stdout);
    let stored: std::collections::BTreeSet<_> = (0..2)
        .flat_map(|p| common::stored_codecs(&broker, "kafkajs-check", p))
        .collect();
    assert_eq!(
        stored,
        ["gzip", "none"].into(),
        "kafkajs sent plain and gzip batches"
    );
}

#[test]
fn kcat_lists_produces_and_consumes() {
    let broker = Broker::start();
    let Some(mut produce) = tool("kcat") else {
        return;
    };
    produce.args([
        "-b",
        &broker.kafka,
        "-P",
        "-t",
        "kcat-topic",
        "-K",
        ":",
        "-l",
        "/dev/stdin",
    ]);
    let lines: Vec<String> = (0..100).map(|i| format!("key{i}:line {i}")).collect();
    let mut child = produce
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kcat -P");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all((lines.join("\n") + "\n").as_bytes())
            .expect("write lines");
    }
    assert!(child.wait().expect("kcat -P").success());

    let Some(mut list) = tool("kcat") else { return };
    list.args(["-b", &broker.kafka, "-L"]);
    let listed = run(list, SCRIPT_TIMEOUT);
    assert!(
        listed
            .stdout
            .contains("topic \"kcat-topic\" with 1 partitions"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains("1 brokers"), "{}", listed.stdout);

    let Some(mut consume) = tool("kcat") else {
        return;
    };
    consume.args([
        "-b",
        &broker.kafka,
        "-C",
        "-t",
        "kcat-topic",
        "-o",
        "beginning",
        "-e",
        "-f",
        "%o %k:%s\n",
    ]);
    let read = run(consume, SCRIPT_TIMEOUT);
    assert!(read.status.success(), "{}", read.stderr);
    let expected: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{i} {l}\n"))
        .collect();
    assert_eq!(read.stdout, expected);
}

#[test]
fn confluent_kafka_and_kafka_python_produce_and_consume() {
    let broker = Broker::start();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let probe = Command::new(&python)
        .args(["-c", "import confluent_kafka, kafka"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !probe {
        assert!(
            std::env::var_os("CI").is_none(),
            "python clients missing: scripts/test.sh installs them"
        );
        eprintln!("SKIPPED: confluent-kafka / kafka-python not installed (run scripts/test.sh)");
        return;
    }
    let mut cmd = Command::new(&python);
    cmd.arg(workspace_root().join("tests/python/clients_check.py"))
        .env("KAFKA_BROKER", &broker.kafka);
    let out = run(cmd, SCRIPT_TIMEOUT);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
    assert!(
        common::stored_codecs(&broker, "py-kafka-python-gzip", 0).contains("gzip"),
        "kafka-python sent gzip batches"
    );
}

#[test]
fn kcat_round_trips_every_codec_with_headers() {
    let broker = Broker::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        let Some(mut produce) = tool("kcat") else {
            return;
        };
        produce
            .args(["-b", &broker.kafka, "-P", "-t", &topic, "-z", codec])
            .args(["-K", ":", "-H", "codec=", "-H", &format!("origin={codec}")]);
        let lines: Vec<String> = (0..50).map(|i| format!("k{i}:{codec} line {i}")).collect();
        let mut child = produce
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("kcat -P");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all((lines.join("\n") + "\n").as_bytes())
                .expect("write lines");
        }
        assert!(child.wait().expect("kcat -P").success(), "{codec}: kcat -P");

        let Some(mut consume) = tool("kcat") else {
            return;
        };
        consume
            .args([
                "-b",
                &broker.kafka,
                "-C",
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
            ])
            .args(["-f", "%o %k:%s [%h]\n"]);
        let read = run(consume, SCRIPT_TIMEOUT);
        assert!(read.status.success(), "{codec}: {}", read.stderr);
        let expected: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{i} {l} [codec=,origin={codec}]\n"))
            .collect();
        assert_eq!(read.stdout, expected, "{codec}");

        let stored = common::stored_codecs(&broker, &topic, 0);
        assert!(
            stored.contains(codec) && (codec != "none" || stored.len() == 1),
            "{codec}: kcat stored {stored:?}"
        );
    }
}
