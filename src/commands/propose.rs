//! `cleartrail propose`: the evidence branch pushed, and its pull request
//! into the default branch opened or brought up to date, never a second
//! one. The body says what a reviewer approves (see `crate::propose`);
//! listing pages, when the body would not fit, are committed to the branch
//! first. A run with nothing new pushes nothing and edits nothing.
//!
//! Order matters for "nothing is lost": the listing commit is withdrawn
//! when the push fails, and the pull request is touched only once the
//! branch it shows is on the remote.

use crate::cli::{GlobalArgs, ProposeArgs};
use crate::config::Config;
use crate::connectors::ConnectorError;
use crate::connectors::github::client::{GithubClient, GithubEnv};
use crate::connectors::http::Politeness;
use crate::error::{Error, ExitStatus};
use crate::propose::{self, ControlIndex, Links, Proposal};
use crate::store::{Author, ChangeSet, CommitOutcome, Store};
use serde_json::{Value, json};

/// What happened to the pull request.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    /// `created`, `updated`, `unchanged`, `nothing-to-propose` or
    /// `dry-run`.
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    branch: String,
    base: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<String>,
    pushed: bool,
    added: usize,
    changed: usize,
    removed: usize,
    failing_checks: usize,
    gaps: usize,
}

pub fn run(g: &GlobalArgs, args: &ProposeArgs) -> Result<ExitStatus, Error> {
    // The diff walks every tree of a first proposal once; libgit2 would
    // keep each in its object cache for the rest of the run, beside the
    // evaluation's artifacts. Nothing here reads a tree twice.
    git2::opts::enable_caching(false);
    let config = super::optional_config(g)?;
    let store = super::open_store(g)?;
    let branch = super::evidence_branch(config.as_ref());
    if !args.dry_run
        && let Some(from) = store.adopt_remote(&branch).map_err(Error::runtime)?
    {
        tracing::info!("the evidence branch `{branch}` continues {from}");
    }
    let tip = match store.branch_tip(&branch).map_err(Error::runtime)? {
        Some(t) => Some(t),
        // A dry run writes nothing, not even a branch: it reads the
        // remote's.
        None if args.dry_run => store
            .tracking_tip(&branch)
            .map_err(Error::runtime)?
            .map(|(_, t)| t),
        None => None,
    };
    let tip = tip.ok_or_else(|| {
        Error::usage(anyhow::anyhow!(
            "the evidence branch `{branch}` does not exist in {}: run `cleartrail run` first",
            store.path().display()
        ))
    })?;
    let base_branch = base_branch(&store, args, config.as_ref())?;
    let base_tip = match store
        .remote_tip(&args.remote, &base_branch)
        .map_err(Error::runtime)?
    {
        Some(t) => t,
        None => store
            .branch_tip(&base_branch)
            .map_err(Error::runtime)?
            .ok_or_else(|| {
                Error::usage(anyhow::anyhow!(
                    "the base branch `{base_branch}` is not here, as `{}/{base_branch}` or locally: fetch it (`git fetch {} {base_branch}`)",
                    args.remote,
                    args.remote
                ))
            })?,
    };
    let slug = repository(&store, args, config.as_ref())?;
    let mut links = Links {
        web: format!("{}/{slug}", server_url()),
        branch: branch.clone(),
        base_branch: base_branch.clone(),
        rev: tip.to_string(),
    };

    // What the pull request would show: GitHub compares the head with its
    // merge base with the base branch.
    if store.contains(base_tip, tip).map_err(Error::runtime)? {
        return finish(
            g,
            Outcome::empty("nothing-to-propose", &branch, &base_branch),
            &format!("nothing to propose: `{base_branch}` already holds `{branch}`\n"),
        );
    }
    // After a squash or rebase merge the branch's history is not in the
    // base, but its files are: nothing would change.
    if !brings_anything(&store, base_tip, tip)? {
        return finish(
            g,
            Outcome::empty("nothing-to-propose", &branch, &base_branch),
            &format!("nothing to propose: `{base_branch}` already has every file of `{branch}`\n"),
        );
    }
    let merge_base = store
        .merge_base(base_tip, tip)
        .map_err(Error::runtime)?
        .ok_or_else(|| {
            Error::usage(anyhow::anyhow!(
                "`{branch}` and `{base_branch}` share no history, so no pull request can join them: run `cleartrail run` on a clone that has `{base_branch}`, which the evidence branch then starts from"
            ))
        })?;
    let (catalogs, scope) = super::catalogs_and_scope(config.as_ref())?;
    let index = ControlIndex::new(&catalogs, &scope);
    let mut proposal = build(
        &store,
        config.as_ref(),
        &catalogs,
        &scope,
        &index,
        merge_base,
        tip,
    )?;
    if proposal.is_empty() {
        return finish(
            g,
            Outcome::empty("nothing-to-propose", &branch, &base_branch),
            &format!("nothing to propose: `{branch}` adds nothing to `{base_branch}`\n"),
        );
    }

    // Credentials before anything is written: a run that cannot reach
    // GitHub leaves the repository as it was.
    let env = if args.dry_run {
        None
    } else {
        Some(GithubEnv::from_env().map_err(Error::usage)?)
    };
    // Listing pages first, so the body can link to them on the branch.
    let pages = propose::pages(&proposal, &links, &index);
    let head = if args.dry_run {
        tip
    } else {
        commit_pages(&store, &branch, tip, &pages)?
    };
    proposal.head = head;
    links.rev = head.to_string();
    let title = proposal.title();
    let body = propose::body(&proposal, &links, &index);
    let c = proposal.counts();
    let mut outcome = Outcome {
        action: "dry-run",
        number: None,
        url: None,
        branch: branch.clone(),
        base: base_branch.clone(),
        head: Some(head.to_string()),
        pushed: false,
        added: c.added,
        changed: c.changed,
        removed: c.removed,
        failing_checks: proposal.failing.len(),
        gaps: proposal.gaps.len(),
    };
    let Some(env) = env else {
        let text = format!("{title}\n\n{body}");
        return finish(g, outcome, &text);
    };
    // The branch first: a pull request never shows a head that is not
    // on the remote. Always pushed (a remote-tracking ref may be stale;
    // git sends nothing when the remote has it already).
    if let Err(e) = super::push_branch(&store, &args.remote, head, &branch, &env) {
        if head != tip {
            // The listing commit goes with the push that failed.
            if let Err(r) = store.rewind(&branch, head, tip) {
                tracing::warn!("could not withdraw the listing commit {head}: {r}");
            }
        }
        return Err(Error::runtime(anyhow::Error::new(e)));
    }
    outcome.pushed = true;

    let rt = super::runtime()?;
    let (action, number, url) = rt
        .block_on(open_or_update(
            &env,
            &slug,
            &branch,
            &base_branch,
            &title,
            &body,
        ))
        .map_err(|e| match e {
            ConnectorError::Setup { .. } => Error::usage(e),
            e => Error::runtime(
                anyhow::Error::new(e)
                    .context(format!("opening the pull request of `{branch}` in {slug}")),
            ),
        })?;
    outcome.action = action;
    outcome.number = Some(number);
    outcome.url = Some(url.clone());
    let text = format!(
        "pull request #{number} {action}: {url}\n{title}\n{} failing checks, {} gaps after the merge\n",
        proposal.failing.len(),
        proposal.gaps.len()
    );
    finish(g, outcome, &text)
}

