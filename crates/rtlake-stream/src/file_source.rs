//! The file source: JSON Lines from a file or a folder, as one partition.
//!
//! Files are read in name order; a message's offset is its line number over all of them (from
//! 0), so a re-run over the same files lands on the same txn versions and skips what the lake
//! holds. Empty lines are skipped but keep their number. For backfills and for measuring the
//! engine without a broker in the way.

use crate::source::RawMessage;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The files of a path: itself, or the `.json`/`.jsonl`/`.ndjson` files of a folder by name.
pub fn files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Source(format!("file source {}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let rd = std::fs::read_dir(path)
        .map_err(|e| Error::Source(format!("file source {}: {e}", path.display())))?;
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
        return Err(Error::Source(format!(
            "file source {}: the folder holds no .json, .jsonl or .ndjson files",
            path.display()
        )));
    }
    Ok(out)
}

/// Reads every line of the files as messages of partition 0, numbered from 0.
pub fn read(files: &[PathBuf]) -> Result<Vec<RawMessage>> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    for f in files {
        let bytes = std::fs::read(f)
            .map_err(|e| Error::Source(format!("file source {}: {e}", f.display())))?;
        for line in bytes.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.push(RawMessage {
                    partition: 0,
                    offset,
                    key: None,
                    payload: Some(line.to_vec()),
                    timestamp: None,
                });
            }
            offset += 1;
        }
        // A file that ends with a newline has no line after it.
        if bytes.last() == Some(&b'\n') {
            offset -= 1;
        }
    }
    Ok(out)
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
                    String::from_utf8(m.payload.clone().unwrap()).unwrap(),
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
        assert!(files(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
