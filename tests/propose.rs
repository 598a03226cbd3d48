//! `cleartrail propose` against a local fake of GitHub's pull request API
//! (list, create, update; the 422 of a second create) and a bare git
//! repository as the remote: the body a reviewer reads (pinned by a
//! snapshot), one pull request however often it runs, a body within
//! GitHub's limit at any size, nothing written when it cannot publish;
//! then the pull request merged, approved and verified end to end.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "ghp_NeverPrintThisProposeToken";
const BRANCH: &str = "cleartrail/evidence";

/// The pull requests of acme/evidence, as GitHub keeps them.
#[derive(Default)]
struct Prs {
    open: Vec<Value>,
    creates: usize,
    updates: usize,
}

#[derive(Clone)]
struct Pulls(Arc<Mutex<Prs>>);

impl Respond for Pulls {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap();
        match req.method.as_str() {
            "GET" => {
                let q: std::collections::HashMap<String, String> =
                    req.url.query_pairs().into_owned().collect();
                assert_eq!(q.get("state").map(String::as_str), Some("open"));
                assert_eq!(
                    q.get("head").map(String::as_str),
                    Some("acme:cleartrail/evidence")
                );
                assert_eq!(q.get("base").map(String::as_str), Some("main"));
                ResponseTemplate::new(200).set_body_json(&st.open)
            }
            "POST" => {
                let b: Value = serde_json::from_slice(&req.body).unwrap();
                if st.open.iter().any(|p| p["head"]["ref"] == b["head"]) {
                    return ResponseTemplate::new(422).set_body_json(json!({
                        "message": "Validation Failed",
                        "errors": [{"resource": "PullRequest", "code": "custom",
                                    "message": format!("A pull request already exists for acme:{}.", b["head"].as_str().unwrap())}],
                        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
                    }));
                }
                st.creates += 1;
                let n = 11 + st.creates as u64;
                let pr = json!({
                    "number": n, "state": "open", "title": b["title"], "body": b["body"],
                    "html_url": format!("https://github.com/acme/evidence/pull/{n}"),
                    "head": {"ref": b["head"], "label": format!("acme:{}", b["head"].as_str().unwrap())},
                    "base": {"ref": b["base"]},
                    "user": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}
                });
                st.open.push(pr.clone());
                ResponseTemplate::new(201).set_body_json(pr)
            }
            "PATCH" => {
                let n: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
                let b: Value = serde_json::from_slice(&req.body).unwrap();
                st.updates += 1;
                let pr = st
                    .open
                    .iter_mut()
                    .find(|p| p["number"] == n)
                    .expect("an open pull request");
                pr["title"] = b["title"].clone();
                pr["body"] = b["body"].clone();
                ResponseTemplate::new(200).set_body_json(pr.clone())
            }
            m => panic!("unexpected {m}"),
        }
    }
}

struct World {
    f: Fixture,
    cfg: PathBuf,
    key_pem: String,
    server: MockServer,
    prs: Arc<Mutex<Prs>>,
}

/// The fixture's sources, an evidence repository whose `main` is on a bare
/// remote, the policy and key of key-mode approvals, and the fake API.
async fn world(extra_sources: &str) -> World {
    let f = Fixture::new();
    let root = f.root.path();
    git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(root, &["init", "-q", "-b", "main", "evidence"]);
    let ev = f.evidence();
    std::fs::write(ev.join("README.md"), "Evidence of Acme\n").unwrap();
    git(&ev, &["add", "README.md"]);
    git(
        &ev,
        &["commit", "-q", "-m", "Start the evidence repository"],
    );
    git(&ev, &["remote", "add", "origin", "../remote.git"]);
    git(&ev, &["push", "-q", "origin", "main"]);
    git(&ev, &["fetch", "-q", "origin"]);
    let (key_pem, public) = openssl_key(root);
    std::fs::write(root.join("signing.pub"), public).unwrap();
    let cfg = f.config(&format!(
        "version: 1\nperiod: 2026-Q1\nsources:\n  app:\n    type: git\n    path: src\n  policies:\n    type: files\n    path: src/policies\n{extra_sources}approvals:\n  repository: acme/evidence\n  repository_id: 77\n  approvers:\n    users: [bob]\n  required: 1\n  signing: key\n  public_key: signing.pub\n"
    ));
    let server = MockServer::start().await;
    let prs = Arc::new(Mutex::new(Prs::default()));
    Mock::given(path("/repos/acme/evidence/pulls"))
        .respond_with(Pulls(prs.clone()))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex(r"^/repos/acme/evidence/pulls/\d+$"))
        .respond_with(Pulls(prs.clone()))
        .mount(&server)
        .await;
    World {
        f,
        cfg,
        key_pem,
        server,
        prs,
    }
}

