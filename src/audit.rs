//! What an auditor reads, derived from the evidence: check results,
//! mappings, control statuses, listings, the evidence repository's README
//! and per-control pages, packets, and the manifest that lets `verify`
//! check every derived file. Everything here is a pure function of the
//! evidence, the catalogs, the effective configuration and the as-of date,
//! so the same inputs render the same bytes.
//!
//! Every generated file stays small at any number of artifacts: pages show
//! counts, the first exceptions and the newest rows, and link to listings
//! split by month and into parts of [`LISTING_ROWS`] rows.

use crate::artifact::{COLLECTIONS_DIR, canonical, path::escape_name};
use crate::checks::{self, CheckContext, CheckResult};
use crate::config::{Config, SourceSpec};
use crate::controls::Catalogs;
use crate::controls::evaluate::{
    self, FrameworkStatus, Inputs, ManualMappings, MappingFile, Scope, Status,
};
use crate::diag::Level;
use crate::evidence::{self, Evidence, Held};
use crate::packet::{TemplateError, Templates};
use crate::period::Period;
use crate::store::pack::Packed;
use crate::store::{ChangeSet, Content, Snapshot, StoreError};
use crate::verify::{DERIVED_PATH, DERIVED_SCHEMA};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Rows per listing file and per exception file.
pub const LISTING_ROWS: usize = 2_000;
/// Where the effective configuration is recorded on the branch.
pub const CONFIG_RECORD_PATH: &str = ".cleartrail/config.json";
pub const CONFIG_RECORD_SCHEMA: &str = "cleartrail.effective-config/v1";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Mapping(Vec<crate::config::Problem>),
}

impl AuditError {
    /// Whether the user can fix it by editing a file (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, AuditError::Template(_) | AuditError::Mapping(_))
    }
}

/// The configuration a judgement depends on, as recorded on the evidence
/// branch (`.cleartrail/config.json`), so that `gaps` and `packet` in a
/// plain clone judge exactly as the branch's README does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct EffectiveConfig {
    pub schema: String,
    /// The period judged (`2026`, `2026-Q3`, `2026-07-01..2026-09-30`).
    pub period: String,
    pub frameworks: Vec<String>,
    /// framework -> control id -> reason.
    pub out_of_scope: BTreeMap<String, BTreeMap<String, String>>,
    /// check code -> `error`, `warning`, `note` or `off`.
    pub check_severity: BTreeMap<String, String>,
    /// Names of the configured git sources (for `codeowners-missing`).
    pub git_sources: Vec<String>,
    /// Alert SLAs of the github sources, by repository owner (for
    /// `alert-past-sla`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alert_sla: BTreeMap<String, crate::checks::Sla>,
    /// The GitHub repository (`owner/name`) each git source is a clone
    /// of, from its `origin` remote (for the change judgement).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub git_repos: BTreeMap<String, String>,
    /// How each jira source's tickets are judged, by source name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tickets: BTreeMap<String, crate::checks::TicketPolicy>,
    /// Connector types configured.
    pub source_types: Vec<String>,
    pub manual_mappings: ManualMappings,
    /// SHA-256 of each catalog override file and template override in
    /// effect (they live beside `cleartrail.yml`).
    pub overrides: BTreeMap<String, String>,
}

impl EffectiveConfig {
    pub fn scope(&self) -> Scope {
        Scope {
            frameworks: self.frameworks.clone(),
            out: self
                .out_of_scope
                .iter()
                .flat_map(|(f, m)| {
                    m.iter()
                        .map(move |(c, r)| ((f.clone(), c.clone()), r.clone()))
                })
                .collect(),
        }
    }

    pub fn severities(&self) -> BTreeMap<String, Level> {
        self.check_severity
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.parse().ok()?)))
            .collect()
    }

    /// Reads the record from a snapshot, if present and readable.
    pub fn read(snapshot: &Snapshot<'_>) -> Result<Option<Self>, StoreError> {
        Ok(snapshot
            .read(CONFIG_RECORD_PATH)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|c: &EffectiveConfig| c.schema == CONFIG_RECORD_SCHEMA))
    }
}

