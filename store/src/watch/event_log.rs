//! A bounded in-memory log of the most recent events, and a signal of the
//! latest applied revision.

use std::collections::VecDeque;

use cairn_proto::mvccpb::Event;
use parking_lot::Mutex;
use tokio::sync::watch;

/// Events kept in memory; older ones are read back from storage. Sized for
/// watchers that lag by a few batches; each event holds its previous value too.
pub const DEFAULT_CAPACITY: usize = 4096;

pub struct EventLog {
    ring: Mutex<Ring>,
    revision: watch::Sender<i64>,
}

struct Ring {
    events: VecDeque<Event>,
    /// Every event with a revision at or above this is in `events`.
    first_complete_rev: i64,
    capacity: usize,
}

pub fn event_revision(event: &Event) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

impl EventLog {
    /// An empty log for a store at `current_rev`.
    pub fn new(current_rev: i64, capacity: usize) -> Self {
        let ring = Ring { events: VecDeque::new(), first_complete_rev: current_rev + 1, capacity };
        Self { ring: Mutex::new(ring), revision: watch::channel(current_rev).0 }
    }

    /// Records the events of applied revisions, up to `current_rev`.
    pub fn append(&self, events: Vec<Event>, current_rev: i64) {
        {
            let mut ring = self.ring.lock();
            ring.events.extend(events);
            while ring.events.len() > ring.capacity {
                // Evict whole revisions, so a revision is either all here or all in storage.
                let Some(oldest) = ring.events.front().map(event_revision) else { break };
                while ring.events.front().is_some_and(|event| event_revision(event) == oldest) {
                    ring.events.pop_front();
                }
                ring.first_complete_rev = oldest + 1;
            }
            if ring.events.is_empty() {
                ring.first_complete_rev = current_rev + 1;
            }
        }
        self.revision.send_if_modified(|revision| {
            let changed = *revision != current_rev;
            *revision = current_rev;
            changed
        });
    }

    /// The most events kept.
    pub fn capacity(&self) -> usize {
        self.ring.lock().capacity
    }

    /// Forgets every event: the state was replaced (a snapshot install), or a
    /// batch had a revision too large to keep.
    pub fn reset(&self, current_rev: i64) {
        {
            let mut ring = self.ring.lock();
            ring.events.clear();
            ring.first_complete_rev = current_rev + 1;
        }
        self.revision.send_replace(current_rev);
    }

    /// Events with revisions in `[from, to]`, or `None` if some are no longer in memory.
    pub fn read(&self, from: i64, to: i64) -> Option<Vec<Event>> {
        let ring = self.ring.lock();
        if from < ring.first_complete_rev {
            return None;
        }
        let start = ring.events.partition_point(|event| event_revision(event) < from);
        Some(ring.events.iter().skip(start).take_while(|event| event_revision(event) <= to).cloned().collect())
    }

    pub fn current_revision(&self) -> i64 {
        *self.revision.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use cairn_proto::mvccpb::KeyValue;

    use super::*;

    fn event(rev: i64) -> Event {
        Event {
            kv: Some(KeyValue { key: b"k".to_vec(), mod_revision: rev, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn evicts_whole_revisions_and_reports_what_it_lost() {
        let log = EventLog::new(1, 3);
        log.append(vec![event(2), event(2)], 2);
        log.append(vec![event(3)], 3);
        assert_eq!(log.read(2, 3).map(|events| events.len()), Some(3));
        log.append(vec![event(4)], 4);
        assert_eq!(log.read(2, 4), None, "revision 2 was evicted");
        assert_eq!(log.read(3, 4).map(|events| events.len()), Some(2));
        assert_eq!(log.read(5, 9).map(|events| events.len()), Some(0));
        assert_eq!(log.current_revision(), 4);
    }
}
