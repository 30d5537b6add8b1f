//! The Raft log in files of its own, as etcd's WAL: segments preallocated at
//! their full size, so that an fdatasync after an append flushes the data
//! alone. A file that grows with each append (as RocksDB's WAL does) also
//! commits its new size to the filesystem's journal at every fdatasync
//! (measured: docs/benchmarks.md, "What is left of the single-client gap").
//!
//! The files are append-only. A conflicting entry or a truncation is a new
//! record that replaces the tail when the log is replayed ([`record::LogIndex`]);
//! purging deletes whole segments once no live entry is left in them. The
//! vote and the purged index are not here: they live in the engine.

pub mod record;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub use record::Record;
use record::{Decoded, Location, LogIndex};

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("raft log {op} {path}: {source}")]
    Io { op: &'static str, path: String, source: std::io::Error },
    /// Bytes on disk that do not replay: the member must not go on with them.
    #[error("corrupt raft log {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("a raft log record of {bytes} bytes is too large")]
    TooLarge { bytes: usize },
    /// After a failed write or fsync, what the disk holds is unknown (and
    /// Linux reports a failed writeback to one fsync only): nothing more is
    /// written or acknowledged.
    #[error("the raft log has stopped after an earlier write or fsync failed")]
    Stopped,
}

/// etcd's segment size.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const SEGMENT_SUFFIX: &str = ".wal";

struct Segment {
    seq: u64,
    file: Arc<File>,
    capacity: u64,
    /// The highest entry index written in it: once purged, the segment may go.
    max_index: Option<u64>,
}

/// Open makes a segment if there is none, and purging keeps the last one:
/// there is always a segment to append to.
impl Inner {
    fn last(&self) -> &Segment {
        self.segments.back().expect("the WAL always has a segment")
    }

    fn last_mut(&mut self) -> &mut Segment {
        self.segments.back_mut().expect("the WAL always has a segment")
    }
}

struct Inner {
    /// Oldest first; appends go to the last one.
    segments: VecDeque<Segment>,
    /// Where the next record goes in the last segment.
    end: u64,
    index: LogIndex,
}

pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    inner: Mutex<Inner>,
    /// Held by every fsync of a segment, so that the one that meets a failed
    /// writeback marks the WAL failed before any other fsync can return.
    /// Taken after `inner` where both are held, never before it.
    syncing: Mutex<()>,
    failed: AtomicBool,
}