impl World {
    fn ev(&self) -> PathBuf {
        self.f.evidence()
    }

    fn run(&self) {
        let out = run_env(&self.cfg, &self.ev(), &[]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }

    fn propose_with(&self, env: &[(&str, &str)]) -> std::process::Output {
        let uri = self.server.uri();
        let mut all = vec![("GITHUB_API_URL", uri.as_str())];
        all.extend_from_slice(env);
        cleartrail_guarded(
            &[
                "propose",
                "--config",
                self.cfg.to_str().unwrap(),
                "--repo",
                self.ev().to_str().unwrap(),
            ],
            &all,
        )
    }

    fn propose(&self) -> std::process::Output {
        let out = self.propose_with(&[("GITHUB_TOKEN", TOKEN)]);
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
        assert!(!stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN));
        out
    }

    fn body(&self) -> String {
        let st = self.prs.lock().unwrap();
        assert_eq!(st.open.len(), 1, "exactly one pull request");
        st.open[0]["body"].as_str().unwrap().to_string()
    }

    fn counts(&self) -> (usize, usize) {
        let st = self.prs.lock().unwrap();
        (st.creates, st.updates)
    }

    fn tip(&self, repo: &Path, name: &str) -> Option<git2::Oid> {
        git2::Repository::open(repo)
            .unwrap()
            .refname_to_id(name)
            .ok()
    }

    fn remote_tip(&self) -> Option<git2::Oid> {
        self.tip(
            &self.f.root.path().join("remote.git"),
            &format!("refs/heads/{BRANCH}"),
        )
    }

    /// Merges the evidence branch into main as GitHub would (a merge
    /// commit, or one squashed commit), pushes main and closes the pull
    /// request.
    fn merge(&self, squash: bool) {
        let ev = self.ev();
        if squash {
            git(&ev, &["merge", "-q", "--squash", BRANCH]);
            git(&ev, &["commit", "-q", "-m", "Evidence (#12)"]);
        } else {
            git(
                &ev,
                &[
                    "merge",
                    "-q",
                    "--no-ff",
                    "-m",
                    "Merge pull request #12",
                    BRANCH,
                ],
            );
        }
        git(&ev, &["push", "-q", "origin", "main"]);
        self.prs.lock().unwrap().open.clear();
    }

    fn local_tip(&self) -> Option<git2::Oid> {
        self.tip(&self.ev(), &format!("refs/heads/{BRANCH}"))
    }
}

