//! The git source against fixture repositories built by code, one per
//! merge style, with pinned dates: the exact change population (which
//! commits are changes, how each landed, which pull request and reviewers
//! it names), which changes the checks flag, signatures made with real keys
//! generated here, tags, provenance, collection records, and the read
//! errors that must fail a source rather than remove evidence.
//!
//! Needs `gpg` and `ssh-keygen` on the PATH (the signature tests).

mod common;

use chrono::NaiveDate;
use cleartrail::artifact::Artifact;
use cleartrail::checks::{self, CheckContext};
use cleartrail::connectors::git::GitSource;
use cleartrail::connectors::{self, Limits, QueryResult};
use cleartrail::evidence::Held;
use cleartrail::period::Period;
use git2::{ObjectType, Oid, Repository, RepositoryInitOptions, Signature, Time};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// 2026-03-02T10:00:00Z.
const T0: i64 = 1_772_445_600;
const HOUR: i64 = 3_600;

fn year() -> Period {
    "2026".parse().unwrap()
}

/// A repository whose commits get one-hour-apart pinned times.
struct Fixture {
    dir: tempfile::TempDir,
    repo: Repository,
    t: i64,
    labels: BTreeMap<Oid, &'static str>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(dir.path().join("src"), &opts).unwrap();
        Fixture {
            dir,
            repo,
            t: T0,
            labels: BTreeMap::new(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn sig(&self, name: &str) -> Signature<'static> {
        Signature::new(
            name,
            &format!("{}@example.com", name.to_lowercase()),
            &Time::new(self.t, 0),
        )
        .unwrap()
    }

    fn tree(&self, label: &str) -> Oid {
        let blob = self.repo.blob(label.as_bytes()).unwrap();
        let mut tb = self.repo.treebuilder(None).unwrap();
        tb.insert("file.txt", blob, 0o100644).unwrap();
        tb.write().unwrap()
    }

    /// A commit labelled `label` (for assertions) with pinned times.
    fn commit(&mut self, label: &'static str, message: &str, parents: &[Oid]) -> Oid {
        self.t += HOUR;
        let tree = self.repo.find_tree(self.tree(label)).unwrap();
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| self.repo.find_commit(*p).unwrap())
            .collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        let s = self.sig("Ann");
        let id = self
            .repo
            .commit(None, &s, &s, message, &tree, &refs)
            .unwrap();
        self.labels.insert(id, label);
        self.set_main(id);
        id
    }

    /// A commit signed by `sign` (which gets the commit buffer).
    fn signed(
        &mut self,
        label: &'static str,
        message: &str,
        parent: Oid,
        sign: impl Fn(&[u8]) -> String,
    ) -> Oid {
        self.t += HOUR;
        let tree = self.repo.find_tree(self.tree(label)).unwrap();
        let p = self.repo.find_commit(parent).unwrap();
        let s = self.sig("Bo");
        let buf = self
            .repo
            .commit_create_buffer(&s, &s, message, &tree, &[&p])
            .unwrap();
        let sig = sign(&buf);
        let id = self
            .repo
            .commit_signed(buf.as_str().unwrap(), &sig, None)
            .unwrap();
        self.labels.insert(id, label);
        self.set_main(id);
        id
    }

    fn set_main(&self, id: Oid) {
        self.repo
            .reference("refs/heads/main", id, true, "fixture")
            .unwrap();
    }

    fn source(&self) -> GitSource {
        GitSource::new("app".into(), self.path(), None, year())
    }

    fn label(&self, sha: &str) -> &'static str {
        self.labels
            .get(&Oid::from_str(sha).unwrap())
            .copied()
            .unwrap_or("?")
    }
}

fn collect(source: &GitSource) -> Result<Vec<QueryResult>, connectors::ConnectorError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(connectors::collect(
            source,
            Limits::default(),
            chrono::Utc::now,
            &BTreeMap::new(),
        ))
}

fn artifacts(results: &[QueryResult]) -> Vec<&Artifact> {
    results.iter().flat_map(|r| r.items.iter()).collect()
}

fn of_kind<'a>(results: &'a [QueryResult], kind: &str) -> Vec<&'a Artifact> {
    artifacts(results)
        .into_iter()
        .filter(|a| a.kind == kind)
        .collect()
}

/// An artifact as the checks see it once held on the evidence branch.
fn held(a: &Artifact) -> Held {
    let (doc, _) = a.to_document();
    Held::from_document(a.json_path(), doc, &cleartrail::evidence::Keep::All).unwrap()
}

