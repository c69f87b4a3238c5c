//! SCRAM credentials (RFC 5802 / 7677): per user and mechanism, the salt, iteration count, stored
//! key and server key — never the password — kept in `data/__sluice/scram-credentials.json`.
//!
//! PLAIN is checked against the same records (the password is salted and hashed the SCRAM way and
//! compared with the stored key), so one `sluice user add` serves both mechanisms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use parking_lot::RwLock;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// The file under `data/__sluice/` holding every credential.
pub const CREDENTIALS_FILE: &str = "scram-credentials.json";
/// Fewest PBKDF2 iterations accepted (RFC 7677 asks for at least 4096).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations accepted: Kafka's bound, which keeps PLAIN checks affordable.
pub const MAX_ITERATIONS: u32 = 16384;
/// Bytes of random salt made for a new credential.
const SALT_LEN: usize = 32;
/// Longest user name accepted (Kafka has no limit; ours keeps the file and logs sane).
pub const MAX_NAME_LEN: usize = 256;

/// A SCRAM hash function, with Kafka's numbering in AlterUserScramCredentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's wire number (1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512).
    pub fn wire_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_wire_type(t: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.wire_type() == t)
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    /// Output length of the hash, which is also the length of a salted password.
    pub fn key_len(self) -> usize {
        self.digest().output_len()
    }

    /// `HMAC(key, data)`.
    pub fn hmac_sign(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    /// `H(data)`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// `Hi(password, salt, iterations)`: RFC 5802's SaltedPassword.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        // `iterations` is validated against MIN_ITERATIONS before any caller gets here; 1 is the
        // floor that keeps this total even if one did not.
        let rounds = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2(), rounds, salt, password, &mut out);
        out
    }
}

