//! What a crash (kill -9, power cut, OOM kill) can leave behind, and how the
//! next run gets past it without a manual step when that is safe.
//!
//! - **A ref lock** (`refs/heads/<branch>.lock`). Every ClearTrail writer
//!   takes the ref lock only while holding an OS file lock on
//!   `<git dir>/cleartrail-ref-guard` (released by the kernel when the
//!   process dies), and writes the ref lock's path into that file just
//!   before trying to take it, clearing it once it is released. The next
//!   writer to get the guard and find such a record knows that holder died
//!   in between: the ref lock is removed, with a warning, if it is still
//!   empty (libgit2 writes a ref lock only when committing it; git writes
//!   its own at once) and no older than the record (else it was someone
//!   else's lock that the dead holder was waiting on). A ref lock without
//!   that record belongs to `git` or to another program: it is removed
//!   only when older than [`STALE_AGE`] (one hour, far longer than any ref
//!   update: git and ClearTrail hold a ref lock for milliseconds); a
//!   younger one is an error that names it.
//! - **A half-made repository.** New repositories are created in a
//!   temporary sibling folder and renamed into place, so a crash leaves
//!   the target absent (and a `.<name>.cleartrail-init-*` folder, removed
//!   once older than [`STALE_AGE`]). A `.git` folder left by an older
//!   version's crash, holding no refs and no objects, in a folder holding
//!   nothing else, is removed and created again; otherwise the error says
//!   what to delete.
//! - **Temporary packs** (`objects/pack/tmp_cleartrail_*`, about 10 MB
//!   each at scale) are removed when older than [`STALE_AGE`], at open.

use super::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Older than any run could be: a leftover this old is from a dead process.
pub const STALE_AGE: Duration = Duration::from_secs(60 * 60);

/// How long a writer waits for a ref lock held by another process (git
/// holds one for milliseconds) before giving up with an error.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// The prefix of every temporary file name this crate writes.
pub(super) const TEMP_PREFIX: &str = "tmp_cleartrail_";

/// The guard file's name, in the repository's common git folder.
pub(super) const GUARD_FILE: &str = "cleartrail-ref-guard";

fn age(meta: &std::fs::Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default()
}

/// Held while a ClearTrail writer holds (or takes) a ref lock.
pub(super) struct RefGuard {
    file: File,
    path: PathBuf,
}

impl RefGuard {
    /// Waits for the guard (another writer holds it for milliseconds), then
    /// clears up after a holder that died inside a ref lock.
    pub(super) fn acquire(git_dir: &Path) -> Result<RefGuard, StoreError> {
        let path = git_dir.join(GUARD_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        file.lock().map_err(|e| StoreError::io(&path, e))?;
        let mut guard = RefGuard { file, path };
        guard.recover()?;
        Ok(guard)
    }

    fn recover(&mut self) -> Result<(), StoreError> {
        let mut record = String::new();
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_string(&mut record))
            .map_err(|e| StoreError::io(&self.path, e))?;
        let lock = record.trim_end();
        if !lock.is_empty() {
            let lock = Path::new(lock);
            let recorded = self.file.metadata().and_then(|m| m.modified()).ok();
            if let Ok(meta) = std::fs::symlink_metadata(lock)
                && meta.is_file()
                && meta.len() == 0
                && let (Some(recorded), Ok(made)) = (recorded, meta.modified())
                && made >= recorded
            {
                tracing::warn!(
                    "removing {}: left by a ClearTrail writer that died while updating the branch",
                    lock.display()
                );
                remove_file(lock)?;
            }
        }
        self.clear()
    }

    /// Records that this process is about to take (and then holds) the
    /// ref lock `lock`.
    pub(super) fn record(&mut self, lock: &Path) -> Result<(), StoreError> {
        let line = format!("{}\n", lock.display());
        self.file
            .set_len(0)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(line.as_bytes()))
            .map_err(|e| StoreError::io(&self.path, e))
    }

    /// Records that this process holds no ref lock.
    pub(super) fn clear(&mut self) -> Result<(), StoreError> {
        self.file
            .set_len(0)
            .map_err(|e| StoreError::io(&self.path, e))
    }
}

impl Drop for RefGuard {
    fn drop(&mut self) {
        // The ref lock is released (renamed into place or removed) before
        // the guard drops; a record left here would only be ignored later
        // (its lock file is gone), but clear it anyway.
        let _ = self.clear();
    }
}

/// What to do about a ref lock someone else holds.
pub(super) enum Held {
    /// It is gone or was removed: try again.
    Retry,
    /// It is young: someone is (or was very recently) using it.
    Fresh(Duration),
}

