//! The store against what real repositories, concurrent writers and
//! crashes put in its way. Every repository the store writes here is
//! checked by git's own `git fsck --full --strict`, not only by libgit2.

mod common;
use common::{fsck, git};

use cleartrail::store::{Author, ChangeSet, CommitOutcome, CommitSpec, Store, StoreError};
use git2::Oid;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

fn author() -> Author {
    Author {
        name: "T".into(),
        email: "t@example.com".into(),
        time: chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
    }
}

fn committed(out: CommitOutcome) -> Oid {
    match out {
        CommitOutcome::Committed { commit, .. } => commit,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Commits file `a` with `value` on branch `b`, on top of `tip`.
fn commit_a(store: &Store, tip: Option<Oid>, value: &[u8]) -> Result<CommitOutcome, StoreError> {
    let mut cs = ChangeSet::new();
    cs.put("a", value.to_vec());
    store.commit("b", tip, tip, &cs, "write a", &author())
}

fn files(store: &Store, commit: Oid) -> Vec<String> {
    store
        .snapshot(Some(commit))
        .unwrap()
        .files_under("")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// Every file below `dir`, recursively, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

fn many(n: usize, tag: &str) -> ChangeSet {
    let mut cs = ChangeSet::new();
    for i in 0..n {
        cs.put(
            format!("evidence/d{}/f{i}.json", i % 7),
            format!("{{\"{tag}\":{i}}}\n").into_bytes(),
        );
    }
    cs
}

fn set_age(path: &Path, age: Duration) {
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn a_linked_worktree_writes_into_the_shared_objects_folder() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main");
    let store = Store::open_or_init(&main).unwrap();
    let mut cs = ChangeSet::new();
    cs.put("README.md", b"hello\n".to_vec());
    committed(
        store
            .commit("main", None, None, &cs, "init", &author())
            .unwrap(),
    );
    let wt = dir.path().join("wt");
    git(
        &main,
        &["worktree", "add", "-q", "--detach", wt.to_str().unwrap()],
    );

    // Both a pack-sized and a loose-sized change set, through the worktree.
    let store = Store::open(&wt).unwrap();
    let c1 = committed(
        store
            .commit("evidence", None, None, &many(100, "a"), "bulk", &author())
            .unwrap(),
    );
    let c2 = committed(
        store
            .commit(
                "evidence",
                Some(c1),
                Some(c1),
                &many(3, "b"),
                "small",
                &author(),
            )
            .unwrap(),
    );
    assert_eq!(files(&store, c2).len(), 100);
    assert_eq!(
        store
            .snapshot(Some(c2))
            .unwrap()
            .read("evidence/d1/f1.json")
            .unwrap()
            .unwrap(),
        b"{\"b\":1}\n"
    );
    // Nothing went to the worktree's private git folder.
    let private = main.join(".git/worktrees/wt");
    assert!(
        walk(&private)
            .iter()
            .all(|f| !f.starts_with("objects") && !f.contains("tmp_cleartrail")),
        "{:?}",
        walk(&private)
    );
    assert_eq!(
        Store::open(&main).unwrap().branch_tip("evidence").unwrap(),
        Some(c2)
    );
    fsck(&main);
}

#[test]
fn a_failed_pack_write_leaves_no_temporary_or_stray_pack() {
    let dir = tempfile::tempdir().unwrap();
    // The same change set on the same base gives the same pack: learn its
    // name in a scratch repository.
    let scratch = Store::open_or_init(&dir.path().join("scratch")).unwrap();
    committed(
        scratch
            .commit("b", None, None, &many(50, "x"), "m", &author())
            .unwrap(),
    );
    let pack_dir = dir.path().join("scratch/.git/objects/pack");
    let idx = walk(&pack_dir)
        .into_iter()
        .find(|f| f.ends_with(".idx"))
        .unwrap();

    let path = dir.path().join("ev");
    let store = Store::open_or_init(&path).unwrap();
    let target_pack_dir = path.join(".git/objects/pack");
    // A folder where the index must go makes its rename fail.
    std::fs::create_dir_all(target_pack_dir.join(&idx)).unwrap();
    let err = store
        .commit("b", None, None, &many(50, "x"), "m", &author())
        .unwrap_err();
    assert!(err.to_string().contains(&idx), "{err}");
    assert_eq!(walk(&target_pack_dir), Vec::<String>::new());
    assert_eq!(store.branch_tip("b").unwrap(), None);
}

#[test]
fn deleting_a_path_removes_a_file_never_a_folder_of_that_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let mut cs = ChangeSet::new();
    cs.put("a/b/c.json", b"1".to_vec());
    cs.put("a/x", b"2".to_vec());
    let c1 = committed(
        store
            .commit("b", None, None, &cs, "one", &author())
            .unwrap(),
    );

    // A folder named by a delete stays, and so does a file a delete
    // reaches below.
    for path in ["a/b", "a", "a/x/y"] {
        let mut del = ChangeSet::new();
        del.delete(path);
        let out = store
            .commit("b", Some(c1), Some(c1), &del, "del", &author())
            .unwrap();
        assert_eq!(out, CommitOutcome::Unchanged { tip: Some(c1) }, "{path}");
    }
    // The file itself goes.
    let mut del = ChangeSet::new();
    del.delete("a/x");
    let c2 = committed(
        store
            .commit("b", Some(c1), Some(c1), &del, "del", &author())
            .unwrap(),
    );
    assert_eq!(files(&store, c2), ["a/b/c.json"]);
    fsck(dir.path());
}

/// Swaps, a 20 MB blob and removals, written once as loose objects (few
/// changes) and once through the pack writer (many).
#[test]
fn git_fsck_accepts_every_shape_the_store_writes_loose_and_packed() {
    for padding in [0usize, 60] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let pad = |cs: &mut ChangeSet, round: usize| {
            for i in 0..padding {
                cs.put(format!("pad/{i}.json"), format!("{round}:{i}").into_bytes());
            }
        };
        let big: Vec<u8> = (0..20 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut cs = ChangeSet::new();
        cs.put("p/x", b"file".to_vec());
        cs.put("p/y/z.md", b"in a folder".to_vec());
        cs.put("a.b", b"1".to_vec());
        cs.put("a/x", b"2".to_vec());
        cs.put("a-b", b"3".to_vec());
        cs.put("big.bin", big.clone());
        pad(&mut cs, 0);
        let c1 = committed(
            store
                .commit("b", None, None, &cs, "one", &author())
                .unwrap(),
        );
        fsck(dir.path());
        assert_eq!(
            store.snapshot(Some(c1)).unwrap().read("big.bin").unwrap(),
            Some(big)
        );

        let mut swap = ChangeSet::new();
        swap.delete("p/x");
        swap.put("p/x/inner.md", b"now a folder".to_vec());
        swap.delete("p/y/z.md");
        swap.put("p/y", b"now a file".to_vec());
        swap.delete("big.bin");
        pad(&mut swap, 1);
        let c2 = committed(
            store
                .commit("b", Some(c1), Some(c1), &swap, "two", &author())
                .unwrap(),
        );
        fsck(dir.path());
        let mut want = vec!["a-b", "a.b", "a/x", "p/x/inner.md", "p/y"];
        let got = files(&store, c2);
        let got: Vec<&str> = got
            .iter()
            .map(String::as_str)
            .filter(|p| !p.starts_with("pad/"))
            .collect();
        want.sort();
        assert_eq!(got, want);

        // Remove everything: the empty tree.
        let mut all = ChangeSet::new();
        for p in files(&store, c2) {
            all.delete(p);
        }
        let c3 = committed(
            store
                .commit("b", Some(c2), Some(c2), &all, "three", &author())
                .unwrap(),
        );
        assert!(files(&store, c3).is_empty());
        fsck(dir.path());
        let packs = walk(&dir.path().join(".git/objects/pack"));
        assert_eq!(packs.is_empty(), padding == 0, "{packs:?}");
    }
}

/// Eight writers, each with its own files, start together on a repository
/// without the branch; each retries on the new tip when it loses. Every
/// writer's files end up in the branch. With the former creation (check
/// that the branch is absent, then take the ref lock) a commit was lost
/// within about 20 rounds.
#[test]
fn concurrent_first_writers_never_lose_a_commit() {
    const WRITERS: usize = 8;
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev");
        Store::open_or_init(&path).unwrap();
        let barrier = Arc::new(Barrier::new(WRITERS));
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let path = path.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path).unwrap();
                    // Large enough for the pack path for half of them.
                    let n = if w % 2 == 0 { 40 } else { 3 };
                    let mut cs = ChangeSet::new();
                    for i in 0..n {
                        cs.put(
                            format!("w{w}/{i}.json"),
                            format!("{round}:{w}:{i}").into_bytes(),
                        );
                    }
                    cs.put("shared/index.txt", format!("writer {w}").into_bytes());
                    barrier.wait();
                    let mut losses = 0;
                    loop {
                        let tip = store.branch_tip("evidence").unwrap();
                        match store.commit("evidence", tip, tip, &cs, &format!("w{w}"), &author()) {
                            Ok(out) => return (committed(out), losses),
                            Err(e) if e.is_race() => losses += 1,
                            Err(e) => panic!("writer {w}: {e}"),
                        }
                    }
                })
            })
            .collect();
        let results: Vec<(Oid, usize)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let store = Store::open(&path).unwrap();
        let tip = store.branch_tip("evidence").unwrap().unwrap();
        let have: BTreeSet<String> = files(&store, tip).into_iter().collect();
        for w in 0..WRITERS {
            let n = if w % 2 == 0 { 40 } else { 3 };
            for i in 0..n {
                assert!(
                    have.contains(&format!("w{w}/{i}.json")),
                    "round {round}: w{w}/{i}"
                );
            }
        }
        // One commit per writer, in one line of history.
        let mut walk = store.repo().revwalk().unwrap();
        walk.push(tip).unwrap();
        let history: BTreeSet<Oid> = walk.map(|c| c.unwrap()).collect();
        assert_eq!(history.len(), WRITERS, "round {round}");
        for (c, _) in &results {
            assert!(history.contains(c), "round {round}: {c} lost");
        }
        fsck(&path);
    }
}

