//! `cleartrail approve` in key mode against a local mock of GitHub's REST
//! API: an evidence repository whose default branch merged a pull request,
//! its reviews over two pages, the policy judged, one signed record per
//! approving review committed (the statement exactly the DSSE payload,
//! its subjects every file the pull request added or changed), a re-run
//! that commits nothing, a policy not met that writes nothing, and a key
//! that never shows.

mod common;

use cleartrail::approvals::bundle::{Signed, Signer, Trust};
use common::*;
use git2::Repository;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ghp_NeverPrintThisApproveToken";

struct Setup {
    dir: tempfile::TempDir,
    head: git2::Oid,
    base: git2::Oid,
    key_pem: String,
    server: MockServer,
}

fn review(id: u64, login: &str, uid: u64, state: &str, commit: &str, at: &str) -> Value {
    json!({"id": id, "user": {"login": login, "id": uid, "type": "User"}, "state": state,
           "commit_id": commit, "submitted_at": at, "body": ""})
}

/// `cleartrail approve --pr N` on `repo` with `cfg`, GitHub at `api`, in
/// key mode with `key`.
fn approve_pr(
    repo: &std::path::Path,
    cfg: &std::path::Path,
    api: &str,
    n: &str,
    key: &str,
) -> std::process::Output {
    approve_cmd(
        repo,
        cfg,
        n,
        &[("GITHUB_API_URL", api), ("CLEARTRAIL_SIGNING_KEY", key)],
    )
}

/// `cleartrail approve --pr N` with a GitHub token and `env` beside it.
fn approve_cmd(
    repo: &std::path::Path,
    cfg: &std::path::Path,
    n: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut all = vec![("GITHUB_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    cleartrail_guarded(
        &[
            "approve",
            "--pr",
            n,
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
        ],
        &all,
    )
}

/// A merged pull request `n` from `base` to `head` by ann, and its reviews.
async fn mount_pr(server: &MockServer, n: u64, base: git2::Oid, head: git2::Oid, reviews: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/evidence/pulls/{n}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "number": n, "merged": true,
            "user": {"login": "ann", "id": 1, "type": "User"},
            "head": {"sha": head.to_string()}, "base": {"sha": base.to_string()}
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/evidence/pulls/{n}/reviews")))
        .respond_with(ResponseTemplate::new(200).set_body_json(reviews))
        .mount(server)
        .await;
}

/// A start commit of `base_files`, pull request #7's commit of
/// `head_files` on it, and the merge commit main moves to; (base, head).
fn merged(
    repo: &git2::Repository,
    base_files: &[(&str, &str)],
    head_files: &[(&str, &str)],
) -> (git2::Oid, git2::Oid) {
    let base = commit(repo, base_files, "start", T0, &[]);
    let head = commit(repo, head_files, "cleartrail sync", T0 + DAY, &[base]);
    commit(
        repo,
        &[],
        "Merge pull request #7",
        T0 + 2 * DAY,
        &[base, head],
    );
    (base, head)
}

const KEY_MODE: &str = "  signing: key\n  public_key: signing.pub\n";

async fn setup(reviews: Vec<Value>) -> Setup {
    setup_with(reviews, KEY_MODE).await
}

/// The repository, keys and mock; `signing` is the configuration's
/// signing lines.
async fn setup_with(reviews: Vec<Value>, signing: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("evidence");
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(&ev, &opts).unwrap();
    let (base, head) = merged(
        &repo,
        &[("README.md", "evidence\n")],
        &[
            ("evidence/git/commit/a.json", "{\"a\":1}\n"),
            ("README.md", "evidence, updated\n"),
        ],
    );
    let (key_pem, public) = openssl_key(dir.path());
    std::fs::write(dir.path().join("signing.pub"), public).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("cleartrail.yml"),
        format!("version: 1\nsources:\n  policies:\n    type: files\n    path: policies\napprovals:\n  repository: acme/evidence\n  repository_id: 77\n  approvers:\n    users: [bob, cy]\n  required: 1\n{signing}"),
    )
    .unwrap();
    let server = MockServer::start().await;
    let h = head.to_string();
    Mock::given(method("GET"))
        .and(path("/repos/acme/evidence/pulls/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "number": 7, "merged": true, "state": "closed",
            "user": {"login": "ann", "id": 1, "type": "User"},
            "head": {"sha": h, "ref": "cleartrail/evidence"},
            "base": {"sha": base.to_string(), "ref": "main"},
            "merge_commit_sha": "0".repeat(40)
        })))
        .mount(&server)
        .await;
    let (first, second) = reviews.split_at(reviews.len().min(1));
    Mock::given(method("GET"))
        .and(path("/repos/acme/evidence/pulls/7/reviews"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(second.to_vec()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/evidence/pulls/7/reviews"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    format!(
                        "<{}/repos/acme/evidence/pulls/7/reviews?per_page=100&page=2>; rel=\"next\"",
                        server.uri()
                    )
                    .as_str(),
                )
                .set_body_json(first.to_vec()),
        )
        .mount(&server)
        .await;
    Setup {
        dir,
        head,
        base,
        key_pem,
        server,
    }
}

