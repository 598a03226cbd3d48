//! `cleartrail gaps`: evaluate the evidence branch against the catalogs
//! and print the status of every in-scope control (text, JSON, Markdown or
//! GitHub annotations); exit 1 when a status named in `--fail-on` occurs.

use crate::audit;
use crate::cli::{GapsArgs, GlobalArgs};
use crate::controls::evaluate::{ControlStatus, Status};
use crate::diag::{self, Diagnostic, Format, Severity};
use crate::error::{Error, ExitStatus};
use serde::Serialize;
use std::fmt::Write as _;

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
                code: crate::diag::codes::gap(status).unwrap_or("covered"),
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

pub fn run(g: &GlobalArgs, args: &GapsArgs) -> Result<ExitStatus, Error> {
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
    // Checked before touching the repository: a bad --period is a usage
    // error wherever it is run.
    super::resolve_period(args.period.as_deref(), config.as_ref(), now)?;
    let (catalogs, mut scope) = super::catalogs_and_scope(config.as_ref())?;
    super::restrict_framework(&mut scope, &catalogs, args.framework.as_deref())?;
    let store = super::open_store(g)?;
    let rev = super::require_evidence_rev(&store, args.rev.as_deref(), config.as_ref())?;
    let commit = store.resolve(&rev).map_err(Error::usage)?;
    let snapshot = store.snapshot(Some(commit)).map_err(Error::runtime)?;
    // Without --period or a configured one, the period the branch was
    // judged for (so a clone agrees with its README), else this year.
    let period = match (&args.period, config.as_ref().and_then(|c| c.period.clone())) {
        (None, None) => match audit::EffectiveConfig::read(&snapshot)
            .map_err(Error::runtime)?
            .and_then(|r| r.period.parse::<crate::period::Period>().ok())
        {
            Some(p) => p,
            None => super::resolve_period(None, config.as_ref(), now)?,
        },
        _ => super::resolve_period(args.period.as_deref(), config.as_ref(), now)?,
    };
    let as_of = audit::as_of(&period, now.date_naive());
    let result = super::evaluate_branch(
        &store,
        &snapshot,
        config.as_ref(),
        &catalogs,
        &scope,
        args.framework.as_deref(),
        &period,
        as_of,
    )?;
    let out = match g.format {
        Format::Json => {
            serde_json::to_string_pretty(&rows(&result.statuses)).map_err(Error::runtime)? + "\n"
        }
        Format::Markdown => render_gaps_markdown(&result.statuses),
        Format::Github => diag::render_github(&gap_diagnostics(&result.statuses)),
        Format::Text => {
            let mut s = render_gaps_text(&result.statuses);
            if crate::actions::in_actions() {
                s.push_str(&diag::render_github(&gap_diagnostics(&result.statuses)));
            }
            s
        }
    };
    super::emit(&out);
    if crate::actions::in_actions() {
        let all = rows(&result.statuses);
        let count = |st: Status| all.iter().filter(|r| r.status == st).count();
        let gaps = all.iter().filter(|r| r.status != Status::Covered).count();
        crate::actions::append_summary(&format!(
            "### ClearTrail gaps: period {period}\n\n{gaps} in-scope controls not covered.\n\n{}\n",
            render_gaps_markdown(&result.statuses)
        ))
        .map_err(Error::runtime)?;
        let mut outs = vec![("gaps", gaps.to_string())];
        for st in Status::ALL {
            outs.push((st.as_str(), count(st).to_string()));
        }
        crate::actions::set_outputs(&outs).map_err(Error::runtime)?;
    }
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
