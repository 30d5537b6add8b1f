//! Configuration: one typed struct with etcd's flag names, their `ETCD_*`
//! environment variables, one set of defaults, and [`Config::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::cluster::{ClusterError, InitialCluster};

mod auth;
mod compat;
mod tls;

pub use auth::{AuthFlags, TokenSpec};
use compat::{one_name, parse_bool, Refused};
pub use compat::{Feature, FeatureGates};
pub use tls::TlsFlags;

#[derive(Debug, Clone, Parser)]
#[command(name = "cairn", version, about = "An etcd-v3-compatible key-value store on Raft and RocksDB")]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: "<name>.etcd").
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379", value_delimiter = ',')]
    pub listen_client_urls: Vec<String>,
    /// List of this member's client URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379", value_delimiter = ',')]
    pub advertise_client_urls: Vec<String>,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380", value_delimiter = ',')]
    pub listen_peer_urls: Vec<String>,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380",
        value_delimiter = ','
    )]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping (default: "<name>=<initial-advertise-peer-urls>").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1572864)]
    pub max_request_bytes: u64,
    /// Raise an alarm when the backend size exceeds the given quota (0 means the default, 2 GiB).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 10000)]
    pub snapshot_count: u64,
    /// Duration of periodic watch progress notifications (default 10m, at least 100ms).
    #[arg(long, env = "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL", value_parser = parse_duration)]
    pub watch_progress_notify_interval: Option<Duration>,
    /// etcd 3.5's name of --watch-progress-notify-interval.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: Option<Duration>,
    /// Before serving, compare this member's HashKV with its peers' and refuse
    /// to start on a mismatch (a member that had data before only); etcd 3.6:
    /// --feature-gates=InitialCorruptCheck=true.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub experimental_initial_corrupt_check: Option<bool>,
    /// etcd 3.6's feature gates, `Name=true|false,...`: InitialCorruptCheck is
    /// implemented; the others are refused unless given cairn's fixed value.
    #[arg(long, env = "ETCD_FEATURE_GATES", default_value = "")]
    pub feature_gates: String,
    /// How often the leader compares every member's HashKV and raises the
    /// CORRUPT alarm on a mismatch; 0 (the default) turns the check off.
    #[arg(long, env = "ETCD_CORRUPT_CHECK_TIME", value_parser = parse_duration)]
    pub corrupt_check_time: Option<Duration>,
    /// etcd 3.5's name of --corrupt-check-time.
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", value_parser = parse_duration)]
    pub experimental_corrupt_check_time: Option<Duration>,
    /// Revisions deleted per batch by a physical compaction (default 1000).
    #[arg(long, env = "ETCD_COMPACTION_BATCH_LIMIT")]
    pub compaction_batch_limit: Option<usize>,
    /// etcd 3.5's name of --compaction-batch-limit.
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT")]
    pub experimental_compaction_batch_limit: Option<usize>,
    /// Pause between two batches of a physical compaction (default 10ms).
    #[arg(long, env = "ETCD_COMPACTION_SLEEP_INTERVAL", value_parser = parse_duration)]
    pub compaction_sleep_interval: Option<Duration>,
    /// etcd 3.5's name of --compaction-sleep-interval.
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACTION_SLEEP_INTERVAL", value_parser = parse_duration)]
    pub experimental_compaction_sleep_interval: Option<Duration>,
    /// Log entries kept behind a snapshot for slow followers to catch up from (default 5000).
    #[arg(long, env = "ETCD_SNAPSHOT_CATCHUP_ENTRIES")]
    pub snapshot_catchup_entries: Option<u64>,
    /// etcd 3.5's name of --snapshot-catchup-entries.
    #[arg(long, env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES")]
    pub experimental_snapshot_catchup_entries: Option<u64>,
    /// Log a warning when applying one batch of committed entries takes longer (default 100ms).
    #[arg(long, env = "ETCD_WARNING_APPLY_DURATION", value_parser = parse_duration)]
    pub warning_apply_duration: Option<Duration>,
    /// etcd 3.5's name of --warning-apply-duration.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WARNING_APPLY_DURATION", value_parser = parse_duration)]
    pub experimental_warning_apply_duration: Option<Duration>,
    /// Log a warning when a unary gRPC request takes longer (default 300ms).
    #[arg(long, env = "ETCD_WARNING_UNARY_REQUEST_DURATION", value_parser = parse_duration)]
    pub warning_unary_request_duration: Option<Duration>,
    /// etcd 3.5's name of --warning-unary-request-duration.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WARNING_UNARY_REQUEST_DURATION", value_parser = parse_duration)]
    pub experimental_warning_unary_request_duration: Option<Duration>,
    /// The most learners the cluster may have at once.
    #[arg(long, env = "ETCD_MAX_LEARNERS", default_value_t = 1)]
    pub max_learners: usize,
    /// Serve the JSON gateway (`/v3/...` POSTs) on the client URLs.
    #[arg(long, env = "ETCD_ENABLE_GRPC_GATEWAY", default_value_t = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub enable_grpc_gateway: bool,
    /// Extra URLs to serve /metrics, /health, /livez and /readyz on (plain HTTP).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", value_delimiter = ',')]
    pub listen_metrics_urls: Vec<String>,
    /// TLS on the client and peer listeners.
    #[command(flatten)]
    pub tls: TlsFlags,
    /// Auth tokens and password hashing.
    #[command(flatten)]
    pub auth: AuthFlags,
    /// etcd 3.5's flags for what are feature gates in 3.6.
    #[command(flatten)]
    pub experimental_gates: ExperimentalGates,
    /// etcd's flags that cairn has nothing to change for.
    #[command(flatten)]
    pub refused: Refused,
    /// Recent events kept in memory for watchers; older ones are read from disk.
    #[arg(long, env = "CAIRN_WATCH_EVENT_LOG_SIZE", default_value_t = crate::watch::DEFAULT_CAPACITY, hide = true)]
    pub watch_event_log_size: usize,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid URL {url:?} in --{flag}: {reason}")]
    BadUrl { flag: &'static str, url: String, reason: String },
    #[error("--initial-cluster-state must be 'new' or 'existing', got {0:?}")]
    BadClusterState(String),
    #[error("--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]")]
    ElectionTooShort { election: u64, heartbeat: u64 },
    #[error("--heartbeat-interval must be above 0")]
    ZeroHeartbeat,
    #[error("--max-request-bytes must be above 0")]
    ZeroRequestBytes,
    #[error("--log-level {0:?} is not one of debug, info, warn, error, panic, fatal")]
    BadLogLevel(String),
    #[error("--max-learners must be above 0")]
    ZeroMaxLearners,
    #[error("invalid --feature-gates item {0:?}: want Name=true or Name=false for a known gate")]
    BadFeatureGate(String),
    #[error("cannot specify both flags: --{flag} and --feature-gates={gate}=..., please just use --feature-gates")]
    GateAndFlag { flag: &'static str, gate: &'static str },
    #[error("cannot set --experimental-{new} and --{new} at the same time, please use --{new} only")]
    BothNames { new: &'static str },
    #[error("{flag} is not supported: {reason}")]
    Unsupported { flag: String, reason: &'static str },
    #[error("TLS key/cert (--cert-file, --key-file) must be provided for client url {0} with HTTPS scheme")]
    ClientUrlWithoutTls(String),
    #[error("cannot listen on TLS for {0}: KeyFile and CertFile are not presented")]
    PeerUrlWithoutTls(SocketAddr),
    #[error("--{0}client-cert-auth needs --{0}trusted-ca-file: no client certificate could be verified without it")]
    CertAuthWithoutCa(&'static str),
    #[error("failed to create token provider: auth: invalid auth options: {0}")]
    AuthToken(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A URL to listen on: its address, and whether it is `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// etcd 3.5's boolean `--experimental-*` flags that became 3.6 feature gates.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExperimentalGates {
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_ENABLED", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    experimental_compact_hash_check_enabled: Option<bool>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_STOP_GRPC_SERVICE_ON_DEFRAG", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    experimental_stop_grpc_service_on_defrag: Option<bool>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_TXN_MODE_WRITE_WITH_SHARED_BUFFER", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    experimental_txn_mode_write_with_shared_buffer: Option<bool>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    experimental_enable_lease_checkpoint: Option<bool>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT_PERSIST", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    experimental_enable_lease_checkpoint_persist: Option<bool>,
}

/// Defaults of the flags whose value is optional because etcd 3.6 renamed them.
pub mod defaults {
    use std::time::Duration;

    pub const WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);
    /// etcd raises a shorter progress interval to this.
    pub const MIN_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);
    pub const COMPACTION_BATCH_LIMIT: usize = 1000;
    pub const COMPACTION_SLEEP_INTERVAL: Duration = Duration::from_millis(10);
    pub const SNAPSHOT_CATCHUP_ENTRIES: u64 = 5000;
    pub const WARNING_APPLY_DURATION: Duration = Duration::from_millis(100);
    pub const WARNING_UNARY_REQUEST_DURATION: Duration = Duration::from_millis(300);
}

/// gRPC framing etcd allows on top of `--max-request-bytes`, for requests and
/// for the size at which watch responses are fragmented.
pub const GRPC_OVERHEAD_BYTES: u64 = 512 * 1024;

/// etcd's quota when `--quota-backend-bytes` is 0.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Self::parse_from(["cairn"])
    }
}

impl Config {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    pub fn initial_cluster_spec(&self) -> String {
        self.initial_cluster.clone().unwrap_or_else(|| {
            self.initial_advertise_peer_urls
                .iter()
                .map(|url| format!("{}={url}", self.name))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    pub fn initial_cluster(&self) -> Result<InitialCluster, ClusterError> {
        InitialCluster::parse(
            &self.initial_cluster_spec(),
            &self.initial_cluster_token,
            &self.name,
            &self.initial_advertise_peer_urls,
        )
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval)
    }

    pub fn election(&self) -> Duration {
        Duration::from_millis(self.election_timeout)
    }

    pub fn quota_backend_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            DEFAULT_QUOTA_BACKEND_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    pub fn client_listens(&self) -> Result<Vec<Listen>, ConfigError> {
        listens("listen-client-urls", &self.listen_client_urls)
    }

    pub fn peer_listens(&self) -> Result<Vec<Listen>, ConfigError> {
        listens("listen-peer-urls", &self.listen_peer_urls)
    }

    pub fn metrics_listens(&self) -> Result<Vec<Listen>, ConfigError> {
        listens("listen-metrics-urls", &self.listen_metrics_urls)
    }

    /// The hosts of the listen URLs, for the names of a self-signed certificate.
    pub fn listen_hosts(urls: &[String]) -> Vec<String> {
        let mut hosts: Vec<String> = urls
            .iter()
            .filter_map(|url| url.split_once("://").map(|(_, rest)| rest.trim_end_matches('/')))
            .filter_map(|host_port| host_port.rsplit_once(':').map(|(host, _)| host))
            .map(|host| host.trim_start_matches('[').trim_end_matches(']').to_string())
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    pub fn watch_progress_notify_interval(&self) -> Duration {
        let given = self.watch_progress_notify_interval.or(self.experimental_watch_progress_notify_interval);
        given.unwrap_or(defaults::WATCH_PROGRESS_NOTIFY_INTERVAL).max(defaults::MIN_WATCH_PROGRESS_NOTIFY_INTERVAL)
    }

    /// Zero: no periodic check.
    pub fn corrupt_check_time(&self) -> Duration {
        self.corrupt_check_time.or(self.experimental_corrupt_check_time).unwrap_or(Duration::ZERO)
    }

    pub fn compaction_batch_limit(&self) -> usize {
        let given = self.compaction_batch_limit.or(self.experimental_compaction_batch_limit);
        given.unwrap_or(defaults::COMPACTION_BATCH_LIMIT)
    }

    pub fn compaction_sleep_interval(&self) -> Duration {
        let given = self.compaction_sleep_interval.or(self.experimental_compaction_sleep_interval);
        given.unwrap_or(defaults::COMPACTION_SLEEP_INTERVAL)
    }

    /// Unless given, never more than --snapshot-count: a member that snapshots
    /// often keeps a short log.
    pub fn snapshot_catchup_entries(&self) -> u64 {
        let given = self.snapshot_catchup_entries.or(self.experimental_snapshot_catchup_entries);
        given.unwrap_or(defaults::SNAPSHOT_CATCHUP_ENTRIES.min(self.snapshot_count))
    }

    pub fn warning_apply_duration(&self) -> Duration {
        let given = self.warning_apply_duration.or(self.experimental_warning_apply_duration);
        given.unwrap_or(defaults::WARNING_APPLY_DURATION)
    }

    pub fn warning_unary_request_duration(&self) -> Duration {
        let given = self.warning_unary_request_duration.or(self.experimental_warning_unary_request_duration);
        given.unwrap_or(defaults::WARNING_UNARY_REQUEST_DURATION)
    }

    /// `--feature-gates` with the 3.5 flags folded in.
    pub fn feature_gates(&self) -> Result<FeatureGates, ConfigError> {
        let gates = &self.experimental_gates;
        FeatureGates::resolve(
            &self.feature_gates,
            &[
                ("experimental-initial-corrupt-check", self.experimental_initial_corrupt_check),
                ("experimental-compact-hash-check-enabled", gates.experimental_compact_hash_check_enabled),
                ("experimental-stop-grpc-service-on-defrag", gates.experimental_stop_grpc_service_on_defrag),
                (
                    "experimental-txn-mode-write-with-shared-buffer",
                    gates.experimental_txn_mode_write_with_shared_buffer,
                ),
                ("experimental-enable-lease-checkpoint", gates.experimental_enable_lease_checkpoint),
                ("experimental-enable-lease-checkpoint-persist", gates.experimental_enable_lease_checkpoint_persist),
            ],
        )
    }

    pub fn initial_corrupt_check(&self) -> bool {
        self.feature_gates().is_ok_and(|gates| gates.enabled(Feature::InitialCorruptCheck))
    }

    /// etcd's checks of the TLS flags against the URLs that need them.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        self.tls.options()?;
        let (client, peer) = (self.tls.client(), self.tls.peer());
        client.validate()?;
        peer.validate()?;
        // Auto TLS drops client certificate authentication, as in etcd.
        for (side, info) in [("", &client), ("peer-", &peer)] {
            if info.client_cert_auth && info.trusted_ca_file.is_none() && !info.is_empty() {
                return Err(ConfigError::CertAuthWithoutCa(side));
            }
        }
        let client_tls = !client.is_empty() || client.auto_tls;
        for (url, listen) in self.listen_client_urls.iter().zip(self.client_listens()?) {
            if listen.tls && !client_tls {
                return Err(ConfigError::ClientUrlWithoutTls(url.clone()));
            }
        }
        for listen in self.metrics_listens()? {
            if listen.tls && !client_tls {
                return Err(ConfigError::ClientUrlWithoutTls(format!("https://{}", listen.addr)));
            }
        }
        let peer_tls = !peer.is_empty() || peer.auto_tls;
        if let Some(listen) = self.peer_listens()?.into_iter().find(|listen| listen.tls && !peer_tls) {
            return Err(ConfigError::PeerUrlWithoutTls(listen.addr));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<InitialCluster, ConfigError> {
        one_name(
            "watch-progress-notify-interval",
            &self.watch_progress_notify_interval,
            &self.experimental_watch_progress_notify_interval,
        )?;
        one_name("corrupt-check-time", &self.corrupt_check_time, &self.experimental_corrupt_check_time)?;
        one_name("compaction-batch-limit", &self.compaction_batch_limit, &self.experimental_compaction_batch_limit)?;
        one_name(
            "compaction-sleep-interval",
            &self.compaction_sleep_interval,
            &self.experimental_compaction_sleep_interval,
        )?;
        one_name(
            "snapshot-catchup-entries",
            &self.snapshot_catchup_entries,
            &self.experimental_snapshot_catchup_entries,
        )?;
        one_name("warning-apply-duration", &self.warning_apply_duration, &self.experimental_warning_apply_duration)?;
        one_name(
            "warning-unary-request-duration",
            &self.warning_unary_request_duration,
            &self.experimental_warning_unary_request_duration,
        )?;
        self.feature_gates()?;
        self.refused.check()?;
        one_name(
            "peer-skip-client-san-verification",
            &self.tls.peer_skip_client_san_verification,
            &self.tls.experimental_peer_skip_client_san_verification,
        )?;
        if self.max_learners == 0 {
            return Err(ConfigError::ZeroMaxLearners);
        }
        self.validate_tls()?;
        self.auth.token_spec()?;
        for url in &self.advertise_client_urls {
            socket_addr("advertise-client-urls", url)?;
        }
        for url in &self.initial_advertise_peer_urls {
            socket_addr("initial-advertise-peer-urls", url)?;
        }
        match self.initial_cluster_state.as_str() {
            "new" | "existing" => {}
            other => return Err(ConfigError::BadClusterState(other.to_string())),
        }
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::ElectionTooShort {
                election: self.election_timeout,
                heartbeat: self.heartbeat_interval,
            });
        }
        if self.max_request_bytes == 0 {
            return Err(ConfigError::ZeroRequestBytes);
        }
        if !["debug", "info", "warn", "error", "panic", "fatal"].contains(&self.log_level.as_str()) {
            return Err(ConfigError::BadLogLevel(self.log_level.clone()));
        }
        Ok(self.initial_cluster()?)
    }
}

/// A Go-style duration: `500ms`, `10s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}"))?;
    let millis = match unit {
        "ms" => number,
        "s" => number * 1000,
        "m" => number * 60_000,
        "h" => number * 3_600_000,
        _ => return Err(format!("invalid duration {text:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_millis(millis))
}

fn listens(flag: &'static str, urls: &[String]) -> Result<Vec<Listen>, ConfigError> {
    urls.iter()
        .map(|url| {
            let tls = url.starts_with("https://") || url.starts_with("unixs://");
            Ok(Listen { addr: socket_addr(flag, url)?, tls })
        })
        .collect()
}

/// `http://host:port` or `https://host:port` to a socket address; `localhost`
/// is 127.0.0.1, as etcd binds it.
pub fn socket_addr(flag: &'static str, url: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |reason: &str| ConfigError::BadUrl { flag, url: url.to_string(), reason: reason.to_string() };
    let rest = ["http://", "https://", "unix://", "unixs://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| bad("only http:// and https:// URLs are supported"))?;
    let host_port = rest.trim_end_matches('/');
    let (host, port) = host_port.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "localhost" { "127.0.0.1" } else { host };
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad("host must be an IP address or localhost"))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_etcds() {
        let config = Config::default();
        assert_eq!(config.name, "default");
        assert_eq!(config.data_dir(), PathBuf::from("default.etcd"));
        assert_eq!(config.initial_cluster_spec(), "default=http://localhost:2380");
        assert_eq!(
            config.client_listens().expect("valid"),
            vec![Listen { addr: "127.0.0.1:2379".parse().expect("addr"), tls: false }]
        );
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_values_are_refused() {
        let config = Config::parse_from(["cairn", "--election-timeout", "300"]);
        assert!(matches!(config.validate(), Err(ConfigError::ElectionTooShort { .. })));
        let config = Config::parse_from(["cairn", "--listen-client-urls", "ftp://x"]);
        assert!(matches!(config.validate(), Err(ConfigError::BadUrl { .. })));
        assert!(socket_addr("f", "http://127.0.0.1").is_err());
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("1x").is_err());
    }

    /// The flags of kubeadm's etcd manifest (v1.33), less TLS: all taken, all honoured.
    #[test]
    fn kubeadms_etcd_flags_are_taken_and_honoured() {
        let config = Config::parse_from([
            "cairn",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--data-dir=/var/lib/etcd",
            "--experimental-initial-corrupt-check=true",
            "--experimental-watch-progress-notify-interval=5s",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=node=http://127.0.0.1:2380",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--name=node",
            "--snapshot-count=10000",
        ]);
        config.validate().expect("kubeadm's flags validate");
        assert!(config.initial_corrupt_check());
        assert_eq!(config.watch_progress_notify_interval(), Duration::from_secs(5));
        assert_eq!(
            config.metrics_listens().expect("addrs"),
            vec![Listen { addr: "127.0.0.1:2381".parse().expect("addr"), tls: false }]
        );
        // etcd 3.6's spelling of the same manifest.
        let config = Config::parse_from([
            "cairn",
            "--feature-gates=InitialCorruptCheck=true",
            "--watch-progress-notify-interval=5s",
        ]);
        config.validate().expect("valid");
        assert!(config.initial_corrupt_check());
        assert_eq!(config.watch_progress_notify_interval(), Duration::from_secs(5));
        assert!(!Config::default().initial_corrupt_check());
    }

    #[test]
    fn renamed_flags_take_either_name_but_not_both() {
        let config = Config::parse_from(["cairn", "--experimental-compaction-batch-limit=7"]);
        assert_eq!(config.compaction_batch_limit(), 7);
        let config = Config::parse_from(["cairn", "--compaction-sleep-interval=1s", "--snapshot-catchup-entries=9"]);
        assert_eq!(config.compaction_sleep_interval(), Duration::from_secs(1));
        assert_eq!(config.snapshot_catchup_entries(), 9);
        let config = Config::parse_from(["cairn", "--snapshot-count=100"]);
        assert_eq!(config.snapshot_catchup_entries(), 100, "never more than --snapshot-count unless given");
        let config = Config::parse_from(["cairn", "--watch-progress-notify-interval=10ms"]);
        assert_eq!(config.watch_progress_notify_interval(), Duration::from_millis(100), "raised as etcd does");
        let both = Config::parse_from(["cairn", "--corrupt-check-time=1m", "--experimental-corrupt-check-time=2m"]);
        assert_eq!(
            both.validate().map(|_| ()).map_err(|err| err.to_string()),
            Err("cannot set --experimental-corrupt-check-time and --corrupt-check-time at the same time, please use --corrupt-check-time only".to_string())
        );
        let both = Config::parse_from([
            "cairn",
            "--experimental-initial-corrupt-check",
            "--feature-gates=InitialCorruptCheck=false",
        ]);
        assert!(matches!(both.validate(), Err(ConfigError::GateAndFlag { .. })));
    }

    #[test]
    fn flags_cairn_cannot_honour_are_refused_with_the_reason() {
        let refused = |args: &[&str]| {
            let config = Config::parse_from(std::iter::once("cairn").chain(args.iter().copied()));
            config.validate().map(|_| ()).map_err(|err| err.to_string())
        };
        for args in [
            &["--experimental-memory-mlock"][..],
            &["--memory-mlock=true"],
            &["--bootstrap-defrag-threshold-megabytes=10"],
            &["--experimental-compact-hash-check-enabled"],
            &["--feature-gates=CompactHashCheck=true"],
            &["--feature-gates=StopGRPCServiceOnDefrag=true"],
            &["--experimental-txn-mode-write-with-shared-buffer=false"],
            &["--feature-gates=LeaseCheckpoint=true"],
            &["--experimental-enable-lease-checkpoint-persist"],
            &["--downgrade-check-time=5s"],
            &["--enable-distributed-tracing"],
            &["--distributed-tracing-address=127.0.0.1:4317"],
            &["--experimental-enable-v2v3=/v2"],
        ] {
            let outcome = refused(args);
            assert!(outcome.as_ref().is_err_and(|err| err.contains("is not supported: ")), "{args:?}: {outcome:?}");
        }
        assert!(refused(&["--feature-gates=Nope=true"]).is_err_and(|err| err.contains("\"Nope=true\"")));
        assert!(refused(&["--feature-gates=InitialCorruptCheck"]).is_err());
        assert!(refused(&["--max-learners=0"]).is_err());
        // The values that describe what cairn does are taken.
        for args in [
            &["--experimental-memory-mlock=false"][..],
            &["--bootstrap-defrag-threshold-megabytes=0"],
            &["--feature-gates=TxnModeWriteWithSharedBuffer=true,LeaseCheckpoint=false"],
            &["--experimental-stop-grpc-service-on-defrag=false"],
        ] {
            assert_eq!(refused(args), Ok(()), "{args:?}");
        }
    }
}
