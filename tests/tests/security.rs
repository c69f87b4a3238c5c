//! Listeners, TLS and SASL end to end: kcat, confluent-kafka, kafka-python and kafkajs over SSL,
//! SASL_SSL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), OAUTHBEARER and mutual TLS, with certificates
//! the test makes with `openssl`; refusals (wrong password, unknown user, expired token, wrong CA,
//! plaintext on a TLS port, requests before authentication, hostile SASL frames); users created
//! with `sluice user add` and AlterUserScramCredentials; KIP-368 re-authentication; certificates
//! reloaded without a restart.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{eventually, run, sluice_binary, tool, workspace_root, Broker, Options};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tempfile::TempDir;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// A CA, a server keystore for 127.0.0.1/localhost, a client certificate, and a second CA that
/// signed nothing of ours.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn make() -> Option<Certs> {
        tool("openssl")?;
        let certs = Certs {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        certs.ca("ca");
        certs.ca("other-ca");
        certs.server_keystore("ca", "keystore.pem");
        certs.signed(
            "ca",
            "client",
            "/O=Acme/OU=eng/CN=alice",
            "extendedKeyUsage=clientAuth\n",
        );
        Some(certs)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str) {
        let key = format!("{name}.key");
        let pem = format!("{name}.pem");
        let subject = format!("/CN=Sluice test {name}");
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subject,
        ]);
    }

    fn signed(&self, ca: &str, name: &str, subject: &str, extensions: &str) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        std::fs::write(self.path(&ext), extensions).expect("ext file");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ]);
        let ca_pem = format!("{ca}.pem");
        let ca_key = format!("{ca}.key");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    /// A PEM keystore (key, then certificate) for the broker, signed by `ca`, written to `file`
    /// in one rename so the broker never sees half of it.
    fn server_keystore(&self, ca: &str, file: &str) {
        let name = format!("server-{ca}");
        self.signed(
            ca,
            &name,
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        let mut pem = std::fs::read(self.path(&format!("{name}.key"))).expect("key");
        pem.extend(std::fs::read(self.path(&format!("{name}.pem"))).expect("cert"));
        let tmp = self.path(&format!("{file}.tmp"));
        std::fs::write(&tmp, pem).expect("keystore");
        std::fs::rename(&tmp, self.path(file)).expect("rename keystore");
    }

    /// TOML settings for a broker with every kind of listener.
    fn toml(&self, client_auth: &str) -> String {
        format!(
            "\"listeners\" = \"PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0\"\n\
             \"ssl.keystore.type\" = \"PEM\"\n\
             \"ssl.keystore.location\" = \"{}\"\n\
             \"ssl.truststore.location\" = \"{}\"\n\
             \"ssl.client.auth\" = \"{client_auth}\"\n\
             \"ssl.principal.mapping.rules\" = \"RULE:^CN=([^,]*),.*$/$1/L,DEFAULT\"\n\
             \"sasl.enabled.mechanisms\" = \"PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\"\n",
            self.path("keystore.pem").display(),
            self.path("ca.pem").display(),
        )
    }
}

/// Listener name → address, from the startup line's `listeners=` field.
fn listeners(broker: &Broker) -> HashMap<String, String> {
    let field = broker
        .startup_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listeners="))
        .unwrap_or_else(|| panic!("no listeners= in {:?}", broker.startup_line));
    field
        .split(',')
        .map(|entry| {
            let (name, addr) = entry.split_once("://").expect("NAME://addr");
            (name.to_string(), addr.to_string())
        })
        .collect()
}

fn start(toml: String) -> Broker {
    Broker::start_with(Options {
        toml,
        ..Options::default()
    })
}

