//! `cleartrail verify`: offline re-hash of an evidence branch.

use crate::cli::{GlobalArgs, VerifyArgs};
use crate::config::DEFAULT_BRANCH;
use crate::diag::{self, Format};
use crate::error::{Error, ExitStatus};
use crate::store::{Store, StoreError};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::io::Write as _;

pub fn run(g: &GlobalArgs, args: &VerifyArgs) -> Result<ExitStatus, Error> {
    let store = Store::open(&g.repo).map_err(|e| match e {
        StoreError::NotARepository { .. } => Error::usage(e),
        other => Error::runtime(other),
    })?;
    let rev = match &args.rev {
        Some(r) => r.clone(),
        None => default_rev(g, &store)?,
    };
    let commit = store.resolve(&rev).map_err(Error::usage)?;
    let snapshot = store.snapshot(Some(commit)).map_err(Error::runtime)?;
    let report = crate::verify::verify(&snapshot, &commit.to_string())
        .with_context(|| format!("verifying {rev}"))
        .map_err(Error::runtime)?;
    let out = match g.format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&report).map_err(Error::runtime)?;
            s.push('\n');
            s
        }
        Format::Github => diag::render_github(&report.findings),
        Format::Markdown => {
            let mut s = format!(
                "### ClearTrail verify `{rev}` ({})\n\n{} artifacts, {} captured documents, {} collections: ",
                &report.commit[..12],
                report.artifacts,
                report.captured,
                report.collections
            );
            if report.findings.is_empty() {
                s.push_str("all verified.\n");
            } else {
                let _ = writeln!(s, "{} findings.\n", report.findings.len());
                s.push_str(&diag::render_markdown(&report.findings));
            }
            s
        }
        Format::Text => {
            let mut s = diag::render_text(&report.findings);
            let _ = writeln!(
                s,
                "verified {rev} ({}): {} artifacts, {} captured documents, {} collections, {} findings",
                &report.commit[..12],
                report.artifacts,
                report.captured,
                report.collections,
                report.findings.len()
            );
            s
        }
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("writing to stdout")
        .map_err(Error::runtime)?;
    Ok(if report.findings.is_empty() {
        ExitStatus::Ok
    } else {
        ExitStatus::Findings
    })
}

/// The configured evidence branch when a configuration is at hand, else
/// the default branch name when it exists, else HEAD. Verification needs no
/// configuration: an auditor may only have the repository.
fn default_rev(g: &GlobalArgs, store: &Store) -> Result<String, Error> {
    let path = super::config_path(g);
    let branch = if g.config.is_some() || path.exists() {
        super::load_config(g)?.branch
    } else {
        DEFAULT_BRANCH.to_string()
    };
    Ok(match store.branch_tip(&branch).map_err(Error::runtime)? {
        Some(_) => branch,
        None => "HEAD".to_string(),
    })
}
