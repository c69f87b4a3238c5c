//! Connectors end to end through the Kafka Connect REST API: FileStreamSource and FileStreamSink
//! moving data through the broker, progress visible as consumer group offsets, pause/resume,
//! delete, restarts without loss or repetition, and Connect-style errors.

mod common;

use std::time::Duration;

use common::{eventually, http, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn api(broker: &Broker, path: &str) -> String {
    format!("http://{}{path}", broker.http)
}

fn file_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn topic_values(broker: &Broker, topic: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "e2e-reader")
        .create()
        .expect("consumer");
    let Ok((_, high)) = c.fetch_watermarks(topic, 0, TIMEOUT) else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while (out.len() as i64) < high && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            use rdkafka::message::Message;
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

#[test]
fn a_file_flows_through_a_topic_into_another_file_and_survives_restarts() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().expect("dir");
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let source = format!(
        r#"{{"name":"src","config":{{"connector.class":"FileStreamSource","tasks.max":"1","topic":"lines","file":"{}"}}}}"#,
        input.display()
    );
    let (code, body) = http("POST", &api(&broker, "/connectors"), Some(&source));
    assert_eq!(code, 201, "{body}");
    let sink = format!(
        r#"{{"connector.class":"org.apache.kafka.connect.file.FileStreamSinkConnector","topics":"lines","file":"{}"}}"#,
        output.display()
    );
    let (code, body) = http("PUT", &api(&broker, "/connectors/sink/config"), Some(&sink));
    assert_eq!(code, 201, "{body}");

    std::fs::write(&input, "alpha\nbeta\r\ngamma\n").expect("write");
    let expected = vec!["alpha", "beta", "gamma"];
    assert!(
        eventually(TIMEOUT, || (file_lines(&output) == expected).then_some(())).is_some(),
        "{:?}",
        file_lines(&output)
    );
    assert_eq!(topic_values(&broker, "lines"), expected);

    // The sink's progress is its consumer group's committed offset.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "connect-sink")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("lines", 0);
    let committed = c.committed_offsets(tpl, TIMEOUT).expect("committed");
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(3));

    // Restart: nothing produced or written twice, and the connectors carry on.
    broker.restart();
    let status = eventually(TIMEOUT, || {
        let (_, body) = http("GET", &api(&broker, "/connectors/src/status"), None);
        body.contains("\"state\":\"RUNNING\"").then_some(body)
    });
    assert!(status.is_some());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"delta\n"))
        .expect("append");
    let expected = vec!["alpha", "beta", "gamma", "delta"];
    assert!(
        eventually(TIMEOUT, || (file_lines(&output) == expected).then_some(())).is_some(),
        "{:?}",
        file_lines(&output)
    );
    assert_eq!(topic_values(&broker, "lines"), expected);

    // Pause stops delivery; resume delivers what arrived meanwhile.
    assert_eq!(
        http("PUT", &api(&broker, "/connectors/sink/pause"), None).0,
        202
    );
    assert!(eventually(TIMEOUT, || http(
        "GET",
        &api(&broker, "/connectors/sink/status"),
        None
    )
    .1
    .contains("PAUSED")
    .then_some(()))
    .is_some());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"epsilon\n"))
        .expect("append");
    assert!(
        eventually(TIMEOUT, || (topic_values(&broker, "lines").len() == 5)
            .then_some(()))
        .is_some()
    );
    assert_eq!(file_lines(&output).len(), 4, "a paused sink writes nothing");
    assert_eq!(
        http("PUT", &api(&broker, "/connectors/sink/resume"), None).0,
        202
    );
    assert!(eventually(TIMEOUT, || (file_lines(&output).len() == 5).then_some(())).is_some());

    // Delete: gone from the list, 404 afterwards.
    assert_eq!(
        http("DELETE", &api(&broker, "/connectors/src"), None).0,
        204
    );
    let (_, list) = http("GET", &api(&broker, "/connectors"), None);
    assert_eq!(list, r#"["sink"]"#);
    assert_eq!(http("GET", &api(&broker, "/connectors/src"), None).0, 404);
}

