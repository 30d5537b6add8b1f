//! Tokens. Simple tokens (etcd's default) are registered by every member when
//! the Authenticate entry is applied, and live for a TTL that each use renews;
//! they are the members' memory, never persisted. A JWT is signed by the member
//! that took the request and checked by any member with the key.
//!
//! No clock is read here: the callers pass the time.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::AuthInfo;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::EtcdError;

const PREFIX_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LENGTH: usize = 16;

/// A fresh simple-token prefix: 16 random letters, as etcd's.
pub fn simple_token_prefix() -> Result<String, EtcdError> {
    let mut bytes = [0u8; PREFIX_LENGTH];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| EtcdError::Internal("no randomness for a token".into()))?;
    // 52 letters: the modulo bias over 256 is under 2%, and the index suffix makes tokens unique.
    Ok(bytes.iter().map(|byte| PREFIX_LETTERS[*byte as usize % PREFIX_LETTERS.len()] as char).collect())
}

/// The token a simple-token Authenticate at log `index` registers.
pub fn simple_token(prefix: &str, index: u64) -> String {
    format!("{prefix}.{index}")
}

/// The log index a simple token was issued at; `None` for anything else.
pub fn simple_token_index(token: &str) -> Option<u64> {
    let (prefix, index) = token.split_once('.')?;
    if prefix.contains('.') || index.contains('.') {
        return None;
    }
    index.parse().ok()
}

/// The simple tokens a member knows: token → (user, expiry).
#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    tokens: HashMap<String, (String, Instant)>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> Self {
        SimpleTokens { ttl, tokens: HashMap::new() }
    }

    pub fn issue(&mut self, token: String, user: String, now: Instant) {
        // Expired tokens go when new ones come: no timer, and memory stays bounded by the live ones.
        self.tokens.retain(|_, (_, expires)| *expires > now);
        self.tokens.insert(token, (user, now + self.ttl));
    }

    /// The user a live token stands for; a use renews it.
    pub fn lookup(&mut self, token: &str, now: Instant) -> Option<String> {
        let (user, expires) = self.tokens.get_mut(token)?;
        if *expires <= now {
            self.tokens.remove(token);
            return None;
        }
        *expires = now + self.ttl;
        Some(user.clone())
    }

    pub fn revoke_user(&mut self, user: &str) {
        self.tokens.retain(|_, (owner, _)| owner != user);
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: i64,
}

/// How a key of one kind is read from PEM.
type PemReader<K> = fn(&[u8]) -> jsonwebtoken::errors::Result<K>;

/// `--auth-token jwt,...`: etcd's JWT tokens.
pub struct Jwt {
    algorithm: Algorithm,
    /// `None` with only a public key: this member verifies and cannot sign.
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt").field("algorithm", &self.algorithm).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Jwt {
    /// Keys as PEM (the HMAC methods take the private key file's bytes as the secret).
    pub fn new(
        sign_method: &str,
        public_pem: Option<&[u8]>,
        private_pem: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<Jwt, String> {
        let algorithm = Algorithm::from_str(sign_method)
            .map_err(|_| format!("auth: invalid auth signature method {sign_method:?}"))?;
        let bad_key = |err: jsonwebtoken::errors::Error| format!("auth: bad {sign_method} key: {err}");
        let (signing, verifying) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private_pem.ok_or("auth: missing key data")?;
                (Some(EncodingKey::from_secret(secret)), DecodingKey::from_secret(secret))
            }
            _ => {
                let public = public_pem.ok_or_else(|| format!("auth: {sign_method} needs pub-key to verify tokens"))?;
                let (encode, decode): (PemReader<EncodingKey>, PemReader<DecodingKey>) = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => (EncodingKey::from_ec_pem, DecodingKey::from_ec_pem),
                    Algorithm::EdDSA => (EncodingKey::from_ed_pem, DecodingKey::from_ed_pem),
                    _ => (EncodingKey::from_rsa_pem, DecodingKey::from_rsa_pem),
                };
                let signing = private_pem.map(encode).transpose().map_err(bad_key)?;
                (signing, decode(public).map_err(bad_key)?)
            }
        };
        let jwt = Jwt { algorithm, signing, verifying, ttl };
        // A key pair that does not match fails here, not at the first login.
        if jwt.signing.is_some() {
            let probe = jwt.sign("probe", 1, 0).map_err(|err| err.to_string())?;
            jwt.verify(&probe, 0).ok_or("auth: public and private keys don't match")?;
        }
        Ok(jwt)
    }

    /// A token for `username` at auth `revision`, expiring `ttl` after `now_unix`.
    pub fn sign(&self, username: &str, revision: u64, now_unix: i64) -> Result<String, EtcdError> {
        let key = self.signing.as_ref().ok_or(EtcdError::VerifyOnly)?;
        let claims = Claims { username: username.to_string(), revision, exp: now_unix + self.ttl.as_secs() as i64 };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|err| EtcdError::Internal(format!("signing a token: {err}")))
    }

    /// The identity a valid, unexpired token carries.
    pub fn verify(&self, token: &str, now_unix: i64) -> Option<AuthInfo> {
        let mut validation = Validation::new(self.algorithm);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation).ok()?.claims;
        (now_unix <= claims.exp).then_some(AuthInfo { username: claims.username, revision: claims.revision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_expire_unless_used_and_go_with_their_user() {
        let start = Instant::now();
        let mut tokens = SimpleTokens::new(Duration::from_secs(10));
        tokens.issue("a.1".into(), "alice".into(), start);
        tokens.issue("b.2".into(), "bob".into(), start);
        assert_eq!(tokens.lookup("a.1", start + Duration::from_secs(8)).as_deref(), Some("alice"));
        assert_eq!(tokens.lookup("a.1", start + Duration::from_secs(16)).as_deref(), Some("alice"), "renewed at 8 s");
        assert_eq!(tokens.lookup("b.2", start + Duration::from_secs(11)), None, "expired");
        tokens.revoke_user("alice");
        assert_eq!(tokens.lookup("a.1", start + Duration::from_secs(17)), None);
    }

    #[test]
    fn a_simple_token_names_its_log_index() {
        let prefix = simple_token_prefix().expect("prefix");
        assert_eq!(prefix.len(), 16);
        assert!(prefix.bytes().all(|byte| byte.is_ascii_alphabetic()));
        assert_eq!(simple_token_index(&simple_token(&prefix, 42)), Some(42));
        for bad in ["", "abc", "abc.", "abc.x", "a.b.3", ".-1"] {
            assert_eq!(simple_token_index(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_jwt_carries_user_and_revision_until_it_expires() {
        let jwt = Jwt::new("HS256", None, Some(b"secret"), Duration::from_secs(300)).expect("jwt");
        let token = jwt.sign("alice", 7, 1_000).expect("sign");
        let who = jwt.verify(&token, 1_300).expect("valid at its expiry");
        assert_eq!((who.username.as_str(), who.revision), ("alice", 7));
        assert_eq!(jwt.verify(&token, 1_301), None, "expired");
        let other = Jwt::new("HS256", None, Some(b"another"), Duration::from_secs(300)).expect("jwt");
        assert_eq!(other.verify(&token, 1_000), None, "another key");
        assert!(Jwt::new("XX999", None, Some(b"k"), Duration::from_secs(1)).is_err());
    }
}