impl Wal {
    /// Opens the WAL in `dir` (made if missing) and replays it. Entries up to
    /// `purged` are skipped. A record torn at the end of the last segment, by a
    /// crash during its write, ends the log there; one in any other segment is damage.
    pub fn open(dir: &Path, purged: Option<u64>, segment_bytes: u64) -> Result<Self, WalError> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        if created {
            sync_dir(dir.parent().unwrap_or(dir))?;
        }
        let wal = Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            inner: Mutex::new(Inner { segments: VecDeque::new(), end: 0, index: LogIndex::new(purged) }),
            syncing: Mutex::new(()),
            failed: AtomicBool::new(false),
        };
        let seqs = wal.segment_seqs()?;
        {
            let mut inner = wal.inner.lock();
            for (position, &seq) in seqs.iter().enumerate() {
                let is_last = position + 1 == seqs.len();
                wal.replay_segment(&mut inner, seq, is_last)?;
            }
            if inner.segments.is_empty() {
                wal.cut(&mut inner, 0, 0)?;
            }
            // What a crashed process wrote is still in the page cache and was
            // just replayed: openraft takes the log it finds as flushed.
            sync_dir(dir)?;
            inner.index.allow_any_start();
            wal.delete_purged_segments(&mut inner, purged);
        }
        Ok(wal)
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016x}{SEGMENT_SUFFIX}"))
    }

    /// The sequence numbers of the segments on disk, in order, without gaps.
    fn segment_seqs(&self) -> Result<Vec<u64>, WalError> {
        let mut seqs = Vec::new();
        for dir_entry in std::fs::read_dir(&self.dir).map_err(io_error("list", &self.dir))? {
            let name = dir_entry.map_err(io_error("list", &self.dir))?.file_name();
            let Some(stem) = name.to_str().and_then(|name| name.strip_suffix(SEGMENT_SUFFIX)) else {
                continue;
            };
            let seq = u64::from_str_radix(stem, 16).map_err(|_| WalError::Corrupt {
                what: "segment name".to_string(),
                detail: format!("{name:?} is not a hexadecimal sequence number"),
            })?;
            seqs.push(seq);
        }
        seqs.sort_unstable();
        if let Some(pair) = seqs.windows(2).find(|pair| pair[1] != pair[0] + 1) {
            return Err(WalError::Corrupt {
                what: "segments".to_string(),
                detail: format!("segment {:x} is followed by {:x}: some are missing", pair[0], pair[1]),
            });
        }
        Ok(seqs)
    }

    fn replay_segment(&self, inner: &mut Inner, seq: u64, is_last: bool) -> Result<(), WalError> {
        let path = self.segment_path(seq);
        let read = io_error("read", &path);
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_error("open", &path))?;
        let capacity = file.metadata().map_err(&read)?.len();
        let mut reader = SegmentReader::new(&file, capacity);
        let mut offset = 0u64;
        let mut max_index = None;
        let invalid = loop {
            let claimed = record::claimed_bytes(reader.bytes(offset, record::HEADER_BYTES).map_err(&read)?);
            match record::decode(reader.bytes(offset, claimed).map_err(&read)?) {
                Decoded::End => break None,
                Decoded::Invalid(detail) => break Some((detail, claimed)),
                Decoded::Record(record, len) => {
                    let location = Location { segment: seq, offset, len: len as u32 };
                    inner.index.apply(&record, location)?;
                    if let Record::Entry { index, .. } = record {
                        max_index = max_index.max(Some(index));
                    }
                    offset += len as u64;
                }
            }
        };
        let damage = |detail: String| WalError::Corrupt { what: format!("segment {seq:x} at byte {offset}"), detail };
        if let Some((detail, claimed)) = invalid {
            // As etcd: a record is torn, not damaged, if a whole sector of it was never written.
            let into_sector = (offset % record::SECTOR_BYTES as u64) as usize;
            let sectors =
                reader.bytes(offset - into_sector as u64, into_sector.saturating_add(claimed)).map_err(&read)?;
            if !is_last || !record::is_torn(sectors, into_sector) {
                return Err(damage(detail));
            }
            tracing::warn!(segment = %format!("{seq:x}"), offset, %detail, "the raft log ends in a torn write, from a crash: it is cut there");
        }
        // Nothing may follow the end: an old record there would be replayed
        // once a new record ends right where it starts.
        if is_last && !reader.zeros_from(offset).map_err(&read)? {
            write_zeros(&file, offset, capacity).map_err(io_error("write", &path))?;
        }
        file.sync_data().map_err(io_error("sync", &path))?;
        inner.segments.push_back(Segment { seq, file: Arc::new(file), capacity, max_index });
        inner.end = offset;
        Ok(())
    }

    /// Starts segment `seq`, of at least `min_bytes`, durably in the directory.
    fn cut(&self, inner: &mut Inner, seq: u64, min_bytes: u64) -> Result<(), WalError> {
        if let Some(previous) = inner.segments.back() {
            // A later sync reaches only the new segment: this one must be on disk first.
            self.sync_file(previous.seq, &previous.file)?;
        }
        let path = self.segment_path(seq);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create", &path))?;
        let capacity = self.segment_bytes.max(min_bytes);
        preallocate(&file, capacity).map_err(io_error("preallocate", &path))?;
        file.sync_all().map_err(io_error("sync", &path))?;
        sync_dir(&self.dir)?;
        inner.segments.push_back(Segment { seq, file: Arc::new(file), capacity, max_index: None });
        inner.end = 0;
        Ok(())
    }

    /// Writes records after the last one, cutting a new segment where one is
    /// full. They are readable at once and durable after the next [`Wal::sync`].
    pub fn write(&self, records: &[Record]) -> Result<(), WalError> {
        let mut inner = self.inner.lock();
        if self.failed.load(Ordering::Acquire) {
            return Err(WalError::Stopped);
        }
        // A hole is refused before anything reaches the disk, where it would stop the next start.
        inner.index.check_all(records)?;
        let written = self.write_records(&mut inner, records);
        if written.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        written
    }

    fn write_records(&self, inner: &mut Inner, records: &[Record]) -> Result<(), WalError> {
        let mut pending = Vec::new();
        for record in records {
            let len = record.encoded_len() as u64;
            if inner.end + pending.len() as u64 + len > inner.last().capacity {
                self.write_pending(inner, &mut pending)?;
                let seq = inner.last().seq;
                let next_seq = seq.checked_add(1).ok_or_else(|| WalError::Corrupt {
                    what: format!("segment {seq:x}"),
                    detail: "is the last sequence number there can be".to_string(),
                })?;
                self.cut(inner, next_seq, len)?;
            }
            let offset = inner.end + pending.len() as u64;
            let last = inner.last_mut();
            let location = Location { segment: last.seq, offset, len: len as u32 };
            if let Record::Entry { index, .. } = record {
                last.max_index = last.max_index.max(Some(*index));
            }
            record.encode(&mut pending)?;
            inner.index.apply(record, location)?;
        }
        self.write_pending(inner, &mut pending)
    }

    fn write_pending(&self, inner: &mut Inner, pending: &mut Vec<u8>) -> Result<(), WalError> {
        if pending.is_empty() {
            return Ok(());
        }
        let last = inner.last();
        let path = self.segment_path(last.seq);
        last.file.write_all_at(pending, inner.end).map_err(io_error("write", &path))?;
        inner.end += pending.len() as u64;
        pending.clear();
        Ok(())
    }

    /// Makes every record written before the call durable: segments before the
    /// last were synced when the next was cut.
    pub fn sync(&self) -> Result<(), WalError> {
        let (seq, file) = {
            let inner = self.inner.lock();
            let last = inner.last();
            (last.seq, last.file.clone())
        };
        self.sync_file(seq, &file)
    }

    fn sync_file(&self, seq: u64, file: &File) -> Result<(), WalError> {
        let _syncing = self.syncing.lock();
        if self.failed.load(Ordering::Acquire) {
            return Err(WalError::Stopped);
        }
        let synced = if crate::failpoint::fires("wal-sync-error") {
            Err(crate::failpoint::io_error("wal-sync-error"))
        } else {
            file.sync_data()
        };
        let synced = synced.map_err(io_error("sync", &self.segment_path(seq)));
        if synced.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        synced
    }

    /// Forgets the entries up to and including `upto`, and deletes the
    /// segments that hold none after it. The caller has made `upto` durable as
    /// the purged index first.
    pub fn purge(&self, upto: u64) {
        let mut inner = self.inner.lock();
        inner.index.purge(upto);
        self.delete_purged_segments(&mut inner, Some(upto));
    }

    fn delete_purged_segments(&self, inner: &mut Inner, purged: Option<u64>) {
        let Some(purged) = purged else { return };
        while inner.segments.len() > 1
            && inner.segments.front().is_some_and(|segment| segment.max_index <= Some(purged))
        {
            let Some(seq) = inner.segments.front().map(|segment| segment.seq) else { break };
            let path = self.segment_path(seq);
            // Oldest first, each unlink durable before the next: a segment left
            // behind is only skipped at the next start, but a gap would stop it.
            let deleted =
                std::fs::remove_file(&path).map_err(io_error("delete", &path)).and_then(|()| sync_dir(&self.dir));
            if let Err(err) = deleted {
                tracing::warn!(%err, "cannot delete a purged raft log segment");
                break;
            }
            inner.segments.pop_front();
        }
    }

    pub fn last_index(&self) -> Option<u64> {
        self.inner.lock().index.last()
    }

    /// The live entries in `from..to`, as `(index, bytes)`.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, WalError> {
        let located: Vec<(u64, Location, Arc<File>)> = {
            let inner = self.inner.lock();
            if self.failed.load(Ordering::Acquire) {
                return Err(WalError::Stopped);
            }
            let Some(first_seq) = inner.segments.front().map(|segment| segment.seq) else { return Ok(Vec::new()) };
            inner
                .index
                .range(from, to)
                .filter_map(|(index, location)| {
                    let position = location.segment.checked_sub(first_seq)?;
                    let segment = inner.segments.get(usize::try_from(position).ok()?)?;
                    Some((index, location, segment.file.clone()))
                })
                .collect()
        };
        let mut entries = Vec::with_capacity(located.len());
        for (index, location, file) in located {
            let path = self.segment_path(location.segment);
            let mut bytes = vec![0; location.len as usize];
            file.read_exact_at(&mut bytes, location.offset).map_err(io_error("read", &path))?;
            let corrupt = |detail: String| WalError::Corrupt { what: format!("entry {index}"), detail };
            match record::decode(&bytes) {
                Decoded::Record(Record::Entry { index: stored, .. }, _) if stored == index => {
                    bytes.drain(..record::ENTRY_PAYLOAD_OFFSET);
                    entries.push((index, bytes));
                }
                Decoded::Record(other, _) => return Err(corrupt(format!("its place holds {other:?}"))),
                Decoded::End => return Err(corrupt("its place is empty".to_string())),
                Decoded::Invalid(detail) => return Err(corrupt(detail)),
            }
        }
        Ok(entries)
    }
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> WalError + 'a {
    move |source| WalError::Io { op, path: path.display().to_string(), source }
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(io_error("sync", dir))
}

