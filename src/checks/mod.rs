//! Checks: typed tests over the held evidence. Each has a stable
//! kebab-case code, a default severity (overridable per code in
//! `cleartrail.yml`, or `off`), and a one-paragraph doc. A result records
//! the population checked and every exception (artifact id and reason);
//! results are written to `checks/<code>.json`.

use crate::artifact::canonical;
use crate::diag::{Diagnostic, Level, Severity};
use crate::evidence::{Held, Lite};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const CHECK_SCHEMA: &str = "cleartrail.check/v1";

/// Per (source, kind), the top-level `content` fields the checks (and
/// the pages, for `sha`) read: evaluation keeps these, and the selectors'
/// own, in memory and drops the rest of every artifact's content.
pub const CONTENT_FIELDS: &[(&str, &str, &[&str])] = &[
    (
        "git",
        "change",
        &["sha", "signature", "review_trace", "change_type", "parents"],
    ),
    ("git", "commit", &["sha"]),
    ("git", "merge", &["sha"]),
    ("git", "codeowners", &["rules"]),
    ("files", "document", &["front_matter", "front_matter_error"]),
    (
        "github",
        "branch-protection",
        &[
            "repository",
            "branch",
            "requires_pull_request",
            "required_approving_review_count",
            "allow_force_pushes",
        ],
    ),
    ("github", "member", &["login", "org", "two_factor_disabled"]),
    ("github", "repository-admins", &["repository", "admins"]),
    (
        "github",
        "dependabot-alert",
        &[
            "repository",
            "number",
            "state",
            "severity",
            "created_at",
            "closed_at",
            "resolution",
        ],
    ),
    (
        "github",
        "code-scanning-alert",
        &[
            "repository",
            "number",
            "state",
            "severity",
            "created_at",
            "closed_at",
            "resolution",
        ],
    ),
    (
        "github",
        "secret-scanning-alert",
        &[
            "repository",
            "number",
            "state",
            "severity",
            "created_at",
            "closed_at",
            "resolution",
        ],
    ),
    (
        "github",
        "pull-request",
        &[
            "repository",
            "number",
            "author",
            "head_sha",
            "merge_commit_sha",
            "reviews",
        ],
    ),
    (
        "gdrive",
        "document",
        &["front_matter", "front_matter_error"],
    ),
    // Every kind of a jira source (the kinds are its queries' names).
    (
        "jira",
        "*",
        &[
            "key",
            "status",
            "status_category",
            "severity",
            "assignee",
            "approvers",
            "transitions",
            "created",
            "resolved",
        ],
    ),
];

/// Days a security alert may stay open, by severity: the `sla:` of a
/// github source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Sla {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
}

impl Default for Sla {
    fn default() -> Self {
        Sla {
            critical: 7,
            high: 30,
            medium: 90,
            low: 180,
        }
    }
}

impl Sla {
    /// Days allowed at `severity`; an unknown severity gets the low one's.
    pub fn days(&self, severity: &str) -> u32 {
        match severity {
            "critical" => self.critical,
            "high" => self.high,
            "medium" => self.medium,
            _ => self.low,
        }
    }

    /// The stricter of two, severity by severity (two sources reading the
    /// same owner's alerts).
    pub fn strictest(self, other: Sla) -> Sla {
        Sla {
            critical: self.critical.min(other.critical),
            high: self.high.min(other.high),
            medium: self.medium.min(other.medium),
            low: self.low.min(other.low),
        }
    }
}

/// How the checks judge tickets of jira sources (their `approval:` and
/// `incident_sla:`); each source's judges its own tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
pub struct TicketPolicy {
    /// Kinds (query names) whose tickets need an approval before done.
    pub approval_kinds: std::collections::BTreeSet<String>,
    /// Statuses whose entry is an approval (`Approved`), compared
    /// ignoring case.
    pub approval_statuses: Vec<String>,
    /// Kinds that are incidents, held to `incident_hours`.
    pub incident_kinds: std::collections::BTreeSet<String>,
    /// Hours from creation to resolution, by severity (lower case).
    pub incident_hours: BTreeMap<String, u32>,
}

/// A check's identity and documentation.
pub struct CheckDef {
    pub code: &'static str,
    pub severity: Severity,
    pub doc: &'static str,
}

/// Maximum age of a policy review, in days.
pub const POLICY_REVIEW_DAYS: i64 = 365;

pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        code: "policy-review-overdue",
        severity: Severity::Error,
        doc: "Every policy document (a files or gdrive document with front matter) records a `last_reviewed` date no more than 365 days before the as-of date (the end of the period, or today while the period is running). A policy never reviewed, or reviewed longer ago, is an exception: auditors expect policies to be re-approved yearly.",
    },
    CheckDef {
        code: "policy-missing-owner",
        severity: Severity::Error,
        doc: "Every policy document names an `owner` in its front matter. A policy nobody owns is nobody's job to review, so it goes stale; the owner is also who auditors ask about it.",
    },
    CheckDef {
        code: "commit-unsigned",
        severity: Severity::Warning,
        doc: "Every change of a git source in the period (a commit of the default branch's first-parent history: a merged pull request, a squash or rebase merge, or a direct push) carries a signature (GPG, SSH or X.509). Commits inside merged branches are not changes and are not checked. Signatures tie a change to a key its author (or the forge, for web merges) controls. Whether a signature verifies is `change-signature-unverified`'s concern. A warning by default, since many organisations do not require signed commits; raise it to `error` where policy does.",
    },
    CheckDef {
        code: "change-signature-unverified",
        severity: Severity::Warning,
        doc: "Every signed change of a git source in the period whose signature could be checked (the source configures `allowed_signers` for SSH or `gpg_keyring` for GPG signatures) verifies against those keys. A signature made by a key nobody listed, or that does not match the change, is an exception. Signatures of a kind with no keys configured, and X.509 signatures, are recorded as `unknown` and are outside the population; a forge's web signing key (GitHub's web-flow) verifies only when its public key is in the keyring.",
    },
    CheckDef {
        code: "change-without-review-trace",
        severity: Severity::Error,
        doc: "Every change of a git source in the period (the default branch's first-parent history) shows a review trace in git: it names the pull or merge request it came from (GitHub merge, squash `(#N)` or a `PR #N` line, bors `Auto merge of #N ... r=`, GitLab `See merge request`, Bitbucket `pull request #N`, Gerrit `Reviewed-on:`/`Change-Id:`), or a `Reviewed-by`/`Approved-by` trailer names a reviewer. Direct pushes and local merges with neither are exceptions. A git trace is only a trace: a message can name a pull request nobody approved. So where a github source also reads the repository the git source is a clone of (its `origin` remote), a change is judged by the forge's own record instead: the pull request whose merge commit it is must have an independent approval (as in `pr-merged-without-independent-approval`), and the exception shows the git trace beside; a change no recorded pull request merged is judged by its trace as above.",
    },
    CheckDef {
        code: "pr-merged-without-independent-approval",
        severity: Severity::Error,
        doc: "Every pull request of a github source merged in the period has an independent approval: an approving review by someone other than its author and not a bot, on the final head commit (the commit that was merged), with no later request for changes by that reviewer. An approval of an earlier commit does not cover changes pushed after it; a dismissed approval is not an approval. This is the forge's own record of who approved what, and the authoritative evidence for change management.",
    },
    CheckDef {
        code: "default-branch-unprotected",
        severity: Severity::Error,
        doc: "Every repository of a github source requires an approved pull request to change its default branch, through branch protection or a ruleset that applies to the branch, with at least one approving review. A default branch anyone with write access can push to directly has no change-management gate at all.",
    },
    CheckDef {
        code: "force-push-allowed",
        severity: Severity::Error,
        doc: "No repository of a github source allows force pushes to its default branch: neither its branch protection allows them nor is it left unprotected, unless a ruleset's `non_fast_forward` rule forbids them. A force push rewrites the history that is the evidence of what changed, and when.",
    },
    CheckDef {
        code: "member-without-2fa",
        severity: Severity::Error,
        doc: "Every member of an organization read by a github source has two-factor authentication on. GitHub reports members without it only to an organization owner's token (`filter=2fa_disabled`); a member who signs in with a password alone is one phishing mail away from the code.",
    },
    CheckDef {
        code: "outside-collaborator-with-admin",
        severity: Severity::Error,
        doc: "No outside collaborator (someone who is not a member of the organization) has admin on a repository of a github source. Admin can change branch protection, secrets and who else has access: it belongs to people the organization's own offboarding and reviews of access reach.",
    },
    CheckDef {
        code: "alert-past-sla",
        severity: Severity::Error,
        doc: "Every Dependabot, code-scanning and secret-scanning alert of a github source that was open during the period was fixed, dismissed or resolved within its severity's time (the source's `sla:`, in days: by default critical 7, high 30, medium 90, low 180; a leaked secret is critical; code-scanning rules without a security severity count `error` as high, `warning` as medium, `note` as low). An alert still open at the as-of date (the end of the period, or today while it runs) and older than that is an exception, as is one closed late. Alerts closed before the period began are outside the population.",
    },
    CheckDef {
        code: "ticket-done-without-approval",
        severity: Severity::Error,
        doc: "Every ticket of a jira source whose kind needs approval (the source's `approval.kinds`: by default every query but the incident ones) that reached a done status in the period was approved by someone other than its assignee: a move into an approval status (`approval.statuses`, default `Approved`) made before it was done, by someone other than the assignee, or an approver named in an approver field (`approval.fields`) who is not the assignee. A change or an access grant that its own assignee waved through had no independent approval.",
    },
    CheckDef {
        code: "incident-past-sla",
        severity: Severity::Error,
        doc: "Every incident of a jira source (the kinds under `incident_sla.kinds`, default `incident`) open at some time in the period was resolved within the hours its severity allows (`incident_sla.hours`, by the value of `incident_sla.field`, default the priority: by default Highest 24, High 72, Medium 168, Low 336). An incident still open at the as-of date (measured to its end, or to now while the period runs) and older than that is an exception, as is one resolved late; one a workflow closed without a resolution counts as resolved when it entered its done status. An incident whose severity has no hours set is not judged and not in the population.",
    },
    CheckDef {
        code: "codeowners-missing",
        severity: Severity::Error,
        doc: "Every configured git source has a CODEOWNERS file (in `.github/`, the root or `docs/`) with at least one rule. Code owners are who must review changes to what they own; without the file, review routing is not defined.",
    },
];

pub fn def(code: &str) -> Option<&'static CheckDef> {
    CHECKS.iter().find(|c| c.code == code)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Exception {
    /// The artifact id (shared with the held artifact: a check can have
    /// 100,000 exceptions), or the source it concerns when no artifact
    /// exists.
    pub artifact: Arc<str>,
    pub reason: Box<str>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    pub schema: &'static str,
    pub code: &'static str,
    /// Effective severity after configuration.
    pub severity: Severity,
    pub description: &'static str,
    pub passed: bool,
    /// How many items were checked.
    pub population: u64,
    /// What the population is.
    pub population_query: String,
    pub exceptions: Vec<Exception>,
}

impl CheckResult {
    pub fn path(code: &str) -> String {
        format!("checks/{code}.json")
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        canonical::to_pretty(&canonical::value_of(self))
    }

    /// Exceptions as diagnostics (for annotations), located at the
    /// artifact's file when `held` has it.
    pub fn diagnostics(&self, held: &crate::evidence::Evidence) -> Vec<Diagnostic> {
        self.exceptions
            .iter()
            .map(|e| Diagnostic {
                code: self.code,
                severity: self.severity,
                path: held
                    .get(&e.artifact)
                    .map_or_else(|| e.artifact.to_string(), |h| h.path.to_string()),
                line: None,
                message: format!("{}: {}", e.artifact, e.reason),
            })
            .collect()
    }
}

/// What checks need beyond the evidence.
pub struct CheckContext<'a> {
    pub as_of: NaiveDate,
    /// The run's clock: open incidents are measured to the end of the
    /// as-of date, but never past now.
    pub now: chrono::DateTime<chrono::Utc>,
    pub period: &'a crate::period::Period,
    /// Names of configured git sources (for codeowners-missing).
    pub git_sources: Vec<String>,
    /// Alert SLAs by repository owner (for alert-past-sla; an owner not
    /// listed gets the default).
    pub alert_sla: &'a BTreeMap<String, Sla>,
    /// How tickets of each jira source (by name) are judged.
    pub tickets: &'a BTreeMap<String, TicketPolicy>,
    /// The GitHub repository (`owner/name`, lower case) each git source is
    /// a clone of, from its `origin` remote: where a github source covers
    /// it, its changes are judged by the pull-request record.
    pub git_repos: &'a BTreeMap<String, String>,
    pub severities: &'a BTreeMap<String, Level>,
}

/// Policy documents: documents with front matter, including front matter
/// that does not parse (a broken policy must not escape the checks).
fn is_policy(h: &Held) -> bool {
    matches!((h.source(), h.kind()), ("files" | "gdrive", "document"))
        && (h.content()["front_matter"].is_object()
            || h.content()["front_matter_error"].is_string())
}

/// The front-matter problem of a policy, as an exception reason.
fn broken_front_matter(h: &Held) -> Option<String> {
    h.content()["front_matter_error"]
        .as_str()
        .map(|e| format!("front matter does not parse ({e})"))
}

fn in_period(h: &Held, period: &crate::period::Period) -> bool {
    h.period_end().is_some_and(|d| period.contains(d))
}

/// The change population: `change` artifacts of git sources in the period.
fn changes<'a>(held: &'a [Held], period: &crate::period::Period) -> Vec<&'a Held> {
    held.iter()
        .filter(|h| h.source() == "git" && h.kind() == "change" && in_period(h, period))
        .collect()
}

/// `change 1a2b3c4d5e6f ("summary")`: the commit id a reader looks up.
fn change_label(h: &Held) -> String {
    let sha = h.field("sha").and_then(Lite::as_str).unwrap_or_default();
    let short = sha.get(..12).unwrap_or(sha);
    format!("change {short} (\"{}\")", h.title())
}