impl Outcome {
    fn empty(action: &'static str, branch: &str, base: &str) -> Outcome {
        Outcome {
            action,
            number: None,
            url: None,
            branch: branch.to_string(),
            base: base.to_string(),
            head: None,
            pushed: false,
            added: 0,
            changed: 0,
            removed: 0,
            failing_checks: 0,
            gaps: 0,
        }
    }
}

/// Prints the outcome (text or JSON) and, in GitHub Actions, sets the
/// step's outputs and adds a line to the job summary.
fn finish(g: &GlobalArgs, o: Outcome, text: &str) -> Result<ExitStatus, Error> {
    let out = match g.format {
        crate::diag::Format::Json => {
            serde_json::to_string_pretty(&o).map_err(Error::runtime)? + "\n"
        }
        _ => text.to_string(),
    };
    super::emit(&out);
    if crate::actions::in_actions() {
        let url = o.url.clone().unwrap_or_default();
        crate::actions::set_outputs(&[
            ("pull-request-url", url.clone()),
            (
                "pull-request-number",
                o.number.map(|n| n.to_string()).unwrap_or_default(),
            ),
            ("proposal", o.action.to_string()),
            ("artifacts-added", o.added.to_string()),
            ("artifacts-changed", o.changed.to_string()),
            ("artifacts-removed", o.removed.to_string()),
        ])
        .map_err(Error::runtime)?;
        let line = match &o.number {
            Some(n) => format!(
                "### Evidence pull request\n\n[#{n}]({url}) {}: {} added, {} changed, {} removed; {} failing checks, {} gaps after the merge.\n",
                o.action, o.added, o.changed, o.removed, o.failing_checks, o.gaps
            ),
            None => format!("### Evidence pull request\n\n{}\n", text.trim()),
        };
        crate::actions::append_summary(&line).map_err(Error::runtime)?;
    }
    Ok(ExitStatus::Ok)
}

