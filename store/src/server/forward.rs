//! What a follower forwards to the leader: requests that queue up while
//! earlier forwards are in flight go together in one RPC, as etcd's followers
//! send their proposals and read-index requests on one stream rather than a
//! call each. A lone request is sent from its own task at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::batch::Batches;
use super::proposer::ProposeError;
use crate::error::EtcdError;
use crate::metrics::ForwardCounts;

/// Forwards in flight at once; requests queue meanwhile and go in the next.
/// Unbounded, nearly every write went alone under 64 clients, and each RPC
/// costs CPU, which bounds throughput on 2 cores (docs/benchmarks.md).
const MAX_IN_FLIGHT: usize = 4;
/// How long a batch waits for a slot before it takes one beyond the bound: a
/// forward takes one commit round, and the slots may be held by calls to a
/// leader that was just cut off, while the next requests are routed to the new
/// one.
const SLOT_WAIT: Duration = Duration::from_millis(100);
/// Requests waiting for the forwarding task; senders wait beyond this.
const QUEUE_DEPTH: usize = 16 * 1024;

type Answer<R> = Result<R, ProposeError>;

/// Makes one RPC of a batch through a client, with an answer per request in order.
pub type SendBatch<C, T, R> = Arc<dyn Fn(C, Vec<T>) -> BoxFuture<'static, Vec<Answer<R>>> + Send + Sync>;

struct Queued<C, T, R> {
    client: C,
    request: T,
    reply: oneshot::Sender<Answer<R>>,
}

/// Forwards requests of type `T` through clients of type `C` (the leader's
/// peer client, as this member last saw it), each answered with an `R`.
pub struct Forwarder<C, T, R> {
    queue: mpsc::Sender<Queued<C, T, R>>,
    in_flight: Arc<Semaphore>,
    send: SendBatch<C, T, R>,
    counts: &'static ForwardCounts,
}

