//! The auditor's path: a plain `git clone` of the evidence repository,
//! the commands its README gives run as written, and what an auditor
//! opens at scale (a control page and a packet page over 10,000 changes:
//! small, readable, newest first).

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

fn in_dir(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cleartrail"))
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", NOW.to_string())
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .output()
        .unwrap()
}

#[test]
fn a_plain_clone_verifies_and_gives_the_readmes_gaps() {
    let f = Fixture::new();
    // A configuration that narrows scope, as real ones do: the clone has
    // no copy of it, and must still judge the same way.
    let cfg = f.config(
        "version: 1\nsources:\n  app:\n    type: git\n    path: src\n  policies:\n    type: files\n    path: src/policies\nout_of_scope:\n  soc2:\n    privacy: No personal data of end users.\n    P1.1: Same.\n",
    );
    // A quarter, not the current year: the clone must judge the same
    // period without being told.
    let out = command_with("run", &cfg, &f.evidence(), &["--period", "2026-Q1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let clone = f.root.path().join("auditor");
    let st = Command::new("git")
        .args(["clone", "-q"])
        .arg(f.evidence())
        .arg(&clone)
        .status()
        .unwrap();
    assert!(st.success());

    // The README's commands, as written, in the clone.
    let readme =
        String::from_utf8(tree_files(&f.evidence(), "cleartrail/evidence")["README.md"].clone())
            .unwrap();
    assert!(readme.contains("cleartrail verify --repo .\n"), "{readme}");
    assert!(readme.contains("cleartrail gaps --repo .\n"), "{readme}");
    let v = in_dir(&clone, &["verify", "--repo", "."]);
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));
    assert!(stdout(&v).contains("0 findings"), "{}", stdout(&v));
    let g = in_dir(
        &clone,
        &[
            "gaps", "--repo", ".", "--format", "json", "--period", "2026",
        ],
    );
    assert_eq!(code(&g), 0, "{}", stderr(&g));
    let rows: Value = serde_json::from_str(&stdout(&g)).unwrap();
    let soc2 = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["framework"] == "soc2")
        .count();
    // The branch's README says how many SOC 2 controls are in scope.
    let line = readme
        .lines()
        .find(|l| l.starts_with("| SOC 2"))
        .unwrap_or_else(|| panic!("no SOC 2 row in {readme}"));
    let in_scope: usize = line.split('|').nth(2).unwrap().trim().parse().unwrap();
    assert_eq!(soc2, in_scope, "{line}");
    assert_eq!(
        in_scope,
        61 - 18,
        "the 18 privacy criteria are out of scope"
    );
    // And the same statuses, control by control, as the branch's pages.
    for r in rows.as_array().unwrap() {
        let page = format!(
            "controls/{}/{}.md",
            r["framework"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let text =
            String::from_utf8(tree_files(&f.evidence(), "cleartrail/evidence")[&page].clone())
                .unwrap();
        assert!(
            text.contains(&format!("**Status: {}**", r["status"].as_str().unwrap())),
            "{page} disagrees with gaps: {r}"
        );
    }
}

/// `n` first-parent commits, one a day back from `end`, half of them
/// squash merges of pull requests and half direct pushes.
fn big_source(dir: &std::path::Path, n: usize) {
    let st = Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let mut stream = Vec::new();
    // 2026-01-01T00:00:00Z, spread over the first 300 days of 2026.
    let start: i64 = 1_767_225_600;
    for i in 0..n {
        let t = start + (i as i64) * (300 * 86_400) / (n as i64);
        let msg = if i % 2 == 0 {
            format!("Change {i} (#{})\n", i + 1)
        } else {
            format!("Direct change {i}\n")
        };
        stream.extend_from_slice(
            format!(
                "commit refs/heads/main\nauthor Dev <dev@example.com> {t} +0000\ncommitter Dev <dev@example.com> {t} +0000\ndata {}\n{msg}M 100644 inline f.txt\ndata {}\n{i}\n\n",
                msg.len(),
                format!("{i}\n").len()
            )
            .as_bytes(),
        );
    }
    fast_import(dir, &stream);
}

#[test]
fn pages_over_ten_thousand_changes_stay_small_and_newest_first() {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    big_source(&src, 10_000);
    let cfg = root.path().join("cleartrail.yml");
    std::fs::write(
        &cfg,
        "version: 1\nperiod: 2026\nsources:\n  app:\n    type: git\n    path: src\n    branch: main\n",
    )
    .unwrap();
    let ev = root.path().join("evidence");
    let out = command_with("run", &cfg, &ev, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&ev, "cleartrail/evidence");
    for (p, b) in &files {
        assert!(b.len() < 1_000_000, "{p} is {} bytes", b.len());
    }
    let page = String::from_utf8(files["controls/soc2/CC8.1.md"].clone()).unwrap();
    let out = command_with(
        "packet",
        &cfg,
        &ev,
        &[
            "--period",
            "2026",
            "--control",
            "CC8.1",
            "--out",
            root.path().join("packet").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let packet =
        std::fs::read_to_string(root.path().join("packet/soc2/controls/CC8.1.md")).unwrap();
    assert!(
        page.len() < 20_000 && packet.len() < 40_000,
        "{} / {}",
        page.len(),
        packet.len()
    );
    // Dates of the rows, in page order, must never go up.
    for text in [&page, &packet] {
        let dates: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim_start_matches(['-', '|', ' ']);
                (l.len() >= 10 && l.as_bytes()[4] == b'-' && l.as_bytes()[7] == b'-')
                    .then(|| &l[..10])
            })
            .collect();
        assert!(dates.len() >= 25, "{text}");
        for w in dates.windows(2).take(24) {
            assert!(w[0] >= w[1], "not newest first: {} then {}", w[0], w[1]);
        }
    }
    let filters = vec![
        (r"[0-9a-f]{40}", "[COMMIT]"),
        (r"`[0-9a-f]{12}`", "`[SHORT]`"),
        (r"[0-9a-f]{64}", "[SHA256]"),
    ];
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("control_page_10000_changes", page);
        insta::assert_snapshot!("packet_page_10000_changes", packet);
    });
}
