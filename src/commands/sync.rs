//! `cleartrail sync` and `cleartrail run`: collect, normalize, commit, and
//! print what changed (text, JSON or Markdown on stdout; a job summary and
//! step outputs when running in GitHub Actions).

use crate::audit::{self, Settings};
use crate::cli::{GlobalArgs, SyncArgs};
use crate::config::Config;
use crate::controls::evaluate::{FrameworkStatus, Status};
use crate::diag::Format;
use crate::error::{Error, ExitStatus};
use crate::packet::Templates;
use crate::store::Store;
use crate::sync::{SyncOptions, SyncReport};

use std::cell::RefCell;
use std::fmt::Write as _;

pub fn run(g: &GlobalArgs, args: &SyncArgs, scheduled: bool) -> Result<ExitStatus, Error> {
    let full = super::load_config(g)?;
    let now = crate::clock::now();
    let period = super::resolve_period(args.period.as_deref(), Some(&full), now)?;
    // `--source` narrows what is collected, not what is checked: checks
    // and scope always see the whole configuration.
    let mut config = full.clone();
    select_sources(&mut config, &args.sources)?;
    // Everything that can be wrong with the user's files is found before
    // the repository is touched.
    let (catalogs, scope) = super::catalogs_and_scope(Some(&full))?;
    let templates = Templates::load(Some(&full.templates_dir())).map_err(Error::usage)?;
    let settings = Settings {
        // The writer judges again after every change: artifacts it parsed
        // before come from its cache instead of being read again.
        held_cache: true,
        ..Settings::new(
            &catalogs,
            &scope,
            Some(&full),
            &period,
            audit::as_of(&period, now.date_naive()),
        )
    };
    let statuses: RefCell<Vec<FrameworkStatus>> = RefCell::new(Vec::new());
    let coverage: RefCell<Vec<audit::Coverage>> = RefCell::new(Vec::new());
    let derive = |snapshot: &crate::store::Snapshot<'_>,
                  changes: &crate::store::ChangeSet,
                  evidence_changed: bool| {
        // Nothing new and nothing that derived files depend on changed:
        // they stand as committed, and no evidence is read again.
        let manual_now = match &settings.manual {
            Some((path, text)) => {
                crate::config::raw::parse_as(&path.display().to_string(), text).ok()
            }
            None => Some(Default::default()),
        };
        if !evidence_changed
            && let Some(manual_now) = manual_now
            && let Some(m) =
                audit::read_manifest(snapshot).map_err(crate::sync::SyncError::Store)?
            && m["inputs"].as_str()
                == Some(
                    audit::inputs_fingerprint(
                        &settings,
                        &settings.effective(&manual_now),
                        &templates,
                    )
                    .as_str(),
                )
        {
            *coverage.borrow_mut() =
                serde_json::from_value(m["coverage"].clone()).unwrap_or_default();
            // Full statuses, if a format needs them, are evaluated anew.
            statuses.borrow_mut().clear();
            return Ok(Vec::new());
        }
        // `a` (every held artifact, parsed) is freed when this returns,
        // before the commit is written.
        let a = audit::evaluate(snapshot, Some(changes), &settings)?;
        let files = audit::derived_files(
            &a,
            &settings,
            snapshot,
            Some(changes),
            &templates,
            &period,
            &config.branch,
        )?;
        *coverage.borrow_mut() = a.statuses.iter().map(audit::Coverage::of).collect();
        *statuses.borrow_mut() = a.statuses;
        let produced: std::collections::BTreeSet<&str> =
            files.iter().map(|(p, _)| p.as_str()).collect();
        let stale =
            audit::stale_derived(snapshot, &produced).map_err(crate::sync::SyncError::Store)?;
        // Judged again (a new day, say) and nothing a reader sees changed:
        // the manifest alone would differ, and that is not worth a commit.
        let unchanged = stale.is_empty()
            && files.iter().all(|(p, d)| {
                p == crate::verify::DERIVED_PATH || matches!(d, audit::Derived::AsCommitted)
            });
        if !evidence_changed && unchanged {
            return Ok(Vec::new());
        }
        let mut out: Vec<(String, Option<crate::store::Content>)> = files
            .into_iter()
            .filter_map(|(p, d)| match d {
                audit::Derived::Changed(c) => Some((p, Some(c))),
                audit::Derived::AsCommitted => None,
            })
            .collect();
        out.extend(stale.into_iter().map(|p| (p, None)));
        Ok(out)
    };
    let opts = SyncOptions {
        period: period.clone(),
        now,
        limits: Default::default(),
        configured: Some(full.sources.iter().map(|s| s.name.clone()).collect()),
    };
    // Collect before touching the repository: a failing source leaves no
    // trace, not even a new empty repository. What queries saved last time
    // is read from the branch when it exists.
    let states = saved_states(&g.repo, &config.branch)?;
    let started = std::time::Instant::now();
    // Each page is serialized as it arrives; the parsed artifacts are
    // dropped there.
    let (results, prepared) = super::runtime()?
        .block_on(crate::sync::collect_all(&config, &opts, &states))
        .map_err(|e| {
            // Missing or malformed credentials are the user's to fix.
            let setup = matches!(
                &e,
                crate::sync::SyncError::Collect {
                    source: crate::connectors::ConnectorError::Setup { .. },
                    ..
                }
            );
            let e = anyhow::Error::new(e).context(format!("sync into {}", g.repo.display()));
            if setup {
                Error::usage(e)
            } else {
                Error::runtime(e)
            }
        })?;
    tracing::debug!(
        "collected {} artifacts in {:.2?}",
        prepared.iter().map(Vec::len).sum::<usize>(),
        started.elapsed()
    );
    crate::memory::release_freed();
    let store = Store::open_or_init(&g.repo).map_err(|e| match e {
        crate::store::StoreError::NotARepository { .. } => Error::usage(e),
        other => Error::runtime(other),
    })?;
    refuse_checked_out(&store, &config.branch)?;
    if let Some(from) = store.adopt_remote(&config.branch).map_err(Error::runtime)? {
        tracing::info!(
            "the evidence branch `{}` continues {from} (its pull request's branch)",
            config.branch
        );
    }
    let report = crate::sync::commit_prepared(
        &store,
        &config.branch,
        &results,
        &prepared,
        &opts,
        Some(&derive),
    )
    .map_err(|e| match e {
        crate::sync::SyncError::Derive(d) if d.is_usage() => Error::usage(d),
        e @ crate::sync::SyncError::WouldFork { .. } => Error::usage(e),
        other => Error::runtime(
            anyhow::Error::new(other).context(format!("sync into {}", g.repo.display())),
        ),
    })?;
    let statuses = statuses.into_inner();
    let coverage = coverage.into_inner();
    // The commit has landed: failing to print about it must not turn the
    // run into a failure (exit 3 promises nothing was written).
    if let Err(e) = print_report(g, &report, &coverage, &statuses, scheduled) {
        tracing::warn!("{e:#}");
    }
    if let Err(e) = github_outputs(&report, &coverage) {
        tracing::warn!("{e:#}");
    }
    Ok(ExitStatus::Ok)
}

