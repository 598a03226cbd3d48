//! `cleartrail export gdrive`: the period's packet uploaded to Drive with
//! its export record, then committed to the branch; and the Drive
//! connection that `verify --against-drive` shares.

use crate::cli::{ExportGdriveArgs, GlobalArgs};
use crate::connectors::ConnectorError;
use crate::connectors::gdrive::client::{self, GdriveClient, GdriveEnv};
use crate::diag::Format;
use crate::error::{Error, ExitStatus};
use crate::export::gdrive::{Drive, ExportError, Options};
use crate::store::CommitOutcome;

pub fn gdrive(g: &GlobalArgs, args: &ExportGdriveArgs) -> Result<ExitStatus, Error> {
    // Credentials first: a run that cannot export changes nothing.
    let env = drive_env(args.api_url.as_deref())?;
    let r = super::packet::render(
        g,
        &super::packet::Selection {
            period: &args.period,
            framework: args.framework.as_deref(),
            control: None,
            rev: None,
        },
    )?;
    let label = r.period.label().to_string();
    let evidence = r.commit.to_string();
    let outcome = super::runtime()?.block_on(async {
        let client = connect(&env).await?;
        let scope = match args.scope {
            crate::cli::DriveScope::File => client::FILE,
            crate::cli::DriveScope::Full => client::FULL,
        };
        Drive::new(&client, scope, Options::default())
            .export(&args.folder, &label, &evidence, &r.files)
            .await
            .map_err(|e| export_error(e, &args.folder))
    })?;
    // Committed once Drive holds it, so a failed export leaves the
    // evidence repository as it was; what is on Drive is then always the
    // packet on the branch.
    let (root, branch, committed) = super::packet::commit(&r)?;
    match committed {
        CommitOutcome::Committed { commit, .. } => tracing::info!(
            "committed the packet under {root}/ to {branch} ({})",
            &commit.to_string()[..12]
        ),
        CommitOutcome::Unchanged { .. } => {
            tracing::debug!("{root}/ is already up to date on {branch}")
        }
    }
    let out = match g.format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&outcome).map_err(Error::runtime)?;
            s.push('\n');
            s
        }
        _ => {
            let mut s = format!(
                "exported {root}/ to Drive folder {} / {label} ({}): {} created, {} new revisions, {} superseded, {} unchanged\n",
                args.folder,
                outcome.period_folder,
                outcome.created.len(),
                outcome.revised.len(),
                outcome.superseded.len(),
                outcome.unchanged
            );
            for (what, paths) in [
                ("created", &outcome.created),
                ("new revision", &outcome.revised),
                ("superseded", &outcome.superseded),
            ] {
                for p in paths {
                    s.push_str(&format!("  {what}: {p}\n"));
                }
            }
            s
        }
    };
    super::emit(&out);
    Ok(ExitStatus::Ok)
}

/// Where Drive is and the credentials file, or a usage error saying
/// what to set.
pub(crate) fn drive_env(api_url: Option<&str>) -> Result<GdriveEnv, Error> {
    GdriveEnv::from_env(api_url).map_err(Error::usage)
}

/// The Drive client with the politeness the source uses.
pub(crate) async fn connect(env: &GdriveEnv) -> Result<GdriveClient, Error> {
    GdriveClient::connect(env, client::politeness())
        .await
        .map_err(|e| match e {
            ConnectorError::Setup { .. } => Error::usage(e),
            e => Error::runtime(e),
        })
}

/// What the user fixes is 2: a folder not there or not shared, two
/// period folders to choose from, and a 403 (rate limits are waited out
/// before this, so a 403 here is a permission the account lacks, or a
/// service account's missing storage quota); what the API answers
/// otherwise is 3.
pub(crate) fn export_error(e: ExportError, folder: &str) -> Error {
    let forbidden = matches!(
        e,
        ExportError::Api(ConnectorError::Http { status: 403, .. })
    );
    let usage = forbidden
        || matches!(
            e,
            ExportError::FolderNotFound { .. }
                | ExportError::Ambiguous { .. }
                | ExportError::Api(ConnectorError::Setup { .. })
        );
    let mut e = anyhow::Error::new(e).context(format!("Drive folder {folder}"));
    if forbidden {
        e = e.context(
            "Drive refused (403): share the folder with the account of GOOGLE_APPLICATION_CREDENTIALS as Editor; a service account has no storage of its own, so export into a shared drive (or a folder in one)",
        );
    }
    if usage {
        Error::usage(e)
    } else {
        Error::runtime(e)
    }
}
