//! Hostile and broken configurations through the real binary: each one
//! exits 2 naming the file (and the line where there is one), never exit
//! 3, a crash or a hang, and never creates the evidence repository. The
//! binary runs in its own process, so a stack overflow or abort shows up
//! as a wrong exit code here instead of killing the test harness.

mod common;

use common::*;
use std::path::Path;
use std::process::Output;

/// `sync` with `cfg`, guarded against a hang.
fn sync_guarded(f: &Fixture, cfg: &Path) -> Output {
    cleartrail_guarded(
        &[
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            f.evidence().to_str().unwrap(),
        ],
        &[],
    )
}

/// Asserts exit 2, nothing on stdout, no evidence repository, and returns
/// stderr.
fn refused(f: &Fixture, cfg: &Path) -> String {
    let out = sync_guarded(f, cfg);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "stderr: {err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(
        !f.evidence().exists(),
        "a refused run created the evidence repository"
    );
    err
}

const SOURCES: &str = "sources:\n  app:\n    type: git\n    path: src\n";

#[test]
fn unreadable_configs_exit_2_with_the_path() {
    let f = Fixture::new();
    let dir = f.root.path().join("a-folder.yml");
    std::fs::create_dir(&dir).unwrap();
    let fifo = f.root.path().join("fifo.yml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let environ = f.root.path().join("environ.yml");
    std::os::unix::fs::symlink("/proc/self/environ", &environ).unwrap();
    let binary = f.root.path().join("binary.yml");
    std::fs::write(&binary, b"version: 1\nbranch: \xff\xfe\n").unwrap();
    let big = f.root.path().join("big.yml");
    let mut text = format!("version: 1\n{SOURCES}");
    text.push_str(&"# padding\n".repeat(120_000));
    std::fs::write(&big, text).unwrap();
    let cases: Vec<(&Path, &str)> = vec![
        (&dir, "is a folder, not a regular file"),
        (&fifo, "is a FIFO, not a regular file"),
        (
            Path::new("/dev/zero"),
            "is in /dev, the machine's own state",
        ),
        (&environ, "is in /proc, the machine's own state"),
        (&binary, "is not valid UTF-8 text (byte 19)"),
        (&big, "is larger than the 1048576 bytes allowed"),
    ];
    for (path, reason) in cases {
        let err = refused(&f, path);
        assert!(
            err.contains(&format!(
                "cannot read configuration {}: it {reason}",
                path.display()
            )),
            "{}: {err}",
            path.display()
        );
    }
}

#[test]
fn nesting_and_alias_bombs_exit_2_naming_the_line() {
    let f = Fixture::new();
    let deep = format!("version: 1\n{SOURCES}period:\n{}x\n", "- ".repeat(10_000));
    let err = refused(&f, &f.config(&deep));
    assert!(
        err.contains("cleartrail.yml:7:127: YAML nested deeper than 64 levels"),
        "{err}"
    );
    let mut bomb = format!("version: 1\n{SOURCES}");
    bomb.push_str("x0: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for (n, q) in ('b'..='i').zip('a'..) {
        bomb.push_str(&format!(
            "x{n}: &{n} [*{q},*{q},*{q},*{q},*{q},*{q},*{q},*{q},*{q}]\n"
        ));
    }
    let err = refused(&f, &f.config(&bomb));
    assert!(
        err.contains("cleartrail.yml:10:") && err.contains("aliases expand to more than 10000"),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once_sorted_by_line() {
    let f = Fixture::new();
    let err = refused(
        &f,
        &f.config(
            "sources:\n  app:\n    type: git\n    path: src\n    brnch: x\n  app:\n    type: git\n    path: nowhere\nbranch: HEAD\nout_of_scope:\n  soc2:\n    security: small team\n",
        ),
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cleartrail.yml:"))
        .map(|l| l.rsplit("cleartrail.yml:").next().unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{err}");
    assert!(lines[0].starts_with("1:1: missing `version`"), "{err}");
    assert!(
        lines[1].starts_with("5:5: sources.app: unknown field `brnch`"),
        "{err}"
    );
    assert!(
        lines[2].starts_with("6:3: `sources.app` is written twice, on lines 2 and 6"),
        "{err}"
    );
    assert!(
        lines[3].starts_with("8:11: path `nowhere` does not exist"),
        "{err}"
    );
    assert!(
        lines[4].starts_with("9:9: `HEAD` is not a valid branch name"),
        "{err}"
    );
    assert!(
        lines[5].starts_with("12:5: the SOC 2 `security` category cannot be out of scope"),
        "{err}"
    );
}

#[test]
fn the_default_branch_is_refused_before_anything_is_created() {
    let f = Fixture::new();
    let err = refused(
        &f,
        &f.config(&format!("version: 1\nbranch: main\n{SOURCES}")),
    );
    assert!(
        err.contains("cleartrail.yml:2:9: the evidence branch cannot be `main`"),
        "{err}"
    );
}

#[test]
fn hostile_catalog_overrides_are_refused_naming_the_file() {
    let f = Fixture::new();
    let cfg = f.config(&format!("version: 1\n{SOURCES}"));
    let controls = f.root.path().join("controls");
    std::fs::create_dir(&controls).unwrap();
    let file = controls.join("mine.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nframework: soc2\ncontrols:\n{}x\n",
            "- ".repeat(10_000)
        ),
    )
    .unwrap();
    let err = refused(&f, &cfg);
    assert!(
        err.contains(&format!("{}:4:", file.display()))
            && err.contains("nested deeper than 64 levels"),
        "{err}"
    );
}

/// Manual mappings (`mappings.yaml` beside the configuration) are written
/// by people: an alias bomb there is refused with its path and line, and
/// nothing is committed.
#[test]
fn a_hostile_manual_mappings_file_is_refused_naming_it() {
    let f = Fixture::new();
    let cfg = f.default_config();
    let ok = sync_guarded(&f, &cfg);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let before = commit_count(&f.evidence(), "cleartrail/evidence");
    let mut bomb = String::from("soc2:\n  x0: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for (n, q) in ('b'..='i').zip('a'..) {
        bomb.push_str(&format!(
            "  x{n}: &{n} [*{q},*{q},*{q},*{q},*{q},*{q},*{q},*{q},*{q}]\n"
        ));
    }
    let file = f.root.path().join("mappings.yaml");
    std::fs::write(&file, bomb).unwrap();
    let out = sync_guarded(&f, &cfg);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains(&format!("{}:6:", file.display())), "{err}");
    assert!(
        err.contains("aliases expand to more than 10000 nodes"),
        "{err}"
    );
    assert_eq!(commit_count(&f.evidence(), "cleartrail/evidence"), before);
}
