//! TLS on the client and peer links, as etcd does it: `https://` URLs, a
//! trusted CA that alone requires client certificates, revocation lists,
//! allowed CNs and hostnames, the peer-address check, self-signed
//! certificates for `--auto-tls`, and files re-read for new connections so
//! that a rotation needs no restart. Only this module names rustls.

mod auto;
mod dial;
mod files;
mod identity;
mod listen;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use auto::self_cert;

/// The subject's common name of a DER certificate (Go's: the last CN).
pub fn common_name(der: &[u8]) -> Option<String> {
    identity::names(der).ok()?.common_name
}
pub use dial::PeerDialer;
pub use listen::{accept, ServerTls};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("open {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: no {what} in the file")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("trusted CA: {0}")]
    Verifier(String),
    #[error("unexpected TLS version {0:?} (must be one of: TLS1.2, TLS1.3)")]
    BadVersion(String),
    #[error("min version ({min}) is greater than max version ({max})")]
    MinAboveMax { min: &'static str, max: &'static str },
    #[error("cipher suites cannot be configured when only TLS1.3 is enabled")]
    SuitesWithTls13Only,
    #[error("selfSignedCertValidity is invalid,it should be greater than 0")]
    ZeroValidity,
    #[error("KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")]
    HalfPair { key: String, cert: String },
    #[error("AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={hostname:?})")]
    CnAndHostname { cn: String, hostname: String },
    #[error("unexpected TLS cipher suite {0:?}")]
    UnknownSuite(String),
    #[error("TLS cipher suite {0:?} is not supported: rustls offers only AEAD suites with forward secrecy")]
    UnsupportedSuite(String),
    #[error("generate a self-signed certificate: {0}")]
    SelfCert(String),
    #[error("{0}")]
    Dial(String),
}

/// One side's TLS settings, from etcd's flags of that side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub crl_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    /// The CN a client certificate must have.
    pub allowed_cn: Option<String>,
    /// A name (DNS SAN, or CN) a client certificate must have.
    pub allowed_hostname: Option<String>,
    /// A client certificate must name (IP or DNS SAN) the address it connects from.
    pub check_client_san: bool,
}

/// Where `--auto-tls` and `--peer-auto-tls` keep what they generate.
pub const AUTO_TLS_CLIENT_DIR: &str = "fixtures/client";
pub const AUTO_TLS_PEER_DIR: &str = "fixtures/peer";

