//! The file source: JSON Lines from a file or a folder, as one partition.
//!
//! Files are read in name order; a message's offset is its line number over all of them (from
//! 0), so a re-run over the same files lands on the same txn versions and skips what the lake
//! holds. Empty lines are skipped but keep their number. For backfills and for measuring the
//! engine without a broker in the way.

use crate::source::{Arena, RawMessage};
use crate::{Error, Kind, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The files of a path: itself, or the `.json`/`.jsonl`/`.ndjson` files of a folder by name.
pub fn files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::caused(Kind::Source, format!("file source {}", path.display()), e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let rd = std::fs::read_dir(path)
        .map_err(|e| Error::caused(Kind::Source, format!("file source {}", path.display()), e))?;
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|x| x == "json" || x == "jsonl" || x == "ndjson")
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(Error::new(
            Kind::Source,
            format!(
                "file source {}: the folder holds no .json, .jsonl or .ndjson files",
                path.display()
            ),
        ));
    }
    Ok(out)
}

/// The lines of the files as messages of partition 0, numbered from 0 over all of them, read a
/// chunk at a time: only the epoch being processed is in memory, whatever the files' size.
pub struct Lines {
    files: Vec<PathBuf>,
    next_file: usize,
    reader: Option<(BufReader<File>, bool)>,
    offset: i64,
    line: Vec<u8>,
    /// Where the lines kept are copied.
    arena: Arena,
}

impl Lines {
    /// Lines of `files`, in the order given.
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self {
            files,
            next_file: 0,
            reader: None,
            offset: 0,
            line: Vec::new(),
            arena: Arena::default(),
        }
    }

    /// Up to `max` next messages (and fewer once they hold `max_bytes`; at least one) at or past
    /// offset `from` and before `until` (when given); an empty chunk at the end of the files (or
    /// at `until`). Skipped lines are read, not kept.
    pub fn next_chunk(
        &mut self,
        max: usize,
        max_bytes: usize,
        from: i64,
        until: Option<i64>,
    ) -> Result<Vec<RawMessage>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max && bytes < max_bytes && until.is_none_or(|u| self.offset < u) {
            if !self.next_line()? {
                break;
            }
            let line = &self.line;
            let offset = self.offset;
            self.offset += 1;
            if offset < from || line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            bytes += line.len();
            out.push(RawMessage {
                partition: 0,
                offset,
                key: None,
                payload: Some(self.arena.copy(line)),
                timestamp: None,
            });
        }
        Ok(out)
    }

    /// Reads the next line, without its line end, into `self.line` (`false`: no file left).
    /// An empty file counts as one empty line, as it always has: offsets of files already in a
    /// lake must not move.
    fn next_line(&mut self) -> Result<bool> {
        loop {
            if self.reader.is_none() {
                let Some(f) = self.files.get(self.next_file) else {
                    return Ok(false);
                };
                self.next_file += 1;
                let file = File::open(f).map_err(|e| {
                    Error::caused(Kind::Source, format!("file source {}", f.display()), e)
                })?;
                self.reader = Some((BufReader::with_capacity(1 << 20, file), false));
            }
            let (reader, any) = self.reader.as_mut().expect("open");
            self.line.clear();
            let n = reader.read_until(b'\n', &mut self.line).map_err(|e| {
                Error::caused(
                    Kind::Source,
                    format!("file source {}", self.files[self.next_file - 1].display()),
                    e,
                )
            })?;
            if n == 0 {
                let empty_file = !*any;
                self.reader = None;
                if empty_file {
                    return Ok(true);
                }
                continue;
            }
            *any = true;
            if self.line.last() == Some(&b'\n') {
                self.line.pop();
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            return Ok(true);
        }
    }
}

/// Reads every line of the files as messages of partition 0, numbered from 0 (all at once:
/// for tests and small inputs; the file source reads [`Lines`] a chunk at a time).
pub fn read(files: &[PathBuf]) -> Result<Vec<RawMessage>> {
    Lines::new(files.to_vec()).next_chunk(usize::MAX, usize::MAX, 0, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_across_files_in_name_order() {
        let dir = std::env::temp_dir().join(format!("rtlake-filesrc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.jsonl"), "{\"c\":3}\n").unwrap();
        std::fs::write(dir.join("a.jsonl"), "{\"a\":1}\n\n{\"b\":2}\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let msgs = read(&files(&dir).unwrap()).unwrap();
        let got: Vec<(i64, String)> = msgs
            .iter()
            .map(|m| {
                (
                    m.offset,
                    String::from_utf8(m.payload.clone().unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "{\"a\":1}".into()),
                (2, "{\"b\":2}".into()),
                (3, "{\"c\":3}".into())
            ]
        );
        // In chunks, from an offset, up to an end: the same numbers.
        std::fs::write(dir.join("c.jsonl"), "").unwrap();
        std::fs::write(dir.join("d.jsonl"), "{\"d\":4}\r\n{\"e\":5}").unwrap();
        let mut lines = Lines::new(files(&dir).unwrap());
        let offsets = |c: Vec<RawMessage>| c.iter().map(|m| m.offset).collect::<Vec<_>>();
        assert_eq!(
            offsets(lines.next_chunk(1, usize::MAX, 2, Some(3)).unwrap()),
            vec![2]
        );
        assert!(
            lines
                .next_chunk(5, usize::MAX, 2, Some(3))
                .unwrap()
                .is_empty(),
            "stops at the end given"
        );
        let rest = lines.next_chunk(5, usize::MAX, 0, None).unwrap();
        assert_eq!(
            offsets(rest.clone()),
            vec![3, 5, 6],
            "the empty file is line 4"
        );
        assert_eq!(rest[1].payload.as_deref(), Some(&b"{\"d\":4}"[..]));
        assert!(lines.next_chunk(5, usize::MAX, 0, None).unwrap().is_empty());
        // A byte bound closes a chunk after the message that reaches it.
        let mut lines = Lines::new(files(&dir).unwrap());
        assert_eq!(
            offsets(lines.next_chunk(5, 8, 0, None).unwrap()),
            vec![0, 2]
        );
        assert_eq!(offsets(lines.next_chunk(5, 1, 0, None).unwrap()), vec![3]);
        assert!(files(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