impl<C: Send + 'static, T: Send + 'static, R: Send + 'static> Forwarder<C, T, R> {
    /// `size` is a request's size in bytes, which bounds a batch.
    pub fn start(send: SendBatch<C, T, R>, size: fn(&T) -> usize, counts: &'static ForwardCounts) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let batches = Batches::new(receiver, in_flight.clone(), Some(SLOT_WAIT), move |queued: &Queued<C, T, R>| {
            size(&queued.request)
        });
        tokio::spawn(batch_loop(batches, send.clone(), counts));
        Self { queue, in_flight, send, counts }
    }

    pub async fn forward(&self, client: C, request: T) -> Answer<R> {
        let stopped = || ProposeError::Failed(EtcdError::Stopped);
        if self.queue.capacity() == QUEUE_DEPTH {
            if let Ok(permit) = self.in_flight.clone().try_acquire_owned() {
                let answers = send_batch(&self.send, self.counts, client, vec![request], permit).await;
                return answers.into_iter().next().ok_or_else(stopped)?;
            }
        }
        let (reply, answer) = oneshot::channel();
        self.queue.send(Queued { client, request, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One RPC; `permit` is held until it is answered.
async fn send_batch<C, T, R>(
    send: &SendBatch<C, T, R>,
    counts: &ForwardCounts,
    client: C,
    requests: Vec<T>,
    permit: OwnedSemaphorePermit,
) -> Vec<Answer<R>> {
    counts.batches.fetch_add(1, Ordering::Relaxed);
    counts.requests.fetch_add(requests.len() as u64, Ordering::Relaxed);
    let count = requests.len();
    let mut answers = send(client, requests).await;
    drop(permit);
    if answers.len() != count {
        let err = EtcdError::Internal(format!("{} answers to {count} forwarded requests", answers.len()));
        answers = (0..count).map(|_| Err(ProposeError::Failed(err.clone()))).collect();
    }
    answers
}

async fn batch_loop<C, T, R, S>(
    mut batches: Batches<Queued<C, T, R>, S>,
    send: SendBatch<C, T, R>,
    counts: &'static ForwardCounts,
) where
    C: Send + 'static,
    T: Send + 'static,
    R: Send + 'static,
    S: Fn(&Queued<C, T, R>) -> usize,
{
    while let Some((batch, permit)) = batches.next().await {
        let mut client = None;
        let mut requests = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for queued in batch {
            // The latest routing wins: a member that does not lead answers
            // "not leader" without acting, and those requests are routed again.
            client = Some(queued.client);
            requests.push(queued.request);
            replies.push(queued.reply);
        }
        let Some(client) = client else { continue };
        let send = send.clone();
        tokio::spawn(async move {
            let answers = send_batch(&send, counts, client, requests, permit).await;
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Each batch the fake leader saw, as (client, requests).
    type Seen = Arc<Mutex<Vec<(u32, Vec<u32>)>>>;

    /// A fake leader: records each batch as (client, requests) and answers
    /// each request with itself doubled once `gate` lets it through.
    fn leader(batches: Seen, gate: Arc<Semaphore>) -> SendBatch<u32, u32, u32> {
        Arc::new(move |client, requests: Vec<u32>| {
            let (batches, gate) = (batches.clone(), gate.clone());
            Box::pin(async move {
                batches.lock().expect("lock").push((client, requests.clone()));
                gate.acquire().await.expect("gate").forget();
                requests.into_iter().map(|request| Ok(request * 2)).collect()
            })
        })
    }

    /// Yields until `done`, for at most 5 s.
    async fn until(done: impl Fn() -> bool) {
        let wait = async {
            while !done() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("bounded wait");
    }

    #[tokio::test]
    async fn requests_queued_while_the_flight_is_full_go_in_one_batch() {
        static COUNTS: ForwardCounts = ForwardCounts::new();
        const QUEUED: u32 = 20;
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let forwarder = Arc::new(Forwarder::start(leader(batches.clone(), gate.clone()), |_| 1, &COUNTS));
        let total = MAX_IN_FLIGHT as u32 + QUEUED;
        let tasks: Vec<_> = (0..total)
            .map(|request| {
                let forwarder = forwarder.clone();
                tokio::spawn(async move { (request, forwarder.forward(request % 3, request).await) })
            })
            .collect();
        // The first MAX_IN_FLIGHT go alone and are held; the batching task
        // holds one more, waiting for a slot, and the rest queue behind it.
        until(|| batches.lock().expect("lock").len() == MAX_IN_FLIGHT).await;
        until(|| forwarder.queue.capacity() == QUEUE_DEPTH - QUEUED as usize + 1).await;
        gate.add_permits(total as usize);
        for task in tasks {
            let (request, answer) = task.await.expect("task");
            assert_eq!(answer, Ok(request * 2));
        }
        let batches = batches.lock().expect("lock").clone();
        assert_eq!(batches.len(), MAX_IN_FLIGHT + 1, "{batches:?}");
        assert!(batches[..MAX_IN_FLIGHT].iter().all(|(_, requests)| requests.len() == 1), "{batches:?}");
        let (client, last) = &batches[MAX_IN_FLIGHT];
        assert_eq!(last.len(), QUEUED as usize);
        // A batch goes through the client its newest request was routed to.
        assert_eq!(*client, last.last().expect("a request") % 3);
        assert_eq!(COUNTS.requests.load(Ordering::Relaxed), u64::from(total));
        assert_eq!(COUNTS.batches.load(Ordering::Relaxed), MAX_IN_FLIGHT as u64 + 1);
    }

    #[tokio::test]
    async fn a_batch_goes_beyond_the_bound_when_every_slot_is_held_too_long() {
        static COUNTS: ForwardCounts = ForwardCounts::new();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let forwarder = Arc::new(Forwarder::start(leader(batches.clone(), gate.clone()), |_| 1, &COUNTS));
        let total = MAX_IN_FLIGHT as u32 + 3;
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..total)
            .map(|request| {
                let forwarder = forwarder.clone();
                tokio::spawn(async move { forwarder.forward(0, request).await })
            })
            .collect();
        // No held call is answered, and still the queued requests are sent.
        until(|| batches.lock().expect("lock").len() == MAX_IN_FLIGHT + 1).await;
        assert!(started.elapsed() >= SLOT_WAIT);
        assert_eq!(batches.lock().expect("lock")[MAX_IN_FLIGHT].1.len(), 3);
        gate.add_permits(total as usize);
        for task in tasks {
            assert!(task.await.expect("task").is_ok());
        }
    }

    #[tokio::test]
    async fn a_batch_answered_short_fails_every_request_in_it() {
        static COUNTS: ForwardCounts = ForwardCounts::new();
        let send: SendBatch<(), u32, u32> = Arc::new(|(), _requests| Box::pin(async { vec![Ok(1)] }));
        let forwarder = Forwarder::start(send, |_| 1, &COUNTS);
        let permit = forwarder.in_flight.clone().try_acquire_owned().expect("a free slot");
        let answers = send_batch(&forwarder.send, &COUNTS, (), vec![1, 2], permit).await;
        assert_eq!(answers.len(), 2);
        assert!(answers.iter().all(|answer| matches!(answer, Err(ProposeError::Failed(EtcdError::Internal(_))))));
    }
}