/// `sluice user add` against the broker's data dir (stopped for it, then started again).
fn add_user(broker: &mut Broker, name: &str, password: &str, mechanisms: &[&str]) {
    broker.stop();
    let mut cmd = Command::new(sluice_binary());
    cmd.args(["user", "add", name, "--password-stdin", "--data-dir"])
        .arg(broker.data.path().join("data"));
    for m in mechanisms {
        cmd.args(["--mechanism", m]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "sluice user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    broker.start_again();
}

fn kcat(args: &[&str], stdin: Option<&str>) -> Option<common::Run> {
    let mut cmd = tool("kcat")?;
    // cargo points LD_LIBRARY_PATH at the librdkafka that rdkafka-sys built (without TLS); kcat
    // must load the system's.
    cmd.env_remove("LD_LIBRARY_PATH").args(args);
    Some(match stdin {
        None => run(cmd, CLIENT_TIMEOUT),
        Some(input) => {
            let file = tempfile::NamedTempFile::new().expect("stdin file");
            std::fs::write(file.path(), input).expect("write stdin");
            cmd.stdin(std::fs::File::open(file.path()).expect("open stdin"));
            run(cmd, CLIENT_TIMEOUT)
        }
    })
}

fn kcat_security(protocol: &str, ca: &Path) -> Vec<String> {
    vec![
        "-X".into(),
        format!("security.protocol={protocol}"),
        "-X".into(),
        format!("ssl.ca.location={}", ca.display()),
    ]
}

/// Produces `value` to `topic` and reads the topic back with kcat using `security` options.
fn kcat_round_trip(addr: &str, security: &[String], topic: &str, value: &str) {
    let sec: Vec<&str> = security.iter().map(String::as_str).collect();
    let mut produce = vec!["-b", addr, "-P", "-t", topic];
    produce.extend(&sec);
    let Some(out) = kcat(&produce, Some(&format!("{value}\n"))) else {
        return;
    };
    assert!(out.status.success(), "kcat produce: {}", out.stderr);
    let mut consume = vec!["-b", addr, "-C", "-t", topic, "-o", "beginning", "-e", "-q"];
    consume.extend(&sec);
    let out = kcat(&consume, None).expect("kcat");
    assert!(out.status.success(), "kcat consume: {}", out.stderr);
    assert!(
        out.stdout.lines().any(|l| l == value),
        "{value} not read back: {}",
        out.stdout
    );
}

fn python_clients() -> Option<String> {
    common::python_importing(&common::default_python(), "confluent_kafka, kafka")
}

/// Runs `tests/python/security_check.py COMMAND` with `env`; its stdout, trimmed.
fn python(command: &str, env: &[(&str, String)]) -> Option<String> {
    let python = python_clients()?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/security_check.py"))
        .arg(command);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(
        out.status.success(),
        "{command}: {}\n{}",
        out.stdout,
        out.stderr
    );
    Some(out.stdout.trim().to_string())
}

fn kafkajs(env: &[(&str, String)]) -> Option<String> {
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
    cmd.arg(dir.join("security_check.js")).current_dir(&dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(
        out.status.success(),
        "kafkajs: {}\n{}",
        out.stdout,
        out.stderr
    );
    Some(out.stdout.trim().to_string())
}

fn s(text: &str) -> String {
    text.to_string()
}

#[test]
fn sasl_ssl_with_plain_and_scram_serves_kcat_confluent_kafka_kafka_python_and_kafkajs() {
    let Some(certs) = Certs::make() else { return };
    let mut broker = start(certs.toml("none"));
    add_user(
        &mut broker,
        "alice",
        "alice-secret",
        &["SCRAM-SHA-256", "SCRAM-SHA-512"],
    );
    let l = listeners(&broker);
    let ca = certs.path("ca.pem");

    // The user exists in the data dir's credentials, salted: the password is nowhere in it.
    let stored = std::fs::read_to_string(
        broker
            .data
            .path()
            .join("data/__sluice/scram-credentials.json"),
    )
    .expect("credentials file");
    assert!(stored.contains("alice") && !stored.contains("alice-secret"));
    // While the broker runs, the CLI refuses to change its users.
    let mut cmd = Command::new(sluice_binary());
    cmd.args(["user", "list", "--data-dir"])
        .arg(broker.data.path().join("data"));
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(
        !out.status.success() && out.stderr.contains("in use by a running broker"),
        "{}",
        out.stderr
    );

    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let mut security = kcat_security("SASL_SSL", &ca);
        for x in [
            format!("sasl.mechanisms={mechanism}"),
            s("sasl.username=alice"),
            s("sasl.password=alice-secret"),
        ] {
            security.push("-X".into());
            security.push(x);
        }
        kcat_round_trip(
            &l["SASL_SSL"],
            &security,
            "kcat-sasl-ssl",
            &format!("via-{mechanism}"),
        );
    }
    let security = vec![
        s("-X"),
        s("security.protocol=SASL_PLAINTEXT"),
        s("-X"),
        s("sasl.mechanisms=SCRAM-SHA-256"),
        s("-X"),
        s("sasl.username=alice"),
        s("-X"),
        s("sasl.password=alice-secret"),
    ];
    kcat_round_trip(
        &l["SASL_PLAINTEXT"],
        &security,
        "kcat-sasl-plaintext",
        "via-sasl-plaintext",
    );

    // Metadata names the listener the client came in on.
    let mut metadata = vec!["-b", l["SASL_SSL"].as_str(), "-L"];
    let sec = [
        "-X",
        "security.protocol=SASL_SSL",
        "-X",
        "sasl.mechanisms=PLAIN",
        "-X",
        "sasl.username=alice",
        "-X",
        "sasl.password=alice-secret",
    ];
    metadata.extend(sec);
    let ca_opt = format!("ssl.ca.location={}", ca.display());
    metadata.extend(["-X", ca_opt.as_str()]);
    let out = kcat(&metadata, None).expect("kcat");
    assert!(
        out.stdout
            .contains(&format!("broker 1 at {}", l["SASL_SSL"])),
        "{}",
        out.stdout
    );

    let base = |mechanism: &str| {
        vec![
            ("KAFKA_BROKER", l["SASL_SSL"].clone()),
            ("PROTOCOL", s("SASL_SSL")),
            ("CA", ca.display().to_string()),
            ("MECHANISM", s(mechanism)),
            ("USER", s("alice")),
            ("PASSWORD", s("alice-secret")),
            ("TOPIC", format!("py-{mechanism}")),
        ]
    };
    if python_clients().is_some() {
        assert_eq!(
            python("confluent-roundtrip", &base("SCRAM-SHA-512")).as_deref(),
            Some("ok")
        );
        assert_eq!(
            python("confluent-roundtrip", &base("PLAIN")).as_deref(),
            Some("ok")
        );
        assert_eq!(
            python("kafka-python-roundtrip", &base("SCRAM-SHA-256")).as_deref(),
            Some("ok")
        );
        assert_eq!(
            python("kafka-python-roundtrip", &base("PLAIN")).as_deref(),
            Some("ok")
        );
    }
    for mechanism in ["plain", "scram-sha-256", "scram-sha-512"] {
        let mut env = base(mechanism);
        env.push(("TOPIC", format!("js-{mechanism}")));
        if let Some(out) = kafkajs(&env) {
            assert_eq!(out, "ok");
        }
    }
    // The default PLAINTEXT listener still serves without authentication.
    kcat_round_trip(&l["PLAINTEXT"], &[], "plain-listener", "no-auth-needed");
}

#[test]
fn mutual_tls_maps_the_client_certificate_to_the_principal() {
    let Some(certs) = Certs::make() else { return };
    let broker = start(certs.toml("required"));
    let l = listeners(&broker);
    let ca = certs.path("ca.pem");
    let mut security = kcat_security("SSL", &ca);
    for x in [
        format!(
            "ssl.certificate.location={}",
            certs.path("client.pem").display()
        ),
        format!("ssl.key.location={}", certs.path("client.key").display()),
    ] {
        security.push("-X".into());
        security.push(x);
    }
    kcat_round_trip(&l["SSL"], &security, "mtls", "with-client-cert");
    // ssl.principal.mapping.rules turned CN=alice,OU=eng,O=Acme into alice.
    assert!(
        broker.stderr().contains("client certificate accepted")
            && broker.stderr().contains("User:alice"),
        "{}",
        broker.stderr()
    );
    let env = vec![
        ("KAFKA_BROKER", l["SSL"].clone()),
        ("PROTOCOL", s("SSL")),
        ("CA", ca.display().to_string()),
        ("CERT", certs.path("client.pem").display().to_string()),
        ("KEY", certs.path("client.key").display().to_string()),
        ("TOPIC", s("py-mtls")),
    ];
    if python_clients().is_some() {
        assert_eq!(python("confluent-roundtrip", &env).as_deref(), Some("ok"));
        assert_eq!(
            python("kafka-python-roundtrip", &env).as_deref(),
            Some("ok")
        );
        // Without a client certificate the handshake is refused.
        let without: Vec<_> = env
            .iter()
            .filter(|(k, _)| *k != "CERT" && *k != "KEY")
            .cloned()
            .collect();
        let out = python("confluent-refused", &without).unwrap_or_default();
        assert!(out.starts_with("refused:"), "{out}");
    }
}

#[test]
fn tls_refuses_a_wrong_ca_and_a_plaintext_client_and_stays_up() {
    let Some(certs) = Certs::make() else { return };
    let broker = start(certs.toml("none"));
    let l = listeners(&broker);
    // A client trusting another CA refuses the broker's certificate.
    let security = kcat_security("SSL", &certs.path("other-ca.pem"));
    let sec: Vec<&str> = security.iter().map(String::as_str).collect();
    let mut args = vec!["-b", l["SSL"].as_str(), "-L", "-m", "5"];
    args.extend(&sec);
    if let Some(out) = kcat(&args, None) {
        assert!(!out.status.success());
        assert!(
            out.stderr.contains("certificate verify failed"),
            "{}",
            out.stderr
        );
    }
    // A plaintext Kafka request on the TLS port: the connection is closed, nothing answered.
    let mut stream = connect(&l["SSL"]);
    let request = frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    stream.write_all(&request).expect("send");
    assert!(
        is_closed(&mut stream),
        "a plaintext client on a TLS port is closed"
    );
    // The broker is still up, on every listener.
    kcat_round_trip(
        &l["SSL"],
        &kcat_security("SSL", &certs.path("ca.pem")),
        "tls-after",
        "still-up",
    );
    kcat_round_trip(&l["PLAINTEXT"], &[], "plain-after", "still-up");
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_refusal() {
    let Some(certs) = Certs::make() else { return };
    // No lockout here: librdkafka retries each refused login, and every attempt counts.
    let mut broker =
        start(certs.toml("none") + "\"sasl.failed.authentications.max.per.minute\" = 0\n");
    add_user(&mut broker, "alice", "alice-secret", &["SCRAM-SHA-256"]);
    let l = listeners(&broker);
    let env = |user: &str, password: &str, mechanism: &str| {
        vec![
            ("KAFKA_BROKER", l["SASL_SSL"].clone()),
            ("PROTOCOL", s("SASL_SSL")),
            ("CA", certs.path("ca.pem").display().to_string()),
            ("MECHANISM", s(mechanism)),
            ("USER", s(user)),
            ("PASSWORD", s(password)),
        ]
    };
    if python_clients().is_none() {
        return;
    }
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let wrong =
            python("confluent-refused", &env("alice", "nope", mechanism)).unwrap_or_default();
        let unknown =
            python("confluent-refused", &env("mallory", "nope", mechanism)).unwrap_or_default();
        assert!(
            wrong.contains("Authentication failed: invalid credentials"),
            "{wrong}"
        );
        assert!(
            unknown.contains("Authentication failed: invalid credentials"),
            "{unknown}"
        );
    }
    // The operator's log says what the client is not told.
    let log = broker.stderr();
    assert!(log.contains("user 'alice': wrong password"), "{log}");
    assert!(log.contains("user 'mallory': unknown user"), "{log}");
}

#[test]
fn alter_user_scram_credentials_from_an_admin_client_then_authenticate() {
    let Some(certs) = Certs::make() else { return };
    let broker = start(certs.toml("none"));
    let l = listeners(&broker);
    if python_clients().is_none() {
        return;
    }
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let user = format!("user-{}", mechanism.to_lowercase());
        let admin = vec![
            ("KAFKA_BROKER", l["PLAINTEXT"].clone()),
            ("PROTOCOL", s("PLAINTEXT")),
            ("SCRAM_MECHANISM", s(mechanism)),
            ("NEW_USER", user.clone()),
            ("NEW_PASSWORD", s("fresh-secret")),
        ];
        assert_eq!(python("alter-scram", &admin).as_deref(), Some("ok"));
        let client = vec![
            ("KAFKA_BROKER", l["SASL_PLAINTEXT"].clone()),
            ("PROTOCOL", s("SASL_PLAINTEXT")),
            ("MECHANISM", s(mechanism)),
            ("USER", user),
            ("PASSWORD", s("fresh-secret")),
            ("TOPIC", format!("altered-{mechanism}")),
        ];
        assert_eq!(
            python("confluent-roundtrip", &client).as_deref(),
            Some("ok")
        );
    }
}

/// A JWKS file holding one HMAC key; returns (toml, base64url secret).
fn oauth_setup(dir: &Path) -> (String, String) {
    let secret = "c2x1aWNlLXRlc3Qtc2VjcmV0LW9mLWF0LWxlYXN0LTMyLWJ5dGVz"; // base64url, 38 bytes
    let jwks =
        format!(r#"{{"keys":[{{"kty":"oct","kid":"test-key","alg":"HS256","k":"{secret}"}}]}}"#);
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks).expect("jwks");
    let toml = format!(
        "\"listeners\" = \"PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0\"\n\
         \"sasl.enabled.mechanisms\" = \"OAUTHBEARER,SCRAM-SHA-256\"\n\
         \"sasl.oauthbearer.jwks.endpoint.url\" = \"file://{}\"\n\
         \"sasl.oauthbearer.expected.issuer\" = \"https://issuer.test\"\n\
         \"sasl.oauthbearer.expected.audience\" = \"sluice\"\n",
        path.display()
    );
    (toml, secret.to_string())
}

#[test]
fn oauthbearer_accepts_a_signed_token_and_refuses_an_expired_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (toml, secret) = oauth_setup(dir.path());
    let broker = start(toml);
    let l = listeners(&broker);
    let env = |exp_offset: i64, audience: &str| {
        vec![
            ("KAFKA_BROKER", l["SASL_PLAINTEXT"].clone()),
            ("PROTOCOL", s("SASL_PLAINTEXT")),
            ("MECHANISM", s("OAUTHBEARER")),
            ("JWT_SECRET_B64URL", secret.clone()),
            ("JWT_ISSUER", s("https://issuer.test")),
            ("JWT_AUDIENCE", s(audience)),
            ("JWT_SUBJECT", s("token-user")),
            ("JWT_EXP_OFFSET", exp_offset.to_string()),
            ("TOPIC", s("oauth")),
        ]
    };
    if python_clients().is_some() {
        assert_eq!(
            python("confluent-roundtrip", &env(600, "sluice")).as_deref(),
            Some("ok")
        );
        assert!(
            broker.stderr().contains("authenticated")
                && broker.stderr().contains("User:token-user"),
            "{}",
            broker.stderr()
        );
        let mut kp = env(600, "sluice");
        kp.push(("TOPIC", s("oauth-kafka-python")));
        assert_eq!(python("kafka-python-roundtrip", &kp).as_deref(), Some("ok"));
        let expired = python("confluent-refused", &env(-600, "sluice")).unwrap_or_default();
        assert!(
            expired.contains("Authentication failed") && expired.contains("xpired"),
            "{expired}"
        );
        let other_audience =
            python("confluent-refused", &env(600, "someone-else")).unwrap_or_default();
        assert!(
            other_audience.contains("Authentication failed"),
            "{other_audience}"
        );
    }
    let mut js = env(600, "sluice");
    js.push(("MECHANISM", s("oauthbearer")));
    js.push(("TOPIC", s("oauth-js")));
    if let Some(out) = kafkajs(&js) {
        assert_eq!(out, "ok");
    }
}

