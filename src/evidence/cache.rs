//! The writer's cache of parsed evidence, by blob id, in the repository's
//! git folder (`cleartrail/held-v1`), never on the evidence branch.
//!
//! A run with a few new artifacts must not re-read and re-parse 200,000
//! held ones to judge them again: that was most of such a run. Blob ids are
//! content hashes, so an entry can never describe other bytes; the cache is
//! only as trusted as the repository folder it sits in, which is why only
//! `run`/`sync` (the writer, already trusting that folder with its refs)
//! uses it. `gaps`, `packet` and `verify` always read the objects, hash
//! checked. A missing, stale or damaged cache is ignored and rewritten.

use super::Held;
use super::lite::{Keys, Lite};
use crate::artifact::DateSpan;
use chrono::{Datelike, NaiveDate};
use git2::Oid;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// v2: null members of objects are no longer stored.
const MAGIC: &[u8] = b"cleartrail held cache v2\n";

pub fn path(git_dir: &Path) -> PathBuf {
    git_dir.join("cleartrail").join("held-v1")
}

/// What the cache depends on besides blob ids: the content fields kept.
pub fn fingerprint(keep: &super::Keep) -> String {
    match keep {
        super::Keep::All => "all".into(),
        super::Keep::ByKind(m) => m
            .iter()
            .flat_map(|(source, kinds)| {
                kinds.iter().map(move |(kind, fields)| {
                    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                    format!("{source}/{kind}:{}", fields.join(","))
                })
            })
            .collect::<Vec<_>>()
            .join(";"),
    }
}

/// The cached entries, in the file's order (paths are left empty: they are
/// the snapshot's); empty when there is no usable cache. The file is read
/// as a stream, an entry at a time: at 200,000 artifacts it is about
/// 100 MB, which must not sit in memory beside what is decoded from it.
/// `capacity` is how many artifacts the caller will hold in the end, so
/// the vector can take the new ones without growing.
pub fn read(file: &Path, fingerprint: &str, capacity: usize) -> Vec<Held> {
    let Ok(f) = std::fs::File::open(file) else {
        return Vec::new();
    };
    let left = f.metadata().map_or(0, |m| m.len());
    let mut r = Reader {
        src: std::io::BufReader::with_capacity(1 << 16, f),
        left,
        scratch: Vec::new(),
        keys: Keys::default(),
    };
    match decode(&mut r, fingerprint, capacity) {
        Some(v) => v,
        None => {
            tracing::debug!(
                "ignoring the unusable held-evidence cache {}",
                file.display()
            );
            Vec::new()
        }
    }
}

/// Replaces the cache with `held` (atomically: a reader sees the old file
/// or the new one). Failing to write it only costs the next run time.
pub fn write(file: &Path, fingerprint: &str, held: &[Held]) {
    let result = (|| -> std::io::Result<()> {
        let dir = file.parent().expect("the cache file is in a folder");
        std::fs::create_dir_all(dir)?;
        // Half-written caches of killed runs: each is as large as the
        // evidence's compact form.
        crate::store::recover::remove_stale_files(dir, TEMP_PREFIX);
        let tmp = dir.join(format!("{TEMP_PREFIX}{}", std::process::id()));
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        // Encoded an entry at a time: the whole file never sits in memory.
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(MAGIC);
        put_str(&mut out, fingerprint);
        out.extend_from_slice(&(held.len() as u64).to_le_bytes());
        for h in held {
            out.extend_from_slice(h.blob.as_bytes());
            for s in [
                &*h.id,
                h.source(),
                h.kind(),
                h.title(),
                h.url(),
                h.sha256(),
                h.group(),
                h.latest_observed(),
            ] {
                put_str(&mut out, s);
            }
            match h.period {
                Some(p) => {
                    out.push(1);
                    out.extend_from_slice(&p.start.num_days_from_ce().to_le_bytes());
                    out.extend_from_slice(&p.end.num_days_from_ce().to_le_bytes());
                }
                None => out.push(0),
            }
            put_lite(&mut out, &h.content);
            f.write_all(&out)?;
            out.clear();
        }
        f.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, file)
    })();
    if let Err(e) = result {
        tracing::debug!(
            "could not write the held-evidence cache {}: {e}",
            file.display()
        );
    }
}

const TEMP_PREFIX: &str = "held-v1.tmp";

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_lite(out: &mut Vec<u8>, v: &Lite) {
    match v {
        Lite::Null => out.push(0),
        Lite::Bool(false) => out.push(1),
        Lite::Bool(true) => out.push(2),
        Lite::Number(n) => {
            out.push(3);
            put_str(out, &n.to_string());
        }
        Lite::String(s) => {
            out.push(4);
            put_str(out, s);
        }
        Lite::Array(a) => {
            out.push(5);
            out.extend_from_slice(&(a.len() as u32).to_le_bytes());
            for item in a.iter() {
                put_lite(out, item);
            }
        }
        Lite::Object(m) => {
            out.push(6);
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            for (k, item) in m.iter() {
                put_str(out, k);
                put_lite(out, item);
            }
        }
    }
}

/// Reads the cache file's fields in order. `left` bounds every length
/// read from the file, so a damaged one cannot ask for a huge buffer.
struct Reader<R> {
    src: R,
    left: u64,
    scratch: Vec<u8>,
    keys: Keys,
}

