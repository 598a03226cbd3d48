//! Where the evidence branch is built: forked from the default branch the
//! first time, continued from a remote that has it, never forked when a
//! shallow clone may simply not have fetched it, rebuilt on the default branch's
//! current files when both moved on, and continued from the default branch
//! once its pull request was merged.

mod common;

use common::*;
use git2::{Oid, Repository};
use std::path::Path;

const BRANCH: &str = "cleartrail/evidence";

/// An evidence repository with a `main` that holds user files.
fn evidence_repo_with_main(f: &Fixture) -> Repository {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let r = Repository::init_opts(f.evidence(), &opts).unwrap();
    commit(
        &r,
        &[
            ("notes.md", "v1\n"),
            // A file of the project's own beside generated pages: never
            // touched by a run.
            ("controls/soc2/NOTES.md", "ours\n"),
        ],
        "Evidence repository",
        T0,
        &[],
    );
    r
}

fn tip(repo: &Path, refname: &str) -> Oid {
    Repository::open(repo)
        .unwrap()
        .refname_to_id(refname)
        .unwrap()
}

fn run(f: &Fixture) -> std::process::Output {
    sync_into(f, &f.default_config(), &["--period", "2026"])
}

#[test]
fn a_new_branch_forks_from_the_default_branch() {
    let f = Fixture::new();
    let r = evidence_repo_with_main(&f);
    let main = r.refname_to_id("refs/heads/main").unwrap();
    let out = run(&f);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t = tip(&f.evidence(), &format!("refs/heads/{BRANCH}"));
    let c = r.find_commit(t).unwrap();
    assert_eq!(c.parent_ids().collect::<Vec<_>>(), vec![main]);
    assert_eq!(tree_files(&f.evidence(), BRANCH)["notes.md"], b"v1\n");
    // Twice: the second run has nothing new and must not delete it either.
    add_a_policy(&f);
    assert_eq!(code(&run(&f)), 0);
    assert_eq!(
        tree_files(&f.evidence(), BRANCH)["controls/soc2/NOTES.md"],
        b"ours\n"
    );
}

#[test]
fn unreviewed_work_checked_out_is_never_merged_into_the_evidence() {
    let f = Fixture::new();
    let r = evidence_repo_with_main(&f);
    assert_eq!(code(&run(&f)), 0);
    let first = tip(&f.evidence(), &format!("refs/heads/{BRANCH}"));
    // A feature branch, checked out, with work nobody reviewed; main moved
    // on too, so a merge would be due.
    let main0 = r.refname_to_id("refs/heads/main").unwrap();
    let feature = commit_on(&r, "feature", &[("wip.txt", "unreviewed\n")], "WIP", main0);
    r.set_head("refs/heads/feature").unwrap();
    add_a_policy(&f);
    let out = run(&f);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t = tip(&f.evidence(), &format!("refs/heads/{BRANCH}"));
    let parents: Vec<Oid> = r.find_commit(t).unwrap().parent_ids().collect();
    assert_eq!(parents, vec![first], "built on the evidence tip alone");
    assert!(!tree_files(&f.evidence(), BRANCH).contains_key("wip.txt"));
    // Detached at the feature commit (a pull request's merge ref in CI).
    r.set_head_detached(feature).unwrap();
    std::fs::write(f.src().join("policies/another.md"), "# Another\n").unwrap();
    let out = run(&f);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!tree_files(&f.evidence(), BRANCH).contains_key("wip.txt"));
}

#[test]
fn a_branch_that_exists_only_on_a_remote_is_continued_never_forked() {
    let f = Fixture::new();
    let r = evidence_repo_with_main(&f);
    let main = r.refname_to_id("refs/heads/main").unwrap();
    // The remote's branch: one commit on main, as a runner that checked
    // out main with full history sees a pull request's branch.
    let theirs = commit(
        &r,
        &[("notes.md", "from the remote\n")],
        "remote work",
        T0 + DAY,
        &[main],
    );
    r.reference("refs/heads/main", main, true, "back").unwrap();
    r.reference(
        &format!("refs/remotes/origin/{BRANCH}"),
        theirs,
        false,
        "as if fetched",
    )
    .unwrap();
    r.remote("origin", "https://example.com/acme/evidence.git")
        .unwrap();
    let out = run(&f);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("continues refs/remotes/origin/cleartrail/evidence"),
        "{}",
        stderr(&out)
    );
    let tip = r.refname_to_id(&format!("refs/heads/{BRANCH}")).unwrap();
    assert!(
        r.graph_descendant_of(tip, theirs).unwrap(),
        "forked instead of continued"
    );
    assert_eq!(
        tree_files(&f.evidence(), BRANCH)["notes.md"],
        b"from the remote\n"
    );
}