// ---- raw protocol checks ----

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

fn frame<Req: Encodable>(api: ApiKey, version: i16, correlation: i32, request: &Req) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("raw-security-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .expect("header");
    request.encode(&mut body, version).expect("body");
    let mut out = BytesMut::new();
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out
}

/// Sends a request and decodes its response; `None` if the broker closed the connection.
fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    correlation: i32,
    request: &Req,
) -> Option<Resp> {
    stream
        .write_all(&frame(api, version, correlation, request))
        .ok()?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut response = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut response).ok()?;
    let mut buf = Bytes::from(response);
    assert_eq!(buf.get_i32(), correlation);
    if api.response_header_version(version) >= 1 {
        buf.get_u8();
    }
    Some(Resp::decode(&mut buf, version).expect("decode response"))
}

/// Whether the broker closes the connection (reads end) within the read timeout.
fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

fn handshake(stream: &mut TcpStream, mechanism: &str) -> SaslHandshakeResponse {
    call(
        stream,
        ApiKey::SaslHandshake,
        1,
        10,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )
    .expect("handshake answered")
}

fn authenticate(stream: &mut TcpStream, bytes: &[u8]) -> Option<SaslAuthenticateResponse> {
    call(
        stream,
        ApiKey::SaslAuthenticate,
        2,
        11,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(bytes)),
    )
}