/// The labels of the changes a check flags, sorted.
fn flagged(f: &Fixture, results: &[QueryResult], code: &str) -> Vec<&'static str> {
    let held: Vec<Held> = artifacts(results).into_iter().map(held).collect();
    let severities = BTreeMap::new();
    let period = year();
    let cx = CheckContext {
        as_of: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        now: chrono::DateTime::from_timestamp(1_798_761_599, 0).unwrap(),
        period: &period,
        git_sources: vec!["app".into()],
        alert_sla: &BTreeMap::new(),
        tickets: &Default::default(),
        git_repos: &BTreeMap::new(),
        severities: &severities,
    };
    let result = checks::run(&held, &cx)
        .into_iter()
        .find(|r| r.code == code)
        .unwrap_or_else(|| panic!("no check {code}"));
    let mut out: Vec<&'static str> = result
        .exceptions
        .iter()
        .map(|e| {
            let sha = e.artifact.rsplit('/').next().unwrap();
            f.label(sha)
        })
        .collect();
    out.sort();
    out
}

/// (label, change_type, pull_request, reviewers) of every change, by label.
fn population(f: &Fixture, results: &[QueryResult]) -> Vec<(&'static str, String, Value, Value)> {
    let mut out: Vec<_> = of_kind(results, "change")
        .into_iter()
        .map(|a| {
            let c = &a.content;
            (
                f.label(c["sha"].as_str().unwrap()),
                c["change_type"].as_str().unwrap().to_string(),
                c["pull_request"].clone(),
                c["reviewers"].clone(),
            )
        })
        .collect();
    out.sort_by_key(|r| r.0);
    out
}

