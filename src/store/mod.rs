//! The evidence repository: the one wrapper over git used to read and write
//! evidence.
//!
//! Writes never touch a work tree or index: blobs and trees are written
//! straight into the object database, only the subtrees on the path of a
//! change are rebuilt, and the branch is moved with a compare-and-swap on
//! its old value, so a concurrent writer is detected and never overwritten.
//! Works the same on bare and non-bare repositories.

pub mod pack;

use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use pack::{ObjKind, PackBuilder, object_id};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Above this many changed files, a change set is written as one packfile
/// (one file, one flush) rather than as loose objects (a file per object,
/// about 1 ms each on an ordinary disk).
const PACK_THRESHOLD: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} is not a git repository (run `cleartrail init {path}` or `git init` first)")]
    NotARepository { path: String },
    #[error("cannot open the evidence repository at {path}")]
    Open {
        path: String,
        #[source]
        source: git2::Error,
    },
    #[error("git: {context}")]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "branch `{branch}` moved while this run was writing (expected {expected}, another writer committed first)"
    )]
    Race { branch: String, expected: String },
    #[error("revision `{rev}` not found in the evidence repository")]
    UnknownRevision { rev: String },
    #[error("the evidence repository is damaged: cannot parse {what}")]
    Corrupt { what: String },
    #[error("invalid path `{path}` in a change set: {reason}")]
    BadPath { path: String, reason: &'static str },
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn git(context: impl Into<String>, source: git2::Error) -> Self {
        StoreError::Git {
            context: context.into(),
            source,
        }
    }

    /// Whether the error means another writer won the race for the branch.
    pub fn is_race(&self) -> bool {
        matches!(self, StoreError::Race { .. })
    }
}

/// A set of file changes against a base tree: new bytes, or deletion.
#[derive(Debug, Default, Clone)]
pub struct ChangeSet {
    entries: BTreeMap<String, Option<Vec<u8>>>,
}

impl ChangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, path: impl Into<String>, bytes: Vec<u8>) {
        self.entries.insert(path.into(), Some(bytes));
    }

    pub fn delete(&mut self, path: impl Into<String>) {
        self.entries.insert(path.into(), None);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Option<Vec<u8>>)> {
        self.entries.iter()
    }
}

/// The result of a commit attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The tree did not change: no commit was made.
    Unchanged { tip: Option<Oid> },
    /// A commit was made and the branch moved to it.
    Committed { commit: Oid, parent: Option<Oid> },
}

/// The evidence repository.
pub struct Store {
    repo: Repository,
    path: PathBuf,
}

/// Who commits evidence. The time is the run's clock.
pub struct Author {
    pub name: String,
    pub email: String,
    pub time: chrono::DateTime<chrono::Utc>,
}

impl Default for Author {
    fn default() -> Self {
        Author {
            name: "ClearTrail".into(),
            email: "cleartrail@users.noreply.github.com".into(),
            time: crate::clock::now(),
        }
    }
}