fn plain_login(
    stream: &mut TcpStream,
    user: &str,
    password: &str,
) -> Option<SaslAuthenticateResponse> {
    assert_eq!(handshake(stream, "PLAIN").error_code, 0);
    authenticate(stream, format!("\0{user}\0{password}").as_bytes())
}

fn metadata(stream: &mut TcpStream) -> Option<MetadataResponse> {
    call(
        stream,
        ApiKey::Metadata,
        12,
        20,
        &MetadataRequest::default(),
    )
}

fn sasl_broker(extra: &str) -> (Broker, String) {
    let mut broker = start(format!(
        "\"listeners\" = \"PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0\"\n{extra}"
    ));
    add_user(&mut broker, "alice", "alice-secret", &["SCRAM-SHA-256"]);
    let addr = listeners(&broker)["SASL_PLAINTEXT"].clone();
    (broker, addr)
}

#[test]
fn only_api_versions_and_sasl_are_served_before_authentication() {
    let (broker, addr) = sasl_broker("");
    let mut stream = connect(&addr);
    let versions: ApiVersionsResponse = call(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    )
    .expect("ApiVersions");
    for api in [ApiKey::SaslHandshake, ApiKey::SaslAuthenticate] {
        assert!(
            versions.api_keys.iter().any(|k| k.api_key == api as i16),
            "{api:?} listed"
        );
    }
    let offered = handshake(&mut stream, "SCRAM-SHA-512");
    assert_eq!(offered.error_code, 0);
    assert!(
        metadata(&mut stream).is_none(),
        "Metadata before authentication closes the connection"
    );
    // An unsupported mechanism is refused with the list of enabled ones.
    let mut stream = connect(&addr);
    let refused = handshake(&mut stream, "GSSAPI");
    assert_eq!(refused.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    assert!(refused
        .mechanisms
        .iter()
        .any(|m| m.as_str() == "SCRAM-SHA-256"));
    // After authentication every request is served.
    let mut stream = connect(&addr);
    let ok = plain_login(&mut stream, "alice", "alice-secret").expect("answered");
    assert_eq!(ok.error_code, 0, "{:?}", ok.error_message);
    let md = metadata(&mut stream).expect("metadata after authentication");
    assert_eq!(
        md.brokers[0].port.to_string(),
        addr.rsplit(':').next().expect("port")
    );
    drop(broker);
}

#[test]
fn hostile_sasl_frames_never_take_the_broker_down() {
    let (broker, addr) = sasl_broker("\"sasl.failed.authentications.max.per.minute\" = 0\n");
    // A huge frame before authentication is refused before it is buffered.
    let mut stream = connect(&addr);
    let mut huge = BytesMut::new();
    huge.put_i32(50 * 1024 * 1024);
    stream.write_all(&huge).expect("send length");
    assert!(is_closed(&mut stream));
    // Garbage and truncated SCRAM messages get SASL_AUTHENTICATION_FAILED and a close.
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("SCRAM-SHA-256", vec![b"\xff\xfe\x00garbage".to_vec()]),
        ("SCRAM-SHA-256", vec![b"n,,n=alice".to_vec()]),
        (
            "SCRAM-SHA-256",
            vec![b"n,,n=alice,r=abc".to_vec(), b"c=biws,r=abc".to_vec()],
        ),
        (
            "SCRAM-SHA-256",
            vec![
                b"n,,n=alice,r=abc".to_vec(),
                b"c=biws,r=abcXYZ,p=!!!".to_vec(),
            ],
        ),
        ("SCRAM-SHA-256", vec![vec![b'n'; 300_000]]),
        ("PLAIN", vec![b"\0\0\0\0".to_vec()]),
    ];
    for (mechanism, messages) in cases {
        let mut stream = connect(&addr);
        assert_eq!(handshake(&mut stream, mechanism).error_code, 0);
        let last = messages.len() - 1;
        for (i, message) in messages.iter().enumerate() {
            let response = authenticate(&mut stream, message).expect("an answer before the close");
            if i == last {
                assert_eq!(
                    response.error_code, SASL_AUTHENTICATION_FAILED,
                    "{mechanism} {message:?}"
                );
            } else {
                assert_eq!(response.error_code, 0);
            }
        }
        assert!(
            is_closed(&mut stream),
            "closed after a failed authentication"
        );
    }
    // SaslAuthenticate without a handshake, and a truncated request body.
    let mut stream = connect(&addr);
    let response = authenticate(&mut stream, b"\0alice\0alice-secret").expect("answered");
    assert_eq!(response.error_code, 34, "ILLEGAL_SASL_STATE");
    let mut stream = connect(&addr);
    let mut cut = frame(
        ApiKey::SaslAuthenticate,
        2,
        1,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"0123456789")),
    );
    cut.truncate(cut.len() - 6);
    let len = cut.len() as i32 - 4;
    cut[0..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&cut).expect("send");
    assert!(is_closed(&mut stream));
    // Raw tokens after SaslHandshake v0: garbage closes the connection.
    let mut stream = connect(&addr);
    let v0: SaslHandshakeResponse = call(
        &mut stream,
        ApiKey::SaslHandshake,
        0,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256")),
    )
    .expect("v0 handshake");
    assert_eq!(v0.error_code, 0);
    stream.write_all(&[0, 0, 0, 3, 1, 2, 3]).expect("send");
    assert!(is_closed(&mut stream));
    // SaslHandshake v0 then a bare PLAIN token: a bare empty token answers success.
    let mut stream = connect(&addr);
    let v0: SaslHandshakeResponse = call(
        &mut stream,
        ApiKey::SaslHandshake,
        0,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    )
    .expect("v0 handshake");
    assert_eq!(v0.error_code, 0);
    let token = b"\0alice\0alice-secret";
    let mut raw = (token.len() as i32).to_be_bytes().to_vec();
    raw.extend_from_slice(token);
    stream.write_all(&raw).expect("send token");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("token reply");
    assert_eq!(i32::from_be_bytes(len), 0);
    assert!(metadata(&mut stream).is_some(), "authenticated through v0");
    // The broker is up and authenticates a real client.
    let mut stream = connect(&addr);
    let ok = plain_login(&mut stream, "alice", "alice-secret").expect("answered");
    assert_eq!(ok.error_code, 0);
    assert!(metadata(&mut stream).is_some());
    drop(broker);
}

