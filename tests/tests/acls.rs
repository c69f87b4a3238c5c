//! ACLs end to end over SASL_PLAINTEXT with confluent-kafka, kafka-python and kafkajs: a principal
//! allowed one topic is refused another with TOPIC_AUTHORIZATION_FAILED, its group work needs
//! group ACLs, prefixed ACLs, deny beating allow, super users, Metadata hiding what the principal
//! cannot describe, ACLs surviving a restart, the ACL APIs needing Alter on the cluster, and an
//! unknown authorizer refused at start.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{run, sluice_binary, tool, workspace_root, Broker, Options};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// Users of the ACL tests: `admin` (a super user), `alice` and `bob`, SCRAM-SHA-256.
const USERS: &[(&str, &str)] = &[
    ("admin", "admin-secret"),
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
];

/// A broker with one SASL_PLAINTEXT listener and `extra` settings, its users added.
fn acl_broker(extra: &str) -> Broker {
    let mut broker = Broker::start_with(Options {
        toml: format!(
            "\"listeners\" = \"SASL_PLAINTEXT://127.0.0.1:0\"\n\
             \"sasl.enabled.mechanisms\" = \"SCRAM-SHA-256,PLAIN\"\n{extra}"
        ),
        ..Options::default()
    });
    broker.stop();
    for (name, password) in USERS {
        let mut child = Command::new(sluice_binary())
            .args(["user", "add", name, "--password-stdin", "--mechanism"])
            .arg("SCRAM-SHA-256")
            .arg("--data-dir")
            .arg(broker.data.path().join("data"))
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
    }
    broker.start_again();
    broker
}

fn enforcing() -> String {
    format!("\"authorizer.class.name\" = \"{AUTHORIZER}\"\n\"super.users\" = \"User:admin\"\n")
}

fn password(user: &str) -> String {
    USERS
        .iter()
        .find(|(name, _)| *name == user)
        .map(|(_, p)| p.to_string())
        .expect("a test user")
}

fn python_clients() -> Option<String> {
    common::python_importing(&common::default_python(), "confluent_kafka, kafka")
}

/// Runs `tests/python/acl_check.py COMMAND` as `user` with `env`; its stdout, trimmed.
fn python(broker: &Broker, user: &str, command: &str, env: &[(&str, &str)]) -> String {
    let python = python_clients().expect("checked by the caller");
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/acl_check.py"))
        .arg(command)
        .env("KAFKA_BROKER", &broker.kafka)
        .env("USER", user)
        .env("PASSWORD", password(user));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(
        out.status.success(),
        "{command} as {user}: {}\n{}",
        out.stdout,
        out.stderr
    );
    out.stdout.trim().to_string()
}

