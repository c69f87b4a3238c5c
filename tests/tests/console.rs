//! The web console at `/ui` in a real browser: headless Chromium (Debian's package) driven by
//! `tests/node/console_check.js` through playwright-core. The page loads without console errors,
//! a produced topic appears with its record count, the message browser shows a produced record's
//! key and value, and a deployed transform shows its counters.

mod common;

use std::time::Duration;

use common::{guest_module, run, tool, transform_cli, workspace_root, Broker};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn send(p: &FutureProducer, topic: &str, key: &str, value: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(p.send(
        FutureRecord::to(topic).key(key).payload(value),
        Duration::from_secs(10),
    ))
    .map_err(|(e, _)| e.to_string())
    .expect("produce");
}

#[test]
fn console_shows_topics_records_and_transform_counters_in_chromium() {
    let (Some(_), Some(mut node)) = (tool("chromium"), tool("node")) else {
        return;
    };
    let broker = Broker::start();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    send(&p, "console-orders", "first-key", "plain text");
    send(
        &p,
        "console-orders",
        "console-key",
        r#"{"hello":"console"}"#,
    );
    send(&p, "console-orders", "last-key", "more text");

    let module = guest_module("uppercase").to_string_lossy().to_string();
    let deployed = transform_cli(
        &broker,
        &[
            "deploy", &module, "--name", "shout", "--input", "words", "--output", "shouted",
        ],
    );
    assert!(deployed.status.success(), "{}", deployed.stderr);
    send(&p, "words", "a", "hello");
    send(&p, "words", "b", "world");

    node.current_dir(workspace_root().join("tests/node")).args([
        "console_check.js",
        &format!("http://{}", broker.http),
        "console-orders",
        "3",
        "console-key",
        r#"{"hello":"console"}"#,
        "shout",
        "2",
    ]);
    let out = run(node, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "console check failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains(r#""ok":true"#), "{}", out.stdout);
}
