//! Read-only views of one tree of the evidence repository.
//!
//! A run asks for thousands of paths of the same tree. Resolving each one
//! from the root (`Tree::get_path`) re-reads and re-parses every folder on
//! the way, including a folder of tens of thousands of entries, once per
//! lookup. A [`Snapshot`] instead walks its tree once, on first use, into a
//! sorted index of every file path and folder path; lookups are binary
//! searches and a folder's files are one contiguous range of that index.
//!
//! Objects are read through libgit2's object database, which re-hashes
//! what it reads: a forged object fails the read with an error naming it.
//! Bulk readers (threads given a [`BlobReader`] or work through
//! [`Snapshot::on_two_threads`]) read whole objects from the packs
//! themselves, with the same hash check (`packed.rs`).

use super::StoreError;
use super::packed::{Inflater, PackedObjects};
use super::tree::parse_tree;
use git2::{Oid, Repository};
use std::cell::OnceCell;
use std::sync::Arc;

/// How deep folders may nest below the root of a snapshot.
const MAX_DEPTH: usize = 64;

/// Every file (blob or symlink) and folder of a tree, by full path, each
/// list sorted by its path's bytes.
#[derive(Debug, Default)]
struct Index {
    /// Shared: held evidence keeps these paths rather than copies.
    files: Vec<(Arc<str>, Oid)>,
    dirs: Vec<String>,
}

impl Index {
    /// Reads `root` and every tree below it, once each.
    fn build(repo: &Repository, root: Oid) -> Result<Index, StoreError> {
        let odb = repo
            .odb()
            .map_err(|e| StoreError::git("opening the object database", e))?;
        let mut index = Index::default();
        index.read_tree(&odb, "", root, 0)?;
        // Git orders a tree's entries as these paths sort (a folder as its
        // name and a slash), so the walk gave them in order and sorting
        // only confirms it in one pass; a tree written out of order still
        // ends up sorted here.
        index.files.sort_unstable();
        index.dirs.sort_unstable();
        Ok(index)
    }

    /// Adds the entries of the tree `id` at folder `dir` (`depth` folders
    /// below the root), each folder's entries read where it stands among
    /// its siblings.
    fn read_tree(
        &mut self,
        odb: &git2::Odb<'_>,
        dir: &str,
        id: Oid,
        depth: usize,
    ) -> Result<(), StoreError> {
        // The evidence layout is seven folders deep; a tree nested far
        // deeper was made to exhaust the stack of whoever walks it.
        if depth > MAX_DEPTH {
            return Err(StoreError::Corrupt {
                what: format!(
                    "{}: folders nested deeper than {MAX_DEPTH}",
                    tree_what(dir, id)
                ),
            });
        }
        let obj = read_tree_object(odb, dir, id)?;
        let entries = parse_tree_of(&obj, dir, id)?;
        // One buffer for every path: each file's path is then allocated
        // once, as the shared string the index keeps.
        let mut path = String::new();
        for e in entries {
            path.clear();
            if !dir.is_empty() {
                path.push_str(dir);
                path.push('/');
            }
            path.push_str(&String::from_utf8_lossy(e.name));
            match e.mode {
                b"40000" => {
                    self.dirs.push(path.clone());
                    self.read_tree(odb, &path, e.oid, depth + 1)?;
                }
                // Submodule links are not files of the evidence.
                b"160000" => {}
                _ => self.files.push((Arc::from(path.as_str()), e.oid)),
            }
        }
        Ok(())
    }
}

/// The positions of `sorted` whose paths lie below the folder `prefix`
/// (no trailing slash; everything for the empty prefix): one contiguous
/// range, since the paths are sorted by their bytes.
pub fn folder_range<T>(
    sorted: &[T],
    key: impl Fn(&T) -> &str,
    prefix: &str,
) -> std::ops::Range<usize> {
    if prefix.is_empty() {
        return 0..sorted.len();
    }
    let lo = format!("{prefix}/");
    let start = sorted.partition_point(|t| key(t) < lo.as_str());
    let len = sorted[start..].partition_point(|t| key(t).starts_with(&lo));
    start..start + len
}

