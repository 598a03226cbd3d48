//! The GitHub Action: its install script given a folder laid out like a
//! release (archive + SHA256SUMS), a corrupted archive, a release without
//! this platform and a platform with no binary at all (the cargo fallback,
//! through a stand-in cargo); and `run` on the quickstart speaking the
//! Actions language (job summary and step outputs, pinned by snapshots)
//! without ever showing a secret from its environment.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/scripts/install-cleartrail.sh")
}

/// This machine as the script names platforms.
fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The release target the script maps this platform to.
fn target() -> &'static str {
    match platform().as_str() {
        "linux-x86_64" => "x86_64-unknown-linux-gnu",
        "linux-aarch64" => "aarch64-unknown-linux-gnu",
        "macos-aarch64" => "aarch64-apple-darwin",
        other => panic!("no release target for {other}"),
    }
}

fn sha256_file(p: &Path) -> String {
    cleartrail::artifact::canonical::sha256_hex(&std::fs::read(p).unwrap())
}

/// A release folder holding this build's binary for this platform (and,
/// when `listed`, its line in SHA256SUMS beside another target's).
fn release(root: &Path, listed: bool) -> (PathBuf, PathBuf) {
    let rel = root.join("release");
    let staging = root.join("staging");
    std::fs::create_dir_all(&rel).unwrap();
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_cleartrail"), staging.join("cleartrail")).unwrap();
    let name = format!("cleartrail-{VERSION}-{}.tar.gz", target());
    let archive = rel.join(&name);
    let st = Command::new("tar")
        .args(["-czf"])
        .arg(&archive)
        .arg("-C")
        .arg(&staging)
        .arg("cleartrail")
        .status()
        .unwrap();
    assert!(st.success());
    let mut sums = format!(
        "{}  cleartrail-{VERSION}-riscv64gc-unknown-linux-gnu.tar.gz\n",
        "0".repeat(64)
    );
    if listed {
        sums.push_str(&format!("{}  {name}\n", sha256_file(&archive)));
    }
    std::fs::write(rel.join("SHA256SUMS"), sums).unwrap();
    (rel, archive)
}

/// The script with a clean Actions environment and `env`.
fn install(root: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .env("CLEARTRAIL_VERSION", VERSION)
        .env("CLEARTRAIL_INSTALL_DIR", root.join("tool"))
        .env("GITHUB_PATH", root.join("github_path"))
        .env("GITHUB_OUTPUT", root.join("github_output"))
        .env_remove("CLEARTRAIL_PLATFORM")
        .env_remove("CLEARTRAIL_RELEASE_URL")
        .env_remove("RUNNER_TOOL_CACHE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn runs(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    stdout(&out)
}

#[test]
fn a_release_binary_is_installed_once_its_digest_matches() {
    let root = tempfile::tempdir().unwrap();
    let (rel, _) = release(root.path(), true);
    let out = install(
        root.path(),
        &[("CLEARTRAIL_RELEASE_URL", rel.to_str().unwrap())],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let bin = root.path().join("tool/bin/cleartrail");
    assert_eq!(stdout(&out).trim(), bin.to_str().unwrap());
    assert_eq!(runs(&bin).trim(), format!("cleartrail {VERSION}"));
    assert!(stderr(&out).contains(&format!("installed cleartrail {VERSION} ({})", target())));
    let path_file = std::fs::read_to_string(root.path().join("github_path")).unwrap();
    assert_eq!(
        path_file.trim(),
        root.path().join("tool/bin").to_str().unwrap()
    );
    let outputs = std::fs::read_to_string(root.path().join("github_output")).unwrap();
    assert_eq!(outputs.trim(), format!("path={}", bin.display()));

    // Again (a cache hit): nothing downloaded, the binary checked.
    let kept = root.path().join("kept-release");
    std::fs::rename(&rel, &kept).unwrap();
    let again = install(
        root.path(),
        &[("CLEARTRAIL_RELEASE_URL", rel.to_str().unwrap())],
    );
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already installed"),
        "{}",
        stderr(&again)
    );

    // A cached binary that is not the one installed is installed again.
    let mut bytes = std::fs::read(&bin).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&bin, bytes).unwrap();
    std::fs::rename(&kept, &rel).unwrap();
    let fresh = install(
        root.path(),
        &[("CLEARTRAIL_RELEASE_URL", rel.to_str().unwrap())],
    );
    assert_eq!(code(&fresh), 0, "{}", stderr(&fresh));
    assert!(
        stderr(&fresh).contains("installed cleartrail"),
        "{}",
        stderr(&fresh)
    );
    assert_eq!(runs(&bin).trim(), format!("cleartrail {VERSION}"));
}