impl Store {
    /// Opens an existing repository (bare or not).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        tune_libgit2();
        match Repository::open(path) {
            Ok(repo) => Ok(Store {
                repo,
                path: path.to_path_buf(),
            }),
            Err(e) if e.code() == ErrorCode::NotFound => Err(StoreError::NotARepository {
                path: path.display().to_string(),
            }),
            Err(source) => Err(StoreError::Open {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Opens the repository, creating a non-bare one (branch `main`) when
    /// the folder does not exist or is empty.
    pub fn open_or_init(path: &Path) -> Result<Self, StoreError> {
        let empty = match std::fs::read_dir(path) {
            Ok(mut rd) => rd.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(StoreError::io(path, e)),
        };
        if empty {
            tune_libgit2();
            let mut opts = git2::RepositoryInitOptions::new();
            opts.initial_head("main").mkpath(true);
            let repo = Repository::init_opts(path, &opts).map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
            return Ok(Store {
                repo,
                path: path.to_path_buf(),
            });
        }
        Self::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    fn ref_name(branch: &str) -> String {
        format!("refs/heads/{branch}")
    }

    /// The commit a branch points at, if the branch exists.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<Oid>, StoreError> {
        match self.repo.refname_to_id(&Self::ref_name(branch)) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(StoreError::git(format!("reading branch {branch}"), e)),
        }
    }

    /// Resolves a revision (branch, tag, commit id, `HEAD`) to a commit.
    pub fn resolve(&self, rev: &str) -> Result<Oid, StoreError> {
        let obj = self
            .repo
            .revparse_single(rev)
            .map_err(|_| StoreError::UnknownRevision { rev: rev.into() })?;
        let commit = obj
            .peel_to_commit()
            .map_err(|_| StoreError::UnknownRevision { rev: rev.into() })?;
        Ok(commit.id())
    }

    /// The newest commit, walking first parents from `tip`, whose tree
    /// differs from its parent's anywhere but under the top-level folder
    /// `folder` (the root commit if none does).
    pub fn last_commit_outside(&self, tip: Oid, folder: &str) -> Result<Oid, StoreError> {
        let entries = |c: &git2::Commit<'_>| -> Result<Vec<(Vec<u8>, Oid)>, StoreError> {
            let tree = c
                .tree()
                .map_err(|e| StoreError::git(format!("reading commit {}", c.id()), e))?;
            Ok(tree
                .iter()
                .filter(|e| e.name_bytes() != folder.as_bytes())
                .map(|e| (e.name_bytes().to_vec(), e.id()))
                .collect())
        };
        let mut c = self
            .repo
            .find_commit(tip)
            .map_err(|e| StoreError::git(format!("reading commit {tip}"), e))?;
        loop {
            let Ok(parent) = c.parent(0) else {
                return Ok(c.id());
            };
            if entries(&c)? != entries(&parent)? {
                return Ok(c.id());
            }
            c = parent;
        }
    }

    /// A read-only view of the files of one commit.
    pub fn snapshot(&self, commit: Option<Oid>) -> Result<Snapshot<'_>, StoreError> {
        let tree = match commit {
            None => None,
            Some(c) => Some(
                self.repo
                    .find_commit(c)
                    .and_then(|c| c.tree())
                    .map_err(|e| StoreError::git(format!("reading commit {c}"), e))?,
            ),
        };
        Ok(Snapshot {
            repo: &self.repo,
            tree,
        })
    }

    /// Applies `changes` on top of the commit `base` and, when the
    /// resulting tree differs, commits it (with `base` as parent) and moves
    /// `branch` from `expected` to the new commit: a compare-and-swap that
    /// fails with [`StoreError::Race`] when the branch no longer points at
    /// `expected` (`None`: the branch must not exist yet). `base` differs
    /// from `expected` only when a new branch forks from another commit.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &self,
        branch: &str,
        expected: Option<Oid>,
        base: Option<Oid>,
        changes: &ChangeSet,
        message: &str,
        author: &Author,
    ) -> Result<CommitOutcome, StoreError> {
        let base_tree = match base {
            Some(c) => Some(
                self.repo
                    .find_commit(c)
                    .and_then(|c| c.tree())
                    .map_err(|e| StoreError::git(format!("reading commit {c}"), e))?,
            ),
            None => None,
        };
        let new_tree = self.write_tree(base_tree.as_ref(), changes)?;
        let unchanged = match (&base_tree, new_tree) {
            (Some(t), Some(n)) => t.id() == n,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return Ok(CommitOutcome::Unchanged { tip: base });
        }
        let tree_id = match new_tree {
            Some(t) => t,
            // Every file was removed: commit the empty tree.
            None => self
                .repo
                .odb()
                .and_then(|o| o.write(ObjectType::Tree, b""))
                .map_err(|e| StoreError::git("writing the empty tree", e))?,
        };
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(|e| StoreError::git("reading the new tree", e))?;
        let when = git2::Time::new(author.time.timestamp(), 0);
        let sig = Signature::new(&author.name, &author.email, &when)
            .map_err(|e| StoreError::git("building the commit signature", e))?;
        let parent = match base {
            Some(b) => Some(
                self.repo
                    .find_commit(b)
                    .map_err(|e| StoreError::git(format!("reading commit {b}"), e))?,
            ),
            None => None,
        };
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let commit = self
            .repo
            .commit(None, &sig, &sig, message, &tree, &parents)
            .map_err(|e| StoreError::git("writing the commit", e))?;
        self.move_branch(branch, expected, commit, message)?;
        Ok(CommitOutcome::Committed {
            commit,
            parent: base,
        })
    }

    /// Moves `branch` to `new` only if it still points at `expected`.
    fn move_branch(
        &self,
        branch: &str,
        expected: Option<Oid>,
        new: Oid,
        message: &str,
    ) -> Result<(), StoreError> {
        let name = Self::ref_name(branch);
        let reflog = format!("cleartrail: {}", message.lines().next().unwrap_or_default());
        let result = match expected {
            Some(old) => self.repo.reference_matching(&name, new, true, old, &reflog),
            None => self.repo.reference(&name, new, false, &reflog),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::Modified | ErrorCode::Locked | ErrorCode::Exists
                ) =>
            {
                Err(StoreError::Race {
                    branch: branch.into(),
                    expected: expected
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| "no branch yet".into()),
                })
            }
            Err(e) => Err(StoreError::git(format!("updating {name}"), e)),
        }
    }

    /// Writes the objects for `base` + `changes` and returns the root tree
    /// id (`None` for an empty tree). Only subtrees on the path of a change
    /// are read and rewritten.
    pub fn write_tree(
        &self,
        base: Option<&Tree<'_>>,
        changes: &ChangeSet,
    ) -> Result<Option<Oid>, StoreError> {
        let mut root = Dir::default();
        for (path, change) in changes.iter() {
            root.insert(path, change.as_deref())?;
        }
        let mut sink = if changes.len() > PACK_THRESHOLD {
            Sink::Pack(Box::default())
        } else {
            Sink::Loose(
                self.repo
                    .odb()
                    .map_err(|e| StoreError::git("opening the object database", e))?,
            )
        };
        let odb = self
            .repo
            .odb()
            .map_err(|e| StoreError::git("opening the object database", e))?;
        // Blobs first, in path order; then trees, whose rebuild (reading
        // and splicing the base trees) is what grows with the repository
        // and can use a second core.
        root.write_blobs(&mut sink)?;
        let id = build(
            &odb,
            self.repo.path(),
            base.map(|t| t.id()),
            &root,
            &mut sink,
            true,
        )?;
        if let Sink::Pack(pb) = sink {
            pb.finish(&self.repo.path().join("objects"))?;
            self.repo
                .odb()
                .and_then(|o| o.refresh())
                .map_err(|e| StoreError::git("refreshing the object database", e))?;
        }
        Ok(id)
    }
}