/// Why a merged pull request lacks an independent approval, or `None`
/// when it has one (see the check's documentation).
fn without_independent_approval(h: &Held) -> Option<String> {
    let author = h.field("author.login").and_then(Lite::as_str).unwrap_or("");
    let head = h.field("head_sha").and_then(Lite::as_str).unwrap_or("");
    let reviews = h.field("reviews").and_then(Lite::as_array).unwrap_or(&[]);
    let text = |r: &Lite, path: &[&str]| -> String {
        let mut at = r;
        for k in path {
            match at.get(k) {
                Some(v) => at = v,
                None => return String::new(),
            }
        }
        at.as_str().unwrap_or("").to_string()
    };
    let is_bot = |r: &Lite| {
        matches!(
            r.get("reviewer").and_then(|p| p.get("bot")),
            Some(Lite::Bool(true))
        )
    };
    let mut stale = None;
    let mut self_or_bot = false;
    let mut withdrawn = None;
    // Reviews are in order of submission.
    for (i, r) in reviews.iter().enumerate() {
        if text(r, &["state"]) != "APPROVED" {
            continue;
        }
        let who = text(r, &["reviewer", "login"]);
        if who.is_empty() || who == author || is_bot(r) {
            self_or_bot = true;
            continue;
        }
        let commit = text(r, &["commit"]);
        if commit != head {
            stale.get_or_insert((who, commit));
            continue;
        }
        let later_changes = reviews[i + 1..].iter().any(|l| {
            text(l, &["reviewer", "login"]) == who && text(l, &["state"]) == "CHANGES_REQUESTED"
        });
        if later_changes {
            withdrawn.get_or_insert(who);
            continue;
        }
        return None;
    }
    let short = |c: &str| c.get(..12).unwrap_or(c).to_string();
    Some(if let Some(who) = withdrawn {
        format!(
            "was approved by {who}, who then requested changes, and merged without another approval"
        )
    } else if let Some((who, commit)) = stale {
        format!(
            "was approved by {who} on {}, not on the merged head {}",
            short(&commit),
            short(head)
        )
    } else if self_or_bot {
        "was approved only by its author or a bot".to_string()
    } else {
        "was merged with no approving review".to_string()
    })
}

/// The forge's record of the repositories both a git and a github source
/// read: their merged pull requests, by the commit each merge made on the
/// default branch. (Not by the number a message names: a revert or a
/// cherry-pick names the pull request it copies, and would inherit its
/// approval.)
struct PrRecord<'a> {
    cx: &'a CheckContext<'a>,
    covered: std::collections::HashSet<String>,
    by_commit: std::collections::HashMap<(String, String), &'a Held>,
}