#[test]
fn repeated_failures_from_one_address_are_refused_even_with_the_right_password() {
    let (broker, addr) = sasl_broker(
        "\"sasl.failed.authentications.max.per.minute\" = 3\n\"connection.failed.authentication.delay.ms\" = 200\n",
    );
    for _ in 0..3 {
        let mut stream = connect(&addr);
        let started = Instant::now();
        let refused = plain_login(&mut stream, "alice", "wrong").expect("answered");
        assert_eq!(refused.error_code, SASL_AUTHENTICATION_FAILED);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "failures are answered late"
        );
    }
    let mut stream = connect(&addr);
    let locked = plain_login(&mut stream, "alice", "alice-secret").expect("answered");
    assert_eq!(locked.error_code, SASL_AUTHENTICATION_FAILED);
    // The locked-out attempt was not checked: only the three real failures are in the log.
    let log = broker.stderr();
    assert_eq!(
        log.matches("user 'alice': wrong password").count(),
        3,
        "{log}"
    );
}

#[test]
fn sessions_past_connections_max_reauth_ms_must_reauthenticate() {
    let (broker, addr) = sasl_broker("\"connections.max.reauth.ms\" = 1500\n");
    // Re-authenticating before the deadline keeps the connection serving.
    let mut stream = connect(&addr);
    let first = plain_login(&mut stream, "alice", "alice-secret").expect("answered");
    assert_eq!(first.error_code, 0);
    assert!(
        first.session_lifetime_ms > 0 && first.session_lifetime_ms <= 1500,
        "{}",
        first.session_lifetime_ms
    );
    let again =
        plain_login(&mut stream, "alice", "alice-secret").expect("re-authentication answered");
    assert_eq!(again.error_code, 0);
    assert!(metadata(&mut stream).is_some());
    // A session left to expire is closed at its next request.
    let mut idle = connect(&addr);
    assert_eq!(
        plain_login(&mut idle, "alice", "alice-secret")
            .expect("answered")
            .error_code,
        0
    );
    let expired = eventually(Duration::from_secs(10), || {
        first_expired(&mut idle).then_some(())
    });
    assert!(expired.is_some(), "an expired session is closed");
    drop(broker);
}

/// Sends Metadata; true once the broker closes instead of answering.
fn first_expired(stream: &mut TcpStream) -> bool {
    metadata(stream).is_none()
}

#[test]
fn certificates_are_reloaded_without_a_restart() {
    let Some(certs) = Certs::make() else { return };
    let broker = start(certs.toml("none"));
    let l = listeners(&broker);
    kcat_round_trip(
        &l["SSL"],
        &kcat_security("SSL", &certs.path("ca.pem")),
        "reload",
        "before",
    );
    // The keystore is replaced with a certificate from the other CA.
    certs.server_keystore("other-ca", "keystore.pem");
    let security = kcat_security("SSL", &certs.path("other-ca.pem"));
    let sec: Vec<&str> = security.iter().map(String::as_str).collect();
    let reloaded = eventually(Duration::from_secs(30), || {
        let mut args = vec!["-b", l["SSL"].as_str(), "-L", "-m", "3"];
        args.extend(&sec);
        let out = kcat(&args, None)?;
        out.status.success().then_some(())
    });
    assert!(
        reloaded.is_some(),
        "the new certificate is served: {}",
        broker.stderr()
    );
    assert!(broker.stderr().contains("TLS certificates reloaded"));
}