/// Called (holding the guard) when taking the ref lock failed because
/// `lock` exists and `waited` has passed since the first failure.
pub(super) fn held_lock(lock: &Path, waited: Duration) -> Result<Held, StoreError> {
    let meta = match std::fs::symlink_metadata(lock) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Held::Retry),
        Err(e) => return Err(StoreError::io(lock, e)),
    };
    let age = age(&meta);
    if age > STALE_AGE {
        tracing::warn!(
            "removing {}: {} minutes old, older than any run, so left by a crash",
            lock.display(),
            age.as_secs() / 60
        );
        remove_file(lock)?;
        return Ok(Held::Retry);
    }
    if waited < LOCK_WAIT {
        std::thread::sleep(Duration::from_millis(20));
        return Ok(Held::Retry);
    }
    Ok(Held::Fresh(age))
}

fn remove_file(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Removes the files in `dir` whose names start with `prefix` (this
/// crate's temporary files: [`TEMP_PREFIX`] in the pack folder) and that
/// are older than [`STALE_AGE`], so older than any run that could still
/// be writing them. Failures only warn: a leftover costs space, not
/// correctness.
pub(crate) fn remove_stale_files(dir: &Path, prefix: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(prefix) {
            continue;
        }
        if let Ok(meta) = e.metadata()
            && meta.is_file()
            && age(&meta) > STALE_AGE
        {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::warn!(
                    "removed {}: a temporary file left by a crashed run",
                    e.path().display()
                ),
                Err(err) => tracing::warn!("cannot remove {}: {err}", e.path().display()),
            }
        }
    }
}

/// The folder a new repository at `path` is built in before being renamed
/// into place, and the prefix shared by all such folders for `path`.
fn init_prefix(path: &Path) -> Result<(PathBuf, String), StoreError> {
    let name = path.file_name().ok_or_else(|| StoreError::NotARepository {
        path: path.display().to_string(),
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((
        parent,
        format!(".{}.cleartrail-init-", name.to_string_lossy()),
    ))
}

/// Creates a non-bare repository (branch `main`) at `path`, which is
/// absent or an empty folder, so that `path` is either untouched or a
/// complete repository whatever moment the process dies at.
pub(super) fn init_atomically(path: &Path) -> Result<(), StoreError> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let (parent, prefix) = init_prefix(path)?;
    std::fs::create_dir_all(&parent).map_err(|e| StoreError::io(&parent, e))?;
    remove_stale_init_dirs(&parent, &prefix);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!("{prefix}{}-{seq}", std::process::id()));
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main").mkpath(true);
    let made = git2::Repository::init_opts(&tmp, &opts).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    });
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Replaces `path` when it is an empty folder; fails when another
    // process created a repository there first (then that one is used).
    match std::fs::rename(&tmp, path) {
        Ok(()) => {
            sync_dir(&parent);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            let still_empty = std::fs::read_dir(path)
                .map(|mut rd| rd.next().is_none())
                .unwrap_or(false);
            if still_empty {
                Err(StoreError::io(path, e))
            } else {
                Ok(())
            }
        }
    }
}

fn remove_stale_init_dirs(parent: &Path, prefix: &str) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix)
            && let Ok(meta) = e.metadata()
            && meta.is_dir()
            && age(&meta) > STALE_AGE
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Flushes a folder's entries (a rename into it) to disk; best effort.
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// For a folder git does not accept as a repository: when it holds only a
/// `.git` folder with no refs and no objects (a creation that never
/// finished), that `.git` folder, safe to delete. `Err` when `.git` exists
/// but holds something, with what to do.
pub(super) fn half_made(path: &Path) -> Result<Option<PathBuf>, StoreError> {
    let git_dir = path.join(".git");
    if !git_dir.is_dir() {
        return Ok(None);
    }
    let only_git = std::fs::read_dir(path)
        .map_err(|e| StoreError::io(path, e))?
        .flatten()
        .all(|e| e.file_name() == ".git");
    let empty = only_git
        && !git_dir.join("packed-refs").exists()
        && !holds_files(&git_dir.join("refs"))
        && !holds_files(&git_dir.join("objects"));
    if empty {
        Ok(Some(git_dir))
    } else {
        Err(StoreError::Incomplete {
            git_dir: git_dir.display().to_string(),
        })
    }
}

/// Whether `dir` has a file anywhere below it.
fn holds_files(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => holds_files(&e.path()),
        _ => true,
    })
}
