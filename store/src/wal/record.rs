//! The WAL's bytes and what replaying them means, without files: the framing
//! of one record, and the index of live entries that a sequence of records
//! leaves behind.
//!
//! A record is `[length: u32 LE][crc32c: u32 LE][body]`, the CRC over the body.
//! A body is a kind byte and an index (u64 LE), then the entry's bytes for an
//! entry. A length of zero is where the written part of a segment ends: the
//! rest of a segment is preallocated zeros.

use std::collections::VecDeque;

use super::WalError;

/// The length and CRC before each body.
pub const HEADER_BYTES: usize = 8;
const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
/// A body's kind byte and index.
const BODY_PREFIX_BYTES: usize = 9;
/// Where an entry's bytes start in its record.
pub const ENTRY_PAYLOAD_OFFSET: usize = HEADER_BYTES + BODY_PREFIX_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// The entry of `index`. It replaces any entry at `index` or after it.
    Entry { index: u64, payload: &'a [u8] },
    /// Drops every entry at `from` or after it.
    Truncate { from: u64 },
}

impl Record<'_> {
    pub fn encoded_len(&self) -> usize {
        let payload = match self {
            Record::Entry { payload, .. } => payload.len(),
            Record::Truncate { .. } => 0,
        };
        HEADER_BYTES + BODY_PREFIX_BYTES + payload
    }

    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WalError> {
        let (kind, index, payload) = match *self {
            Record::Entry { index, payload } => (KIND_ENTRY, index, payload),
            Record::Truncate { from } => (KIND_TRUNCATE, from, &[][..]),
        };
        let body_len = BODY_PREFIX_BYTES + payload.len();
        let length = u32::try_from(body_len).map_err(|_| WalError::TooLarge { bytes: body_len })?;
        let mut crc = crc32c::crc32c(&[kind]);
        crc = crc32c::crc32c_append(crc, &index.to_le_bytes());
        crc = crc32c::crc32c_append(crc, payload);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }
}

/// What the bytes at a record's offset hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, intact record, and how many bytes it takes.
    Record(Record<'a>, usize),
    /// Nothing was written here.
    End,
    /// A record that is cut off or does not match its CRC: a write torn by a
    /// crash at the end of the log, damage anywhere else.
    Invalid(String),
}

pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    let Some((header, rest)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
        return Decoded::End;
    };
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length == 0 {
        return Decoded::End;
    }
    let Some(body) = rest.get(..length) else {
        return Decoded::Invalid(format!("a record of {length} bytes runs past the segment's end"));
    };
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if crc32c::crc32c(body) != crc {
        return Decoded::Invalid("CRC mismatch".to_string());
    }
    let Some((&kind, after_kind)) = body.split_first() else {
        return Decoded::Invalid("an empty body".to_string());
    };
    let Some((index, payload)) = after_kind.split_first_chunk::<8>() else {
        return Decoded::Invalid(format!("a body of {length} bytes is too short"));
    };
    let index = u64::from_le_bytes(*index);
    let record = match kind {
        KIND_ENTRY => Record::Entry { index, payload },
        KIND_TRUNCATE if payload.is_empty() => Record::Truncate { from: index },
        other => return Decoded::Invalid(format!("unknown record kind {other} of {length} bytes")),
    };
    Decoded::Record(record, HEADER_BYTES + length)
}

/// The unit a disk writes whole, or not at all.
pub const SECTOR_BYTES: usize = 512;

/// The bytes the record at the start of `bytes` claims, header included, by
/// its length field (all of `bytes` if even that is cut off).
pub fn claimed_bytes(bytes: &[u8]) -> usize {
    match bytes.first_chunk::<4>() {
        Some(length) => HEADER_BYTES.saturating_add(u32::from_le_bytes(*length) as usize),
        None => bytes.len(),
    }
}

/// Whether the invalid record at `offset` of a segment's `bytes` is a write
/// that a crash cut short, as etcd's `isTornEntry` tells: some sector of it
/// holds only zeros (the preallocated bytes it never reached). A record whose
/// every sector was written but does not match its CRC is damage.
pub fn is_torn(bytes: &[u8], offset: usize) -> bool {
    let Some(record) = bytes.get(offset..) else { return false };
    let end = offset.saturating_add(claimed_bytes(record)).min(bytes.len());
    let mut start = offset;
    while start < end {
        let sector_end = ((start / SECTOR_BYTES) + 1) * SECTOR_BYTES;
        let chunk = &bytes[start..sector_end.min(end)];
        if chunk.iter().all(|&byte| byte == 0) {
            return true;
        }
        start = sector_end;
    }
    false
}