/// The position of the file `path` in `files`, sorted by path (a
/// snapshot's index, or a slice of it).
pub fn file_position(files: &[(Arc<str>, Oid)], path: &str) -> Option<usize> {
    files.binary_search_by(|(p, _)| (**p).cmp(path)).ok()
}

/// Every file that differs between the trees `a` and `b` (either side
/// may be absent) under folder `dir`, as (path, old blob, new blob),
/// appended to `out` in no particular order. A subtree with the same id
/// on both sides is skipped unread. Trees are read straight from the
/// object database (hash-checked), without libgit2's diff machinery, which
/// kept a record per changed file, and its object cache, for the rest of
/// the run: at a first proposal of 200,000 files that was tens of MiB
/// beside the evaluation.
pub(super) fn diff_trees(
    odb: &git2::Odb<'_>,
    dir: &str,
    a: Option<Oid>,
    b: Option<Oid>,
    out: &mut Vec<(String, Option<Oid>, Option<Oid>)>,
    depth: usize,
) -> Result<(), StoreError> {
    if a == b {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(StoreError::Corrupt {
            what: format!("{dir}: folders nested deeper than {MAX_DEPTH}"),
        });
    }
    // name -> (is a folder, id), for each side.
    type Side = std::collections::BTreeMap<Vec<u8>, (bool, Oid)>;
    let read = |id: Option<Oid>| -> Result<Side, StoreError> {
        let Some(id) = id else {
            return Ok(Side::new());
        };
        let obj = read_tree_object(odb, dir, id)?;
        Ok(parse_tree_of(&obj, dir, id)?
            .into_iter()
            .map(|e| (e.name.to_vec(), (e.is_tree, e.oid)))
            .collect())
    };
    let (left, right) = (read(a)?, read(b)?);
    let names: std::collections::BTreeSet<&Vec<u8>> = left.keys().chain(right.keys()).collect();
    for name in names {
        let path = if dir.is_empty() {
            String::from_utf8_lossy(name).into_owned()
        } else {
            format!("{dir}/{}", String::from_utf8_lossy(name))
        };
        let (l, r) = (left.get(name), right.get(name));
        let sub = |side: Option<&(bool, Oid)>| side.filter(|(t, _)| *t).map(|(_, id)| *id);
        let file = |side: Option<&(bool, Oid)>| side.filter(|(t, _)| !*t).map(|(_, id)| *id);
        // A folder on either side is walked; a file on either side is
        // compared (a name that changed kind is both).
        if sub(l).is_some() || sub(r).is_some() {
            diff_trees(odb, &path, sub(l), sub(r), out, depth + 1)?;
        }
        let (fl, fr) = (file(l), file(r));
        if fl != fr {
            out.push((path, fl, fr));
        }
    }
    Ok(())
}

/// How an error names the tree `id` at folder `dir`.
fn tree_what(dir: &str, id: Oid) -> String {
    if dir.is_empty() {
        format!("tree {id} (the root folder)")
    } else {
        format!("tree {id} (folder {dir})")
    }
}

/// The tree object `id` at folder `dir`, hash-checked by the object
/// database; any other kind of object there is damage.
fn read_tree_object<'o>(
    odb: &'o git2::Odb<'_>,
    dir: &str,
    id: Oid,
) -> Result<git2::OdbObject<'o>, StoreError> {
    let obj = odb
        .read(id)
        .map_err(|e| StoreError::git(format!("reading {}", tree_what(dir, id)), e))?;
    if obj.kind() != git2::ObjectType::Tree {
        return Err(StoreError::Corrupt {
            what: tree_what(dir, id),
        });
    }
    Ok(obj)
}