/// Builds the tree for `dir` on top of `base` (a tree id), writing new
/// trees to `sink`; blobs were written before. `split` allows handing half
/// of the changed subfolders to a second thread once, at the first level
/// where there are two or more.
fn build(
    odb: &git2::Odb<'_>,
    repo_path: &Path,
    base: Option<Oid>,
    dir: &Dir<'_>,
    sink: &mut Sink<'_>,
    split: bool,
) -> Result<Option<Oid>, StoreError> {
    // The base tree's raw bytes are spliced, not re-parsed into owned
    // entries: in a folder of thousands of artifacts, a change touches a
    // few entries and the rest are copied as they are.
    let obj = match base {
        Some(b) => Some(
            odb.read(b)
                .map_err(|e| StoreError::git(format!("reading tree {b}"), e))?,
        ),
        None => None,
    };
    let raw: &[u8] = obj.as_ref().map(|o| o.data()).unwrap_or_default();
    let base_entries = parse_tree(raw).ok_or_else(|| StoreError::Corrupt {
        what: format!("tree {}", base.map(|b| b.to_string()).unwrap_or_default()),
    })?;

    // Where each changed name sits in the base (sorted in Git's order, so
    // a binary search finds it whether it was a file or a folder).
    let find = |name: &[u8]| {
        [false, true].into_iter().find_map(|t| {
            base_entries
                .binary_search_by(|e| git_order(e.name, e.is_tree, name, t))
                .ok()
        })
    };
    let mut removed: Vec<usize> = Vec::new();
    let mut inserts: Vec<(Vec<u8>, bool, Oid)> = Vec::with_capacity(dir.children.len());
    let mut subdirs: Vec<(&str, &Dir<'_>, Option<Oid>)> = Vec::new();
    for (name, node) in &dir.children {
        let existing = find(name.as_bytes());
        removed.extend(existing);
        match node {
            Node::Blob(None) => {}
            Node::Blob(Some(bytes)) => {
                let oid = sink.write(ObjKind::Blob, bytes)?;
                inserts.push((name.as_bytes().to_vec(), false, oid));
            }
            Node::Written(oid) => inserts.push((name.as_bytes().to_vec(), false, *oid)),
            Node::Dir(sub) => {
                let sub_base = existing
                    .map(|i| &base_entries[i])
                    .filter(|e| e.is_tree)
                    .map(|e| e.oid);
                subdirs.push((name, sub, sub_base));
            }
        }
    }
    let parallel = split && subdirs.len() >= 2 && matches!(sink, Sink::Pack(_));
    let built: Vec<(&str, Option<Oid>)> = if parallel {
        build_split(odb, repo_path, &subdirs, sink)?
    } else {
        let mut out = Vec::with_capacity(subdirs.len());
        let pass_on = split && subdirs.len() == 1;
        for (name, sub, sub_base) in &subdirs {
            out.push((*name, build(odb, repo_path, *sub_base, sub, sink, pass_on)?));
        }
        out
    };
    for (name, oid) in built {
        if let Some(oid) = oid {
            inserts.push((name.as_bytes().to_vec(), true, oid));
        }
    }
    inserts.sort_by(|a, b| git_order(&a.0, a.1, &b.0, b.1));
    removed.sort_unstable();

    // Copy the base in runs between the changed entries, placing each new
    // entry at its position in Git's order.
    let mut out = Vec::with_capacity(raw.len() + inserts.len() * 64);
    let mut count = base_entries.len() - removed.len();
    let mut next = 0usize; // first base entry not yet copied
    let mut removed = removed.into_iter().peekable();
    for (n, t, oid) in &inserts {
        let pos = base_entries.partition_point(|e| git_order(e.name, e.is_tree, n, *t).is_lt());
        copy_run(&mut out, &base_entries, next, pos, &mut removed);
        next = next.max(pos);
        push_entry(&mut out, n, *t, *oid);
        count += 1;
    }
    copy_run(
        &mut out,
        &base_entries,
        next,
        base_entries.len(),
        &mut removed,
    );
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(sink.write(ObjKind::Tree, &out)?))
}