/// The query states saved on the evidence branch, when the repository and
/// the branch exist (read-only: nothing is created here).
fn saved_states(
    repo: &std::path::Path,
    branch: &str,
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    let store = match Store::open(repo) {
        Ok(s) => s,
        Err(_) => return Ok(Default::default()),
    };
    let read = || -> Result<_, crate::sync::SyncError> {
        // A branch only on a remote is the one this run continues.
        let tip = match store.branch_tip(branch)? {
            Some(t) => Some(t),
            None => store.tracking_tip(branch)?.map(|(_, t)| t),
        };
        match tip {
            Some(tip) => crate::sync::read_states(&store.snapshot(Some(tip))?),
            None => Ok(Default::default()),
        }
    };
    read().map_err(Error::runtime)
}

/// Moving a branch that a work tree has checked out would leave that work
/// tree showing the new evidence as deleted; Git refuses the same for a
/// push to a checked-out branch.
fn refuse_checked_out(store: &Store, branch: &str) -> Result<(), Error> {
    let repo = store.repo();
    if repo.is_bare() {
        return Ok(());
    }
    let head = repo
        .find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string));
    if head.as_deref() == Some(&format!("refs/heads/{branch}")) {
        return Err(Error::usage(anyhow::anyhow!(
            "the evidence branch `{branch}` is checked out in {}; cleartrail writes it without a work tree\n  hint: check out another branch (e.g. `git switch main`) or use a bare repository",
            store.path().display()
        )));
    }
    Ok(())
}

