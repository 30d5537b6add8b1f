//! etcd's auth flags: the token provider, the simple tokens' TTL and the bcrypt cost.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{parse_duration, ConfigError};
use crate::auth::password;

#[derive(Debug, Clone, Args)]
pub struct AuthFlags {
    /// Specify auth token type and its options: 'simple', or
    /// 'jwt,pub-key=<path>,priv-key=<path>,sign-method=<alg>,ttl=<duration>'.
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// The lifetime in seconds of a simple auth token, renewed by each use.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// Specify bcrypt algorithm cost factor for auth password hashing.
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = password::DEFAULT_COST)]
    pub bcrypt_cost: u32,
}

/// What `--auth-token` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSpec {
    Simple,
    Jwt { sign_method: String, public_key: Option<PathBuf>, private_key: Option<PathBuf>, ttl: Duration },
}

/// etcd's JWT lifetime when `ttl=` is not given.
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

impl AuthFlags {
    /// etcd's `decomposeOpts`, then the options each token type reads.
    pub fn token_spec(&self) -> Result<TokenSpec, ConfigError> {
        let invalid = |detail: String| ConfigError::AuthToken(detail);
        let mut parts = self.auth_token.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut options = BTreeMap::new();
        for option in parts {
            let Some((name, value)) = option.split_once('=').filter(|(_, value)| !value.contains('=')) else {
                return Err(invalid(format!("option {option:?} is not name=value")));
            };
            if options.insert(name, value).is_some() {
                return Err(invalid(format!("option {name:?} given twice")));
            }
        }
        match kind {
            "simple" => Ok(TokenSpec::Simple),
            "jwt" => {
                let path = |name: &str| options.get(name).filter(|value| !value.is_empty()).map(PathBuf::from);
                let ttl = match options.get("ttl").filter(|value| !value.is_empty()) {
                    Some(ttl) => parse_duration(ttl).map_err(invalid)?,
                    None => DEFAULT_JWT_TTL,
                };
                let sign_method = options.get("sign-method").copied().unwrap_or_default().to_string();
                if sign_method.is_empty() {
                    return Err(invalid("jwt needs sign-method".into()));
                }
                Ok(TokenSpec::Jwt { sign_method, public_key: path("pub-key"), private_key: path("priv-key"), ttl })
            }
            other => Err(invalid(format!("unknown token type {other:?}: use simple or jwt"))),
        }
    }

    /// As etcd: a cost outside bcrypt's range falls back to the default, with a warning.
    pub fn bcrypt_cost(&self) -> u32 {
        if (password::MIN_COST..=password::MAX_COST).contains(&self.bcrypt_cost) {
            return self.bcrypt_cost;
        }
        tracing::warn!(
            given = self.bcrypt_cost,
            default = password::DEFAULT_COST,
            "use default bcrypt cost instead of the invalid given cost"
        );
        password::DEFAULT_COST
    }

    pub fn simple_token_ttl(&self) -> Duration {
        // etcd treats 0 as its default.
        Duration::from_secs(if self.auth_token_ttl == 0 { 300 } else { self.auth_token_ttl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(flag: &str) -> Result<TokenSpec, ConfigError> {
        AuthFlags { auth_token: flag.into(), auth_token_ttl: 300, bcrypt_cost: 10 }.token_spec()
    }

    #[test]
    fn token_flags_parse_as_etcd_reads_them() {
        assert_eq!(spec("simple").ok(), Some(TokenSpec::Simple));
        let jwt = spec("jwt,pub-key=/k.pub,priv-key=/k,sign-method=RS256,ttl=10m").expect("jwt");
        assert_eq!(
            jwt,
            TokenSpec::Jwt {
                sign_method: "RS256".into(),
                public_key: Some("/k.pub".into()),
                private_key: Some("/k".into()),
                ttl: Duration::from_secs(600),
            }
        );
        for bad in ["", "token", "jwt,pub-key", "jwt,sign-method=RS256,sign-method=RS256", "jwt,priv-key=/k"] {
            assert!(spec(bad).is_err(), "{bad:?}");
        }
    }
}
