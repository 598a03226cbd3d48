//! Phase two: raw configuration into a [`Config`] that cannot be invalid.
//! Every problem found is reported, not just the first.

use super::locate::Locations;
use super::raw::{RawConfig, RawSource};
use super::{Config, DEFAULT_BRANCH, Located, OutOfScope, Problem, SourceConfig, SourceSpec};
use crate::period::Period;
use std::path::{Path, PathBuf};

pub const SOURCE_TYPES: &[&str] = &["git", "files"];

struct Ctx<'a> {
    /// Whether source paths must exist here (not for read-only commands
    /// run where the sources are not, such as an auditor's `verify`).
    check_paths: bool,
    file: &'a str,
    locs: &'a Locations,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn at_value(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let pos = self.locs.value(path);
        self.push(pos, message, hint);
    }

    fn at_key(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let pos = self.locs.key(path);
        self.push(pos, message, hint);
    }

    fn push(&mut self, pos: super::locate::Pos, message: impl Into<String>, hint: Option<String>) {
        self.problems.push(Problem {
            file: self.file.into(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            hint,
        });
    }
}

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

pub fn validate(
    raw: RawConfig,
    file: &str,
    dir: &Path,
    locs: &Locations,
    check_paths: bool,
) -> Result<Config, Vec<Problem>> {
    let mut cx = Ctx {
        check_paths,
        file,
        locs,
        problems: Vec::new(),
    };

    match raw.version.as_ref().map(scalar_text) {
        None => cx.push(
            Default::default(),
            "missing `version`",
            Some("add `version: 1` as the first line".into()),
        ),
        Some(Some(v)) if v == "1" => {}
        Some(_) => cx.at_value(
            "version",
            "unsupported configuration version",
            Some("this build of cleartrail reads `version: 1`".into()),
        ),
    }

    let period = match raw.period.as_ref() {
        None => None,
        Some(v) => match scalar_text(v).map(|s| s.parse::<Period>()) {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                cx.at_value("period", e.to_string(), None);
                None
            }
            None => {
                cx.at_value("period", "`period` must be a string such as 2026-Q3", None);
                None
            }
        },
    };

    let branch = raw.branch.unwrap_or_else(|| DEFAULT_BRANCH.to_string());
    if !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        cx.at_value(
            "branch",
            format!("`{branch}` is not a valid branch name"),
            Some("use letters, digits, `-`, `_` and `/`, e.g. cleartrail/evidence".into()),
        );
    }

    if raw.sources.is_empty() {
        cx.at_key(
            "sources",
            "no sources configured: nothing would be collected",
            Some("add at least one source, e.g. `sources: { policies: { type: files, path: policies } }`".into()),
        );
    }

    let mut sources = Vec::new();
    for (name, src) in raw.sources {
        if let Some(s) = validate_source(&mut cx, dir, &name, src) {
            sources.push(s);
        }
    }

    let located = |cx: &Ctx<'_>, path: &str, value: String, key: bool| {
        let pos = if key {
            cx.locs.key(path)
        } else {
            cx.locs.value(path)
        };
        Located {
            value,
            line: pos.line,
            col: pos.col,
        }
    };
    let frameworks = raw.frameworks.map(|list| {
        list.into_iter()
            .enumerate()
            .map(|(i, f)| located(&cx, &format!("frameworks[{i}]"), f, false))
            .collect()
    });
    let mut out_of_scope = Vec::new();
    for (fw, entries) in raw.out_of_scope.unwrap_or_default() {
        for (id, reason) in entries {
            let at = format!("out_of_scope.{fw}.{id}");
            if reason.trim().is_empty() {
                cx.at_value(
                    &at,
                    format!("out-of-scope control `{id}` needs a reason"),
                    Some("auditors read it in the statement of applicability".into()),
                );
            }
            out_of_scope.push(OutOfScope {
                framework: fw.clone(),
                id: located(&cx, &at, id, true),
                reason,
            });
        }
    }
    let mut check_severity = std::collections::BTreeMap::new();
    for (code, check) in raw.checks.unwrap_or_default() {
        if !crate::checks::CHECKS.iter().any(|c| c.code == code) {
            let codes: Vec<&str> = crate::checks::CHECKS.iter().map(|c| c.code).collect();
            cx.at_key(
                &format!("checks.{code}"),
                format!("unknown check `{code}`"),
                Some(format!("checks: {}", codes.join(", "))),
            );
            continue;
        }
        if let Some(sev) = check.severity {
            match sev.parse::<crate::diag::Level>() {
                Ok(level) => {
                    check_severity.insert(code, level);
                }
                Err(_) => cx.at_value(
                    &format!("checks.{code}.severity"),
                    format!("unknown severity `{sev}`"),
                    Some("use error, warning, note or off".into()),
                ),
            }
        }
    }

    if cx.problems.is_empty() {
        Ok(Config {
            file: PathBuf::from(file),
            dir: dir.to_path_buf(),
            period,
            branch,
            sources,
            frameworks,
            out_of_scope,
            check_severity,
        })
    } else {
        cx.problems.sort_by_key(|p| (p.line, p.col));
        Err(cx.problems)
    }
}