/// The entries of a tree object read by [`read_tree_object`].
fn parse_tree_of<'a>(
    obj: &'a git2::OdbObject<'_>,
    dir: &str,
    id: Oid,
) -> Result<Vec<super::tree::RawEntry<'a>>, StoreError> {
    parse_tree(obj.data()).ok_or_else(|| StoreError::Corrupt {
        what: tree_what(dir, id),
    })
}

/// A way to read blobs, as the work given to [`Snapshot::on_two_threads`]
/// receives it.
pub type ReadBlob<'a> = dyn Fn(Oid) -> Result<Vec<u8>, StoreError> + 'a;

/// The positions `0..len` handed out in chunks to whichever thread asks
/// next, so that two threads reading a list of blobs finish together
/// (halves do not: one handle's reads are slower than the other's).
pub struct Chunks {
    next: std::sync::atomic::AtomicUsize,
    len: usize,
    size: usize,
}

impl Chunks {
    pub fn new(len: usize, size: usize) -> Self {
        Chunks {
            next: std::sync::atomic::AtomicUsize::new(0),
            len,
            size: size.max(1),
        }
    }

    /// The next chunk of positions, until there are none left.
    pub fn take(&self) -> Option<std::ops::Range<usize>> {
        let start = self
            .next
            .fetch_add(self.size, std::sync::atomic::Ordering::Relaxed);
        (start < self.len).then(|| start..(start + self.size).min(self.len))
    }
}

/// Reads blobs through a repository handle of its own (see
/// [`Snapshot::reader`]).
pub struct BlobReader<'p> {
    repo: Repository,
    reading: Reading<'p>,
}

impl BlobReader<'_> {
    /// The bytes of the blob `id`, as [`Snapshot::read_blob`] gives them.
    pub fn read(&self, id: Oid) -> Result<Vec<u8>, StoreError> {
        self.reading.blob(&self.repo, id)
    }
}

/// One thread's way through many blobs: whole objects straight from the
/// packs (see `packed.rs`), anything else through libgit2. Both check
/// every object's hash.
struct Reading<'p> {
    packs: &'p PackedObjects,
    inflater: std::cell::RefCell<Inflater>,
}

impl<'p> Reading<'p> {
    fn new(packs: &'p PackedObjects) -> Self {
        Reading {
            packs,
            inflater: std::cell::RefCell::new(Inflater::new()),
        }
    }

    fn blob(&self, repo: &Repository, id: Oid) -> Result<Vec<u8>, StoreError> {
        match self.packs.read(id, &mut self.inflater.borrow_mut()) {
            Some((git2::ObjectType::Blob, data)) => Ok(data),
            // Not a blob: libgit2's read names what it is.
            _ => read_blob_in(repo, id, None),
        }
    }
}

/// Straight from the object database, which checks the hash: a blob read
/// as a `git2::Blob` also went through libgit2's object cache and its
/// lock, which reading 200,000 blobs once each gains nothing from.
/// `path`, when known, is named in the error.
fn read_blob_in(repo: &Repository, id: Oid, path: Option<&str>) -> Result<Vec<u8>, StoreError> {
    let odb = repo
        .odb()
        .map_err(|e| StoreError::git("opening the object database", e))?;
    // Empty (no allocation) on the hot path, where no path is known.
    let at = path.map(|p| format!(" ({p})")).unwrap_or_default();
    let obj = odb
        .read(id)
        .map_err(|e| StoreError::git(format!("reading blob {id}{at}"), e))?;
    if obj.kind() != git2::ObjectType::Blob {
        return Err(StoreError::Corrupt {
            what: format!(
                "object {id}{at}, a {} where a file's blob belongs",
                obj.kind()
            ),
        });
    }
    Ok(obj.data().to_vec())
}

