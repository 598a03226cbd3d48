//! From evidence to control status: rules map artifacts to each
//! requirement (deterministic selectors, plus manual mappings kept in the
//! evidence repository), freshness decides stale or not, the control's
//! checks decide failing, and the statement of applicability removes
//! out-of-scope controls from gaps while keeping their reason.

use super::{Catalogs, Control, Framework, Requirement, Selector};
use crate::checks::CheckResult;
use crate::config::{Config, Problem};
use crate::diag::Severity;
use crate::evidence::Held;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Where a control stands for the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fresh evidence for every requirement, and its checks pass.
    Covered,
    /// Evidence is there and passes, but is not yet approved by a reviewer
    /// (set once approvals are recorded; see the README).
    Unapproved,
    /// Evidence exists but is older than the requirement's freshness.
    Stale,
    /// A check the control depends on found error-level exceptions.
    Failing,
    /// A requirement has no matching evidence at all.
    Missing,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Covered,
        Status::Missing,
        Status::Stale,
        Status::Failing,
        Status::Unapproved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Covered => "covered",
            Status::Unapproved => "unapproved",
            Status::Stale => "stale",
            Status::Failing => "failing",
            Status::Missing => "missing",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One mapping entry: an artifact counted as evidence for a control.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MappingEntry {
    pub artifact: String,
    /// `rule`, `manual` or `ai`.
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    pub confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `mappings/<framework>.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    pub framework: String,
    #[serde(default)]
    pub controls: BTreeMap<String, Vec<MappingEntry>>,
}

impl MappingFile {
    pub fn path(framework: &str) -> String {
        format!("mappings/{framework}.yaml")
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, Problem> {
        crate::config::raw::parse_as_bounded(path, text, &crate::yaml::Bounds::GENERATED)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!(
            "# Control -> evidence mapping for {}, written by cleartrail on every run.\n# Entries with origin `rule` are recomputed; entries with origin `manual`\n# are yours and are kept (add `requirement:` to count toward one).\n",
            self.framework
        );
        s.push_str(&serde_yaml::to_string(self).expect("mappings serialize"));
        s.into_bytes()
    }

    /// The entries people wrote, which every run keeps.
    pub fn manual(&self) -> impl Iterator<Item = (&String, &MappingEntry)> {
        self.controls
            .iter()
            .flat_map(|(c, es)| es.iter().map(move |e| (c, e)))
            .filter(|(_, e)| e.origin == "manual")
    }
}

/// The statement of applicability, resolved against the catalogs.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Frameworks evaluated, in catalog order.
    pub frameworks: Vec<String>,
    /// (framework, control id) -> reason.
    pub out: BTreeMap<(String, String), String>,
}

impl Scope {
    /// Every framework, everything in scope.
    pub fn all(catalogs: &Catalogs) -> Self {
        Scope {
            frameworks: catalogs.frameworks.iter().map(|f| f.id.clone()).collect(),
            out: BTreeMap::new(),
        }
    }

    /// From the configuration; unknown frameworks, controls and categories
    /// are problems at their position in the file.
    pub fn from_config(catalogs: &Catalogs, config: &Config) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let known: Vec<&str> = catalogs.frameworks.iter().map(|f| f.id.as_str()).collect();
        let frameworks = match &config.frameworks {
            None => known.iter().map(|s| s.to_string()).collect(),
            Some(list) => {
                let mut v = Vec::new();
                for f in list {
                    if known.contains(&f.value.as_str()) {
                        v.push(f.value.clone());
                    } else {
                        problems.push(config.problem_at(
                            f,
                            format!("unknown framework `{}`", f.value),
                            Some(format!("frameworks: {}", known.join(", "))),
                        ));
                    }
                }
                v
            }
        };
        let mut out = BTreeMap::new();
        for o in &config.out_of_scope {
            let Some(fw) = catalogs.framework(&o.framework) else {
                problems.push(config.problem_at(
                    &o.id,
                    format!("unknown framework `{}`", o.framework),
                    Some(format!("frameworks: {}", known.join(", "))),
                ));
                continue;
            };
            let ids: Vec<&Control> = match fw.control(&o.id.value) {
                Some(c) => vec![c],
                None => fw
                    .controls
                    .iter()
                    .filter(|c| c.category == o.id.value)
                    .collect(),
            };
            if ids.is_empty() {
                problems.push(config.problem_at(
                    &o.id,
                    format!(
                        "`{}` is neither a control nor a category of {}",
                        o.id.value, fw.id
                    ),
                    Some("see `cleartrail controls list --framework ...`".into()),
                ));
            }
            for c in ids {
                out.insert((fw.id.clone(), c.id.clone()), o.reason.clone());
            }
        }
        if problems.is_empty() {
            Ok(Scope { frameworks, out })
        } else {
            Err(problems)
        }
    }
}

/// An artifact as shown under a requirement.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceRef {
    pub id: String,
    pub path: String,
    pub url: String,
    pub title: String,
    pub sha256: String,
    pub period: Value,
    pub fresh: bool,
    pub origin: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequirementStatus {
    pub id: String,
    pub description: String,
    pub status: Status,
    pub min_count: u32,
    pub freshness_days: Option<u32>,
    pub selectors: Vec<Selector>,
    pub matched: usize,
    pub fresh: usize,
    pub evidence: Vec<EvidenceRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub code: String,
    pub passed: bool,
    pub severity: Option<Severity>,
    pub exceptions: Vec<crate::checks::Exception>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControlStatus {
    pub framework: String,
    pub id: String,
    pub title: String,
    pub summary: String,
    pub category: String,
    /// `None` when out of scope.
    pub status: Option<Status>,
    pub reason: String,
    pub out_of_scope: Option<String>,
    pub requirements: Vec<RequirementStatus>,
    pub checks: Vec<CheckStatus>,
    /// Manual mappings not tied to a requirement.
    pub other_evidence: Vec<EvidenceRef>,
    /// Crosswalk counterparts, as `framework:id`.
    pub related: Vec<String>,
    /// File name of the control's page (`CC8.1.md`).
    pub file: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkStatus {
    pub framework: String,
    pub title: String,
    pub in_scope: usize,
    pub out_of_scope: usize,
    pub counts: BTreeMap<Status, usize>,
    pub controls: Vec<ControlStatus>,
}

impl FrameworkStatus {
    /// How many in-scope controls have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.counts.get(&status).copied().unwrap_or(0)
    }

    /// `1 covered, 2 missing, ...` in the order of [`Status::ALL`].
    pub fn summary(&self) -> String {
        Status::ALL
            .iter()
            .map(|st| format!("{} {}", self.count(*st), st.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn matches(sel: &Selector, h: &Held) -> bool {
    sel.source == h.source
        && sel.kind == h.kind
        && sel
            .conditions
            .iter()
            .all(|(path, want)| match h.field(path) {
                Some(Value::Array(items)) => items.iter().any(|v| scalar_eq(v, want)),
                Some(v) => scalar_eq(v, want),
                None => false,
            })
}

fn scalar_eq(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        Value::Bool(b) => b.to_string() == want,
        _ => false,
    }
}

fn is_fresh(h: &Held, freshness: Option<u32>, as_of: NaiveDate) -> bool {
    match freshness {
        None => true,
        Some(days) => h
            .period_end()
            .is_some_and(|end| (as_of - end).num_days() <= i64::from(days)),
    }
}

fn evidence_ref(h: &Held, fresh: bool, origin: &str) -> EvidenceRef {
    EvidenceRef {
        id: h.id.clone(),
        path: h.path.clone(),
        url: h.doc["url"].as_str().unwrap_or_default().to_string(),
        title: h.title().to_string(),
        sha256: h.doc["sha256"].as_str().unwrap_or_default().to_string(),
        period: h.doc["period"].clone(),
        fresh,
        origin: origin.to_string(),
    }
}

/// Everything evaluation reads.
pub struct Inputs<'a> {
    pub catalogs: &'a Catalogs,
    pub scope: &'a Scope,
    pub held: &'a [Held],
    pub checks: &'a [CheckResult],
    /// Existing mapping files by framework (manual entries are kept).
    pub mappings: &'a BTreeMap<String, MappingFile>,
    pub as_of: NaiveDate,
    /// Source types configured or present in the evidence: a requirement
    /// none of whose sources is among them says which one it needs.
    pub sources: &'a BTreeSet<String>,
}

fn evaluate_requirement(
    req: &Requirement,
    control_id: &str,
    mapping: Option<&MappingFile>,
    by_id: &BTreeMap<&str, &Held>,
    inp: &Inputs<'_>,
) -> RequirementStatus {
    let mut evidence: Vec<EvidenceRef> = inp
        .held
        .iter()
        // Evidence dated after the as-of date did not exist yet then.
        .filter(|h| h.period_start().is_none_or(|d| d <= inp.as_of))
        .filter(|h| req.any_of.iter().any(|s| matches(s, h)))
        .map(|h| evidence_ref(h, is_fresh(h, req.freshness_days, inp.as_of), "rule"))
        .collect();
    if let Some(m) = mapping {
        for (c, e) in m.manual() {
            if c == control_id
                && e.requirement.as_deref() == Some(req.id.as_str())
                && let Some(h) = by_id.get(e.artifact.as_str())
                && !evidence.iter().any(|x| x.id == h.id)
            {
                evidence.push(evidence_ref(
                    h,
                    is_fresh(h, req.freshness_days, inp.as_of),
                    "manual",
                ));
            }
        }
    }
    let matched = evidence.len();
    let fresh = evidence.iter().filter(|e| e.fresh).count();
    let min = req.min_count as usize;
    let status = if matched < min {
        Status::Missing
    } else if fresh < min {
        Status::Stale
    } else {
        Status::Covered
    };
    RequirementStatus {
        id: req.id.clone(),
        description: req.description.clone(),
        status,
        min_count: req.min_count,
        freshness_days: req.freshness_days,
        selectors: req.any_of.clone(),
        matched,
        fresh,
        evidence,
    }
}

fn evaluate_control(
    fw: &Framework,
    c: &Control,
    by_id: &BTreeMap<&str, &Held>,
    inp: &Inputs<'_>,
) -> ControlStatus {
    let mapping = inp.mappings.get(&fw.id);
    let requirements: Vec<RequirementStatus> = c
        .requirements
        .iter()
        .map(|r| evaluate_requirement(r, &c.id, mapping, by_id, inp))
        .collect();
    let other_evidence: Vec<EvidenceRef> = mapping
        .into_iter()
        .flat_map(|m| m.manual())
        .filter(|(cid, e)| *cid == &c.id && e.requirement.is_none())
        .filter_map(|(_, e)| by_id.get(e.artifact.as_str()))
        .map(|h| evidence_ref(h, true, "manual"))
        .collect();
    let checks: Vec<CheckStatus> = c
        .checks
        .iter()
        .map(|code| match inp.checks.iter().find(|r| r.code == code) {
            Some(r) => CheckStatus {
                code: code.clone(),
                passed: r.passed,
                severity: Some(r.severity),
                exceptions: r.exceptions.clone(),
            },
            // Turned off in the configuration: not counted.
            None => CheckStatus {
                code: code.clone(),
                passed: true,
                severity: None,
                exceptions: Vec::new(),
            },
        })
        .collect();

    let out_of_scope = inp.scope.out.get(&(fw.id.clone(), c.id.clone())).cloned();
    let mut reasons = Vec::new();
    let mut status = Status::Covered;
    if requirements.is_empty() && other_evidence.is_empty() {
        status = Status::Missing;
        reasons.push(
            "no collectable evidence is defined for it: map evidence manually in mappings/"
                .to_string(),
        );
    }
    for r in &requirements {
        match r.status {
            Status::Missing => {
                let needed: BTreeSet<&str> =
                    r.selectors.iter().map(|s| s.source.as_str()).collect();
                if needed.iter().any(|s| inp.sources.contains(*s)) {
                    reasons.push(format!("`{}`: no matching evidence", r.id));
                } else {
                    let list: Vec<&str> = needed.into_iter().collect();
                    reasons.push(format!(
                        "`{}`: no matching evidence (needs a {} source)",
                        r.id,
                        list.join(" or ")
                    ));
                }
            }
            Status::Stale => reasons.push(format!(
                "`{}`: newest evidence older than {} days",
                r.id,
                r.freshness_days.unwrap_or_default()
            )),
            _ => {}
        }
        status = status.max(r.status);
    }
    for ch in &checks {
        if !ch.passed && ch.severity == Some(Severity::Error) {
            status = status.max(Status::Failing);
            let n = ch.exceptions.len();
            let plural = if n == 1 { "" } else { "s" };
            reasons.push(format!(
                "check `{}` failed ({n} exception{plural})",
                ch.code
            ));
        }
    }
    let related = inp
        .catalogs
        .related(&fw.id, &c.id)
        .into_iter()
        .map(|(f, i)| format!("{f}:{i}"))
        .collect();
    ControlStatus {
        framework: fw.id.clone(),
        id: c.id.clone(),
        title: c.title.clone(),
        summary: c.summary.clone(),
        category: c.category.clone(),
        status: out_of_scope.is_none().then_some(status),
        reason: match &out_of_scope {
            Some(r) => format!("out of scope: {r}"),
            None if reasons.is_empty() => {
                "fresh evidence for every requirement; checks pass".to_string()
            }
            None => reasons.join("; "),
        },
        out_of_scope,
        requirements,
        checks,
        other_evidence,
        related,
        file: format!("{}.md", crate::artifact::path::escape_name(&c.id)),
    }
}

/// Evaluates every in-scope framework.
pub fn evaluate(inp: &Inputs<'_>) -> Vec<FrameworkStatus> {
    let by_id: BTreeMap<&str, &Held> = inp.held.iter().map(|h| (h.id.as_str(), h)).collect();
    inp.scope
        .frameworks
        .iter()
        .filter_map(|f| inp.catalogs.framework(f))
        .map(|fw| {
            let controls: Vec<ControlStatus> = fw
                .controls
                .iter()
                .map(|c| evaluate_control(fw, c, &by_id, inp))
                .collect();
            let mut counts: BTreeMap<Status, usize> = Status::ALL.iter().map(|s| (*s, 0)).collect();
            for c in &controls {
                if let Some(s) = c.status {
                    *counts.entry(s).or_default() += 1;
                }
            }
            let out = controls.iter().filter(|c| c.status.is_none()).count();
            FrameworkStatus {
                framework: fw.id.clone(),
                title: fw.title.clone(),
                in_scope: controls.len() - out,
                out_of_scope: out,
                counts,
                controls,
            }
        })
        .collect()
}

/// The mapping file a run writes: rule entries recomputed, manual kept.
pub fn mapping_file(fs: &FrameworkStatus, existing: Option<&MappingFile>) -> MappingFile {
    let mut controls: BTreeMap<String, Vec<MappingEntry>> = BTreeMap::new();
    for c in &fs.controls {
        let mut entries: Vec<MappingEntry> = Vec::new();
        let mut seen = BTreeSet::new();
        for r in &c.requirements {
            for e in r.evidence.iter().filter(|e| e.origin == "rule") {
                if seen.insert((e.id.clone(), r.id.clone())) {
                    entries.push(MappingEntry {
                        artifact: e.id.clone(),
                        origin: "rule".into(),
                        requirement: Some(r.id.clone()),
                        confidence: 1.0,
                        note: None,
                    });
                }
            }
        }
        if !entries.is_empty() {
            controls.insert(c.id.clone(), entries);
        }
    }
    if let Some(m) = existing {
        for (c, e) in m.manual() {
            controls.entry(c.clone()).or_default().push(e.clone());
        }
    }
    MappingFile {
        framework: fs.framework.clone(),
        controls,
    }
}
