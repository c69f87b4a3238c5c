"""ACL checks with confluent-kafka and kafka-python, driven by tests/tests/acls.rs.

Usage: acl_check.py COMMAND with settings in env:
  KAFKA_BROKER, MECHANISM (SASL over SASL_PLAINTEXT), USER, PASSWORD, TOPIC, TOPICS, GROUP, ACLS.

Commands print one line:
  create-topics     create TOPICS (comma-separated), "ok"
  create-acls       create ACLS (JSON: [[type, name, pattern, principal, operation, permission]];
                    confluent-kafka calls the cluster resource type "broker")
                    with confluent-kafka's AdminClient: "ok" or the error's name
  describe-acls     every binding, sorted, one "type:name:pattern:principal:operation:permission"
                    per comma-separated item (or the error's name)
  delete-acls       delete the bindings matching ACLS (as filters): how many were deleted
  produce           one record to TOPIC: "ok" or the delivery error's name
  list-topics       the topics Metadata shows, sorted, comma-separated
  consume           read TOPIC from the beginning in GROUP: "ok:<records>" or the error's name
  kafka-python-acls create then describe ACLS with kafka-python's KafkaAdminClient: "ok:<count>"
                    or the error's class name
"""

import json
import os
import sys
import time

env = os.environ.get


def confluent_config():
    return {
        "bootstrap.servers": env("KAFKA_BROKER"),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": env("MECHANISM", "SCRAM-SHA-256"),
        "sasl.username": env("USER"),
        "sasl.password": env("PASSWORD"),
    }


def bindings():
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return [
        AclBinding(
            ResourceType[t.upper()],
            name,
            ResourcePatternType[pattern.upper()],
            principal,
            "*",
            AclOperation[op.upper()],
            AclPermissionType[perm.upper()],
        )
        for t, name, pattern, principal, op, perm in json.loads(env("ACLS"))
    ]


_ADMIN = []


def admin():
    """One client for the process: librdkafka fails the futures of a client that is destroyed."""
    from confluent_kafka.admin import AdminClient

    if not _ADMIN:
        _ADMIN.append(AdminClient(confluent_config()))
    return _ADMIN[0]


def error_name(e):
    err = e.args[0] if e.args else e
    return err.name() if hasattr(err, "name") else str(err)


def create_topics():
    from confluent_kafka.admin import NewTopic

    futures = admin().create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1) for t in env("TOPICS").split(",")]
    )
    for f in futures.values():
        f.result(timeout=30)
    return "ok"


def create_acls():
    try:
        for f in admin().create_acls(bindings(), request_timeout=30).values():
            f.result()
    except Exception as e:
        return error_name(e)
    return "ok"


def describe_acls():
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    everything = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    try:
        found = admin().describe_acls(everything, request_timeout=30).result()
    except Exception as e:
        return error_name(e)
    return ",".join(
        sorted(
            f"{b.restype.name}:{b.name}:{b.resource_pattern_type.name}:{b.principal}:"
            f"{b.operation.name}:{b.permission_type.name}"
            for b in found
        )
    )


def delete_acls():
    from confluent_kafka.admin import AclBindingFilter

    filters = [
        AclBindingFilter(
            b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
            b.permission_type,
        )
        for b in bindings()
    ]
    total = 0
    for f in admin().delete_acls(filters, request_timeout=30).values():
        total += len(f.result())
    return str(total)


def produce():
    from confluent_kafka import Producer

    outcome = []
    p = Producer({**confluent_config(), "message.timeout.ms": 20000})
    p.produce(env("TOPIC"), b"acl-check", on_delivery=lambda err, _m: outcome.append(err))
    p.flush(30)
    if not outcome:
        return "timeout"
    return "ok" if outcome[0] is None else outcome[0].name()


def list_topics():
    md = admin().list_topics(timeout=30)
    return ",".join(sorted(t for t, m in md.topics.items() if m.error is None))


def consume():
    from confluent_kafka import Consumer, KafkaException

    c = Consumer(
        {
            **confluent_config(),
            "group.id": env("GROUP"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([env("TOPIC")])
    deadline = time.time() + 60
    seen = 0
    try:
        while time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                if seen:
                    break
                continue
            if m.error():
                return m.error().name()
            seen += 1
        if seen:
            c.commit(asynchronous=False)
    except KafkaException as e:
        return error_name(e)
    finally:
        c.close()
    return f"ok:{seen}"


def kafka_python_acls():
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

    client = KafkaAdminClient(
        bootstrap_servers=env("KAFKA_BROKER"),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=env("MECHANISM", "SCRAM-SHA-256"),
        sasl_plain_username=env("USER"),
        sasl_plain_password=env("PASSWORD"),
        request_timeout_ms=30000,
    )
    try:
        acls = [
            ACL(
                principal=principal,
                host="*",
                operation=ACLOperation[op.upper()],
                permission_type=ACLPermissionType[perm.upper()],
                resource_pattern=ResourcePattern(
                    ResourceType[t.upper()], name, ACLResourcePatternType[pattern.upper()]
                ),
            )
            for t, name, pattern, principal, op, perm in json.loads(env("ACLS"))
        ]
        result = client.create_acls(acls)
        if result["failed"]:
            error = result["failed"][0]
            # kafka-python lists (acl, error) pairs in some versions, errors alone in others.
            error = error[1] if isinstance(error, tuple) else error
            return error.__name__ if isinstance(error, type) else type(error).__name__
        found, error = client.describe_acls(
            ACLFilter(
                principal=None,
                host="*",
                operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(
                    ResourceType.ANY, None, ACLResourcePatternType.ANY
                ),
            )
        )
        return f"ok:{len(found)}"
    except Exception as e:
        import traceback

        traceback.print_exc()
        return type(e).__name__
    finally:
        client.close()


COMMANDS = {
    "create-topics": create_topics,
    "create-acls": create_acls,
    "describe-acls": describe_acls,
    "delete-acls": delete_acls,
    "produce": produce,
    "list-topics": list_topics,
    "consume": consume,
    "kafka-python-acls": kafka_python_acls,
}

if __name__ == "__main__":
    print(COMMANDS[sys.argv[1]]())
