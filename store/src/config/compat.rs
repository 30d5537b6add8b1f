//! etcd's flags that changed name or meaning between 3.5 and 3.6: the
//! `--experimental-*` flags of 3.5, their 3.6 names, `--feature-gates`, and
//! the flags cairn refuses because it has nothing they could change. A flag is
//! either implemented or refused with its reason; none is accepted and ignored.

use clap::Args;

use super::ConfigError;

/// One of etcd 3.6's server feature gates (`--feature-gates=Name=bool,...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    InitialCorruptCheck,
    CompactHashCheck,
    StopGrpcServiceOnDefrag,
    TxnModeWriteWithSharedBuffer,
    LeaseCheckpoint,
    LeaseCheckpointPersist,
    SetMemberLocalAddr,
}

impl Feature {
    const ALL: [Feature; 7] = [
        Feature::InitialCorruptCheck,
        Feature::CompactHashCheck,
        Feature::StopGrpcServiceOnDefrag,
        Feature::TxnModeWriteWithSharedBuffer,
        Feature::LeaseCheckpoint,
        Feature::LeaseCheckpointPersist,
        Feature::SetMemberLocalAddr,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::InitialCorruptCheck => "InitialCorruptCheck",
            Feature::CompactHashCheck => "CompactHashCheck",
            Feature::StopGrpcServiceOnDefrag => "StopGRPCServiceOnDefrag",
            Feature::TxnModeWriteWithSharedBuffer => "TxnModeWriteWithSharedBuffer",
            Feature::LeaseCheckpoint => "LeaseCheckpoint",
            Feature::LeaseCheckpointPersist => "LeaseCheckpointPersist",
            Feature::SetMemberLocalAddr => "SetMemberLocalAddr",
        }
    }

    /// The 3.5 flag the gate replaced, if any.
    fn experimental_flag(self) -> Option<&'static str> {
        match self {
            Feature::InitialCorruptCheck => Some("experimental-initial-corrupt-check"),
            Feature::CompactHashCheck => Some("experimental-compact-hash-check-enabled"),
            Feature::StopGrpcServiceOnDefrag => Some("experimental-stop-grpc-service-on-defrag"),
            Feature::TxnModeWriteWithSharedBuffer => Some("experimental-txn-mode-write-with-shared-buffer"),
            Feature::LeaseCheckpoint => Some("experimental-enable-lease-checkpoint"),
            Feature::LeaseCheckpointPersist => Some("experimental-enable-lease-checkpoint-persist"),
            Feature::SetMemberLocalAddr => None,
        }
    }

    fn default_enabled(self) -> bool {
        self == Feature::TxnModeWriteWithSharedBuffer
    }

    /// Why cairn cannot take the other value of this gate; `None`: it is implemented.
    fn fixed(self) -> Option<(bool, &'static str)> {
        match self {
            Feature::InitialCorruptCheck => None,
            Feature::CompactHashCheck => {
                Some((false, "cairn compares whole-store hashes instead: use --corrupt-check-time"))
            }
            Feature::StopGrpcServiceOnDefrag => {
                Some((false, "cairn keeps serving while it defragments (RocksDB compacts online)"))
            }
            Feature::TxnModeWriteWithSharedBuffer => {
                Some((true, "a bbolt buffer choice; cairn's write transactions always read their own batch"))
            }
            Feature::LeaseCheckpoint | Feature::LeaseCheckpointPersist => {
                Some((false, "cairn's leases restart their TTL on a leader change, as etcd's do without checkpoints"))
            }
            Feature::SetMemberLocalAddr => Some((false, "cairn dials its peers from the default local address")),
        }
    }
}

/// The enabled state of every gate, after `--feature-gates` and the 3.5 flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureGates {
    enabled: Vec<(Feature, bool)>,
}

impl FeatureGates {
    pub fn enabled(&self, feature: Feature) -> bool {
        self.enabled.iter().find(|(f, _)| *f == feature).map_or(feature.default_enabled(), |(_, on)| *on)
    }