/// The configuration-derived inputs to an evaluation.
pub struct Settings<'a> {
    pub catalogs: &'a Catalogs,
    pub scope: &'a Scope,
    pub period: &'a Period,
    pub as_of: NaiveDate,
    pub git_sources: Vec<String>,
    /// Alert SLAs by repository owner.
    pub alert_sla: BTreeMap<String, crate::checks::Sla>,
    /// Git source name -> the `owner/name` its `origin` remote names.
    pub git_repos: BTreeMap<String, String>,
    /// Each jira source's ticket policy, by source name.
    pub tickets: BTreeMap<String, crate::checks::TicketPolicy>,
    /// Connector types configured (`git`, `files`, ...).
    pub source_types: Vec<String>,
    pub severities: BTreeMap<String, Level>,
    /// `mappings.yaml` beside the configuration: (path, text).
    pub manual: Option<(std::path::PathBuf, String)>,
    /// Manual mappings already validated (from a recorded configuration).
    pub manual_recorded: Option<ManualMappings>,
    pub overrides: BTreeMap<String, String>,
    /// Take held artifacts parsed by an earlier run from the repository's
    /// cache (the writer only: see `evidence::cache`).
    pub held_cache: bool,
    /// With approvals configured: the git blob ids approval records
    /// approve. Counted evidence outside it leaves a control `unapproved`.
    pub approved: Option<crate::approvals::verify::Approved>,
}

