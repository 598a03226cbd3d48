//! `cleartrail init [DIR]`: scaffold an evidence repository with a
//! commented starter configuration, a policies folder, the GitHub Actions
//! workflows that run it (sync and propose, approve on merge, packets on
//! demand) and a README that says how to protect it.

use crate::cli::{GlobalArgs, InitArgs};
use crate::config::CONFIG_FILE;
use crate::error::{Error, ExitStatus};
use anyhow::Context as _;
use std::path::Path;

pub const STARTER_CONFIG: &str = r#"# ClearTrail configuration (https://github.com/cleartrail/cleartrail)
# Relative paths are resolved against the folder of this file.
version: 1

# Reporting period evidence is collected for, unless --period is given:
# a year (2026), a quarter (2026-Q3), a month (2026-09) or a range
# (2026-07-01..2026-09-30). Default: the current calendar year.
# period: 2026

# Branch the evidence is committed to (never the default branch): open a
# pull request from it to have the evidence reviewed.
# branch: cleartrail/evidence

# Where evidence comes from. Each source has a name (lower-case letters,
# digits, `-` and `_`), which appears in the ids of what it collects.
sources:
  # A folder of policy documents. Markdown front matter (title, owner,
  # version, last_reviewed, approved_by, topics) is recorded; every file is
  # hashed and captured.
  policies:
    type: files
    path: policies
    # exclude: [drafts]

  # A local git repository: commits and merges in the period (signed or
  # not, with any review trace), tags and CODEOWNERS.
  # app:
  #   type: git
  #   path: ../app
  #   branch: main
"#;

const EXAMPLE_POLICY: &str = r#"---
title: Information Security Policy
owner: Head of Security
version: "1.0"
last_reviewed: YYYY-MM-DD
approved_by: CEO
topics: [information-security]
---

# Information Security Policy

Replace this example with your own policy. Keep the front matter up to
date: `last_reviewed` is what freshness checks read.
"#;

/// The workflows written, by file name, with `{{ action }}` and
/// `{{ default_branch }}` to fill in.
pub const WORKFLOWS: &[(&str, &str)] = &[
    (
        "cleartrail-sync.yml",
        include_str!("../../templates/init/cleartrail-sync.yml"),
    ),
    (
        "cleartrail-approve.yml",
        include_str!("../../templates/init/cleartrail-approve.yml"),
    ),
    (
        "cleartrail-packet.yml",
        include_str!("../../templates/init/cleartrail-packet.yml"),
    ),
];

/// The action's repository on GitHub.
pub const ACTION_REPOSITORY: &str = "cleartrail/cleartrail";

/// The commit a release build was made from (the release workflow sets
/// it), which generated workflows pin.
const BUILT_FROM: Option<&str> = option_env!("CLEARTRAIL_ACTION_SHA");

pub fn run(g: &GlobalArgs, args: &InitArgs) -> Result<ExitStatus, Error> {
    let dir = args.dir.as_deref().unwrap_or(&g.repo);
    let config = dir.join(CONFIG_FILE);
    if config.exists() && !args.force {
        return Err(Error::usage(anyhow::anyhow!(
            "{} already exists; pass --force to overwrite it",
            config.display()
        )));
    }
    // Checked before anything is written.
    let mut said = String::new();
    let workflows = match (args.no_workflows, workflows(args)?) {
        (true, _) => None,
        (false, Some(w)) => Some(w),
        (false, None) => {
            said.push_str(&format!(
                "workflows not written: this build does not know the commit of {ACTION_REPOSITORY} it was made from; pass --action-ref <commit> (a release's) to write them pinned\n"
            ));
            None
        }
    };
    scaffold(dir).map_err(Error::runtime)?;
    said.insert_str(0, &format!("wrote {}\n", config.display()));
    if let Some(files) = workflows {
        let wdir = dir.join(".github/workflows");
        std::fs::create_dir_all(&wdir)
            .with_context(|| format!("creating {}", wdir.display()))
            .map_err(Error::runtime)?;
        for (name, text) in files {
            let p = wdir.join(name);
            if p.exists() && !args.force {
                said.push_str(&format!(
                    "kept {} (exists; --force overwrites it)\n",
                    p.display()
                ));
                continue;
            }
            std::fs::write(&p, text)
                .with_context(|| format!("writing {}", p.display()))
                .map_err(Error::runtime)?;
            said.push_str(&format!("wrote {}\n", p.display()));
        }
    }
    let readme = dir.join("README.md");
    if !readme.exists() {
        std::fs::write(
            &readme,
            README.replace("{{ protection }}", crate::audit::PROTECTION),
        )
        .with_context(|| format!("writing {}", readme.display()))
        .map_err(Error::runtime)?;
        said.push_str(&format!("wrote {}\n", readme.display()));
    }
    said.push_str(&format!(
        "next: add policies to {}, then run `cleartrail run --repo {}`; README.md says how to protect the repository\n",
        dir.join("policies").display(),
        dir.display()
    ));
    super::emit(&said);
    Ok(ExitStatus::Ok)
}

