//! `cleartrail gaps` and `cleartrail packet`: evaluate the evidence branch
//! against the catalogs, print the status of every in-scope control, and
//! render packets for auditors.

use crate::audit::{self, Settings};
use crate::cli::{GapsArgs, GlobalArgs, PacketArgs};
use crate::controls::evaluate::{ControlStatus, Status};
use crate::diag::{self, Diagnostic, Format, Severity};
use crate::error::{Error, ExitStatus};
use crate::packet::Templates;
use crate::store::{Author, ChangeSet, CommitOutcome};
use anyhow::Context as _;
use serde::Serialize;
use std::fmt::Write as _;

fn audit_error(e: audit::AuditError) -> Error {
    if e.is_usage() {
        Error::usage(e)
    } else {
        Error::runtime(e)
    }
}

#[derive(Serialize)]
struct GapRow<'a> {
    framework: &'a str,
    id: &'a str,
    title: &'a str,
    status: Status,
    reason: &'a str,
}

fn rows(statuses: &[crate::controls::evaluate::FrameworkStatus]) -> Vec<GapRow<'_>> {
    statuses
        .iter()
        .flat_map(|f| f.controls.iter())
        .filter_map(|c| {
            c.status.map(|status| GapRow {
                framework: &c.framework,
                id: &c.id,
                title: &c.title,
                status,
                reason: &c.reason,
            })
        })
        .collect()
}

/// The gaps table as text: one line per in-scope control, then totals.
pub fn render_gaps_text(statuses: &[crate::controls::evaluate::FrameworkStatus]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<14} {:<7} {:<10} why",
        "framework", "control", "status"
    );
    for r in rows(statuses) {
        let _ = writeln!(
            s,
            "{:<14} {:<7} {:<10} {}",
            r.framework,
            r.id,
            r.status.as_str(),
            r.reason
        );
    }
    for f in statuses {
        let _ = writeln!(
            s,
            "{}: {} in scope ({}), {} out of scope",
            f.framework,
            f.in_scope,
            f.summary(),
            f.out_of_scope
        );
    }
    s
}

fn render_gaps_markdown(statuses: &[crate::controls::evaluate::FrameworkStatus]) -> String {
    let mut s =
        String::from("| framework | control | title | status | why |\n|---|---|---|---|---|\n");
    for r in rows(statuses) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.framework,
            r.id,
            r.title,
            r.status.as_str(),
            r.reason.replace('|', "\\|")
        );
    }
    s
}