#[test]
fn a_principal_is_held_to_its_topic_group_prefixed_and_deny_acls_across_a_restart() {
    if python_clients().is_none() {
        return;
    }
    let mut broker = acl_broker(&enforcing());
    let topics = "allowed,other,pre-eu,pre-us,secret";
    assert_eq!(
        python(&broker, "admin", "create-topics", &[("TOPICS", topics)]),
        "ok"
    );
    // Before any ACL, alice may do nothing and sees nothing; the super user sees everything.
    assert_eq!(
        python(&broker, "alice", "produce", &[("TOPIC", "allowed")]),
        "TOPIC_AUTHORIZATION_FAILED"
    );
    assert_eq!(python(&broker, "alice", "list-topics", &[]), "");
    assert_eq!(python(&broker, "admin", "list-topics", &[]), topics);
    let acls = r#"[
        ["topic", "allowed", "literal", "User:alice", "write", "allow"],
        ["topic", "pre-", "prefixed", "User:alice", "all", "allow"],
        ["topic", "pre-us", "literal", "User:alice", "write", "deny"],
        ["group", "team-", "prefixed", "User:alice", "read", "allow"]
    ]"#;
    assert_eq!(
        python(&broker, "alice", "create-acls", &[("ACLS", acls)]),
        "CLUSTER_AUTHORIZATION_FAILED",
        "only Alter on the cluster may create ACLs"
    );
    assert_eq!(
        python(&broker, "admin", "create-acls", &[("ACLS", acls)]),
        "ok"
    );

    let check = |broker: &Broker| {
        for (topic, expected) in [
            ("allowed", "ok"),
            ("other", "TOPIC_AUTHORIZATION_FAILED"),
            ("pre-eu", "ok"),
            ("pre-us", "TOPIC_AUTHORIZATION_FAILED"),
        ] {
            assert_eq!(
                python(broker, "alice", "produce", &[("TOPIC", topic)]),
                expected,
                "alice producing to {topic}"
            );
        }
        assert_eq!(
            python(broker, "bob", "produce", &[("TOPIC", "allowed")]),
            "TOPIC_AUTHORIZATION_FAILED"
        );
        // Write implies Describe; "other" and "secret" stay hidden.
        assert_eq!(
            python(broker, "alice", "list-topics", &[]),
            "allowed,pre-eu,pre-us"
        );
        assert_eq!(
            python(
                broker,
                "alice",
                "consume",
                &[("TOPIC", "pre-eu"), ("GROUP", "team-a")]
            ),
            "ok:1"
        );
        assert_eq!(
            python(
                broker,
                "alice",
                "consume",
                &[("TOPIC", "pre-eu"), ("GROUP", "elsewhere")]
            ),
            "GROUP_AUTHORIZATION_FAILED"
        );
    };
    check(&broker);
    let described = python(&broker, "admin", "describe-acls", &[]);
    assert_eq!(
        described,
        "GROUP:team-:PREFIXED:User:alice:READ:ALLOW,TOPIC:allowed:LITERAL:User:alice:WRITE:ALLOW,\
         TOPIC:pre-:PREFIXED:User:alice:ALL:ALLOW,TOPIC:pre-us:LITERAL:User:alice:WRITE:DENY"
    );

    broker.restart();
    assert_eq!(python(&broker, "admin", "describe-acls", &[]), described);
    python(&broker, "admin", "create-topics", &[("TOPICS", "after")]);
    // pre-eu now holds two records: the one of each check.
    check_after_restart(&broker);

    let deny = r#"[["topic", "pre-us", "literal", "User:alice", "write", "deny"]]"#;
    assert_eq!(
        python(&broker, "admin", "delete-acls", &[("ACLS", deny)]),
        "1"
    );
    assert_eq!(
        python(&broker, "alice", "produce", &[("TOPIC", "pre-us")]),
        "ok",
        "with the deny gone, the prefixed allow applies"
    );
}

fn check_after_restart(broker: &Broker) {
    assert_eq!(
        python(broker, "alice", "produce", &[("TOPIC", "allowed")]),
        "ok"
    );
    assert_eq!(
        python(broker, "alice", "produce", &[("TOPIC", "pre-us")]),
        "TOPIC_AUTHORIZATION_FAILED"
    );
    assert_eq!(
        python(broker, "alice", "list-topics", &[]),
        "allowed,pre-eu,pre-us"
    );
}

#[test]
fn kafka_python_manages_acls_only_with_alter_on_the_cluster() {
    if python_clients().is_none() {
        return;
    }
    let broker = acl_broker(&enforcing());
    let acls = r#"[["topic", "orders", "literal", "User:bob", "read", "allow"]]"#;
    let refused = python(&broker, "bob", "kafka-python-acls", &[("ACLS", acls)]);
    assert!(
        refused.contains("ClusterAuthorizationFailed"),
        "bob without Alter on the cluster: {refused}"
    );
    assert_eq!(
        python(&broker, "admin", "kafka-python-acls", &[("ACLS", acls)]),
        "ok:1"
    );
}