/// Where one entry's record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// The live entries, `first..first + len`, and where each one lies.
#[derive(Debug, Default)]
pub struct LogIndex {
    /// The index after the purged one: entries before it are gone.
    floor: u64,
    first: u64,
    locations: VecDeque<Location>,
    /// Whether an empty log may take its first entry at any index after the
    /// floor (openraft's contract), or only at the floor (a replay: anything
    /// else means a lost segment).
    any_start: bool,
}

impl LogIndex {
    /// An empty log after `purged`.
    pub fn new(purged: Option<u64>) -> Self {
        let floor = purged.map_or(0, |index| index.saturating_add(1));
        Self { floor, first: floor, locations: VecDeque::new(), any_start: false }
    }

    /// Ends the replay: from now on an empty log may start anywhere after the floor.
    pub fn allow_any_start(&mut self) {
        self.any_start = true;
    }

    pub fn last(&self) -> Option<u64> {
        let len = self.locations.len() as u64;
        (len > 0).then(|| self.first.saturating_add(len - 1))
    }

    fn next(&self) -> u64 {
        self.first.saturating_add(self.locations.len() as u64)
    }

    pub fn get(&self, index: u64) -> Option<Location> {
        let offset = usize::try_from(index.checked_sub(self.first)?).ok()?;
        self.locations.get(offset).copied()
    }