impl Setup {
    fn approve(&self) -> std::process::Output {
        self.approve_with(&[("CLEARTRAIL_SIGNING_KEY", &self.key_pem)])
    }

    fn approve_with(&self, env: &[(&str, &str)]) -> std::process::Output {
        let uri = self.server.uri();
        let mut all = vec![("GITHUB_API_URL", uri.as_str())];
        all.extend_from_slice(env);
        approve_cmd(
            &self.dir.path().join("evidence"),
            &self.dir.path().join("cleartrail.yml"),
            "7",
            &all,
        )
    }

    fn main_files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        tree_files(&self.dir.path().join("evidence"), "main")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approving_reviews_become_signed_records_once() {
    let s0 = setup(vec![]).await;
    let head = s0.head.to_string();
    let s = setup(vec![
        review(501, "bob", 2, "APPROVED", &head, "2026-03-04T09:00:00Z"),
        review(502, "ann", 1, "APPROVED", &head, "2026-03-04T09:30:00Z"),
        review(503, "cy", 3, "COMMENTED", &head, "2026-03-04T10:00:00Z"),
    ])
    .await;
    // The fixture's commits are pinned, so every setup has the same head.
    assert_eq!(s.head, s0.head);
    let out = s.approve();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let files = s.main_files();
    let record = "approvals/2026/7-501.intoto.json";
    let statement = files
        .get(record)
        .unwrap_or_else(|| panic!("{:?}", files.keys()));
    let bundle = String::from_utf8(files["approvals/2026/7-501.sigstore.json"].clone()).unwrap();
    assert!(
        !files.keys().any(|k| k.contains("7-502")),
        "self-approval recorded"
    );
    let doc: Value = serde_json::from_slice(statement).unwrap();
    let subjects: Vec<(&str, &str)> = doc["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["digest"]["sha256"].as_str().unwrap(),
            )
        })
        .collect();
    let sha = |b: &[u8]| cleartrail::artifact::canonical::sha256_hex(b);
    assert_eq!(
        subjects,
        [
            ("README.md", sha(b"evidence, updated\n").as_str()),
            ("evidence/git/commit/a.json", sha(b"{\"a\":1}\n").as_str())
        ]
    );
    let p = &doc["predicate"];
    assert_eq!(p["repository"], json!({"name": "acme/evidence", "id": 77}));
    assert_eq!(p["pull_request"], 7);
    assert_eq!(p["reviewer"], json!({"login": "bob", "id": 2}));
    assert_eq!(p["author"], json!({"login": "ann", "id": 1}));
    assert_eq!(p["head_commit"], head);
    assert_eq!(p["base_commit"], s.base.to_string());
    assert_eq!(p["commit_reviewed"], head);
    // The bundle verifies with the configured key, and its payload is the
    // committed statement byte for byte.
    let public = std::fs::read_to_string(s.dir.path().join("signing.pub")).unwrap();
    let digest: [u8; 32] = hex_bytes(subjects[0].1);
    let v = Trust::public_good()
        .unwrap()
        .verify(
            &bundle,
            Signed::Sha256(digest),
            &Signer::Key { pem: public },
        )
        .unwrap();
    assert_eq!(&v.payload.unwrap().1, statement);

    // Again: nothing new to record, no commit.
    let commits = commit_count(&s.dir.path().join("evidence"), "main");
    let again = s.approve();
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already recorded: no commit"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        commit_count(&s.dir.path().join("evidence"), "main"),
        commits
    );
    // The key never shows.
    let line = s.key_pem.lines().nth(1).unwrap();
    for o in [&out, &again] {
        assert!(!stdout(o).contains(line) && !stderr(o).contains(line));
        assert!(!stdout(o).contains(TOKEN) && !stderr(o).contains(TOKEN));
    }
    for (p, b) in s.main_files() {
        assert!(!String::from_utf8_lossy(&b).contains(line), "{p}");
    }
}