fn select_sources(config: &mut Config, names: &[String]) -> Result<(), Error> {
    if names.is_empty() {
        return Ok(());
    }
    for n in names {
        if !config.sources.iter().any(|s| &s.name == n) {
            let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::usage(anyhow::anyhow!(
                "--source {n}: no source named `{n}` in {} (configured: {})",
                config.file.display(),
                known.join(", ")
            )));
        }
    }
    config.sources.retain(|s| names.contains(&s.name));
    Ok(())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// One line per framework: in scope, and how many controls per status.
pub fn coverage_lines(statuses: &[audit::Coverage]) -> String {
    let mut s = String::new();
    for f in statuses {
        let _ = writeln!(
            s,
            "{}: {} controls in scope: {}",
            f.framework,
            f.in_scope,
            f.summary()
        );
    }
    s
}

pub fn render_text(
    r: &SyncReport,
    statuses: &[audit::Coverage],
    repo: &std::path::Path,
    config_arg: &str,
    scheduled: bool,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "period {} -> branch {}", r.period, r.branch);
    let _ = writeln!(
        s,
        "  {:<8} {:<12} {:>9} {:>6} {:>8} {:>8} {:>6}",
        "source", "kind", "collected", "added", "changed", "removed", "held"
    );
    for k in &r.kinds {
        let _ = writeln!(
            s,
            "  {:<8} {:<12} {:>9} {:>6} {:>8} {:>8} {:>6}",
            k.source, k.kind, k.collected, k.added, k.changed, k.removed, k.held
        );
    }
    let (a, c, d) = r.totals();
    match (&r.commit, &r.tip) {
        (Some(commit), _) => {
            let _ = writeln!(
                s,
                "committed {} ({a} added, {c} changed, {d} removed)",
                short(commit)
            );
        }
        (None, Some(tip)) => {
            let _ = writeln!(s, "nothing new: no commit (branch stays at {})", short(tip));
        }
        (None, None) => {
            let _ = writeln!(s, "nothing collected: no commit");
        }
    }
    if scheduled {
        s.push_str(&coverage_lines(statuses));
    }
    if scheduled && r.tip.is_some() {
        let repo = repo.display();
        let _ = writeln!(s, "look:   git -C {repo} log --stat {}", r.branch);
        let _ = writeln!(s, "        git -C {repo} show {}:collections/", r.branch);
        let _ = writeln!(s, "        git -C {repo} show {}:README.md", r.branch);
        let _ = writeln!(s, "gaps:   cleartrail gaps --repo {repo}{config_arg}");
        let _ = writeln!(s, "verify: cleartrail verify --repo {repo}");
    }
    s
}

