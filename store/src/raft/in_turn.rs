//! One AppendEntries at a time on a replication stream, each made only once
//! openraft has taken in the answer to the last.
//!
//! openraft (0.10.0-alpha.37, `InflightAppendQueue::drain_acked`) notes a send
//! time for each request it makes, and credits an answer with the send time of
//! every request made so far whose last log id the answer covers, answered or
//! not. Those times count as acknowledgements of its leadership for ReadIndex.
//! With requests sent ahead of their answers, a leader cut off by a stalled
//! link took in, once the link healed, the held answers to requests sent before
//! the cut after it had made entry-less requests (to carry a new commit index):
//! the old answers counted as fresh, and it served a stale linearizable read
//! (chaos run 24). In turn, an answer is only ever credited with its own
//! request's send time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::Semaphore;
use tonic::Status;

/// Whose turn it is on one stream: openraft's, to make the next request, or
/// the peer's, to answer the last.
pub struct Turns {
    /// One permit: taken before a request is made, given back once its
    /// answer has been taken in.
    make: Semaphore,
    /// A request was made and its answer has not come.
    owed: AtomicBool,
}

impl Default for Turns {
    fn default() -> Self {
        Turns { make: Semaphore::new(1), owed: AtomicBool::new(false) }
    }
}

/// What waiting for the next answer came to.
#[derive(Debug)]
pub enum Heard<T> {
    Answer(T),
    Failed(Status),
    /// An answer was owed and did not come in time.
    Silent,
}

/// The requests of `input`, each taken from it (made, in openraft's terms)
/// only in its turn. An input known to hold no more ends the stream at once,
/// without waiting for the turn: the peer then ends its answers after the one
/// it owes. (Heartbeats, one request each, go on pooled streams instead.)
pub fn requests_in_turn<S>(input: S, turns: Arc<Turns>) -> impl Stream<Item = S::Item>
where
    S: Stream + Unpin,
{
    futures::stream::unfold((input, turns), |(mut input, turns)| async move {
        if input.size_hint().1 == Some(0) {
            return None;
        }
        // Closed: openraft has dropped the answers, and no turn will come.
        let Ok(permit) = turns.make.acquire().await else { return None };
        permit.forget();
        let request = input.next().await?;
        turns.owed.store(true, Ordering::Release);
        Some((request, (input, turns)))
    })
}

/// The answers' hold on the turns. Once the answers are dropped (openraft is
/// done with the stream) or have ended, no turn will come: the requests end,
/// rather than wait forever and hold the gRPC stream open on both members.
struct AnswerSide(Arc<Turns>);

impl Drop for AnswerSide {
    fn drop(&mut self) {
        self.0.make.close();
    }
}

