//! Hash checking on reads. libgit2's setting is process-wide, so this file
//! holds one test and runs in a process of its own: it relies on the
//! default (checks on) and turns checks off only at its very end.

use cleartrail::store::{Author, ChangeSet, CommitOutcome, Store};
use std::path::Path;
use std::process::Command;

fn author() -> Author {
    Author {
        name: "T".into(),
        email: "t@example.com".into(),
        time: chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
    }
}

fn loose_path(repo: &Path, id: git2::Oid) -> std::path::PathBuf {
    let hex = id.to_string();
    repo.join(".git/objects").join(&hex[..2]).join(&hex[2..])
}

#[test]
fn a_forged_loose_object_fails_the_read_naming_it_and_git_fsck_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ev");
    let (tip, real) = {
        let store = Store::open_or_init(&path).unwrap();
        let mut cs = ChangeSet::new();
        cs.put("evidence/a.json", b"{\"approved\":false}\n".to_vec());
        let CommitOutcome::Committed { commit, .. } = store
            .commit("ev", None, None, &cs, "one", &author())
            .unwrap()
        else {
            panic!("expected a commit")
        };
        let real = store
            .snapshot(Some(commit))
            .unwrap()
            .blob_id("evidence/a.json")
            .unwrap();
        (commit, real)
    };
    // The forger writes other content as a loose object of its own, then
    // puts that file under the real object's id.
    let forged = b"{\"approved\":true}\n";
    let forged_id = git2::Repository::open(&path).unwrap().blob(forged).unwrap();
    let target = loose_path(&path, real);
    std::fs::remove_file(&target).unwrap();
    std::fs::copy(loose_path(&path, forged_id), &target).unwrap();

    let store = Store::open(&path).unwrap();
    let snap = store.snapshot(Some(tip)).unwrap();
    let err = snap.read("evidence/a.json").unwrap_err();
    let mut chain = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        chain.push_str(&format!(": {s}"));
        src = s.source();
    }
    assert!(chain.contains(&real.to_string()), "{chain}");
    assert!(chain.contains("evidence/a.json"), "{chain}");
    assert!(chain.contains("hash mismatch"), "{chain}");
    assert!(snap.read_blob(real).is_err());

    let fsck = Command::new("git")
        .args(["fsck", "--full", "--strict"])
        .current_dir(&path)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert!(!fsck.status.success(), "{out}");
    assert!(out.contains(&real.to_string()), "{out}");

    // What the check is for: without it the forged bytes read as genuine.
    git2::opts::strict_hash_verification(false);
    let relaxed = Store::open(&path).unwrap();
    let bytes = relaxed
        .snapshot(Some(tip))
        .unwrap()
        .read("evidence/a.json")
        .unwrap()
        .unwrap();
    assert_eq!(bytes, forged);
}
