//! The files source against a hostile folder, through the real binary: it
//! never reads outside its root, never opens what is not a regular file
//! (a FIFO must not hang the run), records what it skipped and why in the
//! collection record and on stderr, and one bad entry does not fail the
//! run.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An environment variable only the child process has: its value must
/// never reach the evidence.
const TOKEN_VAR: &str = "FAKE_TOKEN_CLEARTRAIL_TEST";
const TOKEN: &str = "fake-token-value-5b0d1e7c9a";

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {}", p.display());
}

/// A plain folder (no git) of policies with every hostile entry the
/// files source must step around, next to a file it must not read.
struct Hostile {
    root: tempfile::TempDir,
}

impl Hostile {
    /// Two policies, and the secret file outside the folder.
    fn clean() -> Self {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("policies");
        std::fs::create_dir_all(p.join("sub")).unwrap();
        std::fs::write(p.join("access.md"), POLICY_OK).unwrap();
        std::fs::write(p.join("sub/hr.md"), POLICY_NO_OWNER).unwrap();
        std::fs::write(root.path().join("outside.txt"), "OUTSIDE-SECRET-41d2").unwrap();
        Hostile { root }
    }

    fn policies(&self) -> PathBuf {
        self.root.path().join("policies")
    }

    fn new() -> Self {
        use std::os::unix::fs::symlink;
        let h = Self::clean();
        let p = h.policies();
        symlink("/proc/self/environ", p.join("env.txt")).unwrap();
        symlink("../outside.txt", p.join("outside-link.txt")).unwrap();
        symlink("no-such-file.md", p.join("dangling.md")).unwrap();
        symlink("loop-b.md", p.join("loop-a.md")).unwrap();
        symlink("loop-a.md", p.join("loop-b.md")).unwrap();
        symlink("sub/hr.md", p.join("hr-link.md")).unwrap();
        mkfifo(&p.join("pipe.md"));
        h
    }

    fn evidence(&self) -> PathBuf {
        self.root.path().join("evidence")
    }

    fn config(&self, body: &str) -> PathBuf {
        let c = self.root.path().join("cleartrail.yml");
        std::fs::write(&c, body).unwrap();
        c
    }

    fn sync(&self, cfg: &Path) -> Output {
        cleartrail_guarded(
            &[
                "sync",
                "--config",
                cfg.to_str().unwrap(),
                "--repo",
                self.evidence().to_str().unwrap(),
            ],
            &[(TOKEN_VAR, TOKEN)],
        )
    }
}

const POLICIES: &str = "version: 1\nsources:\n  policies:\n    type: files\n    path: policies\n";

/// All evidence as one text, to search.
fn all_text(files: &std::collections::BTreeMap<String, Vec<u8>>) -> String {
    files
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// The reported leak on its own: a link to the process environment in a
/// policy folder once committed the runner's tokens.
#[test]
fn a_link_to_the_process_environment_is_never_read() {
    let h = Hostile::clean();
    std::os::unix::fs::symlink("/proc/self/environ", h.policies().join("env.md")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", h.policies().join("notes.md")).unwrap();
    let out = h.sync(&h.config(POLICIES));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let all = all_text(&tree_files(&h.evidence(), "cleartrail/evidence"));
    assert!(all.contains("\"policies/access.md\""));
    assert!(!all.contains(TOKEN), "the environment reached the evidence");
    assert!(
        !all.contains("OUTSIDE-SECRET"),
        "a file outside the root reached the evidence"
    );
}

#[test]
fn hostile_entries_are_skipped_with_reasons_and_nothing_outside_is_read() {
    let h = Hostile::new();
    let out = h.sync(&h.config(POLICIES));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&h.evidence(), "cleartrail/evidence");
    for (path, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(TOKEN), "{path} holds the environment");
        assert!(
            !text.contains("OUTSIDE-SECRET"),
            "{path} holds a file outside the root"
        );
    }
    let all = all_text(&files);
    // The link inside the root is collected under its own name.
    assert!(
        all.contains("\"policies/hr-link.md\""),
        "link inside the root not collected"
    );
    assert!(all.contains("\"policies/sub/hr.md\""));
    let record = files
        .iter()
        .find(|(p, _)| p.starts_with("collections/") && p.contains("files"))
        .map(|(_, b)| serde_json::from_slice::<serde_json::Value>(b).unwrap())
        .expect("a collection record for the files source");
    let skipped: Vec<(String, String)> = record["queries"][0]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let paths: Vec<&str> = skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "dangling.md",
            "env.txt",
            "loop-a.md",
            "loop-b.md",
            "outside-link.txt",
            "pipe.md"
        ],
        "{skipped:#?}"
    );
    let reason = |p: &str| skipped.iter().find(|(x, _)| x == p).unwrap().1.clone();
    assert!(reason("env.txt").contains("/proc"));
    assert!(reason("outside-link.txt").contains("outside the source folder"));
    assert!(reason("dangling.md").contains("dangling"));
    assert!(reason("loop-a.md").contains("loop"));
    assert!(reason("pipe.md").contains("FIFO"));
    let root = h.root.path().canonicalize().unwrap();
    assert!(
        !all.contains(&format!("\"reason\": \"{}", root.display())),
        "a reason names a local path"
    );
    let err = stderr(&out);
    for p in paths {
        assert!(
            err.contains(&format!("skipped {p}: ")),
            "{p} not on stderr:\n{err}"
        );
    }
}