/// The body with what varies between builds (commit ids, the version)
/// replaced: a run of 40 or 12 lower-case hex digits standing alone.
fn pinned(body: &str) -> String {
    let body = body.replace(env!("CARGO_PKG_VERSION"), "[version]");
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == 40 || run.len() == 12 {
            out.push_str("[commit]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    let mut prev_alnum = false;
    for ch in body.chars() {
        if matches!(ch, '0'..='9' | 'a'..='f') && (!prev_alnum || !run.is_empty()) {
            run.push(ch);
        } else {
            if ch.is_ascii_alphanumeric() || ch == '_' {
                // Part of a longer word: not an id.
                out.push_str(&run);
                run.clear();
            } else {
                flush(&mut run, &mut out);
            }
            out.push(ch);
        }
        prev_alnum = ch.is_ascii_alphanumeric() || ch == '_';
    }
    flush(&mut run, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn propose_approve_verify_end_to_end() {
    let w = world("").await;
    w.run();
    let out = w.propose();
    assert!(
        stdout(&out)
            .starts_with("pull request #12 created: https://github.com/acme/evidence/pull/12"),
        "{}",
        stdout(&out)
    );
    // The branch is on the remote, the pull request shows it.
    assert_eq!(w.remote_tip(), w.local_tip());
    let body = w.body();
    assert!(body.chars().count() <= 65_536);
    assert!(!body.contains(TOKEN));
    insta::assert_snapshot!("propose_first_body", pinned(&body));

    // Again with nothing new: no push, no edit, no second pull request.
    let tip = w.local_tip();
    let again = w.propose();
    assert!(
        stdout(&again).contains("#12 unchanged"),
        "{}",
        stdout(&again)
    );
    assert_eq!(w.counts(), (1, 0));
    assert_eq!(w.local_tip(), tip);

    // Merged with a merge commit; the reviews approve its final head.
    let ev = w.ev();
    let pr_head = w.local_tip().unwrap();
    w.merge(false);
    let main_before = w.tip(&ev, "refs/heads/main").unwrap();
    let repo = git2::Repository::open(&ev).unwrap();
    let merge_base = repo
        .merge_base(
            repo.find_commit(main_before).unwrap().parent_id(0).unwrap(),
            pr_head,
        )
        .unwrap();
    Mock::given(method("GET"))
        .and(path("/repos/acme/evidence/pulls/12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "number": 12, "merged": true, "state": "closed",
            "user": {"login": "ann", "id": 1, "type": "User"},
            "head": {"sha": pr_head.to_string(), "ref": BRANCH},
            "base": {"sha": merge_base.to_string(), "ref": "main"},
            "merge_commit_sha": main_before.to_string()
        })))
        .mount(&w.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/evidence/pulls/12/reviews"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 901, "user": {"login": "bob", "id": 2, "type": "User"}, "state": "APPROVED",
             "commit_id": pr_head.to_string(), "submitted_at": "2026-03-20T09:00:00Z", "body": ""}
        ])))
        .mount(&w.server)
        .await;
    // The approve workflow runs on the push of the merge: the event names
    // the commit, GitHub the pull request it merged.
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/evidence/commits/{main_before}/pulls")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"number": 9, "merge_commit_sha": "1".repeat(40), "merged_at": "2026-03-01T09:00:00Z"},
            {"number": 12, "merge_commit_sha": main_before.to_string(), "merged_at": "2026-03-20T10:00:00Z"}
        ])))
        .mount(&w.server)
        .await;
    // Another merge lands before the approve run pushes: the checkout is
    // of the older commit, and the records must go on top of the newer.
    let root = w.f.root.path();
    git(root, &["clone", "-q", "remote.git", "other"]);
    git(
        &root.join("other"),
        &["commit", "-q", "--allow-empty", "-m", "Another merge"],
    );
    git(&root.join("other"), &["push", "-q", "origin", "main"]);
    let theirs = w.tip(&root.join("remote.git"), "refs/heads/main").unwrap();
    let event = w.f.root.path().join("event.json");
    std::fs::write(
        &event,
        json!({"after": main_before.to_string()}).to_string(),
    )
    .unwrap();
    let uri = w.server.uri();
    let approved = cleartrail_guarded(
        &[
            "approve",
            "--push",
            "origin",
            "--config",
            w.cfg.to_str().unwrap(),
            "--repo",
            ev.to_str().unwrap(),
        ],
        &[
            ("GITHUB_TOKEN", TOKEN),
            ("GITHUB_API_URL", &uri),
            ("CLEARTRAIL_SIGNING_KEY", &w.key_pem),
            ("GITHUB_EVENT_NAME", "push"),
            ("GITHUB_EVENT_PATH", event.to_str().unwrap()),
        ],
    );
    assert_eq!(
        code(&approved),
        0,
        "{}{}",
        stdout(&approved),
        stderr(&approved)
    );
    // Committed on the newer tip and pushed: the remote's default branch
    // holds the other merge and the records.
    let files = tree_files(&ev, "main");
    let local = git2::Repository::open(&ev).unwrap();
    let records = local.refname_to_id("refs/heads/main").unwrap();
    assert_eq!(
        local.find_commit(records).unwrap().parent_id(0).unwrap(),
        theirs
    );
    assert_eq!(
        w.tip(&ev, "refs/heads/main"),
        w.tip(&w.f.root.path().join("remote.git"), "refs/heads/main")
    );
    assert!(
        stdout(&approved).contains("pushed main to origin"),
        "{}",
        stdout(&approved)
    );
    let record = files
        .get("approvals/2026/12-901.intoto.json")
        .unwrap_or_else(|| panic!("{:?}", files.keys().filter(|k| k.starts_with("approvals"))));
    let statement: Value = serde_json::from_slice(record).unwrap();
    let subjects: Vec<&str> = statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("evidence/files/document/")),
        "{subjects:?}"
    );

    // The merged default branch verifies, approvals included, and every
    // control judged from it is approved: nothing `unapproved`.
    let verified = command_with("verify", &w.cfg, &ev, &["--rev", "main"]);
    assert_eq!(
        code(&verified),
        0,
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );
    let gaps = command_with("gaps", &w.cfg, &ev, &["--rev", "main", "--format", "json"]);
    assert_eq!(code(&gaps), 0, "{}", stderr(&gaps));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&gaps)).unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r["status"] != "unapproved"),
        "{}",
        stdout(&gaps)
    );

    // The next run starts from the merged default branch: with nothing
    // new there is nothing to propose.
    w.run();
    let after = w.propose();
    assert!(
        stdout(&after).starts_with("nothing to propose"),
        "{}",
        stdout(&after)
    );

    // A policy edited upstream: a new pull request whose body says what
    // changed, field by field.
    let src = git2::Repository::open(w.f.src()).unwrap();
    let head = src.head().unwrap().peel_to_commit().unwrap().id();
    commit(
        &src,
        &[(
            "policies/access-control-policy.md",
            &POLICY_OK.replace("version: 2.10", "version: 2.11"),
        )],
        "Access control policy 2.11",
        T0 + 10 * DAY,
        &[head],
    );
    w.run();
    let next = w.propose();
    assert!(stdout(&next).contains("#13 created"), "{}", stdout(&next));
    assert_eq!(w.counts(), (2, 0));
    assert_eq!(w.remote_tip(), w.local_tip());
    let body = w.body();
    insta::assert_snapshot!("propose_changed_body", pinned(&body));
}