#[test]
fn kafkajs_creates_describes_and_deletes_acls_that_govern_its_producer() {
    let Some(mut node) = tool("node") else { return };
    let dir = workspace_root().join("tests/node");
    if !dir.join("node_modules/kafkajs").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tests/node has no node_modules: run scripts/test.sh"
        );
        eprintln!("SKIPPED: tests/node/node_modules missing (run scripts/test.sh)");
        return;
    }
    if python_clients().is_none() {
        return;
    }
    let broker = acl_broker(&enforcing());
    python(
        &broker,
        "admin",
        "create-topics",
        &[("TOPICS", "js-allowed,js-denied")],
    );
    node.arg(dir.join("acl_check.js"))
        .current_dir(&dir)
        .env("KAFKA_BROKER", &broker.kafka)
        .env("ADMIN_USER", "admin")
        .env("ADMIN_PASSWORD", password("admin"))
        .env("USER", "alice")
        .env("PASSWORD", password("alice"))
        .env("TOPIC", "js-allowed")
        .env("DENIED_TOPIC", "js-denied");
    let out = run(node, CLIENT_TIMEOUT);
    assert!(
        out.status.success(),
        "kafkajs: {}\n{}",
        out.stdout,
        out.stderr
    );
    let result: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("one JSON line");
    // kafkajs names operations by code: WRITE is 4.
    assert_eq!(
        result["described"],
        serde_json::json!(["js-allowed:User:alice:4"])
    );
    assert_eq!(result["allowed"], "ok");
    assert_eq!(result["denied"], "TOPIC_AUTHORIZATION_FAILED");
    assert_eq!(result["deleted"], 1);
    assert_eq!(result["afterDelete"], "TOPIC_AUTHORIZATION_FAILED");
}

#[test]
fn without_an_authorizer_everything_is_allowed_and_acl_apis_are_disabled() {
    if python_clients().is_none() {
        return;
    }
    let broker = acl_broker("");
    assert_eq!(
        python(&broker, "bob", "produce", &[("TOPIC", "open")]),
        "ok"
    );
    let acls = r#"[["topic", "open", "literal", "User:bob", "read", "allow"]]"#;
    assert_eq!(
        python(&broker, "bob", "create-acls", &[("ACLS", acls)]),
        "SECURITY_DISABLED"
    );
}

#[test]
fn allow_everyone_if_no_acl_found_opens_resources_without_acls() {
    if python_clients().is_none() {
        return;
    }
    let broker = acl_broker(&format!(
        "{}\"allow.everyone.if.no.acl.found\" = true\n",
        enforcing()
    ));
    python(
        &broker,
        "admin",
        "create-topics",
        &[("TOPICS", "free,guarded")],
    );
    let acls = r#"[["topic", "guarded", "literal", "User:alice", "write", "allow"]]"#;
    assert_eq!(
        python(&broker, "admin", "create-acls", &[("ACLS", acls)]),
        "ok"
    );
    assert_eq!(
        python(&broker, "bob", "produce", &[("TOPIC", "free")]),
        "ok"
    );
    assert_eq!(
        python(&broker, "bob", "produce", &[("TOPIC", "guarded")]),
        "TOPIC_AUTHORIZATION_FAILED"
    );
}

#[test]
fn an_unknown_authorizer_class_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "\"authorizer.class.name\" = \"com.example.HomeGrownAuthorizer\"\n",
    )
    .expect("config");
    let mut cmd = Command::new(sluice_binary());
    cmd.args([
        "serve",
        "--kafka-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(dir.path().join("data"))
    .arg("--config")
    .arg(&config);
    let out = run(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("authorizer.class.name") && out.stderr.contains("StandardAuthorizer"),
        "{}",
        out.stderr
    );
}

/// An HTTP call with curl as `user` (`None`: no credentials): `(status, headers and body)`.
fn curl(
    method: &str,
    url: &str,
    user: Option<(&str, &str)>,
    body: Option<&str>,
    ca: Option<&std::path::Path>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-i",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        url,
    ]);
    if let Some((name, password)) = user {
        cmd.args(["-u", &format!("{name}:{password}")]);
    }
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    match body {
        Some(b) if b.starts_with('@') => {
            cmd.args(["-H", "content-type: application/wasm", "--data-binary", b]);
        }
        Some(b) => {
            cmd.args(["-H", "content-type: application/json", "--data-binary", b]);
        }
        None => {}
    }
    let out = run(cmd, Duration::from_secs(60));
    let (text, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), text.to_string())
}

fn as_user(name: &str) -> Option<(&str, String)> {
    Some((name, password(name)))
}

fn creds<'a>(user: &'a Option<(&'a str, String)>) -> Option<(&'a str, &'a str)> {
    user.as_ref().map(|(n, p)| (*n, p.as_str()))
}