#[test]
fn an_hour_old_ref_lock_is_removed_and_a_fresh_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let c1 = committed(commit_a(&store, None, b"1").unwrap());
    let lock = dir.path().join(".git/refs/heads/b.lock");

    // Left by a crash two hours ago.
    std::fs::write(&lock, b"").unwrap();
    set_age(&lock, Duration::from_secs(2 * 3600));
    let c2 = committed(commit_a(&store, Some(c1), b"2").unwrap());
    assert!(!lock.exists());

    // A young one could be a live writer's: named, with when to delete it.
    std::fs::write(&lock, b"").unwrap();
    let err = commit_a(&store, Some(c2), b"3").unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(!err.is_race());
    let msg = err.to_string();
    assert!(msg.contains(&lock.display().to_string()), "{msg}");
    assert!(msg.contains("delete that file"), "{msg}");
    assert!(msg.contains("more than an hour old"), "{msg}");
    assert!(lock.exists());
    assert_eq!(store.branch_tip("b").unwrap(), Some(c2));
}

/// What a ClearTrail writer killed while holding the ref lock leaves: the
/// guard file naming the lock, and the empty lock, made after the record.
/// The next writer removes it at once; a lock older than the record (one
/// the dead writer was waiting on) is someone else's and stays.
#[test]
fn a_ref_lock_left_by_a_killed_writer_is_removed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let c1 = committed(commit_a(&store, None, b"1").unwrap());
    let lock = dir.path().join(".git/refs/heads/b.lock");
    let guard = dir.path().join(".git/cleartrail-ref-guard");

    std::fs::write(&guard, format!("{}\n", lock.display())).unwrap();
    std::fs::write(&lock, b"").unwrap();
    let c2 = committed(commit_a(&store, Some(c1), b"2").unwrap());
    assert!(!lock.exists());
    assert_eq!(std::fs::read(&guard).unwrap(), b"");

    std::fs::write(&lock, b"").unwrap();
    set_age(&lock, Duration::from_secs(60));
    std::fs::write(&guard, format!("{}\n", lock.display())).unwrap();
    let err = commit_a(&store, Some(c2), b"3").unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(lock.exists());
}

