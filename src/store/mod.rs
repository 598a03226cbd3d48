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

/// Above this many new objects, a change set is written as one packfile
/// rather than as loose objects.
const PACK_THRESHOLD: usize = 512;

const MODE_BLOB: i32 = 0o100644;
const MODE_TREE: i32 = 0o040000;

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
            Sink::Pack(PackBuilder::new())
        } else {
            Sink::Loose(
                self.repo
                    .odb()
                    .map_err(|e| StoreError::git("opening the object database", e))?,
            )
        };
        let id = self.build(base.map(|t| t.id()), &root, &mut sink)?;
        if let Sink::Pack(pb) = sink {
            pb.finish(&self.repo.path().join("objects"))?;
            self.repo
                .odb()
                .and_then(|o| o.refresh())
                .map_err(|e| StoreError::git("refreshing the object database", e))?;
        }
        Ok(id)
    }

    fn build(
        &self,
        base: Option<Oid>,
        dir: &Dir<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<Option<Oid>, StoreError> {
        let mut entries: BTreeMap<Vec<u8>, (i32, Oid)> = BTreeMap::new();
        if let Some(b) = base {
            let tree = self
                .repo
                .find_tree(b)
                .map_err(|e| StoreError::git(format!("reading tree {b}"), e))?;
            for e in tree.iter() {
                entries.insert(e.name_bytes().to_vec(), (e.filemode(), e.id()));
            }
        }
        for (name, node) in &dir.children {
            let key = name.as_bytes().to_vec();
            match node {
                Node::Blob(None) => {
                    entries.remove(&key);
                }
                Node::Blob(Some(bytes)) => {
                    let oid = sink.write(ObjKind::Blob, bytes)?;
                    entries.insert(key, (MODE_BLOB, oid));
                }
                Node::Dir(sub) => {
                    let sub_base = entries
                        .get(&key)
                        .filter(|(mode, _)| *mode == MODE_TREE)
                        .map(|(_, oid)| *oid);
                    match self.build(sub_base, sub, sink)? {
                        Some(oid) => {
                            entries.insert(key, (MODE_TREE, oid));
                        }
                        None => {
                            entries.remove(&key);
                        }
                    }
                }
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let data = serialize_tree(&entries);
        Ok(Some(sink.write(ObjKind::Tree, &data)?))
    }
}

/// Serializes tree entries in Git's order: by name, where a subtree sorts
/// as if its name ended in `/`.
fn serialize_tree(entries: &BTreeMap<Vec<u8>, (i32, Oid)>) -> Vec<u8> {
    let mut sorted: Vec<(&Vec<u8>, &(i32, Oid))> = entries.iter().collect();
    sorted.sort_by(|(a, (ma, _)), (b, (mb, _))| {
        let ka = a.iter().copied().chain((*ma == MODE_TREE).then_some(b'/'));
        let kb = b.iter().copied().chain((*mb == MODE_TREE).then_some(b'/'));
        ka.cmp(kb)
    });
    let mut out = Vec::with_capacity(entries.len() * 48);
    for (name, (mode, oid)) in sorted {
        out.extend_from_slice(format!("{mode:o}").as_bytes());
        out.push(b' ');
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(oid.as_bytes());
    }
    out
}

enum Sink<'r> {
    Loose(git2::Odb<'r>),
    Pack(PackBuilder),
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
    Blob(Option<&'a [u8]>),
    Dir(Dir<'a>),
}

impl<'a> Dir<'a> {
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
                if matches!(dir.children.get(part), Some(Node::Dir(_))) {
                    return Err(bad("a file would replace a folder"));
                }
                dir.children.insert(part, Node::Blob(change));
                return Ok(());
            }
            let node = dir
                .children
                .entry(part)
                .or_insert_with(|| Node::Dir(Dir::default()));
            dir = match node {
                Node::Dir(d) => d,
                Node::Blob(_) => return Err(bad("a folder would replace a file")),
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