#[test]
fn a_corrupted_archive_is_refused_and_nothing_installed() {
    let root = tempfile::tempdir().unwrap();
    let (rel, archive) = release(root.path(), true);
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();
    let out = install(
        root.path(),
        &[("CLEARTRAIL_RELEASE_URL", rel.to_str().unwrap())],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("::error title=cleartrail install::checksum mismatch for cleartrail-"),
        "{err}"
    );
    assert!(err.contains("refusing to install it"), "{err}");
    assert!(!root.path().join("tool/bin/cleartrail").exists());
}

/// A stand-in for cargo that records its arguments and "builds" by
/// copying this build's binary where `--root` says.
fn fake_cargo(root: &Path) -> PathBuf {
    let p = root.join("fake-cargo");
    std::fs::write(
        &p,
        format!(
            "#!/usr/bin/env bash\nset -e\necho \"$@\" > \"{}\"\nwhile [ $# -gt 0 ]; do [ \"$1\" = --root ] && r=\"$2\"; shift; done\nmkdir -p \"$r/bin\"\ncp \"{}\" \"$r/bin/cleartrail\"\n",
            root.join("cargo-args").display(),
            env!("CARGO_BIN_EXE_cleartrail")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn without_a_binary_for_the_platform_it_builds_from_the_action_source() {
    for (platform, listed) in [("linux-riscv64", true), (platform().as_str(), false)] {
        let root = tempfile::tempdir().unwrap();
        let (rel, _) = release(root.path(), listed);
        let cargo = fake_cargo(root.path());
        let out = install(
            root.path(),
            &[
                ("CLEARTRAIL_RELEASE_URL", rel.to_str().unwrap()),
                ("CLEARTRAIL_PLATFORM", platform),
                ("CARGO", cargo.to_str().unwrap()),
            ],
        );
        assert_eq!(code(&out), 0, "{platform}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("building cleartrail from"),
            "{}",
            stderr(&out)
        );
        let args = std::fs::read_to_string(root.path().join("cargo-args")).unwrap();
        assert_eq!(
            args.trim(),
            format!(
                "install --locked --force --path {} --root {}",
                env!("CARGO_MANIFEST_DIR"),
                root.path().join("tool").display()
            )
        );
        assert_eq!(
            runs(&root.path().join("tool/bin/cleartrail")).trim(),
            format!("cleartrail {VERSION}")
        );
    }
}

/// The quickstart as shipped (its configuration and policies), in a
/// checkout whose history is pinned: `../..` is a fixture repository.
fn quickstart() -> (tempfile::TempDir, PathBuf) {
    let f = Fixture::new();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let qs = f.src().join("examples/quickstart");
    std::fs::create_dir_all(qs.join("policies")).unwrap();
    std::fs::copy(here.join("cleartrail.yml"), qs.join("cleartrail.yml")).unwrap();
    for e in std::fs::read_dir(here.join("policies")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), qs.join("policies").join(e.file_name())).unwrap();
    }
    let root = f.root;
    (root, qs.join("cleartrail.yml"))
}

#[test]
fn run_in_actions_writes_a_summary_and_outputs_and_never_a_secret() {
    let (root, cfg) = quickstart();
    let summary = root.path().join("summary.md");
    let outputs = root.path().join("outputs.txt");
    let secrets = [
        ("GITHUB_TOKEN", "ghp_ActionSecretNeverShown1"),
        ("JIRA_API_TOKEN", "jira-secret-never-shown-2"),
        (
            "CLEARTRAIL_SIGNING_KEY",
            "-----BEGIN PRIVATE KEY-----\nNeverShown3\n-----END PRIVATE KEY-----",
        ),
        ("OPENAI_API_KEY", "sk-NeverShown4"),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_cleartrail"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--repo"])
        .arg(root.path().join("evidence"))
        .env("SOURCE_DATE_EPOCH", NOW.to_string())
        .env("NO_COLOR", "1")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .envs(secrets)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary = std::fs::read_to_string(&summary).unwrap();
    let outputs = std::fs::read_to_string(&outputs).unwrap();
    for (name, value) in secrets {
        for text in [&summary, &outputs, &stdout(&out), &stderr(&out)] {
            assert!(!text.contains(value), "{name} shown");
            assert!(!text.contains("NeverShown"), "{name} shown");
        }
    }
    // Collection is grouped in the log.
    assert!(
        stderr(&out).contains("::group::Collecting cleartrail"),
        "{}",
        stderr(&out)
    );
    let pin = |s: &str| {
        let mut out = String::new();
        for word in s.split_inclusive(|c: char| !c.is_ascii_hexdigit()) {
            let hex = word.trim_end_matches(|c: char| !c.is_ascii_hexdigit());
            if hex.len() == 40 || hex.len() == 12 {
                out.push_str(&word.replacen(hex, "[commit]", 1));
            } else {
                out.push_str(word);
            }
        }
        out
    };
    insta::assert_snapshot!("actions_run_summary", pin(&summary));
    insta::assert_snapshot!("actions_run_outputs", pin(&outputs));
}

