//! Whole (undeltified) objects read straight from the repository's packs,
//! for readers that go through every artifact of the branch.
//!
//! `gaps`, `packet` and `verify` read 200,000 small blobs each. Through
//! libgit2 a third of that time was its own overhead rather than the work:
//! every read takes a process-wide lock around the pack windows (two reader
//! threads spent it waking each other), searches the pack indexes, and
//! inflates with zlib's streaming decoder. Here each pack and its index are
//! mapped once, shared read-only by every thread without a lock, and a
//! blob's bytes are inflated in one call by libdeflate, whose output size
//! the pack entry states.
//!
//! Nothing read here is trusted more than what libgit2 reads with strict
//! hash checking: an object is returned only if its bytes hash (with
//! libgit2's collision-detecting SHA-1) to the id asked for. Anything else
//! (a delta, a loose object, an index or pack that does not parse, a hash
//! that does not match) is answered `None`, and the caller reads it through
//! libgit2, which reports the damage in its own words.

use git2::{ObjectType, Oid};
use std::path::Path;

/// The packs of one object folder, as they were when opened: a pack
/// written later is not seen (its objects go to libgit2, which refreshes).
pub struct PackedObjects {
    packs: Vec<Pack>,
    /// Bytes inflated so far, to let go of the pages read every
    /// [`TRIM_EVERY`] bytes.
    inflated: std::sync::atomic::AtomicU64,
}

/// How much is inflated between two releases of the pack pages read. A
/// mapped page stays in the process's resident memory once read: reading
/// every artifact of a 150 MB pack would hold all of it, as libgit2's own
/// windows would if `store::limit_mapped_packs` did not bound them.
const TRIM_EVERY: u64 = 32 << 20;

/// One pack and its (version 2) index, both mapped.
struct Pack {
    idx: Mapped,
    pack: Mapped,
    count: usize,
}

/// Sizes of the version 2 index layout.
const IDX_HEADER: usize = 8;
const FANOUT: usize = 256 * 4;
const IDX_TRAILER: usize = 40;
const PACK_HEADER: usize = 12;
const PACK_TRAILER: usize = 20;
/// DEFLATE cannot expand data by more than about 1032:1; a pack entry
/// claiming more than that of its remaining bytes is damaged, and must not
/// make the reader allocate what it claims.
const MAX_RATIO: u64 = 1032;

impl PackedObjects {
    /// The usable packs in `objects_dir/pack`. Never fails: a pack that
    /// cannot be opened or does not parse is left to libgit2.
    pub fn open(objects_dir: &Path) -> PackedObjects {
        let mut packs = Vec::new();
        if let Ok(dir) = std::fs::read_dir(objects_dir.join("pack")) {
            let mut idx_paths: Vec<_> = dir
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "idx"))
                .collect();
            idx_paths.sort();
            for idx in idx_paths {
                if let Some(p) = Pack::open(&idx) {
                    packs.push(p);
                }
            }
        }
        // Most lookups are answered by the largest pack (the first run's).
        packs.sort_by_key(|p| std::cmp::Reverse(p.count));
        PackedObjects {
            packs,
            inflated: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The kind and bytes of `id`, if a pack holds it whole and its bytes
    /// hash to `id`; `None` sends the caller to libgit2.
    pub fn read(&self, id: Oid, inflater: &mut Inflater) -> Option<(ObjectType, Vec<u8>)> {
        let (pack, offset) = self
            .packs
            .iter()
            .find_map(|p| p.offset_of(id).map(|o| (p, o)))?;
        let (kind, data) = pack.inflate_at(offset, inflater)?;
        let n = data.len() as u64;
        let before = self
            .inflated
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if (before + n) / TRIM_EVERY != before / TRIM_EVERY {
            for p in &self.packs {
                p.pack.release();
            }
        }
        (Oid::hash_object(kind, &data).ok()? == id).then_some((kind, data))
    }
}

impl Pack {
    fn open(idx_path: &Path) -> Option<Pack> {
        let idx = Mapped::open(idx_path)?;
        let pack = Mapped::open(&idx_path.with_extension("pack"))?;
        let i = idx.bytes();
        if i.len() < IDX_HEADER + FANOUT + IDX_TRAILER
            || i[..8] != [0xff, b't', b'O', b'c', 0, 0, 0, 2]
        {
            return None;
        }
        let count = be32(i, IDX_HEADER + 255 * 4)? as usize;
        // ids, CRCs and 32-bit offsets, then at least the trailer.
        if i.len() < IDX_HEADER + FANOUT + count.checked_mul(28)? + IDX_TRAILER {
            return None;
        }
        let p = pack.bytes();
        if p.len() < PACK_HEADER + PACK_TRAILER
            || &p[..4] != b"PACK"
            || !matches!(be32(p, 4)?, 2 | 3)
            || be32(p, 8)? as usize != count
        {
            return None;
        }
        Some(Pack { idx, pack, count })
    }