impl<'a> Settings<'a> {
    pub fn new(
        catalogs: &'a Catalogs,
        scope: &'a Scope,
        config: Option<&Config>,
        period: &'a Period,
        as_of: NaiveDate,
    ) -> Self {
        let manual = config.and_then(|c| {
            let p = c.dir.join(ManualMappings::FILE);
            // Bounded and never a FIFO or device: a hostile file here
            // must not hang or exhaust the run.
            crate::yaml::read_text(&p).ok().map(|t| (p, t))
        });
        Settings {
            catalogs,
            scope,
            period,
            as_of,
            git_sources: config
                .map(|c| {
                    c.sources
                        .iter()
                        .filter(|s| matches!(s.spec, SourceSpec::Git(_)))
                        .map(|s| s.name.clone())
                        .collect()
                })
                .unwrap_or_default(),
            alert_sla: config.map(alert_slas).unwrap_or_default(),
            git_repos: config.map(git_repos).unwrap_or_default(),
            tickets: config.map(ticket_policy).unwrap_or_default(),
            source_types: config
                .map(|c| {
                    c.sources
                        .iter()
                        .map(|s| s.spec.type_name().to_string())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default(),
            severities: config.map(|c| c.check_severity.clone()).unwrap_or_default(),
            manual,
            manual_recorded: None,
            overrides: config.map(override_digests).unwrap_or_default(),
            held_cache: false,
            approved: None,
        }
    }

    /// Settings from a configuration recorded on the branch.
    pub fn recorded(
        catalogs: &'a Catalogs,
        scope: &'a Scope,
        rec: &EffectiveConfig,
        period: &'a Period,
        as_of: NaiveDate,
    ) -> Self {
        Settings {
            catalogs,
            scope,
            period,
            as_of,
            git_sources: rec.git_sources.clone(),
            alert_sla: rec.alert_sla.clone(),
            git_repos: rec.git_repos.clone(),
            tickets: rec.tickets.clone(),
            source_types: rec.source_types.clone(),
            severities: rec.severities(),
            manual: None,
            manual_recorded: Some(rec.manual_mappings.clone()),
            overrides: rec.overrides.clone(),
            held_cache: false,
            approved: None,
        }
    }

    /// What a judgement depends on, to record on the branch.
    pub fn effective(&self, manual: &ManualMappings) -> EffectiveConfig {
        let mut out_of_scope: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for ((f, c), r) in &self.scope.out {
            out_of_scope
                .entry(f.clone())
                .or_default()
                .insert(c.clone(), r.clone());
        }
        EffectiveConfig {
            schema: CONFIG_RECORD_SCHEMA.to_string(),
            period: self.period.to_string(),
            frameworks: self.scope.frameworks.clone(),
            out_of_scope,
            check_severity: self
                .severities
                .iter()
                .map(|(k, v)| {
                    let s = match v {
                        Level::Off => "off",
                        Level::On(s) => s.as_str(),
                    };
                    (k.clone(), s.to_string())
                })
                .collect(),
            git_sources: self.git_sources.clone(),
            alert_sla: self.alert_sla.clone(),
            git_repos: self.git_repos.clone(),
            tickets: self.tickets.clone(),
            source_types: self.source_types.clone(),
            manual_mappings: manual.clone(),
            overrides: self.overrides.clone(),
        }
    }
}

/// The `sla:` of every github source, by the owner of the repositories
/// it reads (its `org` and the owners of its `repos`); an owner two
/// sources read is held to the stricter.
fn alert_slas(c: &Config) -> BTreeMap<String, crate::checks::Sla> {
    let mut out: BTreeMap<String, crate::checks::Sla> = BTreeMap::new();
    for s in &c.sources {
        let SourceSpec::Github(g) = &s.spec else {
            continue;
        };
        let owners = g.org.iter().cloned().chain(
            g.repos
                .iter()
                .filter_map(|r| Some(r.split_once('/')?.0.to_string())),
        );
        for owner in owners {
            let owner = owner.to_ascii_lowercase();
            let sla = out.get(&owner).map_or(g.sla, |o| o.strictest(g.sla));
            out.insert(owner, sla);
        }
    }
    out
}

/// Each jira source's ticket policy, by source name: a source's kinds,
/// statuses and hours judge its own tickets only.
fn ticket_policy(c: &Config) -> BTreeMap<String, crate::checks::TicketPolicy> {
    c.sources
        .iter()
        .filter_map(|s| match &s.spec {
            SourceSpec::Jira(j) => Some((s.name.clone(), j.policy.clone())),
            _ => None,
        })
        .collect()
}

/// For each git source whose clone has an `origin` remote, the
/// repository it names (`owner/name`, lower case), when a github source
/// is configured too: only then can the forge's record judge its changes.
fn git_repos(c: &Config) -> BTreeMap<String, String> {
    if !c
        .sources
        .iter()
        .any(|s| matches!(s.spec, SourceSpec::Github(_)))
    {
        return BTreeMap::new();
    }
    c.sources
        .iter()
        .filter_map(|s| {
            let SourceSpec::Git(crate::config::GitSpec { path, .. }) = &s.spec else {
                return None;
            };
            let repo = git2::Repository::open(path).ok()?;
            let remote = repo.find_remote("origin").ok()?;
            Some((s.name.clone(), remote_repository(remote.url().ok()?)?))
        })
        .collect()
}

/// `owner/name` of a remote URL (`https://host/owner/name.git`,
/// `git@host:owner/name.git`, `ssh://git@host/owner/name`), lower case.
pub fn remote_repository(url: &str) -> Option<String> {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        // scp-like `user@host:path`
        None => url.split_once(':')?.1,
    };
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let name = parts.next()?.trim_end_matches(".git");
    let owner = parts.next()?;
    (!owner.is_empty() && !name.is_empty()).then(|| format!("{owner}/{name}").to_ascii_lowercase())
}

/// SHA-256 of every catalog and template override file beside the
/// configuration, by path relative to it.
fn override_digests(c: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in [c.controls_dir(), c.templates_dir()] {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(p),
                    Ok(t) if t.is_file() => {
                        if let Ok(b) = std::fs::read(&p) {
                            let rel = p.strip_prefix(&c.dir).unwrap_or(&p);
                            out.insert(
                                rel.to_string_lossy().replace('\\', "/"),
                                canonical::sha256_hex(&b),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// The as-of date for a period: its last day, or `today` while it runs.
pub fn as_of(period: &Period, today: NaiveDate) -> NaiveDate {
    today.min(period.end())
}

/// Everything evaluated from one view of the evidence.
pub struct Audit {
    pub held: Evidence,
    pub checks: Vec<CheckResult>,
    pub statuses: Vec<FrameworkStatus>,
    pub manual: ManualMappings,
}

/// Evaluates the evidence of a snapshot (with the change set about to be
/// committed laid over it).
pub fn evaluate(
    snapshot: &Snapshot<'_>,
    overlay: Option<&ChangeSet>,
    s: &Settings<'_>,
) -> Result<Audit, AuditError> {
    let started = std::time::Instant::now();
    let (held, cache) = evidence::load(snapshot, overlay, &keep_fields(s.catalogs), s.held_cache)?;
    tracing::debug!(
        "{} artifacts loaded in {:.2?}",
        held.len(),
        started.elapsed()
    );
    // The writer's cache is rewritten on the other core meanwhile.
    let (manual, checks, statuses) = std::thread::scope(|scope| {
        if let Some(cache) = cache {
            let held = &held;
            scope.spawn(move || cache.write(held));
        }
        evaluate_held(&held, s)
    })?;
    tracing::debug!("evaluated at {:.2?}", started.elapsed());
    Ok(Audit {
        held,
        checks,
        statuses,
        manual,
    })
}

/// Checks and control statuses of loaded evidence.
fn evaluate_held(
    held: &Evidence,
    s: &Settings<'_>,
) -> Result<(ManualMappings, Vec<CheckResult>, Vec<FrameworkStatus>), AuditError> {
    let manual = match (&s.manual, &s.manual_recorded) {
        (Some((path, text)), _) => {
            ManualMappings::load(path, text, s.catalogs, held).map_err(AuditError::Mapping)?
        }
        (None, Some(m)) => m.clone(),
        (None, None) => ManualMappings::default(),
    };
    let mappings: BTreeMap<String, MappingFile> = s
        .scope
        .frameworks
        .iter()
        .map(|f| (f.clone(), manual.of(f)))
        .collect();
    let checks = checks::run(
        &held.held,
        &CheckContext {
            as_of: s.as_of,
            now: crate::clock::now(),
            period: s.period,
            git_sources: s.git_sources.clone(),
            alert_sla: &s.alert_sla,
            tickets: &s.tickets,
            git_repos: &s.git_repos,
            severities: &s.severities,
        },
    );
    let mut sources: BTreeSet<String> = held.iter().map(|h| h.source().to_string()).collect();
    sources.extend(s.source_types.iter().cloned());
    let failing = evaluate::failing_index(&checks);
    let statuses = evaluate::evaluate(&Inputs {
        catalogs: s.catalogs,
        scope: s.scope,
        held,
        checks: &checks,
        mappings: &mappings,
        period: s.period,
        as_of: s.as_of,
        sources: &sources,
        failing: &failing,
        approved: s.approved.as_ref(),
    });
    Ok((manual, checks, statuses))
}

/// The `content` fields evaluation reads, per (source, kind): those the
/// checks name and the first segment of every selector's `where` path in
/// the catalogs in effect.
fn keep_fields(catalogs: &Catalogs) -> evidence::Keep {
    let mut keep = evidence::Keep::none();
    for (source, kind, fields) in checks::CONTENT_FIELDS {
        for f in *fields {
            keep.add(source, kind, f);
        }
    }
    for fw in &catalogs.frameworks {
        for c in &fw.controls {
            for r in &c.requirements {
                for sel in &r.any_of {
                    for path in sel.conditions.keys() {
                        let top = path.split('.').next().unwrap_or(path);
                        keep.add(&sel.source, &sel.kind, top);
                    }
                }
            }
        }
    }
    keep.spread_wildcards();
    keep
}

/// Per framework: how many in-scope controls have each status. Recorded
/// in the derived manifest so a run with nothing new can report coverage
/// without evaluating again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Coverage {
    pub framework: String,
    pub title: String,
    pub in_scope: usize,
    pub out_of_scope: usize,
    pub counts: BTreeMap<String, usize>,
}

impl Coverage {
    pub fn of(f: &FrameworkStatus) -> Self {
        Coverage {
            framework: f.framework.clone(),
            title: f.title.clone(),
            in_scope: f.in_scope,
            out_of_scope: f.out_of_scope,
            counts: Status::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), f.count(*s)))
                .collect(),
        }
    }

    pub fn count(&self, s: Status) -> usize {
        self.counts.get(s.as_str()).copied().unwrap_or(0)
    }

    /// `1 covered, 2 missing, ...` in the order of [`Status::ALL`].
    pub fn summary(&self) -> String {
        Status::summary(|st| self.count(st))
    }
}

#[derive(Serialize)]
struct Gap<'a> {
    framework: &'a str,
    id: &'a str,
    title: &'a str,
    status: Status,
    reason: &'a str,
    file: &'a str,
}

#[derive(Serialize)]
struct CheckRow<'a> {
    code: &'a str,
    passed: bool,
    severity: &'a str,
    population: u64,
    exceptions: usize,
}