#[test]
fn http_deploys_need_cluster_alter_and_the_deployers_topic_rights() {
    if python_clients().is_none() || tool("curl").is_none() {
        return;
    }
    let module = common::guest_module("uppercase");
    let broker = acl_broker(&format!(
        "{}\"http.authentication\" = \"basic\"\n",
        enforcing()
    ));
    let base = format!("http://{}", broker.http);
    let (alice, admin, bob) = (as_user("alice"), as_user("admin"), as_user("bob"));

    // /health stays open; everything else asks for credentials.
    assert_eq!(
        curl("GET", &format!("{base}/health"), None, None, None).0,
        200
    );
    let (status, text) = curl("GET", &format!("{base}/v1/transforms"), None, None, None);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{text}"
    );
    let (status, text) = curl(
        "GET",
        &format!("{base}/v1/transforms"),
        Some(("alice", "wrong-password")),
        None,
        None,
    );
    assert_eq!(status, 401);
    assert!(text.contains("\"error_code\":401"), "{text}");

    // Without Alter on the cluster, alice may not upload or deploy code.
    let upload = format!("@{}", module.display());
    let (status, text) = curl(
        "POST",
        &format!("{base}/v1/modules"),
        creds(&alice),
        Some(&upload),
        None,
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("\"error_code\":403"), "{text}");
    let (status, text) = curl(
        "POST",
        &format!("{base}/v1/modules"),
        creds(&admin),
        Some(&upload),
        None,
    );
    assert_eq!(status, 201, "{text}");
    let hash = text
        .split("\"module\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("module hash")
        .to_string();

    python(&broker, "admin", "create-topics", &[("TOPICS", "in,out")]);
    let grants = r#"[
        ["broker", "kafka-cluster", "literal", "User:alice", "alter", "allow"],
        ["topic", "in", "literal", "User:alice", "read", "allow"],
        ["group", "connect-", "prefixed", "User:alice", "read", "allow"]
    ]"#;
    assert_eq!(
        python(&broker, "admin", "create-acls", &[("ACLS", grants)]),
        "ok"
    );
    let deploy = format!(r#"{{"module":"{hash}","input":"in","outputs":["out"]}}"#);
    let url = format!("{base}/v1/transforms/upper");
    let (status, text) = curl("PUT", &url, creds(&bob), Some(&deploy), None);
    assert_eq!(status, 403, "bob has no Alter on the cluster: {text}");
    let (status, text) = curl("PUT", &url, creds(&alice), Some(&deploy), None);
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("not authorized to write topic out"),
        "the refusal names the missing right: {text}"
    );
    let write_out = r#"[["topic", "out", "literal", "User:alice", "write", "allow"]]"#;
    assert_eq!(
        python(&broker, "admin", "create-acls", &[("ACLS", write_out)]),
        "ok"
    );
    let (status, text) = curl("PUT", &url, creds(&alice), Some(&deploy), None);
    assert_eq!(status, 201, "{text}");
    assert!(text.contains("\"deployer\":\"User:alice\""), "{text}");
    assert_eq!(
        python(&broker, "admin", "produce", &[("TOPIC", "in")]),
        "ok"
    );

    // Once alice loses Write on the output, her transform's writes are refused (policy reject).
    assert_eq!(
        python(&broker, "admin", "delete-acls", &[("ACLS", write_out)]),
        "1"
    );
    assert_eq!(
        python(&broker, "admin", "produce", &[("TOPIC", "in")]),
        "INVALID_RECORD"
    );

    // Connectors: Alter on the cluster to create, and the deployer's Read on what a sink reads.
    let sink_file = broker.data.path().join("sink.txt");
    let connector = |topic: &str| {
        format!(
            r#"{{"name":"sink-{topic}","config":{{"connector.class":"FileStreamSink","topics":"{topic}","file":"{}"}}}}"#,
            sink_file.display()
        )
    };
    let connectors = format!("{base}/connectors");
    let (status, text) = curl(
        "POST",
        &connectors,
        creds(&bob),
        Some(&connector("in")),
        None,
    );
    assert_eq!(status, 403, "{text}");
    let (status, text) = curl(
        "POST",
        &connectors,
        creds(&alice),
        Some(&connector("out")),
        None,
    );
    assert_eq!(status, 403, "alice may not read out: {text}");
    let (status, text) = curl(
        "POST",
        &connectors,
        creds(&alice),
        Some(&connector("in")),
        None,
    );
    assert_eq!(status, 201, "{text}");
    // Reads need Describe on the cluster, which Alter implies; bob has neither.
    assert_eq!(curl("GET", &connectors, creds(&alice), None, None).0, 200);
    assert_eq!(curl("GET", &connectors, creds(&bob), None, None).0, 403);
}

