//! The server side of a SCRAM exchange (RFC 5802): client-first → server-first, client-final →
//! server-final. Messages are untrusted: every malformed one is a failure, never a panic.
//!
//! An unknown user gets a made-up salt (stable per user name) so the exchange looks the same as for
//! a real user with a wrong password, and fails at the same step with the same message.

use super::credentials::{
    b64_decode, b64_encode, constant_time_eq, random_bytes, CredentialStore, ScramCredential,
    ScramMechanism, MIN_ITERATIONS,
};
use super::SaslFailure;

/// Longest client message accepted (real ones are ~100 bytes; extensions leave room).
const MAX_MESSAGE: usize = 4096;

/// Where one exchange stands.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Waiting for client-first.
    Start,
    /// server-first sent; waiting for client-final.
    ServerFirstSent(Box<Pending>),
    /// Finished (either way): nothing more is accepted.
    Done,
}

/// What client-final is checked against.
#[derive(Debug)]
struct Pending {
    user: String,
    credential: Option<ScramCredential>,
    /// The stand-in credential when `credential` is None.
    decoy: ScramCredential,
    nonce: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
}

/// What one step gives back.
#[derive(Debug)]
pub enum ScramStep {
    /// Send these bytes and wait for the next client message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send the server-final message.
    Success { user: String, server_final: Vec<u8> },
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Processes one client message. `decoy_key` makes stand-in salts for unknown users.
    pub fn step(
        &mut self,
        store: &CredentialStore,
        decoy_key: &[u8],
        message: &[u8],
    ) -> Result<ScramStep, SaslFailure> {
        if message.len() > MAX_MESSAGE {
            self.state = State::Done;
            return Err(SaslFailure::malformed("SCRAM message too long"));
        }
        let text = std::str::from_utf8(message)
            .map_err(|_| SaslFailure::malformed("SCRAM message is not UTF-8"))?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start => self.client_first(store, decoy_key, text),
            State::ServerFirstSent(pending) => {
                let Pending {
                    user,
                    credential,
                    decoy,
                    nonce,
                    gs2_header,
                    client_first_bare,
                    server_first,
                } = *pending;
                let known = credential.is_some();
                let credential = credential.unwrap_or(decoy);
                let auth_message_start = format!("{client_first_bare},{server_first},");
                let server_final =
                    self.client_final(text, &credential, &nonce, &gs2_header, &auth_message_start)?;
                if !known {
                    return Err(SaslFailure::bad_credentials(&user, "unknown user"));
                }
                match server_final {
                    Some(server_final) => Ok(ScramStep::Success { user, server_final }),
                    None => Err(SaslFailure::bad_credentials(&user, "wrong password")),
                }
            }
            State::Done => Err(SaslFailure::malformed("SCRAM exchange already finished")),
        }
    }

    fn client_first(
        &mut self,
        store: &CredentialStore,
        decoy_key: &[u8],
        text: &str,
    ) -> Result<ScramStep, SaslFailure> {
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","; channel binding is not offered.
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().unwrap_or_default();
        let authzid = parts.next();
        let bare = parts.next();
        let (Some(authzid), Some(bare)) = (authzid, bare) else {
            return Err(SaslFailure::malformed(
                "SCRAM client-first lacks a gs2 header",
            ));
        };
        if cbind != "n" && cbind != "y" {
            return Err(SaslFailure::malformed(
                "SCRAM channel binding is not supported",
            ));
        }
        let mut user = None;
        let mut client_nonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match (i, attr.split_once('=')) {
                (0, Some(("m", _))) => {
                    return Err(SaslFailure::malformed(
                        "SCRAM mandatory extension not supported",
                    ))
                }
                (0, Some(("n", name))) => user = Some(decode_saslname(name)?),
                (1, Some(("r", nonce))) => client_nonce = Some(nonce),
                // Extensions such as tokenauth=true: delegation tokens are not supported, and
                // other extensions carry nothing we use.
                (_, Some(("tokenauth", "true"))) => {
                    return Err(SaslFailure::malformed(
                        "delegation tokens are not supported",
                    ))
                }
                (i, _) if i >= 2 => {}
                _ => return Err(SaslFailure::malformed("SCRAM client-first is malformed")),
            }
        }
        let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
            return Err(SaslFailure::malformed("SCRAM client-first lacks n= or r="));
        };
        if client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(SaslFailure::malformed("SCRAM client nonce is malformed"));
        }
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if decode_saslname(authzid)? != user {
                return Err(SaslFailure::bad_credentials(
                    &user,
                    "authorization id differs from the user",
                ));
            }
        } else if !authzid.is_empty() {
            return Err(SaslFailure::malformed("SCRAM gs2 header is malformed"));
        }
        let server_nonce = b64_encode(&random_bytes(18).map_err(|_| SaslFailure::internal())?);
        let nonce = format!("{client_nonce}{server_nonce}");
        let credential = store.get(&user, self.mechanism);
        let decoy = self.decoy(decoy_key, &user);
        let shown = credential.as_ref().unwrap_or(&decoy);
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64_encode(&shown.salt),
            shown.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::ServerFirstSent(Box::new(Pending {
            user,
            credential,
            decoy,
            nonce,
            gs2_header: format!("{cbind},{authzid},"),
            client_first_bare: bare.to_string(),
            server_first,
        }));
        Ok(ScramStep::Continue(reply))
    }

    /// Checks client-final; `Ok(Some(server-final))` when the proof is right, `Ok(None)` when it
    /// is wrong, `Err` when the message is malformed.
    fn client_final(
        &self,
        text: &str,
        credential: &ScramCredential,
        nonce: &str,
        gs2_header: &str,
        auth_message_start: &str,
    ) -> Result<Option<Vec<u8>>, SaslFailure> {
        let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
            return Err(SaslFailure::malformed("SCRAM client-final lacks a proof"));
        };
        let mut fields = without_proof.split(',');
        let channel = fields.next().and_then(|f| f.strip_prefix("c="));
        let got_nonce = fields.next().and_then(|f| f.strip_prefix("r="));
        let (Some(channel), Some(got_nonce)) = (channel, got_nonce) else {
            return Err(SaslFailure::malformed("SCRAM client-final lacks c= or r="));
        };
        if b64_decode(channel).as_deref() != Some(gs2_header.as_bytes()) {
            return Err(SaslFailure::malformed(
                "SCRAM channel binding does not match",
            ));
        }
        // The nonce must end with the one sent in server-first (which holds the client's and
        // ours): librdkafka repeats its client nonce in front, and Kafka accepts that the same way.
        if !got_nonce.ends_with(nonce) {
            return Err(SaslFailure::malformed("SCRAM nonce does not match"));
        }
        let Some(proof) = b64_decode(proof) else {
            return Err(SaslFailure::malformed("SCRAM proof is not base64"));
        };
        let m = self.mechanism;
        let auth_message = format!("{auth_message_start}{without_proof}");
        let client_signature = m.hmac_sign(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Ok(None);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !constant_time_eq(&m.hash(&client_key), &credential.stored_key) {
            return Ok(None);
        }
        let server_signature = m.hmac_sign(&credential.server_key, auth_message.as_bytes());
        Ok(Some(
            format!("v={}", b64_encode(&server_signature)).into_bytes(),
        ))
    }

    /// A stand-in credential for a user that does not exist: its salt is stable per name (so
    /// repeated probes see the same salt, as for a real user) and its keys match no password.
    fn decoy(&self, decoy_key: &[u8], user: &str) -> ScramCredential {
        let m = self.mechanism;
        let mut salt = m.hmac_sign(decoy_key, user.as_bytes());
        salt.truncate(32);
        ScramCredential {
            salt,
            iterations: MIN_ITERATIONS,
            stored_key: m.hmac_sign(decoy_key, b"stored"),
            server_key: m.hmac_sign(decoy_key, b"server"),
        }
    }
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(name: &str) -> Result<String, SaslFailure> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslFailure::malformed("SCRAM user name has a bad escape")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(SaslFailure::malformed("SCRAM user name is empty"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the client side of RFC 5802 for `password` against the server.
    fn client_exchange(
        store: &CredentialStore,
        m: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<ScramStep, SaslFailure> {
        let mut server = ScramServer::new(m);
        let bare = format!("n={user},r=clientnonce123");
        let ScramStep::Continue(first) =
            server.step(store, b"k", format!("n,,{bare}").as_bytes())?
        else {
            panic!("expected server-first");
        };
        let first = String::from_utf8(first).unwrap();
        let mut nonce = "";
        let mut salt = vec![];
        let mut iterations = 0;
        for attr in first.split(',') {
            match attr.split_once('=').unwrap() {
                ("r", v) => nonce = v,
                ("s", v) => salt = b64_decode(v).unwrap(),
                ("i", v) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = m.hmac_sign(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{bare},{first},{without_proof}");
        let signature = m.hmac_sign(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let last = format!("{without_proof},p={}", b64_encode(&proof));
        server.step(store, b"k", last.as_bytes())
    }

    fn store_with(
        user: &str,
        m: ScramMechanism,
        password: &str,
    ) -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let cred = ScramCredential::new(m, password.as_bytes(), 4096).unwrap();
        store.apply(&[], vec![(user.into(), m, cred)]).unwrap();
        (dir, store)
    }

    #[test]
    fn right_password_authenticates_with_both_hashes() {
        for m in ScramMechanism::ALL {
            let (_dir, store) = store_with("alice", m, "pw");
            match client_exchange(&store, m, "alice", "pw").unwrap() {
                ScramStep::Success { user, server_final } => {
                    assert_eq!(user, "alice");
                    assert!(server_final.starts_with(b"v="));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let (_dir, store) = store_with("alice", ScramMechanism::Sha256, "pw");
        let wrong = client_exchange(&store, ScramMechanism::Sha256, "alice", "nope").unwrap_err();
        let unknown = client_exchange(&store, ScramMechanism::Sha256, "mallory", "pw").unwrap_err();
        assert_eq!(wrong.client_message(), unknown.client_message());
    }

    #[test]
    fn garbage_and_truncated_messages_fail_without_panicking() {
        let (_dir, store) = store_with("alice", ScramMechanism::Sha256, "pw");
        for msg in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"n,,n=",
            b"n,,n=alice",
            b"n,,r=x,n=alice",
            b"p=tls-unique,,n=alice,r=x",
            b"n,,n=al=ZZice,r=x",
            b"\xff\xfe",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            assert!(server.step(&store, b"k", msg).is_err(), "{msg:?}");
        }
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        server.step(&store, b"k", b"n,,n=alice,r=abc").unwrap();
        for last in [&b"c=biws"[..], b"c=biws,r=abc,p=", b",p=", b"r=abc"] {
            let mut s = ScramServer::new(ScramMechanism::Sha256);
            s.step(&store, b"k", b"n,,n=alice,r=abc").unwrap();
            assert!(s.step(&store, b"k", last).is_err(), "{last:?}");
        }
        assert!(server.step(&store, b"k", &vec![b'a'; 100_000]).is_err());
    }
}