impl TlsInfo {
    /// etcd's checks of one side's flags.
    pub fn validate(&self) -> Result<(), TlsError> {
        let shown = |path: &Option<PathBuf>| path.as_ref().map_or(String::new(), |p| p.display().to_string());
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(TlsError::HalfPair { key: shown(&self.key_file), cert: shown(&self.cert_file) });
        }
        if let (Some(cn), Some(hostname)) = (&self.allowed_cn, &self.allowed_hostname) {
            return Err(TlsError::CnAndHostname { cn: cn.clone(), hostname: hostname.clone() });
        }
        Ok(())
    }

    /// No certificate and key: etcd's `TLSInfo.Empty()`.
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() || self.key_file.is_none()
    }

    /// A trusted CA alone already asks for client certificates.
    pub fn requires_client_cert(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// etcd's spelling; the empty string is no bound.
    pub fn parse(text: &str) -> Result<Option<TlsVersion>, TlsError> {
        match text {
            "" => Ok(None),
            "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
            "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
            other => Err(TlsError::BadVersion(other.to_string())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }
}

/// What both sides share: the TLS versions, the cipher suites and the
/// validity of self-signed certificates.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub provider: Arc<CryptoProvider>,
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    pub self_signed_validity_years: u32,
}

impl TlsOptions {
    pub fn new(
        min: TlsVersion,
        max: Option<TlsVersion>,
        cipher_suites: &[String],
        self_signed_validity_years: u32,
    ) -> Result<TlsOptions, TlsError> {
        if self_signed_validity_years == 0 {
            return Err(TlsError::ZeroValidity);
        }
        let max = max.unwrap_or(TlsVersion::Tls13);
        if min > max {
            return Err(TlsError::MinAboveMax { min: min.name(), max: max.name() });
        }
        let names: Vec<&str> = cipher_suites.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        if !names.is_empty() && min == TlsVersion::Tls13 {
            return Err(TlsError::SuitesWithTls13Only);
        }
        let mut provider = rustls::crypto::ring::default_provider();
        if !names.is_empty() {
            let mut chosen = Vec::new();
            for name in &names {
                let found = provider.cipher_suites.iter().find(|suite| go_name_matches(suite, name));
                match found {
                    Some(suite) => chosen.push(*suite),
                    None if is_go_suite(name) => return Err(TlsError::UnsupportedSuite(name.to_string())),
                    None => return Err(TlsError::UnknownSuite(name.to_string())),
                }
            }
            // Go never lets TLS 1.3's suites be chosen; neither does etcd.
            chosen.extend(provider.cipher_suites.iter().filter(|suite| suite.tls13().is_some()));
            provider.cipher_suites = chosen;
        }
        let versions = [(TlsVersion::Tls12, &rustls::version::TLS12), (TlsVersion::Tls13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(version, _)| (min..=max).contains(version))
            .map(|(_, version)| version)
            .collect();
        Ok(TlsOptions { provider: Arc::new(provider), versions, self_signed_validity_years })
    }
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions::new(TlsVersion::Tls12, None, &[], 1).unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

/// Go writes ChaCha20 suites with or without the `_SHA256` that IANA's name has.
fn go_name_matches(suite: &rustls::SupportedCipherSuite, go_name: &str) -> bool {
    suite.tls13().is_none()
        && suite.suite().as_str().is_some_and(|iana| iana == go_name || iana.strip_suffix("_SHA256") == Some(go_name))
}

/// Names Go's crypto/tls knows but rustls does not offer (CBC, RSA key exchange, RC4, 3DES).
fn is_go_suite(name: &str) -> bool {
    const GO_ONLY: [&str; 16] = [
        "TLS_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ];
    GO_ONLY.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_suites_are_checked_as_etcd_checks_them() {
        let options = TlsOptions::new(TlsVersion::Tls12, None, &[], 1).expect("defaults");
        assert_eq!(options.versions.len(), 2);
        let only13 = TlsOptions::new(TlsVersion::Tls13, None, &[], 1).expect("1.3");
        assert_eq!(only13.versions, vec![&rustls::version::TLS13]);
        assert!(matches!(TlsVersion::parse("TLS1.1"), Err(TlsError::BadVersion(_))));
        assert!(matches!(TlsVersion::parse("tls12"), Err(TlsError::BadVersion(_))));
        assert!(matches!(
            TlsOptions::new(TlsVersion::Tls13, Some(TlsVersion::Tls12), &[], 1),
            Err(TlsError::MinAboveMax { .. })
        ));
        let suites =
            ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string(), "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".into()];
        let chosen = TlsOptions::new(TlsVersion::Tls12, None, &suites, 1).expect("known suites");
        let tls12: Vec<_> = chosen.provider.cipher_suites.iter().filter(|s| s.tls13().is_none()).collect();
        assert_eq!(tls12.len(), 2, "exactly the TLS 1.2 suites asked for");
        assert!(chosen.provider.cipher_suites.iter().any(|s| s.tls13().is_some()), "TLS 1.3 suites stay");
        let cbc = ["TLS_RSA_WITH_AES_128_CBC_SHA".to_string()];
        assert!(matches!(TlsOptions::new(TlsVersion::Tls12, None, &cbc, 1), Err(TlsError::UnsupportedSuite(_))));
        let bogus = ["TLS_NOPE".to_string()];
        assert!(matches!(TlsOptions::new(TlsVersion::Tls12, None, &bogus, 1), Err(TlsError::UnknownSuite(_))));
        assert!(matches!(TlsOptions::new(TlsVersion::Tls13, None, &suites, 1), Err(TlsError::SuitesWithTls13Only)));
    }

    #[test]
    fn a_trusted_ca_alone_requires_client_certificates() {
        let info = TlsInfo { trusted_ca_file: Some("ca.crt".into()), ..TlsInfo::default() };
        assert!(info.requires_client_cert());
        assert!(!TlsInfo::default().requires_client_cert());
        assert!(TlsInfo { cert_file: Some("c".into()), ..TlsInfo::default() }.is_empty());
    }
}