fn validate_source(
    cx: &mut Ctx<'_>,
    dir: &Path,
    name: &str,
    src: RawSource,
) -> Option<SourceConfig> {
    let at = format!("sources.{name}");
    let before = cx.problems.len();
    if !valid_source_name(name) {
        cx.at_key(
            &at,
            format!("source name `{name}` is not allowed"),
            Some(
                "names are lower-case letters, digits, `-` and `_`; they appear in artifact ids"
                    .into(),
            ),
        );
    }
    let Some(kind) = src.kind.as_deref() else {
        cx.at_key(
            &at,
            format!("source `{name}` has no `type`"),
            Some(format!(
                "set `type:` to one of: {}",
                SOURCE_TYPES.join(", ")
            )),
        );
        return None;
    };
    let not_for = |cx: &mut Ctx<'_>, key: &str, present: bool| {
        if present {
            cx.at_key(
                &format!("{at}.{key}"),
                format!("`{key}` does not apply to a `{kind}` source"),
                None,
            );
        }
    };
    let path = resolve_path(cx, dir, &at, name, src.path.as_deref());
    let spec = match kind {
        "git" => {
            not_for(cx, "exclude", src.exclude.is_some());
            if let Some(p) = &path
                && cx.check_paths
                && git2::Repository::open(p).is_err()
            {
                cx.at_value(
                    &format!("{at}.path"),
                    format!("{} is not a git repository", p.display()),
                    None,
                );
            }
            if let Some(b) = &src.branch
                && !git2::Reference::is_valid_name(&format!("refs/heads/{b}"))
            {
                cx.at_value(
                    &format!("{at}.branch"),
                    format!("`{b}` is not a valid branch name"),
                    None,
                );
            }
            let allowed_signers = key_file(
                cx,
                dir,
                &at,
                "allowed_signers",
                src.allowed_signers.as_deref(),
            );
            let gpg_keyring = key_file(cx, dir, &at, "gpg_keyring", src.gpg_keyring.as_deref());
            SourceSpec::Git {
                path: path.clone().unwrap_or_default(),
                branch: src.branch,
                allowed_signers,
                gpg_keyring,
            }
        }
        "files" => {
            not_for(cx, "branch", src.branch.is_some());
            not_for(cx, "allowed_signers", src.allowed_signers.is_some());
            not_for(cx, "gpg_keyring", src.gpg_keyring.is_some());
            if let Some(p) = &path
                && cx.check_paths
                && !p.is_dir()
            {
                cx.at_value(
                    &format!("{at}.path"),
                    format!("{} is not a folder", p.display()),
                    None,
                );
            }
            let exclude = src.exclude.unwrap_or_default();
            for (i, e) in exclude.iter().enumerate() {
                if e.is_empty() || e.starts_with('/') || e.split('/').any(|s| s == "..") {
                    cx.at_value(
                        &format!("{at}.exclude[{i}]"),
                        format!("`{e}` is not a relative path inside the folder"),
                        None,
                    );
                }
            }
            SourceSpec::Files {
                path: path.clone().unwrap_or_default(),
                exclude,
            }
        }
        other => {
            let near = SOURCE_TYPES
                .iter()
                .min_by_key(|t| super::raw::edit_distance(other, t))
                .copied()
                .unwrap_or("files");
            cx.at_value(
                &format!("{at}.type"),
                format!("unknown source type `{other}`"),
                Some(format!(
                    "supported types: {} (did you mean `{near}`?)",
                    SOURCE_TYPES.join(", ")
                )),
            );
            return None;
        }
    };
    (cx.problems.len() == before && path.is_some()).then(|| SourceConfig {
        name: name.to_string(),
        spec,
    })
}

/// An optional key file of a git source (`allowed_signers`,
/// `gpg_keyring`), relative to the configuration's folder like `path`.
fn key_file(
    cx: &mut Ctx<'_>,
    dir: &Path,
    at: &str,
    key: &str,
    raw: Option<&str>,
) -> Option<PathBuf> {
    let raw = raw?;
    let joined = dir.join(raw);
    if cx.check_paths && !joined.is_file() {
        cx.at_value(
            &format!("{at}.{key}"),
            format!(
                "`{key}` file `{raw}` not found (resolved to {})",
                joined.display()
            ),
            Some("paths are relative to the folder of this configuration file".into()),
        );
    }
    Some(joined)
}

