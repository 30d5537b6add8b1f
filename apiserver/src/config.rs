//! `cairn-kube apiserver` configuration: kube-apiserver's flag names, one set
//! of defaults, and `validate()`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressRequests {
    Auto,
    True,
    False,
}

#[derive(Args, Clone, Debug)]
pub struct ApiServerConfig {
    /// Store endpoints (Cairn or etcd), comma-separated.
    #[arg(long = "etcd-servers", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd_servers: Vec<String>,
    /// The CA that signs the store's serving certificate (https:// servers).
    #[arg(long = "etcd-cafile")]
    pub etcd_cafile: Option<PathBuf>,
    /// The client certificate presented to the store.
    #[arg(long = "etcd-certfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// The key of --etcd-certfile.
    #[arg(long = "etcd-keyfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// Whether the watch cache asks the store for progress when a reader waits
    /// for a revision it has not reached. `auto`, as kube-apiserver decides:
    /// only if the store reports etcd 3.5.13 or newer, since older etcd could
    /// report progress past events an unsynced watcher had yet to send
    /// (etcd#15220). Cairn's progress is safe: `up` and the tests say `true`.
    #[arg(long = "etcd-watch-progress-requests", value_enum, default_value = "auto")]
    pub etcd_watch_progress_requests: ProgressRequests,
    /// The prefix of every key the API server writes.
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    pub etcd_prefix: String,
    /// How often history is compacted (Go duration; 0 turns it off).
    #[arg(long = "etcd-compaction-interval", default_value = "5m0s", value_parser = parse_duration)]
    pub etcd_compaction_interval: Duration,
    /// Only application/json is stored.
    #[arg(long = "storage-media-type", default_value = "application/json")]
    pub storage_media_type: String,
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: String,
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,
    /// The address other components reach this server at (the kubernetes Service's endpoint).
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<String>,
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Where a self-signed certificate is written when none is given.
    #[arg(long = "cert-dir", default_value = "/var/run/kubernetes")]
    pub cert_dir: PathBuf,
    /// kube's token CSV: token,user,uid,"group1,group2".
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,
    /// CA that signs client certificates; the CN is the user, O values are groups.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Serve requests that carry no credentials as system:anonymous.
    #[arg(long = "anonymous-auth", default_value_t = false, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// Bootstrap tokens (Secrets of type bootstrap.kubernetes.io/token in
    /// kube-system) authenticate, for kubelets' TLS bootstrapping.
    #[arg(long = "enable-bootstrap-token-auth", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_bootstrap_token_auth: bool,
    /// Authorizers in order: AlwaysAllow, or Node and/or RBAC (kube's `Node,RBAC`).
    #[arg(long = "authorization-mode", default_value = "AlwaysAllow")]
    pub authorization_mode: String,
    #[arg(long = "service-cluster-ip-range", default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// How long Events live (Go duration).
    #[arg(long = "event-ttl", default_value = "1h0m0s", value_parser = parse_duration)]
    pub event_ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--etcd-servers must name at least one endpoint")]
    NoStore,
    #[error("--tls-cert-file and --tls-private-key-file go together")]
    HalfCertificate,
    #[error("--service-cluster-ip-range: {0}")]
    ServiceRange(String),
    #[error("--authorization-mode {0:?}: the modes are AlwaysAllow, Node and RBAC")]
    Authorization(String),
    #[error("--storage-media-type {0:?} is not supported (application/json is)")]
    MediaType(String),
    #[error("--etcd-prefix must start with '/'")]
    Prefix,
    #[error("--etcd-certfile and --etcd-keyfile go together")]
    HalfStoreCertificate,
    #[error("--etcd-servers mixes http:// and https:// endpoints")]
    MixedSchemes,
}

/// Which authorizers run (`--authorization-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Authorization {
    /// Nothing is checked: every authenticated request may do anything.
    pub always_allow: bool,
    /// Kubelets (`system:node:<name>` in `system:nodes`) get the node rules.
    pub node: bool,
    pub rbac: bool,
}

/// The files of the API server's TLS to the store.
#[derive(Clone, Debug, Default)]
pub struct StoreTls {
    pub ca: Option<PathBuf>,
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
}

impl ApiServerConfig {
    pub fn authorization(&self) -> Result<Authorization, ConfigError> {
        let mut modes = Authorization::default();
        for mode in self.authorization_mode.split(',').map(str::trim) {
            match mode {
                "AlwaysAllow" => modes.always_allow = true,
                "Node" => modes.node = true,
                "RBAC" => modes.rbac = true,
                _ => return Err(ConfigError::Authorization(self.authorization_mode.clone())),
            }
        }
        Ok(modes)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.etcd_servers.iter().all(|s| s.trim().is_empty()) {
            return Err(ConfigError::NoStore);
        }
        if self.tls_cert_file.is_some() != self.tls_private_key_file.is_some() {
            return Err(ConfigError::HalfCertificate);
        }
        crate::registry::parse_cidr(&self.service_cluster_ip_range).map_err(ConfigError::ServiceRange)?;
        self.authorization()?;
        if self.storage_media_type != "application/json" {
            return Err(ConfigError::MediaType(self.storage_media_type.clone()));
        }
        if !self.etcd_prefix.starts_with('/') {
            return Err(ConfigError::Prefix);
        }
        if self.etcd_certfile.is_some() != self.etcd_keyfile.is_some() {
            return Err(ConfigError::HalfStoreCertificate);
        }
        let secure = self.etcd_servers.iter().filter(|server| server.starts_with("https://")).count();
        if secure != 0 && secure != self.etcd_servers.len() {
            return Err(ConfigError::MixedSchemes);
        }
        Ok(())
    }

    /// TLS to the store, when its endpoints are https://.
    pub fn store_tls(&self) -> Option<StoreTls> {
        let secure = self.etcd_servers.iter().any(|server| server.starts_with("https://"));
        secure.then(|| StoreTls {
            ca: self.etcd_cafile.clone(),
            cert_and_key: self.etcd_certfile.clone().zip(self.etcd_keyfile.clone()),
        })
    }
}

/// Go's duration syntax: "1h0m0s", "5m", "90s", "250ms".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            other => return Err(format!("invalid duration {text:?}: unknown unit {other:?}")),
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1h0m0s").expect("test data"), Duration::from_secs(3600));
        assert_eq!(parse_duration("5m").expect("test data"), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").expect("test data"), Duration::from_millis(250));
        assert_eq!(parse_duration("0").expect("test data"), Duration::ZERO);
        assert!(parse_duration("5x").is_err());
    }
}