fn hex_bytes(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_not_met_writes_nothing_and_says_why() {
    let s0 = setup(vec![]).await;
    let head = s0.head.to_string();
    let s = setup(vec![
        review(601, "ann", 1, "APPROVED", &head, "2026-03-04T09:00:00Z"),
        review(
            602,
            "bob",
            2,
            "APPROVED",
            &s0.base.to_string(),
            "2026-03-04T09:10:00Z",
        ),
        review(603, "dan", 4, "APPROVED", &head, "2026-03-04T09:20:00Z"),
    ])
    .await;
    let before = s.main_files();
    let out = s.approve();
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("pull request #7 is not approved: 0 of 1 required approvals"),
        "{text}"
    );
    assert!(
        text.contains("review 601: ann is the pull request's author"),
        "{text}"
    );
    assert!(text.contains("review 602: bob approved commit"), "{text}");
    assert!(
        text.contains("review 603: dan may not approve (approvers: users bob, cy)"),
        "{text}"
    );
    assert_eq!(s.main_files(), before);

    // A key that is not the configured one: refused before any request.
    let other = openssl_key(s0.dir.path()).0;
    let ev = s.dir.path().join("evidence");
    let cfg = s.dir.path().join("cleartrail.yml");
    let out = cleartrail_guarded(
        &[
            "approve",
            "--pr",
            "7",
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            ev.to_str().unwrap(),
        ],
        &[
            ("GITHUB_API_URL", &s.server.uri()),
            ("GITHUB_TOKEN", TOKEN),
            ("CLEARTRAIL_SIGNING_KEY", &other),
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not the one"), "{}", stderr(&out));
}

/// A fakesigstore instance (a GitHub-Actions-shaped OIDC issuer, Fulcio,
/// Rekor v1 and a timestamp authority on loopback), from the folder
/// `CLEARTRAIL_FAKESIGSTORE` names, set up (`./setup.sh`) beforehand.
struct FakeSigstore {
    tool: std::path::PathBuf,
    state: tempfile::TempDir,
    child: std::process::Child,
    instance: Value,
}

impl FakeSigstore {
    fn start(tool: &std::path::Path) -> FakeSigstore {
        let state = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("node")
            .arg(tool.join("fakesigstore.mjs"))
            .args(["serve", "--port-base", "0", "--quiet", "--state"])
            .arg(state.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("node runs fakesigstore");
        let file = state.path().join("instance.json");
        let started = std::time::Instant::now();
        let instance: Value = loop {
            // Written whole once every service listens; read until it parses.
            if let Some(v) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
            {
                break v;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "fakesigstore did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        FakeSigstore {
            tool: tool.to_path_buf(),
            state,
            child,
            instance,
        }
    }

    fn mint(&self, workflow: &str, claims: &[&str]) -> String {
        let mut cmd = std::process::Command::new("node");
        cmd.arg(self.tool.join("fakesigstore.mjs")).args([
            "mint",
            "--repository",
            "acme/evidence",
            "--workflow-path",
            workflow,
        ]);
        for c in claims {
            cmd.args(["--claim", c]);
        }
        let out = cmd.arg("--state").arg(self.state.path()).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn url(&self, k: &str) -> String {
        self.instance[k].as_str().unwrap().to_string()
    }

    /// sigstore-python's `verify identity --offline` of `bundle` over
    /// `subject` for `identity`, with this instance's trust configuration.
    fn python_verifies(
        &self,
        bundle: &std::path::Path,
        subject: &std::path::Path,
        identity: &str,
    ) -> std::process::Output {
        std::process::Command::new(self.tool.join(".venv/bin/sigstore"))
            .arg("--trust-config")
            .arg(self.state.path().join("trust_config.json"))
            .args(["verify", "identity", "--offline", "--bundle"])
            .arg(bundle)
            .args([
                "--cert-identity",
                identity,
                "--cert-oidc-issuer",
                "https://token.actions.githubusercontent.com",
            ])
            .arg(subject)
            .output()
            .unwrap()
    }
}

impl Drop for FakeSigstore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keyless records against a loopback Sigstore: a Fulcio certificate for
/// the approve workflow's token, a Rekor entry, a timestamp; verified by
/// our verifier and independently by sigstore-python, offline. A token of
/// another workflow signs nothing that is committed.
#[tokio::test(flavor = "multi_thread")]
async fn keyless_records_verify_here_and_with_sigstore_python() {
    let Some(tool) = std::env::var_os("CLEARTRAIL_FAKESIGSTORE") else {
        // CI always provides it (.ci/run); elsewhere it is optional.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but CLEARTRAIL_FAKESIGSTORE is not: keyless signing must be exercised in CI"
        );
        eprintln!("CLEARTRAIL_FAKESIGSTORE is not set: keyless signing was not exercised");
        return;
    };
    let tool = std::path::PathBuf::from(tool);
    assert!(
        tool.join("node_modules").is_dir() && tool.join(".venv/bin/sigstore").exists(),
        "CLEARTRAIL_FAKESIGSTORE={} is not a set-up fakesigstore (run its setup.sh)",
        tool.display()
    );
    let fake = FakeSigstore::start(&tool);
    let root = fake.state.path().join("trusted_root.json");
    let signing = format!(
        "  signing: keyless\n  fulcio_url: {}\n  rekor_url: {}\n  tsa_url: {}\n  trusted_root: {}\n",
        fake.url("fulcio_url"),
        fake.url("rekor_url"),
        fake.url("tsa_timestamp_url"),
        root.display()
    );
    let s0 = setup(vec![]).await;
    let head = s0.head.to_string();
    let s = setup_with(
        vec![review(
            701,
            "bob",
            2,
            "APPROVED",
            &head,
            "2026-03-04T09:00:00Z",
        )],
        &signing,
    )
    .await;
    let id =
        "https://github.com/acme/evidence/.github/workflows/cleartrail-approve.yml@refs/heads/main";

    let before = s.main_files();
    // The repository id the instance's tokens carry, pinned as a user
    // pins theirs.
    let token = fake.mint(".github/workflows/cleartrail-approve.yml", &[]);
    let claims: Value = {
        use base64::Engine as _;
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    let repo_id = claims["repository_id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| claims["repository_id"].to_string());
    let cfg = s.dir.path().join("cleartrail.yml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("repository_id: 77", &format!("repository_id: {repo_id}"));
    std::fs::write(&cfg, text).unwrap();

    // A self-hosted runner: the identity is right, the environment is the
    // repository owner's; nothing is committed.
    let hosted = fake.mint(
        ".github/workflows/cleartrail-approve.yml",
        &["runner_environment=self-hosted"],
    );
    let out = s.approve_with(&[("SIGSTORE_ID_TOKEN", &hosted)]);
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("not a GitHub-hosted one"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.main_files(), before);

    // A token of another workflow: Fulcio certifies it, but the record
    // would not verify as the approve workflow, so nothing is committed.
    let wrong = fake.mint(".github/workflows/release.yml", &[]);
    let out = s.approve_with(&[("SIGSTORE_ID_TOKEN", &wrong)]);
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains(&format!("does not verify as {id}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.main_files(), before);

    let out = s.approve_with(&[("SIGSTORE_ID_TOKEN", &token)]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let files = s.main_files();
    let statement = &files["approvals/2026/7-701.intoto.json"];
    let bundle = String::from_utf8(files["approvals/2026/7-701.sigstore.json"].clone()).unwrap();
    assert_eq!(
        files["approvals/trusted_root.json"],
        std::fs::read(&root).unwrap()
    );
    for o in [stdout(&out), stderr(&out)] {
        assert!(!o.contains(&token), "the OIDC token was printed");
    }

    // Our verifier, from the committed root.
    let trust =
        Trust::from_json(std::str::from_utf8(&files["approvals/trusted_root.json"]).unwrap())
            .unwrap();
    let readme = b"evidence, updated\n";
    let v = trust
        .verify(
            &bundle,
            Signed::Bytes(readme),
            &Signer::Keyless {
                issuer: cleartrail::approvals::bundle::ACTIONS_ISSUER.into(),
                identity: id.into(),
            },
        )
        .unwrap();
    assert_eq!(&v.payload.unwrap().1, statement);
    assert_eq!(v.identity.as_deref(), Some(id));
    // And as `verify` checks the records on the branch: no finding.
    let config = cleartrail::config::load_for_reading(&cfg).unwrap();
    let expect =
        cleartrail::approvals::verify::Expect::new(config.approvals.as_ref().unwrap()).unwrap();
    let store = cleartrail::store::Store::open(&s.dir.path().join("evidence")).unwrap();
    let tip = store.resolve("main").unwrap();
    let snapshot = store.snapshot(Some(tip)).unwrap();
    let found =
        cleartrail::approvals::verify::records(&snapshot, store.repo(), Some(&expect)).unwrap();
    assert!(found.is_empty(), "{found:?}");

    // sigstore-python, offline: README.md as approved is a subject.
    let subject = s.dir.path().join("README.md");
    std::fs::write(&subject, readme).unwrap();
    let b = s.dir.path().join("record.sigstore.json");
    std::fs::write(&b, &bundle).unwrap();
    let py = fake.python_verifies(&b, &subject, id);
    assert!(
        py.status.success(),
        "sigstore-python refused: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    // It refuses another identity, and a subject changed by a byte.
    let other = "https://github.com/acme/evidence/.github/workflows/release.yml@refs/heads/main";
    assert!(!fake.python_verifies(&b, &subject, other).status.success());
    std::fs::write(&subject, b"evidence, updated!\n").unwrap();
    assert!(!fake.python_verifies(&b, &subject, id).status.success());
}

/// An evidence branch whose second sync was approved (key mode), with the
/// records committed on it: what `verify` checks and attacks target.
struct Approved {
    f: Fixture,
    cfg: std::path::PathBuf,
    key_pem: String,
    _server: MockServer,
}

const BRANCH: &str = "cleartrail/evidence";

async fn approved() -> Approved {
    let f = Fixture::new();
    let (key_pem, public) = openssl_key(f.root.path());
    std::fs::write(f.root.path().join("signing.pub"), public).unwrap();
    let cfg = f.config("version: 1\nsources:\n  app:\n    type: git\n    path: src\n  policies:\n    type: files\n    path: src/policies\napprovals:\n  repository: acme/evidence\n  repository_id: 77\n  default_branch: cleartrail/evidence\n  approvers:\n    users: [bob]\n  signing: key\n  public_key: signing.pub\n");
    let out = sync_into(&f, &cfg, &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ev = Repository::open(f.evidence()).unwrap();
    let base = ev.refname_to_id(&format!("refs/heads/{BRANCH}")).unwrap();
    std::fs::write(
        f.src().join("policies/vendor-policy.md"),
        POLICY_OK.replace("Access Control", "Vendor"),
    )
    .unwrap();
    let out = sync_into(&f, &cfg, &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let head = ev.refname_to_id(&format!("refs/heads/{BRANCH}")).unwrap();
    assert_ne!(base, head);
    let server = MockServer::start().await;
    let reviews = json!([review(
        801,
        "bob",
        2,
        "APPROVED",
        &head.to_string(),
        "2026-03-05T09:00:00Z"
    )]);
    mount_pr(&server, 7, base, head, reviews).await;
    let out = approve_pr(&f.evidence(), &cfg, &server.uri(), "7", &key_pem);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    Approved {
        f,
        cfg,
        key_pem,
        _server: server,
    }
}

impl Approved {
    /// (code, path) of every finding of `verify` (with `--config`).
    fn verify(&self, with_config: bool) -> std::collections::BTreeSet<(String, String)> {
        let ev = self.f.evidence();
        let mut args = vec!["--repo", ev.to_str().unwrap()];
        if with_config {
            args.extend_from_slice(&["--config", self.cfg.to_str().unwrap()]);
        }
        verify_findings(&args)
    }

    fn file(&self, path: &str) -> Vec<u8> {
        tree_files(&self.f.evidence(), BRANCH).remove(path).unwrap()
    }

    /// A record forged with the right key: `edit` changes the statement.
    fn forge(&self, edit: impl FnOnce(&mut Value)) -> (String, String) {
        let mut doc: Value = serde_json::from_slice(&self.file(RECORD)).unwrap();
        edit(&mut doc);
        let statement: cleartrail::approvals::record::Statement =
            serde_json::from_value(doc).unwrap();
        let bytes = statement.to_bytes();
        let bundle = cleartrail::approvals::bundle::KeySigner::from_pem(&self.key_pem)
            .unwrap()
            .sign_statement(&bytes)
            .unwrap();
        let stem = statement.stem();
        tamper(
            &self.f.evidence(),
            BRANCH,
            &format!("{stem}.intoto.json"),
            Some(&bytes),
        );
        tamper(
            &self.f.evidence(),
            BRANCH,
            &format!("{stem}.sigstore.json"),
            Some(bundle.as_bytes()),
        );
        (
            format!("{stem}.intoto.json"),
            format!("{stem}.sigstore.json"),
        )
    }
}

const RECORD: &str = "approvals/2026/7-801.intoto.json";
const BUNDLE: &str = "approvals/2026/7-801.sigstore.json";

/// Each attack on the records is named by verify, and every approval code
/// is produced by one.
#[tokio::test(flavor = "multi_thread")]
async fn verify_checks_approval_records_and_names_every_attack() {
    let mut produced = std::collections::BTreeSet::new();
    let has = |found: &std::collections::BTreeSet<(String, String)>, code: &str, path: &str| {
        found.contains(&(code.to_string(), path.to_string()))
    };
    {
        let a = approved().await;
        assert_eq!(
            a.verify(true),
            Default::default(),
            "a faithful record verifies"
        );
        // Without the configuration, records cannot be vouched for.
        let found = a.verify(false);
        assert!(
            has(&found, "approval-unverifiable", "approvals"),
            "{found:?}"
        );
        produced.extend(found.into_iter().map(|(c, _)| c));
        // A field of the record edited: no longer what was signed.
        let mut doc: Value = serde_json::from_slice(&a.file(RECORD)).unwrap();
        doc["predicate"]["policy"]["required"] = json!(0);
        let edited = cleartrail::artifact::canonical::to_pretty(&doc);
        tamper(&a.f.evidence(), BRANCH, RECORD, Some(&edited));
        // A file under approvals/ that is nothing of ours.
        tamper(
            &a.f.evidence(),
            BRANCH,
            "approvals/notes.txt",
            Some(b"trust me"),
        );
        let found = a.verify(true);
        assert!(
            has(&found, "approval-payload-mismatch", RECORD),
            "{found:?}"
        );
        assert!(
            has(&found, "approval-invalid", "approvals/notes.txt"),
            "{found:?}"
        );
        produced.extend(found.into_iter().map(|(c, _)| c));
    }
    {
        // A bundle signed by another key, and one missing.
        let a = approved().await;
        let elsewhere = tempfile::tempdir().unwrap();
        let (other, _) = openssl_key(elsewhere.path());
        let forged = cleartrail::approvals::bundle::KeySigner::from_pem(&other)
            .unwrap()
            .sign_statement(&a.file(RECORD))
            .unwrap();
        tamper(&a.f.evidence(), BRANCH, BUNDLE, Some(forged.as_bytes()));
        let found = a.verify(true);
        assert!(has(&found, "approval-signature", BUNDLE), "{found:?}");
        produced.extend(found.into_iter().map(|(c, _)| c));
        tamper(&a.f.evidence(), BRANCH, BUNDLE, None);
        let found = a.verify(true);
        assert!(has(&found, "approval-invalid", RECORD), "{found:?}");
        produced.extend(found.into_iter().map(|(c, _)| c));
    }
    {
        // Signed with the right key but saying what must not pass: the
        // author approving, another repository, a digest never approved.
        let a = approved().await;
        let (self_rec, _) = a.forge(|d| {
            d["predicate"]["review_id"] = json!(802);
            d["predicate"]["reviewer"] = json!({"login": "ann", "id": 1});
        });
        let (other_repo, _) = a.forge(|d| {
            d["predicate"]["review_id"] = json!(803);
            d["predicate"]["repository"] = json!({"name": "mallory/evidence", "id": 666});
        });
        let victim = {
            let doc: Value = serde_json::from_slice(&a.file(RECORD)).unwrap();
            doc["subject"][0]["name"].as_str().unwrap().to_string()
        };
        let _ = a.forge(|d| {
            d["predicate"]["review_id"] = json!(804);
            d["subject"][0]["digest"]["sha256"] = json!("ab".repeat(32));
        });
        // The right digest, but a git blob id of other bytes beside it
        // (what gaps would count as approved).
        let second = {
            let doc: Value = serde_json::from_slice(&a.file(RECORD)).unwrap();
            doc["subject"][1]["name"].as_str().unwrap().to_string()
        };
        let _ = a.forge(|d| {
            d["predicate"]["review_id"] = json!(805);
            d["predicate"]["git_blobs"][second.as_str()] = json!("1".repeat(40));
        });
        let found = a.verify(true);
        assert!(
            has(&found, "approval-subject-mismatch", &second),
            "{found:?}"
        );
        assert!(has(&found, "approval-self", &self_rec), "{found:?}");
        assert!(has(&found, "approval-repository", &other_repo), "{found:?}");
        assert!(
            has(&found, "approval-subject-mismatch", &victim),
            "{found:?}"
        );
        produced.extend(found.into_iter().map(|(c, _)| c));
    }
    let registry: std::collections::BTreeSet<String> = cleartrail::diag::codes::VERIFY
        .iter()
        .map(|(c, _)| c.to_string())
        .filter(|c| c.starts_with("approval-"))
        .collect();
    let never: Vec<&String> = registry.iter().filter(|c| !produced.contains(*c)).collect();
    assert!(
        never.is_empty(),
        "approval codes no attack produces: {never:?}"
    );
}

/// `gaps` with approvals configured: evidence no record approves leaves
/// its controls `unapproved`; once every counted file's version is
/// approved (two pull requests: everything up to the first sync, then the
/// second sync's changes), the statuses are those of a repository without
/// approvals configured.
#[tokio::test(flavor = "multi_thread")]
async fn gaps_reports_evidence_no_record_approves() {
    let f = Fixture::new();
    let (key_pem, public) = openssl_key(f.root.path());
    std::fs::write(f.root.path().join("signing.pub"), public).unwrap();
    let sources = "version: 1\nsources:\n  app:\n    type: git\n    path: src\n  policies:\n    type: files\n    path: src/policies\n";
    let plain = f.root.path().join("plain.yml");
    std::fs::write(&plain, sources).unwrap();
    let cfg = f.config(&format!("{sources}approvals:\n  repository: acme/evidence\n  repository_id: 77\n  default_branch: cleartrail/evidence\n  approvers:\n    users: [bob]\n  signing: key\n  public_key: signing.pub\n"));
    assert_eq!(code(&sync_into(&f, &cfg, &["--period", "2026"])), 0);
    let ev = Repository::open(f.evidence()).unwrap();
    let tip = || ev.refname_to_id(&format!("refs/heads/{BRANCH}")).unwrap();
    let first = tip();
    std::fs::write(
        f.src().join("policies/vendor-policy.md"),
        POLICY_OK.replace("Access Control", "Vendor"),
    )
    .unwrap();
    assert_eq!(code(&sync_into(&f, &cfg, &["--period", "2026"])), 0);
    let second = tip();
    // The first pull request brings everything: its base is an empty tree.
    let empty = {
        let tree = ev
            .find_tree(ev.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let s = git2::Signature::new("Ann", "ann@example.com", &git2::Time::new(T0, 0)).unwrap();
        ev.commit(None, &s, &s, "empty", &tree, &[]).unwrap()
    };
    let statuses = |cfg: &std::path::Path| -> Vec<(String, String)> {
        let out = command_with(
            "gaps",
            cfg,
            &f.evidence(),
            &["--period", "2026", "--format", "json"],
        );
        let rows: Value =
            serde_json::from_str(&stdout(&out)).unwrap_or_else(|_| panic!("{}", stderr(&out)));
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    format!(
                        "{}:{}",
                        r["framework"].as_str().unwrap(),
                        r["id"].as_str().unwrap()
                    ),
                    r["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let without = statuses(&plain);
    let covered: Vec<&(String, String)> = without.iter().filter(|(_, s)| s == "covered").collect();
    assert!(!covered.is_empty(), "the fixture covers some controls");
    assert!(without.iter().all(|(_, s)| s != "unapproved"));
    // A record nobody signed, claiming every file: it counts for nothing.
    {
        let files = tree_files(&f.evidence(), BRANCH);
        let blobs: serde_json::Map<String, Value> = files
            .iter()
            .map(|(p, b)| {
                (
                    p.clone(),
                    json!(
                        git2::Oid::hash_object(git2::ObjectType::Blob, b)
                            .unwrap()
                            .to_string()
                    ),
                )
            })
            .collect();
        let mut forged: Value = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": "https://cleartrail.dev/approval/v1",
            "subject": [{"name": "README.md", "digest": {"sha256": cleartrail::artifact::canonical::sha256_hex(&files["README.md"])}}],
            "predicate": {"repository": {"name": "acme/evidence", "id": 77}, "pull_request": 5,
                "base_commit": first.to_string(), "head_commit": second.to_string(),
                "author": {"login": "ann", "id": 1}, "reviewer": {"login": "bob", "id": 2},
                "review_id": 999, "state": "APPROVED", "commit_reviewed": second.to_string(),
                "submitted_at": "2026-03-05T09:00:00Z",
                "policy": {"approvers": "x", "required": 1, "approving_reviews": [999]},
                "git_blobs": blobs, "tool": "mallory"}
        });
        forged["subject"] = json!(files.iter().map(|(p, b)| json!({"name": p, "digest": {"sha256": cleartrail::artifact::canonical::sha256_hex(b)}})).collect::<Vec<_>>());
        tamper(
            &f.evidence(),
            BRANCH,
            "approvals/2026/5-999.intoto.json",
            Some(&cleartrail::artifact::canonical::to_pretty(&forged)),
        );
        tamper(
            &f.evidence(),
            BRANCH,
            "approvals/2026/5-999.sigstore.json",
            Some(b"{}"),
        );
    }
    // Nothing approved yet: every covered control is unapproved.
    let before = statuses(&cfg);
    for (c, s) in &without {
        let now = &before.iter().find(|(d, _)| d == c).unwrap().1;
        if s == "covered" {
            assert_eq!(now, "unapproved", "{c}");
        } else {
            assert_eq!(now, s, "{c}");
        }
    }
    let server = MockServer::start().await;
    for (n, base, head) in [(6u64, empty, first), (7, first, second)] {
        let reviews = json!([review(
            900 + n,
            "bob",
            2,
            "APPROVED",
            &head.to_string(),
            "2026-03-05T09:00:00Z"
        )]);
        mount_pr(&server, n, base, head, reviews).await;
    }
    let approve = |n: &str| approve_pr(&f.evidence(), &cfg, &server.uri(), n, &key_pem);
    // Only the second pull request approved: what the first sync brought
    // and the second left alone is still unapproved somewhere.
    let out = approve("7");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let half = statuses(&cfg);
    assert!(half.iter().any(|(_, s)| s == "unapproved"), "{half:?}");
    let out = approve("6");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(statuses(&cfg), without, "every counted version approved");
    // The records verify; the forged one is named, and only it.
    let out = cleartrail(&[
        "verify",
        "--repo",
        f.evidence().to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("error[approval-signature]: approvals/2026/5-999.sigstore.json"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stdout(&out).matches("error[").count(),
        1,
        "{}",
        stdout(&out)
    );
}

/// A pull request merged into another branch than the default one, or
/// one not merged, records nothing and says why (exit 2); so does a run
/// from a pull request's own job.
#[tokio::test(flavor = "multi_thread")]
async fn only_merged_pull_requests_into_the_default_branch_from_a_safe_event() {
    let s = setup(vec![]).await;
    let before = s.main_files();
    let other = MockServer::start().await;
    let pr = |merged: bool, base_ref: &str| {
        json!({"number": 7, "merged": merged,
               "user": {"login": "ann", "id": 1, "type": "User"},
               "head": {"sha": s.head.to_string()}, "base": {"sha": s.base.to_string(), "ref": base_ref}})
    };
    Mock::given(method("GET"))
        .and(path("/repos/acme/evidence/pulls/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pr(true, "release/1.x")))
        .mount(&other)
        .await;
    let cfg = s.dir.path().join("cleartrail.yml");
    let ev = s.dir.path().join("evidence");
    let run = |api: &str, extra: &[(&str, &str)]| {
        let mut env = vec![
            ("GITHUB_API_URL", api),
            ("CLEARTRAIL_SIGNING_KEY", s.key_pem.as_str()),
        ];
        env.extend_from_slice(extra);
        approve_cmd(&ev, &cfg, "7", &env)
    };

    let out = run(&other.uri(), &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("merged into `release/1.x`, not the default branch `main`"),
        "{}",
        stderr(&out)
    );

    let unmerged = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/evidence/pulls/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pr(false, "main")))
        .mount(&unmerged)
        .await;
    let out = run(&unmerged.uri(), &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not merged"), "{}", stderr(&out));

    let out = run(
        &s.server.uri(),
        &[("GITHUB_EVENT_NAME", "pull_request_review")],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never from a `pull_request_review` job"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.main_files(), before);
}

/// A pull request that lowers the bar in the configuration it merges is
/// judged by the configuration before it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_is_judged_by_the_policy_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("evidence");
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = git2::Repository::init_opts(&ev, &opts).unwrap();
    let (key_pem, public) = openssl_key(dir.path());
    let cfg = |required: u32| {
        format!(
            "version: 1\nsources:\n  policies:\n    type: files\n    path: policies\napprovals:\n  repository: acme/evidence\n  repository_id: 77\n  approvers:\n    users: [bob, cy]\n  required: {required}\n{KEY_MODE}"
        )
    };
    let (base, head) = merged(
        &repo,
        &[("cleartrail.yml", &cfg(2)), ("signing.pub", &public)],
        &[
            ("cleartrail.yml", &cfg(1)),
            ("evidence/git/commit/a.json", "{\"a\":1}\n"),
        ],
    );
    std::fs::create_dir_all(ev.join("policies")).unwrap();
    let server = MockServer::start().await;
    let h = head.to_string();
    mount_pr(
        &server,
        7,
        base,
        head,
        json!([review(
            501,
            "bob",
            2,
            "APPROVED",
            &h,
            "2026-03-04T09:00:00Z"
        )]),
    )
    .await;
    let uri = server.uri();
    let out = approve_cmd(
        &ev,
        &ev.join("cleartrail.yml"),
        "7",
        &[
            ("GITHUB_API_URL", &uri),
            ("CLEARTRAIL_SIGNING_KEY", &key_pem),
        ],
    );
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("1 of 2 required approvals"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("changed the approval policy in cleartrail.yml"),
        "{}",
        stderr(&out)
    );
    assert!(
        !tree_files(&ev, "main")
            .keys()
            .any(|k| k.starts_with("approvals/"))
    );
}