#[derive(Serialize)]
struct ReadmeContext<'a> {
    period: String,
    as_of: String,
    branch: &'a str,
    frameworks: &'a [FrameworkStatus],
    gaps: Vec<Gap<'a>>,
    checks: Vec<CheckRow<'a>>,
    collections: Vec<Value>,
    /// How the repository is run and should be protected (shared with the
    /// README `cleartrail init` writes).
    protection: &'static str,
}

/// The section on workflows and branch protection of every evidence
/// repository's README.
pub const PROTECTION: &str = include_str!("../templates/init/protection.md");

#[derive(Serialize)]
struct ControlContext<'a> {
    control: &'a evaluate::ControlStatus,
    framework_title: &'a str,
    period: String,
    as_of: String,
    root: &'a str,
}

/// Open gaps: in-scope controls that are not covered.
pub fn gaps(statuses: &[FrameworkStatus]) -> Vec<&evaluate::ControlStatus> {
    statuses
        .iter()
        .flat_map(|f| f.controls.iter())
        .filter(|c| c.status.is_some_and(|s| s != Status::Covered))
        .collect()
}

/// A check result as files: `checks/<code>.json` with the population, the
/// number of exceptions and the first [`evaluate::SHOWN`] of them, plus
/// `checks/<code>/exceptions-NNNN.json` parts of [`LISTING_ROWS`] each.
fn check_files(c: &CheckResult, files: &mut Rendered<'_>) {
    // The summary without its exceptions: a `Value` of 100,000 of them
    // costs more memory than every file written from them.
    let mut doc = canonical::value_of(&CheckResult {
        exceptions: Vec::new(),
        population_query: c.population_query.clone(),
        ..*c
    });
    let all = c.exceptions.len();
    let parts: Vec<String> = c
        .exceptions
        .chunks(LISTING_ROWS)
        .enumerate()
        .map(|(i, chunk)| {
            let path = format!("checks/{}/exceptions-{:04}.json", c.code, i + 1);
            let part = ExceptionPart {
                code: c.code,
                exceptions: chunk,
                part: i + 1,
                schema: checks::CHECK_SCHEMA,
            };
            files.push(path.clone(), canonical::to_pretty_sorted(&part));
            path
        })
        .collect();
    doc["exception_count"] = json!(all);
    doc["exceptions"] = canonical::value_of(
        &c.exceptions
            .iter()
            .take(evaluate::SHOWN)
            .collect::<Vec<_>>(),
    );
    doc["exception_files"] = json!(parts);
    files.push(CheckResult::path(c.code), canonical::to_pretty(&doc));
}