/// What `init` scaffolds: the configuration, the three workflows pinned to
/// a commit of the action, a README on protecting the repository; and
/// without a commit to pin, no workflows rather than unpinned ones.
#[test]
fn init_writes_pinned_workflows_and_the_protection_readme() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("ev");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let out = cleartrail(&[
        "init",
        ev.to_str().unwrap(),
        "--action-ref",
        sha,
        "--default-branch",
        "trunk",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let wf = |n: &str| std::fs::read_to_string(ev.join(".github/workflows").join(n)).unwrap();
    for name in [
        "cleartrail-sync.yml",
        "cleartrail-approve.yml",
        "cleartrail-packet.yml",
    ] {
        let text = wf(name);
        assert!(
            text.contains(&format!("uses: cleartrail/cleartrail@{sha} # v{VERSION}")),
            "{name}"
        );
        assert!(
            !text.contains("{{ action") && !text.contains("{{ default_branch"),
            "{name} has a hole"
        );
        assert!(text.contains("persist-credentials: false"), "{name}");
    }
    assert!(wf("cleartrail-approve.yml").contains("branches: [trunk]"));
    assert!(wf("cleartrail-approve.yml").contains("id-token: write"));
    assert!(wf("cleartrail-sync.yml").contains("pull-requests: write"));
    let readme = std::fs::read_to_string(ev.join("README.md")).unwrap();
    assert!(readme.contains("Require a pull request before merging"));

    // A tag is not a pin; a second init keeps what is there.
    let bad = cleartrail(&[
        "init",
        ev.to_str().unwrap(),
        "--force",
        "--action-ref",
        "v1",
    ]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("40-digit commit"), "{}", stderr(&bad));
    let other = dir.path().join("other");
    let unpinned = cleartrail(&["init", other.to_str().unwrap()]);
    assert_eq!(code(&unpinned), 0, "{}", stderr(&unpinned));
    if option_env!("CLEARTRAIL_ACTION_SHA").is_none() {
        assert!(
            stdout(&unpinned).contains("workflows not written"),
            "{}",
            stdout(&unpinned)
        );
        assert!(!other.join(".github").exists());
    }
}