fn commit_labels(f: &Fixture, results: &[QueryResult]) -> Vec<(&'static str, bool)> {
    let mut out: Vec<_> = of_kind(results, "commit")
        .into_iter()
        .map(|a| {
            (
                f.label(a.content["sha"].as_str().unwrap()),
                a.content["first_parent"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn row(
    label: &'static str,
    change_type: &str,
    pr: Value,
    reviewers: &[&str],
) -> (&'static str, String, Value, Value) {
    (label, change_type.to_string(), pr, json!(reviewers))
}

#[test]
fn github_merge_commits_and_local_merges() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0-initial", "Initial commit", &[]);
    let f1 = f.commit("f1-side", "Add feature", &[c0]);
    let f2 = f.commit("f2-side", "Polish feature", &[f1]);
    let m1 = f.commit(
        "m1-pr",
        "Merge pull request #1 from org/feature\n\nAdd feature\n",
        &[c0, f2],
    );
    let d1 = f.commit("d1-direct", "Fix typo on main", &[m1]);
    let h1 = f.commit("h1-side", "Hotfix", &[d1]);
    f.commit("m2-local", "Merge branch 'hotfix'", &[d1, h1]);
    let r = collect(&f.source()).unwrap();
    assert_eq!(
        population(&f, &r),
        [
            row("c0-initial", "direct", Value::Null, &[]),
            row("d1-direct", "direct", Value::Null, &[]),
            row(
                "m1-pr",
                "merge",
                json!({"system": "github", "number": 1}),
                &[]
            ),
            row("m2-local", "direct", Value::Null, &[]),
        ]
    );
    assert_eq!(
        commit_labels(&f, &r),
        [
            ("c0-initial", true),
            ("d1-direct", true),
            ("f1-side", false),
            ("f2-side", false),
            ("h1-side", false),
            ("m1-pr", true),
            ("m2-local", true),
        ]
    );
    assert_eq!(
        flagged(&f, &r, "change-without-review-trace"),
        ["c0-initial", "d1-direct", "m2-local"]
    );
    // Side-branch commits are not changes: only the four unsigned changes.
    assert_eq!(
        flagged(&f, &r, "commit-unsigned"),
        ["c0-initial", "d1-direct", "m1-pr", "m2-local"]
    );
    let m1_change = of_kind(&r, "change")
        .into_iter()
        .find(|a| a.content["sha"] == m1.to_string())
        .unwrap();
    assert_eq!(
        m1_change.content["review_trace"],
        json!({"kind": "pull-request-reference", "text": "Merge pull request #1 from org/feature"})
    );
}

#[test]
fn squash_merges_and_a_merge_queue_with_direct_pushes() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0-initial", "Initial commit (#1)", &[]);
    let s1 = f.commit("s1-squash", "Add parser (#10)\n\n* wip\n* fix\n", &[c0]);
    let d1 = f.commit("d1-direct", "Bump version to 1.2", &[s1]);
    let q1 = f.commit("q1-queue-side", "Add lexer", &[d1]);
    let mq = f.commit("mq-queue", "Add lexer (#11)", &[d1, q1]);
    let d2 = f.commit("d2-direct", "Revert \"Add lexer (#11)\"", &[mq]);
    f.commit("s2-squash", "Fix (#12) in a sentence is no PR (#13)", &[d2]);
    let r = collect(&f.source()).unwrap();
    let gh = |n: u64| json!({"system": "github", "number": n});
    assert_eq!(
        population(&f, &r),
        [
            row("c0-initial", "squash", gh(1), &[]),
            row("d1-direct", "direct", Value::Null, &[]),
            row("d2-direct", "direct", Value::Null, &[]),
            row("mq-queue", "merge", gh(11), &[]),
            row("s1-squash", "squash", gh(10), &[]),
            row("s2-squash", "squash", gh(13), &[]),
        ]
    );
    assert_eq!(
        flagged(&f, &r, "change-without-review-trace"),
        ["d1-direct", "d2-direct"]
    );
}

#[test]
fn bors_homu_and_bors_ng_merges() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0-initial", "Initial commit", &[]);
    let p1 = f.commit("p1-side", "Speed up resolver", &[c0]);
    let b1 = f.commit(
        "b1-homu",
        "Auto merge of #13399 - user:fast-resolver, r=alice\n\nSpeed up resolver\n",
        &[c0, p1],
    );
    let r1 = f.commit("r1-side", "Fix docs", &[b1]);
    let rm = f.commit(
        "rm-rollup-side",
        "Rollup merge of #200 - u:docs, r=carol\n\nFix docs\n",
        &[b1, r1],
    );
    let b2 = f.commit(
        "b2-rollup",
        "Auto merge of #201 - bors:rollup-x, r=alice,bob\n\nRollup of 1 pull request\n",
        &[b1, rm],
    );
    let n1 = f.commit("n1-side", "Fix a", &[b2]);
    let ng = f.commit(
        "ng-bors-ng",
        "Merge #7 #9\n\n7: Fix a r=dave a=erin\n\n9: Fix b r=frank a=erin\n\nCo-authored-by: Erin <erin@example.com>\n",
        &[b2, n1],
    );
    f.commit("d1-direct", "Update lockfile", &[ng]);
    let r = collect(&f.source()).unwrap();
    let bors = |n: u64| json!({"system": "bors", "number": n});
    assert_eq!(
        population(&f, &r),
        [
            row("b1-homu", "merge", bors(13399), &["alice"]),
            row("b2-rollup", "merge", bors(201), &["alice", "bob"]),
            row("c0-initial", "direct", Value::Null, &[]),
            row("d1-direct", "direct", Value::Null, &[]),
            row("ng-bors-ng", "merge", bors(7), &["dave", "frank"]),
        ]
    );
    assert_eq!(
        flagged(&f, &r, "change-without-review-trace"),
        ["c0-initial", "d1-direct"]
    );
    let b1c = of_kind(&r, "change")
        .into_iter()
        .find(|a| a.content["sha"] == b1.to_string())
        .unwrap();
    assert_eq!(b1c.content["review_trace"]["kind"], "bors-approval");
}

#[test]
fn gitlab_bitbucket_gerrit_and_reviewer_trailers() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0-initial", "Initial commit", &[]);
    let g1 = f.commit("g1-side", "Feature", &[c0]);
    let gl = f.commit(
        "gl-gitlab",
        "Merge branch 'feat' into 'main'\n\nFeature\n\nSee merge request group/sub/project!17\n",
        &[c0, g1],
    );
    let k1 = f.commit("k1-side", "Other feature", &[gl]);
    let bb = f.commit(
        "bb-bitbucket",
        "Merged in feature/x (pull request #5)\n\nOther feature\n\nApproved-by: Fay <fay@example.com>\n",
        &[gl, k1],
    );
    let gr = f.commit(
        "gr-gerrit",
        "Fix crash\n\nLong explanation.\n\nChange-Id: I0123456789abcdef0123456789abcdef01234567\nReviewed-on: https://review.example.org/c/project/+/4711\nReviewed-by: Gil <gil@example.com>\n",
        &[bb],
    );
    let ci = f.commit(
        "ci-change-id",
        "Tidy\n\nChange-Id: Iaaaabbbbccccddddeeeeffff0000111122223333\n",
        &[gr],
    );
    let rb = f.commit(
        "rb-reviewed-by",
        "Apply patch\n\nSigned-off-by: Hal <hal@example.com>\nReviewed-by: Ivy <ivy@example.com>\n",
        &[ci],
    );
    f.commit(
        "pr-prose",
        "Tweak\n\nReviewed-by: nobody, this line sits in prose\nthat goes on and on, so git reads no trailer here.\n",
        &[rb],
    );
    let r = collect(&f.source()).unwrap();
    assert_eq!(
        population(&f, &r),
        [
            row(
                "bb-bitbucket",
                "merge",
                json!({"system": "bitbucket", "number": 5}),
                &["Fay <fay@example.com>"]
            ),
            row("c0-initial", "direct", Value::Null, &[]),
            row(
                "ci-change-id",
                "squash",
                json!({"system": "gerrit", "ref": "Iaaaabbbbccccddddeeeeffff0000111122223333"}),
                &[]
            ),
            row(
                "gl-gitlab",
                "merge",
                json!({"system": "gitlab", "number": 17, "ref": "group/sub/project!17"}),
                &[]
            ),
            row(
                "gr-gerrit",
                "squash",
                json!({"system": "gerrit", "number": 4711, "ref": "https://review.example.org/c/project/+/4711"}),
                &["Gil <gil@example.com>"]
            ),
            row("pr-prose", "direct", Value::Null, &[]),
            row(
                "rb-reviewed-by",
                "squash",
                Value::Null,
                &["Ivy <ivy@example.com>"]
            ),
        ]
    );
    assert_eq!(
        flagged(&f, &r, "change-without-review-trace"),
        ["c0-initial", "pr-prose"]
    );
    let traces: BTreeMap<&str, String> = of_kind(&r, "change")
        .into_iter()
        .map(|a| {
            (
                f.label(a.content["sha"].as_str().unwrap()),
                a.content["review_trace"]["kind"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(traces["gr-gerrit"], "reviewed-by-trailer");
    assert_eq!(traces["ci-change-id"], "gerrit-change-id");
    assert_eq!(traces["gl-gitlab"], "pull-request-reference");
    assert_eq!(traces["bb-bitbucket"], "approved-by-trailer");
}

// ---- signatures ----------------------------------------------------------

fn run(cmd: &mut Command, stdin: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (gpg and ssh-keygen must be installed)"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A throwaway GnuPG home with one passphrase-less signing key; its agent
/// is stopped when dropped.
struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn new(home: PathBuf, uid: &str) -> Self {
        std::fs::create_dir_all(&home).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        run(
            Command::new("gpg")
                .arg("--homedir")
                .arg(&home)
                .args(["--batch", "--passphrase", "", "--quick-gen-key", uid])
                .args(["ed25519", "sign", "never"]),
            b"",
        );
        Gpg { home }
    }

    fn sign(&self, data: &[u8]) -> String {
        let out = run(
            Command::new("gpg").arg("--homedir").arg(&self.home).args([
                "--batch",
                "--armor",
                "--detach-sign",
            ]),
            data,
        );
        String::from_utf8(out).unwrap()
    }

    fn export(&self, to: &Path) {
        let out = run(
            Command::new("gpg")
                .arg("--homedir")
                .arg(&self.home)
                .args(["--batch", "--armor", "--export"]),
            b"",
        );
        std::fs::write(to, out).unwrap();
    }

    fn fingerprint(&self) -> String {
        let out = run(
            Command::new("gpg").arg("--homedir").arg(&self.home).args([
                "--batch",
                "--with-colons",
                "--list-keys",
            ]),
            b"",
        );
        String::from_utf8(out)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .unwrap()
            .trim_end_matches(':')
            .to_string()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "all"])
            .status();
    }
}

struct SshKey {
    file: PathBuf,
}

impl SshKey {
    fn new(file: PathBuf, comment: &str) -> Self {
        run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(&file),
            b"",
        );
        SshKey { file }
    }

    fn sign(&self, data: &[u8]) -> String {
        let out = run(
            Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "git", "-f"])
                .arg(&self.file),
            data,
        );
        String::from_utf8(out).unwrap()
    }

    fn public(&self) -> String {
        std::fs::read_to_string(self.file.with_extension("pub")).unwrap()
    }
}

/// A signature shaped like GitHub's web-flow: an OpenPGP v4 signature
/// packet whose issuer key id is web-flow's. The signature values are
/// junk (GitHub's private key is not ours), so it can never verify.
fn web_flow_signature() -> String {
    let issuer = [0xB5u8, 0x69, 0x0E, 0xEE, 0xBB, 0x95, 0x21, 0x94];
    let mut body = vec![4u8, 0, 22, 8, 0, 0];
    let mut unhashed = vec![9u8, 16];
    unhashed.extend(issuer);
    body.extend((unhashed.len() as u16).to_be_bytes());
    body.extend(&unhashed);
    body.extend([0xAB, 0xCD, 0x00, 0x08, 0xFF]);
    let mut packet = vec![0xC2, body.len() as u8];
    packet.extend(&body);
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in packet.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    format!("-----BEGIN PGP SIGNATURE-----\n\n{b64}\n-----END PGP SIGNATURE-----\n")
}

#[test]
fn gpg_ssh_and_web_flow_signatures_are_told_apart_and_verified() {
    let mut f = Fixture::new();
    let keys = f.dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let alice_gpg = Gpg::new(keys.join("gnupg-alice"), "Alice <alice@example.com>");
    let mallory_gpg = Gpg::new(keys.join("gnupg-mallory"), "Mallory <mallory@example.com>");
    let alice_ssh = SshKey::new(keys.join("alice_ed25519"), "alice");
    let mallory_ssh = SshKey::new(keys.join("mallory_ed25519"), "mallory");
    let keyring = keys.join("trusted.asc");
    alice_gpg.export(&keyring);
    let allowed = keys.join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("alice@example.com {}", alice_ssh.public()),
    )
    .unwrap();

    let c0 = f.commit("c0-unsigned", "Initial commit", &[]);
    let g1 = f.signed("g1-gpg-alice", "Signed by Alice (#1)", c0, |b| {
        alice_gpg.sign(b)
    });
    let g2 = f.signed("g2-gpg-mallory", "Signed by Mallory (#2)", g1, |b| {
        mallory_gpg.sign(b)
    });
    let s1 = f.signed("s1-ssh-alice", "SSH by Alice (#3)", g2, |b| {
        alice_ssh.sign(b)
    });
    let s2 = f.signed("s2-ssh-mallory", "SSH by Mallory (#4)", s1, |b| {
        mallory_ssh.sign(b)
    });
    let w1 = f.signed("w1-web-flow", "Merged on the web (#5)", s2, |_| {
        web_flow_signature()
    });
    let side = f.commit("x1-side-unsigned", "Side work", &[w1]);
    f.commit("m1-merge", "Merge pull request #6 from o/side", &[w1, side]);

    // No keys configured: kinds and keys are read, nothing is verified.
    let r = collect(&f.source()).unwrap();
    let sigs = |r: &[QueryResult]| -> BTreeMap<&'static str, Value> {
        of_kind(r, "change")
            .into_iter()
            .map(|a| {
                (
                    f.label(a.content["sha"].as_str().unwrap()),
                    a.content["signature"].clone(),
                )
            })
            .collect()
    };
    let plain = sigs(&r);
    assert_eq!(plain["c0-unsigned"]["type"], Value::Null);
    assert_eq!(plain["g1-gpg-alice"]["type"], "gpg");
    assert_eq!(plain["g1-gpg-alice"]["key"], alice_gpg.fingerprint());
    assert_eq!(plain["g1-gpg-alice"]["status"], "unknown");
    assert_eq!(plain["g1-gpg-alice"]["forge"], false);
    assert_eq!(plain["s1-ssh-alice"]["type"], "ssh");
    // The key is the fingerprint `ssh-keygen -l` prints for it.
    let listed = run(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(alice_ssh.file.with_extension("pub")),
        b"",
    );
    let listed = String::from_utf8(listed).unwrap();
    assert_eq!(
        Some(plain["s1-ssh-alice"]["key"].as_str().unwrap()),
        listed.split_whitespace().nth(1)
    );
    assert_eq!(plain["w1-web-flow"]["type"], "gpg");
    assert_eq!(plain["w1-web-flow"]["key"], "B5690EEEBB952194");
    assert_eq!(plain["w1-web-flow"]["forge"], true);
    assert_eq!(plain["w1-web-flow"]["signer"], "GitHub (web-flow)");
    assert_eq!(
        flagged(&f, &r, "commit-unsigned"),
        ["c0-unsigned", "m1-merge"]
    );
    // Nothing could be checked, so nothing is in that population.
    assert!(flagged(&f, &r, "change-signature-unverified").is_empty());

    // Keys configured: Alice's verify, Mallory's and web-flow's do not.
    let src = f
        .source()
        .with_keys(Some(allowed.clone()), Some(keyring.clone()));
    let r = collect(&src).unwrap();
    let checked = sigs(&r);
    let status = |l: &str| checked[l]["status"].as_str().unwrap().to_string();
    assert_eq!(status("g1-gpg-alice"), "verified");
    assert_eq!(
        checked["g1-gpg-alice"]["signer"],
        "Alice <alice@example.com>"
    );
    assert_eq!(status("g2-gpg-mallory"), "unverified");
    assert_eq!(status("s1-ssh-alice"), "verified");
    assert_eq!(checked["s1-ssh-alice"]["signer"], "alice@example.com");
    assert_eq!(status("s2-ssh-mallory"), "unverified");
    assert_eq!(status("w1-web-flow"), "unverified");
    assert_eq!(checked["c0-unsigned"]["status"], Value::Null);
    assert_eq!(
        flagged(&f, &r, "change-signature-unverified"),
        ["g2-gpg-mallory", "s2-ssh-mallory", "w1-web-flow"]
    );
    assert_eq!(
        flagged(&f, &r, "commit-unsigned"),
        ["c0-unsigned", "m1-merge"]
    );
    // The side commit is collected as a commit with its facts, not a change.
    let side_commit = of_kind(&r, "commit")
        .into_iter()
        .find(|a| a.content["sha"] == side.to_string())
        .unwrap();
    assert_eq!(side_commit.content["first_parent"], false);
    assert_eq!(side_commit.content["signature"]["type"], Value::Null);

    // A signed annotated tag: tag object id, target and a verified
    // signature; tags dated outside the period are not asked about.
    f.t += HOUR;
    let tagger = f.sig("Alice");
    let body = format!(
        "object {w1}\ntype commit\ntag v1.0\ntagger Alice <alice@example.com> {} +0000\n\nRelease 1.0\n",
        f.t
    );
    let sig = alice_ssh.sign(body.as_bytes());
    let tag_id = f
        .repo
        .odb()
        .unwrap()
        .write(ObjectType::Tag, format!("{body}{sig}").as_bytes())
        .unwrap();
    f.repo
        .reference("refs/tags/v1.0", tag_id, false, "fixture")
        .unwrap();
    f.repo
        .tag_lightweight("light", &f.repo.find_object(g1, None).unwrap(), false)
        .unwrap();
    // 2025: before the period.
    let old = Signature::new(
        "Alice",
        "alice@example.com",
        &Time::new(T0 - 400 * 86_400, 0),
    )
    .unwrap();
    f.repo
        .tag(
            "v0.9",
            &f.repo.find_object(c0, None).unwrap(),
            &old,
            "Old",
            false,
        )
        .unwrap();
    drop(tagger);
    let blob = f.repo.blob(b"not a release").unwrap();
    f.repo
        .tag_lightweight("a-blob", &f.repo.find_object(blob, None).unwrap(), false)
        .unwrap();
    let r = collect(&src).unwrap();
    let tag_query = r.iter().find(|q| q.query.id == "tags").unwrap();
    assert_eq!(tag_query.skipped.len(), 1);
    assert_eq!(tag_query.skipped[0].path, "refs/tags/a-blob");
    assert_eq!(tag_query.skipped[0].reason, "names a blob, not a commit");
    let mut tags: Vec<(String, Value)> = of_kind(&r, "tag")
        .into_iter()
        .map(|a| {
            (
                a.content["name"].as_str().unwrap().to_string(),
                a.content.clone(),
            )
        })
        .collect();
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = tags.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, ["light", "v1.0"]);
    let v1 = &tags[1].1;
    assert_eq!(v1["tag_object"], tag_id.to_string());
    assert_eq!(v1["target"], w1.to_string());
    assert_eq!(v1["message"], "Release 1.0\n");
    assert_eq!(v1["signature"]["type"], "ssh");
    assert_eq!(v1["signature"]["status"], "verified");
    assert_eq!(tags[0].1["tag_object"], Value::Null);
    assert_eq!(tags[0].1["target"], g1.to_string());
}