/// One part of a check's exceptions, its fields declared in key order so
/// it is written in canonical form without a JSON value in between (see
/// [`canonical::to_pretty_sorted`]): 100,000 exceptions are rewritten
/// whenever evidence changes.
#[derive(Serialize)]
struct ExceptionPart<'a> {
    code: &'a str,
    exceptions: &'a [checks::Exception],
    part: usize,
    schema: &'a str,
}

/// Listings: every artifact of a (source, kind), newest first, by month
/// group, in parts of [`LISTING_ROWS`] rows, with an index per kind.
fn listing_files(
    held: &Evidence,
    failing: &std::collections::HashMap<&str, Vec<&'static str>>,
    files: &mut Rendered<'_>,
) {
    let mut by_kind: BTreeMap<(&str, &str), BTreeMap<&str, Vec<&Held>>> = BTreeMap::new();
    for h in held.iter() {
        by_kind
            .entry((h.source(), h.kind()))
            .or_default()
            .entry(h.group())
            .or_default()
            .push(h);
    }
    for ((source, kind), groups) in by_kind {
        let index_path = evaluate::listing_index(source, kind);
        let dir = index_path.trim_end_matches("/index.md").to_string();
        let mut index = format!(
            "# {source} / {kind}: every artifact held\n\nNewest first within each month; `-` holds artifacts that are not dated by month.\n\n| month | artifacts | listing |\n|---|--:|---|\n"
        );
        for (group, mut items) in groups.into_iter().rev() {
            items.sort_by(|a, b| evaluate::newest_first(a, b));
            let name = if group == "-" {
                "undated".to_string()
            } else {
                group.to_string()
            };
            let mut links = Vec::new();
            for (i, chunk) in items.chunks(LISTING_ROWS).enumerate() {
                let file = if i == 0 {
                    format!("{name}.md")
                } else {
                    format!("{name}-{}.md", i + 1)
                };
                let mut page = format!(
                    "# {source} / {kind}: {name}{}\n\n| date | artifact | id | failing checks |\n|---|---|---|---|\n",
                    if i > 0 {
                        format!(" (part {})", i + 1)
                    } else {
                        String::new()
                    }
                );
                for h in chunk {
                    let depth = dir.matches('/').count() + 1;
                    let root = "../".repeat(depth);
                    let ident = match h.content()["sha"].as_str() {
                        Some(sha) => format!("commit `{}`", &sha[..sha.len().min(12)]),
                        None => format!("`{}`", cell(&h.id)),
                    };
                    let fails = failing
                        .get(&*h.id)
                        .map(|v| {
                            v.iter()
                                .map(|c| format!("`{c}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    page.push_str(&format!(
                        "| {} | [{}]({root}{}) | {ident} | {fails} |\n",
                        h.period_end().map(|d| d.to_string()).unwrap_or_default(),
                        cell(h.title()),
                        h.path.replace('%', "%25"),
                    ));
                }
                links.push(format!("[{file}]({file})"));
                files.push(format!("{dir}/{file}"), page.into_bytes());
            }
            index.push_str(&format!(
                "| {name} | {} | {} |\n",
                items.len(),
                links.join(" ")
            ));
        }
        files.push(index_path, index.into_bytes());
    }
}

/// A Markdown table cell and link text: no pipes, no line breaks, no
/// brackets (written as entities, so a title can never open or close a
/// link, and `verify` reads each row's link unambiguously), bounded length.
fn cell(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .take(200)
        .collect();
    one.replace('|', "\\|")
        .replace('[', "&#91;")
        .replace(']', "&#93;")
}

/// A fingerprint of everything derived files depend on besides the
/// evidence: the tool version, the effective configuration, the catalogs
/// in effect and the period. When neither it nor the evidence changed, a
/// run does not derive again.
pub fn inputs_fingerprint(
    settings: &Settings<'_>,
    effective: &EffectiveConfig,
    templates: &Templates,
) -> String {
    let doc = json!({
        "tool": env!("CARGO_PKG_VERSION"),
        "config": canonical::value_of(effective),
        "catalogs": canonical::value_of(&settings.catalogs.frameworks),
        "templates": templates.fingerprint(),
        "period": settings.period.to_string(),
        // Freshness is judged as of this day: another day may judge
        // differently, so it must derive again.
        "as_of": settings.as_of.to_string(),
    });
    canonical::sha256_hex(&canonical::jcs(&doc))
}

/// The derived manifest recorded on the branch, if readable.
pub fn read_manifest(snapshot: &Snapshot<'_>) -> Result<Option<Value>, StoreError> {
    Ok(snapshot
        .read(DERIVED_PATH)?
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v["schema"] == DERIVED_SCHEMA))
}

/// The files a run writes besides evidence: check results, mappings,
/// listings, the README, per-control pages, the effective configuration
/// and the manifest of all of them (`.cleartrail/derived.json`).
#[allow(clippy::too_many_arguments)]
pub fn derived_files(
    audit: &Audit,
    settings: &Settings<'_>,
    snapshot: &Snapshot<'_>,
    overlay: Option<&ChangeSet>,
    templates: &Templates,
    period: &Period,
    branch: &str,
) -> Result<Vec<(String, Derived)>, AuditError> {
    let base = snapshot.files_below("")?;
    let failing = evaluate::failing_index(&audit.checks);
    // Listings (a row per artifact) on a second thread, the rest here:
    // rendering is most of a run after a few new artifacts.
    let (files, listings) = std::thread::scope(|scope| {
        let listings = scope.spawn(|| {
            let mut files = Rendered::new(base);
            listing_files(&audit.held, &failing, &mut files);
            files
        });
        let mut files = Rendered::new(base);
        let rest = check_and_control_files(audit, settings, templates, period, &mut files);
        let listings = listings.join().expect("listing thread panicked");
        rest.map(|()| (files, listings))
    })?;
    let mut files = files;
    files.append(listings);
    // Collection records as they will be after this commit.
    let mut collections: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (path, oid) in snapshot.files_under(COLLECTIONS_DIR)? {
        collections.insert(path, snapshot.read_blob(oid)?);
    }
    if let Some(cs) = overlay {
        for (path, change) in cs.iter() {
            if path.starts_with(&format!("{COLLECTIONS_DIR}/")) {
                match change {
                    Some(b) => {
                        collections.insert(path.to_string(), b.bytes().into_owned());
                    }
                    None => {
                        collections.remove(path);
                    }
                }
            }
        }
    }
    let collections: Vec<Value> = collections
        .values()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    let gaps: Vec<Gap<'_>> = gaps(&audit.statuses)
        .into_iter()
        .map(|c| Gap {
            framework: &c.framework,
            id: &c.id,
            title: &c.title,
            status: c.status.expect("gaps are in scope"),
            reason: &c.reason,
            file: &c.file,
        })
        .collect();
    let readme = templates.render(
        "readme.md.j2",
        &ReadmeContext {
            period: period.to_string(),
            as_of: settings.as_of.to_string(),
            branch,
            frameworks: &audit.statuses,
            gaps,
            checks: audit
                .checks
                .iter()
                .map(|c| CheckRow {
                    code: c.code,
                    passed: c.passed,
                    severity: c.severity.as_str(),
                    population: c.population,
                    exceptions: c.exceptions.len(),
                })
                .collect(),
            collections,
            protection: PROTECTION,
        },
    )?;
    files.push("README.md".to_string(), readme.into_bytes());
    let effective = settings.effective(&audit.manual);
    files.push(
        CONFIG_RECORD_PATH.to_string(),
        canonical::to_pretty(&canonical::value_of(&effective)),
    );
    let listed = std::mem::take(&mut files.sha256);
    let manifest = json!({
        "schema": DERIVED_SCHEMA,
        "inputs": inputs_fingerprint(settings, &effective, templates),
        "as_of": settings.as_of.to_string(),
        "coverage": audit.statuses.iter().map(Coverage::of).collect::<Vec<_>>(),
        "files": listed,
    });
    files.push(DERIVED_PATH.to_string(), canonical::to_pretty(&manifest));
    Ok(files.files)
}

/// Check results, mappings and control pages (everything derived but the
/// listings, which render on a thread of their own).
fn check_and_control_files(
    audit: &Audit,
    settings: &Settings<'_>,
    templates: &Templates,
    period: &Period,
    files: &mut Rendered<'_>,
) -> Result<(), AuditError> {
    for c in &audit.checks {
        check_files(c, files);
    }
    for fs in &audit.statuses {
        let manual = audit.manual.of(&fs.framework);
        files.push(
            MappingFile::path(&fs.framework),
            evaluate::mapping_bytes(fs, Some(&manual)),
        );
        for c in &fs.controls {
            let page = templates.render(
                "control.md.j2",
                &ControlContext {
                    control: c,
                    framework_title: &fs.title,
                    period: period.to_string(),
                    as_of: settings.as_of.to_string(),
                    root: "../../",
                },
            )?;
            files.push(
                format!("controls/{}/{}", escape_name(&fs.framework), c.file),
                page.into_bytes(),
            );
        }
    }
    Ok(())
}

/// A derived file as this run renders it.
#[derive(Debug, Clone)]
pub enum Derived {
    /// New bytes for the file.
    Changed(Content),
    /// Exactly the file the base snapshot already holds.
    AsCommitted,
}

/// Derived files as they are rendered: deflated at once, as they will go
/// into the pack (the listings of 200,000 artifacts are tens of megabytes
/// of text), unless the base already holds the very same file, with the
/// SHA-256 of each that the manifest records.
struct Rendered<'s> {
    /// Every file of the base snapshot, sorted by path.
    base: &'s [(std::sync::Arc<str>, git2::Oid)],
    files: Vec<(String, Derived)>,
    sha256: BTreeMap<String, String>,
}