/// The answers of `answers`, in order. Asking for the one after an answer
/// means the last was taken in, so the next request may be made. An owed
/// answer not heard within `patience` ends the wait with `Heard::Silent`; an
/// idle stream waits as long as it must.
pub fn answers_in_turn<T, A>(answers: A, turns: Arc<Turns>, patience: Duration) -> impl Stream<Item = Heard<T>>
where
    A: Stream<Item = Result<T, Status>> + Unpin,
{
    let side = AnswerSide(turns);
    futures::stream::unfold((answers, side, false), move |(mut answers, side, answered)| async move {
        let turns = &side.0;
        if answered {
            turns.make.add_permits(1);
        }
        loop {
            match tokio::time::timeout(patience, answers.next()).await {
                Ok(Some(Ok(answer))) => {
                    turns.owed.store(false, Ordering::Release);
                    return Some((Heard::Answer(answer), (answers, side, true)));
                }
                Ok(Some(Err(status))) => return Some((Heard::Failed(status), (answers, side, false))),
                Ok(None) => return None,
                Err(_) if turns.owed.load(Ordering::Acquire) => return Some((Heard::Silent, (answers, side, false))),
                // Nothing owed: the stream is idle, not stuck.
                Err(_) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::FutureExt;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::*;

    /// Requests 1, 2, 3, counting how many were made.
    fn counted_requests(made: Arc<AtomicUsize>) -> impl Stream<Item = u32> + Unpin {
        futures::stream::iter(1..=3).inspect(move |_| {
            made.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[tokio::test]
    async fn the_next_request_is_made_only_after_the_answer_to_the_last_was_taken_in() {
        let made = Arc::new(AtomicUsize::new(0));
        let turns = Arc::new(Turns::default());
        let mut requests = Box::pin(requests_in_turn(counted_requests(made.clone()), turns.clone()));
        let (peer, answers) = mpsc::unbounded_channel::<Result<&str, Status>>();
        let mut answers =
            Box::pin(answers_in_turn(UnboundedReceiverStream::new(answers), turns, Duration::from_secs(60)));

        assert_eq!(requests.next().await, Some(1));
        assert!(requests.next().now_or_never().is_none(), "no second request before the first is answered");
        assert_eq!(made.load(Ordering::SeqCst), 1);

        peer.send(Ok("answer 1")).expect("send");
        assert!(matches!(answers.next().await, Some(Heard::Answer("answer 1"))));
        // Handed to openraft, which has not asked for the next yet: it may
        // still be taking this one in.
        assert!(requests.next().now_or_never().is_none(), "no request while the answer is being taken in");
        assert_eq!(made.load(Ordering::SeqCst), 1);

        // openraft asks for the next answer: the last one is taken in.
        assert!(answers.next().now_or_never().is_none());
        assert_eq!(requests.next().await, Some(2));
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_requests_end_once_the_answers_are_dropped() {
        let turns = Arc::new(Turns::default());
        let (openraft, input) = mpsc::unbounded_channel::<u32>();
        for request in [1, 2] {
            openraft.send(request).expect("send");
        }
        let mut requests = Box::pin(requests_in_turn(UnboundedReceiverStream::new(input), turns.clone()));
        let (_peer, answers) = mpsc::unbounded_channel::<Result<(), Status>>();
        let answers = answers_in_turn(UnboundedReceiverStream::new(answers), turns, Duration::from_secs(60));
        assert_eq!(requests.next().await, Some(1));

        // openraft gives the stream up (a conflict, a higher vote, a silence)
        // while it still holds its input open.
        drop(answers);
        let ended = tokio::time::timeout(Duration::from_secs(5), requests.next()).await;
        assert_eq!(ended.expect("the requests end rather than wait for a turn"), None);
    }

    #[tokio::test]
    async fn a_single_request_ends_its_stream_without_waiting_for_its_answer() {
        let turns = Arc::new(Turns::default());
        let mut requests = Box::pin(requests_in_turn(Box::pin(futures::stream::once(async { 7 })), turns));
        assert_eq!(requests.next().await, Some(7));
        assert_eq!(requests.next().now_or_never(), Some(None), "ended, not waiting for the turn");
    }

    #[tokio::test]
    async fn an_owed_answer_that_does_not_come_fails_the_stream_but_an_idle_stream_waits() {
        let turns = Arc::new(Turns::default());
        let patience = Duration::from_millis(20);
        let (_peer, answers) = mpsc::unbounded_channel::<Result<(), Status>>();
        let mut answers = Box::pin(answers_in_turn(UnboundedReceiverStream::new(answers), turns.clone(), patience));
        let idle = tokio::time::timeout(patience * 5, answers.next()).await;
        assert!(idle.is_err(), "nothing was asked: the wait goes on");

        let mut requests = Box::pin(requests_in_turn(futures::stream::iter([1]), turns));
        assert_eq!(requests.next().await, Some(1));
        let silent = tokio::time::timeout(Duration::from_secs(5), answers.next()).await;
        assert!(matches!(silent.expect("bounded wait"), Some(Heard::Silent)));
    }
}
