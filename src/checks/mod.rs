//! Checks: typed tests over the held evidence. Each has a stable
//! kebab-case code, a default severity (overridable per code in
//! `cleartrail.yml`, or `off`), and a one-paragraph doc. A result records
//! the population checked and every exception (artifact id and reason);
//! results are written to `checks/<code>.json`.

use crate::artifact::canonical;
use crate::diag::{Diagnostic, Level, Severity};
use crate::evidence::Held;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;

pub const CHECK_SCHEMA: &str = "cleartrail.check/v1";

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
        doc: "Every commit and merge of a git source in the period carries a signature (GPG, SSH or X.509). Signatures tie a change to a key its author controls. A warning by default, since many organisations do not require signed commits; raise it to `error` where policy does.",
    },
    CheckDef {
        code: "merge-without-review-trace",
        severity: Severity::Error,
        doc: "Every merge commit of a git source in the period shows a review trace: it names the pull or merge request it came from, or carries a `Reviewed-by`/`Approved-by`/`Reviewed-on` trailer. A merge with no trace is a change that reached the branch with no evidence of review.",
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
    /// The artifact id, or the source it concerns when no artifact exists.
    pub artifact: String,
    pub reason: String,
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
    /// Where the artifacts in exceptions live, by id (for links).
    #[serde(skip)]
    pub paths: BTreeMap<String, String>,
}

impl CheckResult {
    pub fn path(code: &str) -> String {
        format!("checks/{code}.json")
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        canonical::to_pretty(&canonical::value_of(self))
    }

    /// Exceptions as diagnostics (for annotations).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        self.exceptions
            .iter()
            .map(|e| Diagnostic {
                code: self.code,
                severity: self.severity,
                path: self
                    .paths
                    .get(&e.artifact)
                    .cloned()
                    .unwrap_or_else(|| e.artifact.clone()),
                line: None,
                message: format!("{}: {}", e.artifact, e.reason),
            })
            .collect()
    }
}

/// What checks need beyond the evidence.
pub struct CheckContext<'a> {
    pub as_of: NaiveDate,
    pub period: &'a crate::period::Period,
    /// Names of configured git sources (for codeowners-missing).
    pub git_sources: Vec<String>,
    pub severities: &'a BTreeMap<String, Level>,
}

/// Policy documents: documents with front matter, including front matter
/// that does not parse (a broken policy must not escape the checks).
fn is_policy(h: &Held) -> bool {
    matches!(
        (h.source.as_str(), h.kind.as_str()),
        ("files" | "gdrive", "document")
    ) && (h.content()["front_matter"].is_object() || h.content()["front_matter_error"].is_string())
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
        let mut paths = BTreeMap::new();
        let mut exception = |h: &Held, reason: String| {
            paths.insert(h.id.clone(), h.path.clone());
            exceptions.push(Exception {
                artifact: h.id.clone(),
                reason,
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
                let pop: Vec<&Held> = held
                    .iter()
                    .filter(|h| {
                        h.source == "git"
                            && matches!(h.kind.as_str(), "commit" | "merge")
                            && in_period(h, cx.period)
                    })
                    .collect();
                for h in &pop {
                    if h.content()["signed"] != true {
                        exception(h, "commit is not signed".into());
                    }
                }
                (
                    pop.len(),
                    format!("git commits and merges dated in {}", cx.period),
                )
            }
            "merge-without-review-trace" => {
                let pop: Vec<&Held> = held
                    .iter()
                    .filter(|h| h.source == "git" && h.kind == "merge" && in_period(h, cx.period))
                    .collect();
                for h in &pop {
                    if h.content()["review_trace"] != true {
                        exception(
                            h,
                            "merge names no pull request and has no review trailer".into(),
                        );
                    }
                }
                (
                    pop.len(),
                    format!("git merge commits dated in {}", cx.period),
                )
            }
            "codeowners-missing" => {
                for name in &cx.git_sources {
                    let prefix = format!("git:codeowners:{name}/");
                    match held.iter().find(|h| h.id.starts_with(&prefix)) {
                        None => missing_source.push(Exception {
                            artifact: format!("git source `{name}`"),
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
            paths,
        });
    }
    out
}
