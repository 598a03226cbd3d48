//! The evidence repository: the one wrapper over git used to read and write
//! evidence.
//!
//! **Writes** never touch a work tree or index: blobs and trees go straight
//! into the object database (one packfile written by [`pack`] above 32
//! changed files, loose objects below), only the
//! subtrees on the path of a change are rebuilt, and a commit is made only
//! when it would record something (see [`Store::commit_with`]). The branch
//! then moves with a compare-and-swap under git's ref lock: a new branch is
//! created only if it is still absent once the lock is held, an existing
//! one moves only if it still points at the expected commit. A writer that
//! loses gets [`StoreError::Race`] and plans again on the new tip. Works
//! the same on bare and non-bare repositories and on linked worktrees
//! (objects always go to the shared `objects` folder).
//!
//! **Reads** go through libgit2, which re-hashes every object it reads and
//! refuses one whose content does not match its id (a forged or damaged
//! object). That check is on for every [`Store`] and nothing here turns
//! it off (it is a process-wide libgit2 setting): measured by
//! `benches/store.rs` at 100,000 artifacts, it adds 13 to 20 ms to a
//! 100-change commit (60-70 ms against 47-50 ms) and about 45% to reading
//! every file back (1.1 s against 0.7 s for 90 MiB), which is the price
//! of reading evidence that can be trusted. A [`Snapshot`] indexes its
//! tree once, so a run's lookups cost the same whatever the number of
//! files.
//!
//! **Crashes** at any moment leave the branch at the old commit or the
//! complete new one; what else they can leave (a ref lock, a half-made
//! repository, temporary packs) is dealt with by [`recover`].
//!
//! Test-only hook: when `CLEARTRAIL_TEST_PAUSE_IN_REF_LOCK_MS` is set, a
//! commit sleeps that many milliseconds while it holds the ref lock, so a
//! test can kill the process there. It is read in that one spot only.

pub mod pack;
mod packed;
pub mod recover;
mod remote;
mod snapshot;
mod tree;

pub use remote::{Delta, PushError};
pub use snapshot::{BlobReader, Chunks, ReadBlob, Snapshot, file_position, folder_range};

use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use pack::{ObjKind, object_id};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    #[error(
        "{lock} exists ({age_secs} s old): another process is updating the branch, or one crashed while doing so. \
         If no git or cleartrail process is using this repository, delete that file; \
         cleartrail removes it by itself once it is more than an hour old"
    )]
    Locked { lock: String, age_secs: u64 },
    #[error(
        "{git_dir} is an incomplete git repository (creation interrupted?) that holds refs, objects or other files, \
         so it was left alone: check nothing in it is needed, then delete {git_dir} and run again"
    )]
    Incomplete { git_dir: String },
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

/// The new bytes of a file: as they are, or already deflated (see
/// [`pack::Packed`]). Shared, not copied: a planner holds the same
/// contents for retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Raw(std::sync::Arc<[u8]>),
    Packed(std::sync::Arc<pack::Packed>),
}

impl Content {
    /// The file's bytes (inflated when packed).
    pub fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Content::Raw(b) => std::borrow::Cow::Borrowed(b),
            Content::Packed(p) => std::borrow::Cow::Owned(p.inflate()),
        }
    }

    /// Its git blob id.
    pub fn blob_id(&self) -> Oid {
        match self {
            Content::Raw(b) => blob_id(b),
            Content::Packed(p) => p.oid,
        }
    }
}

/// A set of file changes against a base tree: new bytes, or deletion.
/// Paths are shared: a cold run's 200,000 artifact paths are also held
/// by its planner and its judged evidence.
#[derive(Debug, Default, Clone)]
pub struct ChangeSet {
    entries: BTreeMap<std::sync::Arc<str>, Option<Content>>,
}

