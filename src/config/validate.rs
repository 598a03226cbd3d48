//! Phase two: raw configuration into a [`Config`] that cannot be invalid.
//! Every problem found is reported, not just the first.

use super::locate::Locations;
use super::raw::{RawConfig, RawSource};
use super::{Config, DEFAULT_BRANCH, Located, OutOfScope, Problem, SourceConfig, SourceSpec};
use crate::period::Period;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SOURCE_TYPES: &[&str] = &["git", "files", "github", "jira", "gdrive"];

/// Each source key and the source types it applies to.
const SOURCE_KEYS: &[(&str, &[&str])] = &[
    ("path", &["git", "files"]),
    ("branch", &["git"]),
    ("exclude", &["files", "github"]),
    ("allowed_signers", &["git"]),
    ("gpg_keyring", &["git"]),
    ("org", &["github"]),
    ("repos", &["github"]),
    ("include", &["github"]),
    ("optional", &["github"]),
    ("sla", &["github"]),
    ("url", &["jira"]),
    ("deployment", &["jira"]),
    ("queries", &["jira"]),
    ("approval", &["jira"]),
    ("incident_sla", &["jira"]),
    ("folders", &["gdrive"]),
    ("export_as", &["gdrive"]),
    ("api_url", &["gdrive"]),
    ("max_bytes", &["gdrive"]),
];

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
        // A letter first: a name like `2026-03` would read as a month shard
        // in the evidence layout.
        && name.as_bytes()[0].is_ascii_lowercase()
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
        // Not written anywhere: point at the start of the document.
        None => cx.push(
            super::locate::Pos { line: 1, col: 1 },
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
    check_evidence_branch(&mut cx, &branch);

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
            if fw == "soc2" && id == "security" {
                cx.at_key(
                    &at,
                    "the SOC 2 `security` category cannot be out of scope: its common criteria (CC1-CC9) are required in every SOC 2 report",
                    Some("declare single controls out of scope, each with its reason, or remove this entry".into()),
                );
            }
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

    let approvals = raw
        .approvals
        .and_then(|a| validate_approvals(&mut cx, dir, a));

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
            approvals,
        })
    } else {
        cx.problems.sort_by_key(|p| (p.line, p.col));
        Err(cx.problems)
    }
}

/// Branch names cleartrail never writes evidence to: the default branch of
/// a new evidence repository (`main`, created by `cleartrail init`) and
/// the other usual default. Evidence lives on a branch of its own so that
/// it reaches the default branch only through a reviewed pull request.
const DEFAULT_BRANCHES: &[&str] = &["main", "master"];

