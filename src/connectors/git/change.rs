//! How a change reached the default branch, read from its commit message:
//! the pull or merge request it names, the reviewers it names, and the
//! review trace that says so.
//!
//! A git trace is only a trace: a message can name a pull request that was
//! never approved, and a forge's API (the GitHub source) is the record of
//! who approved what. These rules recognise what the common merge tools
//! write:
//!
//! | tool | what it writes |
//! |---|---|
//! | GitHub merge commit | `Merge pull request #N from owner/branch` |
//! | GitHub squash, merge queue | `Title (#N)` at the end of the summary line |
//! | GitHub rebase merge, by convention | a body line that is exactly `PR #N` (as ripgrep writes) |
//! | bors / homu | `Auto merge of #N - user:branch, r=reviewer` (and `Rollup merge of`) |
//! | bors-ng | `Merge #N #M` and body lines `N: Title r=reviewer a=author` |
//! | GitLab | a `See merge request group/project!N` line |
//! | Bitbucket Cloud / Server | `Merged in branch (pull request #N)`; `Merge pull request #N in PROJ/repo from ...` |
//! | Gerrit | `Reviewed-on:` and `Change-Id:` trailers |
//! | any | `Reviewed-by:` / `Approved-by:` trailers |
//!
//! Trailers are parsed with git's own rules (libgit2's
//! `git_message_trailers`), so a `Key: value` line in the body is not one.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A message's subject as git reads it (`%s`): the first paragraph with its
/// lines joined by spaces. A web editor that wraps a long squash title puts
/// its ` (#N)` on the second line; it is still part of the subject.
pub fn subject(message: &str) -> String {
    message
        .trim_start_matches(['\n', '\r'])
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Trailers naming a reviewer.
const REVIEWER_TRAILERS: &[&str] = &["Reviewed-by", "Approved-by"];

/// The trailers of a message as `key -> values`, keys as written, in
/// git's reading.
pub fn trailers(message: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // libgit2 takes a C string; a NUL cannot be part of a trailer anyway.
    let clean = message.replace('\0', "");
    if let Ok(found) = git2::message_trailers_strs(&clean) {
        for (k, v) in found.iter() {
            out.entry(k.to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

fn trailer_values<'a>(t: &'a BTreeMap<String, Vec<String>>, key: &str) -> Vec<&'a str> {
    t.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .flat_map(|(_, v)| v.iter().map(String::as_str))
        .collect()
}

/// What a change's message says about how it landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// `merge`, `squash` or `direct`.
    pub change_type: &'static str,
    pub pull_request: Option<PullRequest>,
    pub reviewers: Vec<String>,
    /// (kind, text) of the strongest trace found.
    pub review_trace: Option<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// `github`, `gitlab`, `bitbucket`, `gerrit` or `bors`.
    pub system: &'static str,
    pub number: Option<u64>,
    /// The reference as written when it is more than a number (GitLab's
    /// `group/project!N`, a Gerrit review URL or Change-Id).
    pub reference: Option<String>,
    /// The line that names it.
    pub text: String,
}

impl PullRequest {
    pub fn to_json(&self) -> Value {
        let mut v = json!({"system": self.system});
        let m = v.as_object_mut().expect("object");
        if let Some(n) = self.number {
            m.insert("number".into(), json!(n));
        }
        if let Some(r) = &self.reference {
            m.insert("ref".into(), json!(r));
        }
        v
    }
}

impl Classified {
    pub fn review_trace_json(&self) -> Value {
        match &self.review_trace {
            Some((kind, text)) => json!({"kind": kind, "text": text}),
            None => Value::Null,
        }
    }
}

/// Leading digits of `s`, as a number.
fn number_at(s: &str) -> Option<u64> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The `#N` at the end of a summary line: `Title (#N)`.
fn trailing_pr_number(summary: &str) -> Option<u64> {
    let s = summary.trim_end().strip_suffix(')')?;
    let open = s.rfind("(#")?;
    let n = &s[open + 2..];
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// Reviewers listed after `r=` up to the end of the token (`r=a,b`).
fn bors_reviewers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("r=") {
        // `r=` must start a word: not the tail of `user=` or `dr=`.
        if i > 0 && !text[..i].ends_with([' ', ',']) {
            continue;
        }
        let list: String = text[i + 2..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        out.extend(
            list.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string),
        );
    }
    out
}

/// The pull request a message names, with the reviewers only its own
/// syntax gives (bors `r=`).
fn pull_request(
    summary: &str,
    message: &str,
    trailers: &BTreeMap<String, Vec<String>>,
) -> (Option<PullRequest>, Vec<String>) {
    let pr = |system, number, reference: Option<String>, text: &str| PullRequest {
        system,
        number,
        reference,
        text: text.to_string(),
    };
    if let Some(rest) = summary.strip_prefix("Merge pull request #") {
        let n = number_at(rest);
        let after = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        // Bitbucket Server: `Merge pull request #N in PROJ/repo from ...`.
        let system = if after.starts_with(" in ") {
            "bitbucket"
        } else {
            "github"
        };
        if n.is_some() {
            return (Some(pr(system, n, None, summary)), Vec::new());
        }
    }
    for prefix in ["Auto merge of #", "Rollup merge of #"] {
        if let Some(rest) = summary.strip_prefix(prefix)
            && let Some(n) = number_at(rest)
        {
            return (
                Some(pr("bors", Some(n), None, summary)),
                bors_reviewers(summary),
            );
        }
    }
    if let Some(rest) = summary.strip_prefix("Merge #") {
        // bors-ng: `Merge #12 #34`, then `12: Title r=ann a=bo` per PR.
        let numbers: Vec<u64> = std::iter::once(rest)
            .chain(rest.split(" #").skip(1))
            .filter_map(number_at)
            .collect();
        if let Some(first) = numbers.first() {
            let mut reviewers = Vec::new();
            for line in message.lines().skip(1) {
                if let Some((n, rest)) = line.split_once(": ")
                    && n.trim().parse::<u64>().is_ok_and(|n| numbers.contains(&n))
                {
                    reviewers.extend(bors_reviewers(rest));
                }
            }
            return (Some(pr("bors", Some(*first), None, summary)), reviewers);
        }
    }
    if let Some(open) = summary.find("(pull request #")
        && summary.starts_with("Merged in ")
        && let Some(n) = number_at(&summary[open + "(pull request #".len()..])
    {
        return (Some(pr("bitbucket", Some(n), None, summary)), Vec::new());
    }
    for line in message.lines() {
        if let Some(rest) = line.trim().strip_prefix("See merge request ") {
            let reference = rest.trim().trim_end_matches('.').to_string();
            let n = reference.rsplit_once('!').and_then(|(_, n)| number_at(n));
            return (
                Some(pr("gitlab", n, Some(reference), line.trim())),
                Vec::new(),
            );
        }
    }
    if let Some(url) = trailer_values(trailers, "Reviewed-on").first() {
        let n = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok());
        return (
            Some(pr(
                "gerrit",
                n,
                Some(url.to_string()),
                &format!("Reviewed-on: {url}"),
            )),
            Vec::new(),
        );
    }
    if let Some(n) = trailing_pr_number(summary) {
        return (Some(pr("github", Some(n), None, summary)), Vec::new());
    }
    // A line of its own naming the pull request, as maintainers who
    // rebase-merge write it. `Fixes #N` names an issue, not a review.
    for line in message.lines().skip(1) {
        if let Some(rest) = line.trim().strip_prefix("PR #")
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_digit())
        {
            return (
                Some(pr("github", number_at(rest), None, line.trim())),
                Vec::new(),
            );
        }
    }
    if let Some(id) = trailer_values(trailers, "Change-Id").first() {
        return (
            Some(pr(
                "gerrit",
                None,
                Some(id.to_string()),
                &format!("Change-Id: {id}"),
            )),
            Vec::new(),
        );
    }
    (None, Vec::new())
}