/// Allocates the whole file with its size set. Where the filesystem cannot
/// (no fallocate), zeros are written instead.
fn preallocate(file: &File, bytes: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, bytes) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => write_zeros(file, 0, bytes),
        Err(errno) => Err(errno.into()),
    }
}

/// How much of a segment replay reads at a time. Reading a segment whole
/// took a buffer of its preallocated 64 MiB, mostly zeros, that stayed
/// resident for seconds after the start (the allocator returns memory lazily).
const READ_WINDOW: usize = 1 << 20;

/// A segment read front to back through a window, for replay.
struct SegmentReader<'a> {
    file: &'a File,
    len: u64,
    /// Where in the file `window` starts.
    start: u64,
    window: Vec<u8>,
}

impl<'a> SegmentReader<'a> {
    fn new(file: &'a File, len: u64) -> Self {
        Self { file, len, start: 0, window: Vec::new() }
    }

    /// The segment's bytes from `offset` on: at least `want` of them, or all
    /// up to its end.
    fn bytes(&mut self, offset: u64, want: usize) -> std::io::Result<&[u8]> {
        let remaining = self.len.saturating_sub(offset);
        let wanted = remaining.min(want as u64);
        let held_end = self.start + self.window.len() as u64;
        if offset < self.start || offset + wanted > held_end {
            let len = wanted.max(READ_WINDOW as u64).min(remaining) as usize;
            self.window.clear();
            self.window.resize(len, 0);
            self.file.read_exact_at(&mut self.window, offset)?;
            self.start = offset;
        }
        Ok(&self.window[(offset - self.start) as usize..])
    }