#[test]
fn a_half_made_repository_is_created_again_and_a_used_one_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    // What `git init` leaves when killed before writing HEAD.
    let half = dir.path().join("half");
    for d in [
        "refs/heads",
        "refs/tags",
        "objects/info",
        "objects/pack",
        "hooks",
    ] {
        std::fs::create_dir_all(half.join(".git").join(d)).unwrap();
    }
    std::fs::write(half.join(".git/config"), "[core]\n").unwrap();
    assert!(matches!(
        Store::open(&half),
        Err(StoreError::NotARepository { .. })
    ));
    let store = Store::open_or_init(&half).unwrap();
    let c = committed(
        store
            .commit("b", None, None, &many(2, "h"), "m", &author())
            .unwrap(),
    );
    assert_eq!(files(&store, c).len(), 2);
    fsck(&half);

    // One that holds an object is not ours to delete.
    let used = dir.path().join("used");
    std::fs::create_dir_all(used.join(".git/objects/ab")).unwrap();
    std::fs::write(used.join(".git/objects/ab/cdef"), b"x").unwrap();
    let err = Store::open_or_init(&used).err().unwrap();
    assert!(matches!(err, StoreError::Incomplete { .. }), "{err}");
    let git_dir = used.join(".git").display().to_string();
    assert!(
        err.to_string().contains(&format!("delete {git_dir}")),
        "{err}"
    );
    assert!(used.join(".git/objects/ab/cdef").exists());

    // Creation leaves nothing beside the repository.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_new_repository_appears_complete_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    // An interrupted creation from over an hour ago, and a fresh one
    // (another process's, maybe still running).
    let old = dir.path().join(".ev.cleartrail-init-1-0");
    let young = dir.path().join(".ev.cleartrail-init-2-0");
    std::fs::create_dir_all(old.join(".git")).unwrap();
    std::fs::create_dir_all(young.join(".git")).unwrap();
    set_age(&old, Duration::from_secs(2 * 3600));
    let path = dir.path().join("ev");
    Store::open_or_init(&path).unwrap();
    assert!(path.join(".git/HEAD").exists());
    assert!(!old.exists());
    assert!(young.exists());
    // An existing empty folder is filled the same way.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    Store::open_or_init(&empty).unwrap();
    assert!(empty.join(".git/HEAD").exists());
}

