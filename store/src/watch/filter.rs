//! Which events a watcher gets, and how they are cut into responses.

use cairn_proto::etcdserverpb::watch_create_request::FilterType;
use cairn_proto::etcdserverpb::{WatchCreateRequest, WatchResponse};
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::Event;
use prost::Message;

use crate::mvcc::KeyRange;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFilter {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

impl WatchFilter {
    pub fn new(req: &WatchCreateRequest) -> Self {
        Self {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: req.prev_kv,
        }
    }

    pub fn wants(&self, event: &Event) -> bool {
        let is_put = event.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return false;
        }
        let key = event.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
        KeyRange::new(&self.key, &self.range_end).contains(key)
    }

    /// The events this watcher sees, with `prev_kv` only if it asked.
    pub fn select<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> Vec<Event> {
        events
            .into_iter()
            .filter(|event| self.wants(event))
            .map(|event| {
                let mut event = event.clone();
                if !self.prev_kv {
                    event.prev_kv = None;
                }
                event
            })
            .collect()
    }
}

/// Cuts a response into fragments of at most `max_bytes` when the watcher
/// asked for fragments, exactly as etcd's `sendFragments` does: a response
/// under the limit or with one event goes whole, and every fragment but the
/// last carries `fragment = true`.
pub fn fragment(response: WatchResponse, max_bytes: usize, enabled: bool) -> Vec<WatchResponse> {
    if !enabled || response.encoded_len() < max_bytes || response.events.len() < 2 {
        return vec![response];
    }
    let mut events = response.events.into_iter().peekable();
    let empty = WatchResponse { events: Vec::new(), fragment: true, ..response };
    let mut fragments = Vec::new();
    while events.peek().is_some() {
        let mut current = empty.clone();
        while let Some(event) = events.peek() {
            current.events.push(event.clone());
            if current.events.len() > 1 && current.encoded_len() >= max_bytes {
                current.events.pop();
                break;
            }
            events.next();
        }
        current.fragment = events.peek().is_some();
        fragments.push(current);
    }
    fragments
}

#[cfg(test)]
mod tests {
    use cairn_proto::mvccpb::KeyValue;

    use super::*;

    fn event(key: &str, kind: EventType) -> Event {
        Event {
            r#type: kind as i32,
            kv: Some(KeyValue { key: key.into(), value: vec![0; 100], mod_revision: 2, ..Default::default() }),
            prev_kv: Some(KeyValue::default()),
        }
    }

    #[test]
    fn filters_by_range_type_and_prev_kv() {
        let req = WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            filters: vec![FilterType::Nodelete as i32],
            ..Default::default()
        };
        let filter = WatchFilter::new(&req);
        let events = [event("a", EventType::Put), event("b", EventType::Delete), event("c", EventType::Put)];
        let selected = filter.select(&events);
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].prev_kv, None);
    }

    #[test]
    fn fragments_only_when_asked() {
        let events: Vec<Event> = (0..10).map(|_| event("a", EventType::Put)).collect();
        let response = WatchResponse { watch_id: 3, events, ..Default::default() };
        assert_eq!(fragment(response.clone(), 250, false).len(), 1);
        let parts = fragment(response, 250, true);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|part| part.fragment && part.watch_id == 3));
        assert!(!parts[parts.len() - 1].fragment);
        assert!(parts.iter().all(|part| part.encoded_len() < 250 || part.events.len() == 1));
        assert_eq!(parts.iter().map(|part| part.events.len()).sum::<usize>(), 10);
    }
}