impl<'a> PrRecord<'a> {
    fn new(held: &'a [Held], cx: &'a CheckContext<'a>) -> Self {
        let mut r = PrRecord {
            cx,
            covered: Default::default(),
            by_commit: Default::default(),
        };
        if cx.git_repos.is_empty() {
            return r;
        }
        let wanted: std::collections::HashSet<&str> =
            cx.git_repos.values().map(String::as_str).collect();
        for h in held.iter().filter(|h| h.source() == "github") {
            match h.kind() {
                "repository" => {
                    let name =
                        h.id.rsplit_once(':')
                            .map_or("", |x| x.1)
                            .to_ascii_lowercase();
                    if wanted.contains(name.as_str()) {
                        r.covered.insert(name);
                    }
                }
                "pull-request" => {
                    let repo = h
                        .field("repository")
                        .and_then(Lite::as_str)
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if !wanted.contains(repo.as_str()) {
                        continue;
                    }
                    if let Some(sha) = h.field("merge_commit_sha").and_then(Lite::as_str) {
                        r.by_commit.insert((repo, sha.to_string()), h);
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// The judgement of a git change by the pull-request record: `None`
    /// when no github source covers its repository, or no recorded pull
    /// request merged it (the git trace decides then); else pass, or the
    /// reason it fails, with the git trace beside it.
    fn judge(&self, change: &Held) -> Option<Result<(), String>> {
        let source = change.id.split(':').nth(2)?.rsplit_once('/')?.0;
        let repo = self.cx.git_repos.get(source)?;
        if !self.covered.contains(repo) {
            return None;
        }
        let sha = change.field("sha").and_then(Lite::as_str)?;
        let pr = self.by_commit.get(&(repo.clone(), sha.to_string()))?;
        let Some(reason) = without_independent_approval(pr) else {
            return Some(Ok(()));
        };
        let trace = match change.field("review_trace") {
            Some(t) if !t.is_null() => format!(
                "git trace: {}",
                t.get("text").and_then(Lite::as_str).unwrap_or("?")
            ),
            _ => "git trace: none".to_string(),
        };
        let number = pr.field("number").map(lite_text).unwrap_or_default();
        Some(Err(format!(
            "{} came from pull request {repo}#{number}, which {reason} ({trace})",
            change_label(change)
        )))
    }
}

/// A time of a held artifact's content (RFC 3339).
fn content_time(h: &Held, key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = h.field(key).and_then(Lite::as_str)?;
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// When a ticket last moved into its done status (RFC 3339, as stored),
/// if that was in the period (up to the as-of date); its resolution time
/// when the changelog has no such move.
fn ticket_done_in(h: &Held, cx: &CheckContext<'_>) -> Option<String> {
    if h.field("status_category").and_then(Lite::as_str) != Some("done") {
        return None;
    }
    let text = |t: &Lite, k: &str| t.get(k).and_then(Lite::as_str).unwrap_or("").to_string();
    let status = h.field("status").and_then(Lite::as_str).unwrap_or("");
    let done = h
        .field("transitions")
        .and_then(Lite::as_array)
        .unwrap_or(&[])
        .iter()
        .rev()
        .find(|t| text(t, "to").eq_ignore_ascii_case(status))
        .map(|t| text(t, "at"))
        .or_else(|| {
            h.field("resolved")
                .and_then(Lite::as_str)
                .map(str::to_string)
        })?;
    let day = chrono::DateTime::parse_from_rfc3339(&done)
        .ok()?
        .with_timezone(&chrono::Utc)
        .date_naive();
    (cx.period.contains(day) && day <= cx.as_of).then_some(done)
}

/// The policy of the jira source a ticket came from (its object id is
/// `<source>/<key>`).
fn ticket_policy<'a>(h: &Held, cx: &'a CheckContext<'_>) -> Option<&'a TicketPolicy> {
    let object = h.id.splitn(3, ':').nth(2)?;
    cx.tickets.get(object.split('/').next()?)
}

/// Why a ticket done at `done_at` lacks an independent approval, if it
/// does.
fn without_ticket_approval(h: &Held, done_at: &str, cx: &CheckContext<'_>) -> Option<String> {
    let key = h.field("key").and_then(Lite::as_str).unwrap_or("?");
    let assignee = h
        .field("assignee.account_id")
        .and_then(Lite::as_str)
        .unwrap_or("");
    let text = |t: &Lite, path: &[&str]| -> String {
        let mut at = t;
        for k in path {
            match at.get(k) {
                Some(v) => at = v,
                None => return String::new(),
            }
        }
        at.as_str().unwrap_or("").to_string()
    };
    let transitions = h
        .field("transitions")
        .and_then(Lite::as_array)
        .unwrap_or(&[]);
    let policy = ticket_policy(h, cx)?;
    let approval_status = |s: &str| {
        policy
            .approval_statuses
            .iter()
            .any(|a| a.eq_ignore_ascii_case(s))
    };
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let done = parse(done_at);
    let mut self_approved = false;
    for t in transitions {
        let after_done = match (parse(&text(t, &["at"])), done) {
            (Some(at), Some(done)) => at > done,
            _ => false,
        };
        if !approval_status(&text(t, &["to"])) || after_done {
            continue;
        }
        let by = text(t, &["by", "account_id"]);
        if !by.is_empty() && by != assignee {
            return None;
        }
        self_approved = true;
    }
    let approvers = h.field("approvers").and_then(Lite::as_array).unwrap_or(&[]);
    if approvers.iter().any(|a| {
        let id = text(a, &["account_id"]);
        !id.is_empty() && id != assignee
    }) {
        return None;
    }
    let who = h
        .field("assignee.name")
        .and_then(Lite::as_str)
        .unwrap_or("its assignee");
    Some(if self_approved || !approvers.is_empty() {
        format!(
            "{} ticket {key} was done with approval only by its assignee ({who})",
            h.kind()
        )
    } else {
        format!(
            "{} ticket {key} was done with no approval: no move into {} by anyone but its assignee, and no approver named",
            h.kind(),
            policy.approval_statuses.join(" or ")
        )
    })
}

/// When an incident was resolved: its resolution time, or, for one a
/// workflow closed without setting a resolution, its last move into the
/// (done) status it is in.
fn incident_resolved(h: &Held) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Some(r) = content_time(h, "resolved") {
        return Some(r);
    }
    if h.field("status_category").and_then(Lite::as_str) != Some("done") {
        return None;
    }
    let status = h.field("status").and_then(Lite::as_str)?;
    h.field("transitions")
        .and_then(Lite::as_array)?
        .iter()
        .rev()
        .find(|t| {
            t.get("to")
                .and_then(Lite::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(status))
        })
        .and_then(|t| t.get("at").and_then(Lite::as_str))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Whether an incident was open at some time from the period's start to
/// the as-of date, and its severity has hours set (one without is not
/// judged, so not counted as judged).
fn incident_in_period(h: &Held, cx: &CheckContext<'_>) -> bool {
    let Some(created) = content_time(h, "created") else {
        return false;
    };
    let severity = h.field("severity").map(lite_text).unwrap_or_default();
    ticket_policy(h, cx).is_some_and(|p| {
        p.incident_hours
            .contains_key(&severity.to_ascii_lowercase())
    }) && created.date_naive() <= cx.as_of
        && incident_resolved(h).is_none_or(|r| r.date_naive() >= cx.period.start())
}

/// Why an incident broke its SLA, if it did.
fn incident_late(h: &Held, cx: &CheckContext<'_>) -> Option<String> {
    let key = h.field("key").and_then(Lite::as_str).unwrap_or("?");
    let severity = h.field("severity").map(lite_text).unwrap_or_default();
    let hours = *ticket_policy(h, cx)?
        .incident_hours
        .get(&severity.to_ascii_lowercase())?;
    let created = content_time(h, "created")?;
    // Open incidents are measured to the end of the as-of date, but never
    // past now: while the period runs, the rest of today has not happened.
    let end_of_as_of = cx
        .as_of
        .and_hms_opt(23, 59, 59)
        .map(|t| t.and_utc())
        .unwrap_or(created)
        .min(cx.now);
    let resolved = incident_resolved(h).filter(|r| *r <= end_of_as_of);
    let elapsed = resolved.unwrap_or(end_of_as_of) - created;
    if elapsed <= chrono::Duration::hours(i64::from(hours)) {
        return None;
    }
    let took = elapsed.num_hours();
    Some(match resolved {
        Some(r) => format!(
            "incident {key} ({severity}) opened {} was resolved {}, after {took} hours: past its {hours}-hour SLA",
            created.format("%Y-%m-%d %H:%M"),
            r.format("%Y-%m-%d %H:%M")
        ),
        None => format!(
            "incident {key} ({severity}) opened {} is still open on {}, {took} hours: past its {hours}-hour SLA",
            created.format("%Y-%m-%d %H:%M"),
            cx.as_of
        ),
    })
}

/// A date of an alert's content (RFC 3339, taken as a UTC day).
fn alert_day(h: &Held, key: &str) -> Option<NaiveDate> {
    let t = h.field(key).and_then(Lite::as_str)?;
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc).date_naive())
}

/// When an alert was closed, if it was by the as-of date; later closings
/// (read after a past period) leave it open at that date.
fn alert_closed(h: &Held, cx: &CheckContext<'_>) -> Option<NaiveDate> {
    alert_day(h, "closed_at").filter(|d| *d <= cx.as_of)
}

/// Whether an alert was open at some time from the period's start to the
/// as-of date.
fn alert_in_period(h: &Held, cx: &CheckContext<'_>) -> bool {
    let Some(created) = alert_day(h, "created_at") else {
        return false;
    };
    created <= cx.as_of && alert_closed(h, cx).is_none_or(|c| c >= cx.period.start())
}

/// Why an alert broke its SLA, if it did.
fn past_sla(h: &Held, cx: &CheckContext<'_>) -> Option<String> {
    let repo = h.field("repository").and_then(Lite::as_str).unwrap_or("?");
    let owner = repo.split('/').next().unwrap_or_default();
    let sla = cx
        .alert_sla
        .get(&owner.to_ascii_lowercase())
        .copied()
        .unwrap_or_default();
    let severity = h
        .field("severity")
        .and_then(Lite::as_str)
        .unwrap_or("unknown");
    let allowed = i64::from(sla.days(severity));
    let created = alert_day(h, "created_at")?;
    let label = format!(
        "{} alert {repo}#{} ({severity})",
        h.kind().trim_end_matches("-alert"),
        h.field("number").map(lite_text).unwrap_or_default()
    );
    match alert_closed(h, cx) {
        Some(closed) => {
            let took = (closed - created).num_days();
            let how = h
                .field("resolution")
                .and_then(Lite::as_str)
                .unwrap_or("closed");
            (took > allowed).then(|| {
                format!("{label} opened {created} was closed ({how}) on {closed}, after {took} days: past its {allowed}-day SLA")
            })
        }
        None => {
            let age = (cx.as_of - created).num_days();
            (age > allowed).then(|| {
                format!("{label} opened {created} is still open on {}, {age} days: past its {allowed}-day SLA", cx.as_of)
            })
        }
    }
}

fn lite_text(v: &Lite) -> String {
    match v {
        Lite::String(s) => s.to_string(),
        Lite::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Runs every check that is not `off`, in catalog order.
pub fn run(held: &[Held], cx: &CheckContext<'_>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for def in CHECKS {
        let severity = match cx.severities.get(def.code) {
            Some(Level::Off) => continue,
            Some(Level::On(s)) => *s,
            None => def.severity,
        };
        let mut exceptions = Vec::new();
        // Exceptions about a source as a whole, with no artifact to point at.
        let mut missing_source = Vec::new();
        let mut exception = |h: &Held, reason: String| {
            exceptions.push(Exception {
                artifact: h.id.clone(),
                reason: reason.into_boxed_str(),
            });
        };
        let (population, query) = match def.code {
            "policy-review-overdue" => {
                let pop: Vec<&Held> = held.iter().filter(|h| is_policy(h)).collect();
                for h in &pop {
                    if let Some(reason) = broken_front_matter(h) {
                        exception(h, reason);
                        continue;
                    }
                    let reviewed = h.content()["front_matter"]["last_reviewed"]
                        .as_str()
                        .and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok());
                    match reviewed {
                        None => exception(
                            h,
                            "no `last_reviewed` date (YYYY-MM-DD) in its front matter".into(),
                        ),
                        Some(d) if (cx.as_of - d).num_days() > POLICY_REVIEW_DAYS => exception(
                            h,
                            format!(
                                "last reviewed {d}, more than {POLICY_REVIEW_DAYS} days before {}",
                                cx.as_of
                            ),
                        ),
                        Some(d) if d > cx.as_of => exception(
                            h,
                            format!(
                                "last reviewed {d}, after {}: no review on record by then",
                                cx.as_of
                            ),
                        ),
                        Some(_) => {}
                    }
                }
                (
                    pop.len(),
                    "documents with front matter (files, gdrive)".to_string(),
                )
            }
            "policy-missing-owner" => {
                let pop: Vec<&Held> = held.iter().filter(|h| is_policy(h)).collect();
                for h in &pop {
                    if let Some(reason) = broken_front_matter(h) {
                        exception(h, reason);
                        continue;
                    }
                    let owner = h.content()["front_matter"]["owner"]
                        .as_str()
                        .map(str::trim)
                        .unwrap_or("");
                    if owner.is_empty() {
                        exception(h, "no `owner` in its front matter".into());
                    }
                }
                (
                    pop.len(),
                    "documents with front matter (files, gdrive)".to_string(),
                )
            }
            "commit-unsigned" => {
                let pop = changes(held, cx.period);
                for h in &pop {
                    if h.field("signature.type").is_none_or(Lite::is_null) {
                        exception(h, format!("{} is not signed", change_label(h)));
                    }
                }
                (
                    pop.len(),
                    format!(
                        "git changes (first-parent history of the branch) dated in {}",
                        cx.period
                    ),
                )
            }
            "pr-merged-without-independent-approval" => {
                let pop: Vec<&Held> = held
                    .iter()
                    .filter(|h| {
                        h.source() == "github"
                            && h.kind() == "pull-request"
                            && in_period(h, cx.period)
                    })
                    .collect();
                for h in &pop {
                    if let Some(reason) = without_independent_approval(h) {
                        let label = format!(
                            "{}#{}",
                            h.field("repository").and_then(Lite::as_str).unwrap_or("?"),
                            h.field("number").map(lite_text).unwrap_or_default()
                        );
                        exception(h, format!("pull request {label} {reason}"));
                    }
                }
                (
                    pop.len(),
                    format!("GitHub pull requests merged in {}", cx.period),
                )
            }
            "default-branch-unprotected" | "force-push-allowed" => {
                let pop: Vec<&Held> = held
                    .iter()
                    .filter(|h| h.source() == "github" && h.kind() == "branch-protection")
                    .collect();
                for h in &pop {
                    let text = |k: &str| h.field(k).and_then(Lite::as_str).unwrap_or("?");
                    let yes = |k: &str| matches!(h.field(k), Some(Lite::Bool(true)));
                    let label = format!(
                        "{}: default branch `{}`",
                        text("repository"),
                        text("branch")
                    );
                    if def.code == "force-push-allowed" {
                        if yes("allow_force_pushes") {
                            exception(h, format!("{label} accepts force pushes"));
                        }
                        continue;
                    }
                    let approvals = h
                        .field("required_approving_review_count")
                        .map(lite_text)
                        .unwrap_or_default();
                    if !yes("requires_pull_request") {
                        exception(
                            h,
                            format!(
                                "{label} requires no pull request: neither branch protection nor a ruleset"
                            ),
                        );
                    } else if approvals == "0" || approvals.is_empty() {
                        exception(
                            h,
                            format!("{label} requires a pull request but no approving review"),
                        );
                    }
                }
                (
                    pop.len(),
                    "default branches of the repositories of github sources".to_string(),
                )
            }
            "member-without-2fa" => {
                let pop: Vec<&Held> = held
                    .iter()
                    .filter(|h| h.source() == "github" && h.kind() == "member")
                    .collect();
                for h in &pop {
                    if matches!(h.field("two_factor_disabled"), Some(Lite::Bool(true))) {
                        let login = h.field("login").and_then(Lite::as_str).unwrap_or("?");
                        let org = h.field("org").and_then(Lite::as_str).unwrap_or("?");
                        exception(
                            h,
                            format!(
                                "{login}, a member of {org}, has two-factor authentication off"
                            ),
                        );
                    }
                }
                (
                    pop.len(),
                    "members of the organizations of github sources".to_string(),
                )
            }
            "outside-collaborator-with-admin" => {
                let pop: Vec<&Held> = held
                    .iter()
                    .filter(|h| h.source() == "github" && h.kind() == "repository-admins")
                    .collect();
                for h in &pop {
                    let repo = h.field("repository").and_then(Lite::as_str).unwrap_or("?");
                    let outsiders: Vec<String> = h
                        .field("admins")
                        .and_then(Lite::as_array)
                        .unwrap_or(&[])
                        .iter()
                        .filter(|a| matches!(a.get("outside_collaborator"), Some(Lite::Bool(true))))
                        .map(|a| a.get("login").map(lite_text).unwrap_or_default())
                        .collect();
                    if !outsiders.is_empty() {
                        exception(
                            h,
                            format!(
                                "{repo}: outside collaborator{} {} {} admin",
                                if outsiders.len() == 1 { "" } else { "s" },
                                outsiders.join(", "),
                                if outsiders.len() == 1 { "has" } else { "have" }
                            ),
                        );
                    }
                }
                (pop.len(), "repositories of github sources".to_string())
            }
            "alert-past-sla" => {
                let pop: Vec<&Held> = held
                    .iter()
                    .filter(|h| {
                        h.source() == "github"
                            && matches!(
                                h.kind(),
                                "dependabot-alert"
                                    | "code-scanning-alert"
                                    | "secret-scanning-alert"
                            )
                            && alert_in_period(h, cx)
                    })
                    .collect();
                for h in &pop {
                    if let Some(reason) = past_sla(h, cx) {
                        exception(h, reason);
                    }
                }
                (
                    pop.len(),
                    format!(
                        "GitHub security alerts open at some time in {} (up to {})",
                        cx.period, cx.as_of
                    ),
                )
            }
            "ticket-done-without-approval" => {
                // Each with the time it was done (read once).
                let pop: Vec<(&Held, String)> = held
                    .iter()
                    .filter(|h| {
                        h.source() == "jira"
                            && ticket_policy(h, cx)
                                .is_some_and(|p| p.approval_kinds.contains(h.kind()))
                    })
                    .filter_map(|h| Some((h, ticket_done_in(h, cx)?)))
                    .collect();
                for (h, done_at) in &pop {
                    if let Some(reason) = without_ticket_approval(h, done_at, cx) {
                        exception(h, reason);
                    }
                }
                (
                    pop.len(),
                    format!(
                        "Jira tickets of kinds needing approval ({}) done in {}",
                        cx.tickets
                            .iter()
                            .flat_map(|(s, p)| p
                                .approval_kinds
                                .iter()
                                .map(move |k| format!("{s}/{k}")))
                            .collect::<Vec<_>>()
                            .join(", "),
                        cx.period
                    ),
                )
            }
            "incident-past-sla" => {
                let pop: Vec<&Held> = held
                    .iter()
                    .filter(|h| {
                        h.source() == "jira"
                            && ticket_policy(h, cx)
                                .is_some_and(|p| p.incident_kinds.contains(h.kind()))
                            && incident_in_period(h, cx)
                    })
                    .collect();
                for h in &pop {
                    if let Some(reason) = incident_late(h, cx) {
                        exception(h, reason);
                    }
                }
                (
                    pop.len(),
                    format!(
                        "Jira incidents open at some time in {} (up to {})",
                        cx.period, cx.as_of
                    ),
                )
            }
            "change-signature-unverified" => {
                let pop: Vec<&Held> = changes(held, cx.period)
                    .into_iter()
                    .filter(|h| {
                        matches!(
                            h.field("signature.status").and_then(Lite::as_str),
                            Some("verified" | "unverified")
                        )
                    })
                    .collect();
                for h in &pop {
                    if h.field("signature.status").and_then(Lite::as_str) == Some("unverified") {
                        let sig = |k: &str| {
                            h.field(&format!("signature.{k}"))
                                .and_then(Lite::as_str)
                                .unwrap_or("?")
                                .to_string()
                        };
                        exception(
                            h,
                            format!(
                                "{} is signed ({} key {}) but does not verify against the configured keys: {}",
                                change_label(h),
                                sig("type"),
                                sig("key"),
                                sig("detail")
                            ),
                        );
                    }
                }
                (
                    pop.len(),
                    format!(
                        "signed git changes dated in {} whose kind of signature has keys configured",
                        cx.period
                    ),
                )
            }
            "change-without-review-trace" => {
                let pop = changes(held, cx.period);
                let record = PrRecord::new(held, cx);
                for h in &pop {
                    if let Some(judged) = record.judge(h) {
                        if let Err(reason) = judged {
                            exception(h, reason);
                        }
                        continue;
                    }
                    if h.field("review_trace").is_none_or(Lite::is_null) {
                        let how = match h.field("change_type").and_then(Lite::as_str) {
                            Some("direct")
                                if h.field("parents")
                                    .and_then(Lite::as_array)
                                    .is_some_and(|p| p.len() > 1) =>
                            {
                                "a merge made outside any pull request"
                            }
                            Some("direct") => "a direct push",
                            _ => "a change",
                        };
                        exception(
                            h,
                            format!(
                                "{} is {how}: it names no pull or merge request and no reviewer",
                                change_label(h)
                            ),
                        );
                    }
                }
                (
                    pop.len(),
                    format!(
                        "git changes (first-parent history of the branch) dated in {}; where a github source covers the repository, judged by the pull request that merged each",
                        cx.period
                    ),
                )
            }
            "codeowners-missing" => {
                for name in &cx.git_sources {
                    let prefix = format!("git:codeowners:{name}/");
                    match held.iter().find(|h| h.id.starts_with(&prefix)) {
                        None => missing_source.push(Exception {
                            artifact: format!("git source `{name}`").into(),
                            reason: "no CODEOWNERS file in .github/, the root or docs/".into(),
                        }),
                        Some(h) if h.content()["rules"].as_array().is_none_or(|r| r.is_empty()) => {
                            exception(h, "CODEOWNERS has no rules".into())
                        }
                        Some(_) => {}
                    }
                }
                (cx.git_sources.len(), "configured git sources".to_string())
            }
            _ => unreachable!("every check code is handled"),
        };
        exceptions.extend(missing_source);
        out.push(CheckResult {
            schema: CHECK_SCHEMA,
            code: def.code,
            severity,
            description: def.doc,
            passed: exceptions.is_empty(),
            population: population as u64,
            population_query: query,
            exceptions,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A held `change` artifact; the one place that builds `Held` here.
    fn change(sha: &str, day: &str, content: Value) -> Held {
        let mut content = content;
        content["sha"] = json!(sha);
        Held::from_document(
            format!("evidence/git/change/app/{sha}.json"),
            json!({
                "id": format!("git:change:app/{sha}"),
                "source": "git",
                "kind": "change",
                "title": format!("summary {sha}"),
                "period": {"start": day, "end": day},
                "content": content,
            }),
            &crate::evidence::Keep::All,
        )
        .unwrap()
    }

    fn run_one(held: &[Held], code: &str) -> CheckResult {
        let period: crate::period::Period = "2026".parse().unwrap();
        let severities = BTreeMap::new();
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
        run(held, &cx).into_iter().find(|r| r.code == code).unwrap()
    }

    fn sig(kind: Option<&str>, status: Option<&str>) -> Value {
        json!({"type": kind, "key": kind.map(|_| "ABCD"), "status": status, "detail": status.map(|_| "no matching key")})
    }

    fn github(kind: &str, object: &str, content: Value, day: &str) -> Held {
        Held::from_document(
            format!("evidence/github/{kind}/{object}.json"),
            json!({
                "id": format!("github:{kind}:{object}"),
                "source": "github",
                "kind": kind,
                "title": object,
                "period": if day.is_empty() { Value::Null } else { json!({"start": day, "end": day}) },
                "content": content,
            }),
            &crate::evidence::Keep::All,
        )
        .unwrap()
    }

    /// Where a github source covers the repository a git source clones,
    /// a change is judged by the pull request that merged it (found by its
    /// merge commit), with the git trace beside; a change no pull request
    /// merged is judged by its trace.
    #[test]
    fn changes_of_a_covered_repository_are_judged_by_the_pull_request_record() {
        let sha = |c: char| c.to_string().repeat(40);
        let review = |who: &str, head: &str| json!({"reviewer": {"login": who, "bot": false}, "state": "APPROVED", "commit": head});
        let pr = |n: u64, merge: &str, reviews: Value| {
            github(
                "pull-request",
                &format!("Acme/API/{n}"),
                json!({"repository": "Acme/API", "number": n, "author": {"login": "dev"},
                       "head_sha": format!("h{n}"), "merge_commit_sha": merge, "reviews": reviews}),
                "2026-03-01",
            )
        };
        let traced =
            |n: u64| json!({"kind": "pull-request-reference", "text": format!("Fix (#{n})")});
        let held = [
            github("repository", "Acme/API", json!({}), ""),
            pr(12, &sha('a'), json!([review("dev", "h12")])),
            pr(13, &sha('e'), json!([review("rev", "h13")])),
            pr(15, "merged-elsewhere", json!([])),
            change(
                &sha('a'),
                "2026-03-01",
                json!({"sha": sha('a'), "change_type": "squash", "review_trace": traced(12),
                   "pull_request": {"system": "github", "number": 12}}),
            ),
            // A rebase merge leaves no trace in git; the record approves it.
            change(
                &sha('e'),
                "2026-03-02",
                json!({"sha": sha('e'), "change_type": "direct", "parents": ["1"], "review_trace": null}),
            ),
            // Names #15 (a cherry-pick, say) but is not its merge commit:
            // judged by its trace, never by #15's record.
            change(
                &sha('c'),
                "2026-03-03",
                json!({"sha": sha('c'), "change_type": "squash", "review_trace": traced(15),
                   "pull_request": {"system": "github", "number": 15}}),
            ),
            // No pull request merged it: the git trace decides.
            change(
                &sha('b'),
                "2026-03-04",
                json!({"sha": sha('b'), "change_type": "direct", "parents": ["1"], "review_trace": null}),
            ),
            change(
                &sha('d'),
                "2026-03-05",
                json!({"sha": sha('d'), "change_type": "squash", "review_trace": traced(99),
                   "pull_request": {"system": "github", "number": 99}}),
            ),
        ];
        let period: crate::period::Period = "2026".parse().unwrap();
        let severities = BTreeMap::new();
        let git_repos: BTreeMap<String, String> =
            [("app".to_string(), "acme/api".to_string())].into();
        let cx = CheckContext {
            as_of: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            now: chrono::DateTime::from_timestamp(1_798_761_599, 0).unwrap(),
            period: &period,
            git_sources: vec!["app".into()],
            alert_sla: &BTreeMap::new(),
            tickets: &Default::default(),
            git_repos: &git_repos,
            severities: &severities,
        };
        let r = run(&held, &cx)
            .into_iter()
            .find(|r| r.code == "change-without-review-trace")
            .unwrap();
        assert_eq!(r.population, 5);
        let reasons: Vec<&str> = r.exceptions.iter().map(|e| &*e.reason).collect();
        assert_eq!(
            reasons,
            [
                "change aaaaaaaaaaaa (\"summary aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\") came from pull request acme/api#12, which was approved only by its author or a bot (git trace: Fix (#12))",
                "change bbbbbbbbbbbb (\"summary bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\") is a direct push: it names no pull or merge request and no reviewer",
            ]
        );
        // Without the mapping, the git trace alone judges (and passes the
        // traced ones).
        let r = run_one(&held, "change-without-review-trace");
        assert_eq!(r.exceptions.len(), 2);
    }

    /// Each jira source's policy judges its own tickets only: `ops` needs
    /// no approval for its changes, `eng` does.
    #[test]
    fn a_jira_sources_policy_judges_its_own_tickets() {
        let ticket = |source: &str| {
            Held::from_document(
                format!("evidence/jira/change/{source}/X-1.json"),
                json!({
                    "id": format!("jira:change:{source}/X-1"),
                    "source": "jira", "kind": "change", "title": "X-1",
                    "period": {"start": "2026-03-01", "end": "2026-03-04"},
                    "content": {"key": "X-1", "status": "Done", "status_category": "done",
                                "assignee": {"account_id": "ann"}, "approvers": [],
                                "resolved": "2026-03-04T10:00:00Z",
                                "transitions": [{"at": "2026-03-04T10:00:00.000Z", "by": {"account_id": "ann"}, "from": "Open", "to": "Done"}]},
                }),
                &crate::evidence::Keep::All,
            )
            .unwrap()
        };
        let held = [ticket("eng"), ticket("ops")];
        let needs = TicketPolicy {
            approval_kinds: ["change".to_string()].into(),
            approval_statuses: vec!["Approved".into()],
            ..Default::default()
        };
        let tickets: BTreeMap<String, TicketPolicy> = [
            ("eng".to_string(), needs),
            ("ops".to_string(), TicketPolicy::default()),
        ]
        .into();
        let period: crate::period::Period = "2026".parse().unwrap();
        let severities = BTreeMap::new();
        let cx = CheckContext {
            as_of: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            now: chrono::DateTime::from_timestamp(1_798_761_599, 0).unwrap(),
            period: &period,
            git_sources: Vec::new(),
            alert_sla: &BTreeMap::new(),
            tickets: &tickets,
            git_repos: &BTreeMap::new(),
            severities: &severities,
        };
        let r = run(&held, &cx)
            .into_iter()
            .find(|r| r.code == "ticket-done-without-approval")
            .unwrap();
        assert_eq!(r.population, 1);
        assert_eq!(&*r.exceptions[0].artifact, "jira:change:eng/X-1");
    }

    #[test]
    fn remotes_name_their_repository() {
        use crate::audit::remote_repository as repo;
        assert_eq!(
            repo("https://github.com/Acme/API.git").as_deref(),
            Some("acme/api")
        );
        assert_eq!(
            repo("git@github.com:acme/api.git").as_deref(),
            Some("acme/api")
        );
        assert_eq!(
            repo("ssh://git@ghe.example.com/acme/api").as_deref(),
            Some("acme/api")
        );
        assert_eq!(
            repo("https://ghe.example.com/acme/api/").as_deref(),
            Some("acme/api")
        );
        assert_eq!(repo("/srv/git/api.git"), None);
    }

    #[test]
    fn review_trace_covers_every_change_direct_pushes_included() {
        let held = [
            change(
                "aaaaaaaaaaaaaaaa",
                "2026-02-01",
                json!({"change_type": "merge", "parents": ["1", "2"], "review_trace": {"kind": "pull-request-reference", "text": "x"}}),
            ),
            change(
                "bbbbbbbbbbbbbbbb",
                "2026-02-02",
                json!({"change_type": "direct", "parents": ["1"], "review_trace": null}),
            ),
            change(
                "cccccccccccccccc",
                "2026-02-03",
                json!({"change_type": "direct", "parents": ["1", "2"], "review_trace": null}),
            ),
            // Outside the period: not in the population.
            change(
                "dddddddddddddddd",
                "2025-12-31",
                json!({"change_type": "direct", "parents": ["1"], "review_trace": null}),
            ),
        ];
        let r = run_one(&held, "change-without-review-trace");
        assert_eq!(r.population, 3);
        let reasons: Vec<(&str, &str)> = r
            .exceptions
            .iter()
            .map(|e| (&*e.artifact, &*e.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "git:change:app/bbbbbbbbbbbbbbbb",
                    "change bbbbbbbbbbbb (\"summary bbbbbbbbbbbbbbbb\") is a direct push: it names no pull or merge request and no reviewer"
                ),
                (
                    "git:change:app/cccccccccccccccc",
                    "change cccccccccccc (\"summary cccccccccccccccc\") is a merge made outside any pull request: it names no pull or merge request and no reviewer"
                ),
            ]
        );
    }

    #[test]
    fn unsigned_and_unverified_are_separate_exceptions() {
        let held = [
            change(
                "aaaaaaaaaaaaaaaa",
                "2026-02-01",
                json!({"signature": sig(None, None)}),
            ),
            change(
                "bbbbbbbbbbbbbbbb",
                "2026-02-01",
                json!({"signature": sig(Some("gpg"), Some("verified"))}),
            ),
            change(
                "cccccccccccccccc",
                "2026-02-01",
                json!({"signature": sig(Some("ssh"), Some("unverified"))}),
            ),
            change(
                "dddddddddddddddd",
                "2026-02-01",
                json!({"signature": sig(Some("gpg"), Some("unknown"))}),
            ),
        ];
        let unsigned = run_one(&held, "commit-unsigned");
        assert_eq!(unsigned.population, 4);
        let ids: Vec<&str> = unsigned.exceptions.iter().map(|e| &*e.artifact).collect();
        assert_eq!(ids, ["git:change:app/aaaaaaaaaaaaaaaa"]);
        let unverified = run_one(&held, "change-signature-unverified");
        // `unknown` (no keys configured) is outside the population.
        assert_eq!(unverified.population, 2);
        assert_eq!(unverified.exceptions.len(), 1);
        assert_eq!(
            &*unverified.exceptions[0].artifact,
            "git:change:app/cccccccccccccccc"
        );
        assert!(
            unverified.exceptions[0]
                .reason
                .contains("signed (ssh key ABCD) but does not verify against the configured keys: no matching key"),
            "{}",
            unverified.exceptions[0].reason
        );
    }

    #[test]
    fn check_codes_are_unique_and_documented() {
        let mut codes: Vec<&str> = CHECKS.iter().map(|c| c.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CHECKS.len());
        assert!(CHECKS.iter().all(|c| c.doc.len() > 80));
        assert!(def("merge-without-review-trace").is_none());
    }

    /// A held github `pull-request` artifact merged on `day`.
    fn pull(number: u64, day: &str, author: &str, head: &str, reviews: Value) -> Held {
        Held::from_document(
            format!("evidence/github/pull-request/acme/api/{number}.json"),
            json!({
                "id": format!("github:pull-request:acme/api/{number}"),
                "source": "github",
                "kind": "pull-request",
                "title": format!("PR {number}"),
                "period": {"start": day, "end": day},
                "content": {
                    "repository": "acme/api",
                    "number": number,
                    "author": {"login": author, "bot": false},
                    "head_sha": head,
                    "reviews": reviews,
                },
            }),
            &crate::evidence::Keep::All,
        )
        .unwrap()
    }

    fn review(who: &str, state: &str, commit: &str, bot: bool) -> Value {
        json!({"reviewer": {"login": who, "bot": bot}, "state": state, "commit": commit, "submitted_at": "2026-03-01T10:00:00Z"})
    }

    #[test]
    fn pull_requests_need_an_independent_approval_of_the_merged_head() {
        let held = vec![
            // Approved by a colleague on the head: fine.
            pull(
                1,
                "2026-03-02",
                "ann",
                "h1",
                json!([review("bob", "APPROVED", "h1", false)]),
            ),
            // No review at all.
            pull(2, "2026-03-02", "ann", "h2", json!([])),
            // Only the author and a bot approved.
            pull(
                3,
                "2026-03-02",
                "ann",
                "h3",
                json!([
                    review("ann", "APPROVED", "h3", false),
                    review("renovate", "APPROVED", "h3", true),
                ]),
            ),
            // Approved before the last push.
            pull(
                4,
                "2026-03-02",
                "ann",
                "h4-final",
                json!([review("bob", "APPROVED", "h4-first", false)]),
            ),
            // Approved, then the same reviewer asked for changes.
            pull(
                5,
                "2026-03-02",
                "ann",
                "h5",
                json!([
                    review("bob", "APPROVED", "h5", false),
                    review("bob", "CHANGES_REQUESTED", "h5", false),
                ]),
            ),
            // One reviewer asked for changes, another approved the head.
            pull(
                6,
                "2026-03-02",
                "ann",
                "h6",
                json!([
                    review("cy", "CHANGES_REQUESTED", "h6", false),
                    review("bob", "APPROVED", "h6", false),
                    review("cy", "COMMENTED", "h6", false),
                ]),
            ),
            // Merged outside the period: not in the population.
            pull(7, "2025-12-30", "ann", "h7", json!([])),
        ];
        let r = run_one(&held, "pr-merged-without-independent-approval");
        assert_eq!(r.population, 6);
        let got: Vec<(&str, &str)> = r
            .exceptions
            .iter()
            .map(|e| (&*e.artifact, &*e.reason))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "github:pull-request:acme/api/2",
                    "pull request acme/api#2 was merged with no approving review"
                ),
                (
                    "github:pull-request:acme/api/3",
                    "pull request acme/api#3 was approved only by its author or a bot"
                ),
                (
                    "github:pull-request:acme/api/4",
                    "pull request acme/api#4 was approved by bob on h4-first, not on the merged head h4-final"
                ),
                (
                    "github:pull-request:acme/api/5",
                    "pull request acme/api#5 was approved by bob, who then requested changes, and merged without another approval"
                ),
            ]
        );
    }

    fn protection(repo: &str, content: Value) -> Held {
        let mut content = content;
        content["repository"] = json!(repo);
        content["branch"] = json!("main");
        Held::from_document(
            format!("evidence/github/branch-protection/{repo}.json"),
            json!({
                "id": format!("github:branch-protection:{repo}"),
                "source": "github",
                "kind": "branch-protection",
                "title": repo,
                "content": content,
            }),
            &crate::evidence::Keep::All,
        )
        .unwrap()
    }

    #[test]
    fn default_branches_need_reviewed_pull_requests_and_no_force_pushes() {
        let held = vec![
            protection(
                "a/ok",
                json!({"requires_pull_request": true, "required_approving_review_count": 1, "allow_force_pushes": false}),
            ),
            protection(
                "a/open",
                json!({"requires_pull_request": false, "required_approving_review_count": 0, "allow_force_pushes": true}),
            ),
            protection(
                "a/zero",
                json!({"requires_pull_request": true, "required_approving_review_count": 0, "allow_force_pushes": false}),
            ),
        ];
        let unprotected = run_one(&held, "default-branch-unprotected");
        assert_eq!(unprotected.population, 3);
        let got: Vec<&str> = unprotected.exceptions.iter().map(|e| &*e.reason).collect();
        assert_eq!(
            got,
            [
                "a/open: default branch `main` requires no pull request: neither branch protection nor a ruleset",
                "a/zero: default branch `main` requires a pull request but no approving review",
            ]
        );
        let force = run_one(&held, "force-push-allowed");
        let got: Vec<&str> = force.exceptions.iter().map(|e| &*e.artifact).collect();
        assert_eq!(got, ["github:branch-protection:a/open"]);
    }
}