    /// Parses `--feature-gates` and folds in the 3.5 flags, refusing both at once as etcd 3.6 does.
    pub fn resolve(gates: &str, experimental: &[(&'static str, Option<bool>)]) -> Result<Self, ConfigError> {
        let mut enabled = Vec::new();
        for item in gates.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let bad = || ConfigError::BadFeatureGate(item.to_string());
            let (name, value) = item.split_once('=').ok_or_else(bad)?;
            let feature = Feature::ALL.into_iter().find(|f| f.name() == name.trim()).ok_or_else(bad)?;
            let on: bool = value.trim().parse().map_err(|_| bad())?;
            enabled.push((feature, on));
        }
        for feature in Feature::ALL {
            let Some(flag) = feature.experimental_flag() else { continue };
            let Some(on) = experimental.iter().find(|(name, _)| *name == flag).and_then(|(_, value)| *value) else {
                continue;
            };
            if enabled.iter().any(|(f, _)| *f == feature) {
                return Err(ConfigError::GateAndFlag { flag, gate: feature.name() });
            }
            enabled.push((feature, on));
        }
        let gates = Self { enabled };
        for feature in Feature::ALL {
            if let Some((only, reason)) = feature.fixed() {
                if gates.enabled(feature) != only {
                    return Err(ConfigError::Unsupported {
                        flag: format!("--feature-gates={}={}", feature.name(), gates.enabled(feature)),
                        reason,
                    });
                }
            }
        }
        Ok(gates)
    }
}

/// A value given under either etcd 3.5's `--experimental-` name or 3.6's
/// name; etcd 3.6 refuses both at once.
pub fn one_name<T>(new: &'static str, value: &Option<T>, old: &Option<T>) -> Result<(), ConfigError> {
    match (value, old) {
        (Some(_), Some(_)) => Err(ConfigError::BothNames { new }),
        _ => Ok(()),
    }
}

/// A flag's value as clap gives it for a `--flag[=value]` boolean.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("invalid boolean {text:?}")),
    }
}

/// etcd's flags that have nothing to change in cairn. Each is refused unless
/// it is given the value that describes what cairn does.
#[derive(Debug, Clone, Default, Args)]
pub struct Refused {
    #[arg(long, env = "ETCD_EXPERIMENTAL_MEMORY_MLOCK", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    experimental_memory_mlock: Option<bool>,
    #[arg(long, env = "ETCD_MEMORY_MLOCK", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    memory_mlock: Option<bool>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_BOOTSTRAP_DEFRAG_THRESHOLD_MEGABYTES", hide = true)]
    experimental_bootstrap_defrag_threshold_megabytes: Option<u64>,
    #[arg(long, env = "ETCD_BOOTSTRAP_DEFRAG_THRESHOLD_MEGABYTES", hide = true)]
    bootstrap_defrag_threshold_megabytes: Option<u64>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_TIME", hide = true)]
    experimental_compact_hash_check_time: Option<String>,
    #[arg(long, env = "ETCD_COMPACT_HASH_CHECK_TIME", hide = true)]
    compact_hash_check_time: Option<String>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_DOWNGRADE_CHECK_TIME", hide = true)]
    experimental_downgrade_check_time: Option<String>,
    #[arg(long, env = "ETCD_DOWNGRADE_CHECK_TIME", hide = true)]
    downgrade_check_time: Option<String>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_DISTRIBUTED_TRACING", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    experimental_enable_distributed_tracing: Option<bool>,
    #[arg(long, env = "ETCD_ENABLE_DISTRIBUTED_TRACING", hide = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    enable_distributed_tracing: Option<bool>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_ADDRESS", hide = true)]
    experimental_distributed_tracing_address: Option<String>,
    #[arg(long, env = "ETCD_DISTRIBUTED_TRACING_ADDRESS", hide = true)]
    distributed_tracing_address: Option<String>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SERVICE_NAME", hide = true)]
    experimental_distributed_tracing_service_name: Option<String>,
    #[arg(long, env = "ETCD_DISTRIBUTED_TRACING_SERVICE_NAME", hide = true)]
    distributed_tracing_service_name: Option<String>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_INSTANCE_ID", hide = true)]
    experimental_distributed_tracing_instance_id: Option<String>,
    #[arg(long, env = "ETCD_DISTRIBUTED_TRACING_INSTANCE_ID", hide = true)]
    distributed_tracing_instance_id: Option<String>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SAMPLING_RATE", hide = true)]
    experimental_distributed_tracing_sampling_rate: Option<String>,
    #[arg(long, env = "ETCD_DISTRIBUTED_TRACING_SAMPLING_RATE", hide = true)]
    distributed_tracing_sampling_rate: Option<String>,
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_V2V3", hide = true)]
    experimental_enable_v2v3: Option<String>,
}

