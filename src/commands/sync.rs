//! `cleartrail sync` and `cleartrail run`: collect, normalize, commit, and
//! print what changed (text, JSON or Markdown on stdout; a job summary and
//! step outputs when running in GitHub Actions).

use crate::cli::{GlobalArgs, SyncArgs};
use crate::config::Config;
use crate::diag::Format;
use crate::error::{Error, ExitStatus};
use crate::period::Period;
use crate::store::Store;
use crate::sync::{SyncOptions, SyncReport};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::io::Write as _;

pub fn run(g: &GlobalArgs, args: &SyncArgs, scheduled: bool) -> Result<ExitStatus, Error> {
    let mut config = super::load_config(g)?;
    let now = crate::clock::now();
    let period = resolve_period(args.period.as_deref(), &config, now)?;
    select_sources(&mut config, &args.sources)?;
    let store = Store::open_or_init(&g.repo).map_err(|e| match e {
        crate::store::StoreError::NotARepository { .. } => Error::usage(e),
        other => Error::runtime(other),
    })?;
    let opts = SyncOptions {
        period,
        now,
        limits: Default::default(),
    };
    let report = super::runtime()?
        .block_on(crate::sync::sync(&store, &config, &opts))
        .with_context(|| format!("sync into {}", g.repo.display()))
        .map_err(Error::runtime)?;
    print_report(g, &report, scheduled).map_err(Error::runtime)?;
    github_outputs(&report).map_err(Error::runtime)?;
    Ok(ExitStatus::Ok)
}

fn resolve_period(
    arg: Option<&str>,
    config: &Config,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Period, Error> {
    match arg {
        Some(s) => s
            .parse::<Period>()
            .map_err(|e| Error::usage(anyhow::Error::new(e).context("--period"))),
        None => Ok(config
            .period
            .clone()
            .unwrap_or_else(|| Period::year_of(now))),
    }
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

pub fn render_text(r: &SyncReport, repo: &std::path::Path, scheduled: bool) -> String {
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
    if scheduled && r.tip.is_some() {
        let repo = repo.display();
        let _ = writeln!(s, "look:   git -C {repo} log --stat {}", r.branch);
        let _ = writeln!(s, "        git -C {repo} show {}:collections/", r.branch);
        let _ = writeln!(s, "verify: cleartrail verify --repo {repo}");
    }
    s
}

pub fn render_markdown(r: &SyncReport) -> String {
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
    s
}

fn print_report(g: &GlobalArgs, r: &SyncReport, scheduled: bool) -> anyhow::Result<()> {
    let out = match g.format {
        Format::Json => {
            let mut v = serde_json::to_string_pretty(r)?;
            v.push('\n');
            v
        }
        Format::Markdown | Format::Github => render_markdown(r),
        Format::Text => render_text(r, &g.repo, scheduled),
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("writing to stdout")?;
    Ok(())
}

/// Appends to `GITHUB_STEP_SUMMARY` and `GITHUB_OUTPUT` when set.
fn github_outputs(r: &SyncReport) -> anyhow::Result<()> {
    let append = |var: &str, text: &str| -> anyhow::Result<()> {
        if let Some(path) = std::env::var_os(var) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .with_context(|| format!("opening ${var}"))?;
            f.write_all(text.as_bytes())
                .with_context(|| format!("writing ${var}"))?;
        }
        Ok(())
    };
    append("GITHUB_STEP_SUMMARY", &render_markdown(r))?;
    let (a, c, d) = r.totals();
    append(
        "GITHUB_OUTPUT",
        &format!(
            "changed={}\ncommit={}\nadded={a}\nupdated={c}\nremoved={d}\n",
            r.commit.is_some(),
            r.commit.as_deref().unwrap_or("")
        ),
    )
}
