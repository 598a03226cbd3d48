//! Shared helpers for integration tests: fixture repositories built by
//! code with pinned dates (so object ids are stable), and a runner for the
//! real binary.

#![allow(dead_code)]

use git2::{Oid, Repository, Signature, Time};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// 2026-03-02T10:00:00Z, the first fixture commit.
pub const T0: i64 = 1_772_445_600;
/// A pinned "now" for runs: 2026-11-29T12:00:00Z.
pub const NOW: i64 = 1_795_953_600;
pub const DAY: i64 = 86_400;

pub fn sig(name: &str, t: i64) -> Signature<'static> {
    Signature::new(
        name,
        &format!("{}@example.com", name.to_lowercase()),
        &Time::new(t, 0),
    )
    .unwrap()
}

/// Writes `files` into the index and commits with pinned times.
pub fn commit(
    repo: &Repository,
    files: &[(&str, &str)],
    message: &str,
    t: i64,
    parents: &[Oid],
) -> Oid {
    let workdir = repo.workdir().unwrap().to_path_buf();
    let mut index = repo.index().unwrap();
    for (path, body) in files {
        let p = workdir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        index.add_path(Path::new(path)).unwrap();
    }
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let parents: Vec<git2::Commit> = parents
        .iter()
        .map(|p| repo.find_commit(*p).unwrap())
        .collect();
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    let s = sig("Ann", t);
    let c = repo.commit(None, &s, &s, message, &tree, &refs).unwrap();
    repo.reference("refs/heads/main", c, true, "fixture")
        .unwrap();
    c
}

/// Commits with a (syntactically valid, unverifiable) SSH signature header.
pub fn commit_signed(repo: &Repository, message: &str, t: i64, parent: Oid) -> Oid {
    let parent_c = repo.find_commit(parent).unwrap();
    let tree = parent_c.tree().unwrap();
    let s = sig("Bo", t);
    let buf = repo
        .commit_create_buffer(&s, &s, message, &tree, &[&parent_c])
        .unwrap();
    let armor = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQ==\n-----END SSH SIGNATURE-----";
    let c = repo
        .commit_signed(buf.as_str().unwrap(), armor, None)
        .unwrap();
    repo.reference("refs/heads/main", c, true, "fixture")
        .unwrap();
    c
}

pub const POLICY_OK: &str = "---\ntitle: Access Control Policy\nowner: Head of Security\nversion: 2.10\nlast_reviewed: 2026-03-14\napproved_by: CTO\ntopics: [access-control]\n---\n\n# Access Control Policy\n\nAccess is granted on least privilege.\n";
pub const POLICY_NO_OWNER: &str = "---\ntitle: HR Security Policy\nversion: 1.0\nlast_reviewed: 2024-09-30\ntopics: [hr-security]\n---\n\n# HR Security\n";

/// A source repository with history, merges, tags, CODEOWNERS and a
/// policies folder; returns its path and the commit ids in order.
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub commits: Vec<Oid>,
}