/// Classifies a change of the default branch's first-parent history.
pub fn classify(
    summary: &str,
    message: &str,
    parents: usize,
    trailers: &BTreeMap<String, Vec<String>>,
) -> Classified {
    let (pull_request, bors) = pull_request(summary, message, trailers);
    let mut reviewers: Vec<String> = Vec::new();
    let mut trailer_trace = None;
    for key in REVIEWER_TRAILERS {
        for v in trailer_values(trailers, key) {
            trailer_trace.get_or_insert((
                if *key == "Reviewed-by" {
                    "reviewed-by-trailer"
                } else {
                    "approved-by-trailer"
                },
                format!("{key}: {v}"),
            ));
            reviewers.push(v.to_string());
        }
    }
    let bors_trace = (!bors.is_empty()).then(|| {
        (
            "bors-approval",
            pull_request
                .as_ref()
                .map(|p| p.text.clone())
                .unwrap_or_default(),
        )
    });
    for r in bors {
        if !reviewers.contains(&r) {
            reviewers.push(r);
        }
    }
    // A named reviewer is the strongest trace; then a review system's own
    // record (Gerrit's Reviewed-on); then a pull request reference.
    let review_trace = bors_trace.or(trailer_trace).or_else(|| {
        pull_request.as_ref().map(|p| {
            let kind = match (p.system, p.text.starts_with("Change-Id")) {
                ("gerrit", true) => "gerrit-change-id",
                ("gerrit", false) => "gerrit-reviewed-on",
                _ => "pull-request-reference",
            };
            (kind, p.text.clone())
        })
    });
    let change_type = if pull_request.is_none() && review_trace.is_none() {
        "direct"
    } else if parents > 1 {
        "merge"
    } else {
        "squash"
    };
    Classified {
        change_type,
        pull_request,
        reviewers,
        review_trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(message: &str, parents: usize) -> Classified {
        classify(&subject(message), message, parents, &trailers(message))
    }

    #[test]
    fn the_subject_is_the_first_paragraph() {
        assert_eq!(
            subject("Move files\n (#17032)\n\nBody\n"),
            "Move files (#17032)"
        );
        assert_eq!(subject("One line"), "One line");
        let wrapped = c(
            "Move test support files out of `scripts/`\n (#17032)\n\nBody.\n",
            1,
        );
        assert_eq!(wrapped.change_type, "squash");
        assert_eq!(wrapped.pull_request.unwrap().number, Some(17032));
    }

    #[test]
    fn trailers_follow_gits_rules() {
        let t = trailers(
            "Fix\n\nBody text: not a trailer?\n\nReviewed-by: Ann <a@x>\nSigned-off-by: Bo <b@x>\n",
        );
        assert_eq!(t["Reviewed-by"], ["Ann <a@x>"]);
        assert_eq!(t["Signed-off-by"], ["Bo <b@x>"]);
        assert!(!t.contains_key("Body text"));
        assert!(trailers("Subject: only").is_empty());
        // A body paragraph that is mostly prose is not a trailer block.
        let prose = trailers(
            "Fix\n\nThis explains it.\nReviewed-by: nobody really\nMore prose here that goes on.\n",
        );
        assert!(!prose.contains_key("Reviewed-by"), "{prose:?}");
    }

    #[test]
    fn each_merge_style_is_recognised() {
        let gh = c("Merge pull request #42 from a/b\n\nTitle\n", 2);
        assert_eq!(gh.change_type, "merge");
        assert_eq!(gh.pull_request.as_ref().unwrap().system, "github");
        assert_eq!(gh.pull_request.as_ref().unwrap().number, Some(42));
        assert_eq!(gh.review_trace.unwrap().0, "pull-request-reference");

        let sq = c("Add a thing (#123)\n\n* one\n* two\n", 1);
        assert_eq!(sq.change_type, "squash");
        assert_eq!(sq.pull_request.unwrap().number, Some(123));

        let mq = c("Add a thing (#124)", 2);
        assert_eq!(mq.change_type, "merge");

        let bors = c(
            "Auto merge of #13399 - user:branch, r=alice,bob\n\nTitle\n",
            2,
        );
        assert_eq!(bors.pull_request.as_ref().unwrap().system, "bors");
        assert_eq!(bors.pull_request.as_ref().unwrap().number, Some(13399));
        assert_eq!(bors.reviewers, ["alice", "bob"]);
        assert_eq!(bors.review_trace.unwrap().0, "bors-approval");

        let ng = c(
            "Merge #7 #9\n\n7: Fix a r=carol a=dan\n\n9: Fix b r=erin a=dan\n\nCo-authored-by: Dan <d@x>\n",
            2,
        );
        assert_eq!(ng.pull_request.as_ref().unwrap().number, Some(7));
        assert_eq!(ng.reviewers, ["carol", "erin"]);

        let gl = c(
            "Merge branch 'x' into 'main'\n\nFeature\n\nSee merge request group/sub/project!17\n",
            2,
        );
        let p = gl.pull_request.unwrap();
        assert_eq!(
            (p.system, p.number, p.reference.as_deref()),
            ("gitlab", Some(17), Some("group/sub/project!17"))
        );

        let bb = c(
            "Merged in feature/x (pull request #5)\n\nApproved-by: Fay <f@x>\n",
            2,
        );
        assert_eq!(bb.pull_request.as_ref().unwrap().system, "bitbucket");
        assert_eq!(bb.reviewers, ["Fay <f@x>"]);
        assert_eq!(bb.review_trace.unwrap().0, "approved-by-trailer");
        let bbs = c("Merge pull request #6 in PROJ/repo from x to main", 2);
        assert_eq!(bbs.pull_request.unwrap().system, "bitbucket");

        let gerrit = c(
            "Fix\n\nBody.\n\nChange-Id: I0123abcd\nReviewed-on: https://review.example/c/p/+/4711\nReviewed-by: Gil <g@x>\n",
            1,
        );
        let p = gerrit.pull_request.as_ref().unwrap();
        assert_eq!((p.system, p.number), ("gerrit", Some(4711)));
        assert_eq!(gerrit.reviewers, ["Gil <g@x>"]);
        assert_eq!(gerrit.change_type, "squash");
        let change_id = c("Fix\n\nChange-Id: I0123abcd\n", 1);
        assert_eq!(change_id.review_trace.unwrap().0, "gerrit-change-id");

        let rebased = c("ignore/types: add Seed7\n\nMore text.\n\nPR #3022\n", 1);
        assert_eq!(rebased.change_type, "squash");
        assert_eq!(rebased.pull_request.unwrap().number, Some(3022));
        assert_eq!(c("Fix\n\nFixes #3022\n", 1).change_type, "direct");
        assert_eq!(c("Fix\n\nSee PR #3022 for why\n", 1).change_type, "direct");
        let direct = c("Fix typo\n\nNo trace here: at all\n", 1);
        assert_eq!(direct.change_type, "direct");
        assert!(direct.pull_request.is_none() && direct.review_trace.is_none());
        let local_merge = c("Merge branch 'hotfix'", 2);
        assert_eq!(local_merge.change_type, "direct");
        // Numbers elsewhere on the line are not pull requests.
        assert_eq!(c("Bump to 1.2 (#not)", 1).change_type, "direct");
        assert_eq!(c("Fix (#12) in parser", 1).change_type, "direct");
    }
}
