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

fn openssl_key(dir: &std::path::Path) -> (String, String) {
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

fn review(id: u64, login: &str, uid: u64, state: &str, commit: &str, at: &str) -> Value {
    json!({"id": id, "user": {"login": login, "id": uid, "type": "User"}, "state": state,
           "commit_id": commit, "submitted_at": at, "body": ""})
}

async fn setup(reviews: Vec<Value>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("evidence");
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(&ev, &opts).unwrap();
    let base = commit(&repo, &[("README.md", "evidence\n")], "start", T0, &[]);
    let head = commit(
        &repo,
        &[
            ("evidence/git/commit/a.json", "{\"a\":1}\n"),
            ("README.md", "evidence, updated\n"),
        ],
        "cleartrail sync",
        T0 + DAY,
        &[base],
    );
    // Merged with a merge commit; main moves to it.
    commit(
        &repo,
        &[],
        "Merge pull request #7",
        T0 + 2 * DAY,
        &[base, head],
    );
    let (key_pem, public) = openssl_key(dir.path());
    std::fs::write(dir.path().join("signing.pub"), public).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("cleartrail.yml"),
        "version: 1\nsources:\n  policies:\n    type: files\n    path: policies\napprovals:\n  repository: acme/evidence\n  repository_id: 77\n  approvers:\n    users: [bob, cy]\n  required: 1\n  signing: key\n  public_key: signing.pub\n",
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
        let ev = self.dir.path().join("evidence");
        let cfg = self.dir.path().join("cleartrail.yml");
        cleartrail_guarded(
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
                ("GITHUB_API_URL", &self.server.uri()),
                ("GITHUB_TOKEN", TOKEN),
                ("CLEARTRAIL_SIGNING_KEY", &self.key_pem),
            ],
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
