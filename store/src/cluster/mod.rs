//! Cluster identity, derived from configuration exactly as etcd derives it,
//! so that member and cluster IDs match what an etcd operator expects.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

use crate::types::{Member, NodeId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("--initial-cluster: {0:?} is not name=url")]
    BadEntry(String),
    #[error("--initial-cluster: member {0} has no peer URLs")]
    NoUrls(String),
    #[error("--initial-cluster has {name}={listed} but missing from --initial-advertise-peer-urls={advertised}")]
    AdvertiseMismatch { name: String, listed: String, advertised: String },
    #[error("--initial-cluster has no member named {0:?} (set --name to one of its names)")]
    NameMissing(String),
    #[error("--initial-cluster: two members have peer URL {0}")]
    DuplicateUrl(String),
}

/// etcd's member ID: SHA-1 over the sorted peer URLs and the cluster token.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> NodeId {
    member_id_at(peer_urls, cluster_token, None)
}

/// etcd's member ID for a member added at `unix_seconds` (`member add`).
pub fn member_id_at(peer_urls: &[String], cluster_token: &str, unix_seconds: Option<u64>) -> NodeId {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut hasher = Sha1::new();
    hasher.update(urls.concat().as_bytes());
    hasher.update(cluster_token.as_bytes());
    if let Some(seconds) = unix_seconds {
        hasher.update(seconds.to_string().as_bytes());
    }
    first_u64(&hasher.finalize())
}

/// etcd's cluster ID: SHA-1 over the sorted member IDs, big-endian.
pub fn cluster_id(member_ids: impl IntoIterator<Item = NodeId>) -> u64 {
    let mut ids: Vec<NodeId> = member_ids.into_iter().collect();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// The static bootstrap membership: `--initial-cluster` with derived IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialCluster {
    pub members: BTreeMap<NodeId, Member>,
    pub cluster_id: u64,
    pub local_id: NodeId,
}

impl InitialCluster {
    /// Parses `name=url,name=url` (a name may repeat for several URLs).
    pub fn parse(
        initial_cluster: &str,
        token: &str,
        local_name: &str,
        advertise_peer_urls: &[String],
    ) -> Result<Self, ClusterError> {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in initial_cluster.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (name, url) = entry.split_once('=').ok_or_else(|| ClusterError::BadEntry(entry.to_string()))?;
            if name.is_empty() || url.is_empty() {
                return Err(ClusterError::BadEntry(entry.to_string()));
            }
            by_name.entry(name.to_string()).or_default().push(url.to_string());
        }
        let mut members = BTreeMap::new();
        let mut seen_urls = std::collections::HashSet::new();
        for (name, peer_urls) in by_name {
            for url in &peer_urls {
                if !seen_urls.insert(url.clone()) {
                    return Err(ClusterError::DuplicateUrl(url.clone()));
                }
            }
            members.insert(member_id(&peer_urls, token), Member { name, peer_urls });
        }
        let (local_id, local) = members
            .iter()
            .find(|(_, member)| member.name == local_name)
            .ok_or_else(|| ClusterError::NameMissing(local_name.to_string()))?;
        let mut listed = local.peer_urls.clone();
        let mut advertised = advertise_peer_urls.to_vec();
        listed.sort();
        advertised.sort();
        if listed != advertised {
            return Err(ClusterError::AdvertiseMismatch {
                name: local_name.to_string(),
                listed: listed.join(","),
                advertised: advertised.join(","),
            });
        }
        let local_id = *local_id;
        let cluster_id = cluster_id(members.keys().copied());
        Ok(Self { members, cluster_id, local_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd_defaults() {
        // `etcd` with no flags reports member 8e9e05c52164694d in cluster cdf818194e3a8c32.
        let cluster = InitialCluster::parse(
            "default=http://localhost:2380",
            "etcd-cluster",
            "default",
            &["http://localhost:2380".to_string()],
        )
        .expect("valid");
        assert_eq!(cluster.local_id, 0x8e9e05c52164694d);
        assert_eq!(cluster.cluster_id, 0xcdf818194e3a8c32);
    }

    #[test]
    fn mismatched_advertise_urls_are_refused() {
        let err = InitialCluster::parse("a=http://127.0.0.1:1", "t", "a", &["http://127.0.0.1:2".into()]);
        assert!(matches!(err, Err(ClusterError::AdvertiseMismatch { .. })));
        assert!(matches!(InitialCluster::parse("a", "t", "a", &[]), Err(ClusterError::BadEntry(_))));
        assert!(matches!(
            InitialCluster::parse("a=http://x:1", "t", "b", &["http://x:1".into()]),
            Err(ClusterError::NameMissing(_))
        ));
    }
}