// ---- provenance and collection records -----------------------------------

#[test]
fn no_local_path_in_any_artifact_and_secrets_stay_out_of_urls() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0", "Initial commit", &[]);
    f.repo
        .tag_lightweight("v1", &f.repo.find_object(c0, None).unwrap(), false)
        .unwrap();
    let r = collect(&f.source()).unwrap();
    let local = f.dir.path().canonicalize().unwrap().display().to_string();
    let tmp = f.dir.path().display().to_string();
    for a in artifacts(&r) {
        let (doc, _) = a.to_document();
        let text = doc.to_string();
        assert!(!text.contains(&local) && !text.contains(&tmp), "{text}");
        assert!(a.url.starts_with("local:app/"), "{}", a.url);
    }
    let urls: Vec<&str> = artifacts(&r).iter().map(|a| a.url.as_str()).collect();
    assert!(
        urls.contains(&format!("local:app/commit/{c0}").as_str()),
        "{urls:?}"
    );
    assert!(urls.contains(&"local:app/tag/v1"), "{urls:?}");

    f.repo
        .remote(
            "origin",
            "https://x-access-token:SECRET9@github.com/o/r.git;tok=SECRET9",
        )
        .unwrap();
    let r = collect(&f.source()).unwrap();
    for a in artifacts(&r) {
        let (doc, _) = a.to_document();
        assert!(!doc.to_string().contains("SECRET9"), "{doc}");
        assert!(a.url.starts_with("https://github.com/o/r/"), "{}", a.url);
    }
}