/// Subtree ids by position in the list of subfolders.
type Built = Vec<(usize, Option<Oid>)>;

/// Builds every other subfolder on a second thread (with its own handle on
/// the repository and its own pack builder), the rest here, then joins the
/// second thread's objects into `sink`. Results keep the input order.
fn build_split<'d>(
    odb: &git2::Odb<'_>,
    repo_path: &Path,
    subdirs: &[(&'d str, &Dir<'_>, Option<Oid>)],
    sink: &mut Sink<'_>,
) -> Result<Vec<(&'d str, Option<Oid>)>, StoreError> {
    let (mine, theirs): (Vec<_>, Vec<_>) =
        subdirs.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let (mut results, other_pack) = std::thread::scope(|scope| -> Result<_, StoreError> {
        let handle = scope.spawn(|| -> Result<(Built, Sink<'static>), StoreError> {
            let repo = Repository::open(repo_path)
                .map_err(|e| StoreError::git("opening a second handle", e))?;
            let odb = repo
                .odb()
                .map_err(|e| StoreError::git("opening the object database", e))?;
            let mut own = Sink::Pack(Box::default());
            let mut out = Vec::with_capacity(theirs.len());
            for (i, (_, sub, sub_base)) in &theirs {
                out.push((*i, build(&odb, repo_path, *sub_base, sub, &mut own, false)?));
            }
            Ok((out, own))
        });
        let mut out = Vec::with_capacity(subdirs.len());
        for (i, (_, sub, sub_base)) in &mine {
            out.push((*i, build(odb, repo_path, *sub_base, sub, sink, false)?));
        }
        let (theirs_out, own) = handle.join().map_err(|_| StoreError::Corrupt {
            what: "a tree (the second build thread panicked)".into(),
        })??;
        out.extend(theirs_out);
        Ok((out, own))
    })?;
    if let (Sink::Pack(main), Sink::Pack(other)) = (sink, other_pack) {
        main.absorb(*other);
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(results
        .into_iter()
        .map(|(i, oid)| (subdirs[i].0, oid))
        .collect())
}

/// libgit2 re-hashes every object it reads with collision-detecting SHA-1
/// by default; for the trees a commit splices that doubles its cost. Git
/// itself does not re-hash on read, and evidence integrity is checked with
/// SHA-256 by `verify` (and `git fsck` remains available), so it is off.
fn tune_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| git2::opts::strict_hash_verification(false));
}

/// Git's tree order: by name bytes, where a subtree sorts as if its name
/// ended in `/`.
fn git_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let ka = a.iter().copied().chain(a_tree.then_some(b'/'));
    let kb = b.iter().copied().chain(b_tree.then_some(b'/'));
    ka.cmp(kb)
}

