//! `cleartrail init [DIR]`: scaffold an evidence repository with a
//! commented starter configuration and a policies folder.

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

pub fn run(g: &GlobalArgs, args: &InitArgs) -> Result<ExitStatus, Error> {
    let dir = args.dir.as_deref().unwrap_or(&g.repo);
    let config = dir.join(CONFIG_FILE);
    if config.exists() && !args.force {
        return Err(Error::usage(anyhow::anyhow!(
            "{} already exists; pass --force to overwrite it",
            config.display()
        )));
    }
    scaffold(dir).map_err(Error::runtime)?;
    super::emit(&format!(
        "wrote {}\nnext: add policies to {}, then run `cleartrail run --repo {}`\n",
        config.display(),
        dir.join("policies").display(),
        dir.display()
    ));
    Ok(ExitStatus::Ok)
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
