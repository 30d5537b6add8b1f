//! Configuration: one typed struct with etcd's flag names, their `ETCD_*`
//! environment variables, one set of defaults, and [`Config::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::cluster::{ClusterError, InitialCluster};

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
    /// Duration of periodic watch progress notifications.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m",
        value_parser = parse_duration
    )]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Before serving, compare this member's HashKV with its peers' and refuse
    /// to start on a mismatch (a member that had data before only).
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub experimental_initial_corrupt_check: bool,
    /// How often the leader compares every member's HashKV and raises the
    /// CORRUPT alarm on a mismatch; 0 turns the check off.
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s", value_parser = parse_duration)]
    pub experimental_corrupt_check_time: Duration,
    /// Revisions deleted per batch by a physical compaction (etcd's default: 1000).
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT", default_value_t = 1000)]
    pub experimental_compaction_batch_limit: usize,
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
    #[error(transparent)]
    Cluster(#[from] ClusterError),
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

    pub fn client_listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.listen_client_urls.iter().map(|url| socket_addr("listen-client-urls", url)).collect()
    }

    pub fn peer_listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.listen_peer_urls.iter().map(|url| socket_addr("listen-peer-urls", url)).collect()
    }

    pub fn validate(&self) -> Result<InitialCluster, ConfigError> {
        self.client_listen_addrs()?;
        self.peer_listen_addrs()?;
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

/// `http://host:port` to a socket address; `localhost` is 127.0.0.1, as etcd binds it.
pub fn socket_addr(flag: &'static str, url: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |reason: &str| ConfigError::BadUrl { flag, url: url.to_string(), reason: reason.to_string() };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("unix://"))
        .ok_or_else(|| bad("only http:// URLs are supported"))?;
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
        assert_eq!(config.client_listen_addrs().expect("valid"), vec!["127.0.0.1:2379".parse().expect("addr")]);
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
}
