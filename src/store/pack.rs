//! Writing many objects at once as a single packfile (with its v2 index),
//! instead of one zlib-compressed loose file per object.
//!
//! A first sync of a large organization writes hundreds of thousands of
//! small blobs; as loose objects that is one file create per object. The
//! pack and its index are written to temporary names and flushed, then
//! renamed into `objects/pack/`, pack first, so a reader never finds an
//! index without its pack; the folder is flushed after the renames.

use super::StoreError;
use crate::artifact::canonical::hex;
use flate2::{Compress, Compression, FlushCompress, Status};
use git2::Oid;
use sha1::{Digest, Sha1};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Git object types as numbered in pack entry headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjKind {
    Commit = 1,
    Tree = 2,
    Blob = 3,
}

impl ObjKind {
    fn name(self) -> &'static str {
        match self {
            ObjKind::Commit => "commit",
            ObjKind::Tree => "tree",
            ObjKind::Blob => "blob",
        }
    }
}

/// The object id Git gives `data` of this kind (SHA-1 of header + data).
pub fn object_id(kind: ObjKind, data: &[u8]) -> Oid {
    let mut h = Sha1::new();
    h.update(kind.name().as_bytes());
    h.update(b" ");
    h.update(data.len().to_string().as_bytes());
    h.update([0u8]);
    h.update(data);
    Oid::from_bytes(&h.finalize()).expect("a SHA-1 digest is 20 bytes")
}

struct Entry {
    oid: Oid,
    crc: u32,
    offset: u64,
}

/// Above this many bytes held in memory, a spilling builder moves its
/// body to its temporary file: a first run of 200,000 artifacts makes a
/// pack of 150 MB, which must not sit in memory beside everything else.
const SPILL_AT: usize = 8 << 20;

/// Accumulates objects into a pack body: in memory, or (for the one
/// builder a commit writes through) in a temporary file in the pack folder
/// once it grows, with only the unwritten tail in memory.
pub struct PackBuilder {
    /// The bytes from offset `flushed` on.
    body: Vec<u8>,
    flushed: u64,
    spill: Option<Spill>,
    entries: Vec<Entry>,
    seen: HashSet<Oid>,
    // One deflate state reused for every object: allocating (and zeroing)
    // a fresh one per small object costs more than compressing it.
    deflate: Compress,
    // Trees are rewritten (and read back) on every change below them, and
    // a third or more of their bytes are incompressible object ids: stored
    // without compression they cost a little space and save the deflate
    // on write and the inflate on every later read.
    deflate_fast: Compress,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    pub fn new() -> Self {
        PackBuilder {
            // The 12-byte header is patched in at the end, once the count is known.
            body: vec![0u8; 12],
            flushed: 0,
            spill: None,
            entries: Vec::new(),
            seen: HashSet::new(),
            deflate: Compress::new(Compression::default(), true),
            deflate_fast: Compress::new(Compression::none(), true),
        }
    }

