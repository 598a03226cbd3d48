//! `cleartrail packet`: render packets for auditors from the evidence
//! branch, with their manifest, into a folder (`--out`) or as a commit to
//! `packets/<period>/` on the branch.

use crate::audit;
use crate::cli::{GlobalArgs, PacketArgs};
use crate::error::{Error, ExitStatus};
use crate::packet::Templates;
use crate::store::{Author, ChangeSet, CommitOutcome};
use anyhow::Context as _;

pub fn run(g: &GlobalArgs, args: &PacketArgs) -> Result<ExitStatus, Error> {
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
    let result = super::evaluate_branch(
        &snapshot,
        config.as_ref(),
        &catalogs,
        &scope,
        args.framework.as_deref(),
        &period,
        as_of,
    )?;
    let files = crate::packet::packet_files(
        &result,
        &templates,
        &period,
        as_of,
        &commit.to_string(),
        args.control.as_deref(),
    )
    // A template the user overrides: fix it and run again.
    .map_err(Error::usage)?;
    // As in `gaps`: the process is about to end.
    std::mem::forget(result);
    match &args.out {
        Some(dir) => {
            crate::packet::clear_previous(dir).map_err(Error::usage)?;
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
