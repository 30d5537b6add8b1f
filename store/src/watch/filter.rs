//! Which events a watcher gets, and how they are cut into responses.

use cairn_proto::etcdserverpb::watch_create_request::FilterType;
use cairn_proto::etcdserverpb::WatchCreateRequest;
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

/// Cuts events into responses of at most `max_bytes` when fragmenting is on.
/// Without fragmenting everything goes in one response, as etcd does.
/// Returns `(events, fragment)` pairs: `fragment` is true on all but the last.
pub fn split_responses(events: Vec<Event>, max_bytes: usize, fragment: bool) -> Vec<(Vec<Event>, bool)> {
    if !fragment {
        return vec![(events, false)];
    }
    let mut responses = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for event in events {
        let len = event.encoded_len();
        if !current.is_empty() && size + len > max_bytes {
            responses.push((std::mem::take(&mut current), true));
            size = 0;
        }
        size += len;
        current.push(event);
    }
    responses.push((current, false));
    responses
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
        assert_eq!(split_responses(events.clone(), 250, false).len(), 1);
        let parts = split_responses(events, 250, true);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|(_, fragment)| *fragment));
        assert!(!parts[parts.len() - 1].1);
        assert_eq!(parts.iter().map(|(events, _)| events.len()).sum::<usize>(), 10);
    }
}