/// Writes procedures `range` into the handbook folder.
fn procedures(dir: &Path, range: std::ops::Range<usize>, title: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for i in range {
        std::fs::write(
            dir.join(format!("procedure-{i:04}.md")),
            format!("---\ntitle: {title} {i} | with a pipe and @someone\nowner: Ops\nlast_reviewed: 2026-02-01\n---\n\nStep one.\n"),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_too_large_for_a_body_links_to_listing_pages() {
    let w = world("  handbook:\n    type: files\n    path: handbook\n").await;
    let dir = w.f.root.path().join("handbook");
    // The body links into the head it describes, which stays reachable
    // after the branch is deleted on merge.
    let at = |w: &World| {
        format!(
            "https://github.com/acme/evidence/blob/{}/.cleartrail/proposal/index.md",
            w.local_tip().unwrap()
        )
    };

    // A first proposal: every artifact is new, so the index links to each
    // kind's own listing on the branch instead of paging it again.
    procedures(&dir, 0..700, "Procedure");
    w.run();
    w.propose();
    let body = w.body();
    assert!(body.chars().count() <= 65_536, "{}", body.chars().count());
    assert!(
        body.contains(&format!("**[The full listing]({})**", at(&w))),
        "{body}"
    );
    assert!(!body.contains("@someone"));
    let files = tree_files(&w.ev(), &w.remote_tip().unwrap().to_string());
    let index = String::from_utf8(files[".cleartrail/proposal/index.md"].clone()).unwrap();
    assert!(
        index.contains("| files/document: all new, [listed here](../../listings/files/document/index.md) | 703 | 0 | 0 |"),
        "{index}"
    );
    assert!(files.contains_key("listings/files/document/index.md"));
    assert!(
        !files
            .keys()
            .any(|p| p.starts_with(".cleartrail/proposal/part-"))
    );

    // Merged; then 700 more and one retitled: paged, one row each.
    let ev = w.ev();
    w.merge(false);
    procedures(&dir, 700..1400, "Procedure");
    procedures(&dir, 0..1, "Retitled procedure");
    w.run();
    w.propose();
    let body = w.body();
    assert!(body.chars().count() <= 65_536, "{}", body.chars().count());
    assert!(
        body.contains("**700 added, 1 changed, 0 removed**"),
        "{body}"
    );
    assert!(!body.contains("@someone"));
    let tip = w.remote_tip().unwrap();
    assert_eq!(Some(tip), w.local_tip());
    let files = tree_files(&ev, &tip.to_string());
    let index = String::from_utf8(files[".cleartrail/proposal/index.md"].clone()).unwrap();
    assert!(
        index.contains("[part 1](part-0001.md): 701 rows"),
        "{index}"
    );
    assert!(
        index.contains(
            "`title`: Procedure 0 \\| with a pipe and @\u{200b}someone → Retitled procedure 0"
        ),
        "{index}"
    );
    let pages: String = files
        .iter()
        .filter(|(p, _)| p.starts_with(".cleartrail/proposal/part-"))
        .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
        .collect();
    for i in [700, 1057, 1399] {
        assert!(
            pages.contains(&format!(
                "Procedure {i} \\| with a pipe and @\u{200b}someone"
            )),
            "procedure {i} missing from the pages"
        );
    }
    assert!(
        pages.contains("../../evidence/files/document/"),
        "relative file links"
    );
    assert!(!pages.contains("@someone"));
    // Verify takes the pages for what they are.
    let verified = command_with("verify", &w.cfg, &ev, &[]);
    assert_eq!(
        code(&verified),
        0,
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );

    // Again: the same pages, no commit, no edit.
    let again = w.propose();
    assert!(stdout(&again).contains("unchanged"), "{}", stdout(&again));
    assert_eq!(w.local_tip(), Some(tip));
    assert_eq!(w.counts(), (2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_written_when_the_proposal_cannot_be_published() {
    let w = world("").await;
    w.run();
    let before = w.local_tip();

    // No credentials: a usage error before anything is written.
    let out = w.propose_with(&[("GITHUB_TOKEN", "")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("GITHUB_TOKEN"), "{}", stderr(&out));
    assert_eq!(w.local_tip(), before);
    assert_eq!(w.remote_tip(), None);

    // Someone pushed to the remote branch meanwhile: never overwritten.
    let ev = w.ev();
    git(&ev, &["checkout", "-q", "-b", "someone"]);
    git(
        &ev,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "Someone else's commit",
        ],
    );
    git(
        &ev,
        &[
            "push",
            "-q",
            "origin",
            "someone:refs/heads/cleartrail/evidence",
        ],
    );
    git(&ev, &["checkout", "-q", "main"]);
    git(&ev, &["branch", "-q", "-D", "someone"]);
    let theirs = w.remote_tip();
    let refused = w.propose_with(&[("GITHUB_TOKEN", TOKEN)]);
    assert_eq!(code(&refused), 3, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("has commits this repository lacks"),
        "{}",
        stderr(&refused)
    );
    assert!(!stderr(&refused).contains(TOKEN));
    assert_eq!(w.remote_tip(), theirs);
    assert_eq!(w.local_tip(), before);
    assert_eq!(w.counts(), (0, 0));

    // A dry run prints the body and touches nothing.
    let dry = cleartrail_guarded(
        &[
            "propose",
            "--dry-run",
            "--config",
            w.cfg.to_str().unwrap(),
            "--repo",
            ev.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert!(
        stdout(&dry).starts_with("Evidence for 2026-Q1: "),
        "{}",
        stdout(&dry)
    );
    assert!(stdout(&dry).contains("### Artifacts by control"));
    assert_eq!(w.local_tip(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_squash_merged_branch_with_nothing_new_proposes_nothing() {
    let w = world("").await;
    w.run();
    w.propose();
    // Squashed into one commit on main; the branch's history is not in it.
    w.merge(true);
    w.run();
    let out = w.propose();
    assert!(
        stdout(&out).starts_with("nothing to propose"),
        "{}",
        stdout(&out)
    );
    assert_eq!(w.counts(), (1, 0));
}