pub fn render_markdown(r: &SyncReport, statuses: &[audit::Coverage]) -> String {
    let mut s = format!("### ClearTrail sync: period {}\n\n", r.period);
    s.push_str("| source | kind | collected | added | changed | removed | held |\n|---|---|--:|--:|--:|--:|--:|\n");
    for k in &r.kinds {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            k.source, k.kind, k.collected, k.added, k.changed, k.removed, k.held
        );
    }
    let _ = match &r.commit {
        Some(c) => writeln!(s, "\nCommitted `{}` to `{}`.", short(c), r.branch),
        None => writeln!(s, "\nNothing new: no commit."),
    };
    if !statuses.is_empty() {
        s.push_str("\n| framework | in scope | covered | unapproved | stale | failing | missing |\n|---|--:|--:|--:|--:|--:|--:|\n");
        for f in statuses {
            let n = |st: Status| f.count(st);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                f.framework,
                f.in_scope,
                n(Status::Covered),
                n(Status::Unapproved),
                n(Status::Stale),
                n(Status::Failing),
                n(Status::Missing)
            );
        }
    }
    s
}

fn print_report(
    g: &GlobalArgs,
    r: &SyncReport,
    coverage: &[audit::Coverage],
    statuses: &[FrameworkStatus],
    scheduled: bool,
) -> anyhow::Result<()> {
    let statuses_owned;
    let statuses = if statuses.is_empty() && g.format == Format::Github {
        // Annotations need every control: evaluate the tip (derivation
        // was skipped because nothing changed).
        statuses_owned = live_statuses(g, r)?;
        &statuses_owned[..]
    } else {
        statuses
    };
    let out = match g.format {
        Format::Json => {
            let counts: Vec<serde_json::Value> = coverage
                .iter()
                .map(|f| serde_json::json!({"framework": f.framework, "in_scope": f.in_scope, "out_of_scope": f.out_of_scope, "counts": f.counts}))
                .collect();
            let mut v = serde_json::to_value(r)?;
            v["coverage"] = serde_json::Value::Array(counts);
            let mut v = serde_json::to_string_pretty(&v)?;
            v.push('\n');
            v
        }
        Format::Markdown => render_markdown(r, coverage),
        Format::Github => crate::diag::render_github(&super::gaps::gap_diagnostics(statuses)),
        Format::Text => {
            // `gaps` must read the same configuration to give the same scope.
            let config_arg = match &g.config {
                Some(c) if *c != g.repo.join(crate::config::CONFIG_FILE) => {
                    format!(" --config {}", c.display())
                }
                _ => String::new(),
            };
            render_text(r, coverage, &g.repo, &config_arg, scheduled)
        }
    };
    super::emit(&out);
    Ok(())
}

/// Every control's status at the branch tip, as `gaps` computes it.
fn live_statuses(g: &GlobalArgs, r: &SyncReport) -> anyhow::Result<Vec<FrameworkStatus>> {
    let Some(tip) = &r.tip else {
        return Ok(Vec::new());
    };
    let config = crate::config::load_for_reading(&super::config_path(g))?;
    let (catalogs, scope) =
        super::catalogs_and_scope(Some(&config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let period = super::resolve_period(Some(&r.period), Some(&config), crate::clock::now())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::open(&g.repo)?;
    let snapshot = store.snapshot(Some(git2::Oid::from_str(tip)?))?;
    let settings = Settings::new(
        &catalogs,
        &scope,
        Some(&config),
        &period,
        audit::as_of(&period, crate::clock::now().date_naive()),
    );
    Ok(audit::evaluate(&snapshot, None, &settings)?.statuses)
}

/// The job summary and step outputs, in GitHub Actions.
fn github_outputs(r: &SyncReport, statuses: &[audit::Coverage]) -> anyhow::Result<()> {
    crate::actions::append_summary(&render_markdown(r, statuses))?;
    let (a, c, d) = r.totals();
    let gaps: usize = statuses
        .iter()
        .map(|f| f.in_scope - f.count(crate::controls::evaluate::Status::Covered))
        .sum();
    crate::actions::set_outputs(&[
        ("gaps", gaps.to_string()),
        ("changed", r.commit.is_some().to_string()),
        ("commit", r.commit.clone().unwrap_or_default()),
        ("added", a.to_string()),
        ("updated", c.to_string()),
        ("removed", d.to_string()),
    ])
}