    /// A builder that moves its body to a temporary file in `objects_dir/pack`
    /// as it grows (above 8 MiB held in memory).
    pub fn spilling(objects_dir: &Path) -> Self {
        let mut b = Self::new();
        b.spill = Some(Spill::Pending(objects_dir.join("pack")));
        b
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The absolute offset of the next byte.
    fn end(&self) -> u64 {
        self.flushed + self.body.len() as u64
    }

    /// Moves the body to the spill file once it is large enough.
    fn maybe_spill(&mut self) -> Result<(), StoreError> {
        if self.body.len() < SPILL_AT {
            return Ok(());
        }
        let Some(spill) = &mut self.spill else {
            return Ok(());
        };
        let file = spill.file()?;
        file.1
            .write_all(&self.body)
            .map_err(|e| StoreError::io(&file.0.0, e))?;
        self.flushed += self.body.len() as u64;
        self.body.clear();
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an object (once per id) and returns its id.
    pub fn add(&mut self, kind: ObjKind, data: &[u8]) -> Result<Oid, StoreError> {
        let oid = object_id(kind, data);
        if !self.seen.insert(oid) {
            return Ok(oid);
        }
        let offset = self.end();
        let start = self.body.len();
        let z = if kind == ObjKind::Tree {
            &mut self.deflate_fast
        } else {
            &mut self.deflate
        };
        encode_entry(z, kind, data, &mut self.body);
        let crc = crc32fast::hash(&self.body[start..]);
        self.entries.push(Entry { oid, crc, offset });
        self.maybe_spill()?;
        Ok(oid)
    }

    /// Adds a blob deflated beforehand (once per id), copying its entry.
    pub fn add_packed(&mut self, p: &Packed) -> Result<Oid, StoreError> {
        if !self.seen.insert(p.oid) {
            return Ok(p.oid);
        }
        let offset = self.end();
        self.body.extend_from_slice(&p.entry());
        self.entries.push(Entry {
            oid: p.oid,
            crc: p.crc,
            offset,
        });
        self.maybe_spill()?;
        Ok(p.oid)
    }

    /// Appends the objects of another builder (built on another thread, in
    /// memory), leaving out those this one already holds.
    pub fn absorb(&mut self, other: PackBuilder) -> Result<(), StoreError> {
        debug_assert!(
            other.spill.is_none(),
            "only in-memory builders are absorbed"
        );
        let ends = other
            .entries
            .iter()
            .skip(1)
            .map(|e| e.offset as usize)
            .chain(std::iter::once(other.body.len()));
        for (e, end) in other.entries.iter().zip(ends) {
            if !self.seen.insert(e.oid) {
                continue;
            }
            let offset = self.end();
            self.body
                .extend_from_slice(&other.body[e.offset as usize..end]);
            self.entries.push(Entry {
                oid: e.oid,
                crc: e.crc,
                offset,
            });
            self.maybe_spill()?;
        }
        Ok(())
    }

    /// Writes the pack and its index into `objects_dir/pack/`. Returns the
    /// pack's path, or `None` when there was nothing to write.
    ///
    /// Both files are written under temporary names (`tmp_cleartrail_*`,
    /// removed on any failure), flushed to disk, then renamed into place,
    /// pack first (git reads a pack only through its index), and the
    /// folder is flushed so the renames survive a power cut.
    pub fn finish(mut self, objects_dir: &Path) -> Result<Option<PathBuf>, StoreError> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let n = self.entries.len() as u32;
        let mut header = [0u8; 12];
        header[0..4].copy_from_slice(b"PACK");
        header[4..8].copy_from_slice(&2u32.to_be_bytes());
        header[8..12].copy_from_slice(&n.to_be_bytes());
        let dir = objects_dir.join("pack");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let (tmp_pack, pack_sum) = match self.spill.take() {
            Some(Spill::Open((tmp, mut f))) => {
                // The body is on disk: finish it, put the header in, and
                // hash the file as written (it is in the page cache).
                use std::io::{Read, Seek, SeekFrom};
                let io = |e| StoreError::io(&tmp.0, e);
                f.write_all(&self.body).map_err(io)?;
                self.body = Vec::new();
                f.seek(SeekFrom::Start(0)).map_err(io)?;
                f.write_all(&header).map_err(io)?;
                f.seek(SeekFrom::Start(0)).map_err(io)?;
                let mut h = Sha1::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let got = f.read(&mut buf).map_err(io)?;
                    if got == 0 {
                        break;
                    }
                    h.update(&buf[..got]);
                }
                let sum: [u8; 20] = h.finalize().into();
                f.write_all(&sum).and_then(|()| f.sync_all()).map_err(io)?;
                (tmp, sum)
            }
            _ => {
                self.body[0..12].copy_from_slice(&header);
                // The pack's name is its checksum, not known until the body
                // is hashed: write the body to a unique temporary file while
                // a second thread hashes it.
                let tmp_pack = TempFile(temp_path(&dir, "pack"));
                let body = &self.body;
                let sum = std::thread::scope(|scope| -> Result<_, StoreError> {
                    let hasher = scope.spawn(|| -> [u8; 20] { Sha1::digest(body).into() });
                    let mut f = create(&tmp_pack.0)?;
                    f.write_all(body)
                        .map_err(|e| StoreError::io(&tmp_pack.0, e))?;
                    let sum = hasher.join().expect("hashing does not panic");
                    f.write_all(&sum)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| StoreError::io(&tmp_pack.0, e))?;
                    Ok(sum)
                })?;
                (tmp_pack, sum)
            }
        };

