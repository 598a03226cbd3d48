//! End to end through the binary: sync into a fresh evidence repository,
//! idempotence and byte-identical output, verify catching tampering,
//! removals recorded as tombstones, and clean failures that write nothing.

mod common;

use common::*;
use serde_json::Value;

const BRANCH: &str = "cleartrail/evidence";

fn json_at(repo: &std::path::Path, path: &str) -> Value {
    let files = tree_files(repo, BRANCH);
    serde_json::from_slice(files.get(path).unwrap_or_else(|| panic!("{path} missing"))).unwrap()
}

#[test]
fn first_sync_makes_one_commit_and_a_second_changes_nothing() {
    let f = Fixture::new();
    let cfg = f.default_config();
    let out = sync_into(&f, &cfg, &["--period", "2026-Q1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(commit_count(&f.evidence(), BRANCH), 1);
    let first = tree_files(&f.evidence(), BRANCH);
    let tip = git2::Repository::open(f.evidence())
        .unwrap()
        .refname_to_id("refs/heads/cleartrail/evidence")
        .unwrap();

    // Both sources and their collection records are in the one commit.
    for p in [
        "collections/git/commit.json",
        "collections/git/change.json",
        "collections/git/tag.json",
        "collections/git/codeowners.json",
        "collections/files/document.json",
        "evidence/files/document/policies/access-control-policy.md",
        "evidence/files/document/policies/access-control-policy.md.json",
        "evidence/git/codeowners/app/.github/CODEOWNERS.json",
    ] {
        let p = p.replace("/.github/", "/%2Egithub/");
        assert!(
            first.contains_key(&p),
            "{p} missing from {:#?}",
            first.keys().collect::<Vec<_>>()
        );
    }
    // Q1 has 7 commits (the July one is outside), 5 of them on the
    // first-parent line: the changes.
    assert_eq!(
        json_at(&f.evidence(), "collections/git/commit.json")["count"],
        7
    );
    assert_eq!(
        json_at(&f.evidence(), "collections/git/change.json")["count"],
        5
    );
    assert_eq!(
        json_at(&f.evidence(), "collections/git/tag.json")["count"],
        2
    );
    assert_eq!(
        json_at(&f.evidence(), "collections/files/document.json")["count"],
        3
    );

    let again = sync_into(&f, &cfg, &["--period", "2026-Q1"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing new: no commit"),
        "{}",
        stdout(&again)
    );
    let tip2 = git2::Repository::open(f.evidence())
        .unwrap()
        .refname_to_id("refs/heads/cleartrail/evidence")
        .unwrap();
    assert_eq!(tip, tip2);
    assert_eq!(first, tree_files(&f.evidence(), BRANCH));
}

#[test]
fn two_evidence_repositories_from_the_same_sources_are_byte_identical() {
    let f = Fixture::new();
    let cfg = f.default_config();
    let a = f.root.path().join("a");
    let b = f.root.path().join("b");
    for repo in [&a, &b] {
        let out = cleartrail(&[
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
            "--period",
            "2026",
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let ra = git2::Repository::open(&a).unwrap();
    let rb = git2::Repository::open(&b).unwrap();
    let ta = ra
        .revparse_single(BRANCH)
        .unwrap()
        .peel_to_tree()
        .unwrap()
        .id();
    let tb = rb
        .revparse_single(BRANCH)
        .unwrap()
        .peel_to_tree()
        .unwrap()
        .id();
    assert_eq!(ta, tb, "same sources must give the same tree");
}

#[test]
fn artifacts_carry_provenance_from_the_git_source() {
    let f = Fixture::new();
    let out = sync_into(&f, &f.default_config(), &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let c = &f.commits;
    let signed = json_at(
        &f.evidence(),
        &artifact_path(
            &f.evidence(),
            BRANCH,
            "evidence/git/commit",
            &c[2].to_string(),
        ),
    );
    assert_eq!(signed["content"]["signature"]["type"], "ssh");
    assert_eq!(signed["content"]["signature"]["status"], "unknown");
    assert_eq!(
        signed["content"]["trailers"]["Reviewed-by"][0],
        "Cy <cy@example.com>"
    );
    assert_eq!(signed["period"]["start"], "2026-03-04");
    assert_eq!(signed["id"], format!("git:commit:app/{}", c[2]));
    assert_eq!(signed["url"], format!("local:app/commit/{}", c[2]));
    let unsigned = json_at(
        &f.evidence(),
        &artifact_path(
            &f.evidence(),
            BRANCH,
            "evidence/git/commit",
            &c[0].to_string(),
        ),
    );
    assert_eq!(unsigned["content"]["signature"]["type"], Value::Null);

    let pr_merge = json_at(
        &f.evidence(),
        &artifact_path(
            &f.evidence(),
            BRANCH,
            "evidence/git/change",
            &c[4].to_string(),
        ),
    );
    assert_eq!(pr_merge["content"]["change_type"], "merge");
    assert_eq!(
        pr_merge["content"]["review_trace"]["kind"],
        "pull-request-reference"
    );
    assert_eq!(
        pr_merge["content"]["pull_request"],
        serde_json::json!({"system": "github", "number": 7})
    );
    assert_eq!(pr_merge["content"]["parents"].as_array().unwrap().len(), 2);
    let plain_merge = json_at(
        &f.evidence(),
        &artifact_path(
            &f.evidence(),
            BRANCH,
            "evidence/git/change",
            &c[6].to_string(),
        ),
    );
    assert_eq!(plain_merge["content"]["change_type"], "direct");
    assert_eq!(plain_merge["content"]["review_trace"], Value::Null);

    let tag = json_at(
        &f.evidence(),
        &artifact_path(&f.evidence(), BRANCH, "evidence/git/tag", "v1.0.0"),
    );
    assert_eq!(tag["content"]["annotated"], true);
    assert_eq!(tag["content"]["target"], c[4].to_string());
    let light = json_at(
        &f.evidence(),
        &artifact_path(&f.evidence(), BRANCH, "evidence/git/tag", "v1.0.1"),
    );
    assert_eq!(light["content"]["annotated"], false);

    let owners = json_at(
        &f.evidence(),
        "evidence/git/codeowners/app/%2Egithub/CODEOWNERS.json",
    );
    assert_eq!(owners["content"]["rules"][1]["pattern"], "/policies/");
    assert_eq!(owners["content"]["rules"][1]["owners"][0], "@org/security");
    assert_eq!(owners["content"]["commit"], c[1].to_string());

    let policy = json_at(
        &f.evidence(),
        "evidence/files/document/policies/access-control-policy.md.json",
    );
    assert_eq!(
        policy["content"]["front_matter"]["owner"],
        "Head of Security"
    );
    assert_eq!(policy["content"]["front_matter"]["version"], "2.10");
    assert_eq!(policy["observed"]["last_reviewed"], "2026-03-14");
    assert_eq!(policy["observed"]["last_changed"], "2026-03-03T10:00:00Z");
    assert_eq!(policy["content"]["last_changed_commit"], c[1].to_string());
    let files = tree_files(&f.evidence(), BRANCH);
    assert_eq!(
        files["evidence/files/document/policies/access-control-policy.md"],
        POLICY_OK.as_bytes()
    );
    let csv = json_at(
        &f.evidence(),
        "evidence/files/document/policies/org-chart.csv.json",
    );
    assert_eq!(csv["content"]["media_type"], "text/csv");
    assert_eq!(csv["content"]["front_matter"], Value::Null);
}

#[test]
fn verify_passes_then_names_a_tampered_file_and_a_deleted_artifact() {
    let f = Fixture::new();
    let out = sync_into(&f, &f.default_config(), &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let repo = f.evidence();
    let ok = cleartrail(&["verify", "--repo", repo.to_str().unwrap()]);
    assert_eq!(code(&ok), 0, "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains("0 findings"), "{}", stdout(&ok));

    // Flip one byte inside the content of an artifact.
    let path = "evidence/files/document/policies/access-control-policy.md.json";
    let mut bytes = tree_files(&repo, BRANCH)[path].clone();
    let at = String::from_utf8_lossy(&bytes)
        .find("Head of Security")
        .unwrap();
    bytes[at] ^= 0x20;
    tamper(&repo, BRANCH, path, Some(&bytes));
    let bad = cleartrail(&["verify", "--repo", repo.to_str().unwrap()]);
    assert_eq!(code(&bad), 1);
    assert!(
        stdout(&bad).contains(&format!("error[artifact-hash-mismatch]: {path}:")),
        "{}",
        stdout(&bad)
    );

    // Flip a byte in a captured document.
    let doc = "evidence/files/document/policies/org-chart.csv";
    let mut d = tree_files(&repo, BRANCH)[doc].clone();
    d[0] ^= 1;
    tamper(&repo, BRANCH, doc, Some(&d));
    let bad = cleartrail(&[
        "verify",
        "--repo",
        repo.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code(&bad), 1);
    let report: Value = serde_json::from_str(&stdout(&bad)).unwrap();
    let codes: Vec<(&str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap(), d["path"].as_str().unwrap()))
        .collect();
    assert!(
        codes.contains(&("captured-hash-mismatch", doc)),
        "{codes:?}"
    );

    // Delete an artifact: its collection no longer adds up.
    let victim = artifact_path(
        &repo,
        BRANCH,
        "evidence/git/commit",
        &f.commits[0].to_string(),
    );
    tamper(&repo, BRANCH, &victim, None);
    let bad = cleartrail(&["verify", "--repo", repo.to_str().unwrap()]);
    assert_eq!(code(&bad), 1);
    assert!(
        stdout(&bad).contains("error[collection-digest-mismatch]: collections/git/commit.json:"),
        "{}",
        stdout(&bad)
    );
    assert!(
        stdout(&bad).contains("collection-count-mismatch"),
        "{}",
        stdout(&bad)
    );

    // An older revision still verifies.
    let old = cleartrail(&[
        "verify",
        "--repo",
        repo.to_str().unwrap(),
        "--rev",
        &format!("{BRANCH}~3"),
    ]);
    assert_eq!(code(&old), 0, "{}", stdout(&old));
}

#[test]
fn a_removed_document_leaves_a_tombstone_and_the_collection_still_verifies() {
    let f = Fixture::new();
    let cfg = f.default_config();
    assert_eq!(code(&sync_into(&f, &cfg, &["--period", "2026"])), 0);
    std::fs::remove_file(f.src().join("policies/org-chart.csv")).unwrap();
    let out = sync_into(&f, &cfg, &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&f.evidence(), BRANCH);
    assert!(!files.contains_key("evidence/files/document/policies/org-chart.csv.json"));
    assert!(!files.contains_key("evidence/files/document/policies/org-chart.csv"));
    let tomb: Value =
        serde_json::from_slice(&files["tombstones/files/document/policies/org-chart.csv.json"])
            .unwrap();
    assert_eq!(tomb["id"], "files:document:policies/org-chart.csv");
    assert_eq!(tomb["removed_at"], "2026-11-29T12:00:00Z");
    assert!(
        tomb["reason"]
            .as_str()
            .unwrap()
            .contains("no longer returned")
    );
    assert_eq!(
        json_at(&f.evidence(), "collections/files/document.json")["count"],
        2
    );
    let log = git2::Repository::open(f.evidence()).unwrap();
    let msg = log
        .revparse_single(BRANCH)
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("cleartrail sync: 0 added, 0 changed, 1 removed"),
        "{msg}"
    );
    assert!(msg.contains("files/document: +0 ~0 -1 (held 2)"), "{msg}");
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));

    // It comes back: the artifact returns and its tombstone goes.
    std::fs::write(
        f.src().join("policies/org-chart.csv"),
        "role,name\nCTO,Ann\n",
    )
    .unwrap();
    let out = sync_into(&f, &cfg, &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&f.evidence(), BRANCH);
    assert!(files.contains_key("evidence/files/document/policies/org-chart.csv.json"));
    assert!(!files.contains_key("tombstones/files/document/policies/org-chart.csv.json"));
}

#[test]
fn a_document_may_become_a_folder_and_back() {
    let f = Fixture::new();
    let cfg = f.default_config();
    assert_eq!(code(&sync_into(&f, &cfg, &[])), 0);
    let p = f.src().join("policies/org-chart.csv");
    std::fs::remove_file(&p).unwrap();
    std::fs::create_dir(&p).unwrap();
    std::fs::write(p.join("v2.csv"), "role,name\n").unwrap();
    // A file `x` beside a folder `x.json` must not collide either.
    std::fs::create_dir(f.src().join("policies/notes.md.json")).unwrap();
    std::fs::write(f.src().join("policies/notes.md.json/a.md"), "# a\n").unwrap();
    std::fs::write(f.src().join("policies/notes.md"), "# notes\n").unwrap();
    let out = sync_into(&f, &cfg, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::remove_dir_all(&p).unwrap();
    std::fs::write(&p, "role,name\nCTO,Ann\n").unwrap();
    let out = sync_into(&f, &cfg, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

#[test]
fn syncing_one_source_keeps_the_others_completeness_record() {
    let f = Fixture::new();
    let cfg = f.config("version: 1\nsources:\n  app:\n    type: git\n    path: src\n  app2:\n    type: git\n    path: src\n");
    assert_eq!(code(&sync_into(&f, &cfg, &["--period", "2026"])), 0);
    std::fs::write(f.src().join("README.md"), "changed\n").unwrap();
    let out = sync_into(&f, &cfg, &["--period", "2026", "--source", "app"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rec = json_at(&f.evidence(), "collections/git/commit.json");
    let names: Vec<&str> = rec["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["source_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "app2"]);
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

#[test]
fn verify_reports_files_added_by_hand() {
    let f = Fixture::new();
    assert_eq!(code(&sync_into(&f, &f.default_config(), &[])), 0);
    let repo = f.evidence();
    tamper(
        &repo,
        BRANCH,
        "evidence/files/document/policies/evil.md",
        Some(b"planted"),
    );
    let v = cleartrail(&["verify", "--repo", repo.to_str().unwrap()]);
    assert_eq!(code(&v), 1);
    assert!(
        stdout(&v).contains("error[stray-file]: evidence/files/document/policies/evil.md:"),
        "{}",
        stdout(&v)
    );
}

#[test]
fn commits_outside_a_later_period_are_kept_not_tombstoned() {
    let f = Fixture::new();
    let cfg = f.default_config();
    assert_eq!(code(&sync_into(&f, &cfg, &["--period", "2026-Q1"])), 0);
    let out = sync_into(&f, &cfg, &["--period", "2026-Q3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&f.evidence(), BRANCH);
    assert!(
        files.keys().all(|k| !k.starts_with("tombstones/")),
        "{:?}",
        files.keys()
    );
    // Q1's seven plus July's one.
    assert_eq!(
        json_at(&f.evidence(), "collections/git/commit.json")["count"],
        8
    );
    let rec = json_at(&f.evidence(), "collections/git/commit.json");
    assert_eq!(rec["queries"][0]["count"], 1);
    assert_eq!(rec["queries"][0]["filters"]["period"], "2026-Q3");
}

#[test]
fn sync_works_on_a_bare_evidence_repository() {
    let f = Fixture::new();
    let bare = f.root.path().join("bare.git");
    git2::Repository::init_bare(&bare).unwrap();
    let out = cleartrail(&[
        "sync",
        "--config",
        f.default_config().to_str().unwrap(),
        "--repo",
        bare.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = cleartrail(&["verify", "--repo", bare.to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

#[test]
fn json_output_reports_counts() {
    let f = Fixture::new();
    let out = sync_into(
        &f,
        &f.default_config(),
        &["--period", "2026-Q1", "--format", "json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["period"], "2026-Q1");
    assert!(r["commit"].is_string());
    let docs = r["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "document")
        .unwrap();
    assert_eq!(docs["added"], 3);
}

#[test]
fn github_step_outputs_are_written_in_actions() {
    let f = Fixture::new();
    let out_file = f.root.path().join("gh_output");
    let summary = f.root.path().join("gh_summary");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cleartrail"))
        .args([
            "run",
            "--config",
            f.default_config().to_str().unwrap(),
            "--repo",
            f.evidence().to_str().unwrap(),
        ])
        .env("SOURCE_DATE_EPOCH", NOW.to_string())
        .env("GITHUB_OUTPUT", &out_file)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let outputs = std::fs::read_to_string(out_file).unwrap();
    assert!(outputs.contains("changed=true\ncommit="), "{outputs}");
    assert!(
        std::fs::read_to_string(summary)
            .unwrap()
            .contains("| files | document | 3 | 3 |")
    );
}

#[test]
fn moving_sources_and_evidence_changes_no_byte() {
    // The same sources in two different places, one of them a folder of
    // documents outside any git repository.
    let mut trees = Vec::new();
    for _ in 0..2 {
        let f = Fixture::new();
        let loose = f.root.path().join("loose-policies");
        std::fs::create_dir_all(&loose).unwrap();
        std::fs::write(loose.join("vendor-policy.md"), POLICY_OK).unwrap();
        let cfg = f.config(
            "version: 1\nsources:\n  app:\n    type: git\n    path: src\n  loose:\n    type: files\n    path: loose-policies\n",
        );
        let out = command_with("run", &cfg, &f.evidence(), &["--period", "2026"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let root = f.root.path().display().to_string();
        for (p, b) in tree_files(&f.evidence(), BRANCH) {
            assert!(
                !String::from_utf8_lossy(&b).contains(&root),
                "{p} names the local folder {root}"
            );
        }
        let r = git2::Repository::open(f.evidence()).unwrap();
        trees.push(
            r.revparse_single(BRANCH)
                .unwrap()
                .peel_to_tree()
                .unwrap()
                .id(),
        );
    }
    assert_eq!(
        trees[0], trees[1],
        "the evidence depends on where the folders are"
    );
}

/// Runs with the clock pinned to `now` (seconds since 1970).
fn run_at(f: &Fixture, cfg: &std::path::Path, now: i64) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cleartrail"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--repo"])
        .arg(f.evidence())
        .args(["--period", "2026"])
        .env("SOURCE_DATE_EPOCH", now.to_string())
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap()
}

#[test]
fn a_run_with_nothing_new_still_judges_as_of_its_day() {
    let f = Fixture::new();
    // Reviewed 2025-06-01: fresh until 2026-06-01.
    std::fs::write(
        f.src().join("policies/access-control-policy.md"),
        POLICY_OK.replace("last_reviewed: 2026-03-14", "last_reviewed: 2025-06-01"),
    )
    .unwrap();
    let cfg = f.default_config();
    let march = 1_772_445_600 + 10 * DAY; // 2026-03-12
    let out = run_at(&f, &cfg, march);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let check = |f: &Fixture| -> Value {
        serde_json::from_slice(
            &tree_files(&f.evidence(), BRANCH)["checks/policy-review-overdue.json"],
        )
        .unwrap()
    };
    let exceptions = |v: &Value| -> Vec<String> {
        v["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["artifact"].as_str().unwrap().to_string())
            .collect()
    };
    let acp = "files:document:policies/access-control-policy.md".to_string();
    assert!(!exceptions(&check(&f)).contains(&acp));
    // Same sources in July: nothing new, but the review is now overdue,
    // and the branch says so.
    let july = march + 120 * DAY;
    let out = run_at(&f, &cfg, july);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(exceptions(&check(&f)).contains(&acp), "{}", check(&f));
    // Again the same day: judged the same, so no commit.
    let before = commit_count(&f.evidence(), BRANCH);
    let out = run_at(&f, &cfg, july);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(commit_count(&f.evidence(), BRANCH), before);
}

#[test]
fn evidence_of_a_renamed_source_is_tombstoned_not_counted_twice() {
    let f = Fixture::new();
    let out = sync_into(&f, &f.default_config(), &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let changes = |f: &Fixture| -> u64 {
        json_at(&f.evidence(), "collections/git/change.json")["count"]
            .as_u64()
            .unwrap()
    };
    let before = changes(&f);
    // The git source `app` is renamed `app2`.
    let cfg = f.config(
        "version: 1\nsources:\n  app2:\n    type: git\n    path: src\n  policies:\n    type: files\n    path: src/policies\n",
    );
    let out = sync_into(&f, &cfg, &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(changes(&f), before, "the old name's changes are still held");
    let files = tree_files(&f.evidence(), BRANCH);
    assert!(
        !files
            .keys()
            .any(|p| p.starts_with("evidence/git/") && p.contains("/app/")),
        "evidence of `app` is still on the branch"
    );
    let tomb = files
        .iter()
        .find(|(p, _)| p.starts_with("tombstones/git/change/"))
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap())
        .expect("a tombstone for the old name's changes");
    assert_eq!(tomb["reason"], "its source `app` is no longer configured");
    let unsigned = json_at(&f.evidence(), "checks/commit-unsigned.json");
    assert_eq!(unsigned["population"].as_u64(), Some(before));
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

#[test]
fn an_edited_state_cannot_hide_new_commits() {
    let f = Fixture::new();
    let src = git2::Repository::open(f.src()).unwrap();
    // Collect while the branch stood at the first merge.
    src.reference("refs/heads/main", f.commits[4], true, "rewind")
        .unwrap();
    let out = sync_into(&f, &f.default_config(), &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The branch moves on; someone with push access to the evidence repo
    // sets the saved tip to the new one, so the run would think it has
    // seen it.
    src.reference("refs/heads/main", f.commits[7], true, "forward")
        .unwrap();
    let state =
        String::from_utf8(tree_files(&f.evidence(), BRANCH)[".cleartrail/state.json"].clone())
            .unwrap();
    let forged = state.replace(&f.commits[4].to_string(), &f.commits[7].to_string());
    assert_ne!(state, forged);
    tamper(
        &f.evidence(),
        BRANCH,
        ".cleartrail/state.json",
        Some(forged.as_bytes()),
    );
    let out = sync_into(&f, &f.default_config(), &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The last commit is collected all the same.
    artifact_path(
        &f.evidence(),
        BRANCH,
        "evidence/git/change",
        &f.commits[7].to_string(),
    );
}

#[test]
fn after_an_incremental_run_each_query_still_proves_its_set() {
    let f = Fixture::new();
    let src = git2::Repository::open(f.src()).unwrap();
    src.reference("refs/heads/main", f.commits[4], true, "rewind")
        .unwrap();
    assert_eq!(
        code(&sync_into(&f, &f.default_config(), &["--period", "2026"])),
        0
    );
    src.reference("refs/heads/main", f.commits[7], true, "forward")
        .unwrap();
    assert_eq!(
        code(&sync_into(&f, &f.default_config(), &["--period", "2026"])),
        0
    );
    let rec = json_at(&f.evidence(), "collections/git/change.json");
    let q = &rec["queries"][0];
    assert_eq!(q["outcome"], "incremental", "{q}");
    let total: u64 = q["groups"]
        .as_object()
        .unwrap()
        .values()
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, rec["count"].as_u64().unwrap(), "{rec}");
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    // An artifact the first, complete answer found is deleted: the query's
    // own record still notices.
    let victim = artifact_path(
        &f.evidence(),
        BRANCH,
        "evidence/git/change",
        &f.commits[0].to_string(),
    );
    tamper(&f.evidence(), BRANCH, &victim, None);
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert!(
        stdout(&v).contains("error[collection-query-mismatch]: collections/git/change.json:"),
        "{}",
        stdout(&v)
    );
}

/// The writer's cache of parsed evidence (in the git folder, by blob id)
/// saves time only: a run with it, with none, and with a damaged one all
/// commit the same tree, and a damaged one is replaced.
#[test]
fn the_held_evidence_cache_changes_nothing_but_time() {
    let f = Fixture::new();
    let src = git2::Repository::open(f.src()).unwrap();
    src.reference("refs/heads/main", f.commits[4], true, "rewind")
        .unwrap();
    let cfg = f.default_config();
    assert_eq!(code(&sync_into(&f, &cfg, &["--period", "2026"])), 0);
    let cache = f.evidence().join(".git/cleartrail/held-v1");
    assert!(cache.is_file(), "the first run leaves a cache");
    src.reference("refs/heads/main", f.commits[7], true, "forward")
        .unwrap();
    // Three copies of the evidence repository before the second run.
    let copy = |name: &str| {
        let dst = f.root.path().join(name);
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(f.evidence())
            .arg(&dst)
            .output()
            .unwrap();
        assert!(out.status.success());
        dst
    };
    let (without, damaged) = (copy("without"), copy("damaged"));
    std::fs::remove_file(without.join(".git/cleartrail/held-v1")).unwrap();
    let bytes = std::fs::read(damaged.join(".git/cleartrail/held-v1")).unwrap();
    std::fs::write(
        damaged.join(".git/cleartrail/held-v1"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let mut trees = Vec::new();
    for repo in [f.evidence(), without.clone(), damaged.clone()] {
        let out = command_with("run", &cfg, &repo, &["--period", "2026"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        trees.push(tree_files(&repo, BRANCH));
    }
    assert!(trees[0].len() > 10);
    assert_eq!(trees[0], trees[1], "with and without the cache");
    assert_eq!(trees[0], trees[2], "with a damaged cache");
    let rebuilt = std::fs::read(damaged.join(".git/cleartrail/held-v1")).unwrap();
    assert!(
        rebuilt.len() > bytes.len() / 2,
        "the damaged cache is rewritten"
    );
    let v = cleartrail(&["verify", "--repo", damaged.to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}