/// What the broker keeps of one user's password for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac_sign(salted_password, b"Client Key");
        ScramCredential {
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac_sign(salted_password, b"Server Key"),
        }
    }

    /// A credential for `password` with a fresh random salt.
    pub fn new(
        mechanism: ScramMechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, CredentialError> {
        let salt = random_bytes(SALT_LEN)?;
        let salted = mechanism.salted_password(password, &salt, iterations);
        Ok(ScramCredential::from_salted_password(
            mechanism, &salted, salt, iterations,
        ))
    }

    /// Whether `password` is the one this credential was made from (constant time).
    pub fn matches_password(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        let salted = mechanism.salted_password(password, &self.salt, self.iterations);
        let client_key = mechanism.hmac_sign(&salted, b"Client Key");
        constant_time_eq(&mechanism.hash(&client_key), &self.stored_key)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` bytes from the operating system's random source.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, CredentialError> {
    use ring::rand::SecureRandom;
    let mut out = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CredentialError::Random)?;
    Ok(out)
}

/// Why a credential cannot be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid credentials file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the operating system's random source failed")]
    Random,
    #[error("invalid user name: {0}")]
    InvalidName(String),
    #[error("iterations must be within [{MIN_ITERATIONS}, {MAX_ITERATIONS}], got {0}")]
    InvalidIterations(i64),
    #[error("no {mechanism} credential for user '{user}'")]
    NotFound { user: String, mechanism: String },
}

/// Checks a user name the way the store requires: non-empty, bounded, no control characters.
pub fn validate_name(name: &str) -> Result<(), CredentialError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(CredentialError::InvalidName(format!(
            "'{}' must be 1..={MAX_NAME_LEN} bytes without control characters",
            name.escape_default()
        )));
    }
    Ok(())
}

/// The file's layout.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CredentialsFile {
    version: u32,
    users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

/// Every user's SCRAM credentials, in memory and in the data dir.
#[derive(Debug)]
pub struct CredentialStore {
    /// `data/__sluice/scram-credentials.json`.
    path: PathBuf,
    /// The file's contents; writers hold the lock across the file write, so the file and memory
    /// never disagree.
    users: RwLock<BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>>,
}

impl CredentialStore {
    /// Loads the credentials of the meta directory `meta` (none yet is an empty store).
    pub fn open(meta: &Path) -> Result<CredentialStore, CredentialError> {
        let path = crate::meta::MetaDir::at(meta).scram_credentials();
        let users = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: CredentialsFile =
                    serde_json::from_slice(&bytes).map_err(|e| CredentialError::Corrupt {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                // A hand-edited iteration count would make every PLAIN login that slow.
                let bad = file
                    .users
                    .values()
                    .flat_map(BTreeMap::values)
                    .find(|c| !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&c.iterations));
                if let Some(c) = bad {
                    return Err(CredentialError::Corrupt {
                        path,
                        message: format!(
                            "iterations {} outside [{MIN_ITERATIONS}, {MAX_ITERATIONS}]",
                            c.iterations
                        ),
                    });
                }
                file.users
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(CredentialError::Read { path, source }),
        };
        Ok(CredentialStore {
            path,
            users: RwLock::new(users),
        })
    }

    /// The credential of `user` for `mechanism`, if there is one.
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.users.read().get(user)?.get(&mechanism).cloned()
    }

    /// Any one credential of `user` (PLAIN accepts whichever exists).
    pub fn any(&self, user: &str) -> Option<(ScramMechanism, ScramCredential)> {
        let users = self.users.read();
        let creds = users.get(user)?;
        creds.iter().next().map(|(m, c)| (*m, c.clone()))
    }

    /// Every user with the mechanisms and iteration counts it has.
    pub fn list(&self) -> Vec<(String, Vec<(ScramMechanism, u32)>)> {
        self.users
            .read()
            .iter()
            .map(|(user, creds)| {
                let mechs = creds.iter().map(|(m, c)| (*m, c.iterations)).collect();
                (user.clone(), mechs)
            })
            .collect()
    }

    /// Applies deletions and upsertions together and makes them durable before returning.
    pub fn apply(
        &self,
        deletions: &[(String, ScramMechanism)],
        upsertions: Vec<(String, ScramMechanism, ScramCredential)>,
    ) -> Result<(), CredentialError> {
        let mut users = self.users.write();
        let mut next = users.clone();
        for (user, mechanism) in deletions {
            let removed = next.get_mut(user).and_then(|creds| creds.remove(mechanism));
            if removed.is_none() {
                return Err(CredentialError::NotFound {
                    user: user.clone(),
                    mechanism: mechanism.name().to_string(),
                });
            }
            if next.get(user).is_some_and(BTreeMap::is_empty) {
                next.remove(user);
            }
        }
        for (user, mechanism, credential) in upsertions {
            validate_name(&user)?;
            next.entry(user).or_default().insert(mechanism, credential);
        }
        let file = CredentialsFile {
            version: 1,
            users: next,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| CredentialError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        crate::meta::write_atomically(&self.path, &bytes).map_err(|source| {
            CredentialError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        *users = file.users;
        Ok(())
    }
}

/// Base64 (standard alphabet) for the byte fields of the file.
mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Standard base64, as SCRAM messages use.
pub fn b64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64, `None` when it is not.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector_gives_the_stored_and_server_keys() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = ScramMechanism::Sha256.salted_password(b"pencil", &salt, 4096);
        let cred =
            ScramCredential::from_salted_password(ScramMechanism::Sha256, &salted, salt, 4096);
        assert!(cred.matches_password(ScramMechanism::Sha256, b"pencil"));
        assert!(!cred.matches_password(ScramMechanism::Sha256, b"pencil2"));
    }

    #[test]
    fn credentials_survive_reopen_and_hold_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let cred = ScramCredential::new(ScramMechanism::Sha512, b"s3cret-pw", 4096).unwrap();
        store
            .apply(&[], vec![("alice".into(), ScramMechanism::Sha512, cred)])
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(CREDENTIALS_FILE)).unwrap();
        assert!(!text.contains("s3cret-pw"));
        let reopened = CredentialStore::open(dir.path()).unwrap();
        let got = reopened.get("alice", ScramMechanism::Sha512).unwrap();
        assert!(got.matches_password(ScramMechanism::Sha512, b"s3cret-pw"));
        assert!(reopened.get("alice", ScramMechanism::Sha256).is_none());
        reopened
            .apply(&[("alice".into(), ScramMechanism::Sha512)], vec![])
            .unwrap();
        assert!(CredentialStore::open(dir.path()).unwrap().list().is_empty());
    }

    #[test]
    fn deleting_a_missing_credential_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let cred = ScramCredential::new(ScramMechanism::Sha256, b"pw", 4096).unwrap();
        let err = store
            .apply(
                &[("bob".into(), ScramMechanism::Sha256)],
                vec![("alice".into(), ScramMechanism::Sha256, cred)],
            )
            .unwrap_err();
        assert!(matches!(err, CredentialError::NotFound { .. }));
        assert!(store.list().is_empty());
    }
}