    /// Whether every byte from `offset` to the end is zero.
    fn zeros_from(&mut self, mut offset: u64) -> std::io::Result<bool> {
        while offset < self.len {
            let bytes = self.bytes(offset, READ_WINDOW)?;
            if bytes.iter().any(|&byte| byte != 0) {
                return Ok(false);
            }
            offset += bytes.len() as u64;
        }
        Ok(true)
    }
}

fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0; 1 << 20];
    let mut at = from;
    while at < to {
        let len = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..len], at)?;
        at += len as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: u64 = 4096;

    fn entries(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
        wal.read(0, u64::MAX).expect("read")
    }

    fn write_entries(wal: &Wal, indexes: std::ops::Range<u64>, payload: &[u8]) {
        let records: Vec<Record> = indexes.map(|index| Record::Entry { index, payload }).collect();
        wal.write(&records).expect("write");
        wal.sync().expect("sync");
    }

    /// A WAL holding `indexes`, closed.
    fn closed_wal(indexes: std::ops::Range<u64>, payload: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let wal = Wal::open(&path, None, SMALL).expect("open");
        write_entries(&wal, indexes, payload);
        (dir, path)
    }

    fn overwrite(wal_dir: &Path, seq: u64, offset: u64, bytes: &[u8]) {
        let segment = wal_dir.join(format!("{seq:016x}.wal"));
        let file = OpenOptions::new().write(true).open(segment).expect("open segment");
        file.write_all_at(bytes, offset).expect("overwrite");
    }

    fn refusal(wal_dir: &Path) -> String {
        Wal::open(wal_dir, None, SMALL).err().map(|err| err.to_string()).unwrap_or_default()
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir).expect("list").count()
    }

    #[test]
    fn entries_survive_a_reopen_across_segments_and_purging_deletes_whole_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        {
            let wal = Wal::open(&path, None, SMALL).expect("open");
            write_entries(&wal, 0..40, &[7; 300]);
            assert!(segment_files(&path) >= 3, "300-byte entries fill a 4 KiB segment quickly");
            assert_eq!(wal.last_index(), Some(39));
        }
        let wal = Wal::open(&path, None, SMALL).expect("reopen");
        let read = entries(&wal);
        assert_eq!(read.len(), 40);
        assert!(read.iter().enumerate().all(|(at, (index, bytes))| *index == at as u64 && bytes == &[7; 300]));
        let before = segment_files(&path);
        wal.purge(30);
        assert!(segment_files(&path) < before, "the segments of entries up to 30 are gone");
        assert_eq!(wal.read(0, 100).expect("read").first().map(|(index, _)| *index), Some(31));
        drop(wal);
        let wal = Wal::open(&path, Some(30), SMALL).expect("reopen after the purge");
        assert_eq!(entries(&wal).len(), 9);
        let big = vec![1; 3 * SMALL as usize];
        write_entries(&wal, 40..41, &big);
        assert_eq!(entries(&wal).last(), Some(&(40, big)), "a record larger than a segment gets a segment of its own");
    }

    #[test]
    fn replay_reads_records_across_its_window_and_zeroes_what_lies_windows_past_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let window = READ_WINDOW as u64;
        // About three records a window, their ends never on a window's edge,
        // and one record larger than a window.
        let payload = vec![9; READ_WINDOW / 3 + 17];
        let big = vec![2; READ_WINDOW + 5];
        {
            let wal = Wal::open(&path, None, 8 * window).expect("open");
            write_entries(&wal, 0..9, &payload);
            write_entries(&wal, 9..10, &big);
        }
        // A stale record three windows past the end (about 4 MiB in).
        let stale = Record::Entry { index: 99, payload: b"stale" };
        let mut stale_bytes = Vec::new();
        stale.encode(&mut stale_bytes).expect("encode");
        overwrite(&path, 0, 7 * window, &stale_bytes);
        {
            let wal = Wal::open(&path, None, 8 * window).expect("reopen");
            let read = entries(&wal);
            assert_eq!(read.len(), 10);
            assert!(read[..9].iter().all(|(_, bytes)| bytes == &payload));
            assert_eq!(read[9], (9, big));
        }
        let segment = std::fs::read(path.join(format!("{:016x}.wal", 0))).expect("segment");
        assert_eq!(segment.len() as u64, 8 * window, "the segment keeps its preallocated size");
        assert!(segment[7 * READ_WINDOW..].iter().all(|&byte| byte == 0), "the stale record was zeroed");
    }

    #[test]
    fn a_truncation_and_a_conflicting_entry_hold_across_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        {
            let wal = Wal::open(&path, None, SMALL).expect("open");
            write_entries(&wal, 0..10, b"old");
            wal.write(&[Record::Truncate { from: 6 }]).expect("truncate");
            write_entries(&wal, 4..5, b"new");
            wal.sync().expect("sync");
        }
        let wal = Wal::open(&path, None, SMALL).expect("reopen");
        let read = entries(&wal);
        assert_eq!(read.iter().map(|(index, _)| *index).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(read[4].1, b"new");
        assert_eq!(read[3].1, b"old");
    }

    #[test]
    fn a_torn_tail_ends_the_log_and_later_appends_replace_it() {
        let record_len = Record::Entry { index: 0, payload: &[3; 100] }.encoded_len() as u64;
        let (_dir, path) = closed_wal(0..5, &[3; 100]);
        // A crash in the middle of the fifth record's write: its second sector never made it.
        let (fifth, sector) = (4 * record_len, 512);
        assert!(fifth < sector && fifth + record_len > sector, "the fifth record spans two sectors");
        overwrite(&path, 0, sector, &[0; 512]);
        {
            let wal = Wal::open(&path, None, SMALL).expect("a torn tail is no damage");
            assert_eq!(wal.last_index(), Some(3));
            write_entries(&wal, 4..6, b"after");
        }
        let wal = Wal::open(&path, None, SMALL).expect("reopen");
        assert_eq!(entries(&wal).iter().map(|(index, _)| *index).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(entries(&wal)[5].1, b"after");
    }

    #[test]
    fn records_past_the_end_are_zeroed_so_that_a_later_append_cannot_revive_them() {
        let record_len = Record::Entry { index: 0, payload: b"old" }.encoded_len() as u64;
        let (_dir, path) = closed_wal(0..10, b"old");
        // Entry 5's header never reached the disk, the entries after it did.
        overwrite(&path, 0, 5 * record_len, &[0; 8]);
        {
            let wal = Wal::open(&path, None, SMALL).expect("open");
            assert_eq!(wal.last_index(), Some(4));
            write_entries(&wal, 5..6, b"new");
        }
        let wal = Wal::open(&path, None, SMALL).expect("reopen");
        assert_eq!(wal.last_index(), Some(5), "old entry 6, right after the new 5, stays gone");
        assert_eq!(entries(&wal)[5].1, b"new");
    }

    #[test]
    fn a_flipped_byte_in_the_last_segment_is_damage_not_a_torn_write() {
        let (_dir, path) = closed_wal(0..3, &[4; 100]);
        overwrite(&path, 0, 50, &[5]);
        let refused = refusal(&path);
        assert!(refused.contains("corrupt raft log segment 0 at byte 0: CRC mismatch"), "{refused}");
    }

    #[test]
    fn a_hole_is_refused_before_it_reaches_the_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let wal = Wal::open(&path, None, SMALL).expect("open");
        write_entries(&wal, 0..3, b"x");
        let hole = wal.write(&[Record::Entry { index: 4, payload: b"x" }, Record::Entry { index: 3, payload: b"x" }]);
        assert!(matches!(hole, Err(WalError::Corrupt { .. })), "{hole:?}");
        write_entries(&wal, 3..4, b"x");
        drop(wal);
        assert_eq!(Wal::open(&path, None, SMALL).expect("reopen").last_index(), Some(3));
    }

    #[test]
    fn damage_before_the_last_segment_refuses_to_open() {
        let (_dir, path) = closed_wal(0..40, &[9; 300]);
        overwrite(&path, 0, 100, &[0xee; 4]);
        let refused = refusal(&path);
        assert!(refused.contains("corrupt raft log segment 0 at byte 0"), "{refused}");
        std::fs::remove_file(path.join(format!("{:016x}.wal", 1))).expect("remove a middle segment");
        let refused = refusal(&path);
        assert!(refused.contains("some are missing"), "{refused}");
    }
}