/// Copies base entries `from..to` into `out` as one slice per run,
/// skipping the indices in `removed` (sorted).
fn copy_run(
    out: &mut Vec<u8>,
    entries: &[RawEntry<'_>],
    from: usize,
    to: usize,
    removed: &mut std::iter::Peekable<std::vec::IntoIter<usize>>,
) {
    let mut start = from;
    while start < to {
        let stop = match removed.peek() {
            Some(&r) if r < start => {
                removed.next();
                continue;
            }
            Some(&r) if r < to => r,
            _ => to,
        };
        if stop > start {
            let first = entries[start].raw.as_ptr() as usize - entries[0].raw.as_ptr() as usize;
            let last = entries[stop - 1].raw.as_ptr() as usize - entries[0].raw.as_ptr() as usize
                + entries[stop - 1].raw.len();
            out.extend_from_slice(&entries[0].raw_all[first..last]);
        }
        if stop < to {
            removed.next();
            start = stop + 1;
        } else {
            start = to;
        }
    }
}

fn push_entry(out: &mut Vec<u8>, name: &[u8], tree: bool, oid: Oid) {
    out.extend_from_slice(if tree { b"40000 " } else { b"100644 " });
    out.extend_from_slice(name);
    out.push(0);
    out.extend_from_slice(oid.as_bytes());
}

/// One entry of a raw tree object, borrowed from its bytes.
struct RawEntry<'a> {
    name: &'a [u8],
    is_tree: bool,
    oid: Oid,
    /// The whole entry (`<mode> <name>\0<20-byte id>`), copied as is.
    raw: &'a [u8],
    /// The whole tree the entry is part of, to copy runs of entries at once.
    raw_all: &'a [u8],
}

/// Parses a raw tree object; `None` when it is malformed.
fn parse_tree(data: &[u8]) -> Option<Vec<RawEntry<'_>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let start = i;
        let sp = data[i..].iter().position(|&b| b == b' ')? + i;
        let mode = &data[i..sp];
        let nul = data[sp + 1..].iter().position(|&b| b == 0)? + sp + 1;
        let end = nul + 21;
        if end > data.len() {
            return None;
        }
        out.push(RawEntry {
            name: &data[sp + 1..nul],
            is_tree: mode == b"40000",
            oid: Oid::from_bytes(&data[nul + 1..end]).ok()?,
            raw: &data[start..end],
            raw_all: data,
        });
        i = end;
    }
    Some(out)
}

enum Sink<'r> {
    Loose(git2::Odb<'r>),
    Pack(Box<PackBuilder>),
}

impl Sink<'_> {
    fn write(&mut self, kind: ObjKind, data: &[u8]) -> Result<Oid, StoreError> {
        match self {
            Sink::Loose(odb) => {
                let t = match kind {
                    ObjKind::Blob => ObjectType::Blob,
                    ObjKind::Tree => ObjectType::Tree,
                    ObjKind::Commit => ObjectType::Commit,
                };
                let id = object_id(kind, data);
                if odb.exists(id) {
                    return Ok(id);
                }
                odb.write(t, data)
                    .map_err(|e| StoreError::git("writing an object", e))
            }
            Sink::Pack(pb) => Ok(pb.add(kind, data)),
        }
    }
}

#[derive(Default)]
struct Dir<'a> {
    children: BTreeMap<&'a str, Node<'a>>,
}

