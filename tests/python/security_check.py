"""Security checks with confluent-kafka and kafka-python, driven by tests/tests/security.rs.

Usage: security_check.py COMMAND with settings in env:
  KAFKA_BROKER, PROTOCOL (SSL, SASL_SSL, SASL_PLAINTEXT), MECHANISM, USER, PASSWORD, CA, CERT, KEY,
  TOPIC, and for OAUTHBEARER: JWT_SECRET_B64URL, JWT_ISSUER, JWT_AUDIENCE, JWT_SUBJECT, JWT_EXP_OFFSET.

Commands print "ok" on success, or "refused: <message>" when the broker refused authentication.
  confluent-roundtrip   produce one record and read it back (confluent-kafka)
  kafka-python-roundtrip   the same with kafka-python
  confluent-refused     expect an authentication (or TLS) failure; print it
  alter-scram           AlterUserScramCredentials USER/PASSWORD with MECHANISM, then describe it
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

env = os.environ.get


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_token():
    """An HS256 JWT signed with the test's secret (the broker checks it against its JWKS)."""
    secret = base64.urlsafe_b64decode(env("JWT_SECRET_B64URL") + "==")
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": "test-key"}
    claims = {
        "sub": env("JWT_SUBJECT", "alice"),
        "iss": env("JWT_ISSUER"),
        "aud": env("JWT_AUDIENCE"),
        "iat": now,
        "exp": now + int(env("JWT_EXP_OFFSET", "600")),
    }
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64url(sig), claims["exp"]


def confluent_config():
    conf = {"bootstrap.servers": env("KAFKA_BROKER"), "security.protocol": env("PROTOCOL")}
    if env("CA"):
        conf["ssl.ca.location"] = env("CA")
    if env("CERT"):
        conf["ssl.certificate.location"] = env("CERT")
        conf["ssl.key.location"] = env("KEY")
    mechanism = env("MECHANISM")
    if mechanism:
        conf["sasl.mechanisms"] = mechanism
        if mechanism == "OAUTHBEARER":
            def oauth_cb(_config):
                # The client is told the token lasts, whatever its exp claim says, so that an
                # expired token reaches the broker (librdkafka would not send it otherwise).
                token, _exp = signed_token()
                return token, time.time() + 600
            conf["oauth_cb"] = oauth_cb
        else:
            conf["sasl.username"] = env("USER")
            conf["sasl.password"] = env("PASSWORD")
    return conf


def confluent_roundtrip():
    from confluent_kafka import Consumer, Producer

    topic = env("TOPIC")
    value = "secure-" + uuid.uuid4().hex
    errors = []
    conf = confluent_config()
    conf["error_cb"] = lambda e: errors.append(str(e))
    producer = Producer(conf)
    delivered = []
    producer.produce(topic, value=value.encode(), on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(30)
    if delivered != [None]:
        sys.exit(f"delivery failed: {delivered} {errors}")
    conf = confluent_config()
    conf.update({"group.id": "sec-" + uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    deadline = time.time() + 60
    while time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        if msg.value().decode() == value:
            consumer.close()
            print("ok")
            return
    sys.exit(f"did not read back {value}; errors: {errors}")


def confluent_refused():
    from confluent_kafka import Producer

    errors = []
    conf = confluent_config()
    conf["error_cb"] = lambda e: errors.append(e)
    producer = Producer(conf)
    deadline = time.time() + 30
    while time.time() < deadline and not errors:
        producer.poll(0.2)
    fatal = [e for e in errors if "Authentication" in str(e) or "SSL" in str(e) or "authentication" in str(e)]
    if fatal:
        print("refused: " + str(fatal[0]))
    else:
        print("not refused: " + str([str(e) for e in errors]))


def kafka_python_roundtrip():
    from kafka import KafkaConsumer, KafkaProducer

    kwargs = {"bootstrap_servers": env("KAFKA_BROKER"), "security_protocol": env("PROTOCOL")}
    if env("CA"):
        kwargs["ssl_cafile"] = env("CA")
    if env("CERT"):
        kwargs["ssl_certfile"] = env("CERT")
        kwargs["ssl_keyfile"] = env("KEY")
    mechanism = env("MECHANISM")
    if mechanism == "OAUTHBEARER":
        try:
            from kafka.net.sasl.oauth import AbstractTokenProvider
        except ImportError:  # kafka-python before 3.0
            from kafka.sasl.oauth import AbstractTokenProvider

        class Provider(AbstractTokenProvider):
            def token(self):
                return signed_token()[0]

        kwargs["sasl_mechanism"] = mechanism
        kwargs["sasl_oauth_token_provider"] = Provider()
    elif mechanism:
        kwargs["sasl_mechanism"] = mechanism
        kwargs["sasl_plain_username"] = env("USER")
        kwargs["sasl_plain_password"] = env("PASSWORD")
    topic = env("TOPIC")
    value = "secure-" + uuid.uuid4().hex
    producer = KafkaProducer(**kwargs)
    producer.send(topic, value.encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=20000,
                             group_id="sec-" + uuid.uuid4().hex, **kwargs)
    for msg in consumer:
        if msg.value.decode() == value:
            consumer.close()
            print("ok")
            return
    sys.exit(f"kafka-python did not read back {value}")


def alter_scram():
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)

    admin = AdminClient(confluent_config())
    mechanism = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
                 "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}[env("SCRAM_MECHANISM")]
    upsert = UserScramCredentialUpsertion(env("NEW_USER"), ScramCredentialInfo(mechanism, 8192),
                                          env("NEW_PASSWORD").encode())
    for user, future in admin.alter_user_scram_credentials([upsert]).items():
        future.result(timeout=30)
    described = admin.describe_user_scram_credentials([env("NEW_USER")])
    for user, future in described.items():
        info = future.result(timeout=30)
        infos = [(i.mechanism, i.iterations) for i in info.scram_credential_infos]
        if (mechanism, 8192) not in infos:
            sys.exit(f"describe shows {infos}")
    print("ok")


COMMANDS = {
    "confluent-roundtrip": confluent_roundtrip,
    "confluent-refused": confluent_refused,
    "kafka-python-roundtrip": kafka_python_roundtrip,
    "alter-scram": alter_scram,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]]()
