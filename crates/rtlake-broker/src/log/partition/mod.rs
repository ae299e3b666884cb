//! One partition's log: segment files holding Kafka record batches exactly as produced.
//!
//! A segment is a file named by the offset of its first batch (`00000000000000042000.log`);
//! each batch is stored in the v2 wire format, so a fetch copies bytes and never re-encodes
//! records. An in-memory index (one entry per batch) finds a fetch offset's batch; it is rebuilt
//! on open by reading the batch headers, which also restores the idempotent producers' last
//! sequences, so a producer retrying across a broker restart is still deduplicated. A write cut
//! short by a crash (a batch longer than what is left of the file, or a bad CRC at the tail) is
//! truncated away on open.

use super::producers::{Producers, SequenceCheck};
use bytes::{Bytes, BytesMut};
use nisshi_sans_io::record::deflated::Batch;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The most one fetch reads of a partition, whatever the client asks for (Kafka's default
/// `max.partition.fetch.bytes` is 1 MiB; a batch larger than this is still read whole).
pub(crate) const MAX_FETCH_BYTES: u32 = 16 << 20;

/// Bytes before a batch's records: base offset (8), length (4) and the 49-byte v2 header.
pub(crate) const HEADER: usize = 61;
/// Offset of `batch_length` + 4: the length counts the bytes after it.
const LENGTH_END: usize = 12;

/// Errors of a partition log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("batch from producer {producer_id} is out of sequence")]
    OutOfOrder { producer_id: i64 },
    #[error("producer {producer_id} epoch {epoch} is older than the partition's")]
    Fenced { producer_id: i64, epoch: i16 },
    #[error("offset {0} is out of range")]
    OutOfRange(i64),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |cause| LogError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Where a batch lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its first offset.
    pub base: i64,
    /// Its last offset.
    pub last: i64,
    /// Its position in the segment file.
    pub pos: u64,
    /// Its length in bytes, header included.
    pub len: u32,
    /// Its newest record's timestamp (ms).
    pub max_ts: i64,
}

struct Segment {
    base: i64,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    entries: Vec<Entry>,
}

impl Segment {
    fn create(dir: &Path, base: i64) -> Result<Self, LogError> {
        let path = dir.join(format!("{base:020}.log"));
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Self {
            base,
            path,
            file: Arc::new(file),
            size: 0,
            entries: Vec::new(),
        })
    }

    fn max_ts(&self) -> Option<i64> {
        self.entries.iter().map(|e| e.max_ts).max()
    }
}

/// What a fetch reads: bytes of whole batches, contiguous in one segment file.
pub(crate) struct ReadPlan {
    file: Arc<File>,
    path: PathBuf,
    pos: u64,
    lens: Vec<u32>,
}

impl ReadPlan {
    /// Reads the planned batches (outside the partition's lock: a segment file only grows at
    /// its end, and a deleted one stays readable through the open handle).
    pub(crate) fn read(self) -> Result<Vec<Batch>, LogError> {
        let total: usize = self.lens.iter().map(|l| *l as usize).sum();
        let mut buf = BytesMut::zeroed(total);
        self.file
            .read_exact_at(&mut buf, self.pos)
            .map_err(io(&self.path))?;
        let mut bytes: Bytes = buf.freeze();
        let mut out = Vec::with_capacity(self.lens.len());
        for len in self.lens {
            let one = bytes.split_to(len as usize);
            let batch = Batch::try_from(one).map_err(|e| LogError::Io {
                path: self.path.clone(),
                cause: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("stored batch does not decode: {e:?}"),
                ),
            })?;
            out.push(batch);
        }
        Ok(out)
    }
}