impl<R: std::io::Read> Reader<R> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if (n as u64) > self.left {
            return None;
        }
        self.scratch.resize(n, 0);
        self.src.read_exact(&mut self.scratch).ok()?;
        self.left -= n as u64;
        Some(&self.scratch)
    }

    fn at_end(&mut self) -> bool {
        self.left == 0 && self.take(1).is_none()
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn lite(&mut self, depth: usize) -> Option<Lite> {
        // Written by this code from parsed JSON, whose depth serde_json
        // bounds; a damaged file must not recurse without end either.
        if depth > 256 {
            return None;
        }
        Some(match self.take(1)?[0] {
            0 => Lite::Null,
            1 => Lite::Bool(false),
            2 => Lite::Bool(true),
            3 => Lite::Number(self.str()?.parse().ok()?),
            4 => Lite::String(self.str()?.into()),
            5 => {
                let n = self.u32()? as usize;
                let mut a = Vec::with_capacity(n.min(self.left as usize));
                for _ in 0..n {
                    a.push(self.lite(depth + 1)?);
                }
                Lite::Array(a.into_boxed_slice())
            }
            6 => {
                let n = self.u32()? as usize;
                let mut m = Vec::with_capacity(n.min(self.left as usize));
                for _ in 0..n {
                    let k = self.shared()?;
                    m.push((k, self.lite(depth + 1)?));
                }
                Lite::Object(m.into_boxed_slice())
            }
            _ => return None,
        })
    }

    fn shared(&mut self) -> Option<Arc<str>> {
        let n = self.u32()? as usize;
        self.take(n)?;
        let s = std::str::from_utf8(&self.scratch).ok()?;
        Some(self.keys.intern(s))
    }
}

fn decode<R: std::io::Read>(
    r: &mut Reader<R>,
    fingerprint: &str,
    capacity: usize,
) -> Option<Vec<Held>> {
    if r.take(MAGIC.len())? != MAGIC || r.str()? != fingerprint {
        return None;
    }
    let n = u64::from_le_bytes(r.take(8)?.try_into().ok()?) as usize;
    let mut out = Vec::with_capacity(n.max(capacity).min(r.left as usize / 64 + capacity));
    for _ in 0..n {
        let blob = Oid::from_bytes(r.take(20)?).ok()?;
        let id: Arc<str> = r.str()?.into();
        let source = r.shared()?;
        let kind = r.shared()?;
        let title = r.str()?.into();
        let url = r.str()?.into();
        let sha256 = r.str()?.into();
        let group = r.shared()?;
        let latest = r.str()?.into();
        let period = match r.take(1)?[0] {
            0 => None,
            1 => {
                let start = NaiveDate::from_num_days_from_ce_opt(r.i32()?)?;
                let end = NaiveDate::from_num_days_from_ce_opt(r.i32()?)?;
                Some(DateSpan { start, end })
            }
            _ => return None,
        };
        let content = r.lite(0)?;
        let parts = super::Parts {
            id,
            source,
            kind,
            group,
            path: Arc::from(""),
            period,
            title,
            url,
            sha256,
            latest,
            blob,
        };
        let mut keys = std::mem::take(&mut r.keys);
        out.push(Held::new(parts, content, &mut keys));
        r.keys = keys;
    }
    r.at_end().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn held(i: u32) -> Held {
        let doc = json!({
            "id": format!("git:change:{i}"), "source": "git", "kind": "change",
            "title": "t", "url": "u", "sha256": "s", "shard": "2025-03/ab",
            "period": {"start": "2025-03-01", "end": "2025-03-02"},
            "observed": {"committed": "2025-03-02T00:00:00Z"},
            "content": {"sha": "abc", "n": 1.5, "signature": {"status": null, "ok": [true, false]}}
        });
        Held::from_document(
            format!("evidence/x/{i}.json"),
            doc,
            &super::super::Keep::All,
        )
        .unwrap()
    }

    #[test]
    fn entries_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        let all: Vec<Held> = (0..3).map(held).collect();
        write(&file, "fp", &all);
        let back = read(&file, "fp", 0);
        assert_eq!(back.len(), 3);
        for h in &all {
            let b = back.iter().find(|b| b.blob == h.blob).unwrap();
            assert_eq!(
                (&b.id, b.group(), b.latest_observed(), b.period),
                (&h.id, h.group(), h.latest_observed(), h.period)
            );
            assert_eq!(b.content, h.content);
        }
    }

    #[test]
    fn half_written_caches_of_killed_runs_are_removed_once_stale() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let old = file.with_file_name("held-v1.tmp999999");
        let young = file.with_file_name("held-v1.tmp999998");
        std::fs::write(&old, b"partial").unwrap();
        std::fs::write(&young, b"partial").unwrap();
        let long_ago = std::time::SystemTime::now() - 2 * crate::store::recover::STALE_AGE;
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        write(&file, "fp", &[held(1)]);
        assert!(!old.exists(), "a stale half-written cache is removed");
        assert!(young.exists(), "one that may still be being written stays");
        assert_eq!(read(&file, "fp", 0).len(), 1);
    }

    #[test]
    fn another_fingerprint_or_damage_means_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        write(&file, "fp", &[held(1)]);
        assert!(read(&file, "other", 0).is_empty());
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&file, &bytes).unwrap();
        assert!(read(&file, "fp", 0).is_empty());
        std::fs::write(&file, b"junk").unwrap();
        assert!(read(&file, "fp", 0).is_empty());
        // Bytes after the last entry: not the file this code wrote.
        write(&file, "fp", &[held(1)]);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.push(0);
        std::fs::write(&file, &bytes).unwrap();
        assert!(read(&file, "fp", 0).is_empty());
    }
}