impl ChangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `bytes` as the file `path` (replacing a file, or a folder, of
    /// that name).
    pub fn put(
        &mut self,
        path: impl Into<std::sync::Arc<str>>,
        bytes: impl Into<std::sync::Arc<[u8]>>,
    ) {
        self.entries
            .insert(path.into(), Some(Content::Raw(bytes.into())));
    }

    /// Like [`ChangeSet::put`], with contents prepared earlier.
    pub fn put_content(&mut self, path: impl Into<std::sync::Arc<str>>, content: Content) {
        self.entries.insert(path.into(), Some(content));
    }

    /// Removes the file `path` if there is one. A folder of that name is
    /// left alone.
    pub fn delete(&mut self, path: impl Into<std::sync::Arc<str>>) {
        self.entries.insert(path.into(), None);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every change, by path in byte order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&Content>)> {
        self.entries.iter().map(|(p, b)| (&**p, b.as_ref()))
    }

    /// Like [`ChangeSet::iter`], with the shared paths.
    pub fn iter_shared(&self) -> impl Iterator<Item = (&std::sync::Arc<str>, Option<&Content>)> {
        self.entries.iter().map(|(p, b)| (p, b.as_ref()))
    }
}

/// The result of a commit attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Nothing to record: no commit was made and the branch was not touched.
    Unchanged { tip: Option<Oid> },
    /// A commit was made and the branch moved to it. `parent` is its first
    /// parent.
    Committed { commit: Oid, parent: Option<Oid> },
}

/// Everything a commit is made of; see [`Store::commit_with`].
pub struct CommitSpec<'a> {
    /// The branch to move (without `refs/heads/`).
    pub branch: &'a str,
    /// Where the branch must point for the move to happen (`None`: it must
    /// not exist).
    pub expected: Option<Oid>,
    /// The new commit's parents, in order.
    pub parents: Vec<Oid>,
    /// The tree the changes apply to (`None`: the empty tree).
    pub base_tree: Option<Oid>,
    pub changes: &'a ChangeSet,
    pub message: &'a str,
    pub author: &'a Author,
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

/// Bounds how much of the pack files libgit2 keeps mapped. By default it
/// maps up to 8 GiB in 1 GiB windows and unmaps nothing: reading every
/// artifact of a 150 MB pack once (as `gaps`, `packet` and `verify` do)
/// then holds all of it in the process's resident memory. Small windows
/// under a small total keep that to a few dozen MB, at no measurable cost
/// for reads that go through the pack in order. Its object cache keeps its
/// default: the git source's history pages read again the commits its walk
/// read, and a 32 MiB cache made a first run at 100,000 commits 1.5 s
/// slower with no lower peak.
pub fn limit_mapped_packs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: these set process-wide libgit2 options; the Once makes
        // the call happen before any repository is opened by this crate
        // and never concurrently with another option change.
        unsafe {
            let _ = git2::opts::set_mwindow_size(8 << 20);
            let _ = git2::opts::set_mwindow_mapped_limit(32 << 20);
        }
    });
}