#[test]
fn temporary_packs_left_by_crashes_are_removed_when_old() {
    let dir = tempfile::tempdir().unwrap();
    Store::open_or_init(dir.path()).unwrap();
    let pack = dir.path().join(".git/objects/pack");
    std::fs::create_dir_all(&pack).unwrap();
    let ours_old = pack.join("tmp_cleartrail_123_0.pack");
    let ours_young = pack.join("tmp_cleartrail_124_0.pack");
    let foreign_old = pack.join("tmp_pack_abc");
    for p in [&ours_old, &ours_young, &foreign_old] {
        std::fs::write(p, vec![0u8; 1024]).unwrap();
    }
    set_age(&ours_old, Duration::from_secs(2 * 3600));
    set_age(&foreign_old, Duration::from_secs(2 * 3600));
    Store::open(dir.path()).unwrap();
    assert!(!ours_old.exists());
    assert!(ours_young.exists());
    assert!(foreign_old.exists());
}

/// A repository with a commit on `main`, the given remotes' branches and
/// `origin/HEAD`, built with git itself.
fn repo_with_remotes(dir: &Path) -> (PathBuf, Oid) {
    let path = dir.join("r");
    git(dir, &["init", "-q", "-b", "main", "r"]);
    std::fs::write(path.join("f"), "x").unwrap();
    git(&path, &["add", "f"]);
    git(&path, &["commit", "-q", "-m", "one"]);
    let head: Oid = git(&path, &["rev-parse", "HEAD"]).trim().parse().unwrap();
    (path, head)
}

#[test]
fn remote_tips_list_each_configured_remotes_branch() {
    let dir = tempfile::tempdir().unwrap();
    let (path, head) = repo_with_remotes(dir.path());
    git(
        &path,
        &["remote", "add", "origin", "https://example.com/a.git"],
    );
    git(
        &path,
        &["remote", "add", "backup", "https://example.com/b.git"],
    );
    let h = head.to_string();
    git(&path, &["update-ref", "refs/remotes/origin/evidence", &h]);
    git(&path, &["update-ref", "refs/remotes/backup/evidence", &h]);
    // Not the branch itself: a longer name ending the same way, and a
    // remote-tracking ref of a remote not configured.
    git(&path, &["update-ref", "refs/remotes/origin/x/evidence", &h]);
    git(&path, &["update-ref", "refs/remotes/gone/evidence", &h]);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.remote_tips("evidence").unwrap(),
        vec![
            ("refs/remotes/backup/evidence".to_string(), head),
            ("refs/remotes/origin/evidence".to_string(), head),
        ]
    );
    assert!(store.remote_tips("other").unwrap().is_empty());
}