        self.entries
            .sort_unstable_by(|a, b| a.oid.as_bytes().cmp(b.oid.as_bytes()));
        let idx = build_index(&self.entries, &pack_sum);
        let tmp_idx = TempFile(temp_path(&dir, "idx"));
        let mut f = create(&tmp_idx.0)?;
        f.write_all(&idx)
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io(&tmp_idx.0, e))?;
        drop(f);

        let name = format!("pack-{}", hex(&pack_sum));
        let pack_path = dir.join(format!("{name}.pack"));
        let idx_path = dir.join(format!("{name}.idx"));
        // The same checksum means the same objects: a pack already there
        // (an earlier identical write) is kept as it is.
        if !(pack_path.exists() && idx_path.exists()) {
            std::fs::rename(&tmp_pack.0, &pack_path).map_err(|e| StoreError::io(&pack_path, e))?;
            if let Err(e) = std::fs::rename(&tmp_idx.0, &idx_path) {
                // A pack without its index is never read: do not leave it.
                let _ = std::fs::remove_file(&pack_path);
                return Err(StoreError::io(&idx_path, e));
            }
            super::recover::sync_dir(&dir);
        }
        Ok(Some(pack_path))
    }
}

/// Appends a pack entry for `data`: the type-and-size header, then the
/// zlib stream.
fn encode_entry(z: &mut Compress, kind: ObjKind, data: &[u8], out: &mut Vec<u8>) {
    // Entry header: type and size, size in little-endian 7-bit groups.
    let mut size = data.len() as u64;
    let mut byte = ((kind as u8) << 4) | (size as u8 & 0x0f);
    size >>= 4;
    while size != 0 {
        out.push(byte | 0x80);
        byte = size as u8 & 0x7f;
        size >>= 7;
    }
    out.push(byte);
    z.reset();
    // Deflate's worst case is the input plus 5 bytes per 16 KiB block
    // and a few of framing: reserve it, so the output never regrows.
    out.reserve(data.len() + data.len() / 16_384 * 5 + 64);
    loop {
        let consumed = z.total_in() as usize;
        let status = z
            .compress_vec(&data[consumed..], out, FlushCompress::Finish)
            .expect("deflating into memory cannot fail");
        if status == Status::StreamEnd {
            break;
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// A blob already deflated into its pack entry: a quarter of its size,
/// and nothing left to compress when it is written. Entries deflated
/// together share one buffer: a small allocation per artifact, kept while
/// larger ones around it are freed, fragmented the heap to several times
/// what was live.
#[derive(Debug, Clone)]
pub struct Packed {
    pub oid: Oid,
    /// The size of the blob itself.
    pub size: usize,
    crc: u32,
    slab: Slab,
    start: u64,
    len: usize,
}

/// Where deflated entries wait for the commit.
#[derive(Debug, Clone)]
enum Slab {
    Memory(std::sync::Arc<[u8]>),
    /// The run's spill file (see [`Packed::many_spilled`]); `start` is an
    /// offset in it.
    Spilled(&'static SpillFile),
}

/// An anonymous temporary file (unlinked at creation, gone with the
/// process) that deflated artifacts are appended to as they are
/// collected: a cold run of 200,000 artifacts holds 120 MB of them until
/// its commit, and that memory is better spent on judging them.
#[derive(Debug)]
pub struct SpillFile {
    file: std::fs::File,
    end: std::sync::Mutex<u64>,
}

impl SpillFile {
    /// The process's spill file, created on first use in the system's
    /// temporary folder; `None` (and entries stay in memory) when it
    /// cannot be created.
    fn get() -> Option<&'static SpillFile> {
        static SPILL: std::sync::OnceLock<Option<SpillFile>> = std::sync::OnceLock::new();
        SPILL
            .get_or_init(|| match tempfile::tempfile() {
                Ok(file) => Some(SpillFile {
                    file,
                    end: std::sync::Mutex::new(0),
                }),
                Err(e) => {
                    tracing::debug!("no spill file ({e}): prepared artifacts stay in memory");
                    None
                }
            })
            .as_ref()
    }

    /// Appends `buf`, returning its offset; `None` on a write error (the
    /// caller keeps the buffer in memory instead).
    fn append(&self, buf: &[u8]) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        let at = *end;
        if let Err(e) = self.file.write_all_at(buf, at) {
            tracing::debug!("spill file write failed ({e}): keeping entries in memory");
            return None;
        }
        *end += buf.len() as u64;
        Some(at)
    }
}

impl PartialEq for Packed {
    fn eq(&self, other: &Self) -> bool {
        self.oid == other.oid
    }
}

impl Eq for Packed {}

impl Packed {
    /// Deflates each blob, in order, into one shared buffer.
    pub fn many<'a>(blobs: impl Iterator<Item = &'a [u8]>) -> Vec<Packed> {
        Self::deflate(blobs, Compression::default(), false)
    }

    /// Like [`Packed::many`], with the buffer written to the process's
    /// spill file (kept in memory when there is none).
    pub fn many_spilled<'a>(blobs: impl Iterator<Item = &'a [u8]>) -> Vec<Packed> {
        Self::deflate(blobs, Compression::default(), true)
    }

    /// Like [`Packed::many`], deflated fast: for files rendered on the one
    /// thread that judges (pages of tables, rewritten whenever evidence
    /// changes), where the default level cost more than the rendering.
    pub fn many_quick<'a>(blobs: impl Iterator<Item = &'a [u8]>) -> Vec<Packed> {
        Self::deflate(blobs, Compression::fast(), false)
    }

    fn deflate<'a>(
        blobs: impl Iterator<Item = &'a [u8]>,
        level: Compression,
        spill: bool,
    ) -> Vec<Packed> {
        let mut z = Compress::new(level, true);
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for data in blobs {
            let start = buf.len();
            encode_entry(&mut z, ObjKind::Blob, data, &mut buf);
            spans.push((
                object_id(ObjKind::Blob, data),
                data.len(),
                crc32fast::hash(&buf[start..]),
                start as u64,
                buf.len() - start,
            ));
        }
        let spilled = if spill {
            SpillFile::get().and_then(|f| Some((f, f.append(&buf)?)))
        } else {
            None
        };
        let (slab, base) = match spilled {
            Some((f, at)) => (Slab::Spilled(f), at),
            None => (Slab::Memory(buf.into()), 0),
        };
        spans
            .into_iter()
            .map(|(oid, size, crc, start, len)| Packed {
                oid,
                size,
                crc,
                slab: slab.clone(),
                start: base + start,
                len,
            })
            .collect()
    }

    /// The pack entry (header and deflated data).
    fn entry(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.slab {
            Slab::Memory(m) => {
                let start = self.start as usize;
                std::borrow::Cow::Borrowed(&m[start..start + self.len])
            }
            Slab::Spilled(f) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0; self.len];
                // The file is this process's own, written moments ago: a
                // read failing is the disk failing under the run.
                f.file
                    .read_exact_at(&mut buf, self.start)
                    .expect("reading back the run's own spill file");
                std::borrow::Cow::Owned(buf)
            }
        }
    }

    /// The blob's bytes.
    pub fn inflate(&self) -> Vec<u8> {
        let entry = self.entry();
        let entry = &entry[..];
        let header = entry
            .iter()
            .position(|b| b & 0x80 == 0)
            .map_or(0, |i| i + 1);
        thread_local! {
            // One inflate state per thread, reset for each entry: a fresh
            // one per artifact cost more than inflating it.
            static Z: std::cell::RefCell<flate2::Decompress> =
                std::cell::RefCell::new(flate2::Decompress::new(true));
        }
        let mut out = Vec::with_capacity(self.size);
        Z.with(|z| {
            let mut z = z.borrow_mut();
            z.reset(true);
            z.decompress_vec(&entry[header..], &mut out, flate2::FlushDecompress::Finish)
                .expect("an entry this process deflated inflates");
        });
        out
    }
}