impl Store {
    /// Opens an existing repository (bare or not, or a linked worktree),
    /// with object hash checks on. Removes this crate's temporary packs
    /// left by crashed runs more than [`recover::STALE_AGE`] ago.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        limit_mapped_packs();
        match Repository::open(path) {
            Ok(repo) => {
                recover::remove_stale_files(
                    &repo.commondir().join("objects/pack"),
                    recover::TEMP_PREFIX,
                );
                Ok(Store {
                    repo,
                    path: path.to_path_buf(),
                })
            }
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
    /// the folder does not exist or is empty. Creation is atomic (built
    /// beside the target and renamed into place); a `.git` left half-made
    /// by an interrupted creation (no refs, no objects, nothing beside it)
    /// is replaced.
    pub fn open_or_init(path: &Path) -> Result<Self, StoreError> {
        let empty = match std::fs::read_dir(path) {
            Ok(mut rd) => rd.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(StoreError::io(path, e)),
        };
        if empty {
            recover::init_atomically(path)?;
            return Self::open(path);
        }
        match Self::open(path) {
            Err(StoreError::NotARepository { .. }) => match recover::half_made(path)? {
                Some(git_dir) => {
                    tracing::warn!(
                        "{} holds no refs and no objects (its creation was interrupted): creating it again",
                        git_dir.display()
                    );
                    std::fs::remove_dir_all(&git_dir).map_err(|e| StoreError::io(&git_dir, e))?;
                    recover::init_atomically(path)?;
                    Self::open(path)
                }
                None => Err(StoreError::NotARepository {
                    path: path.display().to_string(),
                }),
            },
            other => other,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The `objects` folder shared by the repository and all its worktrees.
    fn objects_dir(&self) -> PathBuf {
        self.repo.commondir().join("objects")
    }

    fn ref_name(branch: &str) -> String {
        format!("refs/heads/{branch}")
    }

    /// The commit a branch points at, if the branch exists.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<Oid>, StoreError> {
        self.ref_tip(&Self::ref_name(branch))
    }

    fn ref_tip(&self, name: &str) -> Result<Option<Oid>, StoreError> {
        match self.repo.refname_to_id(name) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(StoreError::git(format!("reading {name}"), e)),
        }
    }

    /// The tips of `refs/remotes/<remote>/<branch>` for every configured
    /// remote that has one, sorted by ref name.
    pub fn remote_tips(&self, branch: &str) -> Result<Vec<(String, Oid)>, StoreError> {
        let remotes = self
            .repo
            .remotes()
            .map_err(|e| StoreError::git("listing remotes", e))?;
        let mut out = Vec::new();
        for remote in remotes.iter().flatten().flatten() {
            let name = format!("refs/remotes/{remote}/{branch}");
            if let Some(oid) = self.ref_tip(&name)? {
                out.push((name, oid));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether the repository is a shallow clone (history cut off).
    pub fn is_shallow(&self) -> bool {
        self.repo.is_shallow()
    }

    /// The repository's default branch and its tip: the branch
    /// `refs/remotes/origin/HEAD` names (`("refs/remotes/origin/main", id)`),
    /// else a local `main`, else `master`, else `None`. Never the checked-out
    /// branch as such, nor a detached `HEAD`: a run from a feature branch or
    /// a pull request's merge ref must not take unreviewed work for the
    /// default branch.
    pub fn default_branch_tip(&self) -> Result<Option<(String, Oid)>, StoreError> {
        let mut candidates: Vec<String> = Vec::new();
        if let Ok(r) = self.repo.find_reference("refs/remotes/origin/HEAD")
            && let Ok(Some(t)) = r.symbolic_target()
        {
            candidates.push(t.to_string());
        }
        candidates.extend([
            "refs/heads/main".to_string(),
            "refs/heads/master".to_string(),
        ]);
        for name in candidates {
            match self.ref_tip(&name)? {
                Some(oid) => return Ok(Some((name, oid))),
                None => continue,
            }
        }
        Ok(None)
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

    /// The root tree of a commit.
    pub fn commit_tree(&self, commit: Oid) -> Result<Oid, StoreError> {
        self.repo
            .find_commit(commit)
            .map(|c| c.tree_id())
            .map_err(|e| StoreError::git(format!("reading commit {commit}"), e))
    }

    /// A read-only view of the files of one commit (`None`: no files).
    pub fn snapshot(&self, commit: Option<Oid>) -> Result<Snapshot<'_>, StoreError> {
        let tree = commit.map(|c| self.commit_tree(c)).transpose()?;
        Ok(Snapshot::new(&self.repo, tree))
    }

    /// A read-only view of the files of one tree (`None`: no files).
    pub fn snapshot_tree(&self, tree: Option<Oid>) -> Snapshot<'_> {
        Snapshot::new(&self.repo, tree)
    }

    /// A root tree whose top-level entries are those of `onto_tree`,
    /// except the names in `owned`, which are taken from `from_tree` (and
    /// are absent when absent there). `None` for an empty result. Builds
    /// the evidence branch on the default branch's current files without
    /// carrying stale copies of them.
    pub fn graft(
        &self,
        onto_tree: Option<Oid>,
        from_tree: Option<Oid>,
        owned: &[&str],
    ) -> Result<Option<Oid>, StoreError> {
        let find = |t: Oid| {
            self.repo
                .find_tree(t)
                .map_err(|e| StoreError::git(format!("reading tree {t}"), e))
        };
        let onto = onto_tree.map(find).transpose()?;
        let from = from_tree.map(find).transpose()?;
        let mut tb = self
            .repo
            .treebuilder(onto.as_ref())
            .map_err(|e| StoreError::git("starting a tree", e))?;
        for name in owned {
            if tb.get(name).ok().flatten().is_some() {
                tb.remove(name)
                    .map_err(|e| StoreError::git(format!("removing {name}"), e))?;
            }
            if let Some(e) = from.as_ref().and_then(|t| t.get_name(name)) {
                tb.insert(name, e.id(), e.filemode())
                    .map_err(|e| StoreError::git(format!("adding {name}"), e))?;
            }
        }
        if tb.is_empty() {
            return Ok(None);
        }
        tb.write()
            .map(Some)
            .map_err(|e| StoreError::git("writing a tree", e))
    }

    /// Applies `changes` on top of the commit `base` and, when the
    /// resulting tree differs, commits it (with `base` as parent) and moves
    /// `branch` from `expected` to the new commit: a compare-and-swap that
    /// fails with [`StoreError::Race`] when the branch no longer points at
    /// `expected` (`None`: the branch must not exist yet). `base` differs
    /// from `expected` only when a new branch forks from another commit.
    /// Same as [`Store::commit_with`] with `parents: [base]` and base's
    /// tree.
    pub fn commit(
        &self,
        branch: &str,
        expected: Option<Oid>,
        base: Option<Oid>,
        changes: &ChangeSet,
        message: &str,
        author: &Author,
    ) -> Result<CommitOutcome, StoreError> {
        let base_tree = base.map(|b| self.commit_tree(b)).transpose()?;
        self.commit_with(&CommitSpec {
            branch,
            expected,
            parents: base.into_iter().collect(),
            base_tree,
            changes,
            message,
            author,
        })
    }

    /// Applies `spec.changes` to `spec.base_tree` and, unless that records
    /// nothing, commits the result with `spec.parents` and moves the branch
    /// from `spec.expected` to it (compare-and-swap under the ref lock;
    /// [`StoreError::Race`] when the branch is elsewhere, or exists when
    /// `expected` is `None`).
    ///
    /// It records nothing, and the outcome is [`CommitOutcome::Unchanged`]
    /// with `tip` = `expected` (or the single parent when `expected` is
    /// `None`), exactly when both hold:
    /// - the new tree equals the *reference tree*: the tree of `expected`;
    ///   when `expected` is `None`, the tree of the single parent, or the
    ///   empty tree when there is no parent;
    /// - no parent is new: with `expected` set, every parent is `expected`
    ///   or one of its ancestors (merging what the branch already holds
    ///   adds nothing); with `expected` `None`, there is at most one parent.
    ///
    /// An unchanged outcome never creates or moves the branch.
    pub fn commit_with(&self, spec: &CommitSpec<'_>) -> Result<CommitOutcome, StoreError> {
        let new_tree = self.write_tree_id(spec.base_tree, spec.changes)?;
        let reference_tree = match (spec.expected, spec.parents.as_slice()) {
            (Some(e), _) => Some(self.commit_tree(e)?),
            (None, [p]) => Some(self.commit_tree(*p)?),
            (None, _) => None,
        };
        let same_tree = normalize_empty(new_tree) == normalize_empty(reference_tree);
        let no_new_parent = match spec.expected {
            Some(e) => {
                let mut all = true;
                for &p in &spec.parents {
                    if p != e
                        && !self.repo.graph_descendant_of(e, p).map_err(|err| {
                            StoreError::git(format!("comparing {e} with {p}"), err)
                        })?
                    {
                        all = false;
                        break;
                    }
                }
                all
            }
            None => spec.parents.len() <= 1,
        };
        if same_tree && no_new_parent {
            return Ok(CommitOutcome::Unchanged {
                tip: spec.expected.or(spec.parents.first().copied()),
            });
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
            .map_err(|e| StoreError::git(format!("reading the new tree {tree_id}"), e))?;
        let when = git2::Time::new(spec.author.time.timestamp(), 0);
        let sig = Signature::new(&spec.author.name, &spec.author.email, &when)
            .map_err(|e| StoreError::git("building the commit signature", e))?;
        let parents = spec
            .parents
            .iter()
            .map(|p| {
                self.repo
                    .find_commit(*p)
                    .map_err(|e| StoreError::git(format!("reading commit {p}"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        let commit = self
            .repo
            .commit(None, &sig, &sig, spec.message, &tree, &parent_refs)
            .map_err(|e| StoreError::git("writing the commit", e))?;
        self.move_branch(spec.branch, spec.expected, commit, &sig, spec.message)?;
        Ok(CommitOutcome::Committed {
            commit,
            parent: spec.parents.first().copied(),
        })
    }

    /// Moves `branch` to `new` only if it still points at `expected`
    /// (`None`: only if it does not exist). The check and the move happen
    /// under git's ref lock, taken through a ref transaction, so no other
    /// writer (ClearTrail or git) can move the branch in between.
    fn move_branch(
        &self,
        branch: &str,
        expected: Option<Oid>,
        new: Oid,
        sig: &Signature<'_>,
        message: &str,
    ) -> Result<(), StoreError> {
        let name = Self::ref_name(branch);
        let lock = self.repo.commondir().join(format!("{name}.lock"));
        let reflog = format!("cleartrail: {}", message.lines().next().unwrap_or_default());
        // Dropped after `tx` (declared first): the ref lock is released
        // before the guard's record of it is cleared.
        let mut guard = recover::RefGuard::acquire(self.repo.commondir())?;
        let mut tx = self
            .repo
            .transaction()
            .map_err(|e| StoreError::git(format!("starting an update of {name}"), e))?;
        let started = Instant::now();
        loop {
            guard.record(&lock)?;
            match tx.lock_ref(&name) {
                Ok(()) => break,
                Err(e) if e.code() == ErrorCode::Locked => {
                    // Not ours: a crash while waiting must not make it look so.
                    guard.clear()?;
                    match recover::held_lock(&lock, started.elapsed())? {
                        recover::Held::Retry => continue,
                        recover::Held::Fresh(age) => {
                            return Err(StoreError::Locked {
                                lock: lock.display().to_string(),
                                age_secs: age.as_secs(),
                            });
                        }
                    }
                }
                Err(e) => return Err(StoreError::git(format!("locking {name}"), e)),
            }
        }
        test_pause_in_ref_lock();
        let current = self.ref_tip(&name)?;
        if current != expected {
            return Err(StoreError::Race {
                branch: branch.into(),
                expected: expected
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "no branch yet".into()),
            });
        }
        tx.set_target(&name, new, Some(sig), &reflog)
            .and_then(|()| tx.commit())
            .map_err(|e| StoreError::git(format!("updating {name}"), e))?;
        Ok(())
    }

    /// Writes the objects for `base` + `changes` and returns the root tree
    /// id (`None` for an empty tree). Only subtrees on the path of a change
    /// are read and rewritten.
    pub fn write_tree(
        &self,
        base: Option<&Tree<'_>>,
        changes: &ChangeSet,
    ) -> Result<Option<Oid>, StoreError> {
        self.write_tree_id(base.map(|t| t.id()), changes)
    }

    /// [`Store::write_tree`] on a base tree given by id.
    pub fn write_tree_id(
        &self,
        base: Option<Oid>,
        changes: &ChangeSet,
    ) -> Result<Option<Oid>, StoreError> {
        tree::write_tree(&self.repo, base, changes, &self.objects_dir())
    }
}

/// The empty tree's id, which a tree id of `None` also means.
fn normalize_empty(tree: Option<Oid>) -> Option<Oid> {
    tree.filter(|t| *t != object_id(ObjKind::Tree, b""))
}

/// Test-only: see the module documentation.
fn test_pause_in_ref_lock() {
    if let Some(ms) = std::env::var_os("CLEARTRAIL_TEST_PAUSE_IN_REF_LOCK_MS")
        .and_then(|v| v.to_str().and_then(|s| s.parse::<u64>().ok()))
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The blob id Git would give these bytes, without writing them.
pub fn blob_id(bytes: &[u8]) -> Oid {
    object_id(ObjKind::Blob, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tree::PACK_THRESHOLD;

    /// git's own full check of every object and link.
    pub(crate) fn git_fsck(dir: &Path) {
        let out = std::process::Command::new("git")
            .args(["fsck", "--full", "--strict", "--no-dangling"])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git fsck: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn author() -> Author {
        Author {
            name: "T".into(),
            email: "t@example.com".into(),
            time: chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
        }
    }

    /// The index of a tree of many folders holds exactly what git lists,
    /// in path order.
    #[test]
    fn a_large_tree_is_indexed_exactly_as_git_lists_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut cs = ChangeSet::new();
        for m in 0..40 {
            for b in 0..5 {
                cs.put(
                    format!("e/k/2025-{m:02}/{b:02}/a{m}.json").as_str(),
                    vec![b],
                );
            }
            cs.put(format!("e/k/2025-{m:02}.json").as_str(), vec![m]);
        }
        cs.put("top", b"t".to_vec());
        let CommitOutcome::Committed { commit, .. } =
            store.commit("t", None, None, &cs, "m", &author()).unwrap()
        else {
            panic!("expected a commit")
        };
        let out = std::process::Command::new("git")
            .args(["ls-tree", "-r", "--format=%(path) %(objectname)"])
            .arg(commit.to_string())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut git: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        git.sort();
        let snap = store.snapshot(Some(commit)).unwrap();
        let ours: Vec<String> = snap
            .files_under("")
            .unwrap()
            .iter()
            .map(|(p, id)| format!("{p} {id}"))
            .collect();
        assert_eq!(ours.len(), 40 * 6 + 1);
        assert_eq!(ours, git);
        assert_eq!(snap.dirs_under("e/k").unwrap().len(), 40);
        assert_eq!(snap.files_under("e/k/2025-07").unwrap().len(), 5);

        // The first lookups of a snapshot walk down the tree instead of
        // building the index: they must answer exactly as the index does,
        // for files, folders, absent paths and paths through a file.
        let indexed = store.snapshot(Some(commit)).unwrap();
        indexed.dirs_under("").unwrap();
        let paths = [
            "top",
            "e/k/2025-07.json",
            "e/k/2025-39/04/a39.json",
            "e/k/2025-07",
            "e/k",
            "e/k/2025-07/09/a7.json",
            "missing",
            "top/below",
            "e/k/2025-07.json/x",
        ];
        let walking = store.snapshot(Some(commit)).unwrap();
        for p in paths {
            assert_eq!(
                walking.try_blob_id(p).unwrap(),
                indexed.try_blob_id(p).unwrap(),
                "{p}"
            );
        }
        for prefix in ["", "e", "e/k/2025-07", "top", "missing", "e/k/2025-07.json"] {
            assert_eq!(
                walking.files_under(prefix).unwrap(),
                indexed.files_under(prefix).unwrap(),
                "{prefix}"
            );
        }
        assert_eq!(
            walking.try_blob_id("e/k/2025-07.json").unwrap(),
            Some(blob_id(&[7]))
        );
    }

    /// Folders nested past any layout's depth are damage made to exhaust
    /// the stack of a reader: reported, by the index and by a walk alike.
    #[test]
    fn folders_nested_without_end_are_reported_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let blob = store.repo.blob(b"x").unwrap();
        let mut tb = store.repo.treebuilder(None).unwrap();
        tb.insert("f", blob, 0o100644).unwrap();
        let mut tree = tb.write().unwrap();
        for _ in 0..200 {
            let mut tb = store.repo.treebuilder(None).unwrap();
            tb.insert("d", tree, 0o040000).unwrap();
            tree = tb.write().unwrap();
        }
        let snap = Snapshot::new(&store.repo, Some(tree));
        let err = snap.files_under("").unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        let snap = Snapshot::new(&store.repo, Some(tree));
        snap.dirs_under("").unwrap_err();
        let err = snap.files_under("d/d").unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
    }

    /// A file entry that names a tree is damage, reported as such, with
    /// the path asked for.
    #[test]
    fn a_file_entry_naming_a_tree_is_reported_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let empty = store.repo.treebuilder(None).unwrap().write().unwrap();
        // Written raw: libgit2's treebuilder refuses such an entry.
        let mut raw = b"100644 a.json\0".to_vec();
        raw.extend_from_slice(empty.as_bytes());
        let root = store
            .repo
            .odb()
            .unwrap()
            .write(git2::ObjectType::Tree, &raw)
            .unwrap();
        let snap = store.snapshot_tree(Some(root));
        let err = snap.read("a.json").unwrap_err().to_string();
        assert!(err.contains("a tree where a file's blob belongs"), "{err}");
        assert!(err.contains(&format!("{empty} (a.json)")), "{err}");
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
        let tree = store.repo.find_commit(commit).unwrap().tree().unwrap();
        let names: Vec<String> = tree.iter().map(|e| e.name().unwrap().to_string()).collect();
        assert_eq!(names, ["a-b", "a.b", "a"]);
        // libgit2's treebuilder sorts the same entries the same way, and
        // git's own checker (which rejects misordered trees) agrees.
        let mut tb = store.repo.treebuilder(None).unwrap();
        for e in tree.iter() {
            tb.insert(e.name().unwrap(), e.id(), e.filemode()).unwrap();
        }
        assert_eq!(tb.write().unwrap(), tree.id());
        git_fsck(dir.path());
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
        // Read back by git itself, which re-hashes every object whatever
        // this process set libgit2 to do.
        git_fsck(dir.path());
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
            assert_eq!(got, want, "round {round}");
        }
        git_fsck(dir.path());
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
