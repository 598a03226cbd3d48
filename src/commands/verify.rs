//! `cleartrail verify`: offline re-hash of an evidence branch.

use crate::cli::{GlobalArgs, VerifyArgs};
use crate::diag::{self, Format};
use crate::error::{Error, ExitStatus};
use anyhow::Context as _;
use std::fmt::Write as _;

pub fn run(g: &GlobalArgs, args: &VerifyArgs) -> Result<ExitStatus, Error> {
    let store = super::open_store(g)?;
    let config = super::optional_config(g)?;
    let report = match super::evidence_rev(&store, args.rev.as_deref(), config.as_ref())? {
        Some(rev) => {
            let commit = store.resolve(&rev).map_err(Error::usage)?;
            let snapshot = store.snapshot(Some(commit)).map_err(Error::runtime)?;
            let mut report = crate::verify::verify(&snapshot, &commit.to_string())
                .with_context(|| format!("verifying {rev}"))
                .map_err(Error::runtime)?;
            let approvals = approval_findings(&store, &snapshot, config.as_ref())?;
            report.findings.extend(approvals);
            if let Some(p) = &args.period {
                match against_export(args, config.as_ref(), &snapshot, p, &rev) {
                    Ok(findings) => report.findings.extend(findings),
                    Err(e) => {
                        if !report.findings.is_empty() {
                            tracing::warn!(
                                "the branch itself has {} findings: `cleartrail verify` without --period lists them",
                                report.findings.len()
                            );
                        }
                        return Err(e);
                    }
                }
            }
            (rev, report)
        }
        None => {
            // Nothing to verify is a failure, never "0 findings".
            let branch = super::evidence_branch(config.as_ref());
            let mut report = crate::verify::VerifyReport::default();
            report.findings.push(crate::diag::Diagnostic::error(
                "branch-missing",
                format!("refs/heads/{branch}"),
                format!(
                    "the evidence branch `{branch}` exists neither locally nor as a remote-tracking branch; fetch it (`git fetch origin {branch}`) or pass --rev"
                ),
            ));
            (branch, report)
        }
    };
    let (rev, report) = report;
    let short = &report.commit[..report.commit.len().min(12)];
    let out = match g.format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&report).map_err(Error::runtime)?;
            s.push('\n');
            s
        }
        Format::Github => diag::render_github(&report.findings),
        Format::Markdown => markdown(&rev, short, &report),
        Format::Text => {
            let mut s = diag::render_text(&report.findings);
            let _ = writeln!(
                s,
                "verified {rev} ({}): {} artifacts, {} captured documents, {} collections, {} findings",
                short,
                report.artifacts,
                report.captured,
                report.collections,
                report.findings.len()
            );
            s
        }
    };
    super::emit(&out);
    if crate::actions::in_actions() {
        // Annotations on the files (unless printed already), a summary
        // and the result as outputs.
        if g.format != Format::Github {
            eprint!("{}", diag::render_github(&report.findings));
        }
        crate::actions::append_summary(&markdown(&rev, short, &report)).map_err(Error::runtime)?;
        crate::actions::set_outputs(&[
            (
                "verify",
                if report.findings.is_empty() {
                    "passed"
                } else {
                    "failed"
                }
                .to_string(),
            ),
            ("findings", report.findings.len().to_string()),
        ])
        .map_err(Error::runtime)?;
    }
    Ok(if report.findings.is_empty() {
        ExitStatus::Ok
    } else {
        ExitStatus::Findings
    })
}

/// The report as Markdown (`--format markdown`, the job summary).
fn markdown(rev: &str, short: &str, report: &crate::verify::VerifyReport) -> String {
    let mut s = format!(
        "### ClearTrail verify `{rev}` ({short})\n\n{} artifacts, {} captured documents, {} collections: ",
        report.artifacts, report.captured, report.collections
    );
    if report.findings.is_empty() {
        s.push_str("all verified.\n");
    } else {
        let _ = writeln!(s, "{} findings.\n", report.findings.len());
        s.push_str(&diag::render_markdown(&report.findings));
    }
    s
}

/// Compares the export named by `--against-drive` or `--against-dir`
/// with the packet committed for `period`.
fn against_export(
    args: &VerifyArgs,
    config: Option<&crate::config::Config>,
    snapshot: &crate::store::Snapshot<'_>,
    period: &str,
    rev: &str,
) -> Result<Vec<diag::Diagnostic>, Error> {
    let period = super::resolve_period(Some(period), config, crate::clock::now())?;
    let label = period.label().to_string();
    let root = super::packet::packet_root(&period);
    let (expected, commit) = match crate::export::committed_packet(snapshot, &root, &label, rev) {
        Ok(p) => p,
        // A damaged manifest is a finding of the branch's own
        // (`packet-mismatch`): there is no packet to compare with.
        Err(e)
            if matches!(
                e.downcast_ref::<crate::export::PacketError>(),
                Some(crate::export::PacketError::Unreadable { .. })
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(Error::usage(e)),
    };
    if let Some(dir) = &args.against_dir {
        let copy = crate::export::read_dir_copy(dir)
            .with_context(|| format!("reading the export copy {}", dir.display()))
            .map_err(Error::usage)?;
        let at = |p: &str| dir.join(p).display().to_string();
        return Ok(crate::export::compare(&expected, &commit, &copy, &at));
    }
    let Some(folder) = &args.against_drive else {
        return Ok(Vec::new());
    };
    let env = super::export::drive_env(args.api_url.as_deref())?;
    let copy = super::runtime()?.block_on(async {
        let client = super::export::connect(&env).await?;
        crate::export::gdrive::Drive::new(
            &client,
            crate::connectors::gdrive::client::READONLY,
            Default::default(),
        )
        .read_copy(folder, &label)
        .await
        .map_err(|e| super::export::export_error(e, folder))
    })?;
    let at = |p: &str| format!("drive:{folder}/{label}/{p}");
    Ok(crate::export::compare(&expected, &commit, &copy, &at))
}

/// The approval records under `approvals/`, verified as the configuration
/// says (who signs, the repository id); records with no configuration to
/// verify them are a finding of their own.
fn approval_findings(
    store: &crate::store::Store,
    snapshot: &crate::store::Snapshot<'_>,
    config: Option<&crate::config::Config>,
) -> Result<Vec<diag::Diagnostic>, Error> {
    let expect = match config.and_then(|c| c.approvals.as_ref()) {
        Some(a) => Some(
            crate::approvals::verify::Expect::new(a)
                .context("reading what verifies approval records")
                .map_err(Error::usage)?,
        ),
        None => None,
    };
    crate::approvals::verify::records(snapshot, store.repo(), expect.as_ref())
        .context("verifying approval records")
        .map_err(Error::runtime)
}
