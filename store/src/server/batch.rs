//! Taking requests off a queue in batches, for group commit and for what a
//! follower forwards: one in-flight slot is taken per batch, and the batch
//! holds everything that queued while the slots were busy.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Upper bound of requests in one batch.
pub const MAX_BATCH_REQUESTS: usize = 1024;
/// Upper bound of one batch's requests in bytes (a single larger request still
/// goes alone): with `--max-request-bytes` requests of 1.5 MiB, a count bound
/// alone would make entries that no peer message could carry.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// A queue's consumer end, with the request that did not fit the last batch.
pub struct Batches<I, S> {
    receiver: mpsc::Receiver<I>,
    carried: Option<I>,
    in_flight: Arc<Semaphore>,
    slot_wait: Option<Duration>,
    size: S,
}

impl<I, S: Fn(&I) -> usize> Batches<I, S> {
    /// `size` is a request's size in bytes. With a `slot_wait`, a batch
    /// that finds every slot held that long goes on a slot of its own.
    pub fn new(receiver: mpsc::Receiver<I>, in_flight: Arc<Semaphore>, slot_wait: Option<Duration>, size: S) -> Self {
        Self { receiver, carried: None, in_flight, slot_wait, size }
    }

    /// The next batch and its in-flight slot; None once the queue is closed.
    pub async fn next(&mut self) -> Option<(Vec<I>, OwnedSemaphorePermit)> {
        let first = match self.carried.take() {
            Some(first) => first,
            None => self.receiver.recv().await?,
        };
        // Taken after the first request, so that an idle queue leaves the slot
        // to a lone request's fast path, and before the rest, so that the batch
        // holds all that arrived while the slots were busy.
        let slot = self.in_flight.clone().acquire_owned();
        let permit = match self.slot_wait {
            None => slot.await.ok()?,
            Some(wait) => match tokio::time::timeout(wait, slot).await {
                Ok(permit) => permit.ok()?,
                // A slot outside the bound, so that calls stuck on a member
                // that is gone do not hold back those routed elsewhere.
                Err(_) => Arc::new(Semaphore::new(1)).try_acquire_owned().ok()?,
            },
        };
        let mut bytes = (self.size)(&first);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS {
            let Ok(next) = self.receiver.try_recv() else { break };
            bytes += (self.size)(&next);
            if bytes > MAX_BATCH_BYTES {
                self.carried = Some(next);
                break;
            }
            batch.push(next);
        }
        Some((batch, permit))
    }
}