#[test]
fn a_source_root_that_is_a_link_to_a_folder_is_resolved_once() {
    let h = Hostile::clean();
    std::os::unix::fs::symlink("policies", h.root.path().join("linked")).unwrap();
    let cfg = h.config("version: 1\nsources:\n  policies:\n    type: files\n    path: linked\n");
    let out = h.sync(&cfg);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&h.evidence(), "cleartrail/evidence");
    assert!(
        files.keys().any(|p| p.contains("access.md")),
        "{:?}",
        files.keys()
    );
}

#[test]
fn a_source_root_that_is_not_a_folder_exits_2_naming_the_line() {
    let h = Hostile::new();
    mkfifo(&h.root.path().join("fifo-root"));
    std::os::unix::fs::symlink("/proc/self", h.root.path().join("proc-link")).unwrap();
    std::fs::write(h.root.path().join("plain.md"), "x").unwrap();
    for (path, expect) in [
        ("fifo-root", "is not a folder"),
        ("plain.md", "is not a folder"),
        ("proc-link", "is a system folder"),
    ] {
        let cfg = h.config(&format!(
            "version: 1\nsources:\n  policies:\n    type: files\n    path: {path}\n"
        ));
        let out = h.sync(&cfg);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{path}: {err}");
        assert!(err.contains("cleartrail.yml:5:11: "), "{path}: {err}");
        assert!(err.contains(expect), "{path}: {err}");
        assert!(
            !h.evidence().exists(),
            "{path}: the evidence repository was created"
        );
    }
}

/// Names that cannot be stored or named are left out of the files source
/// only; the git source beside it still collects.
#[test]
fn one_bad_name_does_not_fail_the_run() {
    use std::os::unix::ffi::OsStrExt;
    let f = Fixture::new();
    let p = f.src().join("policies");
    std::fs::write(p.join(std::ffi::OsStr::from_bytes(b"r\xe9sum\xe9.md")), "x").unwrap();
    std::fs::write(p.join("a\\b.md"), "x").unwrap();
    let out = sync_into(&f, &f.default_config(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    let all = all_text(&files);
    assert!(all.contains("\"policies/access-control-policy.md\""));
    assert!(
        files.keys().any(|k| k.starts_with("collections/git/")),
        "{:?}",
        files.keys()
    );
    assert!(
        all.contains("\"r\u{fffd}sum\u{fffd}.md\""),
        "non-UTF-8 name not recorded"
    );
    assert!(all.contains("\"a\\\\b.md\""), "backslash name not recorded");
    assert!(all.contains("not valid UTF-8"));
}

/// A 280-byte alias bomb and 10,000 nested sequences in front matter are
/// recorded as front-matter errors (which the policy checks flag); the run
/// neither crashes nor grows the artifact.
#[test]
fn hostile_front_matter_is_an_error_in_the_artifact() {
    let h = Hostile::clean();
    let p = h.root.path().join("policies");
    let mut bomb = String::from("---\na: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for (n, q) in ('b'..='i').zip('a'..) {
        bomb.push_str(&format!(
            "{n}: &{n} [*{q},*{q},*{q},*{q},*{q},*{q},*{q},*{q},*{q}]\n"
        ));
    }
    bomb.push_str("---\n# Bomb\n");
    assert!(bomb.len() < 400, "{}", bomb.len());
    std::fs::write(p.join("bomb.md"), &bomb).unwrap();
    let deep = format!(
        "---\nowner: x\nlist:\n{}x\n---\n# Deep\n",
        "- ".repeat(10_000)
    );
    std::fs::write(p.join("deep.md"), &deep).unwrap();
    let out = h.sync(&h.config(POLICIES));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let files = tree_files(&h.evidence(), "cleartrail/evidence");
    let artifact = |name: &str| {
        files
            .iter()
            .filter(|(p, _)| p.ends_with(".json"))
            .map(|(_, b)| serde_json::from_slice::<serde_json::Value>(b).unwrap())
            .find(|v| v["object_id"] == format!("policies/{name}"))
            .unwrap_or_else(|| panic!("no artifact for {name}"))
    };
    let b = artifact("bomb.md");
    assert_eq!(
        b["content"]["front_matter_error"],
        "line 5: YAML aliases expand to more than 1000 nodes"
    );
    assert!(b["content"]["front_matter"].is_null());
    let d = artifact("deep.md");
    assert_eq!(
        d["content"]["front_matter_error"],
        "line 4: YAML nested deeper than 64 levels"
    );
    // The policy checks flag both as broken policies.
    let checks: String = files
        .iter()
        .filter(|(p, _)| p.starts_with("checks/"))
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    for name in ["bomb.md", "deep.md"] {
        assert!(
            checks.contains(&format!("policies/{name}"))
                && checks.contains("front matter does not parse"),
            "{name} not flagged by a check"
        );
    }
    let biggest = files.values().map(Vec::len).max().unwrap();
    assert!(biggest < 1 << 20, "a file of {biggest} bytes was committed");
}