enum Node<'a> {
    /// New bytes, or a deletion.
    Blob(Option<&'a [u8]>),
    /// New bytes already written, as their id.
    Written(Oid),
    Dir(Dir<'a>),
}

impl<'a> Dir<'a> {
    fn only_deletions(&self) -> bool {
        self.children.values().all(|n| match n {
            Node::Blob(c) => c.is_none(),
            Node::Written(_) => false,
            Node::Dir(d) => d.only_deletions(),
        })
    }

    /// Writes every new blob, in path order, and keeps its id.
    fn write_blobs(&mut self, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        for node in self.children.values_mut() {
            match node {
                Node::Blob(Some(bytes)) => *node = Node::Written(sink.write(ObjKind::Blob, bytes)?),
                Node::Dir(d) => d.write_blobs(sink)?,
                Node::Blob(None) | Node::Written(_) => {}
            }
        }
        Ok(())
    }

    fn insert(&mut self, path: &'a str, change: Option<&'a [u8]>) -> Result<(), StoreError> {
        let bad = |reason| StoreError::BadPath {
            path: path.to_string(),
            reason,
        };
        let mut parts = path.split('/').peekable();
        let mut dir = self;
        while let Some(part) = parts.next() {
            if part.is_empty() || part == "." || part == ".." || part == ".git" {
                return Err(bad("empty, `.`, `..` or `.git` segment"));
            }
            if parts.peek().is_none() {
                match (dir.children.get(part), change) {
                    // Deleting a file where the change set builds a folder:
                    // the folder replaces it anyway.
                    (Some(Node::Dir(_)), None) => {}
                    // A file replaces a folder whose contents are all being
                    // deleted.
                    (Some(Node::Dir(d)), Some(_)) if d.only_deletions() => {
                        dir.children.insert(part, Node::Blob(change));
                    }
                    (Some(Node::Dir(_)), Some(_)) => {
                        return Err(bad("a file would replace a folder"));
                    }
                    _ => {
                        dir.children.insert(part, Node::Blob(change));
                    }
                }
                return Ok(());
            }
            let node = dir
                .children
                .entry(part)
                .or_insert_with(|| Node::Dir(Dir::default()));
            match node {
                // A deleted file becomes a folder.
                Node::Blob(None) => *node = Node::Dir(Dir::default()),
                // Deleting below a path that becomes a file is implied.
                Node::Blob(Some(_)) | Node::Written(_) if change.is_none() => return Ok(()),
                Node::Blob(Some(_)) | Node::Written(_) => {
                    return Err(bad("a folder would replace a file"));
                }
                Node::Dir(_) => {}
            }
            dir = match node {
                Node::Dir(d) => d,
                Node::Blob(_) | Node::Written(_) => unreachable!("replaced by a folder above"),
            };
        }
        Err(bad("empty path"))
    }
}

/// Read-only access to the files of one commit of the evidence branch.
pub struct Snapshot<'r> {
    repo: &'r Repository,
    tree: Option<Tree<'r>>,
}