#[test]
fn collection_records_pin_the_tip_branch_and_period_dates() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0", "Initial commit", &[]);
    let tip = f.commit("c1", "Second", &[c0]);
    let period: Period = "2026-Q1".parse().unwrap();
    let src = GitSource::new("app".into(), f.path(), None, period);
    let r = collect(&src).unwrap();
    let history = r.iter().find(|q| q.query.id == "history").unwrap();
    assert_eq!(history.query.kinds, ["change", "commit"]);
    assert_eq!(history.query.filters["tip"], tip.to_string());
    assert_eq!(history.query.filters["branch"], "main");
    assert_eq!(history.query.filters["period_start"], "2026-01-01");
    assert_eq!(history.query.filters["period_end"], "2026-03-31");
    assert!(
        history
            .query
            .description
            .starts_with(&format!("first-parent history of main at {tip}")),
        "{}",
        history.query.description
    );
    let codeowners = r.iter().find(|q| q.query.id == "codeowners").unwrap();
    assert_eq!(codeowners.query.filters["tip"], tip.to_string());
    // Artifacts name the query by its stable label (stamped by the
    // driver), never the tip: a new commit on the branch must not rewrite
    // every held artifact.
    assert!(
        history.items.iter().all(|a| a.query == "app/history"),
        "{:?}",
        history.items[0].query
    );
}

