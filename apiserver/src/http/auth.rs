//! Authentication: bearer tokens from `--token-auth-file` (kube's CSV:
//! token,user,uid,"group1,group2") and x509 client certificates verified
//! against `--client-ca-file` (CN is the user, O values the groups).

use std::collections::HashMap;

use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    fn anonymous() -> User {
        User { name: "system:anonymous".into(), uid: String::new(), groups: vec!["system:unauthenticated".into()] }
    }
}

#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: HashMap<String, User>,
    anonymous: bool,
    /// `--enable-bootstrap-token-auth`: tokens kept as Secrets in kube-system.
    bootstrap_tokens: bool,
}

/// A bootstrap token's two parts, `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn bootstrap_token_parts(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let fits = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (fits(id, 6) && fits(secret, 16)).then_some((id, secret))
}

/// Compares secrets without leaking, by timing, how much of one matched.
fn same_in_constant_time(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The Secret that holds the bootstrap token with this id.
pub fn bootstrap_secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

/// The user a bootstrap token is, if `secret` (in kube-system) holds it, is
/// for authentication and has not expired: kube's bootstrap token authenticator.
pub fn bootstrap_user(token: &str, secret: &serde_json::Value, now: jiff::Timestamp) -> Option<User> {
    use base64::Engine;
    let (id, token_secret) = bootstrap_token_parts(token)?;
    if secret["type"] != "bootstrap.kubernetes.io/token" || !secret["metadata"]["deletionTimestamp"].is_null() {
        return None;
    }
    let field = |key: &str| {
        let encoded = secret["data"][key].as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        String::from_utf8(bytes).ok()
    };
    if field("token-id")? != id || !same_in_constant_time(&field("token-secret")?, token_secret) {
        return None;
    }
    if field("usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    if let Some(expiration) = field("expiration") {
        let expires: jiff::Timestamp = expiration.parse().ok()?;
        if expires <= now {
            return None;
        }
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    for group in field("auth-extra-groups").unwrap_or_default().split(',').map(str::trim) {
        // Only bootstrappers' groups may be added, as kube allows.
        if group.starts_with("system:bootstrappers:") && !groups.iter().any(|g| g == group) {
            groups.push(group.to_string());
        }
    }
    Some(User { name: format!("system:bootstrap:{id}"), uid: String::new(), groups })
}

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: {reason}")]
    Malformed { path: String, line: usize, reason: String },
}

/// Splits one CSV record, honouring double quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            other => fields.last_mut().expect("starts with one field").push(other),
        }
    }
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

pub fn parse_token_file(path: &str, text: &str) -> Result<HashMap<String, User>, AuthFileError> {
    let mut tokens = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = csv_fields(line);
        let malformed =
            |reason: &str| AuthFileError::Malformed { path: path.into(), line: index + 1, reason: reason.into() };
        if fields.len() < 3 {
            return Err(malformed("expected token,user,uid[,\"groups\"]"));
        }
        if fields[0].is_empty() || fields[1].is_empty() {
            return Err(malformed("empty token or user"));
        }
        let groups = fields
            .get(3)
            .map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        tokens.insert(fields[0].clone(), User { name: fields[1].clone(), uid: fields[2].clone(), groups });
    }
    Ok(tokens)
}

impl Authenticator {
    pub fn new(tokens: HashMap<String, User>, anonymous: bool) -> Authenticator {
        Authenticator { tokens, anonymous, bootstrap_tokens: false }
    }

    pub fn with_bootstrap_tokens(self, enabled: bool) -> Authenticator {
        Authenticator { bootstrap_tokens: enabled, ..self }
    }

    /// The bootstrap token a request presents, when bootstrap tokens are on
    /// and the token is not one of `--token-auth-file`'s.
    pub fn bootstrap_token<'a>(&self, authorization: Option<&'a str>) -> Option<&'a str> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        (self.bootstrap_tokens && !self.tokens.contains_key(token) && bootstrap_token_parts(token).is_some())
            .then_some(token)
    }

    /// The request's user: its bearer token, else its client certificate, else
    /// anonymous when allowed. A token that is given but unknown is always 401.
    pub fn authenticate(&self, authorization: Option<&str>, certificate_user: Option<&User>) -> Result<User, ApiError> {
        if let Some(header) = authorization {
            let token = header.strip_prefix("Bearer ").map(str::trim).ok_or(ApiError::Unauthorized)?;
            return self.tokens.get(token).cloned().ok_or(ApiError::Unauthorized);
        }
        if let Some(user) = certificate_user {
            return Ok(user.clone());
        }
        if self.anonymous {
            return Ok(User::anonymous());
        }
        Err(ApiError::Unauthorized)
    }
}

/// The user a verified client certificate names.
pub fn certificate_user(der: &[u8]) -> Option<User> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = certificate.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect();
    Some(User { name, uid: String::new(), groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_bootstrap_tokens_are_users_while_their_secret_says_so() {
        use base64::Engine;
        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        let mut secret = serde_json::json!({
            "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "data": {
                "token-id": b64("abcdef"),
                "token-secret": b64("0123456789abcdef"),
                "usage-bootstrap-authentication": b64("true"),
                "auth-extra-groups": b64("system:bootstrappers:kubeadm:default-node-token,system:masters"),
                "expiration": b64("2027-06-01T00:00:00Z"),
            },
        });
        let user = bootstrap_user("abcdef.0123456789abcdef", &secret, now).expect("a user");
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(user.groups, vec!["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"]);
        assert!(bootstrap_user("abcdef.0123456789abcdeX", &secret, now).is_none(), "malformed");
        assert!(bootstrap_user("abcdef.0123456789abcdee", &secret, now).is_none(), "wrong secret");
        let later = jiff::Timestamp::from_second(1_900_000_000).expect("time");
        assert!(bootstrap_user("abcdef.0123456789abcdef", &secret, later).is_none(), "expired");
        secret["data"]["usage-bootstrap-authentication"] = serde_json::json!(b64("false"));
        assert!(bootstrap_user("abcdef.0123456789abcdef", &secret, now).is_none(), "not for authentication");
        let auth = Authenticator { bootstrap_tokens: true, ..Authenticator::default() };
        assert_eq!(auth.bootstrap_token(Some("Bearer abcdef.0123456789abcdef")), Some("abcdef.0123456789abcdef"));
        assert_eq!(auth.bootstrap_token(Some("Bearer secret")), None);
        assert_eq!(Authenticator::default().bootstrap_token(Some("Bearer abcdef.0123456789abcdef")), None);
    }

    #[test]
    fn token_file_in_kube_format() {
        let tokens =
            parse_token_file("t.csv", "secret,admin,1,\"system:masters,dev\"\nother,bob,2\n").expect("test data");
        assert_eq!(tokens["secret"].groups, vec!["system:masters", "dev"]);
        assert!(tokens["other"].groups.is_empty());
        assert!(parse_token_file("t.csv", "only-token\n").is_err());
        let auth = Authenticator::new(tokens, false);
        assert_eq!(auth.authenticate(Some("Bearer secret"), None).expect("test data").name, "admin");
        assert!(auth.authenticate(Some("Bearer nope"), None).is_err());
        assert!(auth.authenticate(None, None).is_err());
        assert_eq!(
            Authenticator::new(HashMap::new(), true).authenticate(None, None).expect("test data").name,
            "system:anonymous"
        );
    }
}