    /// Where `id` starts in the pack, found through the index's fan-out
    /// table and a binary search of its sorted ids.
    fn offset_of(&self, id: Oid) -> Option<u64> {
        let i = self.idx.bytes();
        let want = id.as_bytes();
        let first = usize::from(want[0]);
        let fan = |b: usize| be32(i, IDX_HEADER + b * 4).map(|v| v as usize);
        let lo = if first == 0 { 0 } else { fan(first - 1)? };
        let hi = fan(first)?;
        if lo > hi || hi > self.count {
            return None;
        }
        let ids = IDX_HEADER + FANOUT;
        let (mut lo, mut hi) = (lo, hi);
        let pos = loop {
            if lo >= hi {
                return None;
            }
            let mid = lo + (hi - lo) / 2;
            let at = ids + mid * 20;
            match i[at..at + 20].cmp(want) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => break mid,
            }
        };
        let small = be32(i, ids + self.count * 24 + pos * 4)?;
        if small & 0x8000_0000 == 0 {
            return Some(u64::from(small));
        }
        let at = ids + self.count * 28 + (small & 0x7fff_ffff) as usize * 8;
        Some(u64::from(be32(i, at)?) << 32 | u64::from(be32(i, at + 4)?))
    }

    /// The object starting at `offset`, unless it is a delta or damaged.
    fn inflate_at(&self, offset: u64, inflater: &mut Inflater) -> Option<(ObjectType, Vec<u8>)> {
        let p = self.pack.bytes();
        let end = p.len() - PACK_TRAILER;
        let mut at = usize::try_from(offset).ok()?;
        if at < PACK_HEADER || at >= end {
            return None;
        }
        // Type and size: 3 bits and 4 bits, then 7 bits a byte.
        let mut c = p[at];
        at += 1;
        let kind = match (c >> 4) & 7 {
            1 => ObjectType::Commit,
            2 => ObjectType::Tree,
            3 => ObjectType::Blob,
            4 => ObjectType::Tag,
            // Deltas (6, 7) need their base: libgit2's work.
            _ => return None,
        };
        let mut size = u64::from(c & 15);
        let mut shift = 4;
        while c & 0x80 != 0 {
            if at >= end || shift > 57 {
                return None;
            }
            c = p[at];
            at += 1;
            size |= u64::from(c & 0x7f) << shift;
            shift += 7;
        }
        let stream = &p[at..end];
        if size > (stream.len() as u64).saturating_mul(MAX_RATIO) {
            return None;
        }
        let mut out = vec![0u8; usize::try_from(size).ok()?];
        // The stream is followed by the next object: libdeflate stops at
        // the end of the first zlib stream and checks its Adler-32.
        match inflater.0.zlib_decompress(stream, &mut out) {
            Ok(n) if n == out.len() => Some((kind, out)),
            _ => None,
        }
    }
}

/// A decompressor, one per reading thread (it keeps its tables between
/// calls, which is what makes small streams cheap).
pub struct Inflater(libdeflater::Decompressor);