// ---- robustness ------------------------------------------------------------

#[test]
fn a_missing_object_fails_the_source_naming_it() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0", "Initial commit", &[]);
    let side = f.commit("s1", "Side", &[c0]);
    let c1 = f.commit("c1", "Main", &[c0]);
    f.commit("m1", "Merge pull request #2 from o/side", &[c1, side]);
    let hex = side.to_string();
    let loose = f
        .path()
        .join(".git/objects")
        .join(&hex[..2])
        .join(&hex[2..]);
    std::fs::remove_file(&loose).unwrap();
    let err = collect(&f.source()).unwrap_err().to_string();
    assert!(err.contains(&hex), "{err}");
}

#[test]
fn an_unreadable_object_fails_the_source_naming_it() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0", "Initial commit", &[]);
    let c1 = f.commit("c1", "Second", &[c0]);
    f.commit("c2", "Third", &[c1]);
    let hex = c1.to_string();
    let loose = f
        .path()
        .join(".git/objects")
        .join(&hex[..2])
        .join(&hex[2..]);
    // A damaged object file: present, but not readable as an object.
    std::fs::write(&loose, b"not zlib at all").unwrap();
    let err = collect(&f.source()).unwrap_err().to_string();
    assert!(err.contains(&hex), "{err}");
}