fn resolve_path(
    cx: &mut Ctx<'_>,
    dir: &Path,
    at: &str,
    name: &str,
    raw: Option<&str>,
) -> Option<PathBuf> {
    let Some(raw) = raw else {
        cx.at_key(
            at,
            format!("source `{name}` has no `path`"),
            Some("paths are relative to the folder of this configuration file".into()),
        );
        return None;
    };
    let joined = dir.join(raw);
    if !cx.check_paths {
        return Some(joined);
    }
    match joined.canonicalize() {
        Ok(p) => Some(p),
        Err(_) => {
            cx.at_value(
                &format!("{at}.path"),
                format!(
                    "path `{raw}` does not exist (resolved to {})",
                    joined.display()
                ),
                Some("paths are relative to the folder of this configuration file".into()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, load_str};
    use std::path::Path;

    fn load_in(dir: &Path, text: &str) -> Result<super::Config, ConfigError> {
        load_str(&dir.join("cleartrail.yml"), text)
    }

    #[test]
    fn a_valid_config_resolves_paths_against_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        git2::Repository::init(dir.path().join("app")).unwrap();
        let cfg = load_in(
            dir.path(),
            "version: 1\nperiod: 2026-Q3\nsources:\n  docs:\n    type: files\n    path: policies\n  app:\n    type: git\n    path: app\n",
        )
        .unwrap();
        assert_eq!(cfg.period.unwrap().label(), "2026-Q3");
        assert_eq!(cfg.branch, "cleartrail/evidence");
        assert_eq!(cfg.sources.len(), 2);
        assert_eq!(cfg.sources[0].name, "app");
        match &cfg.sources[1].spec {
            super::SourceSpec::Files { path, .. } => {
                assert_eq!(path, &dir.path().join("policies").canonicalize().unwrap())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let text = "version: 1\nperiod: 2026-Q5\nbranch: \"bad..name\"\nsources:\n  app:\n    type: git\n    path: nowhere\n  docs:\n    type: filez\n    path: .\n  Bad:\n    type: files\n    path: .\n";
        let err = load_in(dir.path(), text).unwrap_err();
        let p = err.problems();
        let summary: Vec<(usize, usize, &str)> = p
            .iter()
            .map(|p| (p.line, p.col, p.message.as_str()))
            .collect();
        assert_eq!(p.len(), 5, "{summary:#?}");
        assert_eq!((p[0].line, p[0].col), (2, 9));
        assert!(p[0].message.contains("Q1, Q2, Q3 or Q4"));
        assert_eq!((p[1].line, p[1].col), (3, 9));
        assert_eq!((p[2].line, p[2].col), (7, 11));
        assert!(p[2].message.contains("path `nowhere` does not exist"));
        assert_eq!((p[3].line, p[3].col), (9, 11));
        assert!(
            p[3].hint
                .as_deref()
                .unwrap()
                .contains("did you mean `files`")
        );
        assert_eq!((p[4].line, p[4].col), (11, 3));
        assert!(p[4].message.contains("`Bad`"));
        let shown = err.to_string();
        assert!(
            shown.starts_with("invalid configuration (5 problems):"),
            "{shown}"
        );
        assert!(
            shown.contains("cleartrail.yml:2:9: invalid period `2026-Q5`"),
            "{shown}"
        );
    }

    #[test]
    fn missing_version_type_and_path_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_in(
            dir.path(),
            "sources:\n  a:\n    path: .\n  b:\n    type: files\n",
        )
        .unwrap_err();
        let msgs: Vec<&str> = err.problems().iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "missing `version`",
                "source `a` has no `type`",
                "source `b` has no `path`"
            ]
        );
        let err = load_in(dir.path(), "version: 2\nsources: {}\n").unwrap_err();
        assert_eq!(err.problems().len(), 2);
        assert_eq!(
            err.problems()[0].message,
            "unsupported configuration version"
        );
    }

    #[test]
    fn git_key_files_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init(dir.path().join("app")).unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/allowed_signers"), "").unwrap();
        let cfg = load_in(
            dir.path(),
            "version: 1\nsources:\n  app:\n    type: git\n    path: app\n    allowed_signers: keys/allowed_signers\n",
        )
        .unwrap();
        match &cfg.sources[0].spec {
            super::SourceSpec::Git {
                allowed_signers,
                gpg_keyring,
                ..
            } => {
                assert_eq!(
                    allowed_signers.as_deref(),
                    Some(dir.path().join("keys/allowed_signers").as_path())
                );
                assert_eq!(gpg_keyring, &None);
            }
            other => panic!("{other:?}"),
        }
        let err = load_in(
            dir.path(),
            "version: 1\nsources:\n  app:\n    type: git\n    path: app\n    gpg_keyring: keys/missing.asc\n  docs:\n    type: files\n    path: keys\n    gpg_keyring: keys/allowed_signers\n",
        )
        .unwrap_err();
        let msgs: Vec<(usize, &str)> = err
            .problems()
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0].0, 6);
        assert!(
            msgs[0]
                .1
                .contains("`gpg_keyring` file `keys/missing.asc` not found")
        );
        assert_eq!(msgs[1].0, 10);
        assert!(msgs[1].1.contains("does not apply to a `files` source"));
    }

    #[test]
    fn options_of_the_wrong_source_type_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_in(
            dir.path(),
            "version: 1\nsources:\n  docs:\n    type: files\n    path: .\n    branch: main\n",
        )
        .unwrap_err();
        assert_eq!(err.problems()[0].line, 6);
        assert!(
            err.problems()[0]
                .message
                .contains("does not apply to a `files` source")
        );
    }
}