impl Inflater {
    pub fn new() -> Inflater {
        Inflater(libdeflater::Decompressor::new())
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A file mapped read-only into memory. Pack files are never modified in
/// place (git writes new ones and renames them in), and the mapping keeps
/// the file's contents even if it is deleted meanwhile.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and private to this value, which unmaps
// it only when dropped; reading it from several threads is reading memory.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    fn open(path: &Path) -> Option<Mapped> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh read-only private mapping of an open file; the
        // pointer is checked and owned by the returned value.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Mapped {
    /// Drops the pages read so far from this process's memory; they are
    /// read again (from the page cache) when next touched. A thread may be
    /// reading the mapping meanwhile: it is never written, so what a read
    /// finds is the file's bytes either way.
    fn release(&self) {
        // SAFETY: advice over exactly this live mapping; MADV_DONTNEED on
        // an unwritten private file mapping only drops page-table entries.
        unsafe {
            libc::madvise(self.ptr, self.len, libc::MADV_DONTNEED);
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, once.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A repository whose objects git itself packed: `deltas` makes git
    /// store most blobs as deltas of each other.
    fn packed_repo(deltas: bool) -> (tempfile::TempDir, Vec<(Oid, Vec<u8>)>) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let mut blobs = Vec::new();
        for i in 0..300u32 {
            let data = if deltas {
                // One large text with a line changed: git deltifies these.
                let mut s = String::new();
                for l in 0..200 {
                    s.push_str(&format!(
                        "line {l} of a long shared text {}\n",
                        if l == i % 200 { i } else { 0 }
                    ));
                }
                s.into_bytes()
            } else {
                // Unrelated bytes: nothing for a delta to share.
                let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                (0..64 + i)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x >> 56) as u8
                    })
                    .collect()
            };
            blobs.push((repo.blob(&data).unwrap(), data));
        }
        // A tree naming them all, so that `git repack` keeps them.
        let mut tb = repo.treebuilder(None).unwrap();
        for (n, (oid, _)) in blobs.iter().enumerate() {
            tb.insert(format!("f{n}"), *oid, 0o100644).unwrap();
        }
        let tree = tb.write().unwrap();
        let sig =
            git2::Signature::new("t", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let t = repo.find_tree(tree).unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "c", &t, &[]).unwrap();
        git(dir.path(), &["repack", "-a", "-d", "-q"]);
        (dir, blobs)
    }

    #[test]
    fn reads_every_whole_object_git_packed_with_its_hash_checked() {
        let (dir, blobs) = packed_repo(false);
        let packs = PackedObjects::open(&dir.path().join(".git/objects"));
        assert_eq!(packs.packs.len(), 1);
        let mut inf = Inflater::new();
        for (oid, data) in &blobs {
            let (kind, got) = packs.read(*oid, &mut inf).expect("read from the pack");
            assert_eq!(kind, ObjectType::Blob);
            assert_eq!(&got, data);
        }
        // An id no pack holds.
        assert!(
            packs
                .read(
                    Oid::hash_object(ObjectType::Blob, b"absent").unwrap(),
                    &mut inf
                )
                .is_none()
        );
    }

    #[test]
    fn deltas_are_left_to_libgit2_and_never_misread() {
        let (dir, blobs) = packed_repo(true);
        let packs = PackedObjects::open(&dir.path().join(".git/objects"));
        let mut inf = Inflater::new();
        let mut whole = 0;
        for (oid, data) in &blobs {
            if let Some((_, got)) = packs.read(*oid, &mut inf) {
                assert_eq!(&got, data);
                whole += 1;
            }
        }
        // git keeps a few bases whole and deltifies the rest.
        assert!(
            whole > 0 && whole < blobs.len() / 2,
            "{whole} of {} read whole",
            blobs.len()
        );
    }

    fn only(dir: &Path, ext: &str) -> std::path::PathBuf {
        std::fs::read_dir(dir.join(".git/objects/pack"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap()
    }

    #[test]
    fn an_index_pointing_at_other_bytes_is_caught_by_the_hash() {
        let (dir, blobs) = packed_repo(false);
        let idx = only(dir.path(), "idx");
        let mut bytes = std::fs::read(&idx).unwrap();
        let count = be32(&bytes, IDX_HEADER + 255 * 4).unwrap() as usize;
        // Swap the pack offsets of the first two ids: each entry now leads
        // to the other's intact object.
        let offsets = IDX_HEADER + FANOUT + count * 24;
        let (a, b) = bytes[offsets..offsets + 8].split_at_mut(4);
        a.swap_with_slice(b);
        std::fs::write(&idx, &bytes).unwrap();
        let packs = PackedObjects::open(&dir.path().join(".git/objects"));
        let mut inf = Inflater::new();
        let mut ids: Vec<Oid> = blobs.iter().map(|(o, _)| *o).collect();
        ids.sort();
        assert!(packs.read(ids[0], &mut inf).is_none());
        assert!(packs.read(ids[1], &mut inf).is_none());
        // The others are still read.
        assert!(packs.read(ids[2], &mut inf).is_some());
    }

    #[test]
    fn a_damaged_pack_is_never_believed_nor_crashes_the_reader() {
        let (dir, blobs) = packed_repo(false);
        let pack = only(dir.path(), "pack");
        let mut bytes = std::fs::read(&pack).unwrap();
        let len = bytes.len();
        for at in (PACK_HEADER + 8..len - PACK_TRAILER).step_by(7) {
            bytes[at] ^= 0x20;
        }
        std::fs::write(&pack, &bytes).unwrap();
        let packs = PackedObjects::open(&dir.path().join(".git/objects"));
        let mut inf = Inflater::new();
        assert!(
            blobs
                .iter()
                .all(|(oid, _)| packs.read(*oid, &mut inf).is_none())
        );
    }

    #[test]
    fn an_index_that_is_not_version_2_is_left_alone() {
        let (dir, blobs) = packed_repo(false);
        let idx = only(dir.path(), "idx");
        let mut bytes = std::fs::read(&idx).unwrap();
        bytes[7] = 3;
        std::fs::write(&idx, &bytes).unwrap();
        let packs = PackedObjects::open(&dir.path().join(".git/objects"));
        assert!(packs.packs.is_empty());
        assert!(packs.read(blobs[0].0, &mut Inflater::new()).is_none());
    }
}