impl Fixture {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("src");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(&src, &opts).unwrap();
        let c1 = commit(&repo, &[("README.md", "app\n")], "Initial commit", T0, &[]);
        let c2 = commit(
            &repo,
            &[
                (
                    ".github/CODEOWNERS",
                    "# owners\n* @org/eng\n/policies/ @org/security # policies\n",
                ),
                ("policies/access-control-policy.md", POLICY_OK),
                ("policies/hr-security-policy.md", POLICY_NO_OWNER),
                ("policies/org-chart.csv", "role,name\nCTO,Ann\n"),
            ],
            "Add owners and policies",
            T0 + DAY,
            &[c1],
        );
        let c3 = commit_signed(
            &repo,
            "Signed change\n\nReviewed-by: Cy <cy@example.com>\n",
            T0 + 2 * DAY,
            c2,
        );
        // A side branch merged twice: once through a pull request, once not.
        let side = commit(
            &repo,
            &[("feature.txt", "f1\n")],
            "Feature work",
            T0 + 3 * DAY,
            &[c2],
        );
        let m1 = commit(
            &repo,
            &[],
            "Merge pull request #7 from org/feature\n\nFeature work",
            T0 + 4 * DAY,
            &[c3, side],
        );
        let side2 = commit(
            &repo,
            &[("hotfix.txt", "h\n")],
            "Hotfix",
            T0 + 5 * DAY,
            &[side],
        );
        let m2 = commit(
            &repo,
            &[],
            "Merge branch 'hotfix' into main",
            T0 + 6 * DAY,
            &[m1, side2],
        );
        // Outside Q1 2026: a commit in July.
        let c4 = commit(
            &repo,
            &[("later.txt", "l\n")],
            "July change",
            T0 + 130 * DAY,
            &[m2],
        );
        let target = repo.find_object(m1, None).unwrap();
        repo.tag(
            "v1.0.0",
            &target,
            &sig("Ann", T0 + 4 * DAY),
            "Release 1.0.0",
            false,
        )
        .unwrap();
        repo.tag_lightweight("v1.0.1", &repo.find_object(m2, None).unwrap(), false)
            .unwrap();
        // Leave the work tree matching HEAD.
        repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .unwrap();
        Fixture {
            root,
            commits: vec![c1, c2, c3, side, m1, side2, m2, c4],
        }
    }

    pub fn src(&self) -> PathBuf {
        self.root.path().join("src")
    }

    pub fn evidence(&self) -> PathBuf {
        self.root.path().join("evidence")
    }

    /// Writes a configuration next to the source repository.
    pub fn config(&self, body: &str) -> PathBuf {
        let p = self.root.path().join("cleartrail.yml");
        std::fs::write(&p, body).unwrap();
        p
    }

    pub fn default_config(&self) -> PathBuf {
        self.config("version: 1\nsources:\n  app:\n    type: git\n    path: src\n  policies:\n    type: files\n    path: src/policies\n")
    }
}

/// Runs the binary with a pinned clock and no GitHub Actions environment.
pub fn cleartrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cleartrail"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", NOW.to_string())
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap()
}

/// Runs the binary like [`cleartrail`], with extra environment,
/// and kills it if it has not finished after a minute: a run blocked on a
/// FIFO must fail the test rather than hang the suite. (A hang guard, not
/// a timing assertion: a passing run takes well under a second.)
pub fn cleartrail_guarded(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cleartrail"));
    cmd.args(args)
        .env("SOURCE_DATE_EPOCH", NOW.to_string())
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_ACTIONS")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "cleartrail {args:?} hung (killed after 60 s); stderr so far:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

/// `cleartrail run --config CFG --repo REPO` with extra environment (an
/// API source's credentials and address), hang-guarded.
pub fn run_env(cfg: &Path, repo: &Path, env: &[(&str, &str)]) -> Output {
    cleartrail_guarded(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
        ],
        env,
    )
}

/// `cleartrail COMMAND --config CFG --repo REPO EXTRA...`
pub fn command_with(command: &str, cfg: &Path, repo: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        command,
        "--config",
        cfg.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    cleartrail(&args)
}

