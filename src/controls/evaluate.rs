//! From evidence to control status: rules map artifacts to each
//! requirement (deterministic selectors, plus manual mappings kept in the
//! evidence repository), freshness decides stale or not, the control's
//! checks decide failing, and the statement of applicability removes
//! out-of-scope controls from gaps while keeping their reason.

use super::{Catalogs, Control, Framework, Requirement, Selector};
use crate::checks::CheckResult;
use crate::config::{Config, Problem};
use crate::diag::Severity;
use crate::evidence::{Evidence, Held, Lite};
use crate::period::Period;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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

    /// `1 covered, 2 missing, ...` in the order of [`Status::ALL`], from a
    /// count per status.
    pub fn summary(count: impl Fn(Status) -> usize) -> String {
        Status::ALL
            .iter()
            .map(|st| format!("{} {}", count(*st), st.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One manual mapping: an artifact a person counts as evidence for a
/// control (and, optionally, for one of its requirements).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MappingEntry {
    /// The artifact id (`<source>:<kind>:<object id>`).
    pub artifact: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    /// How sure the person is; 1.0 when left out.
    #[serde(default = "full_confidence")]
    pub confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn full_confidence() -> f64 {
    1.0
}

/// Manual mappings, from `mappings.yaml` beside `cleartrail.yml`:
/// framework -> control id -> entries. They are configuration (people
/// write them), recorded on the evidence branch with the rest of the
/// effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(transparent)]
pub struct ManualMappings {
    pub frameworks: BTreeMap<String, BTreeMap<String, Vec<MappingEntry>>>,
}

/// The manual mappings of one framework.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappingFile {
    pub framework: String,
    pub controls: BTreeMap<String, Vec<MappingEntry>>,
}

impl MappingFile {
    /// Where the generated mapping of a framework is written.
    pub fn path(framework: &str) -> String {
        format!("mappings/{framework}.yaml")
    }

    /// The entries people wrote.
    pub fn manual(&self) -> impl Iterator<Item = (&String, &MappingEntry)> {
        self.controls
            .iter()
            .flat_map(|(c, es)| es.iter().map(move |e| (c, e)))
    }
}

impl ManualMappings {
    pub const FILE: &'static str = "mappings.yaml";

    /// Parses the file; unknown frameworks, controls, requirements and
    /// artifacts are problems at their line, all reported at once.
    pub fn load(
        path: &std::path::Path,
        text: &str,
        catalogs: &Catalogs,
        held: &Evidence,
    ) -> Result<Self, Vec<Problem>> {
        let file = path.display().to_string();
        let parsed: ManualMappings =
            crate::config::raw::parse_as(&file, text).map_err(|p| vec![p])?;
        let locs = crate::config::locate::Locations::parse(text);
        let mut problems = Vec::new();
        let mut problem = |at: String, message: String| {
            let pos = locs.value(&at);
            problems.push(Problem {
                file: file.clone(),
                line: pos.line,
                col: pos.col,
                message,
                hint: None,
            });
        };
        for (fw_id, controls) in &parsed.frameworks {
            let Some(fw) = catalogs.framework(fw_id) else {
                problem(fw_id.clone(), format!("unknown framework `{fw_id}`"));
                continue;
            };
            for (cid, entries) in controls {
                let Some(c) = fw.control(cid) else {
                    problem(
                        format!("{fw_id}.{cid}"),
                        format!("`{cid}` is not a control of {fw_id}"),
                    );
                    continue;
                };
                for (i, e) in entries.iter().enumerate() {
                    let at = format!("{fw_id}.{cid}[{i}]");
                    if held.get(&e.artifact).is_none() {
                        problem(
                            format!("{at}.artifact"),
                            format!(
                                "no artifact `{}` is held on the evidence branch",
                                e.artifact
                            ),
                        );
                    }
                    if let Some(r) = &e.requirement
                        && !c.requirements.iter().any(|q| &q.id == r)
                    {
                        problem(
                            format!("{at}.requirement"),
                            format!("`{r}` is not a requirement of {cid}"),
                        );
                    }
                    if !(0.0..=1.0).contains(&e.confidence) {
                        problem(
                            format!("{at}.confidence"),
                            "confidence is a number from 0 to 1".to_string(),
                        );
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(parsed)
        } else {
            Err(problems)
        }
    }

    /// The entries of one framework.
    pub fn of(&self, framework: &str) -> MappingFile {
        MappingFile {
            framework: framework.to_string(),
            controls: self.frameworks.get(framework).cloned().unwrap_or_default(),
        }
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
    /// The commit id, for evidence that is a commit (shown instead of a
    /// digest prefix, which could be mistaken for one).
    pub commit: Option<String>,
    pub period: Value,
    /// The last day it is evidence for (`YYYY-MM-DD`), for sorting and
    /// display.
    pub date: String,
    pub fresh: bool,
    pub origin: String,
    /// Codes of error-level checks that list it as an exception.
    pub failing: Vec<String>,
}

/// How many rows of evidence and exceptions a page shows before it
/// summarizes and links to the full listing.
pub const SHOWN: usize = 25;

#[derive(Debug, Clone, Serialize)]
pub struct RequirementStatus {
    pub id: String,
    pub description: String,
    pub status: Status,
    pub min_count: u32,
    pub freshness_days: Option<u32>,
    /// `population` or `point-in-time`.
    pub evidence_type: &'static str,
    pub selectors: Vec<Selector>,
    pub matched: usize,
    /// Counted: in the period (population) or fresh (point in time).
    pub fresh: usize,
    /// Counted evidence that an error-level check lists as an exception.
    pub failing: usize,
    /// Counted evidence no approval record covers (with approvals
    /// configured).
    #[serde(skip_serializing_if = "is_zero")]
    pub unapproved: usize,
    /// The newest [`SHOWN`] items, newest first.
    pub evidence: Vec<EvidenceRef>,
    /// The newest [`SHOWN`] failing items, newest first.
    pub exceptions: Vec<EvidenceRef>,
    /// Digest over the ids of every matched artifact (sorted), so the
    /// mapping file pins the whole set without listing it.
    pub digest: String,
    /// Listings that hold every matched item (`listings/<source>/<kind>/index.md`).
    pub listings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub code: String,
    pub passed: bool,
    pub severity: Option<Severity>,
    /// How many exceptions the check found.
    pub exception_count: usize,
    /// The first [`SHOWN`] of them; `checks/<code>.json` links to all.
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
        Status::summary(|st| self.count(st))
    }
}

pub fn matches_conditions(sel: &Selector, h: &Held) -> bool {
    sel.conditions
        .iter()
        .all(|(path, want)| match h.field(path) {
            Some(Lite::Array(items)) => items.iter().any(|v| scalar_eq(v, want)),
            Some(v) => scalar_eq(v, want),
            None => false,
        })
}

fn scalar_eq(v: &Lite, want: &str) -> bool {
    match v {
        Lite::String(s) => &**s == want,
        Lite::Number(n) => n.to_string() == want,
        Lite::Bool(b) => b.to_string() == want,
        _ => false,
    }
}

/// Whether `h` counts for `req` as of `inp.as_of`: population evidence
/// when it falls in the period, point-in-time evidence when it is fresh.
fn counts(h: &Held, req: &Requirement, inp: &Inputs<'_>) -> bool {
    if req.population {
        return h
            .period
            .is_some_and(|p| p.end >= inp.period.start() && p.start <= inp.as_of);
    }
    match req.freshness_days {
        None => true,
        Some(days) => h
            .period_end()
            .is_some_and(|end| (inp.as_of - end).num_days() <= i64::from(days)),
    }
}

/// The listing page of every artifact of a (source, kind).
pub fn listing_index(source: &str, kind: &str) -> String {
    format!(
        "listings/{}/{}/index.md",
        crate::artifact::path::escape_name(source),
        crate::artifact::path::escape_name(kind)
    )
}

fn evidence_ref(h: &Held, fresh: bool, origin: &str, failing: &[&'static str]) -> EvidenceRef {
    let commit = match (h.source(), h.kind()) {
        ("git", "change" | "commit" | "merge") => h.content()["sha"].as_str().map(str::to_string),
        _ => None,
    };
    EvidenceRef {
        id: h.id.to_string(),
        path: h.path.to_string(),
        url: h.url().to_string(),
        title: h.title().to_string(),
        sha256: h.sha256().to_string(),
        commit,
        period: h.period.map_or(Value::Null, |p| p.to_json()),
        date: h.period_end().map(|d| d.to_string()).unwrap_or_default(),
        fresh,
        origin: origin.to_string(),
        failing: failing.iter().map(|c| c.to_string()).collect(),
    }
}

/// Newest first (by the last day it covers, then its latest own
/// timestamp), then by id: the order every page lists evidence in.
pub fn newest_first(a: &Held, b: &Held) -> std::cmp::Ordering {
    b.period_end()
        .cmp(&a.period_end())
        .then_with(|| b.latest_observed().cmp(a.latest_observed()))
        .then_with(|| a.id.cmp(&b.id))
}

/// The newest `n` items in order, without sorting the rest.
fn newest(items: &mut Vec<(&Held, &'static str)>, n: usize) {
    if items.len() > n {
        items.select_nth_unstable_by(n - 1, |a, b| newest_first(a.0, b.0));
        items.truncate(n);
    }
    items.sort_by(|a, b| newest_first(a.0, b.0));
}

/// Everything evaluation reads.
pub struct Inputs<'a> {
    pub catalogs: &'a Catalogs,
    pub scope: &'a Scope,
    pub held: &'a Evidence,
    pub checks: &'a [CheckResult],
    /// Manual mappings by framework (from the configuration).
    pub mappings: &'a BTreeMap<String, MappingFile>,
    pub period: &'a Period,
    pub as_of: NaiveDate,
    /// Source types configured or present in the evidence: a requirement
    /// none of whose sources is among them says which one it needs.
    pub sources: &'a BTreeSet<String>,
    /// Artifact id -> codes of error-level checks that list it.
    pub failing: &'a HashMap<&'a str, Vec<&'static str>>,
    /// With approvals configured: the approved file versions.
    pub approved: Option<&'a crate::approvals::verify::Approved>,
}

/// Artifact id -> codes of the error-level checks whose exceptions name it.
pub fn failing_index(checks: &[CheckResult]) -> HashMap<&str, Vec<&'static str>> {
    let mut out: HashMap<&str, Vec<&'static str>> = HashMap::new();
    for c in checks.iter().filter(|c| c.severity == Severity::Error) {
        for e in &c.exceptions {
            out.entry(&*e.artifact).or_default().push(c.code);
        }
    }
    out
}

/// Per artifact (by [`Held::pos`]): the error-level checks that list it.
type FailAt<'a> = [&'a [&'static str]];

fn evaluate_requirement(
    req: &Requirement,
    control_id: &str,
    mapping: Option<&MappingFile>,
    inp: &Inputs<'_>,
    fail_at: &FailAt<'_>,
) -> RequirementStatus {
    // (artifact, origin), each artifact once.
    let mut matched: Vec<(&Held, &'static str)> = Vec::new();
    let mut seen = vec![false; inp.held.len()];
    let mut seen_insert = |h: &Held| !std::mem::replace(&mut seen[h.pos as usize], true);
    for sel in &req.any_of {
        for h in inp.held.of_kind(&sel.source, &sel.kind) {
            // Evidence dated after the as-of date did not exist yet then.
            if h.period_start().is_some_and(|d| d > inp.as_of) || !matches_conditions(sel, h) {
                continue;
            }
            if seen_insert(h) {
                matched.push((h, "rule"));
            }
        }
    }
    if let Some(m) = mapping {
        for (c, e) in m.manual() {
            if c == control_id
                && e.requirement.as_deref() == Some(req.id.as_str())
                && let Some(h) = inp.held.get(&e.artifact)
                && seen_insert(h)
            {
                matched.push((h, "manual"));
            }
        }
    }
    let no_fail: &[&'static str] = &[];
    let fails = |h: &Held| fail_at.get(h.pos as usize).copied().unwrap_or(no_fail);
    let (mut counted, mut rest): (Vec<_>, Vec<_>) = matched
        .iter()
        .copied()
        .partition(|(h, _)| counts(h, req, inp));
    let mut failing_items: Vec<(&Held, &'static str)> = counted
        .iter()
        .copied()
        .filter(|(h, _)| !fails(h).is_empty())
        .collect();
    let (n_counted, n_failing) = (counted.len(), failing_items.len());
    let n_unapproved = inp.approved.map_or(0, |ok| {
        counted
            .iter()
            .filter(|(h, _)| !ok.get(&h.blob).is_some_and(|at| at.contains(&*h.path)))
            .count()
    });
    let min = req.min_count as usize;
    let status = if matched.len() < min {
        Status::Missing
    } else if n_counted < min {
        Status::Stale
    } else if n_failing > 0 {
        Status::Failing
    } else if n_unapproved > 0 {
        Status::Unapproved
    } else {
        Status::Covered
    };
    // Shown: counted items first (newest first), then the rest.
    newest(&mut counted, SHOWN);
    newest(&mut failing_items, SHOWN);
    let mut shown: Vec<EvidenceRef> = counted
        .iter()
        .map(|(h, o)| evidence_ref(h, true, o, fails(h)))
        .collect();
    if shown.len() < SHOWN {
        newest(&mut rest, SHOWN - shown.len());
        shown.extend(
            rest.iter()
                .map(|(h, o)| evidence_ref(h, false, o, fails(h))),
        );
    }
    let mut ids: Vec<&str> = matched.iter().map(|(h, _)| &*h.id).collect();
    ids.sort_unstable();
    // One listing per (source, kind), named once, not once per artifact.
    let listings: Vec<String> = matched
        .iter()
        .map(|(h, _)| (h.source(), h.kind()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|(source, kind)| listing_index(source, kind))
        .collect();
    RequirementStatus {
        id: req.id.clone(),
        description: req.description.clone(),
        status,
        min_count: req.min_count,
        freshness_days: req.freshness_days,
        evidence_type: if req.population {
            "population"
        } else {
            "point-in-time"
        },
        selectors: req.any_of.clone(),
        matched: matched.len(),
        fresh: n_counted,
        failing: n_failing,
        unapproved: n_unapproved,
        exceptions: failing_items
            .iter()
            .map(|(h, o)| evidence_ref(h, true, o, fails(h)))
            .collect(),
        evidence: shown,
        digest: crate::artifact::canonical::sha256_hex(ids.join("\n").as_bytes()),
        listings,
    }
}

fn evaluate_control(
    fw: &Framework,
    c: &Control,
    inp: &Inputs<'_>,
    fail_at: &FailAt<'_>,
) -> ControlStatus {
    let mapping = inp.mappings.get(&fw.id);
    let requirements: Vec<RequirementStatus> = c
        .requirements
        .iter()
        .map(|r| evaluate_requirement(r, &c.id, mapping, inp, fail_at))
        .collect();
    let other_evidence: Vec<EvidenceRef> = mapping
        .into_iter()
        .flat_map(|m| m.manual())
        .filter(|(cid, e)| *cid == &c.id && e.requirement.is_none())
        .filter_map(|(_, e)| inp.held.get(&e.artifact))
        .map(|h| {
            let fails = inp.failing.get(&*h.id).map_or(&[][..], |v| v.as_slice());
            evidence_ref(h, true, "manual", fails)
        })
        .collect();
    let checks: Vec<CheckStatus> = c
        .checks
        .iter()
        .map(|code| match inp.checks.iter().find(|r| r.code == code) {
            Some(r) => CheckStatus {
                code: code.clone(),
                passed: r.passed,
                severity: Some(r.severity),
                exception_count: r.exceptions.len(),
                exceptions: r.exceptions.iter().take(SHOWN).cloned().collect(),
            },
            // Turned off in the configuration: not counted.
            None => CheckStatus {
                code: code.clone(),
                passed: true,
                severity: None,
                exception_count: 0,
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
            "no collectable evidence is defined for it: map evidence by hand in mappings.yaml beside cleartrail.yml"
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
            Status::Stale if r.evidence_type == "population" => reasons.push(format!(
                "`{}`: no evidence in the period ({} outside it)",
                r.id, r.matched
            )),
            Status::Stale => reasons.push(format!(
                "`{}`: newest evidence older than {} days",
                r.id,
                r.freshness_days.unwrap_or_default()
            )),
            Status::Unapproved => reasons.push(format!(
                "`{}`: {} of {} not approved in a signed record",
                r.id, r.unapproved, r.fresh
            )),
            Status::Failing => {
                let mut codes: BTreeSet<&str> = BTreeSet::new();
                for e in &r.exceptions {
                    codes.extend(e.failing.iter().map(String::as_str));
                }
                let codes: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
                reasons.push(format!(
                    "`{}`: {} of {} fail {}",
                    r.id,
                    r.failing,
                    r.fresh,
                    codes.join(", ")
                ))
            }
            _ => {}
        }
        status = status.max(r.status);
    }
    for ch in &checks {
        if !ch.passed && ch.severity == Some(Severity::Error) {
            status = status.max(Status::Failing);
            let n = ch.exception_count;
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
    let fail_at: Vec<&[&'static str]> = inp
        .held
        .iter()
        .map(|h| inp.failing.get(&*h.id).map_or(&[][..], |v| v.as_slice()))
        .collect();
    inp.scope
        .frameworks
        .iter()
        .filter_map(|f| inp.catalogs.framework(f))
        .map(|fw| {
            let controls: Vec<ControlStatus> = fw
                .controls
                .iter()
                .map(|c| evaluate_control(fw, c, inp, &fail_at))
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

/// The mapping file a run writes: per control, each requirement's rule
/// (its selectors), how many artifacts it matched and counted, a digest
/// over their ids and the listings that hold them; then the manual
/// entries. Sizes stay small at any number of artifacts: the listings
/// carry the rows.
pub fn mapping_bytes(fs: &FrameworkStatus, manual: Option<&MappingFile>) -> Vec<u8> {
    let mut s = format!(
        "# Control -> evidence mapping for {}, written by cleartrail on every run.\n# Rules are the catalog's selectors; manual entries come from mappings.yaml\n# beside cleartrail.yml. Every matched artifact is listed in the listings named.\nframework: {}\ncontrols:\n",
        fs.framework, fs.framework
    );
    let q = |v: &str| serde_json::to_string(v).expect("strings serialize");
    for c in fs.controls.iter() {
        let manual_entries: Vec<&MappingEntry> = manual
            .into_iter()
            .flat_map(|m| m.manual())
            .filter(|(cid, _)| *cid == &c.id)
            .map(|(_, e)| e)
            .collect();
        if c.requirements.iter().all(|r| r.matched == 0) && manual_entries.is_empty() {
            continue;
        }
        s.push_str(&format!("  {}:\n", q(&c.id)));
        for r in c.requirements.iter().filter(|r| r.matched > 0) {
            s.push_str(&format!("    {}:\n", q(&r.id)));
            let rule: Vec<String> = r
                .selectors
                .iter()
                .map(|sel| q(&format!("{}/{}", sel.source, sel.kind)))
                .collect();
            s.push_str(&format!("      rule: [{}]\n", rule.join(", ")));
            s.push_str(&format!("      evidence: {}\n", r.evidence_type));
            s.push_str(&format!(
                "      matched: {}\n      counted: {}\n",
                r.matched, r.fresh
            ));
            s.push_str(&format!("      ids_sha256: {}\n", r.digest));
            let ls: Vec<String> = r.listings.iter().map(|l| q(l)).collect();
            s.push_str(&format!("      listings: [{}]\n", ls.join(", ")));
        }
        if !manual_entries.is_empty() {
            s.push_str("    manual:\n");
            for e in manual_entries {
                s.push_str(&format!("      - artifact: {}\n", q(&e.artifact)));
                if let Some(r) = &e.requirement {
                    s.push_str(&format!("        requirement: {}\n", q(r)));
                }
                s.push_str(&format!("        confidence: {}\n", e.confidence));
                if let Some(n) = &e.note {
                    s.push_str(&format!("        note: {}\n", q(n)));
                }
            }
        }
    }
    s.into_bytes()
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