impl<'s> Rendered<'s> {
    fn new(base: &'s [(std::sync::Arc<str>, git2::Oid)]) -> Self {
        Rendered {
            base,
            files: Vec::new(),
            sha256: BTreeMap::new(),
        }
    }

    /// Takes over the files another thread rendered.
    fn append(&mut self, other: Rendered<'_>) {
        self.files.extend(other.files);
        self.sha256.extend(other.sha256);
    }

    fn push(&mut self, path: String, bytes: Vec<u8>) {
        self.sha256
            .insert(path.clone(), canonical::sha256_hex(&bytes));
        let held = crate::store::file_position(self.base, &path).map(|i| self.base[i].1);
        if let Some(held) = held
            && held == crate::store::blob_id(&bytes)
        {
            self.files.push((path, Derived::AsCommitted));
            return;
        }
        let packed = Packed::many_quick(std::iter::once(&bytes[..]))
            .pop()
            .expect("one blob in, one entry out");
        self.files.push((
            path,
            Derived::Changed(Content::Packed(std::sync::Arc::new(packed))),
        ));
    }
}

/// Derived files on the branch that this run no longer produces: those the
/// last manifest listed and this run does not write. Files ClearTrail did
/// not write (a README beside catalog overrides, say) are never touched.
pub fn stale_derived(
    snapshot: &Snapshot<'_>,
    produced: &BTreeSet<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut stale = BTreeSet::new();
    if let Some(m) = read_manifest(snapshot)?
        && let Some(files) = m["files"].as_object()
    {
        for p in files.keys() {
            if !produced.contains(p.as_str()) && snapshot.try_blob_id(p)?.is_some() {
                stale.insert(p.clone());
            }
        }
    }
    Ok(stale.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exception_part_is_written_in_canonical_form() {
        let exceptions = vec![
            checks::Exception {
                artifact: "git:change:app/1".into(),
                reason: "change 1 (\"a \\\"quoted\\\" title\") is a direct push".into(),
            },
            checks::Exception {
                artifact: "git source `app`".into(),
                reason: "no CODEOWNERS file — ünïcode".into(),
            },
        ];
        let part = ExceptionPart {
            code: "change-without-review-trace",
            exceptions: &exceptions,
            part: 3,
            schema: checks::CHECK_SCHEMA,
        };
        let via_value = canonical::to_pretty(&json!({
            "schema": checks::CHECK_SCHEMA,
            "code": "change-without-review-trace",
            "part": 3,
            "exceptions": canonical::value_of(&exceptions),
        }));
        assert_eq!(
            String::from_utf8(canonical::to_pretty_sorted(&part)).unwrap(),
            String::from_utf8(via_value).unwrap()
        );
    }
}