/// Gaps as annotations: missing and failing are errors, the rest warnings.
pub fn gap_diagnostics(statuses: &[crate::controls::evaluate::FrameworkStatus]) -> Vec<Diagnostic> {
    audit::gaps(statuses)
        .into_iter()
        .map(|c: &ControlStatus| {
            let status = c.status.expect("gaps are in scope");
            Diagnostic {
                code: match status {
                    Status::Missing => "gap-missing",
                    Status::Failing => "gap-failing",
                    Status::Stale => "gap-stale",
                    Status::Unapproved => "gap-unapproved",
                    Status::Covered => "covered",
                },
                severity: if matches!(status, Status::Missing | Status::Failing) {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                path: format!("controls/{}/{}", c.framework, c.file),
                line: None,
                message: format!("{} {} {}: {}", c.framework, c.id, c.title, c.reason),
            }
        })
        .collect()
}

/// Without a configuration file, the configuration recorded on the
/// evidence branch decides scope, severities and manual mappings, so a
/// plain clone judges exactly as the branch's README does.
fn recorded_config(
    snapshot: &crate::store::Snapshot<'_>,
    config: Option<&crate::config::Config>,
) -> Result<Option<audit::EffectiveConfig>, Error> {
    if config.is_some() {
        return Ok(None);
    }
    let rec = audit::EffectiveConfig::read(snapshot).map_err(Error::runtime)?;
    if rec.is_some() {
        tracing::info!(
            "no configuration file: using the configuration recorded on the evidence branch ({})",
            audit::CONFIG_RECORD_PATH
        );
    }
    Ok(rec)
}

fn restricted(
    mut scope: crate::controls::evaluate::Scope,
    catalogs: &crate::controls::Catalogs,
    framework: Option<&str>,
) -> Result<crate::controls::evaluate::Scope, Error> {
    super::restrict_framework(&mut scope, catalogs, framework)?;
    Ok(scope)
}

fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

pub fn gaps(g: &GlobalArgs, args: &GapsArgs) -> Result<ExitStatus, Error> {
    let mut fail_on = Vec::new();
    for s in &args.fail_on {
        match Status::parse(s.trim()) {
            Some(Status::Covered) | None => {
                return Err(Error::usage(anyhow::anyhow!(
                    "--fail-on {s}: not a gap status (use missing, stale, failing, unapproved)"
                )));
            }
            Some(st) => fail_on.push(st),
        }
    }
    let config = super::optional_config(g)?;
    let now = crate::clock::now();
    let period = super::resolve_period(args.period.as_deref(), config.as_ref(), now)?;
    let (catalogs, mut scope) = super::catalogs_and_scope(config.as_ref())?;
    super::restrict_framework(&mut scope, &catalogs, args.framework.as_deref())?;
    let store = super::open_store(g)?;
    let rev = super::require_evidence_rev(&store, args.rev.as_deref(), config.as_ref())?;
    let commit = store.resolve(&rev).map_err(Error::usage)?;
    let snapshot = store.snapshot(Some(commit)).map_err(Error::runtime)?;
    let as_of = audit::as_of(&period, now.date_naive());
    let recorded = recorded_config(&snapshot, config.as_ref())?;
    let rec_scope = recorded
        .as_ref()
        .map(|r| restricted(r.scope(), &catalogs, args.framework.as_deref()))
        .transpose()?;
    let settings = match (&recorded, &rec_scope) {
        (Some(r), Some(sc)) => Settings::recorded(&catalogs, sc, r, &period, as_of),
        _ => Settings::new(&catalogs, &scope, config.as_ref(), &period, as_of),
    };
    let result = audit::evaluate(&snapshot, None, &settings).map_err(audit_error)?;
    let out = match g.format {
        Format::Json => {
            serde_json::to_string_pretty(&rows(&result.statuses)).map_err(Error::runtime)? + "\n"
        }
        Format::Markdown => render_gaps_markdown(&result.statuses),
        Format::Github => diag::render_github(&gap_diagnostics(&result.statuses)),
        Format::Text => {
            let mut s = render_gaps_text(&result.statuses);
            if in_actions() {
                s.push_str(&diag::render_github(&gap_diagnostics(&result.statuses)));
            }
            s
        }
    };
    super::emit(&out);
    let failing = rows(&result.statuses)
        .iter()
        .any(|r| fail_on.contains(&r.status));
    // The process ends here: freeing 100,000 parsed artifacts one by one
    // would cost a quarter of the command's time.
    std::mem::forget(result);
    Ok(if failing {
        ExitStatus::Findings
    } else {
        ExitStatus::Ok
    })
}

pub fn packet(g: &GlobalArgs, args: &PacketArgs) -> Result<ExitStatus, Error> {
    let config = super::optional_config(g)?;
    let period = super::resolve_period(Some(&args.period), config.as_ref(), crate::clock::now())?;
    let (catalogs, mut scope) = super::catalogs_and_scope(config.as_ref())?;
    super::restrict_framework(&mut scope, &catalogs, args.framework.as_deref())?;
    if let Some(id) = &args.control
        && catalogs.find(args.framework.as_deref(), id).is_empty()
    {
        return Err(Error::usage(anyhow::anyhow!(
            "--control {id}: no such control"
        )));
    }
    let templates = Templates::load(config.as_ref().map(|c| c.templates_dir()).as_deref())
        .map_err(Error::usage)?;
    let store = super::open_store(g)?;
    let rev = super::require_evidence_rev(&store, args.rev.as_deref(), config.as_ref())?;
    let mut commit = store.resolve(&rev).map_err(Error::usage)?;
    if args.rev.is_none() {
        // Earlier packet commits are not evidence: render from the newest
        // commit that changed anything else, so rendering again is a no-op.
        commit = store
            .last_commit_outside(commit, "packets")
            .map_err(Error::runtime)?;
    }
    // Evaluated as of the evidence commit's own date (within the period),
    // so rendering the same commit again gives the same bytes.
    let commit_day = store
        .repo()
        .find_commit(commit)
        .map(|c| crate::connectors::git::time_utc(c.time()).date_naive())
        .map_err(|e| {
            Error::runtime(anyhow::Error::new(e).context("reading the evidence commit"))
        })?;
    let as_of = audit::as_of(&period, commit_day);
    let snapshot = store.snapshot(Some(commit)).map_err(Error::runtime)?;
    let recorded = recorded_config(&snapshot, config.as_ref())?;
    let rec_scope = recorded
        .as_ref()
        .map(|r| restricted(r.scope(), &catalogs, args.framework.as_deref()))
        .transpose()?;
    let settings = match (&recorded, &rec_scope) {
        (Some(r), Some(sc)) => Settings::recorded(&catalogs, sc, r, &period, as_of),
        _ => Settings::new(&catalogs, &scope, config.as_ref(), &period, as_of),
    };
    let result = audit::evaluate(&snapshot, None, &settings).map_err(audit_error)?;
    let files = audit::packet_files(
        &result,
        &templates,
        &period,
        as_of,
        &commit.to_string(),
        args.control.as_deref(),
    )
    .map_err(audit_error)?;
    // As in `gaps`: the process is about to end.
    std::mem::forget(result);
    match &args.out {
        Some(dir) => {
            crate::packet::write_to(dir, &files)
                .with_context(|| format!("writing the packet to {}", dir.display()))
                .map_err(Error::runtime)?;
            super::emit(&format!(
                "wrote {} files to {} (manifest.json lists their SHA-256)\n",
                files.len(),
                dir.display()
            ));
        }
        None => {
            let branch = config
                .as_ref()
                .map(|c| c.branch.clone())
                .unwrap_or_else(|| crate::config::DEFAULT_BRANCH.to_string());
            let tip = store.branch_tip(&branch).map_err(Error::runtime)?;
            let mut cs = ChangeSet::new();
            let root = format!(
                "packets/{}",
                crate::artifact::path::escape_name(period.label())
            );
            // The folder is replaced as a whole, so its manifest always
            // lists exactly what it holds.
            let current = store.snapshot(tip).map_err(Error::runtime)?;
            for (path, _) in current.files_under(&root).map_err(Error::runtime)? {
                cs.delete(path);
            }
            for f in &files {
                cs.put(format!("{root}/{}", f.path), f.bytes.clone());
            }
            let message = format!(
                "cleartrail packet: {} for {}\n\nrendered from evidence commit {commit}\n",
                root,
                period.label()
            );
            let base = tip.or(Some(commit));
            let out = store
                .commit(&branch, tip, base, &cs, &message, &Author::default())
                .map_err(Error::runtime)?;
            match out {
                CommitOutcome::Committed { commit: c, .. } => super::emit(&format!(
                    "committed {} files under {root}/ to {branch} ({})\n",
                    files.len(),
                    &c.to_string()[..12]
                )),
                CommitOutcome::Unchanged { .. } => super::emit(&format!(
                    "{root}/ is already up to date on {branch}: no commit\n"
                )),
            }
        }
    }
    Ok(ExitStatus::Ok)
}