/// Where a spilling builder's body goes: not created until needed.
enum Spill {
    Pending(PathBuf),
    Open((TempFile, std::fs::File)),
}

impl Spill {
    fn file(&mut self) -> Result<&mut (TempFile, std::fs::File), StoreError> {
        if let Spill::Pending(dir) = self {
            std::fs::create_dir_all(&*dir).map_err(|e| StoreError::io(dir, e))?;
            let tmp = TempFile(temp_path(dir, "pack"));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp.0)
                .map_err(|e| StoreError::io(&tmp.0, e))?;
            *self = Spill::Open((tmp, f));
        }
        match self {
            Spill::Open(pair) => Ok(pair),
            Spill::Pending(_) => unreachable!("opened above"),
        }
    }
}

/// A temporary file, removed when dropped unless renamed away first.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn create(path: &Path) -> Result<std::fs::File, StoreError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

fn build_index(entries: &[Entry], pack_sum: &[u8; 20]) -> Vec<u8> {
    let mut idx = Vec::with_capacity(8 + 256 * 4 + entries.len() * 28 + 40);
    idx.extend_from_slice(&[0xff, b't', b'O', b'c']);
    idx.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for e in entries {
        fanout[e.oid.as_bytes()[0] as usize] += 1;
    }
    let mut running = 0u32;
    for slot in fanout.iter_mut() {
        running += *slot;
        *slot = running;
    }
    for f in fanout {
        idx.extend_from_slice(&f.to_be_bytes());
    }
    for e in entries {
        idx.extend_from_slice(e.oid.as_bytes());
    }
    for e in entries {
        idx.extend_from_slice(&e.crc.to_be_bytes());
    }
    // Offsets of 2 GiB and more go to the 8-byte table, flagged by the top bit.
    let mut large: Vec<u64> = Vec::new();
    for e in entries {
        if e.offset < 0x8000_0000 {
            idx.extend_from_slice(&(e.offset as u32).to_be_bytes());
        } else {
            idx.extend_from_slice(&(0x8000_0000u32 | large.len() as u32).to_be_bytes());
            large.push(e.offset);
        }
    }
    for off in large {
        idx.extend_from_slice(&off.to_be_bytes());
    }
    idx.extend_from_slice(pack_sum);
    let idx_sum: [u8; 20] = Sha1::digest(&idx).into();
    idx.extend_from_slice(&idx_sum);
    idx
}