#[test]
fn shallow_clones_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = repo_with_remotes(dir.path());
    std::fs::write(path.join("f"), "y").unwrap();
    git(&path, &["commit", "-q", "-am", "two"]);
    let url = format!("file://{}", path.display());
    git(
        dir.path(),
        &["clone", "-q", "--depth", "1", &url, "shallow"],
    );
    assert!(!Store::open(&path).unwrap().is_shallow());
    assert!(
        Store::open(&dir.path().join("shallow"))
            .unwrap()
            .is_shallow()
    );
}

#[test]
fn the_default_branch_is_origin_head_or_main_never_the_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let (path, head) = repo_with_remotes(dir.path());
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.default_branch_tip().unwrap(),
        Some(("refs/heads/main".to_string(), head))
    );
    // Detached, or on a feature branch with its own commit: still main.
    git(&path, &["checkout", "-q", "--detach"]);
    assert_eq!(
        store.default_branch_tip().unwrap(),
        Some(("refs/heads/main".to_string(), head))
    );
    git(&path, &["checkout", "-q", "-b", "feature"]);
    git(&path, &["commit", "-q", "--allow-empty", "-m", "wip"]);
    assert_eq!(
        store.default_branch_tip().unwrap(),
        Some(("refs/heads/main".to_string(), head))
    );
    // A clone names it through origin/HEAD.
    git(&path, &["checkout", "-q", "main"]);
    let url = format!("file://{}", path.display());
    git(dir.path(), &["clone", "-q", &url, "clone"]);
    let clone = dir.path().join("clone");
    git(&clone, &["symbolic-ref", "HEAD", "refs/heads/unborn"]);
    assert_eq!(
        Store::open(&clone).unwrap().default_branch_tip().unwrap(),
        Some(("refs/remotes/origin/main".to_string(), head))
    );
    // Neither: nothing.
    let empty = Store::open_or_init(&dir.path().join("empty")).unwrap();
    assert_eq!(empty.default_branch_tip().unwrap(), None);
}

fn spec<'a>(
    expected: Option<Oid>,
    parents: Vec<Oid>,
    base_tree: Option<Oid>,
    changes: &'a ChangeSet,
    author: &'a Author,
) -> CommitSpec<'a> {
    CommitSpec {
        branch: "ev",
        expected,
        parents,
        base_tree,
        changes,
        message: "m",
        author,
    }
}

#[test]
fn commit_with_takes_explicit_parents_and_says_when_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let mut cs = ChangeSet::new();
    cs.put("main.txt", b"m".to_vec());
    let main = committed(
        store
            .commit("main", None, None, &cs, "main", &author())
            .unwrap(),
    );
    let main_tree = store.commit_tree(main).unwrap();
    let empty = ChangeSet::new();
    let a = author();
    let spec =
        |expected, parents, base_tree, changes| spec(expected, parents, base_tree, changes, &a);

    // A new branch on main with nothing to add records nothing.
    let out = store
        .commit_with(&spec(None, vec![main], Some(main_tree), &empty))
        .unwrap();
    assert_eq!(out, CommitOutcome::Unchanged { tip: Some(main) });
    assert_eq!(store.branch_tip("ev").unwrap(), None);

    let mut ev = ChangeSet::new();
    ev.put("evidence/a.json", b"{}".to_vec());
    let e1 = committed(
        store
            .commit_with(&spec(None, vec![main], Some(main_tree), &ev))
            .unwrap(),
    );
    let e1_tree = store.commit_tree(e1).unwrap();
    // Same tree, and main is already in the branch's history: nothing.
    let out = store
        .commit_with(&spec(Some(e1), vec![e1, main], Some(e1_tree), &empty))
        .unwrap();
    assert_eq!(out, CommitOutcome::Unchanged { tip: Some(e1) });

    // main moves on: merging it is news even with the same tree.
    let mut cs = ChangeSet::new();
    cs.put("main.txt", b"m2".to_vec());
    let main2 = committed(
        store
            .commit("main", Some(main), Some(main), &cs, "main2", &author())
            .unwrap(),
    );
    let e2 = committed(
        store
            .commit_with(&spec(Some(e1), vec![e1, main2], Some(e1_tree), &empty))
            .unwrap(),
    );
    let c = store.repo().find_commit(e2).unwrap();
    assert_eq!(c.parent_ids().collect::<Vec<_>>(), vec![e1, main2]);
    assert_eq!(c.tree_id(), e1_tree);
    assert_eq!(store.branch_tip("ev").unwrap(), Some(e2));
    // A stale expected value is still a race.
    let mut other = ChangeSet::new();
    other.put("evidence/b.json", b"{}".to_vec());
    let err = store
        .commit_with(&spec(Some(e1), vec![e1], Some(e1_tree), &other))
        .unwrap_err();
    assert!(err.is_race(), "{err}");
    assert_eq!(store.branch_tip("ev").unwrap(), Some(e2));
    fsck(dir.path());
}