#[test]
fn a_configured_branch_that_does_not_exist_fails_the_source() {
    let mut f = Fixture::new();
    f.commit("c0", "Initial commit", &[]);
    let src = GitSource::new("app".into(), f.path(), Some("release".into()), year());
    let err = collect(&src).unwrap_err().to_string();
    assert!(err.contains("branch `release` not found"), "{err}");
}

#[test]
fn two_collections_of_one_state_are_identical() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0", "Initial commit", &[]);
    let s1 = f.commit("s1", "Side", &[c0]);
    let c1 = f.commit("c1", "Main", &[c0]);
    let tip = f.commit("m1", "Merge pull request #2 from o/side", &[c1, s1]);
    let docs = |r: &[QueryResult]| -> Vec<Vec<u8>> {
        artifacts(r).iter().map(|a| a.to_bytes().0).collect()
    };
    let first = docs(&collect(&f.source()).unwrap());
    let second = docs(&collect(&f.source()).unwrap());
    // Three changes (c0, c1, m1) and four commits.
    assert_eq!(first.len(), 7);
    assert_eq!(first, second);
    // A new commit adds its own artifacts and leaves every other byte alone.
    f.commit("c2", "Later", &[tip]);
    let third = docs(&collect(&f.source()).unwrap());
    assert_eq!(third.len(), 9);
    assert!(first.iter().all(|d| third.contains(d)));
}

#[test]
fn a_shallow_clone_is_refused() {
    let mut f = Fixture::new();
    let c0 = f.commit("c0", "Initial commit", &[]);
    let c1 = f.commit("c1", "Second", &[c0]);
    std::fs::write(f.path().join(".git/shallow"), format!("{c1}\n")).unwrap();
    let err = collect(&f.source()).unwrap_err().to_string();
    assert!(err.contains("shallow clone"), "{err}");
    assert!(err.contains("git fetch --unshallow"), "{err}");
}