/// Read-only access to the files of one tree (usually a commit's) of the
/// evidence repository.
pub struct Snapshot<'r> {
    repo: &'r Repository,
    tree: Option<Oid>,
    index: OnceCell<Index>,
    /// Lookups answered so far by walking the tree (see [`DIRECT_LOOKUPS`]).
    direct: std::cell::Cell<u32>,
    /// The packs as bulk readers find them, mapped on first use.
    packs: OnceCell<PackedObjects>,
}

/// How many lookups a snapshot answers by walking down its tree before it
/// builds its index: one asked for a few paths (the query states saved on
/// the branch, read before collection) never lists 200,000 files, and one
/// asked for many builds the index soon.
const DIRECT_LOOKUPS: u32 = 32;

impl<'r> Snapshot<'r> {
    pub(super) fn new(repo: &'r Repository, tree: Option<Oid>) -> Self {
        Snapshot {
            repo,
            tree,
            index: OnceCell::new(),
            direct: std::cell::Cell::new(0),
            packs: OnceCell::new(),
        }
    }

    fn packs(&self) -> &PackedObjects {
        self.packs
            .get_or_init(|| PackedObjects::open(&self.repo.commondir().join("objects")))
    }

    /// The repository's git folder, for readers on other threads (a
    /// `Repository` handle is not shared between threads).
    pub fn git_dir(&self) -> &std::path::Path {
        self.repo.path()
    }

    /// Whether there is no tree at all (no commit yet).
    pub fn is_empty(&self) -> bool {
        self.tree.is_none()
    }

    /// The root tree's id, `None` when there is no tree.
    pub fn tree_id(&self) -> Option<Oid> {
        self.tree
    }

    /// The root tree to walk down from instead of building the index, while
    /// this snapshot has answered fewer than [`DIRECT_LOOKUPS`] lookups.
    fn walk_instead(&self) -> Option<Oid> {
        let root = self.tree?;
        if self.index.get().is_some() || self.direct.get() >= DIRECT_LOOKUPS {
            return None;
        }
        self.direct.set(self.direct.get() + 1);
        Some(root)
    }

