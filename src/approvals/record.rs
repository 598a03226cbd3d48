//! The approval record: an in-toto Statement v1 whose subjects are the
//! evidence files a pull request added or changed (each with its SHA-256)
//! and whose predicate says who approved what, where and under which
//! policy. Its bytes are canonical (sorted keys), so the file committed is
//! exactly the DSSE payload signed.

use super::policy::{Judgement, PullRequest, Review};
use crate::artifact::canonical;
use serde::{Deserialize, Serialize};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://cleartrail.dev/approval/v1";
/// Where records live on the default branch.
pub const ROOT: &str = "approvals";

/// The repository the records belong to (its id survives renames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub name: String,
    pub id: u64,
}

/// One approved file: its path in the evidence repository and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: Digest,
}

/// An in-toto digest set: the SHA-256 of the bytes. (The git blob ids go
/// in the predicate: sigstore-python refuses a subject digest it does not
/// know, such as in-toto's `gitBlob`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub sha256: String,
}

/// The policy a record was judged under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyApplied {
    pub approvers: String,
    pub required: u32,
    /// The approving reviews (ids) that met it together.
    pub approving_reviews: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub login: String,
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Predicate {
    pub repository: Repository,
    pub pull_request: u64,
    pub base_commit: String,
    pub head_commit: String,
    pub author: Account,
    pub reviewer: Account,
    pub review_id: u64,
    pub state: String,
    pub commit_reviewed: String,
    pub submitted_at: String,
    pub policy: PolicyApplied,
    /// Each subject's git blob id, by path: how `gaps` finds approved
    /// files without reading them; `verify` checks each is of the bytes
    /// the subject's SHA-256 names.
    #[serde(default)]
    pub git_blobs: std::collections::BTreeMap<String, String>,
    pub tool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

impl Statement {
    /// The record of `review`, one of `judgement`'s approving reviews,
    /// over `subjects` (sorted here by path).
    pub fn new(
        repository: &Repository,
        pr: &PullRequest,
        review: &Review,
        judgement: &Judgement,
        approvers: &str,
        mut subjects: Vec<Subject>,
        git_blobs: std::collections::BTreeMap<String, String>,
    ) -> Statement {
        subjects.sort_by(|a, b| a.name.cmp(&b.name));
        Statement {
            type_: STATEMENT_TYPE.into(),
            subject: subjects,
            predicate_type: PREDICATE_TYPE.into(),
            predicate: Predicate {
                repository: repository.clone(),
                pull_request: pr.number,
                base_commit: pr.base_sha.clone(),
                head_commit: pr.head_sha.clone(),
                author: Account {
                    login: pr.author.login.clone(),
                    id: pr.author.id,
                },
                reviewer: Account {
                    login: review.reviewer.login.clone(),
                    id: review.reviewer.id,
                },
                review_id: review.id,
                state: review.state.clone(),
                commit_reviewed: review.commit_id.clone(),
                submitted_at: review.submitted_at.clone(),
                policy: PolicyApplied {
                    approvers: approvers.to_string(),
                    required: judgement.required,
                    approving_reviews: judgement.approving.iter().map(|r| r.id).collect(),
                },
                git_blobs,
                tool: format!("cleartrail {}", env!("CARGO_PKG_VERSION")),
            },
        }
    }

    /// The canonical bytes: what is signed and what the file holds.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical::to_pretty(&canonical::value_of(self))
    }

    /// `approvals/<yyyy>/<pr>-<review>`: the record is `.intoto.json`,
    /// its bundle `.sigstore.json`.
    pub fn stem(&self) -> String {
        let year = self.predicate.submitted_at.get(..4).unwrap_or("0000");
        format!(
            "{ROOT}/{year}/{}-{}",
            self.predicate.pull_request, self.predicate.review_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::policy::{Person, Policy, judge};

    #[test]
    fn a_record_is_canonical_and_names_its_place() {
        let pr = PullRequest {
            number: 42,
            author: Person {
                login: "ann".into(),
                id: 1,
                kind: "User".into(),
            },
            head_sha: "h".repeat(40),
            base_sha: "b".repeat(40),
        };
        let review = Review {
            id: 900,
            reviewer: Person {
                login: "bob".into(),
                id: 2,
                kind: "User".into(),
            },
            state: "APPROVED".into(),
            commit_id: "h".repeat(40),
            submitted_at: "2026-03-02T10:00:00Z".into(),
        };
        let j = judge(&pr, std::slice::from_ref(&review), &Policy::default());
        let repo = Repository {
            name: "acme/evidence".into(),
            id: 77,
        };
        let subjects = vec![
            Subject {
                name: "evidence/b.json".into(),
                digest: Digest {
                    sha256: "bb".into(),
                },
            },
            Subject {
                name: "evidence/a.json".into(),
                digest: Digest {
                    sha256: "aa".into(),
                },
            },
        ];
        let s = Statement::new(
            &repo,
            &pr,
            &review,
            &j,
            "anyone",
            subjects,
            Default::default(),
        );
        assert_eq!(s.stem(), "approvals/2026/42-900");
        assert_eq!(s.subject[0].name, "evidence/a.json");
        let bytes = s.to_bytes();
        let back: Statement = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["predicateType"], PREDICATE_TYPE);
        assert_eq!(v["predicate"]["repository"]["id"], 77);
        assert_eq!(v["predicate"]["policy"]["approving_reviews"][0], 900);
        // Canonical: the same record gives the same bytes.
        assert_eq!(
            bytes,
            Statement::new(
                &repo,
                &pr,
                &review,
                &j,
                "anyone",
                back.subject.clone(),
                Default::default()
            )
            .to_bytes()
        );
    }
}