/// A partition's segments, index and producer state.
pub(crate) struct PartitionLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    log_start: i64,
    next: i64,
    producers: Producers,
    /// Written since the last fsync.
    pub dirty: bool,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash cut.
    pub(crate) fn open(dir: &Path) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut bases: Vec<i64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        bases.sort_unstable();
        let mut log = Self {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            log_start: 0,
            next: 0,
            producers: Producers::default(),
            dirty: false,
        };
        let count = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let seg = log.recover(base, i + 1 == count)?;
            log.next = seg
                .entries
                .last()
                .map_or(seg.base.max(log.next), |e| e.last + 1);
            log.segments.push(seg);
        }
        let stored_start = std::fs::read_to_string(dir.join("log-start"))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        let first = log.segments.first().map_or(log.next, |s| s.base);
        log.log_start = stored_start.max(first).min(log.next);
        if log.segments.is_empty() {
            let seg = Segment::create(dir, log.next)?;
            log.segments.push(seg);
        }
        Ok(log)
    }

    /// Reads one segment's batch headers; a tail cut short is truncated (the last segment's
    /// last batch is also checked by CRC).
    fn recover(&mut self, base: i64, last_segment: bool) -> Result<Segment, LogError> {
        let mut seg = Segment::create(&self.dir, base)?;
        let len = seg.file.metadata().map_err(io(&seg.path))?.len();
        let mut r =
            BufReader::with_capacity(1 << 20, File::open(&seg.path).map_err(io(&seg.path))?);
        let mut pos = 0u64;
        let mut head = [0u8; HEADER];
        while pos + HEADER as u64 <= len {
            r.read_exact(&mut head).map_err(io(&seg.path))?;
            let h = Header::parse(&head);
            let total = LENGTH_END as u64 + h.batch_length.max(0) as u64;
            if h.batch_length < (HEADER - LENGTH_END) as i32 || pos + total > len {
                break;
            }
            r.seek_relative((total - HEADER as u64) as i64)
                .map_err(io(&seg.path))?;
            seg.entries.push(Entry {
                base: h.base_offset,
                last: h.base_offset + i64::from(h.last_offset_delta),
                pos,
                len: total as u32,
                max_ts: h.max_timestamp,
            });
            self.producers.restore(
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.last_offset_delta,
                h.base_offset,
            );
            pos += total;
        }
        if last_segment {
            // A torn last write after a power loss: drop a tail batch whose CRC is wrong.
            if let Some(e) = seg.entries.last().copied() {
                let mut buf = vec![0u8; e.len as usize];
                seg.file
                    .read_exact_at(&mut buf, e.pos)
                    .map_err(io(&seg.path))?;
                let ok = Batch::try_from(Bytes::from(buf)).is_ok_and(|b| b.computed_crc() == b.crc);
                if !ok {
                    tracing::warn!(segment = %seg.path.display(), offset = e.base, "dropping a torn last batch");
                    seg.entries.pop();
                    pos = e.pos;
                }
            }
        }
        if pos < len {
            tracing::warn!(segment = %seg.path.display(), kept = pos, dropped = len - pos, "truncating an incomplete write at the end of a segment");
            seg.file.set_len(pos).map_err(io(&seg.path))?;
        }
        seg.size = pos;
        Ok(seg)
    }

    /// The first offset still held.
    pub(crate) fn log_start(&self) -> i64 {
        self.log_start
    }

    /// The next offset to be written (the high watermark).
    pub(crate) fn high_watermark(&self) -> i64 {
        self.next
    }

    /// Bytes held over all segments.
    pub(crate) fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Appends a batch at the high watermark and returns its base offset; a batch an
    /// idempotent producer already wrote returns the offset it got then and is not written again.
    pub(crate) fn append(&mut self, mut batch: Batch, segment_bytes: u64) -> Result<i64, LogError> {
        match self.producers.check(&batch) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate(base) => return Ok(base),
            SequenceCheck::OutOfOrder => {
                return Err(LogError::OutOfOrder {
                    producer_id: batch.producer_id,
                });
            }
            SequenceCheck::Fenced => {
                return Err(LogError::Fenced {
                    producer_id: batch.producer_id,
                    epoch: batch.producer_epoch,
                });
            }
        }
        let base = self.next;
        batch.base_offset = base;
        let (pid, epoch, seq, delta, max_ts) = (
            batch.producer_id,
            batch.producer_epoch,
            batch.base_sequence,
            batch.last_offset_delta,
            batch.max_timestamp,
        );
        let bytes: Bytes = batch.into();
        let active = self.segments.last().expect("a log always has a segment");
        if active.size > 0 && active.size + bytes.len() as u64 > segment_bytes {
            let seg = Segment::create(&self.dir, base)?;
            self.segments.push(seg);
        }
        let seg = self
            .segments
            .last_mut()
            .expect("a log always has a segment");
        let pos = seg.size;
        if let Err(cause) = (&*seg.file).write_all(&bytes) {
            // Whatever part was written is cut off again, so the file stays a run of whole batches.
            let _ = seg.file.set_len(pos);
            return Err(LogError::Io {
                path: seg.path.clone(),
                cause,
            });
        }
        seg.size += bytes.len() as u64;
        seg.entries.push(Entry {
            base,
            last: base + i64::from(delta),
            pos,
            len: bytes.len() as u32,
            max_ts,
        });
        self.next = base + i64::from(delta) + 1;
        self.producers.record(pid, epoch, seq, delta, base);
        self.dirty = true;
        Ok(base)
    }

    /// Plans a read of the batches from the one holding `offset`, up to `max_bytes` capped at
    /// [`MAX_FETCH_BYTES`] (at least one batch, as KIP-74 wants), all in one segment; `None` at
    /// or past the high watermark.
    pub(crate) fn plan(&self, offset: i64, max_bytes: u32) -> Result<Option<ReadPlan>, LogError> {
        // A client's max_bytes is not trusted: a fetch reads at most this much into memory.
        let max_bytes = max_bytes.min(MAX_FETCH_BYTES);
        if offset >= self.next {
            return Ok(None);
        }
        if offset < self.log_start {
            return Err(LogError::OutOfRange(offset));
        }
        let si = self
            .segments
            .partition_point(|s| s.base <= offset)
            .saturating_sub(1);
        for seg in &self.segments[si..] {
            let first = seg.entries.partition_point(|e| e.last < offset);
            if first == seg.entries.len() {
                continue;
            }
            let mut lens = Vec::new();
            let mut total = 0u64;
            for e in &seg.entries[first..] {
                if !lens.is_empty() && total + u64::from(e.len) > u64::from(max_bytes) {
                    break;
                }
                total += u64::from(e.len);
                lens.push(e.len);
            }
            return Ok(Some(ReadPlan {
                file: seg.file.clone(),
                path: seg.path.clone(),
                pos: seg.entries[first].pos,
                lens,
            }));
        }
        Ok(None)
    }

    /// The first batch whose newest timestamp is at or after `ts` (ms), for a time lookup.
    pub(crate) fn batch_at_time(&self, ts: i64) -> Option<ReadPlan> {
        self.segments
            .iter()
            .flat_map(|s| s.entries.iter().map(move |e| (s, e)))
            .find(|(_, e)| e.max_ts >= ts && e.last >= self.log_start)
            .map(|(s, e)| ReadPlan {
                file: s.file.clone(),
                path: s.path.clone(),
                pos: e.pos,
                lens: vec![e.len],
            })
    }

    /// Moves the log start to `offset` (at most the high watermark), deleting segments wholly
    /// below it; the start is kept in a file so that it survives a restart.
    pub(crate) fn truncate_before(&mut self, offset: i64) -> Result<(), LogError> {
        let offset = offset.min(self.next);
        if offset <= self.log_start {
            return Ok(());
        }
        let file = self.dir.join("log-start");
        let tmp = self.dir.join("log-start.tmp");
        std::fs::write(&tmp, offset.to_string()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
        self.log_start = offset;
        self.drop_segments_below(offset)
    }

    fn drop_segments_below(&mut self, offset: i64) -> Result<(), LogError> {
        // The active segment goes too when everything in it is gone: an empty one at the high
        // watermark takes its place, so the next offset survives a restart.
        if self
            .segments
            .last()
            .is_some_and(|s| s.size > 0 && self.next <= offset)
        {
            let seg = Segment::create(&self.dir, self.next)?;
            self.segments.push(seg);
        }
        while self.segments.len() > 1 && self.segments[1].base <= offset {
            let seg = self.segments.remove(0);
            std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
        }
        Ok(())
    }

    /// Applies retention: deletes the oldest segments whose newest record is older than
    /// `max_age_ms`, or while the log is over `max_bytes` (-1: no limit). Returns the offsets
    /// given up.
    pub(crate) fn apply_retention(
        &mut self,
        now_ms: i64,
        max_age_ms: i64,
        max_bytes: i64,
    ) -> Result<i64, LogError> {
        let before = self.log_start;
        let mut size = self.size();
        let mut cut = self.log_start;
        for (i, seg) in self.segments.iter().enumerate() {
            let end = self.segments.get(i + 1).map_or(self.next, |s| s.base);
            let old = max_age_ms >= 0 && seg.max_ts().is_some_and(|t| t < now_ms - max_age_ms);
            let big = max_bytes >= 0 && size > max_bytes as u64;
            if seg.size == 0 || !(old || big) {
                break;
            }
            size -= seg.size;
            cut = end;
        }
        if cut > self.log_start {
            self.truncate_before(cut)?;
        }
        Ok(self.log_start - before)
    }

    /// Forces what was written to disk.
    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        if self.dirty {
            if let Some(seg) = self.segments.last() {
                seg.file.sync_data().map_err(io(&seg.path))?;
            }
            self.dirty = false;
        }
        Ok(())
    }
}

/// The fixed fields at the front of a stored batch.
struct Header {
    base_offset: i64,
    batch_length: i32,
    last_offset_delta: i32,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Header {
    fn parse(b: &[u8; HEADER]) -> Self {
        let i64_at = |o: usize| i64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let i32_at = |o: usize| i32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        // base_offset 0, batch_length 8, leader epoch 12, magic 16, crc 17, attributes 21,
        // last_offset_delta 23, base_timestamp 27, max_timestamp 35, producer_id 43,
        // producer_epoch 51, base_sequence 53, record count 57.
        Self {
            base_offset: i64_at(0),
            batch_length: i32_at(8),
            last_offset_delta: i32_at(23),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16::from_be_bytes([b[51], b[52]]),
            base_sequence: i32_at(53),
        }
    }
}

#[cfg(test)]
mod tests;
