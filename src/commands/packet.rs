//! `cleartrail packet`: render packets for auditors from the evidence
//! branch, with their manifest, into a folder (`--out`) or as a commit to
//! `packets/<period>/` on the branch. `export` reuses both halves.

use crate::audit;
use crate::cli::{GlobalArgs, PacketArgs};
use crate::config::Config;
use crate::error::{Error, ExitStatus};
use crate::packet::{PacketFile, Templates};
use crate::period::Period;
use crate::store::{Author, ChangeSet, CommitOutcome, Store};
use anyhow::Context as _;

/// A packet rendered in memory, and where it came from.
pub(crate) struct Rendered {
    pub config: Option<Config>,
    pub store: Store,
    pub period: Period,
    pub files: Vec<PacketFile>,
    /// The evidence commit rendered.
    pub commit: git2::Oid,
}

/// What to render: the parts of `packet`'s arguments that choose the
/// content.
pub(crate) struct Selection<'a> {
    pub period: &'a str,
    pub framework: Option<&'a str>,
    pub control: Option<&'a str>,
    pub rev: Option<&'a str>,
}

pub fn run(g: &GlobalArgs, args: &PacketArgs) -> Result<ExitStatus, Error> {
    let r = render(
        g,
        &Selection {
            period: &args.period,
            framework: args.framework.as_deref(),
            control: args.control.as_deref(),
            rev: args.rev.as_deref(),
        },
    )?;
    match &args.out {
        Some(dir) => {
            crate::packet::clear_previous(dir).map_err(Error::usage)?;
            crate::packet::write_to(dir, &r.files)
                .with_context(|| format!("writing the packet to {}", dir.display()))
                .map_err(Error::runtime)?;
            super::emit(&format!(
                "wrote {} files to {} (manifest.json lists their SHA-256)\n",
                r.files.len(),
                dir.display()
            ));
        }
        None => {
            let (root, branch, out) = commit(&r)?;
            match out {
                CommitOutcome::Committed { commit: c, .. } => super::emit(&format!(
                    "committed {} files under {root}/ to {branch} ({})\n",
                    r.files.len(),
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

/// Renders the packet of `sel` from the evidence branch (or `sel.rev`).
pub(crate) fn render(g: &GlobalArgs, sel: &Selection<'_>) -> Result<Rendered, Error> {
    let config = super::optional_config(g)?;
    let period = super::resolve_period(Some(sel.period), config.as_ref(), crate::clock::now())?;
    let (catalogs, mut scope) = super::catalogs_and_scope(config.as_ref())?;
    super::restrict_framework(&mut scope, &catalogs, sel.framework)?;
    if let Some(id) = sel.control
        && catalogs.find(sel.framework, id).is_empty()
    {
        return Err(Error::usage(anyhow::anyhow!(
            "--control {id}: no such control"
        )));
    }
    let templates = Templates::load(config.as_ref().map(|c| c.templates_dir()).as_deref())
        .map_err(Error::usage)?;
    let store = super::open_store(g)?;
    let rev = super::require_evidence_rev(&store, sel.rev, config.as_ref())?;
    let mut commit = store.resolve(&rev).map_err(Error::usage)?;
    if sel.rev.is_none() {
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
        &store,
        &snapshot,
        config.as_ref(),
        &catalogs,
        &scope,
        sel.framework,
        &period,
        as_of,
    )?;
    let files = crate::packet::packet_files(
        &result,
        &templates,
        &period,
        as_of,
        &commit.to_string(),
        sel.control,
    )
    // A template the user overrides: fix it and run again.
    .map_err(Error::usage)?;
    // As in `gaps`: the process is about to end.
    std::mem::forget(result);
    drop(snapshot);
    Ok(Rendered {
        config,
        store,
        period,
        files,
        commit,
    })
}

/// Commits the rendered packet to `packets/<period>/` on the evidence
/// branch (nothing when it is already there). Returns the folder, the
/// branch and what happened.
pub(crate) fn commit(r: &Rendered) -> Result<(String, String, CommitOutcome), Error> {
    let branch = super::evidence_branch(r.config.as_ref());
    let store = &r.store;
    // On a runner that has the branch only as `origin/<branch>`, the
    // packet goes on top of it, not beside it.
    if let Some(from) = store.adopt_remote(&branch).map_err(Error::runtime)? {
        tracing::info!("the evidence branch `{branch}` continues {from}");
    }
    let tip = store.branch_tip(&branch).map_err(Error::runtime)?;
    let mut cs = ChangeSet::new();
    let root = packet_root(&r.period);
    // The folder is replaced as a whole, so its manifest always lists
    // exactly what it holds.
    let current = store.snapshot(tip).map_err(Error::runtime)?;
    for (path, _) in current.files_under(&root).map_err(Error::runtime)? {
        cs.delete(path);
    }
    for f in &r.files {
        cs.put(format!("{root}/{}", f.path), f.bytes.clone());
    }
    let message = format!(
        "cleartrail packet: {} for {}\n\nrendered from evidence commit {}\n",
        root,
        r.period.label(),
        r.commit
    );
    let base = tip.or(Some(r.commit));
    let out = store
        .commit(&branch, tip, base, &cs, &message, &Author::default())
        .map_err(Error::runtime)?;
    Ok((root, branch, out))
}

/// Where a period's packet lives on the branch.
pub(crate) fn packet_root(period: &Period) -> String {
    format!(
        "packets/{}",
        crate::artifact::path::escape_name(period.label())
    )
}