#[test]
fn graft_takes_owned_names_from_one_tree_and_the_rest_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let mut onto = ChangeSet::new();
    onto.put("README.md", b"new readme".to_vec());
    onto.put("src/main.rs", b"fn main() {}".to_vec());
    onto.put("evidence/stale.json", b"old copy".to_vec());
    onto.put("checks", b"a file here".to_vec());
    let onto = store.write_tree_id(None, &onto).unwrap();
    let mut from = ChangeSet::new();
    from.put("README.md", b"old readme".to_vec());
    from.put("evidence/a.json", b"{}".to_vec());
    from.put("checks/x.json", b"{}".to_vec());
    let from = store.write_tree_id(None, &from).unwrap();

    let owned = ["evidence", "checks", "collections"];
    let t = store.graft(onto, from, &owned).unwrap();
    let snap = store.snapshot_tree(t);
    let got: Vec<String> = snap
        .files_under("")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        got,
        [
            "README.md",
            "checks/x.json",
            "evidence/a.json",
            "src/main.rs"
        ]
    );
    assert_eq!(snap.read("README.md").unwrap().unwrap(), b"new readme");
    // Nothing owned in `from`: the owned names are simply gone.
    let t = store.graft(onto, None, &owned).unwrap();
    let snap = store.snapshot_tree(t);
    assert_eq!(snap.files_under("").unwrap().len(), 2);
    assert_eq!(store.graft(None, None, &owned).unwrap(), None);
    assert!(store.graft(None, from, &owned).unwrap().is_some());
}

#[test]
fn a_snapshot_lists_folders_and_files_by_prefix_not_by_string_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let mut cs = ChangeSet::new();
    for p in ["a/x", "a/y/z", "a-b/x", "a.b", "ab/x", "a/y/w/v", "b"] {
        cs.put(p, p.as_bytes().to_vec());
    }
    let c = committed(store.commit("b", None, None, &cs, "m", &author()).unwrap());
    let snap = store.snapshot(Some(c)).unwrap();
    let under = |p: &str| -> Vec<String> {
        snap.files_under(p)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    };
    assert_eq!(under("a"), ["a/x", "a/y/w/v", "a/y/z"]);
    assert_eq!(under("a/y"), ["a/y/w/v", "a/y/z"]);
    assert!(under("a.b").is_empty());
    assert!(under("nope").is_empty());
    assert_eq!(under("").len(), 7);
    assert_eq!(snap.dirs_under("").unwrap(), ["a", "a-b", "ab"]);
    assert_eq!(snap.dirs_under("a").unwrap(), ["y"]);
    assert!(snap.dirs_under("b").unwrap().is_empty());
    assert!(snap.blob_id("a.b").is_some());
    assert!(snap.blob_id("a").is_none());
    assert!(snap.blob_id("a/y").is_none());
    assert_eq!(snap.read("a/y/z").unwrap().unwrap(), b"a/y/z");
    assert_eq!(snap.tree_id(), Some(store.commit_tree(c).unwrap()));
    assert!(
        store
            .snapshot(None)
            .unwrap()
            .files_under("")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_missing_tree_is_an_error_not_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let mut cs = ChangeSet::new();
    cs.put("evidence/a.json", b"{}".to_vec());
    let c = committed(store.commit("b", None, None, &cs, "m", &author()).unwrap());
    let sub = store
        .repo()
        .find_commit(c)
        .unwrap()
        .tree()
        .unwrap()
        .get_name("evidence")
        .unwrap()
        .id();
    let hex = sub.to_string();
    std::fs::remove_file(
        dir.path()
            .join(".git/objects")
            .join(&hex[..2])
            .join(&hex[2..]),
    )
    .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let snap = store.snapshot(Some(c)).unwrap();
    let err = snap.try_blob_id("evidence/a.json").unwrap_err();
    assert!(err.to_string().contains(&hex), "{err}");
    assert!(err.to_string().contains("evidence"), "{err}");
    assert!(snap.files_under("evidence").is_err());
}