fn check_evidence_branch(cx: &mut Ctx<'_>, branch: &str) {
    // git's own rules for a branch name, which are stricter than for a
    // reference (`HEAD`, a leading `-`).
    let valid = git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
        && git2::Branch::name_is_valid(branch).unwrap_or(false);
    if !valid {
        cx.at_value(
            "branch",
            format!("`{branch}` is not a valid branch name"),
            Some("use letters, digits, `-`, `_` and `/`, e.g. cleartrail/evidence".into()),
        );
    } else if DEFAULT_BRANCHES.contains(&branch) {
        cx.at_value(
            "branch",
            format!("the evidence branch cannot be `{branch}`: it would be the repository's default branch"),
            Some(format!(
                "leave `branch` out to use `{DEFAULT_BRANCH}`; evidence reaches the default branch through a pull request"
            )),
        );
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
                "names start with a lower-case letter, then letters, digits, `-` and `_`; they appear in artifact ids and paths"
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
    if SOURCE_TYPES.contains(&kind) {
        for (key, types) in SOURCE_KEYS {
            if src.has(key) && !types.contains(&kind) {
                cx.at_key(
                    &format!("{at}.{key}"),
                    format!("`{key}` does not apply to a `{kind}` source"),
                    None,
                );
            }
        }
    }
    let spec_of = |spec: Option<SourceSpec>| {
        spec.map(|spec| SourceConfig {
            name: name.to_string(),
            spec,
        })
    };
    match kind {
        "github" => return spec_of(validate_github(cx, &at, src, before)),
        "jira" => return spec_of(validate_jira(cx, &at, src, before)),
        "gdrive" => return spec_of(validate_gdrive(cx, &at, src, before)),
        _ => {}
    }
    let path = resolve_path(cx, dir, &at, name, src.path.as_deref());
    let spec = match kind {
        "git" => {
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
            SourceSpec::Git(super::GitSpec {
                path: path.clone().unwrap_or_default(),
                branch: src.branch,
                allowed_signers,
                gpg_keyring,
            })
        }
        "files" => {
            // The path was resolved once (a link to a folder is fine);
            // what it resolved to must be an ordinary folder.
            if let Some(p) = &path
                && cx.check_paths
            {
                if let Some(root) = crate::yaml::system_root(p) {
                    cx.at_value(
                        &format!("{at}.path"),
                        format!(
                            "{} is a system folder (in {root}, the machine's own state), not documents",
                            p.display()
                        ),
                        Some("point `path` at a folder of policies or other documents".into()),
                    );
                } else if !p.is_dir() {
                    cx.at_value(
                        &format!("{at}.path"),
                        format!("{} is not a folder", p.display()),
                        None,
                    );
                }
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
            SourceSpec::Files(super::FilesSpec {
                path: path.clone().unwrap_or_default(),
                exclude,
            })
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

/// A `github` source: an organization and/or repositories named one by
/// one, with name patterns for the organization's list.
fn validate_github(
    cx: &mut Ctx<'_>,
    at: &str,
    src: RawSource,
    before: usize,
) -> Option<SourceSpec> {
    // GitHub's rules for organization and repository names.
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if let Some(org) = &src.org
        && !name_ok(org)
    {
        cx.at_value(
            &format!("{at}.org"),
            format!("`{org}` is not a GitHub organization name"),
            None,
        );
    }
    let repos = src.repos.unwrap_or_default();
    for (i, r) in repos.iter().enumerate() {
        let ok = r
            .split_once('/')
            .is_some_and(|(o, n)| name_ok(o) && name_ok(n) && n != "." && n != "..");
        if !ok {
            cx.at_value(
                &format!("{at}.repos[{i}]"),
                format!("`{r}` is not a repository as `owner/name`"),
                None,
            );
        }
    }
    if src.org.is_none() && repos.is_empty() {
        cx.at_key(
            at,
            "a `github` source needs `org`, `repos` or both",
            Some("`org: acme-corp` lists the organization's repositories; `repos: [acme-corp/api]` names them one by one".into()),
        );
    }
    let include = src.include.unwrap_or_default();
    let exclude = src.exclude.unwrap_or_default();
    if src.org.is_none() && (!include.is_empty() || !exclude.is_empty()) {
        cx.at_key(
            at,
            "`include` and `exclude` select from an organization's list, and no `org` is set",
            None,
        );
    }
    for (key, list) in [("include", &include), ("exclude", &exclude)] {
        for (i, p) in list.iter().enumerate() {
            if p.is_empty() || p.contains('/') {
                cx.at_value(
                    &format!("{at}.{key}[{i}]"),
                    format!(
                        "`{p}` is not a repository name pattern (`*` and `?` match within a name)"
                    ),
                    None,
                );
            }
        }
    }
    let mut optional = std::collections::BTreeSet::new();
    for (i, name) in src.optional.unwrap_or_default().iter().enumerate() {
        let id = name.replace('_', "-");
        match crate::connectors::github::QUERIES
            .iter()
            .find(|q| q.id == id)
        {
            Some(q) if q.id == "repositories" => cx.at_value(
                &format!("{at}.optional[{i}]"),
                "`repositories` cannot be optional: every other kind is read per repository",
                None,
            ),
            Some(q) => {
                optional.insert(q.id.to_string());
            }
            None => cx.at_value(
                &format!("{at}.optional[{i}]"),
                format!("`{name}` is not an evidence kind of a `github` source"),
                Some(format!(
                    "one of: {}",
                    crate::connectors::github::QUERIES
                        .iter()
                        .filter(|q| q.id != "repositories")
                        .map(|q| q.id.replace('-', "_"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
        }
    }
    let mut sla = crate::checks::Sla::default();
    if let Some(raw) = &src.sla {
        for (key, value, slot) in [
            ("critical", raw.critical, &mut sla.critical),
            ("high", raw.high, &mut sla.high),
            ("medium", raw.medium, &mut sla.medium),
            ("low", raw.low, &mut sla.low),
        ] {
            match value {
                Some(0) => cx.at_value(
                    &format!("{at}.sla.{key}"),
                    format!("`{key}: 0` leaves no time at all to fix an alert"),
                    Some("days from an alert's opening to its fix or dismissal, at least 1".into()),
                ),
                Some(d) => *slot = d,
                None => {}
            }
        }
    }
    (cx.problems.len() == before).then_some(SourceSpec::Github(
        crate::connectors::github::GithubSpec {
            org: src.org,
            repos,
            include,
            exclude,
            optional,
            sla,
        },
    ))
}

/// The default hours to resolve an incident, by severity (Jira's default
/// priorities).
const INCIDENT_HOURS: &[(&str, u32)] =
    &[("highest", 24), ("high", 72), ("medium", 168), ("low", 336)];

fn validate_jira(cx: &mut Ctx<'_>, at: &str, src: RawSource, before: usize) -> Option<SourceSpec> {
    if let Some(url) = &src.url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            cx.at_value(
                &format!("{at}.url"),
                format!("`{url}` is not a Jira site address"),
                Some("e.g. https://acme.atlassian.net".into()),
            );
        } else if !crate::connectors::http::safe_for_credentials(url) {
            cx.at_value(
                &format!("{at}.url"),
                format!("`{url}` would carry the Jira credentials unencrypted"),
                Some("use https:// (plain http only to localhost)".into()),
            );
        }
    }
    let deployment = match src.deployment.as_deref() {
        None => None,
        Some("cloud") => Some(crate::connectors::jira::client::Deployment::Cloud),
        Some("data-center") => Some(crate::connectors::jira::client::Deployment::DataCenter),
        Some(other) => {
            cx.at_value(
                &format!("{at}.deployment"),
                format!("`{other}` is not a Jira deployment"),
                Some(
                    "`cloud` (REST v3, `/search/jql`) or `data-center` (REST v2, `/search`)".into(),
                ),
            );
            None
        }
    };
    let queries = src.queries.unwrap_or_default();
    if queries.is_empty() {
        cx.at_key(
            at,
            "a `jira` source needs `queries`: evidence kind -> JQL",
            Some("e.g. `queries: { change: \"project = CHG\" }`".into()),
        );
    }
    let kind_ok = |k: &str| {
        !k.is_empty()
            && k.len() <= 64
            && k.starts_with(|c: char| c.is_ascii_lowercase())
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    for (kind, jql) in &queries {
        if !kind_ok(kind) {
            cx.at_key(
                &format!("{at}.queries.{kind}"),
                format!("`{kind}` is not an evidence kind name"),
                Some("lower-case letters, digits and `-`, starting with a letter".into()),
            );
        }
        if jql.trim().is_empty() {
            cx.at_value(
                &format!("{at}.queries.{kind}"),
                format!("query `{kind}` has no JQL"),
                None,
            );
        }
    }
    let known = |cx: &mut Ctx<'_>, key: &str, list: &[String]| {
        for (i, k) in list.iter().enumerate() {
            if !queries.contains_key(k) {
                cx.at_value(
                    &format!("{at}.{key}[{i}]"),
                    format!("`{k}` is not one of this source's queries"),
                    Some(format!(
                        "the queries are: {}",
                        queries.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                );
            }
        }
    };
    let sla = src.incident_sla;
    let incident_kinds: Vec<String> = match sla.as_ref().and_then(|s| s.kinds.clone()) {
        Some(k) => {
            known(cx, "incident_sla.kinds", &k);
            k
        }
        None => queries
            .keys()
            .filter(|k| *k == "incident")
            .cloned()
            .collect(),
    };
    let approval = src.approval;
    let approval_kinds: Vec<String> = match approval.as_ref().and_then(|a| a.kinds.clone()) {
        Some(k) => {
            known(cx, "approval.kinds", &k);
            k
        }
        None => queries
            .keys()
            .filter(|k| !incident_kinds.contains(k))
            .cloned()
            .collect(),
    };
    let statuses = approval
        .as_ref()
        .and_then(|a| a.statuses.clone())
        .unwrap_or_else(|| vec!["Approved".into()]);
    let fields = approval.and_then(|a| a.fields).unwrap_or_default();
    for (i, f) in fields.iter().enumerate() {
        if f.trim().is_empty() || f.contains(char::is_whitespace) {
            cx.at_value(
                &format!("{at}.approval.fields[{i}]"),
                format!("`{f}` is not a Jira field id"),
                Some("use the field's id, e.g. customfield_10050".into()),
            );
        }
    }
    let mut hours: BTreeMap<String, u32> = INCIDENT_HOURS
        .iter()
        .map(|(k, h)| (k.to_string(), *h))
        .collect();
    if let Some(given) = sla.as_ref().and_then(|s| s.hours.clone()) {
        hours = BTreeMap::new();
        for (sev, h) in given {
            if h == 0 {
                cx.at_value(
                    &format!("{at}.incident_sla.hours.{sev}"),
                    format!("`{sev}: 0` leaves no time at all to resolve an incident"),
                    None,
                );
            }
            hours.insert(sev.to_ascii_lowercase(), h);
        }
    }
    let severity_field = sla
        .and_then(|s| s.field)
        .unwrap_or_else(|| "priority".into());
    (cx.problems.len() == before).then_some(SourceSpec::Jira(crate::connectors::jira::JiraSpec {
        url: src.url,
        deployment,
        queries,
        approver_fields: fields,
        severity_field,
        policy: crate::checks::TicketPolicy {
            approval_kinds: approval_kinds.into_iter().collect(),
            approval_statuses: statuses,
            incident_kinds: incident_kinds.into_iter().collect(),
            incident_hours: hours,
        },
    }))
}

fn validate_approvals(
    cx: &mut Ctx<'_>,
    dir: &Path,
    a: super::raw::RawApprovals,
) -> Option<super::ApprovalsConfig> {
    let before = cx.problems.len();
    let repository = match a.repository {
        Some(r) if r.split('/').count() == 2 && r.split('/').all(|p| !p.is_empty()) => Some(r),
        Some(r) => {
            cx.at_value(
                "approvals.repository",
                format!("`{r}` is not `owner/name`"),
                None,
            );
            None
        }
        None => {
            cx.at_key(
                "approvals",
                "`approvals` needs `repository`: the evidence repository on GitHub, `owner/name`",
                None,
            );
            None
        }
    };
    if a.repository_id.is_none() {
        cx.at_key(
            "approvals",
            "`approvals` needs `repository_id`: the repository's numeric id, so that records of another repository (or one renamed into its name) are refused",
            Some("`gh api repos/OWNER/NAME --jq .id` prints it".into()),
        );
    }
    let default_branch = a.default_branch.unwrap_or_else(|| "main".into());
    let approvers = a.approvers;
    let users: Vec<String> = approvers
        .as_ref()
        .and_then(|p| p.users.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.to_ascii_lowercase())
        .collect();
    let mut teams = Vec::new();
    for (i, t) in approvers
        .and_then(|p| p.teams)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match t.split_once('/') {
            Some((o, s)) if !o.is_empty() && !s.is_empty() && !s.contains('/') => {
                teams.push((o.to_string(), s.to_string()))
            }
            _ => cx.at_value(
                &format!("approvals.approvers.teams[{i}]"),
                format!("`{t}` is not `org/team-slug`"),
                None,
            ),
        }
    }
    let required = a.required.unwrap_or(1);
    if required == 0 {
        cx.at_value(
            "approvals.required",
            "`required: 0` would record evidence as approved by nobody",
            None,
        );
    }
    let keyless_keys = [
        ("fulcio_url", a.fulcio_url.is_some()),
        ("rekor_url", a.rekor_url.is_some()),
        ("tsa_url", a.tsa_url.is_some()),
        ("trusted_root", a.trusted_root.is_some()),
        ("workflow", a.workflow.is_some()),
    ];
    for (k, url) in [
        ("fulcio_url", &a.fulcio_url),
        ("rekor_url", &a.rekor_url),
        ("tsa_url", &a.tsa_url),
    ] {
        if let Some(u) = url
            && !(u.starts_with("https://") || crate::connectors::http::safe_for_credentials(u))
        {
            cx.at_value(
                &format!("approvals.{k}"),
                format!("`{u}` is not an https:// address"),
                Some("plain http only to localhost (a test instance)".into()),
            );
        }
    }
    let signing = match a.signing.as_deref().unwrap_or("keyless") {
        "keyless" => {
            if a.public_key.is_some() {
                cx.at_key(
                    "approvals.public_key",
                    "`public_key` is for `signing: key`",
                    None,
                );
            }
            let custom = a.fulcio_url.is_some() || a.rekor_url.is_some();
            if custom && a.trusted_root.is_none() {
                cx.at_key(
                    "approvals",
                    "a Sigstore instance of one's own (`fulcio_url`, `rekor_url`) needs its `trusted_root`: the public good root would refuse its certificates",
                    None,
                );
            }
            Some(super::Signing::Keyless(super::Keyless {
                workflow: a
                    .workflow
                    .unwrap_or_else(|| ".github/workflows/cleartrail-approve.yml".into()),
                fulcio_url: a.fulcio_url.unwrap_or_else(|| super::PUBLIC_FULCIO.into()),
                rekor_url: a.rekor_url.unwrap_or_else(|| super::PUBLIC_REKOR.into()),
                tsa_url: a.tsa_url,
                trusted_root: a.trusted_root.map(|p| dir.join(p)),
            }))
        }
        "key" => {
            for (k, set) in keyless_keys {
                if set {
                    cx.at_key(
                        &format!("approvals.{k}"),
                        format!("`{k}` is for `signing: keyless`"),
                        None,
                    );
                }
            }
            match a.public_key {
                Some(p) => Some(super::Signing::Key {
                    public_key: dir.join(p),
                }),
                None => {
                    cx.at_value(
                    "approvals.signing",
                    "`signing: key` needs `public_key`: the PEM public key that verifies records",
                    None,
                );
                    None
                }
            }
        }
        other => {
            cx.at_value(
                "approvals.signing",
                format!("unknown signing `{other}`"),
                Some("`keyless` (Sigstore, in GitHub Actions) or `key`".into()),
            );
            None
        }
    };
    (cx.problems.len() == before).then(|| super::ApprovalsConfig {
        repository: repository.unwrap_or_default(),
        repository_id: a.repository_id.unwrap_or_default(),
        default_branch,
        users,
        teams,
        required,
        signing: signing.expect("no problem means a signing mode"),
    })
}

fn validate_gdrive(
    cx: &mut Ctx<'_>,
    at: &str,
    src: RawSource,
    before: usize,
) -> Option<SourceSpec> {
    let folders = src.folders.unwrap_or_default();
    if folders.is_empty() {
        cx.at_key(
            at,
            "a `gdrive` source needs `folders`: the ids of folders or shared drives",
            Some("the id is the last part of the folder's address, drive.google.com/drive/folders/<id>".into()),
        );
    }
    for (i, f) in folders.iter().enumerate() {
        let ok = !f.is_empty()
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            cx.at_value(
                &format!("{at}.folders[{i}]"),
                format!("`{f}` is not a Drive folder id"),
                Some("the id is the last part of the folder's address, drive.google.com/drive/folders/<id>".into()),
            );
        }
    }
    let export_as = src.export_as.unwrap_or_else(|| "text/markdown".into());
    const EXPORTS: &[&str] = &[
        "text/markdown",
        "text/plain",
        "text/html",
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.oasis.opendocument.text",
        "application/rtf",
        "application/epub+zip",
    ];
    if !EXPORTS.contains(&export_as.as_str()) {
        cx.at_value(
            &format!("{at}.export_as"),
            format!("Google Docs cannot be exported as `{export_as}`"),
            Some(format!("one of: {}", EXPORTS.join(", "))),
        );
    }
    if let Some(u) = &src.api_url
        && !crate::connectors::http::safe_for_credentials(u)
    {
        cx.at_value(
            &format!("{at}.api_url"),
            format!("`{u}` is not an https:// address (plain http only to localhost): the access token travels with every call"),
            None,
        );
    }
    (cx.problems.len() == before).then_some(SourceSpec::Gdrive(
        crate::connectors::gdrive::GdriveSpec {
            folders,
            export_as,
            api_url: src.api_url,
            max_bytes: src.max_bytes.unwrap_or(10 * 1024 * 1024),
        },
    ))
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

    #[test]
    fn source_names_start_with_a_letter_so_none_reads_as_a_month_shard() {
        use super::valid_source_name;
        assert!(valid_source_name("app"));
        assert!(valid_source_name("app-2_x"));
        assert!(!valid_source_name("2026-03"));
        assert!(!valid_source_name("-x"));
        assert!(!valid_source_name("App"));
        assert!(!valid_source_name(""));
    }

    /// (line, message) of every problem a load reported.
    fn problems(err: &ConfigError) -> Vec<(usize, String)> {
        err.problems()
            .iter()
            .map(|p| (p.line, p.message.clone()))
            .collect()
    }

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
            super::SourceSpec::Files(crate::config::FilesSpec { path, .. }) => {
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

    fn messages(dir: &Path, text: &str) -> Vec<(usize, usize, String)> {
        load_in(dir, text)
            .unwrap_err()
            .problems()
            .iter()
            .map(|p| (p.line, p.col, p.message.clone()))
            .collect()
    }

    #[test]
    fn a_missing_version_is_reported_at_the_document_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = messages(dir.path(), "sources:\n  d:\n    type: files\n    path: .\n");
        assert_eq!(p, [(1, 1, "missing `version`".to_string())]);
    }

    #[test]
    fn branches_git_refuses_and_default_branches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = "sources:\n  d:\n    type: files\n    path: .\n";
        for (branch, expect) in [
            ("HEAD", "`HEAD` is not a valid branch name"),
            ("-x", "`-x` is not a valid branch name"),
            ("main", "the evidence branch cannot be `main`"),
            ("master", "the evidence branch cannot be `master`"),
        ] {
            let p = messages(
                dir.path(),
                &format!("version: 1\nbranch: \"{branch}\"\n{src}"),
            );
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!((p[0].0, p[0].1), (2, 9));
            assert!(p[0].2.starts_with(expect), "{p:?}");
        }
        load_in(
            dir.path(),
            &format!("version: 1\nbranch: evidence/main\n{src}"),
        )
        .unwrap();
    }

    #[test]
    fn soc2_security_cannot_be_out_of_scope() {
        let dir = tempfile::tempdir().unwrap();
        let p = messages(
            dir.path(),
            "version: 1\nsources:\n  d:\n    type: files\n    path: .\nout_of_scope:\n  soc2:\n    privacy: no personal data\n    security: we are small\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].0, p[0].1), (9, 5));
        assert!(
            p[0].2
                .contains("common criteria (CC1-CC9) are required in every SOC 2 report"),
            "{p:?}"
        );
    }

    #[test]
    fn an_unknown_key_does_not_hide_other_problems() {
        let dir = tempfile::tempdir().unwrap();
        let p = messages(
            dir.path(),
            "version: 1\nperoid: 2026\nbranch: HEAD\nsources:\n  d:\n    type: files\n    path: .\n    exclud: [x]\n  d:\n    type: files\n    path: .\n  e:\n    type: files\n    path: nowhere\n",
        );
        let lines: Vec<usize> = p.iter().map(|p| p.0).collect();
        assert_eq!(lines, [2, 3, 8, 9, 14], "{p:#?}");
        assert!(p[0].2.starts_with("unknown field `peroid`"), "{p:?}");
        assert!(
            p[2].2.starts_with("sources.d: unknown field `exclud`"),
            "{p:?}"
        );
        assert_eq!(p[3].2, "`sources.d` is written twice, on lines 5 and 9");
        assert!(p[4].2.starts_with("path `nowhere` does not exist"), "{p:?}");
    }

    #[test]
    fn a_type_error_is_reported_with_unknown_and_repeated_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = messages(
            dir.path(),
            "version: 1\nsorces: {}\nsources:\n  d:\n    type: files\n    path: .\n    exclude: 5\nbranch: a\nbranch: b\n",
        );
        let lines: Vec<usize> = p.iter().map(|p| p.0).collect();
        assert_eq!(lines, [2, 7, 9], "{p:#?}");
        assert!(p[0].2.starts_with("unknown field `sorces`"), "{p:?}");
        assert!(p[1].2.contains("invalid type"), "{p:?}");
        assert_eq!(p[2].2, "`branch` is written twice, on lines 8 and 9");
        // A repeated field of the configuration itself is named once.
        let p = messages(
            dir.path(),
            "version: 1\nbranch: a\nbranch: b\nsources: {}\n",
        );
        assert_eq!(
            p,
            [(
                3,
                1,
                "`branch` is written twice, on lines 2 and 3".to_string()
            )]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_files_source_in_a_system_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/proc/self", dir.path().join("me")).unwrap();
        for path in ["/proc/self", "me", "/dev", "/sys"] {
            let p = messages(
                dir.path(),
                &format!("version: 1\nsources:\n  d:\n    type: files\n    path: {path}\n"),
            );
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!((p[0].0, p[0].1), (5, 11));
            assert!(p[0].2.contains("is a system folder"), "{p:?}");
        }
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
            super::SourceSpec::Git(crate::config::GitSpec {
                allowed_signers,
                gpg_keyring,
                ..
            }) => {
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

    #[test]
    fn a_github_source_is_validated_with_every_problem_placed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load_in(
            dir.path(),
            "version: 1\nsources:\n  gh:\n    type: github\n    org: acme-corp\n    repos: [other/api]\n    exclude: [sandbox-*]\n",
        )
        .unwrap();
        match &cfg.sources[0].spec {
            super::SourceSpec::Github(g) => {
                assert_eq!(g.org.as_deref(), Some("acme-corp"));
                assert_eq!(g.repos, ["other/api"]);
                assert_eq!(g.exclude, ["sandbox-*"]);
            }
            other => panic!("{other:?}"),
        }
        let err = load_in(
            dir.path(),
            "version: 1\nsources:\n  gh:\n    type: github\n    path: x\n    repos: [api, ok/ok, a/b/c]\n    include: [\"x\"]\n  docs:\n    type: files\n    path: .\n    org: acme\n",
        )
        .unwrap_err();
        let got: Vec<(usize, &str)> = err
            .problems()
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    3,
                    "`include` and `exclude` select from an organization's list, and no `org` is set"
                ),
                (5, "`path` does not apply to a `github` source"),
                (6, "`api` is not a repository as `owner/name`"),
                (6, "`a/b/c` is not a repository as `owner/name`"),
                (11, "`org` does not apply to a `files` source"),
            ]
        );
        let err = load_in(
            dir.path(),
            "version: 1\nsources:\n  gh:\n    type: github\n",
        )
        .unwrap_err();
        assert!(
            err.problems()[0]
                .message
                .contains("needs `org`, `repos` or both")
        );
    }

    #[test]
    fn a_jira_source_is_validated_with_its_policy() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load_in(
            dir.path(),
            "version: 1\nsources:\n  tickets:\n    type: jira\n    url: https://acme.atlassian.net\n    queries:\n      change: project = CHG\n      incident: project = INC\n      access-request: project = IT\n    incident_sla:\n      hours: { Highest: 12 }\n",
        )
        .unwrap();
        let super::SourceSpec::Jira(j) = &cfg.sources[0].spec else {
            panic!("a jira source");
        };
        assert_eq!(j.url.as_deref(), Some("https://acme.atlassian.net"));
        assert_eq!(
            j.policy.approval_kinds.iter().collect::<Vec<_>>(),
            ["access-request", "change"]
        );
        assert_eq!(
            j.policy.incident_kinds.iter().collect::<Vec<_>>(),
            ["incident"]
        );
        assert_eq!(j.policy.approval_statuses, ["Approved"]);
        assert_eq!(
            j.policy.incident_hours,
            [("highest".to_string(), 12)].into()
        );
        assert_eq!(j.severity_field, "priority");
        let err = load_in(
            dir.path(),
            "version: 1\nsources:\n  tickets:\n    type: jira\n    url: acme.atlassian.net\n    path: x\n    deployment: server\n    queries:\n      Change: project = CHG\n    approval:\n      kinds: [incident]\n      approvers: [x]\n  gh:\n    type: github\n    org: acme\n    queries: {a: b}\n",
        )
        .unwrap_err();
        let mut got: Vec<(usize, String)> = problems(&err);
        let lines: Vec<usize> = got.iter().map(|g| g.0).collect();
        assert_eq!(lines, [5, 6, 7, 9, 11, 12, 16], "{got:?}");
        assert!(got[0].1.contains("is not a Jira site address"), "{got:?}");
        assert!(
            got[1]
                .1
                .contains("`path` does not apply to a `jira` source"),
            "{got:?}"
        );
        assert!(
            got.remove(2)
                .1
                .contains("`server` is not a Jira deployment"),
            "{got:?}"
        );
        assert!(
            got[2].1.contains("`Change` is not an evidence kind name"),
            "{got:?}"
        );
        assert!(
            got[3]
                .1
                .contains("`incident` is not one of this source's queries"),
            "{got:?}"
        );
        assert!(got[4].1.contains("approvers"), "{got:?}");
        assert!(
            got[5]
                .1
                .contains("`queries` does not apply to a `github` source"),
            "{got:?}"
        );
    }

    #[test]
    fn the_approvals_section_is_validated_with_every_problem_located() {
        let dir = tempfile::tempdir().unwrap();
        let src = "version: 1\nsources:\n  d:\n    type: gdrive\n    folders: [x]\n";
        let ok = load_in(
            dir.path(),
            &format!("{src}approvals:\n  repository: acme/evidence\n  repository_id: 77\n  approvers:\n    users: [Bob]\n    teams: [acme/compliance]\n  required: 2\n  signing: key\n  public_key: keys/approve.pub\n"),
        )
        .unwrap();
        let a = ok.approvals.unwrap();
        assert_eq!(a.users, ["bob"]);
        assert_eq!(a.teams, [("acme".to_string(), "compliance".to_string())]);
        assert_eq!(a.default_branch, "main");
        assert_eq!(
            a.signing,
            super::super::Signing::Key {
                public_key: dir.path().join("keys/approve.pub")
            }
        );
        assert_eq!(a.described(), "users bob; teams acme/compliance");
        let err = load_in(
            dir.path(),
            &format!("{src}approvals:\n  repository: acme\n  approvers:\n    teams: [compliance]\n    groups: [x]\n  required: 0\n  signing: key\n"),
        )
        .unwrap_err();
        let got: Vec<(usize, String)> = problems(&err);
        let lines: Vec<usize> = got.iter().map(|g| g.0).collect();
        assert_eq!(lines, [6, 7, 9, 10, 11, 12], "{got:?}");
        assert!(got[0].1.contains("needs `repository_id`"), "{got:?}");
        assert!(got[1].1.contains("`acme` is not `owner/name`"), "{got:?}");
        assert!(
            got[2].1.contains("`compliance` is not `org/team-slug`"),
            "{got:?}"
        );
        assert!(got[3].1.contains("unknown field `groups`"), "{got:?}");
        assert!(got[4].1.contains("`required: 0`"), "{got:?}");
        assert!(got[5].1.contains("needs `public_key`"), "{got:?}");
    }

    #[test]
    fn a_gdrive_source_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load_in(
            dir.path(),
            "version: 1\nsources:\n  d:\n    type: gdrive\n    folders: [1AbC_d-E]\n",
        )
        .unwrap();
        let super::SourceSpec::Gdrive(g) = &cfg.sources[0].spec else {
            panic!("a gdrive source");
        };
        assert_eq!(g.folders, ["1AbC_d-E"]);
        assert_eq!(g.export_as, "text/markdown");
        let err = load_in(
            dir.path(),
            "version: 1\nsources:\n  d:\n    type: gdrive\n    folders: [\"a b\"]\n    export_as: image/png\n    org: acme\n",
        )
        .unwrap_err();
        let got: Vec<(usize, String)> = problems(&err);
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            [5, 6, 7],
            "{got:?}"
        );
        assert!(got[0].1.contains("is not a Drive folder id"), "{got:?}");
        assert!(
            got[1].1.contains("cannot be exported as `image/png`"),
            "{got:?}"
        );
        assert!(
            got[2]
                .1
                .contains("`org` does not apply to a `gdrive` source"),
            "{got:?}"
        );
    }

    #[test]
    fn optional_kinds_and_the_alert_sla_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load_in(
            dir.path(),
            "version: 1\nsources:\n  gh:\n    type: github\n    org: acme-corp\n    optional: [secret_scanning_alerts, workflow-runs]\n    sla: { critical: 3, low: 365 }\n",
        )
        .unwrap();
        let super::SourceSpec::Github(g) = &cfg.sources[0].spec else {
            panic!("a github source");
        };
        assert_eq!(
            g.optional.iter().collect::<Vec<_>>(),
            ["secret-scanning-alerts", "workflow-runs"]
        );
        let sla = crate::checks::Sla {
            critical: 3,
            low: 365,
            ..Default::default()
        };
        assert_eq!(g.sla, sla);
        let err = load_in(
            dir.path(),
            "version: 1\nsources:\n  gh:\n    type: github\n    org: acme-corp\n    optional: [repositories, audit_log]\n    sla:\n      critical: 0\n      urgent: 1\n  docs:\n    type: files\n    path: .\n    sla: { low: 1 }\n",
        )
        .unwrap_err();
        let got: Vec<(usize, String)> = problems(&err);
        let lines: Vec<usize> = got.iter().map(|g| g.0).collect();
        assert_eq!(lines, [6, 6, 8, 9, 13], "{got:?}");
        assert!(
            got[0].1.contains("`repositories` cannot be optional"),
            "{got:?}"
        );
        assert!(
            got[1].1.contains("`audit_log` is not an evidence kind"),
            "{got:?}"
        );
        assert!(got[2].1.contains("`critical: 0` leaves no time"), "{got:?}");
        assert!(got[3].1.contains("urgent"), "{got:?}");
        assert!(
            got[4]
                .1
                .contains("`sla` does not apply to a `files` source"),
            "{got:?}"
        );
    }
}
