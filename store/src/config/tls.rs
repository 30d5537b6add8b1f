//! etcd's TLS flags for the client and the peer listeners, turned into the
//! [`TlsInfo`] of each side and the [`TlsOptions`] they share.

use std::path::PathBuf;

use clap::Args;

use super::compat::parse_bool;
use crate::tls::{TlsInfo, TlsOptions, TlsVersion};

#[derive(Debug, Clone, Default, Args)]
pub struct TlsFlags {
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_bool)]
    pub client_cert_auth: bool,
    /// Path to the client certificate revocation list file.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE")]
    pub client_crl_file: Option<PathBuf>,
    /// Allowed TLS hostname for client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME")]
    pub client_cert_allowed_hostname: Option<String>,
    /// Path to the client server TLS trusted CA cert file; given alone, it
    /// already requires client certificates, as in etcd.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Client TLS using generated certificates.
    #[arg(long, env = "ETCD_AUTO_TLS", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_bool)]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_bool)]
    pub peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Path to the peer certificate revocation list file.
    #[arg(long, env = "ETCD_PEER_CRL_FILE")]
    pub peer_crl_file: Option<PathBuf>,
    /// Required CN for client certs connecting to the peer endpoint.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN")]
    pub peer_cert_allowed_cn: Option<String>,
    /// Allowed TLS hostname for inter peer authentication.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME")]
    pub peer_cert_allowed_hostname: Option<String>,
    /// Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_bool)]
    pub peer_auto_tls: bool,
    /// Skip the check that a peer's client certificate names the address it connects from.
    #[arg(long, env = "ETCD_PEER_SKIP_CLIENT_SAN_VERIFICATION", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub peer_skip_client_san_verification: Option<bool>,
    /// etcd 3.5's name of --peer-skip-client-san-verification.
    #[arg(long, env = "ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub experimental_peer_skip_client_san_verification: Option<bool>,
    /// The validity period, in years, of the certificates --auto-tls and --peer-auto-tls generate.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
    pub self_signed_cert_validity: u32,
    /// Comma-separated list of TLS 1.2 cipher suites, by their Go names (empty: rustls' defaults).
    #[arg(long, env = "ETCD_CIPHER_SUITES", value_delimiter = ',')]
    pub cipher_suites: Vec<String>,
    /// Minimum TLS version: TLS1.2 or TLS1.3.
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2")]
    pub tls_min_version: String,
    /// Maximum TLS version: TLS1.2 or TLS1.3 (empty: the newest).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    pub tls_max_version: String,
}

impl TlsFlags {
    pub fn client(&self) -> TlsInfo {
        TlsInfo {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            crl_file: self.client_crl_file.clone(),
            client_cert_auth: self.client_cert_auth,
            auto_tls: self.auto_tls,
            allowed_cn: None,
            allowed_hostname: self.client_cert_allowed_hostname.clone(),
            check_client_san: false,
        }
    }

    pub fn peer(&self) -> TlsInfo {
        let skip_san = self.peer_skip_client_san_verification.or(self.experimental_peer_skip_client_san_verification);
        TlsInfo {
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            crl_file: self.peer_crl_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
            auto_tls: self.peer_auto_tls,
            allowed_cn: self.peer_cert_allowed_cn.clone(),
            allowed_hostname: self.peer_cert_allowed_hostname.clone(),
            check_client_san: !skip_san.unwrap_or(false),
        }
    }

    pub fn options(&self) -> Result<TlsOptions, crate::tls::TlsError> {
        let min = TlsVersion::parse(&self.tls_min_version)?.unwrap_or(TlsVersion::Tls12);
        let max = TlsVersion::parse(&self.tls_max_version)?;
        TlsOptions::new(min, max, &self.cipher_suites, self.self_signed_cert_validity)
    }
}
