//! From evidence to what an auditor reads: catalogs and crosswalk, gaps,
//! statement of applicability, packets with manifests, the generated
//! README, and clean failures on broken catalogs and templates.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

const AUDIT_CONFIG: &str = "version: 1\nsources:\n  app:\n    type: git\n    path: src\n  policies:\n    type: files\n    path: src/policies\nout_of_scope:\n  soc2:\n    P1.1: We process no personal data of end users.\n    availability: Availability is not in the scope of this report.\n";

/// A fixture synced with the audit configuration.
fn synced() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    let cfg = f.config(AUDIT_CONFIG);
    let out = cleartrail(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (f, cfg)
}

fn run_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let out = cleartrail(&a);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn catalogs_have_every_control_and_the_reference_ids() {
    let soc2 = run_json(&["controls", "list", "--framework", "soc2"]);
    let soc2 = soc2.as_array().unwrap();
    assert_eq!(soc2.len(), 61);
    assert_eq!(
        soc2.iter().filter(|c| c["category"] == "security").count(),
        33
    );
    let iso = run_json(&["controls", "list", "--framework", "iso27001-2022"]);
    let iso = iso.as_array().unwrap();
    assert_eq!(iso.len(), 93);

    // With the shared reference at hand (CI sets the variable), the ids
    // must be exactly the reference's, in its order.
    if let Ok(dir) = std::env::var("CLEARTRAIL_REFERENCE_DIR") {
        let read = |name: &str, list: &str| -> Vec<String> {
            let p = Path::new(&dir).join(name);
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            v[list]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect()
        };
        let ids = |v: &[Value]| {
            v.iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(soc2), read("soc2-tsc-2017.yaml", "criteria"));
        assert_eq!(ids(iso), read("iso27001-2022-annex-a.yaml", "controls"));
    }
}