/// Whether merging `tip` into `base` would change any file ClearTrail
/// owns (listing pages aside). Files only the default branch has, such as
/// approval records, do not count.
fn brings_anything(store: &Store, base: git2::Oid, tip: git2::Oid) -> Result<bool, Error> {
    // By top-level entry: the same id on both sides is the same content.
    // Only `.cleartrail/` is looked into, for the listing pages, which
    // bring nothing.
    let entry = |c: git2::Oid, name: &str| -> Result<Option<git2::Oid>, Error> {
        let tree = store
            .repo()
            .find_commit(c)
            .and_then(|c| c.tree())
            .map_err(|e| Error::runtime(anyhow::anyhow!("reading commit {c}: {e}")))?;
        Ok(tree.get_name(name).map(|e| e.id()))
    };
    for name in crate::sync::OWNED {
        if entry(base, name)? == entry(tip, name)? {
            continue;
        }
        if *name != ".cleartrail" {
            return Ok(true);
        }
        let deltas = store
            .diff_under(Some(base), Some(tip), name)
            .map_err(Error::runtime)?;
        if deltas.iter().any(|d| !propose::is_listing_page(&d.path)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `--base`, else the approvals' default branch, else the remote's (or
/// the repository's) default branch, else `main`.
fn base_branch(
    store: &Store,
    args: &ProposeArgs,
    config: Option<&Config>,
) -> Result<String, Error> {
    if let Some(b) = &args.base {
        return Ok(b.clone());
    }
    if let Some(a) = config.and_then(|c| c.approvals.as_ref()) {
        return Ok(a.default_branch.clone());
    }
    let found = store.default_branch_tip().map_err(Error::runtime)?;
    Ok(found
        .and_then(|(name, _)| {
            name.strip_prefix("refs/heads/")
                .map(str::to_string)
                .or_else(|| {
                    name.strip_prefix("refs/remotes/")
                        .and_then(|r| r.split_once('/'))
                        .map(|(_, b)| b.to_string())
                })
        })
        .unwrap_or_else(|| "main".into()))
}

/// `owner/name` on GitHub.
fn repository(store: &Store, args: &ProposeArgs, config: Option<&Config>) -> Result<String, Error> {
    // The repository the branch is pushed to, when the remote is on the
    // GitHub server: the pull request must be opened where the branch is.
    let server = server_url();
    let host = server
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(&server)
        .to_string();
    let pushed_to = store.remote_url(&args.remote).and_then(|u| {
        let on_server = u.starts_with(&format!("https://{host}/"))
            || u.starts_with(&format!("ssh://git@{host}/"))
            || u.starts_with(&format!("git@{host}:"));
        on_server
            .then(|| crate::audit::remote_repository(&u))
            .flatten()
    });
    let named = args.github_repository.clone().or_else(|| {
        config
            .and_then(|c| c.approvals.as_ref())
            .map(|a| a.repository.clone())
    });
    if let (Some(n), Some(p)) = (&named, &pushed_to)
        && !n.eq_ignore_ascii_case(p)
    {
        return Err(Error::usage(anyhow::anyhow!(
            "the pull request would be opened in {n} but the branch is pushed to {p} (remote `{}`): they must be the same repository",
            args.remote
        )));
    }
    let found = named.or(pushed_to).or_else(|| {
        std::env::var("GITHUB_REPOSITORY")
            .ok()
            .filter(|v| !v.is_empty())
    });
    match found {
        Some(s) if s.split('/').count() == 2 && !s.starts_with('/') && !s.ends_with('/') => Ok(s),
        Some(s) => Err(Error::usage(anyhow::anyhow!(
            "`{s}` is not a GitHub repository as `owner/name`"
        ))),
        None => Err(Error::usage(anyhow::anyhow!(
            "which GitHub repository? Pass --github-repository owner/name (or set `approvals.repository`, or GITHUB_REPOSITORY, or a remote `{}` with a GitHub URL)",
            args.remote
        ))),
    }
}

/// The web root of the GitHub server (`GITHUB_SERVER_URL`, as Actions
/// sets it on GitHub Enterprise Server).
pub(crate) fn server_url() -> String {
    std::env::var("GITHUB_SERVER_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "https://github.com".into())
        .trim_end_matches('/')
        .to_string()
}

/// Reads the pull request's diff and evaluates the branch as it would be
/// after the merge. Approvals are left out of the evaluation: approving
/// is what the pull request is for, so "unapproved" would say nothing.
fn build(
    store: &Store,
    config: Option<&Config>,
    catalogs: &crate::controls::Catalogs,
    scope: &crate::controls::evaluate::Scope,
    index: &ControlIndex<'_>,
    base: git2::Oid,
    head: git2::Oid,
) -> Result<Proposal, Error> {
    let deltas = store
        .diff_under(Some(base), Some(head), "")
        .map_err(Error::runtime)?;
    // Only the artifact files are kept through the evaluation: at a first
    // proposal that is 200,000 paths beside every parsed artifact.
    let other = propose::other_counts(&deltas);
    let prefix = format!("{}/", crate::artifact::EVIDENCE_DIR);
    let mut evidence: Vec<_> = deltas
        .into_iter()
        .filter(|d| d.path.starts_with(&prefix) && d.path.ends_with(".json"))
        .collect();
    evidence.shrink_to_fit();
    crate::memory::release_freed();
    let snapshot = store.snapshot(Some(head)).map_err(Error::runtime)?;
    let old = store.snapshot(Some(base)).map_err(Error::runtime)?;
    let now = crate::clock::now();
    let period = match config.and_then(|c| c.period.clone()) {
        Some(p) => p,
        None => match crate::audit::EffectiveConfig::read(&snapshot)
            .map_err(Error::runtime)?
            .and_then(|r| r.period.parse::<crate::period::Period>().ok())
        {
            Some(p) => p,
            None => super::resolve_period(None, config, now)?,
        },
    };
    // Judged as of the day the head was committed, not today: the body
    // then depends on the branches alone, and a re-run with nothing new
    // edits nothing.
    let committed = store
        .repo()
        .find_commit(head)
        .ok()
        .and_then(|c| chrono::DateTime::from_timestamp(c.time().seconds(), 0))
        .map_or(now.date_naive(), |t| t.date_naive());
    let as_of = crate::audit::as_of(&period, committed);
    let unapproved = config.cloned().map(|mut c| {
        c.approvals = None;
        c
    });
    let audit = super::evaluate_branch(
        store,
        &snapshot,
        unapproved.as_ref(),
        catalogs,
        scope,
        None,
        &period,
        as_of,
    )?;
    let failing = crate::controls::evaluate::failing_index(&audit.checks);
    let mut held_by_kind = std::collections::BTreeMap::new();
    {
        let mut counts: std::collections::HashMap<(&str, &str), usize> = Default::default();
        for h in audit.held.iter() {
            *counts.entry((h.source(), h.kind())).or_insert(0) += 1;
        }
        for ((s, k), n) in counts {
            held_by_kind.insert((s.to_string(), k.to_string()), n);
        }
    }
    // Too large for a full body: kinds whose artifacts are all new are
    // counted, not kept one by one.
    let mut bulk_kinds = std::collections::BTreeSet::new();
    if evidence.len() > propose::BODY_ROWS {
        let mut per_kind: std::collections::BTreeMap<(String, String), (usize, bool)> =
            Default::default();
        for d in &evidence {
            let mut parts = d.path[prefix.len()..].splitn(3, '/');
            let (Some(s), Some(k)) = (parts.next(), parts.next()) else {
                continue;
            };
            let e = per_kind
                .entry((s.to_string(), k.to_string()))
                .or_insert((0, true));
            e.0 += 1;
            e.1 &= d.old.is_none();
        }
        for (kind, (added, only_added)) in per_kind {
            if only_added && held_by_kind.get(&kind) == Some(&added) {
                bulk_kinds.insert(kind);
            }
        }
    }
    let mut bulk = std::collections::BTreeMap::new();
    let artifacts = propose::artifact_changes(
        evidence,
        &old,
        &snapshot,
        &audit.held,
        index,
        &failing,
        &bulk_kinds,
        &mut bulk,
    )
    .map_err(Error::runtime)?;
    let (failing_checks, gaps) = propose::findings(&audit.checks, &audit.statuses);
    let proposal = Proposal {
        period: period.to_string(),
        base,
        head,
        artifacts,
        other,
        failing: failing_checks,
        gaps,
        held_by_kind,
        bulk,
    };
    // The process ends soon: freeing every parsed artifact one by one is
    // time for nothing.
    std::mem::forget(audit);
    Ok(proposal)
}

/// Commits the listing pages (and removes stale ones) on the branch; the
/// new tip, or `tip` when they are as they should be.
fn commit_pages(
    store: &Store,
    branch: &str,
    tip: git2::Oid,
    pages: &[(String, String)],
) -> Result<git2::Oid, Error> {
    let snapshot = store.snapshot(Some(tip)).map_err(Error::runtime)?;
    let mut cs = ChangeSet::new();
    let wanted: std::collections::BTreeSet<&str> = pages.iter().map(|(p, _)| p.as_str()).collect();
    for (path, _) in snapshot
        .files_under(propose::LISTING_DIR)
        .map_err(Error::runtime)?
    {
        if !wanted.contains(&*path) {
            cs.delete(path.to_string());
        }
    }
    for (path, text) in pages {
        let bytes = text.as_bytes();
        if snapshot.try_blob_id(path).map_err(Error::runtime)? != Some(crate::store::blob_id(bytes))
        {
            cs.put(path.clone(), bytes.to_vec());
        }
    }
    if cs.is_empty() {
        return Ok(tip);
    }
    let message = format!(
        "cleartrail propose: listing pages for the pull request ({} pages)\n\nThe change is too large for a pull request body; its body links to\n{}/index.md.\n",
        pages.len(),
        propose::LISTING_DIR
    );
    match store
        .commit(
            branch,
            Some(tip),
            Some(tip),
            &cs,
            &message,
            &Author::default(),
        )
        .map_err(Error::runtime)?
    {
        CommitOutcome::Committed { commit, .. } => Ok(commit),
        CommitOutcome::Unchanged { .. } => Ok(tip),
    }
}

/// Opens the pull request of `branch` into `base`, or updates the open
/// one when its title or body differ. GitHub allows one open pull request
/// per head and base: a create that meets one (another run, a retried
/// request whose answer was lost) updates it instead.
async fn open_or_update(
    env: &GithubEnv,
    slug: &str,
    branch: &str,
    base: &str,
    title: &str,
    body: &str,
) -> Result<(&'static str, u64, String), ConnectorError> {
    let client = GithubClient::connect(env, Politeness::default()).await?;
    let owner = slug.split('/').next().unwrap_or_default();
    let list = client.url(&format!(
        "/repos/{slug}/pulls?state=open&head={}&base={}&per_page=100",
        query(&format!("{owner}:{branch}")),
        query(base)
    ));
    let find = || async {
        let prs: Vec<Value> = client.get_json(&list).await?;
        // The oldest first: if two ever existed, the one reviewers know.
        Ok::<Option<Value>, ConnectorError>(
            prs.into_iter()
                .filter(|p| p["head"]["ref"] == branch && p["base"]["ref"] == base)
                .min_by_key(|p| p["number"].as_u64().unwrap_or(u64::MAX)),
        )
    };
    let existing = match find().await? {
        Some(pr) => Some(pr),
        None => {
            let created = client
                .send(
                    http::Method::POST,
                    &client.url(&format!("/repos/{slug}/pulls")),
                    &json!({"title": title, "head": branch, "base": base, "body": body,
                            "maintainer_can_modify": false}),
                )
                .await;
            match created {
                Ok(pr) => return Ok(("created", number(&pr)?, html_url(&pr))),
                Err(ConnectorError::Http {
                    status: 422,
                    message,
                    ..
                }) if message.contains("already exists") => find().await?,
                Err(e) => return Err(e),
            }
        }
    };
    let pr = existing.ok_or_else(|| ConnectorError::Http {
        endpoint: format!("GET {list}"),
        status: 200,
        message: "GitHub said a pull request exists for the branch but lists none".into(),
    })?;
    let n = number(&pr)?;
    if pr["title"] == title && pr["body"].as_str().unwrap_or_default() == body {
        return Ok(("unchanged", n, html_url(&pr)));
    }
    let updated = client
        .send(
            http::Method::PATCH,
            &client.url(&format!("/repos/{slug}/pulls/{n}")),
            &json!({"title": title, "body": body}),
        )
        .await?;
    Ok(("updated", n, html_url(&updated)))
}

fn number(pr: &Value) -> Result<u64, ConnectorError> {
    pr["number"].as_u64().ok_or_else(|| ConnectorError::Http {
        endpoint: "pull request".into(),
        status: 200,
        message: "a pull request without a number".into(),
    })
}

fn html_url(pr: &Value) -> String {
    pr["html_url"].as_str().unwrap_or_default().to_string()
}

/// Percent-encodes a query value.
fn query(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