    /// The locations of the live entries in `from..to`, in order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, Location)> + '_ {
        let from = from.max(self.first);
        let to = to.min(self.next());
        (from..to).filter_map(|index| Some((index, self.get(index)?)))
    }

    /// Applies one record. An entry at or before the last one replaces the
    /// tail from its index; one before the floor is no longer needed; one
    /// beyond the next index is a hole, which only damage makes (see
    /// `any_start` for an empty log).
    pub fn apply(&mut self, record: &Record, location: Location) -> Result<(), WalError> {
        let (first, len) = self.span_after((self.first, self.locations.len() as u64), record)?;
        match *record {
            Record::Entry { index, .. } if index < self.floor => {}
            Record::Entry { .. } => {
                if first != self.first {
                    self.locations.clear();
                    self.first = first;
                }
                self.locations.truncate((len - 1) as usize);
                self.locations.push_back(location);
            }
            Record::Truncate { .. } => self.locations.truncate(len as usize),
        }
        Ok(())
    }

    /// Whether `records`, in order, can follow the log as it is.
    pub fn check_all(&self, records: &[Record]) -> Result<(), WalError> {
        let span = (self.first, self.locations.len() as u64);
        records.iter().try_fold(span, |span, record| self.span_after(span, record)).map(|_| ())
    }

    /// The live entries `(first, len)` after `record` follows those of `span`.
    fn span_after(&self, (first, len): (u64, u64), record: &Record) -> Result<(u64, u64), WalError> {
        match *record {
            Record::Entry { index, .. } if index < self.floor => Ok((first, len)),
            Record::Entry { index, .. } => {
                let expected = if len == 0 { self.floor } else { first.saturating_add(len) };
                if index > expected && !(len == 0 && self.any_start) {
                    return Err(WalError::Corrupt {
                        what: format!("entry {index}"),
                        detail: format!("follows entry {} with a hole", expected.saturating_sub(1)),
                    });
                }
                if len == 0 || index < first {
                    return Ok((index, 1));
                }
                Ok((first, index - first + 1))
            }
            Record::Truncate { from } => Ok((first, from.saturating_sub(first).min(len))),
        }
    }

    /// Forgets every entry up to and including `upto`.
    pub fn purge(&mut self, upto: u64) {
        self.floor = self.floor.max(upto.saturating_add(1));
        if self.floor <= self.first {
            return;
        }
        let drop = (self.floor - self.first).min(self.locations.len() as u64);
        self.locations.drain(..drop as usize);
        self.first = self.floor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(record: Record) -> Vec<u8> {
        let mut bytes = Vec::new();
        record.encode(&mut bytes).expect("encode");
        assert_eq!(bytes.len(), record.encoded_len());
        bytes
    }

    #[test]
    fn records_decode_to_what_was_encoded_and_zeros_end_the_log() {
        let entry = Record::Entry { index: 7, payload: b"hello" };
        let truncate = Record::Truncate { from: 3 };
        let mut bytes = encoded(entry);
        bytes.extend(encoded(truncate));
        bytes.extend([0; 32]);
        let Decoded::Record(first, used) = decode(&bytes) else { panic!("an entry") };
        assert_eq!((first, used), (entry, entry.encoded_len()));
        assert_eq!(decode(&bytes[used..]), Decoded::Record(truncate, truncate.encoded_len()));
        assert_eq!(decode(&bytes[used + truncate.encoded_len()..]), Decoded::End);
        assert_eq!(decode(&bytes[..4]), Decoded::End, "too short for a header");
    }

    #[test]
    fn a_torn_or_flipped_record_is_invalid() {
        let bytes = encoded(Record::Entry { index: 1, payload: &[5; 100] });
        assert!(matches!(decode(&bytes[..60]), Decoded::Invalid(detail) if detail.contains("runs past")));
        for at in [4, 8, 20, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(matches!(decode(&flipped), Decoded::Invalid(_)), "a flip at byte {at}");
        }
    }

    #[test]
    fn a_record_with_a_sector_never_written_is_torn_and_one_fully_written_is_damage() {
        let mut segment = vec![0u8; 4 * SECTOR_BYTES];
        let mut record = Vec::new();
        Record::Entry { index: 1, payload: &[7; 1000] }.encode(&mut record).expect("encode");
        let offset = 100;
        segment[offset..offset + record.len()].copy_from_slice(&record);
        assert!(matches!(decode(&segment[offset..]), Decoded::Record(..)));
        let mut torn = segment.clone();
        torn[SECTOR_BYTES..2 * SECTOR_BYTES].fill(0);
        assert!(matches!(decode(&torn[offset..]), Decoded::Invalid(_)));
        assert!(is_torn(&torn, offset), "its second sector never reached the disk");
        let mut flipped = segment.clone();
        flipped[offset + 50] ^= 1;
        assert!(matches!(decode(&flipped[offset..]), Decoded::Invalid(_)));
        assert!(!is_torn(&flipped, offset), "every sector was written");
    }

    fn at(offset: u64) -> Location {
        Location { segment: 0, offset, len: 1 }
    }

    fn entry(index: u64) -> Record<'static> {
        Record::Entry { index, payload: b"" }
    }

    fn live(log: &LogIndex) -> Vec<(u64, u64)> {
        log.range(0, u64::MAX).map(|(index, location)| (index, location.offset)).collect()
    }

    #[test]
    fn a_later_entry_or_truncation_replaces_the_tail() {
        let mut log = LogIndex::new(None);
        for index in 0..5 {
            log.apply(&entry(index), at(index * 10)).expect("append");
        }
        log.apply(&entry(3), at(100)).expect("a conflicting entry");
        assert_eq!(live(&log), [(0, 0), (1, 10), (2, 20), (3, 100)]);
        log.apply(&Record::Truncate { from: 2 }, at(0)).expect("truncate");
        assert_eq!(log.last(), Some(1));
        log.apply(&Record::Truncate { from: 0 }, at(0)).expect("truncate all");
        assert_eq!(log.last(), None);
        log.apply(&entry(0), at(0)).expect("append");
        let hole = log.apply(&entry(2), at(0));
        assert!(matches!(hole, Err(WalError::Corrupt { .. })), "{hole:?}");
    }

    #[test]
    fn purged_entries_are_skipped_and_the_log_may_restart_past_them() {
        let mut log = LogIndex::new(Some(4));
        log.apply(&entry(3), at(0)).expect("purged: skipped");
        assert_eq!(log.last(), None);
        for index in 5..9 {
            log.apply(&entry(index), at(index)).expect("append");
        }
        log.purge(6);
        assert_eq!(live(&log), [(7, 7), (8, 8)]);
        assert_eq!(log.range(0, 8).count(), 1, "the end is exclusive");
        log.purge(20);
        assert_eq!(log.last(), None);
        log.apply(&entry(21), at(21)).expect("the entry after a snapshot");
        assert_eq!(live(&log), [(21, 21)]);
        assert_eq!(log.get(20), None);
        log.apply(&entry(22), at(22)).expect("append");
        log.apply(&entry(21), at(121)).expect("a conflicting entry");
        log.apply(&Record::Truncate { from: 21 }, at(0)).expect("truncate all");
        assert!(log.apply(&entry(30), at(30)).is_err(), "in a replay, an empty log starts at the floor");
        assert!(log.check_all(&[entry(21), entry(23)]).is_err(), "a hole in a batch");
        log.check_all(&[entry(21), entry(22), Record::Truncate { from: 22 }, entry(22)]).expect("no hole");
        log.allow_any_start();
        log.apply(&entry(30), at(30)).expect("an empty log starts anywhere after the purged index");
        log.apply(&Record::Truncate { from: 25 }, at(0)).expect("truncate all");
        log.apply(&entry(23), at(23)).expect("an entry before the first, after the purged index");
        log.apply(&entry(20), at(20)).expect("purged: skipped");
        assert_eq!(live(&log), [(23, 23)]);
    }
}
