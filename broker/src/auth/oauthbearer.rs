//! OAUTHBEARER (RFC 7628, KIP-255/768): the client sends a JWT, the broker checks its signature
//! against the configured JSON Web Key Set, its expiry, issuer and audience, and takes the
//! principal's name from a claim (`sub` unless `sasl.oauthbearer.sub.claim.name` says otherwise).

use std::path::PathBuf;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

use super::SaslFailure;

/// Longest client message accepted; a JWT with ordinary claims is a few KiB.
const MAX_MESSAGE: usize = 64 * 1024;

/// The OAUTHBEARER settings (Kafka's `sasl.oauthbearer.*` names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthSettings {
    /// `sasl.oauthbearer.jwks.endpoint.url`: a `file:` URL or a path to a JWKS JSON file.
    pub jwks_url: Option<String>,
    /// `sasl.oauthbearer.expected.issuer`: when set, the `iss` claim must equal it.
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.expected.audience`: when non-empty, `aud` must name one of these.
    pub expected_audience: Vec<String>,
    /// `sasl.oauthbearer.sub.claim.name` (default `sub`).
    pub sub_claim: String,
    /// `sasl.oauthbearer.clock.skew.seconds` (default 30).
    pub clock_skew_seconds: u64,
}

impl OAuthSettings {
    pub fn kafka_defaults() -> OAuthSettings {
        OAuthSettings {
            sub_claim: "sub".to_string(),
            clock_skew_seconds: 30,
            ..OAuthSettings::default()
        }
    }
}

/// Checks bearer tokens.
#[derive(Debug)]
pub struct JwtValidator {
    settings: OAuthSettings,
    /// The JWKS file; re-read when its modification time changes, so keys rotate without a
    /// restart.
    path: PathBuf,
    /// The keys and the modification time they were read at.
    keys: parking_lot::RwLock<(JwkSet, Option<std::time::SystemTime>)>,
}

/// Reads and checks a JWKS file.
fn read_jwks(path: &std::path::Path) -> Result<JwkSet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JWKS {}: {e}", path.display()))?;
    let keys: JwkSet = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a JSON Web Key Set: {e}", path.display()))?;
    if keys.keys.is_empty() {
        return Err(format!("JWKS {} holds no keys", path.display()));
    }
    for jwk in &keys.keys {
        DecodingKey::from_jwk(jwk)
            .map_err(|e| format!("JWKS {}: unusable key: {e}", path.display()))?;
    }
    Ok(keys)
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A token that was accepted.
#[derive(Debug)]
pub struct ValidToken {
    pub subject: String,
    /// `exp`, in milliseconds since the epoch.
    pub expires_at_ms: i64,
}

impl JwtValidator {
    /// Loads the key set the settings name.
    pub fn load(settings: OAuthSettings) -> Result<JwtValidator, String> {
        let url = settings.jwks_url.clone().ok_or_else(|| {
            "OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (a file: URL or path)".to_string()
        })?;
        let path = jwks_path(&url)?;
        let stamp = modified(&path);
        let keys = read_jwks(&path)?;
        Ok(JwtValidator {
            settings,
            path,
            keys: parking_lot::RwLock::new((keys, stamp)),
        })
    }

    /// Re-reads the key set if its file changed; a broken new file is logged and the old keys
    /// stay in use.
    fn refresh(&self) {
        let stamp = modified(&self.path);
        if self.keys.read().1 == stamp {
            return;
        }
        let mut keys = self.keys.write();
        if keys.1 == stamp {
            return;
        }
        match read_jwks(&self.path) {
            Ok(fresh) => {
                *keys = (fresh, stamp);
                tracing::info!(path = %self.path.display(), "JWKS reloaded");
            }
            Err(e) => {
                // Remember the stamp so a broken file is reported once, not per login.
                keys.1 = stamp;
                tracing::warn!("JWKS changed but cannot be used (keeping the old keys): {e}");
            }
        }
    }

    /// Validates the client's first (and only) OAUTHBEARER message.
    pub fn authenticate(&self, message: &[u8]) -> Result<ValidToken, SaslFailure> {
        if message.len() > MAX_MESSAGE {
            return Err(SaslFailure::malformed("OAUTHBEARER message too long"));
        }
        let token = bearer_token(message)?;
        self.refresh();
        self.validate(token)
    }

    fn validate(&self, token: &str) -> Result<ValidToken, SaslFailure> {
        let refuse = |why: String| SaslFailure::bad_token(why);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refuse(format!("bad JWT header: {e}")))?;
        let keys = self.keys.read();
        let candidates: Vec<_> = match &header.kid {
            Some(kid) => keys
                .0
                .keys
                .iter()
                .filter(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
                .collect(),
            None => keys.0.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(refuse("no key in the JWKS matches the token's kid".into()));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.clock_skew_seconds;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        if let Some(issuer) = &self.settings.expected_issuer {
            validation.set_issuer(&[issuer]);
        }
        if self.settings.expected_audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.settings.expected_audience);
        }
        let mut last_error = String::new();
        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            // The key's family must match the header's algorithm (jsonwebtoken refuses an HMAC
            // token checked with an RSA key), so a token cannot pick a weaker verification.
            match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let subject = claims
                        .get(&self.settings.sub_claim)
                        .and_then(|v| v.as_str())
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            refuse(format!("token has no '{}' claim", self.settings.sub_claim))
                        })?;
                    let exp = claims.get("exp").and_then(|v| v.as_f64()).unwrap_or(0.0);
                    return Ok(ValidToken {
                        subject: subject.to_string(),
                        expires_at_ms: (exp * 1000.0) as i64,
                    });
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(refuse(format!("invalid token: {last_error}")))
    }
}

fn jwks_path(url: &str) -> Result<PathBuf, String> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if let Some(rest) = url.strip_prefix("file:") {
        return Ok(PathBuf::from(rest));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(format!(
            "sasl.oauthbearer.jwks.endpoint.url '{url}': only file: URLs are supported"
        ));
    }
    Ok(PathBuf::from(url))
}

/// Pulls the token out of `gs2-header %x01 auth=Bearer <token> %x01 ... %x01`.
fn bearer_token(message: &[u8]) -> Result<&str, SaslFailure> {
    let text = std::str::from_utf8(message)
        .map_err(|_| SaslFailure::malformed("OAUTHBEARER message is not UTF-8"))?;
    let Some((gs2, rest)) = text.split_once('\u{1}') else {
        return Err(SaslFailure::malformed(
            "OAUTHBEARER message lacks a gs2 header",
        ));
    };
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) {
        return Err(SaslFailure::malformed(
            "OAUTHBEARER gs2 header is malformed",
        ));
    }
    let token = rest
        .split('\u{1}')
        .find_map(|kv| kv.strip_prefix("auth="))
        .and_then(|auth| {
            auth.strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    token.ok_or_else(|| SaslFailure::malformed("OAUTHBEARER message has no bearer token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64url(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn hs256(secret: &[u8], claims: &serde_json::Value) -> String {
        let header = b64url(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
        let body = b64url(claims.to_string().as_bytes());
        let signing = format!("{header}.{body}");
        let sig = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            signing.as_bytes(),
        );
        format!("{signing}.{}", b64url(sig.as_ref()))
    }

    fn validator(dir: &std::path::Path) -> JwtValidator {
        let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": b64url(b"a-test-secret-of-32-bytes-length")}]});
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        JwtValidator::load(OAuthSettings {
            jwks_url: Some(format!("file://{}", path.display())),
            expected_issuer: Some("https://issuer.test".into()),
            expected_audience: vec!["sluice".into()],
            ..OAuthSettings::kafka_defaults()
        })
        .unwrap()
    }

    fn message(token: &str) -> Vec<u8> {
        format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}").into_bytes()
    }

    #[test]
    fn a_signed_token_names_its_subject_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = validator(dir.path());
        let now = jsonwebtoken::get_current_timestamp();
        let secret = b"a-test-secret-of-32-bytes-length";
        let good = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "sluice", "exp": now + 600});
        let ok = v.authenticate(&message(&hs256(secret, &good))).unwrap();
        assert_eq!(ok.subject, "alice");
        let expired = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "sluice", "exp": now - 600});
        assert!(v.authenticate(&message(&hs256(secret, &expired))).is_err());
        let wrong_iss =
            serde_json::json!({"sub": "alice", "iss": "other", "aud": "sluice", "exp": now + 600});
        assert!(v
            .authenticate(&message(&hs256(secret, &wrong_iss)))
            .is_err());
        let wrong_aud = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "x", "exp": now + 600});
        assert!(v
            .authenticate(&message(&hs256(secret, &wrong_aud)))
            .is_err());
        assert!(v
            .authenticate(&message(&hs256(b"another-secret-another-secret!!!", &good)))
            .is_err());
        for garbage in [
            &b""[..],
            b"n,,",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01auth=Bearer a.b.c\x01\x01",
            b"\xff",
        ] {
            assert!(v.authenticate(garbage).is_err());
        }
    }

    #[test]
    fn a_rotated_key_set_is_used_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let v = validator(dir.path());
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "sluice", "exp": now + 600});
        let new_secret = b"the-rotated-secret-of-32-bytes!!";
        let token = message(&hs256(new_secret, &claims));
        assert!(v.authenticate(&token).is_err());
        let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": b64url(new_secret)}]});
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(v.authenticate(&token).unwrap().subject, "alice");
    }
}
