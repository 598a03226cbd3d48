//! The approval policy: which reviews of a pull request approve it.
//!
//! Always, whatever the configuration: the latest decisive review of each
//! reviewer counts (a request for changes after an approval revokes it; a
//! dismissed review counts for nothing; comments decide nothing); the
//! author never approves their own pull request; a bot never approves;
//! and an approval is of the pull request's final head commit, since a
//! push after it brings bytes the reviewer never saw. Configured: who may
//! approve (users, and teams resolved to their members beforehand) and
//! how many approvals are needed.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A pull request as the policy needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub author: Person,
    /// The final head commit.
    pub head_sha: String,
    pub base_sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub login: String,
    pub id: u64,
    /// GitHub's account type: `User`, `Bot`, `Organization`.
    #[serde(skip)]
    pub kind: String,
}

impl Person {
    fn is_bot(&self) -> bool {
        self.kind.eq_ignore_ascii_case("bot") || self.login.ends_with("[bot]")
    }
}

/// One review as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    pub id: u64,
    pub reviewer: Person,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED`, `PENDING`.
    pub state: String,
    /// The commit the review was on.
    pub commit_id: String,
    pub submitted_at: String,
}

/// Who may approve and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Logins that may approve (lower case), teams' members included;
    /// `None`: anyone (but the author and bots).
    pub approvers: Option<BTreeSet<String>>,
    /// Approvals needed (at least one).
    pub required: u32,
    /// How the approvers were given, for reasons: `users a, b; teams x/y`.
    pub described: String,
}

/// The policy's judgement of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Reviews that approve, one per reviewer, oldest first.
    pub approving: Vec<Review>,
    /// Reviewers whose review does not approve, with why.
    pub refused: Vec<(Review, String)>,
    pub required: u32,
}

impl Judgement {
    pub fn approved(&self) -> bool {
        self.approving.len() as u32 >= self.required.max(1)
    }
}

/// Judges the reviews of `pr` under `policy`.
pub fn judge(pr: &PullRequest, reviews: &[Review], policy: &Policy) -> Judgement {
    // The latest decisive review of each reviewer, by submission time
    // (then id, which GitHub assigns in order).
    let mut latest: BTreeMap<u64, &Review> = BTreeMap::new();
    for r in reviews {
        if !matches!(
            r.state.as_str(),
            "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED"
        ) {
            continue;
        }
        let newer = latest
            .get(&r.reviewer.id)
            .is_none_or(|held| (&r.submitted_at, r.id) > (&held.submitted_at, held.id));
        if newer {
            latest.insert(r.reviewer.id, r);
        }
    }
    let mut approving = Vec::new();
    let mut refused = Vec::new();
    for r in latest.into_values() {
        let approved_before = reviews
            .iter()
            .any(|o| o.reviewer.id == r.reviewer.id && o.state == "APPROVED" && o.id != r.id);
        let login = &r.reviewer.login;
        let why = match r.state.as_str() {
            "CHANGES_REQUESTED" if approved_before => Some(format!(
                "{login} requested changes on {} after approving: the approval is revoked",
                r.submitted_at
            )),
            "CHANGES_REQUESTED" => Some(format!("{login} requested changes")),
            "DISMISSED" => Some(format!(
                "{login}'s review {} was dismissed: it counts for nothing",
                r.id
            )),
            _ if r.reviewer.id == pr.author.id || login.eq_ignore_ascii_case(&pr.author.login) => {
                Some(format!(
                    "{login} is the pull request's author: no self-approval"
                ))
            }
            _ if r.reviewer.is_bot() => Some(format!("{login} is a bot")),
            _ if policy
                .approvers
                .as_ref()
                .is_some_and(|a| !a.contains(&login.to_ascii_lowercase())) =>
            {
                Some(format!(
                    "{login} may not approve (approvers: {})",
                    policy.described
                ))
            }
            _ if r.commit_id != pr.head_sha => Some(format!(
                "{login} approved commit {}, not the final head {}: a later push was not reviewed",
                short(&r.commit_id),
                short(&pr.head_sha)
            )),
            _ => None,
        };
        match why {
            Some(why) => refused.push((r.clone(), why)),
            None => approving.push(r.clone()),
        }
    }
    approving.sort_by(|a, b| (&a.submitted_at, a.id).cmp(&(&b.submitted_at, b.id)));
    refused.sort_by(|a, b| (&a.0.submitted_at, a.0.id).cmp(&(&b.0.submitted_at, b.0.id)));
    Judgement {
        approving,
        refused,
        required: policy.required.max(1),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "1111111111111111111111111111111111111111";
    const OLD: &str = "2222222222222222222222222222222222222222";

    fn person(login: &str, id: u64) -> Person {
        Person {
            login: login.into(),
            id,
            kind: if login.ends_with("[bot]") {
                "Bot"
            } else {
                "User"
            }
            .into(),
        }
    }

    fn pr() -> PullRequest {
        PullRequest {
            number: 7,
            author: person("ann", 1),
            head_sha: HEAD.into(),
            base_sha: OLD.into(),
        }
    }

    fn review(id: u64, who: (&str, u64), state: &str, commit: &str, at: &str) -> Review {
        Review {
            id,
            reviewer: person(who.0, who.1),
            state: state.into(),
            commit_id: commit.into(),
            submitted_at: at.into(),
        }
    }

    fn policy(approvers: Option<&[&str]>, required: u32) -> Policy {
        Policy {
            approvers: approvers.map(|a| a.iter().map(|s| s.to_string()).collect()),
            required,
            described: "users bob, cy".into(),
        }
    }

    fn reasons(j: &Judgement) -> Vec<String> {
        j.refused.iter().map(|(_, w)| w.clone()).collect()
    }

    #[test]
    fn a_valid_approval_is_accepted() {
        let j = judge(
            &pr(),
            &[review(
                10,
                ("bob", 2),
                "APPROVED",
                HEAD,
                "2026-03-02T10:00:00Z",
            )],
            &policy(Some(&["bob"]), 1),
        );
        assert!(j.approved());
        assert_eq!(j.approving.len(), 1);
        assert!(j.refused.is_empty());
    }

    #[test]
    fn each_way_of_not_approving_is_refused_with_its_reason() {
        let reviews = [
            // Self-approval.
            review(1, ("ann", 1), "APPROVED", HEAD, "2026-03-02T10:00:00Z"),
            // Not an approver.
            review(2, ("dan", 4), "APPROVED", HEAD, "2026-03-02T10:01:00Z"),
            // A bot.
            review(3, ("ci[bot]", 5), "APPROVED", HEAD, "2026-03-02T10:02:00Z"),
            // A stale head.
            review(4, ("bob", 2), "APPROVED", OLD, "2026-03-02T10:03:00Z"),
            // Approved, then changes requested.
            review(5, ("cy", 3), "APPROVED", HEAD, "2026-03-02T10:04:00Z"),
            review(
                6,
                ("cy", 3),
                "CHANGES_REQUESTED",
                HEAD,
                "2026-03-02T10:05:00Z",
            ),
            // Dismissed.
            review(7, ("eve", 6), "DISMISSED", HEAD, "2026-03-02T10:06:00Z"),
        ];
        let mut p = policy(Some(&["bob", "cy", "ann", "ci[bot]", "eve"]), 1);
        p.described = "users bob, cy".into();
        let j = judge(&pr(), &reviews, &p);
        assert!(!j.approved());
        assert!(j.approving.is_empty());
        let r = reasons(&j);
        assert_eq!(r.len(), 6, "{r:?}");
        assert!(r[0].contains("ann is the pull request's author"), "{r:?}");
        assert!(
            r[1].contains("dan may not approve (approvers: users bob, cy)"),
            "{r:?}"
        );
        assert!(r[2].contains("ci[bot] is a bot"), "{r:?}");
        assert!(
            r[3].contains("bob approved commit 222222222222, not the final head 111111111111"),
            "{r:?}"
        );
        assert!(
            r[4].contains("cy requested changes on 2026-03-02T10:05:00Z after approving"),
            "{r:?}"
        );
        assert!(r[5].contains("eve's review 7 was dismissed"), "{r:?}");
    }

    #[test]
    fn too_few_approvals_and_the_latest_review_decides() {
        // bob approves again on the head after a stale approval; a later
        // comment does not revoke it.
        let reviews = [
            review(1, ("bob", 2), "APPROVED", OLD, "2026-03-02T10:00:00Z"),
            review(2, ("bob", 2), "APPROVED", HEAD, "2026-03-02T11:00:00Z"),
            review(3, ("bob", 2), "COMMENTED", HEAD, "2026-03-02T12:00:00Z"),
        ];
        let j = judge(&pr(), &reviews, &policy(None, 2));
        assert_eq!(j.approving.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
        assert!(!j.approved(), "two approvals needed, one given");
        let j = judge(&pr(), &reviews, &policy(None, 1));
        assert!(j.approved());
        // Logins compare without case.
        let j = judge(
            &pr(),
            &[review(
                9,
                ("Bob", 2),
                "APPROVED",
                HEAD,
                "2026-03-02T10:00:00Z",
            )],
            &policy(Some(&["bob"]), 1),
        );
        assert!(j.approved());
    }
}