#[test]
fn the_rest_surface_answers_as_kafka_connect_does() {
    let broker = Broker::start();
    let (code, root) = http("GET", &api(&broker, "/"), None);
    assert_eq!(code, 200);
    assert!(
        root.contains("\"version\"") && root.contains("kafka_cluster_id"),
        "{root}"
    );
    let (_, plugins) = http("GET", &api(&broker, "/connector-plugins"), None);
    assert!(
        plugins.contains("org.apache.kafka.connect.file.FileStreamSourceConnector"),
        "{plugins}"
    );

    // Bad configs: 400 naming the key.
    let (code, body) = http(
        "POST",
        &api(&broker, "/connectors"),
        Some(r#"{"name":"x","config":{"connector.class":"FileStreamSink","file":"/tmp/x"}}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("\"error_code\":400") && body.contains("topics"),
        "{body}"
    );
    let (code, body) = http(
        "POST",
        &api(&broker, "/connectors"),
        Some(r#"{"name":"x","config":{"connector.class":"com.example.Nope"}}"#),
    );
    assert_eq!(code, 400);
    assert!(body.contains("connector.class"), "{body}");
    let (code, body) = http(
        "POST",
        &api(&broker, "/connectors"),
        Some(
            r#"{"name":"x","config":{"connector.class":"FileStreamSource","topic":"t","file":"/tmp/x","tasks.max":"zero"}}"#,
        ),
    );
    assert_eq!(code, 400);
    assert!(body.contains("tasks.max"), "{body}");
    let (code, _) = http("POST", &api(&broker, "/connectors"), Some("not json"));
    assert_eq!(code, 400);

    // Validate.
    let (code, body) = http(
        "PUT",
        &api(
            &broker,
            "/connector-plugins/FileStreamSinkConnector/config/validate",
        ),
        Some(r#"{"connector.class":"FileStreamSink","file":"/tmp/x"}"#),
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("\"error_count\":1") && body.contains("Must configure one of topics"),
        "{body}"
    );

    // Create, conflict, info/config/tasks/status, patch, restart, stop.
    let create = r#"{"name":"s","config":{"connector.class":"FileStreamSource","topic":"t","file":"/nonexistent/file"}}"#;
    assert_eq!(
        http("POST", &api(&broker, "/connectors"), Some(create)).0,
        201
    );
    let (code, body) = http("POST", &api(&broker, "/connectors"), Some(create));
    assert_eq!(code, 409);
    assert!(body.contains("already exists"));
    let (_, info) = http("GET", &api(&broker, "/connectors/s"), None);
    assert!(
        info.contains("\"type\":\"source\"")
            && info.contains("\"tasks\":[{\"connector\":\"s\",\"task\":0}]"),
        "{info}"
    );
    let (_, tasks) = http("GET", &api(&broker, "/connectors/s/tasks"), None);
    assert!(
        tasks.contains("\"id\":{\"connector\":\"s\",\"task\":0}"),
        "{tasks}"
    );
    let (code, patched) = http(
        "PATCH",
        &api(&broker, "/connectors/s/config"),
        Some(r#"{"batch.size":"10","file":"/nonexistent/other"}"#),
    );
    assert_eq!(code, 200, "{patched}");
    let (_, config) = http("GET", &api(&broker, "/connectors/s/config"), None);
    assert!(
        config.contains("\"batch.size\":\"10\"") && config.contains("/nonexistent/other"),
        "{config}"
    );
    assert_eq!(
        http("POST", &api(&broker, "/connectors/s/restart"), None).0,
        204
    );
    assert_eq!(
        http("POST", &api(&broker, "/connectors/s/tasks/0/restart"), None).0,
        204
    );
    assert_eq!(
        http("POST", &api(&broker, "/connectors/s/tasks/7/restart"), None).0,
        404
    );
    assert_eq!(
        http("PUT", &api(&broker, "/connectors/s/stop"), None).0,
        204
    );
    assert!(eventually(TIMEOUT, || http(
        "GET",
        &api(&broker, "/connectors/s/status"),
        None
    )
    .1
    .contains("STOPPED")
    .then_some(()))
    .is_some());
    let (code, expanded) = http(
        "GET",
        &api(&broker, "/connectors?expand=status&expand=info"),
        None,
    );
    assert_eq!(code, 200);
    assert!(
        expanded.contains("\"status\"") && expanded.contains("\"info\""),
        "{expanded}"
    );
    let (code, body) = http("GET", &api(&broker, "/connectors/missing/status"), None);
    assert_eq!(code, 404);
    assert!(body.contains("Connector missing not found"), "{body}");
}
