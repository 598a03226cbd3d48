//! Command-line definitions (clap). No behaviour lives here.

use crate::diag::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Turns SOC 2 / ISO 27001 evidence into Git history that anyone can verify.
///
/// Exit codes: 0 ok; 1 findings that fail the run (verify failures);
/// 2 usage or configuration error; 3 runtime error (I/O, git, network, a
/// concurrent writer that could not be rebased on).
#[derive(Debug, Parser)]
#[command(
    name = "cleartrail",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The evidence repository (created by `sync` and `run` when missing).
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// Configuration file [default: <repo>/cleartrail.yml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format for data on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// More log output on stderr (-vv for more still).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter configuration into a new or existing
    /// evidence repository.
    Init(InitArgs),
    /// The scheduled job: sync, then a summary of what changed.
    Run(SyncArgs),
    /// Collect from every source, normalize and commit what changed to the
    /// evidence branch.
    Sync(SyncArgs),
    /// Re-hash every artifact, captured document and collection record of
    /// the evidence branch, offline. Exits 1 on any finding.
    Verify(VerifyArgs),
    /// Controls without fresh, approved, passing evidence: the status of
    /// every in-scope control.
    Gaps(GapsArgs),
    /// Render evidence packets for auditors from templates, with a manifest.
    Packet(PacketArgs),
    /// Publish a period's packet outside the repository.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Push the evidence branch and open (or update) its pull request into
    /// the default branch, with a body that says what a reviewer approves:
    /// the artifacts added, changed and removed by control, what changed in
    /// each, the checks that fail and the gaps after the merge.
    Propose(ProposeArgs),
    /// Record the approvals of a merged evidence pull request as signed
    /// records on the default branch (run after the merge, from the
    /// default branch: never from a job the pull request's author
    /// controls). Exits 1, writing nothing, when the policy is not met.
    Approve(ApproveArgs),
    /// Browse the control catalogs and the crosswalk.
    #[command(subcommand)]
    Controls(ControlsCommand),
}

#[derive(Debug, Args)]
pub struct GapsArgs {
    /// Period to evaluate [default: `period` from the configuration, else the current year].
    #[arg(long, value_name = "PERIOD")]
    pub period: Option<String>,
    /// Only this framework (soc2, iso27001-2022).
    #[arg(long, value_name = "FRAMEWORK")]
    pub framework: Option<String>,
    /// Exit 1 when any in-scope control has one of these statuses
    /// (comma-separated: missing, stale, failing, unapproved).
    #[arg(long, value_name = "STATUSES", value_delimiter = ',')]
    pub fail_on: Vec<String>,
    /// Revision to evaluate [default: the evidence branch].
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
}

#[derive(Debug, Args)]
pub struct PacketArgs {
    /// Period of the packet.
    #[arg(long, value_name = "PERIOD")]
    pub period: String,
    /// Only this framework.
    #[arg(long, value_name = "FRAMEWORK")]
    pub framework: Option<String>,
    /// Only this control's page (and the manifest).
    #[arg(long, value_name = "ID")]
    pub control: Option<String>,
    /// Write the packet here instead of committing it to
    /// `packets/<period>/` on the evidence branch.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Evidence revision to render from [default: the evidence branch].
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// The git remote the branch is pushed to.
    #[arg(long, value_name = "NAME", default_value = "origin")]
    pub remote: String,
    /// The branch the pull request merges into [default:
    /// `approvals.default_branch`, else the remote's default branch, else
    /// main].
    #[arg(long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// The repository on GitHub, `owner/name` [default:
    /// `approvals.repository`, else GITHUB_REPOSITORY, else the remote's
    /// URL].
    #[arg(long, value_name = "OWNER/NAME")]
    pub github_repository: Option<String>,
    /// Print the title and body only: no commit, no push, no API call.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The pull request's number [default in GitHub Actions: the one the
    /// event merged: a `push`'s or `workflow_run`'s commit, a
    /// `workflow_dispatch`'s `pr` input].
    #[arg(long, value_name = "N")]
    pub pr: Option<u64>,
    /// Push the default branch with the new records to this remote (fast
    /// forward only); a push that fails withdraws the records' commit.
    #[arg(long, value_name = "REMOTE")]
    pub push: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Upload the period's packet (rendered as `packet` does, and
    /// committed to `packets/<period>/` once uploaded) and an export record
    /// into a folder per period in a Google Drive folder. Uploads only what
    /// changed; files no longer in the packet move to `superseded/`.
    ///
    /// Credentials: GOOGLE_APPLICATION_CREDENTIALS (a service account key,
    /// or the file google-github-actions/auth writes), scope `drive.file`;
    /// the folder must be shared with that account as Editor.
    Gdrive(ExportGdriveArgs),
}