const NO_MMAP: &str = "cairn has no memory-mapped database file to lock";
const NO_DEFRAG_AT_START: &str = "cairn does not defragment at start; run `etcdctl defrag` on a running member";
const NO_COMPACT_HASH: &str = "cairn compares whole-store hashes instead: use --corrupt-check-time";
const NO_DOWNGRADE: &str = "cairn has no cluster downgrade";
const NO_TRACING: &str = "cairn does not export OpenTelemetry traces";
const NO_V2: &str = "cairn serves no v2 API";

impl Refused {
    /// The first flag given a value cairn cannot honour.
    pub fn check(&self) -> Result<(), ConfigError> {
        let only_false = |flag: &'static str, value: Option<bool>, reason: &'static str| match value {
            Some(true) => Err(ConfigError::Unsupported { flag: format!("--{flag}=true"), reason }),
            _ => Ok(()),
        };
        let only_zero = |flag: &'static str, value: Option<u64>, reason: &'static str| match value {
            Some(value) if value != 0 => Err(ConfigError::Unsupported { flag: format!("--{flag}={value}"), reason }),
            _ => Ok(()),
        };
        let unset = |flag: &'static str, value: &Option<String>, reason: &'static str| match value {
            Some(value) => Err(ConfigError::Unsupported { flag: format!("--{flag}={value}"), reason }),
            None => Ok(()),
        };
        only_false("experimental-memory-mlock", self.experimental_memory_mlock, NO_MMAP)?;
        only_false("memory-mlock", self.memory_mlock, NO_MMAP)?;
        only_zero(
            "experimental-bootstrap-defrag-threshold-megabytes",
            self.experimental_bootstrap_defrag_threshold_megabytes,
            NO_DEFRAG_AT_START,
        )?;
        only_zero(
            "bootstrap-defrag-threshold-megabytes",
            self.bootstrap_defrag_threshold_megabytes,
            NO_DEFRAG_AT_START,
        )?;
        unset("experimental-compact-hash-check-time", &self.experimental_compact_hash_check_time, NO_COMPACT_HASH)?;
        unset("compact-hash-check-time", &self.compact_hash_check_time, NO_COMPACT_HASH)?;
        unset("experimental-downgrade-check-time", &self.experimental_downgrade_check_time, NO_DOWNGRADE)?;
        unset("downgrade-check-time", &self.downgrade_check_time, NO_DOWNGRADE)?;
        only_false(
            "experimental-enable-distributed-tracing",
            self.experimental_enable_distributed_tracing,
            NO_TRACING,
        )?;
        only_false("enable-distributed-tracing", self.enable_distributed_tracing, NO_TRACING)?;
        for (flag, value) in [
            ("experimental-distributed-tracing-address", &self.experimental_distributed_tracing_address),
            ("distributed-tracing-address", &self.distributed_tracing_address),
            ("experimental-distributed-tracing-service-name", &self.experimental_distributed_tracing_service_name),
            ("distributed-tracing-service-name", &self.distributed_tracing_service_name),
            ("experimental-distributed-tracing-instance-id", &self.experimental_distributed_tracing_instance_id),
            ("distributed-tracing-instance-id", &self.distributed_tracing_instance_id),
            ("experimental-distributed-tracing-sampling-rate", &self.experimental_distributed_tracing_sampling_rate),
            ("distributed-tracing-sampling-rate", &self.distributed_tracing_sampling_rate),
        ] {
            unset(flag, value, NO_TRACING)?;
        }
        match self.experimental_enable_v2v3.as_deref() {
            None | Some("") => Ok(()),
            Some(value) => {
                Err(ConfigError::Unsupported { flag: format!("--experimental-enable-v2v3={value}"), reason: NO_V2 })
            }
        }
    }
}