/// A temporary file name unique to this process and call, so concurrent
/// writers (threads or processes) never share one.
fn temp_path(dir: &Path, ext: &str) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(
        "{}{}_{seq}.{ext}",
        super::recover::TEMP_PREFIX,
        std::process::id()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_match_git() {
        // `git hash-object` of "hello\n" and of the empty tree.
        assert_eq!(
            object_id(ObjKind::Blob, b"hello\n").to_string(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            object_id(ObjKind::Tree, b"").to_string(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }

    /// Git itself accepts the pack (it re-hashes every object and checks
    /// the index's offsets and CRCs), and libgit2 reads each object back.
    fn assert_pack_holds(repo: &git2::Repository, pack: &Path, ids: &[(Oid, Vec<u8>)]) {
        verify_pack(&pack.with_extension("idx"));
        let odb = repo.odb().unwrap();
        odb.refresh().unwrap();
        for (oid, data) in ids {
            assert_eq!(odb.read(*oid).unwrap().data(), &data[..]);
        }
    }

    /// `git verify-pack -v` of a pack's index: it must pass; what it lists.
    fn verify_pack(idx: &Path) -> String {
        let out = std::process::Command::new("git")
            .args(["verify-pack", "-v"])
            .arg(idx)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Bytes deflate cannot shrink, so a few objects cross [`SPILL_AT`].
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn blobs_deflated_beforehand_inflate_and_pack_as_themselves() {
        let blobs: Vec<Vec<u8>> = (0..50u64)
            .map(|i| {
                format!("{{\"n\": {i}}}\n")
                    .repeat(i as usize + 1)
                    .into_bytes()
            })
            .chain([Vec::new(), noise(7, 70_000)])
            .collect();
        let mut packed = Packed::many(blobs.iter().map(Vec::as_slice));
        // Spilled to the process's temporary file, and deflated fast:
        // the same blobs, read back from where they wait.
        let spilled = Packed::many_spilled(blobs.iter().map(Vec::as_slice));
        assert!(spilled.iter().all(|p| matches!(p.slab, Slab::Spilled(_))));
        let quick = Packed::many_quick(blobs.iter().map(Vec::as_slice));
        for set in [&packed, &spilled, &quick] {
            for (p, b) in set.iter().zip(&blobs) {
                assert_eq!(&p.inflate(), b);
                assert_eq!(p.oid, object_id(ObjKind::Blob, b));
            }
        }
        // Half of the pack from the spill file, half from memory.
        let half = blobs.len() / 2;
        packed.splice(half.., spilled.into_iter().skip(half));
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let mut pb = PackBuilder::new();
        for p in &packed {
            pb.add_packed(p).unwrap();
        }
        // The same blob compressed here is stored once.
        pb.add(ObjKind::Blob, &blobs[3]).unwrap();
        assert_eq!(pb.len(), blobs.len());
        let pack = pb.finish(&dir.path().join("objects")).unwrap().unwrap();
        let ids: Vec<(Oid, Vec<u8>)> = packed.iter().map(|p| p.oid).zip(blobs).collect();
        assert_pack_holds(&repo, &pack, &ids);
    }

    #[test]
    fn a_spilled_pack_is_the_same_valid_pack() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let objects = dir.path().join("objects");
        let mut pb = PackBuilder::spilling(&objects);
        let mut ids = Vec::new();
        for i in 0..5u64 {
            let data = noise(i, 3 << 20);
            ids.push((pb.add(ObjKind::Blob, &data).unwrap(), data));
        }
        assert!(pb.flushed > 0, "15 MiB of noise must have spilled");
        // An in-memory builder (a tree thread's) joins a spilled one.
        let mut other = PackBuilder::new();
        let small = b"small\n".to_vec();
        ids.push((other.add(ObjKind::Blob, &small).unwrap(), small));
        pb.absorb(other).unwrap();
        let pack = pb.finish(&objects).unwrap().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(objects.join("pack"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with("pack-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        assert_pack_holds(&repo, &pack, &ids);
    }

    #[test]
    fn libgit2_reads_every_object_of_a_written_pack() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let mut pb = PackBuilder::new();
        let mut ids = Vec::new();
        for i in 0..2000 {
            let data = format!("object {i}\n").repeat(i % 7 + 1);
            ids.push((pb.add(ObjKind::Blob, data.as_bytes()).unwrap(), data));
        }
        // A duplicate is stored once.
        pb.add(ObjKind::Blob, ids[0].1.as_bytes()).unwrap();
        assert_eq!(pb.len(), 2000);
        // Objects built elsewhere join, duplicates again once.
        let mut other = PackBuilder::new();
        other.add(ObjKind::Blob, ids[1].1.as_bytes()).unwrap();
        let extra = b"only in the other builder\n".to_vec();
        ids.push((
            other.add(ObjKind::Blob, &extra).unwrap(),
            String::from_utf8(extra).unwrap(),
        ));
        pb.absorb(other).unwrap();
        assert_eq!(pb.len(), 2001);
        pb.finish(&dir.path().join("objects")).unwrap().unwrap();
        let odb = repo.odb().unwrap();
        odb.refresh().unwrap();
        for (oid, data) in &ids {
            let obj = odb.read(*oid).unwrap();
            assert_eq!(obj.data(), data.as_bytes());
            assert_eq!(obj.kind(), git2::ObjectType::Blob);
        }
        // libgit2's hash checks are process-wide and another test may
        // have changed them: git itself re-hashes every object of the
        // pack and checks the index's offsets and CRCs.
        let pack = std::fs::read_dir(dir.path().join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "idx"))
            .unwrap();
        let listed = verify_pack(&pack);
        for (oid, _) in &ids {
            assert!(
                listed.contains(&format!("{oid} blob")),
                "{oid} not in the pack"
            );
        }
    }
}