#[derive(Debug, Args)]
pub struct ExportGdriveArgs {
    /// Period of the packet.
    #[arg(long, value_name = "PERIOD")]
    pub period: String,
    /// The Drive folder (or shared drive) id to export into.
    #[arg(long, value_name = "ID")]
    pub folder: String,
    /// Only this framework.
    #[arg(long, value_name = "FRAMEWORK")]
    pub framework: Option<String>,
    /// The Drive API root [default: https://www.googleapis.com/]: a proxy
    /// or a test server.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// The OAuth scope asked for: `file` (drive.file: only what ClearTrail
    /// created, so the folder must be one it can open) or `full` (drive:
    /// any folder shared with the account).
    #[arg(long, value_enum, default_value_t = DriveScope::File)]
    pub scope: DriveScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriveScope {
    /// https://www.googleapis.com/auth/drive.file
    File,
    /// https://www.googleapis.com/auth/drive
    Full,
}

#[derive(Debug, Subcommand)]
pub enum ControlsCommand {
    /// List controls (id, title, category).
    List {
        /// Only this framework.
        #[arg(long, value_name = "FRAMEWORK")]
        framework: Option<String>,
    },
    /// Show one control: summary, evidence requirements, checks, crosswalk.
    Show {
        /// Control id, e.g. CC8.1 or 8.32.
        id: String,
        /// The framework, when the id exists in several.
        #[arg(long, value_name = "FRAMEWORK")]
        framework: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder of the evidence repository [default: --repo].
    pub dir: Option<PathBuf>,
    /// Overwrite an existing cleartrail.yml and workflows.
    #[arg(long)]
    pub force: bool,
    /// Write no GitHub Actions workflows.
    #[arg(long)]
    pub no_workflows: bool,
    /// The commit of the ClearTrail action the workflows pin (40 hex
    /// digits) [default: the commit this release was built from].
    #[arg(long, value_name = "SHA")]
    pub action_ref: Option<String>,
    /// The evidence repository's default branch, where approvals are
    /// recorded.
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    pub default_branch: String,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Reporting period: 2026, 2026-Q3, 2026-09 or 2026-07-01..2026-09-30
    /// [default: `period` from the configuration, else the current year].
    #[arg(long, value_name = "PERIOD")]
    pub period: Option<String>,
    /// Collect only the named sources (repeatable).
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Revision to verify [default: the evidence branch, else HEAD].
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// Also compare the export of this period's committed packet (with
    /// --against-drive or --against-dir).
    #[arg(long, value_name = "PERIOD", requires = "against")]
    pub period: Option<String>,
    /// The Drive folder given to `export gdrive`: its folder of the period
    /// is read through the API (scope `drive.readonly`).
    #[arg(long, value_name = "ID", group = "against", requires = "period")]
    pub against_drive: Option<String>,
    /// A downloaded copy of the period's folder of an export.
    #[arg(long, value_name = "DIR", group = "against", requires = "period")]
    pub against_dir: Option<PathBuf>,
    /// The Drive API root for --against-drive [default:
    /// https://www.googleapis.com/].
    #[arg(long, value_name = "URL", requires = "against_drive")]
    pub api_url: Option<String>,
}