impl<'r> Snapshot<'r> {
    /// The repository's git folder, for readers on other threads (a
    /// `Repository` handle is not shared between threads).
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_none()
    }

    /// The blob id at `path`, if a file is there.
    pub fn blob_id(&self, path: &str) -> Option<Oid> {
        let tree = self.tree.as_ref()?;
        let entry = tree.get_path(Path::new(path)).ok()?;
        (entry.kind() == Some(ObjectType::Blob)).then(|| entry.id())
    }

    /// The bytes of the file at `path`.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.blob_id(path) {
            None => Ok(None),
            Some(id) => self.read_blob(id).map(Some),
        }
    }

    pub fn read_blob(&self, id: Oid) -> Result<Vec<u8>, StoreError> {
        self.repo
            .find_blob(id)
            .map(|b| b.content().to_vec())
            .map_err(|e| StoreError::git(format!("reading blob {id}"), e))
    }

    /// Every file below the folder `prefix` (no trailing slash), as
    /// (path relative to the repository root, blob id), in path order.
    pub fn files_under(&self, prefix: &str) -> Result<Vec<(String, Oid)>, StoreError> {
        let Some(root) = self.tree.as_ref() else {
            return Ok(Vec::new());
        };
        let sub = if prefix.is_empty() {
            root.clone()
        } else {
            match root.get_path(Path::new(prefix)) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => self
                    .repo
                    .find_tree(e.id())
                    .map_err(|err| StoreError::git(format!("reading {prefix}"), err))?,
                _ => return Ok(Vec::new()),
            }
        };
        let mut out = Vec::new();
        let mut stack: Vec<(String, Tree<'r>)> = vec![(prefix.to_string(), sub)];
        while let Some((dir, tree)) = stack.pop() {
            for e in tree.iter() {
                let name = String::from_utf8_lossy(e.name_bytes());
                let path = if dir.is_empty() {
                    name.into_owned()
                } else {
                    format!("{dir}/{name}")
                };
                match e.kind() {
                    Some(ObjectType::Tree) => {
                        let t = self
                            .repo
                            .find_tree(e.id())
                            .map_err(|err| StoreError::git(format!("reading {path}"), err))?;
                        stack.push((path, t));
                    }
                    Some(ObjectType::Blob) => out.push((path, e.id())),
                    _ => {}
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Immediate sub-folder names of `prefix`.
    pub fn dirs_under(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let Some(root) = self.tree.as_ref() else {
            return Ok(Vec::new());
        };
        let tree = match root.get_path(Path::new(prefix)) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => self
                .repo
                .find_tree(e.id())
                .map_err(|err| StoreError::git(format!("reading {prefix}"), err))?,
            _ => return Ok(Vec::new()),
        };
        Ok(tree
            .iter()
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .map(|e| String::from_utf8_lossy(e.name_bytes()).into_owned())
            .collect())
    }
}

/// The blob id Git would give these bytes, without writing them.
pub fn blob_id(bytes: &[u8]) -> Oid {
    object_id(ObjKind::Blob, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author() -> Author {
        Author {
            name: "T".into(),
            email: "t@example.com".into(),
            time: chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
        }
    }

    #[test]
    fn tree_order_matches_git_for_dirs_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut cs = ChangeSet::new();
        // "a.b" sorts before the folder "a" (as "a/") in Git's order.
        cs.put("a.b", b"1".to_vec());
        cs.put("a/x", b"2".to_vec());
        cs.put("a-b", b"3".to_vec());
        let out = store.commit("t", None, None, &cs, "m", &author()).unwrap();
        let CommitOutcome::Committed { commit, .. } = out else {
            panic!("expected a commit")
        };
        // libgit2 accepted the tree, and git's own checker agrees.
        let tree = store.repo.find_commit(commit).unwrap().tree().unwrap();
        let names: Vec<String> = tree.iter().map(|e| e.name().unwrap().to_string()).collect();
        assert_eq!(names, ["a-b", "a.b", "a"]);
        let mut tb = store.repo.treebuilder(None).unwrap();
        for e in tree.iter() {
            tb.insert(e.name().unwrap(), e.id(), e.filemode()).unwrap();
        }
        assert_eq!(tb.write().unwrap(), tree.id());
    }

    #[test]
    fn unchanged_tree_makes_no_commit_and_deletes_prune_empty_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut cs = ChangeSet::new();
        cs.put("x/y/z.json", b"{}\n".to_vec());
        cs.put("keep.txt", b"k".to_vec());
        let CommitOutcome::Committed { commit: c1, .. } = store
            .commit("b", None, None, &cs, "one", &author())
            .unwrap()
        else {
            panic!()
        };
        let again = store
            .commit("b", Some(c1), Some(c1), &cs, "two", &author())
            .unwrap();
        assert_eq!(again, CommitOutcome::Unchanged { tip: Some(c1) });
        let mut del = ChangeSet::new();
        del.delete("x/y/z.json");
        let CommitOutcome::Committed { commit: c2, .. } = store
            .commit("b", Some(c1), Some(c1), &del, "three", &author())
            .unwrap()
        else {
            panic!()
        };
        let snap = store.snapshot(Some(c2)).unwrap();
        assert!(snap.files_under("x").unwrap().is_empty());
        assert_eq!(snap.files_under("").unwrap().len(), 1);
        assert_eq!(store.branch_tip("b").unwrap(), Some(c2));
    }

    #[test]
    fn a_stale_base_is_a_race_and_leaves_the_branch_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut cs = ChangeSet::new();
        cs.put("a", b"1".to_vec());
        let CommitOutcome::Committed { commit: c1, .. } = store
            .commit("b", None, None, &cs, "one", &author())
            .unwrap()
        else {
            panic!()
        };
        // A second writer that also started from "no branch" loses.
        let mut other = ChangeSet::new();
        other.put("b", b"2".to_vec());
        let err = store
            .commit("b", None, None, &other, "two", &author())
            .unwrap_err();
        assert!(err.is_race(), "{err}");
        assert_eq!(store.branch_tip("b").unwrap(), Some(c1));
        // And so does one whose base is an older commit.
        let CommitOutcome::Committed { commit: c2, .. } = store
            .commit("b", Some(c1), Some(c1), &other, "two", &author())
            .unwrap()
        else {
            panic!()
        };
        let mut third = ChangeSet::new();
        third.put("c", b"3".to_vec());
        let err = store
            .commit("b", Some(c1), Some(c1), &third, "three", &author())
            .unwrap_err();
        assert!(err.is_race());
        assert_eq!(store.branch_tip("b").unwrap(), Some(c2));
    }

    #[test]
    fn large_change_sets_go_through_a_pack_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut cs = ChangeSet::new();
        for i in 0..(PACK_THRESHOLD * 2) {
            cs.put(
                format!("d{}/f{i}.json", i % 10),
                format!("{{\"i\":{i}}}\n").into_bytes(),
            );
        }
        let CommitOutcome::Committed { commit, .. } = store
            .commit("b", None, None, &cs, "bulk", &author())
            .unwrap()
        else {
            panic!()
        };
        let snap = store.snapshot(Some(commit)).unwrap();
        assert_eq!(snap.files_under("").unwrap().len(), PACK_THRESHOLD * 2);
        assert_eq!(snap.read("d3/f13.json").unwrap().unwrap(), b"{\"i\":13}\n");
        let packs: Vec<_> = std::fs::read_dir(store.repo.path().join("objects/pack"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .collect();
        assert_eq!(packs.len(), 1);
    }

    /// Incremental splicing must give exactly the tree libgit2 builds from
    /// scratch for the same files, over rounds of random puts and deletes.
    #[test]
    fn incremental_trees_equal_trees_built_from_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut tip = None;
        let mut seed = 42u64;
        let mut rand = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let names = ["a", "a.b", "a-b", "b", "ab", "a0", "z"];
        for round in 0..30 {
            let mut cs = ChangeSet::new();
            for _ in 0..(1 + rand(if round == 0 { 200 } else { 12 })) {
                let path = format!(
                    "{}/{}/{}.json",
                    names[rand(7) as usize],
                    names[rand(7) as usize],
                    rand(40)
                );
                // Keep file/folder shapes consistent: the leaf level is always a file.
                if rand(4) == 0 && files.contains_key(&path) {
                    files.remove(&path);
                    cs.delete(path);
                } else {
                    let body = format!("{round}:{path}").into_bytes();
                    files.insert(path.clone(), body.clone());
                    cs.put(path, body);
                }
            }
            let out = store.commit("b", tip, tip, &cs, "r", &author()).unwrap();
            if let CommitOutcome::Committed { commit, .. } = out {
                tip = Some(commit);
            }
            let mut idx = git2::Index::new().unwrap();
            for (p, b) in &files {
                let oid = store.repo.blob(b).unwrap();
                let entry = git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    file_size: b.len() as u32,
                    id: oid,
                    flags: 0,
                    flags_extended: 0,
                    path: p.as_bytes().to_vec(),
                };
                idx.add(&entry).unwrap();
            }
            let want = idx.write_tree_to(&store.repo).unwrap();
            let got = store.repo.find_commit(tip.unwrap()).unwrap().tree_id();
            let want = if files.is_empty() { got } else { want };
            assert_eq!(got, want, "round {round}");
        }
    }

    #[test]
    fn files_and_folders_can_swap_places() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut cs = ChangeSet::new();
        cs.put("p/x", b"file".to_vec());
        cs.put("p/y/z.md", b"in a folder".to_vec());
        let CommitOutcome::Committed { commit: c1, .. } = store
            .commit("b", None, None, &cs, "one", &author())
            .unwrap()
        else {
            panic!()
        };
        // x becomes a folder, y becomes a file, in one change set (the
        // deletions sort before and after the additions respectively).
        let mut swap = ChangeSet::new();
        swap.delete("p/x");
        swap.put("p/x/inner.md", b"now a folder".to_vec());
        swap.delete("p/y/z.md");
        swap.put("p/y", b"now a file".to_vec());
        let CommitOutcome::Committed { commit: c2, .. } = store
            .commit("b", Some(c1), Some(c1), &swap, "two", &author())
            .unwrap()
        else {
            panic!()
        };
        let snap = store.snapshot(Some(c2)).unwrap();
        let files: Vec<String> = snap
            .files_under("p")
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(files, ["p/x/inner.md", "p/y"]);
    }

    #[test]
    fn bad_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        for p in ["../x", "a//b", ".git/config", ""] {
            let mut cs = ChangeSet::new();
            cs.put(p, b"x".to_vec());
            let err = store
                .commit("b", None, None, &cs, "m", &author())
                .unwrap_err();
            assert!(matches!(err, StoreError::BadPath { .. }), "{p}: {err}");
        }
        let mut cs = ChangeSet::new();
        cs.put("a", b"x".to_vec());
        cs.put("a/b", b"x".to_vec());
        assert!(store.commit("b", None, None, &cs, "m", &author()).is_err());
        assert_eq!(store.branch_tip("b").unwrap(), None);
    }
}
