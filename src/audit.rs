//! What an auditor reads, derived from the evidence: check results,
//! mappings, control statuses, the evidence repository's README and
//! per-control pages, and packets. Everything here is a pure function of
//! the evidence, the catalogs, the configuration and the as-of date, so the
//! same inputs render the same bytes.

use crate::artifact::{COLLECTIONS_DIR, path::escape_name};
use crate::checks::{self, CheckContext, CheckResult};
use crate::config::{Config, SourceSpec};
use crate::controls::Catalogs;
use crate::controls::evaluate::{self, FrameworkStatus, Inputs, MappingFile, Scope, Status};
use crate::evidence::{self, Held};
use crate::packet::{PacketFile, TemplateError, Templates};
use crate::period::Period;
use crate::store::{ChangeSet, Snapshot, StoreError};
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

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

/// The configuration-derived inputs to an evaluation.
pub struct Settings<'a> {
    pub catalogs: &'a Catalogs,
    pub scope: &'a Scope,
    pub period: &'a Period,
    pub as_of: NaiveDate,
    pub git_sources: Vec<String>,
    /// Connector types configured (`git`, `files`, ...).
    pub source_types: Vec<String>,
    pub severities: BTreeMap<String, crate::diag::Level>,
}

impl<'a> Settings<'a> {
    pub fn new(
        catalogs: &'a Catalogs,
        scope: &'a Scope,
        config: Option<&Config>,
        period: &'a Period,
        as_of: NaiveDate,
    ) -> Self {
        Settings {
            catalogs,
            scope,
            period,
            as_of,
            git_sources: config
                .map(|c| {
                    c.sources
                        .iter()
                        .filter(|s| matches!(s.spec, SourceSpec::Git { .. }))
                        .map(|s| s.name.clone())
                        .collect()
                })
                .unwrap_or_default(),
            source_types: config
                .map(|c| {
                    c.sources
                        .iter()
                        .map(|s| s.spec.type_name().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            severities: config.map(|c| c.check_severity.clone()).unwrap_or_default(),
        }
    }
}

/// The as-of date for a period: its last day, or `today` while it runs.
pub fn as_of(period: &Period, today: NaiveDate) -> NaiveDate {
    today.min(period.end())
}

/// Everything evaluated from one view of the evidence.
pub struct Audit {
    pub held: Vec<Held>,
    pub checks: Vec<CheckResult>,
    pub statuses: Vec<FrameworkStatus>,
    pub mappings: BTreeMap<String, MappingFile>,
}

/// Evaluates the evidence of a snapshot (with the change set about to be
/// committed laid over it).
pub fn evaluate(
    snapshot: &Snapshot<'_>,
    overlay: Option<&ChangeSet>,
    s: &Settings<'_>,
) -> Result<Audit, AuditError> {
    let held = evidence::load(snapshot, overlay)?;
    let mut mappings = BTreeMap::new();
    let mut problems = Vec::new();
    for fw in &s.scope.frameworks {
        let path = MappingFile::path(fw);
        if let Some(bytes) = snapshot.read(&path)? {
            match MappingFile::parse(&path, &String::from_utf8_lossy(&bytes)) {
                Ok(m) => {
                    mappings.insert(fw.clone(), m);
                }
                Err(p) => problems.push(p),
            }
        }
    }
    if !problems.is_empty() {
        return Err(AuditError::Mapping(problems));
    }
    let checks = checks::run(
        &held,
        &CheckContext {
            as_of: s.as_of,
            period: s.period,
            git_sources: s.git_sources.clone(),
            severities: &s.severities,
        },
    );
    let mut sources: std::collections::BTreeSet<String> =
        held.iter().map(|h| h.source.clone()).collect();
    sources.extend(s.source_types.iter().cloned());
    let statuses = evaluate::evaluate(&Inputs {
        catalogs: s.catalogs,
        scope: s.scope,
        held: &held,
        checks: &checks,
        mappings: &mappings,
        as_of: s.as_of,
        sources: &sources,
    });
    Ok(Audit {
        held,
        checks,
        statuses,
        mappings,
    })
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
struct ReadmeContext<'a> {
    period: String,
    branch: &'a str,
    frameworks: &'a [FrameworkStatus],
    gaps: Vec<Gap<'a>>,
    checks: &'a [CheckResult],
    collections: Vec<Value>,
}

#[derive(Serialize)]
struct ControlContext<'a> {
    control: &'a evaluate::ControlStatus,
    framework_title: &'a str,
    period: String,
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

/// The files a run writes besides evidence: check results, mappings, the
/// README and per-control pages.
pub fn derived_files(
    audit: &Audit,
    snapshot: &Snapshot<'_>,
    overlay: Option<&ChangeSet>,
    templates: &Templates,
    period: &Period,
    branch: &str,
) -> Result<Vec<(String, Vec<u8>)>, AuditError> {
    let mut files = Vec::new();
    for c in &audit.checks {
        files.push((CheckResult::path(c.code), c.to_bytes()));
    }
    for fs in &audit.statuses {
        let m = evaluate::mapping_file(fs, audit.mappings.get(&fs.framework));
        files.push((MappingFile::path(&fs.framework), m.to_bytes()));
        for c in &fs.controls {
            let page = templates.render(
                "control.md.j2",
                &ControlContext {
                    control: c,
                    framework_title: &fs.title,
                    period: period.to_string(),
                    root: "../../",
                },
            )?;
            files.push((
                format!("controls/{}/{}", escape_name(&fs.framework), c.file),
                page.into_bytes(),
            ));
        }
    }
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
                        collections.insert(path.clone(), b.clone());
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
            branch,
            frameworks: &audit.statuses,
            gaps,
            checks: &audit.checks,
            collections,
        },
    )?;
    files.push(("README.md".to_string(), readme.into_bytes()));
    Ok(files)
}

/// Derived files on the branch that this run no longer produces (a check
/// turned off, a framework out of scope): check results and control pages.
/// Mappings are never removed, since they may hold manual entries.
pub fn stale_derived(
    snapshot: &Snapshot<'_>,
    produced: &std::collections::BTreeSet<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut stale = Vec::new();
    for (path, _) in snapshot.files_under("checks")? {
        if path.ends_with(".json") && !produced.contains(path.as_str()) {
            stale.push(path);
        }
    }
    for (path, _) in snapshot.files_under("controls")? {
        // Only generated pages (controls/<framework>/<id>.md), never a
        // catalog override committed beside them.
        if path.ends_with(".md")
            && path.matches('/').count() == 2
            && !produced.contains(path.as_str())
        {
            stale.push(path);
        }
    }
    Ok(stale)
}

#[derive(Serialize)]
struct PacketIndexContext<'a> {
    framework: &'a FrameworkStatus,
    period: &'a str,
    evidence_commit: &'a str,
    as_of: String,
}