#[test]
fn the_crosswalk_is_queryable() {
    let out = cleartrail(&["controls", "show", "CC8.1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("crosswalk: "), "{text}");
    assert!(text.contains("iso27001-2022:8.32"), "{text}");
    let back = run_json(&["controls", "show", "8.32", "--framework", "iso27001-2022"]);
    let related: Vec<&str> = back[0]["related"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(related.contains(&"soc2:CC8.1"), "{related:?}");
    insta::assert_snapshot!(text);
    let none = cleartrail(&["controls", "show", "CC99.9"]);
    assert_eq!(code(&none), 2);
}

#[test]
fn gaps_list_every_in_scope_control_with_a_status() {
    let (f, cfg) = synced();
    let gaps = run_json(&[
        "gaps",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
    ]);
    let rows = gaps.as_array().unwrap();
    // 61 + 93, less P1.1 and the three availability criteria.
    assert_eq!(rows.len(), 61 + 93 - 4);
    let status = |fw: &str, id: &str| {
        rows.iter()
            .find(|r| r["framework"] == fw && r["id"] == id)
            .map(|r| r["status"].as_str().unwrap().to_string())
    };
    // Every status the fixture can produce shows up, in the numbers the
    // branch's README reports for the same evidence.
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    let readme = String::from_utf8(files["README.md"].clone()).unwrap();
    for (fw, title) in [("soc2", "| SOC 2"), ("iso27001-2022", "| ISO/IEC 27001")] {
        let line = readme.lines().find(|l| l.starts_with(title)).unwrap();
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        for (i, st) in ["covered", "unapproved", "stale", "failing", "missing"]
            .iter()
            .enumerate()
        {
            let n = rows
                .iter()
                .filter(|r| r["framework"] == fw && r["status"] == *st)
                .count();
            assert_eq!(cells[3 + i], n.to_string(), "{fw} {st}: {line}");
        }
    }
    for st in ["covered", "stale", "failing", "missing"] {
        assert!(rows.iter().any(|r| r["status"] == st), "no {st} control");
    }
    assert_eq!(status("soc2", "P1.1"), None, "out of scope");
    assert_eq!(
        status("soc2", "A1.1"),
        None,
        "a whole category out of scope"
    );
    // The HR policy was last reviewed in 2024: stale...
    assert_eq!(status("soc2", "CC1.5").as_deref(), Some("stale"));
    // ...and it fails policy-review-overdue (and has no owner).
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    let check: Value = serde_json::from_slice(&files["checks/policy-review-overdue.json"]).unwrap();
    assert_eq!(check["passed"], false);
    assert_eq!(check["population"], 2);
    assert_eq!(
        check["exceptions"][0]["artifact"],
        "files:document:policies/hr-security-policy.md"
    );
    let owner: Value = serde_json::from_slice(&files["checks/policy-missing-owner.json"]).unwrap();
    assert_eq!(owner["exceptions"].as_array().unwrap().len(), 1);
    // Six changes on the first-parent line in 2026; the three direct pushes
    // and the local merge show no review trace.
    let changes: Value =
        serde_json::from_slice(&files["checks/change-without-review-trace.json"]).unwrap();
    assert_eq!(changes["population"], 6);
    assert_eq!(changes["exceptions"].as_array().unwrap().len(), 4);
    let owners: Value = serde_json::from_slice(&files["checks/codeowners-missing.json"]).unwrap();
    assert_eq!(owners["passed"], true);
    // A control that lists a failing check says so (here it also lacks
    // evidence for another requirement, and missing ranks first).
    let cc53 = rows.iter().find(|r| r["id"] == "CC5.3").unwrap();
    assert!(
        cc53["reason"]
            .as_str()
            .unwrap()
            .contains("check `policy-review-overdue` failed (1 exception)"),
        "{cc53}"
    );
    // A policy reviewed this year covers its requirement: the mapping
    // counts it, and the listing it names holds it.
    let mapping = String::from_utf8(files["mappings/soc2.yaml"].clone()).unwrap();
    assert!(
        mapping.contains("listings/files/document/index.md"),
        "{mapping}"
    );
    let listing = String::from_utf8(
        files
            .iter()
            .filter(|(p, _)| p.starts_with("listings/files/document/") && !p.ends_with("index.md"))
            .flat_map(|(_, b)| b.clone())
            .collect(),
    )
    .unwrap();
    assert!(
        listing.contains("access-control-policy.md.json"),
        "{listing}"
    );
}

#[test]
fn gaps_table_and_fail_on() {
    let (f, cfg) = synced();
    let repo = f.evidence();
    let gaps = |extra: &[&str]| command_with("gaps", &cfg, &repo, extra);
    let out = gaps(&["--framework", "soc2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
    assert_eq!(code(&gaps(&["--fail-on", "stale,missing"])), 1);
    assert_eq!(code(&gaps(&["--fail-on", "covered"])), 2);
    let gh = gaps(&["--format", "github"]);
    assert!(
        stdout(&gh).contains("::warning file=controls/soc2/CC1.5.md,title=gap-stale::soc2 CC1.5"),
        "{}",
        stdout(&gh)
    );
}

#[test]
fn the_generated_readme_and_control_pages() {
    let (f, _) = synced();
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    let readme = String::from_utf8(files["README.md"].clone()).unwrap();
    assert!(readme.contains("```mermaid\npie showData"), "{readme}");
    assert!(readme.contains("cleartrail verify --repo ."));
    insta::with_settings!({filters => vec![(r"\b[0-9a-f]{12}\b", "[SHA]")]}, {
        insta::assert_snapshot!("readme", readme);
    });
    assert!(files.contains_key("controls/soc2/CC8.1.md"));
    assert!(files.contains_key("controls/iso27001-2022/8.32.md"));
    let page = String::from_utf8(files["controls/soc2/P1.1.md"].clone()).unwrap();
    assert!(
        page.contains("**Out of scope:** We process no personal data"),
        "{page}"
    );
}

#[test]
fn packets_are_byte_identical_and_match_their_manifest() {
    let (f, cfg) = synced();
    let a = f.root.path().join("packet-a");
    let b = f.root.path().join("packet-b");
    for dir in [&a, &b] {
        let out = command_with(
            "packet",
            &cfg,
            &f.evidence(),
            &["--period", "2026", "--out", dir.to_str().unwrap()],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let list = |d: &Path| {
        let mut v = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() {
                    stack.push(e);
                } else {
                    v.push((
                        e.strip_prefix(d).unwrap().to_path_buf(),
                        std::fs::read(&e).unwrap(),
                    ));
                }
            }
        }
        v.sort();
        v
    };
    let (fa, fb) = (list(&a), list(&b));
    assert_eq!(fa, fb, "two renders of one commit differ");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    let tip = git2::Repository::open(f.evidence())
        .unwrap()
        .refname_to_id("refs/heads/cleartrail/evidence")
        .unwrap();
    assert_eq!(manifest["evidence_commit"], tip.to_string());
    let entries = manifest["files"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        fa.len() - 1,
        "every file but the manifest is listed"
    );
    for e in entries {
        let bytes = std::fs::read(a.join(e["path"].as_str().unwrap())).unwrap();
        assert_eq!(
            e["sha256"],
            cleartrail::artifact::canonical::sha256_hex(&bytes),
            "{e}"
        );
    }
    // The statement of applicability shows the reason.
    let p11 = std::fs::read_to_string(a.join("soc2/controls/P1.1.md")).unwrap();
    assert!(
        p11.contains("**Out of scope.** We process no personal data of end users."),
        "{p11}"
    );
    let index = std::fs::read_to_string(a.join("soc2/index.md")).unwrap();
    assert!(index.contains("- **A1.2** "), "{index}");
    let page = std::fs::read_to_string(a.join("soc2/controls/CC8.1.md")).unwrap();
    insta::with_settings!({filters => vec![(r"\b[0-9a-f]{40}\b", "[COMMIT]"), (r"`[0-9a-f]{64}`", "`[SHA256]`"), (r"file://[^)]*", "[URL]")]}, {
        insta::assert_snapshot!("packet_cc8_1", page);
    });

    // Rendering one control into the same folder replaces the older
    // packet: nothing is left that its manifest does not list.
    let out = command_with(
        "packet",
        &cfg,
        &f.evidence(),
        &[
            "--period",
            "2026",
            "--control",
            "CC8.1",
            "--out",
            a.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let again = list(&a);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["files"].as_array().unwrap().len(), again.len() - 1);
    assert_eq!(again.len(), 2, "{again:?}");
    // A folder that holds something else is refused, and left alone.
    let other = f.root.path().join("not-a-packet");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let out = command_with(
        "packet",
        &cfg,
        &f.evidence(),
        &["--period", "2026", "--out", other.to_str().unwrap()],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("holds no packet"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}

#[test]
fn a_packet_commits_to_the_branch_by_default() {
    let (f, cfg) = synced();
    let out = cleartrail(&[
        "packet",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
        "--period",
        "2026",
        "--framework",
        "soc2",
        "--control",
        "CC8.1",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    assert!(files.contains_key("packets/2026/soc2/controls/CC8.1.md"));
    assert!(files.contains_key("packets/2026/manifest.json"));
    assert!(!files.contains_key("packets/2026/soc2/index.md"));
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    // What auditors receive is verified too: an edited page is named.
    let page = "packets/2026/soc2/controls/CC8.1.md";
    let mut bytes = files[page].clone();
    bytes.extend_from_slice(b"\nAll good.\n");
    tamper(&f.evidence(), "cleartrail/evidence", page, Some(&bytes));
    let v = cleartrail(&["verify", "--repo", f.evidence().to_str().unwrap()]);
    assert_eq!(code(&v), 1, "{}", stdout(&v));
    assert!(
        stdout(&v).contains(&format!("error[packet-mismatch]: {page}:")),
        "{}",
        stdout(&v)
    );
}

#[test]
fn manual_mappings_from_the_configuration_count_and_are_recorded() {
    let (f, cfg) = synced();
    let repo = f.evidence();
    // Manual mappings are configuration: `mappings.yaml` beside the
    // config file, `confidence` optional.
    let manual = cfg.parent().unwrap().join("mappings.yaml");
    std::fs::write(
        &manual,
        "soc2:\n  CC1.2:\n    - artifact: files:document:policies/org-chart.csv\n      requirement: board-oversight\n      note: board minutes are kept with the org chart\n",
    )
    .unwrap();
    let again = cleartrail(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
    ]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let files = tree_files(&repo, "cleartrail/evidence");
    let mapping = String::from_utf8(files["mappings/soc2.yaml"].clone()).unwrap();
    assert!(
        mapping.contains("artifact: \"files:document:policies/org-chart.csv\""),
        "{mapping}"
    );
    assert!(mapping.contains("confidence: 1"), "{mapping}");
    let recorded: Value = serde_json::from_slice(&files[".cleartrail/config.json"]).unwrap();
    assert_eq!(
        recorded["manual_mappings"]["soc2"]["CC1.2"][0]["note"],
        "board minutes are kept with the org chart"
    );
    let gaps = run_json(&[
        "gaps",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
    ]);
    let row = gaps
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "CC1.2")
        .unwrap()
        .clone();
    assert_eq!(row["status"], "covered", "{row}");

    // An id that is not held is an error naming the file and line, and
    // nothing is written.
    std::fs::write(
        &manual,
        "soc2:\n  CC1.2:\n    - artifact: files:document:policies/nope.md\n",
    )
    .unwrap();
    let before = tree_files(&repo, "cleartrail/evidence");
    let bad = cleartrail(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
    ]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("mappings.yaml:3:17: no artifact `files:document:policies/nope.md`"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(tree_files(&repo, "cleartrail/evidence"), before);
}

/// A run that must fail with exit 2 before touching anything.
fn rejected_run(f: &Fixture, cfg: &Path) -> String {
    let out = cleartrail(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
    ]);
    assert_eq!(
        code(&out),
        2,
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!f.evidence().exists(), "nothing may be written");
    stderr(&out).replace(
        &f.root.path().canonicalize().unwrap().display().to_string(),
        "[ROOT]",
    )
}

#[test]
fn a_broken_template_names_its_file_and_line() {
    let f = Fixture::new();
    let cfg = f.config(AUDIT_CONFIG);
    std::fs::create_dir_all(f.root.path().join("templates/packet")).unwrap();
    std::fs::write(
        f.root.path().join("templates/packet/control.md.j2"),
        "# {{ control.id }}\n\n{% if %}\n",
    )
    .unwrap();
    let err = rejected_run(&f, &cfg);
    assert!(
        err.contains("templates/packet/control.md.j2:3: syntax error"),
        "{err}"
    );
}

#[test]
fn a_catalog_with_a_duplicate_id_or_unknown_field_names_its_line() {
    let f = Fixture::new();
    let cfg = f.config(AUDIT_CONFIG);
    let dir = f.root.path().join("controls");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ours.yaml"),
        "version: 1\nframework: soc2\ncontrols:\n  - id: CC8.1\n    checks: []\n  - id: CC8.1\n    checks: []\n",
    )
    .unwrap();
    let err = rejected_run(&f, &cfg);
    insta::assert_snapshot!("catalog_duplicate", err);
    std::fs::write(
        dir.join("ours.yaml"),
        "version: 1\nframework: soc2\ncontrols:\n  - id: CC8.1\n    chekcs: []\n",
    )
    .unwrap();
    let err = rejected_run(&f, &cfg);
    assert!(
        err.contains("ours.yaml:5:5: controls[0]: unknown field `chekcs`"),
        "{err}"
    );
    assert!(err.contains("did you mean `checks`?"), "{err}");
}

#[test]
fn an_unknown_out_of_scope_control_names_its_line() {
    let f = Fixture::new();
    let cfg = f.config("version: 1\nsources:\n  policies:\n    type: files\n    path: src/policies\nout_of_scope:\n  soc2:\n    CC9.9: not a criterion\n");
    let err = rejected_run(&f, &cfg);
    assert!(
        err.contains("cleartrail.yml:8:5: `CC9.9` is neither a control nor a category of soc2"),
        "{err}"
    );
}

#[test]
fn evidence_dated_after_a_past_period_does_not_count_for_it() {
    let (f, cfg) = synced();
    // Everything in the fixture is dated 2024 or later.
    let gaps = run_json(&[
        "gaps",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
        "--period",
        "2020",
    ]);
    let covered: Vec<&Value> = gaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "covered")
        .collect();
    assert!(covered.is_empty(), "{covered:?}");
}

#[test]
fn a_policy_with_broken_front_matter_fails_both_policy_checks() {
    let f = Fixture::new();
    let docs = f.root.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(
        docs.join("broken.md"),
        "---\ntitle: Broken\nowner: [Unclosed\nlast_reviewed: 2026-01-01\n---\n# Broken\n",
    )
    .unwrap();
    let cfg = f.config("version: 1\nsources:\n  docs:\n    type: files\n    path: docs\n");
    let out = cleartrail(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        f.evidence().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    for check in ["policy-review-overdue", "policy-missing-owner"] {
        let v: Value = serde_json::from_slice(&files[&format!("checks/{check}.json")]).unwrap();
        assert_eq!(v["population"], 1, "{check}");
        let reason = v["exceptions"][0]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("front matter does not parse (line 4: "),
            "{check}: {reason}"
        );
    }
}

#[test]
fn committed_packets_are_idempotent_and_replaced_whole() {
    let (f, cfg) = synced();
    let repo = f.evidence();
    let packet = |extra: &[&str]| {
        let mut args = vec![
            "packet",
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
            "--period",
            "2026",
        ];
        args.extend_from_slice(extra);
        let out = cleartrail(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out)
    };
    assert!(packet(&[]).starts_with("committed "));
    let after_first = commit_count(&repo, "cleartrail/evidence");
    // Rendering again renders from the same evidence commit: no change.
    assert!(
        packet(&[]).contains("already up to date"),
        "second packet run committed"
    );
    assert_eq!(commit_count(&repo, "cleartrail/evidence"), after_first);
    // A one-control packet replaces the folder: its manifest lists all it holds.
    packet(&["--framework", "soc2", "--control", "CC8.1"]);
    let files = tree_files(&repo, "cleartrail/evidence");
    let held: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("packets/2026/"))
        .collect();
    assert_eq!(
        held,
        [
            "packets/2026/manifest.json",
            "packets/2026/soc2/controls/CC8.1.md"
        ]
    );
}