#[test]
fn a_shallow_clone_without_the_branch_is_refused() {
    let f = Fixture::new();
    let upstream = f.root.path().join("upstream");
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let r = Repository::init_opts(&upstream, &opts).unwrap();
    let c1 = commit(&r, &[("notes.md", "v1\n")], "one", T0, &[]);
    commit(&r, &[("notes.md", "v2\n")], "two", T0 + DAY, &[c1]);
    let status = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1"])
        .arg(format!("file://{}", upstream.display()))
        .arg(f.evidence())
        .status()
        .unwrap();
    assert!(status.success());
    let out = run(&f);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("shallow clone"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--unshallow"), "{}", stderr(&out));
}

#[test]
fn the_branch_is_rebuilt_on_a_default_branch_that_moved_on() {
    let f = Fixture::new();
    let r = evidence_repo_with_main(&f);
    assert_eq!(code(&run(&f)), 0);
    let first = tip(&f.evidence(), &format!("refs/heads/{BRANCH}"));
    // The default branch moves on (a file people edit there changes) ...
    let main0 = r.refname_to_id("refs/heads/main").unwrap();
    let main1 = commit_on(&r, "main", &[("notes.md", "v2\n")], "Edit notes", main0);
    // ... with nothing new in the sources: no commit.
    let out = run(&f);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(tip(&f.evidence(), &format!("refs/heads/{BRANCH}")), first);
    // New evidence: the commit merges the default branch, and carries its
    // current files, not stale copies.
    add_a_policy(&f);
    let out = run(&f);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t = tip(&f.evidence(), &format!("refs/heads/{BRANCH}"));
    let c = r.find_commit(t).unwrap();
    assert_eq!(c.parent_ids().collect::<Vec<_>>(), vec![first, main1]);
    let files = tree_files(&f.evidence(), BRANCH);
    assert_eq!(files["notes.md"], b"v2\n");
    assert!(files.contains_key("evidence/files/document/policies/new-policy.md.json"));
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    // Against the default branch, the branch differs only in what
    // ClearTrail owns.
    let main_files = tree_files(&f.evidence(), "main");
    for (p, b) in &main_files {
        assert_eq!(files.get(p), Some(b), "{p} differs from the default branch");
    }
}

#[test]
fn after_its_pull_request_merged_the_branch_continues_from_the_default_branch() {
    let f = Fixture::new();
    let r = evidence_repo_with_main(&f);
    assert_eq!(code(&run(&f)), 0);
    let ev = tip(&f.evidence(), &format!("refs/heads/{BRANCH}"));
    // The pull request merged: main holds the evidence, plus a commit.
    let merged = commit_on(&r, "main", &[("notes.md", "after merge\n")], "Notes", ev);
    add_a_policy(&f);
    let out = run(&f);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t = tip(&f.evidence(), &format!("refs/heads/{BRANCH}"));
    assert_eq!(
        r.find_commit(t).unwrap().parent_ids().collect::<Vec<_>>(),
        vec![merged]
    );
    assert_eq!(
        tree_files(&f.evidence(), BRANCH)["notes.md"],
        b"after merge\n"
    );
}

/// New evidence in the sources: a policy document.
fn add_a_policy(f: &Fixture) {
    std::fs::write(
        f.src().join("policies/new-policy.md"),
        "---\ntitle: New\nowner: CISO\nlast_reviewed: 2026-06-01\n---\n# New\n",
    )
    .unwrap();
}

/// Commits `files` on top of `parent` and moves `branch` there, without
/// touching HEAD or the work tree.
fn commit_on(r: &Repository, branch: &str, files: &[(&str, &str)], msg: &str, parent: Oid) -> Oid {
    let p = r.find_commit(parent).unwrap();
    let mut idx = git2::Index::new().unwrap();
    idx.read_tree(&p.tree().unwrap()).unwrap();
    for (path, body) in files {
        let oid = r.blob(body.as_bytes()).unwrap();
        let mut e = idx.get(0).unwrap();
        e.id = oid;
        e.file_size = body.len() as u32;
        e.path = path.as_bytes().to_vec();
        e.mode = 0o100644;
        idx.add(&e).unwrap();
    }
    let tree = r.find_tree(idx.write_tree_to(r).unwrap()).unwrap();
    let s = sig("Ann", NOW - DAY);
    let c = r.commit(None, &s, &s, msg, &tree, &[&p]).unwrap();
    r.reference(&format!("refs/heads/{branch}"), c, true, "test")
        .unwrap();
    c
}