/// `cleartrail sync --config CFG --repo <fixture evidence> EXTRA...`
pub fn sync_into(f: &Fixture, cfg: &Path, extra: &[&str]) -> Output {
    command_with("sync", cfg, &f.evidence(), extra)
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file of a commit, path -> bytes.
pub fn tree_files(repo: &Path, rev: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let r = Repository::open(repo).unwrap();
    let tree = r.revparse_single(rev).unwrap().peel_to_tree().unwrap();
    let mut out = std::collections::BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let b = r.find_blob(e.id()).unwrap();
            out.insert(format!("{dir}{}", e.name().unwrap()), b.content().to_vec());
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

pub fn commit_count(repo: &Path, rev: &str) -> usize {
    let r = Repository::open(repo).unwrap();
    let mut w = r.revwalk().unwrap();
    w.push(r.revparse_single(rev).unwrap().id()).unwrap();
    w.count()
}

/// Commits a modified tree onto `branch` directly, as a tamperer would:
/// `new` replaces or adds the file at `path`, `None` deletes it.
pub fn tamper(repo: &Path, branch: &str, path: &str, new: Option<&[u8]>) {
    let r = Repository::open(repo).unwrap();
    let refname = format!("refs/heads/{branch}");
    let head = r
        .find_reference(&refname)
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut idx = git2::Index::new().unwrap();
    idx.read_tree(&head.tree().unwrap()).unwrap();
    match new {
        Some(bytes) => {
            let oid = r.blob(bytes).unwrap();
            // Replace the file, or plant a new one shaped like any other.
            let mut entry = idx
                .get_path(Path::new(path), 0)
                .unwrap_or_else(|| idx.get(0).expect("a non-empty tree"));
            entry.id = oid;
            entry.file_size = bytes.len() as u32;
            entry.path = path.as_bytes().to_vec();
            idx.add(&entry).unwrap();
        }
        None => idx.remove_path(Path::new(path)).unwrap(),
    }
    let tree = r.find_tree(idx.write_tree_to(&r).unwrap()).unwrap();
    let s = sig("Mallory", NOW);
    let c = r.commit(None, &s, &s, "tamper", &tree, &[&head]).unwrap();
    r.reference(&refname, c, true, "tamper").unwrap();
}

/// The path of the artifact file of `kind_dir` (e.g. `evidence/git/commit`)
/// whose object path ends in `tail` (e.g. a commit id), wherever its month
/// shard puts it.
pub fn artifact_path(repo: &Path, rev: &str, kind_dir: &str, tail: &str) -> String {
    let suffix = format!("/{tail}.json");
    let found: Vec<String> = tree_files(repo, rev)
        .into_keys()
        .filter(|p| p.starts_with(&format!("{kind_dir}/")) && p.ends_with(&suffix))
        .collect();
    assert_eq!(found.len(), 1, "artifact {kind_dir}/**{suffix}: {found:?}");
    found.into_iter().next().unwrap()
}

/// `git fsck --full --strict` finds nothing wrong in the repository at
/// `dir` (nothing to check when the folder does not exist: a run killed
/// before creating it).
pub fn fsck(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let out = Command::new("git")
        .args(["fsck", "--full", "--strict", "--no-dangling"])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "git fsck in {}: {text}",
        dir.display()
    );
    for bad in ["error", "warning", "missing", "broken", "mismatch", "bad"] {
        assert!(!text.contains(bad), "git fsck in {}: {text}", dir.display());
    }
}

/// Feeds `stream` to `git fast-import` in the repository `dir`: large
/// fixture histories in a second, instead of a commit at a time.
pub fn fast_import(dir: &Path, stream: &[u8]) {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stream).unwrap();
    assert!(child.wait().unwrap().success(), "git fast-import failed");
}

/// A service account key whose `token_uri` is the mock's, its private
/// key made by ssh-keygen (PKCS#8).
pub fn key_file(dir: &std::path::Path, uri: &str) -> std::path::PathBuf {
    let pem = dir.join("sa");
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q", "-t", "rsa", "-b", "2048", "-m", "PKCS8", "-N", "", "-f",
        ])
        .arg(&pem)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "acme-evidence",
        "private_key_id": "k1",
        "private_key": std::fs::read_to_string(&pem).unwrap(),
        "client_email": "cleartrail@acme-evidence.iam.gserviceaccount.com",
        "client_id": "1",
        "auth_uri": format!("{uri}/auth"),
        "token_uri": format!("{uri}/token"),
    });
    let p = dir.join("key.json");
    std::fs::write(&p, serde_json::to_vec(&key).unwrap()).unwrap();
    p
}

/// `cleartrail verify ARGS --format json`: the findings as (code, path),
/// the exit code checked against them (1 with findings, else 0).
pub fn verify_findings(args: &[&str]) -> std::collections::BTreeSet<(String, String)> {
    let mut all = vec!["verify", "--format", "json"];
    all.extend_from_slice(args);
    let out = cleartrail(&all);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|_| panic!("{}{}", stdout(&out), stderr(&out)));
    let found: std::collections::BTreeSet<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        code(&out),
        if found.is_empty() { 0 } else { 1 },
        "{found:?}"
    );
    found
}

/// Runs git with a fixed identity and dates and no user configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh P-256 key pair made by openssl: the PKCS#8 private key in PEM
/// (its file removed) and the public key in PEM.
pub fn openssl_key(dir: &std::path::Path) -> (String, String) {
    let k = dir.join("signing.key");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        k.to_str().unwrap(),
    ]);
    let p = dir.join("signing.pub");
    run(&[
        "pkey",
        "-in",
        k.to_str().unwrap(),
        "-pubout",
        "-out",
        p.to_str().unwrap(),
    ]);
    let private = std::fs::read_to_string(&k).unwrap();
    std::fs::remove_file(&k).unwrap();
    (private, std::fs::read_to_string(&p).unwrap())
}
