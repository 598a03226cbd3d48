//! Control catalogs: SOC 2 and ISO/IEC 27001:2022 Annex A, shipped inside
//! the binary from `controls/`, each control with its evidence
//! requirements (selectors over artifacts, freshness) and the checks that
//! must pass; the crosswalk between the two; and the evidence repository's
//! own additions and overrides (`<config dir>/controls/*.yaml`).
//!
//! Loading is two-phase like the configuration: serde rejects unknown
//! fields with a position, then validation reports every duplicate id,
//! unknown category or unknown check with `file:line:column`.

pub mod evaluate;

use crate::config::Problem;
use crate::config::locate::Locations;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Built-in catalogs: (display path, text).
const BUILTIN: &[(&str, &str)] = &[
    (
        "controls/soc2.yaml",
        include_str!("../../controls/soc2.yaml"),
    ),
    (
        "controls/iso27001-2022.yaml",
        include_str!("../../controls/iso27001-2022.yaml"),
    ),
];
const BUILTIN_CROSSWALK: (&str, &str) = (
    "controls/crosswalk.yaml",
    include_str!("../../controls/crosswalk.yaml"),
);

pub const SOURCES: &[&str] = &["files", "git", "github", "jira", "gdrive"];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Selector {
    pub source: String,
    pub kind: String,
    /// Dotted path into `content` -> expected value (for a list: contains).
    #[serde(rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub conditions: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Requirement {
    pub id: String,
    pub description: String,
    pub any_of: Vec<Selector>,
    pub min_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness_days: Option<u32>,
    /// Population evidence (the changes of the period) counts when it
    /// falls in the period; point-in-time evidence (a policy review, a
    /// setting) counts when it is fresh at the end of the period.
    pub population: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Control {
    pub id: String,
    pub title: String,
    pub summary: String,
    pub category: String,
    pub requirements: Vec<Requirement>,
    pub checks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Category {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Framework {
    pub id: String,
    pub title: String,
    pub categories: Vec<Category>,
    pub controls: Vec<Control>,
}

impl Framework {
    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.id == id)
    }
}

/// Every catalog and the crosswalk between them.
#[derive(Debug, Clone)]
pub struct Catalogs {
    pub frameworks: Vec<Framework>,
    /// (framework, control) <-> (framework, control), both directions.
    links: BTreeMap<(String, String), BTreeSet<(String, String)>>,
}

// ---- raw forms ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    version: u32,
    framework: String,
    title: Option<String>,
    categories: Option<Vec<RawCategory>>,
    #[serde(default)]
    controls: Vec<RawControl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    id: String,
    title: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    id: String,
    title: Option<String>,
    summary: Option<String>,
    category: Option<String>,
    requirements: Option<Vec<RawRequirement>>,
    checks: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    id: String,
    description: String,
    any_of: Vec<RawSelector>,
    min_count: Option<u32>,
    freshness_days: Option<u32>,
    /// `population` or `point-in-time` (the default).
    evidence: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    source: String,
    kind: String,
    #[serde(rename = "where", default)]
    conditions: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrosswalk {
    version: u32,
    links: Vec<RawLink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    soc2: String,
    #[serde(rename = "iso27001-2022")]
    iso: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{}", render(.0))]
    Invalid(Vec<Problem>),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn render(problems: &[Problem]) -> String {
    let mut s = format!(
        "invalid control catalog ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push('\n');
        s.push_str(&p.to_string());
    }
    s
}

/// A parsed file, with its positions, for validation messages.
struct Source<'a> {
    file: &'a str,
    locs: Locations,
}

impl Source<'_> {
    fn problem(
        &self,
        path: &str,
        key: bool,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Problem {
        let pos = if key {
            self.locs.key(path)
        } else {
            self.locs.value(path)
        };
        Problem {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            hint,
        }
    }
}

fn parse_yaml<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, Problem> {
    crate::config::raw::parse_as(file, text)
}

fn yaml_scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Catalogs {
    /// The built-in catalogs and crosswalk.
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::load(&[])
    }

    /// Built-in catalogs plus the `*.yaml` files of `dir` (sorted by name),
    /// when it exists.
    pub fn with_overrides(dir: &Path) -> Result<Self, CatalogError> {
        let mut files = Vec::new();
        if dir.is_dir() {
            let mut paths: Vec<_> = std::fs::read_dir(dir)
                .map_err(|source| CatalogError::Read {
                    path: dir.display().to_string(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            paths.sort();
            for p in paths {
                let text = crate::yaml::read_text(&p).map_err(|source| CatalogError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                files.push((p.display().to_string(), text));
            }
        }
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        Self::load(&borrowed)
    }

    /// Loads the built-ins, then applies `overrides` (display path, text)
    /// in order: a control with a new id is added (title, summary and
    /// category required); an existing id has the fields given replaced.
    pub fn load(overrides: &[(&str, &str)]) -> Result<Self, CatalogError> {
        let mut problems = Vec::new();
        let mut frameworks: Vec<Framework> = Vec::new();
        for (file, text) in BUILTIN.iter().chain(overrides.iter()) {
            let raw: RawCatalog = match parse_yaml(file, text) {
                Ok(r) => r,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let src = Source {
                file,
                locs: Locations::parse(text),
            };
            apply(&mut frameworks, raw, &src, &mut problems);
        }
        let (cw_file, cw_text) = BUILTIN_CROSSWALK;
        let mut links: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
        match parse_yaml::<RawCrosswalk>(cw_file, cw_text) {
            Err(p) => problems.push(p),
            Ok(cw) => {
                let src = Source {
                    file: cw_file,
                    locs: Locations::parse(cw_text),
                };
                if cw.version != 1 {
                    problems.push(src.problem(
                        "version",
                        false,
                        "unsupported crosswalk version",
                        None,
                    ));
                }
                let has = |fw: &str, id: &str| {
                    frameworks
                        .iter()
                        .any(|f| f.id == fw && f.control(id).is_some())
                };
                for (i, l) in cw.links.iter().enumerate() {
                    if !has("soc2", &l.soc2) {
                        problems.push(src.problem(
                            &format!("links[{i}].soc2"),
                            false,
                            format!("unknown SOC 2 criterion `{}`", l.soc2),
                            None,
                        ));
                        continue;
                    }
                    for (j, iso) in l.iso.iter().enumerate() {
                        if !has("iso27001-2022", iso) {
                            problems.push(src.problem(
                                &format!("links[{i}].iso27001-2022[{j}]"),
                                false,
                                format!("unknown ISO 27001:2022 control `{iso}`"),
                                None,
                            ));
                            continue;
                        }
                        let a = ("soc2".to_string(), l.soc2.clone());
                        let b = ("iso27001-2022".to_string(), iso.clone());
                        links.entry(a.clone()).or_default().insert(b.clone());
                        links.entry(b).or_default().insert(a);
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Catalogs { frameworks, links })
        } else {
            Err(CatalogError::Invalid(problems))
        }
    }

    pub fn framework(&self, id: &str) -> Option<&Framework> {
        self.frameworks.iter().find(|f| f.id == id)
    }

    /// Crosswalk counterparts of a control, in natural id order (8.3
    /// before 8.28).
    pub fn related(&self, framework: &str, id: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .links
            .get(&(framework.to_string(), id.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| (&a.0, natural_key(&a.1)).cmp(&(&b.0, natural_key(&b.1))));
        v
    }

    /// Finds a control by id in any framework (or the one given).
    pub fn find(&self, framework: Option<&str>, id: &str) -> Vec<(&Framework, &Control)> {
        self.frameworks
            .iter()
            .filter(|f| framework.is_none_or(|w| w == f.id))
            .filter_map(|f| f.control(id).map(|c| (f, c)))
            .collect()
    }
}

/// Sort key for control ids: runs of digits compare as numbers.
pub fn natural_key(id: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num: Option<u64> = None;
    for ch in id.chars() {
        if let Some(d) = ch.to_digit(10) {
            num = Some(num.unwrap_or(0) * 10 + u64::from(d));
        } else {
            if let Some(n) = num.take() {
                out.push((std::mem::take(&mut text), n));
            }
            text.push(ch);
        }
    }
    out.push((text, num.unwrap_or(0)));
    out
}

fn apply(
    frameworks: &mut Vec<Framework>,
    raw: RawCatalog,
    src: &Source<'_>,
    problems: &mut Vec<Problem>,
) {
    if raw.version != 1 {
        problems.push(src.problem(
            "version",
            false,
            "unsupported catalog version",
            Some("this build reads `version: 1`".into()),
        ));
        return;
    }
    let idx = match frameworks.iter().position(|f| f.id == raw.framework) {
        Some(i) => i,
        None => {
            let Some(title) = raw.title.clone() else {
                problems.push(src.problem(
                    "framework",
                    false,
                    format!("new framework `{}` needs a `title`", raw.framework),
                    None,
                ));
                return;
            };
            frameworks.push(Framework {
                id: raw.framework.clone(),
                title,
                categories: Vec::new(),
                controls: Vec::new(),
            });
            frameworks.len() - 1
        }
    };
    let fw = &mut frameworks[idx];
    if let Some(t) = raw.title {
        fw.title = t;
    }
    for c in raw.categories.unwrap_or_default() {
        match fw.categories.iter_mut().find(|x| x.id == c.id) {
            Some(x) => x.title = c.title,
            None => fw.categories.push(Category {
                id: c.id,
                title: c.title,
            }),
        }
    }
    let mut seen = BTreeSet::new();
    for (i, rc) in raw.controls.into_iter().enumerate() {
        let at = format!("controls[{i}]");
        if !seen.insert(rc.id.clone()) {
            problems.push(src.problem(
                &format!("{at}.id"),
                false,
                format!("duplicate control id `{}` in this file", rc.id),
                None,
            ));
            continue;
        }
        let requirements = rc.requirements.map(|reqs| {
            let mut ids = BTreeSet::new();
            reqs.into_iter()
                .enumerate()
                .filter_map(|(j, r)| {
                    let rat = format!("{at}.requirements[{j}]");
                    if !ids.insert(r.id.clone()) {
                        problems.push(src.problem(
                            &format!("{rat}.id"),
                            false,
                            format!("duplicate requirement id `{}`", r.id),
                            None,
                        ));
                        return None;
                    }
                    let mut any_of = Vec::new();
                    for (k, s) in r.any_of.into_iter().enumerate() {
                        if !SOURCES.contains(&s.source.as_str()) {
                            problems.push(src.problem(
                                &format!("{rat}.any_of[{k}].source"),
                                false,
                                format!("unknown source `{}`", s.source),
                                Some(format!("sources: {}", SOURCES.join(", "))),
                            ));
                            continue;
                        }
                        let mut conditions = BTreeMap::new();
                        for (path, v) in s.conditions {
                            match yaml_scalar(&v) {
                                Some(text) => {
                                    conditions.insert(path, text);
                                }
                                None => problems.push(src.problem(
                                    &format!("{rat}.any_of[{k}].where.{path}"),
                                    false,
                                    "a `where` value must be a string, number or boolean",
                                    None,
                                )),
                            }
                        }
                        any_of.push(Selector {
                            source: s.source,
                            kind: s.kind,
                            conditions,
                        });
                    }
                    if any_of.is_empty() {
                        problems.push(src.problem(
                            &format!("{rat}.any_of"),
                            false,
                            "a requirement needs at least one selector",
                            None,
                        ));
                    }
                    let population = match r.evidence.as_deref() {
                        None | Some("point-in-time") => false,
                        Some("population") => true,
                        Some(other) => {
                            problems.push(src.problem(
                                &format!("{rat}.evidence"),
                                false,
                                format!(
                                    "unknown evidence type `{other}`: expected `population` or `point-in-time`"
                                ),
                                None,
                            ));
                            false
                        }
                    };
                    Some(Requirement {
                        id: r.id,
                        description: r.description,
                        any_of,
                        min_count: r.min_count.unwrap_or(1),
                        freshness_days: r.freshness_days,
                        population,
                    })
                })
                .collect::<Vec<_>>()
        });
        if let Some(checks) = &rc.checks {
            for (j, code) in checks.iter().enumerate() {
                if !crate::checks::CHECKS.iter().any(|c| c.code == code) {
                    problems.push(src.problem(
                        &format!("{at}.checks[{j}]"),
                        false,
                        format!("unknown check `{code}`"),
                        None,
                    ));
                }
            }
        }
        let category_ok = |cat: &str, fw: &Framework| fw.categories.iter().any(|c| c.id == cat);
        match fw.controls.iter_mut().find(|c| c.id == rc.id) {
            Some(existing) => {
                if let Some(cat) = &rc.category
                    && !fw.categories.iter().any(|c| &c.id == cat)
                {
                    problems.push(src.problem(
                        &format!("{at}.category"),
                        false,
                        format!("unknown category `{cat}`"),
                        None,
                    ));
                    continue;
                }
                if let Some(t) = rc.title {
                    existing.title = t;
                }
                if let Some(s) = rc.summary {
                    existing.summary = s;
                }
                if let Some(c) = rc.category {
                    existing.category = c;
                }
                if let Some(r) = requirements {
                    existing.requirements = r;
                }
                if let Some(c) = rc.checks {
                    existing.checks = c;
                }
            }
            None => {
                let (Some(title), Some(summary), Some(category)) =
                    (rc.title, rc.summary, rc.category)
                else {
                    problems.push(src.problem(
                        &at,
                        false,
                        format!(
                            "new control `{}` needs `title`, `summary` and `category`",
                            rc.id
                        ),
                        None,
                    ));
                    continue;
                };
                if !category_ok(&category, fw) {
                    problems.push(src.problem(
                        &format!("{at}.category"),
                        false,
                        format!("unknown category `{category}`"),
                        None,
                    ));
                    continue;
                }
                fw.controls.push(Control {
                    id: rc.id,
                    title,
                    summary,
                    category,
                    requirements: requirements.unwrap_or_default(),
                    checks: rc.checks.unwrap_or_default(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogs_have_every_control_exactly_once() {
        let c = Catalogs::builtin().unwrap();
        let soc2 = c.framework("soc2").unwrap();
        assert_eq!(soc2.controls.len(), 61);
        assert_eq!(
            soc2.controls
                .iter()
                .filter(|c| c.category == "security")
                .count(),
            33
        );
        let iso = c.framework("iso27001-2022").unwrap();
        assert_eq!(iso.controls.len(), 93);
        assert_eq!(iso.controls.first().unwrap().id, "5.1");
        assert_eq!(iso.controls.last().unwrap().id, "8.34");
        assert!(iso.control("5.10").is_some(), "quoted ids stay strings");
    }

    #[test]
    fn the_crosswalk_goes_both_ways() {
        let c = Catalogs::builtin().unwrap();
        let iso = c.related("soc2", "CC8.1");
        assert!(
            iso.contains(&("iso27001-2022".into(), "8.32".into())),
            "{iso:?}"
        );
        let back = c.related("iso27001-2022", "8.32");
        assert!(back.contains(&("soc2".into(), "CC8.1".into())));
        let ids: Vec<&str> = iso.iter().map(|(_, i)| i.as_str()).collect();
        let p3 = ids.iter().position(|i| *i == "8.3").unwrap();
        let p28 = ids.iter().position(|i| *i == "8.28").unwrap();
        assert!(p3 < p28, "{ids:?}");
    }

    #[test]
    fn overrides_add_replace_and_are_validated() {
        let ok = "version: 1\nframework: soc2\ncontrols:\n  - id: CC8.1\n    checks: []\n  - id: X.1\n    title: Extra\n    summary: Our own\n    category: security\n";
        let c = Catalogs::load(&[("mine.yaml", ok)]).unwrap();
        let soc2 = c.framework("soc2").unwrap();
        assert!(soc2.control("CC8.1").unwrap().checks.is_empty());
        assert_eq!(soc2.control("CC8.1").unwrap().title, "Change management");
        assert_eq!(soc2.control("X.1").unwrap().title, "Extra");

        let dup = "version: 1\nframework: soc2\ncontrols:\n  - id: X.1\n    title: a\n    summary: b\n    category: security\n  - id: X.1\n    title: a\n    summary: b\n    category: nope\n";
        let err = Catalogs::load(&[("dup.yaml", dup)]).unwrap_err();
        let CatalogError::Invalid(p) = &err else {
            panic!("{err}")
        };
        assert_eq!(
            (p[0].file.as_str(), p[0].line, p[0].col),
            ("dup.yaml", 8, 9),
            "{err}"
        );
        assert!(p[0].message.contains("duplicate control id `X.1`"));

        let unknown = "version: 1\nframework: soc2\ncontrols:\n  - id: CC1.1\n    titel: x\n";
        let err = Catalogs::load(&[("u.yaml", unknown)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("u.yaml:5:5: controls[0]: unknown field `titel`"),
            "{err}"
        );
    }
}
