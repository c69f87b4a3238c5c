//! End-to-end tests for Sluice live in `tests/tests/`: each starts the real `sluice` binary on
//! ephemeral ports with a temporary data directory and drives it with stock clients (librdkafka
//! through the `rdkafka` crate, kafkajs, confluent-kafka and kafka-python, kcat).
