//! Store write benchmark: 100,000 synthetic artifacts in one commit, then a
//! commit of 100 changed ones, against `git fast-import` writing the same
//! blobs and tree. Run with `cargo bench --bench store` (add `-- --quick`
//! for 10,000 artifacts). Prints the median of three runs of each; the
//! first 100-change commit runs right after the full write (the new pack
//! not yet open), the "warm" figure is the median of ten more after it.
//!
//! Two comparisons decide how the store is built:
//! - the store's own writer (spliced raw trees, hand-written pack) against
//!   git2's incremental tree editing (`TreeUpdateBuilder`) with objects
//!   collected in an in-memory pack (`Mempack`), dumped and indexed
//!   through `Odb::packwriter`, on the same two commits;
//! - libgit2's object hash checking on (the default) and off, on the
//!   100-change commit and on reading every file back through a
//!   `Snapshot` (what `verify` does).
//!
//! It also times looking up every file's blob id through a `Snapshot`
//! (one walk of the tree, then binary searches) against resolving each
//! path from the root tree, which is what the snapshot did before.

use cleartrail::artifact::{Artifact, DateSpan};
use cleartrail::store::{Author, ChangeSet, CommitOutcome, Store};
use git2::{FileMode, ObjectType, Oid, Repository};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn artifact(i: usize, revision: u32) -> Artifact {
    let repo = i / 1000;
    let day =
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new((i % 365) as u64);
    Artifact {
        source: "github".into(),
        kind: "pull-request".into(),
        object_id: format!("acme/service-{repo:03}/{i}"),
        url: format!("https://github.com/acme/service-{repo:03}/pull/{i}"),
        title: format!("Change number {i}: update dependency and config"),
        period: Some(DateSpan::day(day)),
        observed: BTreeMap::from([
            ("created".into(), format!("{day}T09:00:00Z")),
            ("merged".into(), format!("{day}T17:30:00Z")),
        ]),
        content: serde_json::json!({
            "number": i,
            "state": "closed",
            "merged": true,
            "author": format!("dev{}", i % 97),
            "base": "main",
            "head_sha": format!("{:040x}", (i as u128) * 7919 + revision as u128),
            "reviews": [{"user": format!("lead{}", i % 13), "state": "APPROVED"}],
            "labels": ["dependencies"],
            "revision": revision,
        }),
        query: "github: merged pull requests".into(),
        shard: None,
        captured: None,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn author() -> Author {
    Author {
        name: "bench".into(),
        email: "bench@example.com".into(),
        time: chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
    }
}

fn fast_import_stream(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut s = Vec::with_capacity(files.iter().map(|(_, b)| b.len() + 64).sum());
    for (i, (_, bytes)) in files.iter().enumerate() {
        write!(s, "blob\nmark :{}\ndata {}\n", i + 1, bytes.len()).unwrap();
        s.extend_from_slice(bytes);
        s.push(b'\n');
    }
    s.extend_from_slice(b"commit refs/heads/bench\ncommitter bench <bench@example.com> 1790000000 +0000\ndata 5\nbench\n");
    for (i, (path, _)) in files.iter().enumerate() {
        writeln!(s, "M 100644 :{} {path}", i + 1).unwrap();
    }
    s
}

/// The alternative writer: every blob into an in-memory object store,
/// the tree by `TreeUpdateBuilder` on the base tree, the commit, then the
/// lot dumped as one pack and indexed into the repository. Returns the
/// new commit.
fn git2_commit(path: &std::path::Path, base: Option<Oid>, files: &[(String, Vec<u8>)]) -> Oid {
    let repo = Repository::open(path).unwrap();
    let odb = repo.odb().unwrap();
    let mempack = odb.add_new_mempack_backend(1000).unwrap();
    let mut update = git2::build::TreeUpdateBuilder::new();
    for (p, b) in files {
        let id = odb.write(ObjectType::Blob, b).unwrap();
        update.upsert(p.as_str(), id, FileMode::Blob);
    }
    let base_tree = match base {
        Some(c) => repo.find_commit(c).unwrap().tree().unwrap(),
        None => {
            let empty = odb.write(ObjectType::Tree, b"").unwrap();
            repo.find_tree(empty).unwrap()
        }
    };
    let tree = update.create_updated(&repo, &base_tree).unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let sig = git2::Signature::new(
        "bench",
        "bench@example.com",
        &git2::Time::new(1_790_000_000, 0),
    )
    .unwrap();
    let parent = base.map(|b| repo.find_commit(b).unwrap());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let commit = repo
        .commit(None, &sig, &sig, "git2", &tree, &parents)
        .unwrap();
    let mut buf = git2::Buf::new();
    mempack.dump(&repo, &mut buf).unwrap();
    let mut writer = odb.packwriter().unwrap();
    writer.write_all(&buf).unwrap();
    writer.commit().unwrap();
    mempack.reset().unwrap();
    commit
}

/// Reads every file of a commit back through a snapshot; returns the bytes read.
fn read_all(store: &Store, commit: Oid) -> usize {
    let snap = store.snapshot(Some(commit)).unwrap();
    snap.files_under("")
        .unwrap()
        .iter()
        .map(|(_, id)| snap.read_blob(*id).unwrap().len())
        .sum()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 10_000 } else { 100_000 };
    let runs = 3;
    eprintln!("generating {n} artifacts ...");
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let a = artifact(i, 0);
            (a.json_path(), a.to_bytes().0)
        })
        .collect();
    let total_bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let changed: Vec<(String, Vec<u8>)> = (0..100)
        .map(|k| {
            let i = (k * 7919) % n;
            let a = artifact(i, 1);
            (a.json_path(), a.to_bytes().0)
        })
        .collect();

    let mut full = Vec::new();
    let mut incr = Vec::new();
    let mut fi = Vec::new();
    let mut warm = Vec::new();
    let (mut alt_full, mut alt_incr) = (Vec::new(), Vec::new());
    let (mut hash_on_commit, mut hash_off_commit) = (Vec::new(), Vec::new());
    let (mut hash_on_read, mut hash_off_read) = (Vec::new(), Vec::new());
    let (mut lookups_index, mut lookups_get_path) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(&dir.path().join("ev")).unwrap();
        let mut cs = ChangeSet::new();
        for (p, b) in &files {
            cs.put(p.clone(), b.clone());
        }
        let t = Instant::now();
        let out = store
            .commit("bench", None, None, &cs, "full", &author())
            .unwrap();
        full.push(t.elapsed());
        let CommitOutcome::Committed { commit, .. } = out else {
            panic!("expected a commit")
        };

        let mut cs = ChangeSet::new();
        for (p, b) in &changed {
            cs.put(p.clone(), b.clone());
        }
        let t = Instant::now();
        let out = store
            .commit(
                "bench",
                Some(commit),
                Some(commit),
                &cs,
                "100 changes",
                &author(),
            )
            .unwrap();
        incr.push(t.elapsed());
        let CommitOutcome::Committed {
            commit: mut tip, ..
        } = out
        else {
            panic!("expected a commit")
        };
        let first_incr = tip;
        // Later syncs: the repository is warm (its pack open, its pages
        // cached), as for every run after the first of a scheduled job.
        for revision in 2..12 {
            let mut cs = ChangeSet::new();
            for k in 0..100 {
                let a = artifact((k * 7919) % n, revision);
                cs.put(a.json_path(), a.to_bytes().0);
            }
            let t = Instant::now();
            let out = store
                .commit("bench", Some(tip), Some(tip), &cs, "100 changes", &author())
                .unwrap();
            warm.push(t.elapsed());
            let CommitOutcome::Committed { commit, .. } = out else {
                panic!("expected a commit")
            };
            tip = commit;
        }

        let fdir = dir.path().join("fi");
        let init = Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&fdir)
            .status()
            .unwrap();
        assert!(init.success());
        let stream = fast_import_stream(&files);
        let t = Instant::now();
        let mut child = Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(&fdir)
            .stdin(Stdio::piped())
            .spawn()
            .expect("git fast-import");
        child.stdin.take().unwrap().write_all(&stream).unwrap();
        assert!(child.wait().unwrap().success());
        fi.push(t.elapsed());
        // Both wrote the same tree: the benchmark compares like with like.
        let ours = store.repo().find_commit(commit).unwrap().tree_id();
        let theirs = Command::new("git")
            .args(["rev-parse", "bench^{tree}"])
            .current_dir(&fdir)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&theirs.stdout).trim(),
            ours.to_string()
        );

        // Hash checking: a 100-change commit and a full read-back, on and off.
        for (on, commit_t, read_t) in [
            (true, &mut hash_on_commit, &mut hash_on_read),
            (false, &mut hash_off_commit, &mut hash_off_read),
        ] {
            git2::opts::strict_hash_verification(on);
            let store = Store::open(&dir.path().join("ev")).unwrap();
            let mut cs = ChangeSet::new();
            for k in 0..100 {
                let a = artifact((k * 7919) % n, 100 + on as u32);
                cs.put(a.json_path(), a.to_bytes().0);
            }
            let t = Instant::now();
            let out = store
                .commit("bench", Some(tip), Some(tip), &cs, "100 changes", &author())
                .unwrap();
            commit_t.push(t.elapsed());
            let CommitOutcome::Committed { commit, .. } = out else {
                panic!("expected a commit")
            };
            tip = commit;
            let t = Instant::now();
            assert!(read_all(&store, tip) > total_bytes / 2);
            read_t.push(t.elapsed());
        }
        git2::opts::strict_hash_verification(true);

        // Looking up every file of the tree: the snapshot's index against
        // resolving each path from the root tree, as before.
        {
            let snap = store.snapshot(Some(tip)).unwrap();
            let t = Instant::now();
            let found = files
                .iter()
                .filter(|(p, _)| snap.blob_id(p).is_some())
                .count();
            lookups_index.push(t.elapsed());
            assert_eq!(found, n);
            let root = store.repo().find_commit(tip).unwrap().tree().unwrap();
            let t = Instant::now();
            let found = files
                .iter()
                .take(n / 10)
                .filter(|(p, _)| root.get_path(std::path::Path::new(p)).is_ok())
                .count();
            lookups_get_path.push(t.elapsed() * 10);
            assert_eq!(found, n / 10);
        }

        // The alternative writer, on a repository of its own.
        let gdir = dir.path().join("g2");
        Repository::init_bare(&gdir).unwrap();
        let t = Instant::now();
        let g_full = git2_commit(&gdir, None, &files);
        alt_full.push(t.elapsed());
        let t = Instant::now();
        let g_incr = git2_commit(&gdir, Some(g_full), &changed);
        alt_incr.push(t.elapsed());
        let grepo = Repository::open(&gdir).unwrap();
        assert_eq!(grepo.find_commit(g_full).unwrap().tree_id(), ours);
        let ours_incr = store.repo().find_commit(first_incr).unwrap().tree_id();
        assert_eq!(grepo.find_commit(g_incr).unwrap().tree_id(), ours_incr);

        eprintln!(
            "run {}: full {:?}, 100 changes {:?}, fast-import {:?}, git2 full {:?}, git2 100 changes {:?}",
            run + 1,
            full[run],
            incr[run],
            fi[run],
            alt_full[run],
            alt_incr[run],
        );
    }
    let (f, i, g, w) = (median(full), median(incr), median(fi), median(warm));
    println!(
        "artifacts:            {n} ({:.1} MiB of canonical JSON)",
        total_bytes as f64 / 1048576.0
    );
    println!("full write (one commit): {:>8.1} ms", f.as_secs_f64() * 1e3);
    println!("git fast-import:         {:>8.1} ms", g.as_secs_f64() * 1e3);
    println!(
        "ratio full / fast-import: {:.2}x (target <= 1.5x)",
        f.as_secs_f64() / g.as_secs_f64()
    );
    println!("100-change commit:       {:>8.1} ms", i.as_secs_f64() * 1e3);
    println!(
        "100-change / full write:  {:.2}% (target < 1%)",
        100.0 * i.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "100-change commit, warm:  {:>8.1} ms (median of 10 later commits)",
        w.as_secs_f64() * 1e3
    );
    println!(
        "warm / full write:         {:.2}%",
        100.0 * w.as_secs_f64() / f.as_secs_f64()
    );
    let ms = |v: Vec<Duration>| median(v).as_secs_f64() * 1e3;
    println!(
        "git2 TreeUpdateBuilder + mempack: full {:>8.1} ms, 100-change {:>6.1} ms",
        ms(alt_full),
        ms(alt_incr)
    );
    println!(
        "look up every file: snapshot index {:>8.1} ms, Tree::get_path from the root {:>8.1} ms (extrapolated from a tenth)",
        ms(lookups_index),
        ms(lookups_get_path)
    );
    println!(
        "hash checks on:  100-change commit {:>6.1} ms, read every file {:>7.1} ms",
        ms(hash_on_commit),
        ms(hash_on_read)
    );
    println!(
        "hash checks off: 100-change commit {:>6.1} ms, read every file {:>7.1} ms",
        ms(hash_off_commit),
        ms(hash_off_read)
    );
}