#[test]
fn an_empty_repository_yields_nothing_and_says_so() {
    let f = Fixture::new();
    let r = collect(&f.source()).unwrap();
    assert!(artifacts(&r).is_empty());
    let history = r.iter().find(|q| q.query.id == "history").unwrap();
    assert_eq!(
        history.query.description,
        "first-parent history of main: the branch has no commits"
    );
    assert_eq!(
        history.query.filters["tip"],
        "none: the branch has no commits"
    );
}

#[test]
fn a_latin1_commit_message_is_decoded_by_its_encoding_header() {
    let f = Fixture::new();
    let tree = f.tree("x");
    let raw = [
        format!(
            "tree {tree}\nauthor Jos\u{e9} <jose@example.com> {T0} +0000\ncommitter Jos\u{e9} <jose@example.com> {T0} +0000\nencoding ISO-8859-1\n\n"
        )
        .replace('\u{e9}', "\u{1}")
        .into_bytes(),
        b"Caf\xe9 au lait\n".to_vec(),
    ]
    .concat()
    .into_iter()
    .map(|b| if b == 1 { 0xe9 } else { b })
    .collect::<Vec<u8>>();
    let id = f
        .repo
        .odb()
        .unwrap()
        .write(ObjectType::Commit, &raw)
        .unwrap();
    f.set_main(id);
    let r = collect(&f.source()).unwrap();
    let change = &of_kind(&r, "change")[0].content;
    assert_eq!(change["summary"], "Caf\u{e9} au lait");
    assert_eq!(change["author"]["name"], "Jos\u{e9}");
    assert_eq!(change["encoding"], "ISO-8859-1");
}

#[test]
fn key_files_named_in_the_config_reach_the_source() {
    let mut f = Fixture::new();
    let key = SshKey::new(f.dir.path().join("alice_ed25519"), "alice");
    std::fs::create_dir(f.dir.path().join("keys")).unwrap();
    std::fs::write(
        f.dir.path().join("keys/allowed_signers"),
        format!("alice@example.com {}", key.public()),
    )
    .unwrap();
    let c0 = f.commit("c0", "Initial commit", &[]);
    f.signed("s1", "Signed (#1)", c0, |b| key.sign(b));
    let cfg = cleartrail::config::load_str(
        &f.dir.path().join("cleartrail.yml"),
        "version: 1\nperiod: 2026\nsources:\n  app:\n    type: git\n    path: src\n    allowed_signers: keys/allowed_signers\n",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let source = rt
        .block_on(connectors::connect(
            &cfg.sources[0],
            &year(),
            &BTreeMap::new(),
        ))
        .unwrap();
    let r = rt
        .block_on(connectors::collect(
            source.as_ref(),
            Limits::default(),
            chrono::Utc::now,
            &BTreeMap::new(),
        ))
        .unwrap();
    let signed = of_kind(&r, "change")
        .into_iter()
        .find(|a| a.title == "Signed (#1)")
        .unwrap();
    assert_eq!(signed.content["signature"]["status"], "verified");
    assert_eq!(signed.content["signature"]["signer"], "alice@example.com");
}

/// A history longer than one page (2,000 commits) comes out in pages,
/// newest first across the page boundary, each commit exactly once, and
/// the same as a run that saved nothing.
#[test]
fn a_long_history_comes_in_pages_with_every_commit_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long");
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    Repository::init_opts(&src, &opts).unwrap();
    // 2,500 commits through fast-import: 2026-01-01 on, an hour apart.
    let mut stream = String::new();
    for i in 0..2500u64 {
        let t = 1_767_225_600 + i * 3600;
        let msg = format!("Change {i} (#{i})\n");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter Dev <dev@example.com> {t} +0000\ndata {}\n{msg}",
            msg.len()
        ));
        stream.push_str(&format!(
            "M 100644 inline f.txt\ndata {}\n{i}\n\n",
            format!("{i}\n").len()
        ));
    }
    common::fast_import(&src, stream.as_bytes());
    let source = GitSource::new("app".into(), src.clone(), Some("main".into()), year());
    let results = collect(&source).unwrap();
    let history = results.iter().find(|r| r.query.id == "history").unwrap();
    assert_eq!(history.pages, 2, "2,500 commits make two pages");
    let commits = of_kind(&results, "commit");
    let changes = of_kind(&results, "change");
    assert_eq!((commits.len(), changes.len()), (2500, 2500));
    let ids: std::collections::BTreeSet<String> = commits.iter().map(|a| a.id()).collect();
    assert_eq!(ids.len(), 2500, "each commit once");
    let times: Vec<&String> = commits.iter().map(|a| &a.observed["committed"]).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first, also across the page boundary"
    );
    // The next run's first page does not see a page of this one.
    let again = collect(&source).unwrap();
    assert_eq!(of_kind(&again, "commit").len(), 2500);
}