#[test]
fn https_serves_the_admin_api_with_the_kafka_keystore_to_a_client_trusting_the_ca() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    if tool("curl").is_none() {
        return;
    }
    drop(openssl);
    let dir = tempfile::tempdir().expect("temp dir");
    let sh = |script: &str| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).current_dir(dir.path());
        let out = run(cmd, Duration::from_secs(60));
        assert!(out.status.success(), "{script}: {}", out.stderr);
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 2 -subj '/CN=Sluice test CA' 2>/dev/null",
    );
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null && \
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext && \
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 2 -extfile ext 2>/dev/null && cat server.key server.pem > keystore.pem");
    let broker = acl_broker(&format!(
        "\"ssl.keystore.type\" = \"PEM\"\n\"ssl.keystore.location\" = \"{}\"\n\
         \"http.ssl.enabled\" = true\n\"http.authentication\" = \"basic\"\n",
        dir.path().join("keystore.pem").display()
    ));
    let ca = dir.path().join("ca.pem");
    let base = format!("https://{}", broker.http);
    let admin = as_user("admin");
    let (status, text) = curl(
        "GET",
        &format!("{base}/v1/transforms"),
        creds(&admin),
        None,
        Some(&ca),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        curl("GET", &format!("{base}/health"), None, None, Some(&ca)).0,
        200
    );
    // The CLI: credentials and the CA from flags, from env vars, or from a profile file.
    let (admin_user, admin_password) = creds(&admin).expect("admin credentials");
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(sluice_binary());
        cmd.args(["transform", "list"])
            .args(args)
            .env("HOME", dir.path())
            .env_remove("SLUICE_ADMIN")
            .env_remove("SLUICE_USER")
            .env_remove("SLUICE_PASSWORD")
            .env_remove("SLUICE_CA")
            .env_remove("SLUICE_PROFILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd, Duration::from_secs(60))
    };
    let ca_path = ca.display().to_string();
    let flags = cli(
        &[
            "--admin",
            &base,
            "--ca",
            &ca_path,
            "--user",
            admin_user,
            "--password",
            admin_password,
        ],
        &[],
    );
    assert!(flags.status.success(), "{}", flags.stderr);
    let env = cli(
        &[],
        &[
            ("SLUICE_ADMIN", &base),
            ("SLUICE_CA", &ca_path),
            ("SLUICE_USER", admin_user),
            ("SLUICE_PASSWORD", admin_password),
        ],
    );
    assert!(env.status.success(), "{}", env.stderr);
    let profile = dir.path().join(".config/sluice/profile.toml");
    std::fs::create_dir_all(profile.parent().expect("profile dir")).expect("profile dir");
    std::fs::write(
        &profile,
        format!(
            "admin = \"{base}\"\nca = \"{ca_path}\"\nuser = \"{admin_user}\"\npassword = \"{admin_password}\"\n"
        ),
    )
    .expect("profile");
    let from_profile = cli(&[], &[]);
    assert!(from_profile.status.success(), "{}", from_profile.stderr);
    // A wrong password is the broker's 401, in one line; no CA is a refused certificate.
    let wrong = cli(&["--password", "not-it"], &[]);
    assert!(!wrong.status.success());
    assert!(wrong.stderr.contains("HTTP 401"), "{}", wrong.stderr);
    assert_eq!(wrong.stderr.trim().lines().count(), 1, "{}", wrong.stderr);
    std::fs::remove_file(&profile).expect("profile removed");
    let untrusted = cli(&["--admin", &base], &[]);
    assert!(!untrusted.status.success());
    assert!(
        untrusted
            .stderr
            .contains("cannot reach the broker's HTTP API"),
        "{}",
        untrusted.stderr
    );

    // Without the CA the client refuses the certificate; plain HTTP gets no answer.
    assert_eq!(
        curl("GET", &format!("{base}/health"), None, None, None).0,
        0
    );
    assert_eq!(
        curl(
            "GET",
            &format!("http://{}/health", broker.http),
            None,
            None,
            None
        )
        .0,
        0
    );
}
