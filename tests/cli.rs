//! The command-line surface: help texts and error output as snapshots
//! (paths filtered), exit codes, and the promise that a rejected
//! configuration writes nothing.

mod common;

use common::*;

fn filtered(text: &str, root: &std::path::Path) -> String {
    let root = root.canonicalize().unwrap();
    text.replace(&root.display().to_string(), "[ROOT]").replace(
        &root.display().to_string().replace("/private", ""),
        "[ROOT]",
    )
}

#[test]
fn help_texts() {
    for sub in [
        None,
        Some("sync"),
        Some("run"),
        Some("verify"),
        Some("init"),
        Some("gaps"),
        Some("packet"),
        Some("controls"),
        Some("export gdrive"),
    ] {
        let mut args: Vec<&str> = sub.into_iter().flat_map(|s| s.split(' ')).collect();
        args.push("--help");
        let out = cleartrail(&args);
        assert_eq!(code(&out), 0);
        let name = format!("help_{}", sub.unwrap_or("top").replace(' ', "_"));
        insta::assert_snapshot!(name, stdout(&out));
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = cleartrail(&["sync", "--bogus"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("unexpected argument '--bogus'"));
    let out = cleartrail(&["frobnicate"]);
    assert_eq!(code(&out), 2);
}

/// Runs sync with a configuration and checks that it failed with exit 2
/// and left the evidence folder untouched (here: never created).
fn rejected(f: &Fixture, config: &str, extra: &[&str]) -> String {
    let cfg = f.config(config);
    let out = sync_into(f, &cfg, extra);
    assert_eq!(
        code(&out),
        2,
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(!f.evidence().exists(), "a rejected run must write nothing");
    filtered(&stderr(&out), f.root.path())
}

#[test]
fn config_with_a_typo_key() {
    let f = Fixture::new();
    let err = rejected(
        &f,
        "version: 1\nsources:\n  app:\n    type: git\n    pth: src\n",
        &[],
    );
    insta::assert_snapshot!(err);
}

#[test]
fn config_with_a_bad_period() {
    let f = Fixture::new();
    let err = rejected(
        &f,
        "version: 1\nperiod: 2026-Q5\nsources:\n  app:\n    type: git\n    path: src\n",
        &[],
    );
    insta::assert_snapshot!(err);
}

#[test]
fn config_with_a_missing_source_path_and_more() {
    let f = Fixture::new();
    let err = rejected(
        &f,
        "version: 1\nsources:\n  app:\n    type: git\n    path: nowhere\n  docs:\n    type: filez\n    path: src\n",
        &[],
    );
    insta::assert_snapshot!(err);
}

#[test]
fn bad_period_on_the_command_line() {
    let f = Fixture::new();
    let err = rejected(
        &f,
        "version: 1\nsources:\n  app:\n    type: git\n    path: src\n",
        &["--period", "2026-13"],
    );
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_source_selected() {
    let f = Fixture::new();
    let err = rejected(
        &f,
        "version: 1\nsources:\n  app:\n    type: git\n    path: src\n",
        &["--source", "nope"],
    );
    insta::assert_snapshot!(err);
}

#[test]
fn missing_config_points_to_init() {
    let f = Fixture::new();
    let out = cleartrail(&["sync", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    insta::assert_snapshot!(filtered(&stderr(&out), f.root.path()));
}

#[test]
fn a_rejected_config_leaves_an_existing_evidence_repo_as_it_was() {
    let f = Fixture::new();
    let ok = cleartrail(&[
        "sync",
        "--config",
        f.default_config().to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
    ]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let before = tree_files(&f.evidence(), "cleartrail/evidence");
    let refs_before = std::fs::read_dir(f.evidence().join(".git/refs/heads/cleartrail"))
        .unwrap()
        .count();
    let cfg =
        f.config("version: 1\nperiod: 2026-Q9\nsources:\n  app:\n    type: git\n    path: src\n");
    let out = cleartrail(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2);
    assert_eq!(before, tree_files(&f.evidence(), "cleartrail/evidence"));
    assert_eq!(commit_count(&f.evidence(), "cleartrail/evidence"), 1);
    assert_eq!(
        refs_before,
        std::fs::read_dir(f.evidence().join(".git/refs/heads/cleartrail"))
            .unwrap()
            .count()
    );
}

#[test]
fn a_source_failing_at_runtime_exits_3_and_writes_nothing() {
    let f = Fixture::new();
    // Valid at load time, but the branch does not exist in the repository.
    let cfg = f.config(
        "version: 1\nsources:\n  app:\n    type: git\n    path: src\n    branch: no-such-branch\n",
    );
    let out = cleartrail(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = filtered(&stderr(&out), f.root.path());
    assert!(err.contains("collecting from source `app`"), "{err}");
    assert!(err.contains("branch `no-such-branch` not found"), "{err}");
    // Collection fails before the repository is touched: not even created.
    assert!(!f.evidence().exists());
}

#[test]
fn verify_outside_a_repository_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleartrail(&["verify", "--repo", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a git repository"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_writes_a_valid_starter_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("ev");
    let out = cleartrail(&["init", repo.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = std::fs::read_to_string(repo.join("cleartrail.yml")).unwrap();
    assert!(text.contains("version: 1"));
    // The starter runs as it is.
    let run = cleartrail(&["run", "--repo", repo.to_str().unwrap()]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert!(
        stdout(&run).contains("files    document"),
        "{}",
        stdout(&run)
    );
    let again = cleartrail(&["init", repo.to_str().unwrap()]);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("already exists; pass --force"));
}

#[test]
fn sync_text_output() {
    let f = Fixture::new();
    let out = cleartrail(&[
        "run",
        "--config",
        f.default_config().to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
        "--period",
        "2026-Q1",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // No byte depends on where the folders are, so the commit id is as
    // stable as the pinned clock: no filter for it.
    insta::assert_snapshot!(filtered(&stdout(&out), f.root.path()));
}

#[test]
fn verify_and_gaps_work_where_the_sources_are_not() {
    // An auditor's clone: the evidence repository holds a cleartrail.yml
    // whose source paths exist only on the runner.
    let f = Fixture::new();
    let ok = cleartrail(&[
        "sync",
        "--config",
        f.default_config().to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
    ]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    std::fs::write(
        f.evidence().join("cleartrail.yml"),
        "version: 1\nsources:\n  app:\n    type: git\n    path: ../app-not-here\n",
    )
    .unwrap();
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));
    let g = cleartrail(&[
        "gaps",
        "--repo",
        f.evidence().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code(&g), 0, "{}", stderr(&g));
    // Collecting there is still refused, with the reason.
    let s = cleartrail(&["sync", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&s), 2);
    assert!(
        stderr(&s).contains("path `../app-not-here` does not exist"),
        "{}",
        stderr(&s)
    );
}

#[test]
fn a_checked_out_evidence_branch_is_not_moved_under_the_work_tree() {
    let f = Fixture::new();
    let repo = f.evidence();
    let ok = cleartrail(&[
        "sync",
        "--config",
        f.default_config().to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
    ]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let r = git2::Repository::open(&repo).unwrap();
    r.set_head("refs/heads/cleartrail/evidence").unwrap();
    let tip = r.refname_to_id("refs/heads/cleartrail/evidence").unwrap();
    std::fs::remove_file(f.src().join("policies/org-chart.csv")).unwrap();
    let out = cleartrail(&[
        "sync",
        "--config",
        f.default_config().to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is checked out"), "{}", stderr(&out));
    assert_eq!(
        r.refname_to_id("refs/heads/cleartrail/evidence").unwrap(),
        tip
    );
}

#[test]
fn output_trouble_after_the_commit_does_not_fail_the_run() {
    let f = Fixture::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cleartrail"))
        .args([
            "run",
            "--config",
            f.default_config().to_str().unwrap(),
            "--repo",
            f.evidence().to_str().unwrap(),
        ])
        .env("SOURCE_DATE_EPOCH", NOW.to_string())
        .env("GITHUB_OUTPUT", f.root.path().join("no/such/folder/out"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("GITHUB_OUTPUT"), "{}", stderr(&out));
    assert_eq!(commit_count(&f.evidence(), "cleartrail/evidence"), 1);
}
