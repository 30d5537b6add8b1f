//! Events expire through leases, one lease shared by the events written within
//! a minute, as kube-apiserver's lease manager does (`--event-ttl`).

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{Storage, StorageError};

/// How long one lease is reused; kube-apiserver's `--lease-reuse-duration-seconds`.
const REUSE: Duration = Duration::from_secs(60);

pub struct EventLeases {
    ttl: Duration,
    current: Mutex<Option<(i64, Instant)>>,
}

impl EventLeases {
    pub fn new(ttl: Duration) -> EventLeases {
        EventLeases { ttl, current: Mutex::new(None) }
    }

    /// A lease that lives at least `--event-ttl` from now.
    pub async fn lease(&self, storage: &Storage) -> Result<i64, StorageError> {
        let mut current = self.current.lock().await;
        if let Some((id, granted)) = *current {
            if granted.elapsed() < REUSE {
                return Ok(id);
            }
        }
        let ttl_seconds = (self.ttl + REUSE).as_secs() as i64;
        let id = storage.grant_lease(ttl_seconds).await?;
        *current = Some((id, Instant::now()));
        Ok(id)
    }
}