#[derive(Serialize)]
struct PacketControlContext<'a> {
    control: &'a evaluate::ControlStatus,
    framework_title: &'a str,
    period: &'a str,
    evidence_commit: &'a str,
    as_of: String,
}

/// Renders packets for the evaluated frameworks (optionally one control),
/// plus the manifest. Paths are relative to the packet folder.
pub fn packet_files(
    audit: &Audit,
    templates: &Templates,
    period: &Period,
    as_of: NaiveDate,
    commit: &str,
    only_control: Option<&str>,
) -> Result<Vec<PacketFile>, AuditError> {
    let mut files = Vec::new();
    let label = period.label();
    for fs in &audit.statuses {
        let dir = escape_name(&fs.framework);
        if only_control.is_none() {
            let index = templates.render(
                "packet/index.md.j2",
                &PacketIndexContext {
                    framework: fs,
                    period: label,
                    evidence_commit: commit,
                    as_of: as_of.to_string(),
                },
            )?;
            files.push(PacketFile {
                path: format!("{dir}/index.md"),
                bytes: index.into_bytes(),
            });
        }
        for c in fs
            .controls
            .iter()
            .filter(|c| only_control.is_none_or(|id| id == c.id))
        {
            let page = templates.render(
                "packet/control.md.j2",
                &PacketControlContext {
                    control: c,
                    framework_title: &fs.title,
                    period: label,
                    evidence_commit: commit,
                    as_of: as_of.to_string(),
                },
            )?;
            files.push(PacketFile {
                path: format!("{dir}/controls/{}", c.file),
                bytes: page.into_bytes(),
            });
        }
    }
    let manifest = crate::packet::manifest(&files, label, commit, &as_of.to_string());
    files.push(manifest);
    Ok(files)
}
