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
        Authenticator { tokens, anonymous }
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
