//! `cleartrail controls list|show`: browse the catalogs (with the evidence
//! repository's overrides) and the crosswalk.

use crate::cli::{ControlsCommand, GlobalArgs};
use crate::controls::{Catalogs, Control, Framework};
use crate::diag::Format;
use crate::error::{Error, ExitStatus};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Serialize)]
struct Entry<'a> {
    framework: &'a str,
    #[serde(flatten)]
    control: &'a Control,
    related: Vec<String>,
}

fn entry<'a>(catalogs: &Catalogs, fw: &'a Framework, c: &'a Control) -> Entry<'a> {
    Entry {
        framework: &fw.id,
        control: c,
        related: catalogs
            .related(&fw.id, &c.id)
            .into_iter()
            .map(|(f, i)| format!("{f}:{i}"))
            .collect(),
    }
}

pub fn run(g: &GlobalArgs, cmd: &ControlsCommand) -> Result<ExitStatus, Error> {
    let config = super::optional_config(g)?;
    let (catalogs, _) = super::catalogs_and_scope(config.as_ref())?;
    let check_framework = |f: &Option<String>| -> Result<(), Error> {
        let mut scope = crate::controls::evaluate::Scope::all(&catalogs);
        super::restrict_framework(&mut scope, &catalogs, f.as_deref())
    };
    let out = match cmd {
        ControlsCommand::List { framework } => {
            check_framework(framework)?;
            let entries: Vec<Entry<'_>> = catalogs
                .frameworks
                .iter()
                .filter(|f| framework.as_deref().is_none_or(|w| w == f.id))
                .flat_map(|f| f.controls.iter().map(move |c| (f, c)))
                .map(|(f, c)| entry(&catalogs, f, c))
                .collect();
            match g.format {
                Format::Json => {
                    serde_json::to_string_pretty(&entries).map_err(Error::runtime)? + "\n"
                }
                _ => {
                    let mut s = String::new();
                    for e in &entries {
                        let _ = writeln!(
                            s,
                            "{:<14} {:<7} {:<16} {}",
                            e.framework, e.control.id, e.control.category, e.control.title
                        );
                    }
                    let _ = writeln!(s, "{} controls", entries.len());
                    s
                }
            }
        }
        ControlsCommand::Show { id, framework } => {
            check_framework(framework)?;
            let found = catalogs.find(framework.as_deref(), id);
            if found.is_empty() {
                return Err(Error::usage(anyhow::anyhow!(
                    "no control `{id}`{}",
                    framework
                        .as_deref()
                        .map(|f| format!(" in {f}"))
                        .unwrap_or_default()
                )));
            }
            let entries: Vec<Entry<'_>> = found
                .into_iter()
                .map(|(f, c)| entry(&catalogs, f, c))
                .collect();
            match g.format {
                Format::Json => {
                    serde_json::to_string_pretty(&entries).map_err(Error::runtime)? + "\n"
                }
                _ => entries
                    .iter()
                    .map(render_show)
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        }
    };
    super::emit(&out);
    Ok(ExitStatus::Ok)
}

fn render_show(e: &Entry<'_>) -> String {
    let c = e.control;
    let mut s = format!(
        "{} {} ({}, {})\n  {}\n",
        c.id, c.title, e.framework, c.category, c.summary
    );
    if c.requirements.is_empty() {
        s.push_str("requirements: none collectable; map evidence manually\n");
    } else {
        s.push_str("requirements:\n");
        for r in &c.requirements {
            let fresh = match (r.population, r.freshness_days) {
                (true, _) => ", dated in the period".to_string(),
                (false, Some(d)) => format!(", within {d} days"),
                (false, None) => String::new(),
            };
            let _ = writeln!(
                s,
                "  {}: {} (at least {}{fresh})",
                r.id, r.description, r.min_count
            );
            for sel in &r.any_of {
                let cond: Vec<String> = sel
                    .conditions
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "    - {}/{}{}",
                    sel.source,
                    sel.kind,
                    if cond.is_empty() {
                        String::new()
                    } else {
                        format!(" where {}", cond.join(", "))
                    }
                );
            }
        }
    }
    if !c.checks.is_empty() {
        let _ = writeln!(s, "checks: {}", c.checks.join(", "));
    }
    if !e.related.is_empty() {
        let _ = writeln!(s, "crosswalk: {}", e.related.join(", "));
    }
    s
}
