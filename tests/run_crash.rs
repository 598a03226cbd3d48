//! Whole runs under kill -9 and under races, through the binary.
//!
//! kill -9 lands at spread-out moments of `cleartrail run` on a source of
//! several hundred commits (collecting, planning, deriving, writing the
//! pack, inside the ref lock, and while the evidence repository is first
//! created). After each: `git fsck --full` is clean, the branch is absent
//! or holds exactly what an uninterrupted run writes, and the next run,
//! with no manual step, converges to that same tree.
//!
//! Many runs of different configurations start together on a repository
//! with no evidence branch yet: every one succeeds, and no run's evidence
//! is lost.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BRANCH: &str = "refs/heads/cleartrail/evidence";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cleartrail"));
    c.env("SOURCE_DATE_EPOCH", NOW.to_string())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// A linear history of `n` commits in 2026 through `git fast-import`.
fn source(dir: &Path, n: usize) {
    let ok = Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut stream = String::new();
    for i in 0..n {
        let t = T0 + (i as i64) * 600;
        let msg = format!("Change {i} (#{})\n", i + 1);
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter Dev <dev@example.com> {t} +0000\ndata {}\n{msg}M 100644 inline f{}.txt\ndata {}\n{i}\n\n",
            msg.len(),
            i % 50,
            format!("{i}\n").len()
        ));
    }
    fast_import(dir, stream.as_bytes());
}

fn run_cmd(cfg: &Path, repo: &Path) -> Command {
    let mut c = bin();
    c.args(["run", "--config"])
        .arg(cfg)
        .arg("--repo")
        .arg(repo)
        .args(["--period", "2026"]);
    c
}

fn tree(repo: &Path) -> Option<git2::Oid> {
    let r = git2::Repository::open(repo).ok()?;
    let c = r.find_reference(BRANCH).ok()?.peel_to_commit().ok()?;
    Some(c.tree_id())
}

#[test]
fn kill_9_anywhere_in_a_run_leaves_no_damage_and_the_next_run_converges() {
    let root = tempfile::tempdir().unwrap();
    source(&root.path().join("src"), 800);
    let cfg = root.path().join("cleartrail.yml");
    std::fs::write(
        &cfg,
        "version: 1\nsources:\n  app:\n    type: git\n    path: src\n    branch: main\n",
    )
    .unwrap();
    // The reference: one uninterrupted run, timed to spread the kills.
    let reference = root.path().join("reference");
    let started = Instant::now();
    assert!(run_cmd(&cfg, &reference).status().unwrap().success());
    let duration = started.elapsed();
    let want = tree(&reference).expect("the reference run commits");

    let mut kills = 0;
    let mut trial = 0;
    // (delay as a fraction of a run, pause inside the ref lock?)
    let mut plan: Vec<(f64, bool)> = vec![(0.0, false), (0.002, false), (0.01, false)];
    plan.extend((1..=17).map(|i| (i as f64 / 20.0, false)));
    plan.extend([(0.0, true), (0.0, true), (0.0, true)]);
    // On a loaded machine a run may finish before a late kill: more
    // trials in its first half until 20 kills landed.
    plan.extend((0..20).map(|i| (0.05 + i as f64 / 50.0, false)));
    for (fraction, in_lock) in plan {
        if trial >= 23 && kills >= 20 {
            break;
        }
        trial += 1;
        // Every trial is a cold run on a large source, from nothing (so
        // the early kills land while the repository is created).
        let repo: PathBuf = root.path().join(format!("ev{trial}"));
        let mut cmd = run_cmd(&cfg, &repo);
        if in_lock {
            // The store's test hook holds the ref lock this long.
            cmd.env("CLEARTRAIL_TEST_PAUSE_IN_REF_LOCK_MS", "5000");
        }
        let mut child = cmd.spawn().unwrap();
        if in_lock {
            let lock = repo.join(".git/refs/heads/cleartrail/evidence.lock");
            let deadline = Instant::now() + duration * 4 + Duration::from_secs(10);
            while !lock.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(
                lock.exists(),
                "trial {trial}: the run never took the ref lock"
            );
        } else {
            std::thread::sleep(duration.mul_f64(fraction));
        }
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        if !finished {
            kills += 1;
        }
        fsck(&repo);
        // Absent, or exactly an uninterrupted run's tree.
        if let Some(t) = tree(&repo) {
            assert_eq!(t, want, "trial {trial}: a partial commit is on the branch");
        }
        // The next run needs no manual step and converges.
        let out = run_cmd(&cfg, &repo)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "trial {trial}: the run after the kill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(tree(&repo), Some(want), "trial {trial}");
        fsck(&repo);
        std::fs::remove_dir_all(&repo).ok();
    }
    assert!(
        kills >= 20,
        "only {kills} runs were still going when killed"
    );
}

#[test]
fn runs_of_different_configurations_started_together_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("docs{i}")).collect();
    let mut yaml = String::from("version: 1\nsources:\n");
    for n in &names {
        let dir = root.path().join(n);
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..40 {
            std::fs::write(dir.join(format!("{n}-{j}.md")), format!("# {n} {j}\n")).unwrap();
        }
        yaml.push_str(&format!("  {n}:\n    type: files\n    path: {n}\n"));
    }
    let cfg = root.path().join("cleartrail.yml");
    std::fs::write(&cfg, yaml).unwrap();
    for round in 0..3 {
        let repo = root.path().join(format!("evidence{round}"));
        // No repository and no branch yet: creation races too.
        let children: Vec<_> = names
            .iter()
            .map(|n| {
                let mut c = bin();
                c.args(["sync", "--config"])
                    .arg(&cfg)
                    .arg("--repo")
                    .arg(&repo)
                    .args(["--source", n])
                    .stderr(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let files = tree_files(&repo, "cleartrail/evidence");
        for n in &names {
            let held = files
                .keys()
                .filter(|p| {
                    p.starts_with(&format!("evidence/files/document/{n}/")) && p.ends_with(".json")
                })
                .count();
            assert_eq!(held, 40, "round {round}: source {n} lost evidence");
        }
        let record: serde_json::Value =
            serde_json::from_slice(&files["collections/files/document.json"]).unwrap();
        assert_eq!(record["count"], 240, "round {round}");
        assert_eq!(
            record["queries"].as_array().unwrap().len(),
            6,
            "round {round}"
        );
        let v = cleartrail(&["verify", "--repo", repo.to_str().unwrap()]);
        assert_eq!(code(&v), 0, "round {round}: {}", stdout(&v));
        fsck(&repo);
    }
}