/// The README of a new evidence repository (the evidence branch's
/// generated README replaces it once the first pull request merges, and
/// keeps the same section on protection).
const README: &str = "# Evidence\n\nCompliance evidence collected by [ClearTrail](https://github.com/cleartrail/cleartrail): each day a pull request proposes what is new, reviewers approve it, and each approval is recorded as a signed record under `approvals/`.\n\n{{ protection }}";

/// The workflows with the action pinned to a commit: a tag can be moved,
/// a commit cannot.
/// `None` when no commit is known to pin.
fn workflows(args: &InitArgs) -> Result<Option<Vec<(&'static str, String)>>, Error> {
    let sha = match (&args.action_ref, BUILT_FROM.filter(|s| !s.is_empty())) {
        (Some(r), _) => r.as_str(),
        (None, Some(b)) => b,
        (None, None) => return Ok(None),
    };
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::usage(anyhow::anyhow!(
            "--action-ref {sha}: a full 40-digit commit id is needed (workflows pin the action to a commit, which cannot be moved like a tag)"
        )));
    }
    let branch = &args.default_branch;
    if branch.is_empty() || branch.contains(|c: char| c.is_whitespace() || "\"'[]{}:#".contains(c))
    {
        return Err(Error::usage(anyhow::anyhow!(
            "--default-branch {branch}: not a branch name a workflow can name"
        )));
    }
    let action = format!(
        "{ACTION_REPOSITORY}@{} # v{}",
        sha.to_ascii_lowercase(),
        env!("CARGO_PKG_VERSION")
    );
    Ok(Some(
        WORKFLOWS
            .iter()
            .map(|(name, t)| {
                (
                    *name,
                    t.replace("{{ action }}", &action)
                        .replace("{{ default_branch }}", branch),
                )
            })
            .collect(),
    ))
}

fn scaffold(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if git2::Repository::open(dir).is_err() {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        git2::Repository::init_opts(dir, &opts)
            .with_context(|| format!("initializing a git repository in {}", dir.display()))?;
    }
    let today = crate::clock::now().date_naive().to_string();
    let policies = dir.join("policies");
    if !policies.exists() {
        std::fs::create_dir_all(&policies)
            .with_context(|| format!("creating {}", policies.display()))?;
        let example = policies.join("information-security-policy.md");
        std::fs::write(&example, EXAMPLE_POLICY.replace("YYYY-MM-DD", &today))
            .with_context(|| format!("writing {}", example.display()))?;
    }
    let config = dir.join(CONFIG_FILE);
    std::fs::write(&config, STARTER_CONFIG)
        .with_context(|| format!("writing {}", config.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_starter_configuration_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        super::scaffold(dir.path()).unwrap();
        let cfg = crate::config::load(&dir.path().join(super::CONFIG_FILE)).unwrap();
        assert_eq!(cfg.sources.len(), 1);
        assert!(git2::Repository::open(dir.path()).is_ok());
    }
}