    fn odb(&self) -> Result<git2::Odb<'r>, StoreError> {
        self.repo
            .odb()
            .map_err(|e| StoreError::git("opening the object database", e))
    }

    /// The entry at `path` below the tree `root`, read folder by folder:
    /// its id and whether it is a folder; `None` when nothing is there.
    /// Damage on the way is an error, as it is when the index is built.
    fn walk_to(&self, root: Oid, path: &str) -> Result<Option<(Oid, bool)>, StoreError> {
        let odb = self.odb()?;
        let mut at = (root, true);
        let mut dir = String::new();
        for name in path.split('/') {
            if !at.1 {
                return Ok(None);
            }
            let obj = read_tree_object(&odb, &dir, at.0)?;
            let entries = parse_tree_of(&obj, &dir, at.0)?;
            let Some(e) = entries.iter().find(|e| e.name == name.as_bytes()) else {
                return Ok(None);
            };
            at = match e.mode {
                b"40000" => (e.oid, true),
                b"160000" => return Ok(None),
                _ => (e.oid, false),
            };
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(name);
        }
        Ok(Some(at))
    }

    /// The index, built on first use. A failed build is not kept: the next
    /// call tries again and reports the same error.
    fn index(&self) -> Result<&Index, StoreError> {
        if let Some(i) = self.index.get() {
            return Ok(i);
        }
        let built = match self.tree {
            None => Index::default(),
            Some(t) => Index::build(self.repo, t)?,
        };
        Ok(self.index.get_or_init(|| built))
    }

    /// The blob id at `path`, if a file is there. A tree that cannot be
    /// read counts as no file here; use [`Snapshot::try_blob_id`] where
    /// "cannot read" must not be taken for "absent".
    pub fn blob_id(&self, path: &str) -> Option<Oid> {
        self.try_blob_id(path).ok().flatten()
    }

    /// The blob id at `path`: `Ok(None)` only when no file is there.
    pub fn try_blob_id(&self, path: &str) -> Result<Option<Oid>, StoreError> {
        if let Some(root) = self.walk_instead() {
            return Ok(self
                .walk_to(root, path)?
                .and_then(|(id, is_tree)| (!is_tree).then_some(id)));
        }
        let files = &self.index()?.files;
        Ok(file_position(files, path).map(|i| files[i].1))
    }

    /// The bytes of the file at `path`.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.try_blob_id(path)? {
            None => Ok(None),
            Some(id) => read_blob_in(self.repo, id, Some(path)).map(Some),
        }
    }

    /// The bytes of the blob `id`.
    pub fn read_blob(&self, id: Oid) -> Result<Vec<u8>, StoreError> {
        read_blob_in(self.repo, id, None)
    }

    /// A reader of this repository's blobs for another thread (a
    /// `Repository` handle is not shared between threads): reading
    /// 200,000 artifacts is split between two.
    pub fn reader(&self) -> Result<BlobReader<'_>, StoreError> {
        let dir = self.repo.path();
        let repo = Repository::open(dir).map_err(|e| {
            StoreError::git(format!("opening {} for a reader thread", dir.display()), e)
        })?;
        Ok(BlobReader {
            repo,
            reading: Reading::new(self.packs()),
        })
    }

    /// Runs `work` on this thread and on a second one with a repository
    /// handle of its own (a `Repository` is not shared between threads),
    /// each given its way to read blobs: reading and parsing 200,000
    /// artifacts is split between the two cores of a runner. Pair it with
    /// [`Chunks`] to share the work out.
    pub fn on_two_threads<T: Send>(
        &self,
        work: impl Fn(&ReadBlob<'_>) -> T + Sync,
    ) -> Result<[T; 2], StoreError> {
        let reader = self.reader()?;
        Ok(std::thread::scope(|scope| {
            let other = scope.spawn({
                let work = &work;
                move || work(&|id| reader.read(id))
            });
            let reading = Reading::new(self.packs());
            let mine = work(&|id| reading.blob(self.repo, id));
            [mine, other.join().expect("reader thread panicked")]
        }))
    }

    /// Every file below the folder `prefix` (no trailing slash; empty for
    /// the whole tree), as (path relative to the repository root, blob id),
    /// sorted by path.
    pub fn files_under(&self, prefix: &str) -> Result<Vec<(String, Oid)>, StoreError> {
        if let Some(root) = self.walk_instead() {
            let start = if prefix.is_empty() {
                Some((root, true))
            } else {
                self.walk_to(root, prefix)?
            };
            let Some((id, true)) = start else {
                return Ok(Vec::new());
            };
            let mut part = Index::default();
            part.read_tree(&self.odb()?, prefix, id, prefix.matches('/').count() + 1)?;
            part.files.sort_unstable();
            return Ok(part
                .files
                .into_iter()
                .map(|(p, id)| (p.to_string(), id))
                .collect());
        }
        Ok(self
            .files_below(prefix)?
            .iter()
            .map(|(p, id)| (p.to_string(), *id))
            .collect())
    }

    /// Like [`Snapshot::files_under`], borrowed from the index (whose
    /// paths held evidence shares): no copy of a 200,000-entry list.
    pub fn files_below(&self, prefix: &str) -> Result<&[(Arc<str>, Oid)], StoreError> {
        let files = &self.index()?.files;
        Ok(&files[folder_range(files, |(p, _)| p, prefix)])
    }

    /// Names of the immediate sub-folders of the folder `prefix` (empty
    /// for the root), sorted.
    pub fn dirs_under(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dirs = &self.index()?.dirs;
        let skip = if prefix.is_empty() {
            0
        } else {
            prefix.len() + 1
        };
        Ok(dirs[folder_range(dirs, |d| d.as_str(), prefix)]
            .iter()
            .map(|d| &d[skip..])
            .filter(|rest| !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }
}
