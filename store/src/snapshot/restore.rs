//! `cairn snapshot restore`: a data dir for one member of a new cluster, built
//! in a temporary folder and renamed into place only when complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{load_into, verify, LoadOptions, SnapshotError, SnapshotSummary};
use crate::cluster::{ClusterError, InitialCluster};
use crate::engine::schema::{self, meta};
use crate::engine::{Durability, Engine, WriteOp};

/// etcdutl's restore flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// Path to the snapshot file.
    pub file: PathBuf,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the output data directory (default: "<name>.etcd").
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Initial cluster configuration for restore bootstrap (default: "<name>=<initial-advertise-peer-urls>").
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster token for the cluster during restore bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Ignore snapshot integrity hash value (required if copied from data directory).
    #[arg(long)]
    pub skip_hash_check: bool,
    /// How much to increase the latest revision after restore.
    #[arg(long, default_value_t = 0)]
    pub bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction
    /// (required if --bump-revision > 0, disallowed otherwise).
    #[arg(long)]
    pub mark_compacted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("data-dir {0:?} not empty or could not be read")]
    DataDirNotEmpty(PathBuf),
    #[error("--mark-compacted required if --bump-revision > 0")]
    MarkCompactedRequired,
    #[error("--bump-revision must be above 0 with --mark-compacted")]
    BumpRequired,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError {
    let path = path.to_path_buf();
    move |source| RestoreError::Io { action, path, source }
}

/// Restores `args.file` into a new data dir; on any failure nothing is left behind.
pub fn restore(args: &RestoreArgs, progress: &mut dyn Write) -> Result<SnapshotSummary, RestoreError> {
    if args.bump_revision > 0 && !args.mark_compacted {
        return Err(RestoreError::MarkCompactedRequired);
    }
    if args.bump_revision == 0 && args.mark_compacted {
        return Err(RestoreError::BumpRequired);
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.name)));
    let occupied = match std::fs::read_dir(&data_dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(err) => err.kind() != std::io::ErrorKind::NotFound,
    };
    if occupied {
        return Err(RestoreError::DataDirNotEmpty(data_dir));
    }
    let spec = args.initial_cluster.clone().unwrap_or_else(|| {
        args.initial_advertise_peer_urls.iter().map(|url| format!("{}={url}", args.name)).collect::<Vec<_>>().join(",")
    });
    let cluster =
        InitialCluster::parse(&spec, &args.initial_cluster_token, &args.name, &args.initial_advertise_peer_urls)?;
    verify(&args.file, args.skip_hash_check)?;

    let parent = data_dir.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = data_dir.file_name().map_or("data".into(), |name| name.to_string_lossy().into_owned());
    let temporary = parent.join(format!(".{base}.restoring-{}", std::process::id()));
    let result = build(args, &cluster, &temporary, progress).and_then(|summary| {
        std::fs::rename(&temporary, &data_dir).map_err(io("renaming into", &data_dir))?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&temporary);
    }
    result
}

fn build(
    args: &RestoreArgs,
    cluster: &InitialCluster,
    temporary: &Path,
    progress: &mut dyn Write,
) -> Result<SnapshotSummary, RestoreError> {
    let db_dir = temporary.join(schema::DB_DIR);
    std::fs::create_dir_all(&db_dir).map_err(io("creating", &db_dir))?;
    let engine = Engine::open(&db_dir).map_err(SnapshotError::from)?;
    let mut printer = ProgressPrinter::default();
    let options = LoadOptions {
        with_meta: false,
        bump_revision: args.bump_revision as i64,
        mark_compacted: args.mark_compacted,
        progress: Some(Box::new(move |percent| printer.show(percent))),
    };
    let summary = load_into(&engine, &args.file, options)?;
    let mut ops =
        schema::identity_records(cluster.local_id, cluster.cluster_id, &args.initial_cluster_token, &args.name);
    let members = crate::types::encode(&cluster.members)
        .map_err(|err| SnapshotError::Corrupt(format!("encoding members: {err}")))?;
    ops.push(WriteOp::Put { cf: schema::CF_META, key: meta::BOOTSTRAP_MEMBERS.to_vec(), value: members });
    engine.write(&ops, Durability::Sync).map_err(SnapshotError::from)?;
    drop(engine);
    let _ = writeln!(
        progress,
        "restored snapshot: revision {}, {} revisions of keys, {} leases, member {:x} of cluster {:x}",
        summary.revision, summary.kv_records, summary.lease_records, cluster.local_id, cluster.cluster_id
    );
    Ok(summary)
}

/// Progress on standard error, one line per 10%.
#[derive(Default)]
struct ProgressPrinter {
    shown: u64,
}

impl ProgressPrinter {
    fn show(&mut self, percent: u64) {
        if percent >= self.shown + 10 || (percent == 100 && self.shown < 100) {
            self.shown = percent;
            eprintln!("restoring: {percent}%");
        }
    }
}
