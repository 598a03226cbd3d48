//! Phase one: the configuration exactly as written.
//!
//! Every YAML text goes through [`crate::yaml::check`] first, so a hostile
//! file is refused with its position before a parser builds anything.
//! The configuration's own types accept unknown keys while parsing, and
//! [`structure_problems`] reports each of them (and every key written
//! twice) afterwards: an unknown key must not hide the other problems of
//! the file, as serde's first-error `deny_unknown_fields` would.

use super::Problem;
use super::locate::{Locations, join_path};
use crate::yaml::{BoundError, Bounds};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
pub struct RawConfig {
    pub version: Option<serde_yaml::Value>,
    pub period: Option<serde_yaml::Value>,
    pub branch: Option<String>,
    #[serde(default)]
    pub sources: BTreeMap<String, RawSource>,
    /// Frameworks in scope (default: every catalog).
    pub frameworks: Option<Vec<String>>,
    /// framework -> control id or category -> reason.
    pub out_of_scope: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// check code -> settings.
    pub checks: Option<BTreeMap<String, RawCheck>>,
    /// Who approves evidence pull requests, and how records are signed.
    pub approvals: Option<RawApprovals>,
}

#[derive(Debug, Deserialize)]
pub struct RawApprovals {
    /// `owner/name` of the evidence repository on GitHub.
    pub repository: Option<String>,
    /// Its numeric id, pinned: records of another repository are refused.
    pub repository_id: Option<u64>,
    /// The branch pull requests merge into, where records are committed.
    pub default_branch: Option<String>,
    pub approvers: Option<RawApprovers>,
    /// Approvals needed (default 1).
    pub required: Option<u32>,
    /// `keyless` (Sigstore, in GitHub Actions) or `key`.
    pub signing: Option<String>,
    /// key: the public key file (PEM) that verifies records.
    pub public_key: Option<String>,
    /// keyless: the approve workflow's path in the repository.
    pub workflow: Option<String>,
    /// keyless: a Sigstore instance other than the public good one.
    pub fulcio_url: Option<String>,
    pub rekor_url: Option<String>,
    /// keyless: an RFC 3161 timestamp authority (its timestamp endpoint).
    pub tsa_url: Option<String>,
    /// keyless: the instance's trusted root (default: the public good one).
    pub trusted_root: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawApprovers {
    pub users: Option<Vec<String>>,
    /// `org/team-slug`.
    pub teams: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawCheck {
    pub severity: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawSource {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub branch: Option<String>,
    pub exclude: Option<Vec<String>>,
    /// git: an SSH `allowed_signers` file to verify SSH signatures with.
    pub allowed_signers: Option<String>,
    /// git: an armored OpenPGP public keyring to verify GPG signatures with.
    pub gpg_keyring: Option<String>,
    /// github: the organization whose repositories are listed.
    pub org: Option<String>,
    /// github: repositories named one by one (`owner/name`).
    pub repos: Option<Vec<String>>,
    /// github: repository name patterns to take from the organization.
    pub include: Option<Vec<String>>,
    /// github: queries whose permission error is "not collected", not a
    /// failure.
    pub optional: Option<Vec<String>>,
    /// github: days an alert may stay open, by severity.
    pub sla: Option<RawSla>,
    /// jira: the site (else `JIRA_BASE_URL`).
    pub url: Option<String>,
    /// jira: evidence kind -> JQL.
    pub queries: Option<BTreeMap<String, String>>,
    /// jira: `cloud` or `data-center` (else told by the site and
    /// credentials).
    pub deployment: Option<String>,
    /// jira: what counts as an approval.
    pub approval: Option<RawApproval>,
    /// jira: incident resolution hours by severity.
    pub incident_sla: Option<RawIncidentSla>,
    /// gdrive: folder or shared-drive ids.
    pub folders: Option<Vec<String>>,
    /// gdrive: the media type Google Docs are exported as.
    pub export_as: Option<String>,
    /// gdrive: the API root (a proxy or a test server).
    pub api_url: Option<String>,
    /// gdrive: files larger than this are recorded without content.
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct RawApproval {
    pub kinds: Option<Vec<String>>,
    pub statuses: Option<Vec<String>>,
    pub fields: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawIncidentSla {
    pub kinds: Option<Vec<String>>,
    pub field: Option<String>,
    pub hours: Option<BTreeMap<String, u32>>,
}

impl RawSource {
    /// Whether `key` (a field of this struct, as written in YAML) is set.
    pub fn has(&self, key: &str) -> bool {
        match key {
            "path" => self.path.is_some(),
            "branch" => self.branch.is_some(),
            "exclude" => self.exclude.is_some(),
            "allowed_signers" => self.allowed_signers.is_some(),
            "gpg_keyring" => self.gpg_keyring.is_some(),
            "org" => self.org.is_some(),
            "repos" => self.repos.is_some(),
            "include" => self.include.is_some(),
            "optional" => self.optional.is_some(),
            "sla" => self.sla.is_some(),
            "url" => self.url.is_some(),
            "deployment" => self.deployment.is_some(),
            "queries" => self.queries.is_some(),
            "approval" => self.approval.is_some(),
            "incident_sla" => self.incident_sla.is_some(),
            "folders" => self.folders.is_some(),
            "export_as" => self.export_as.is_some(),
            "api_url" => self.api_url.is_some(),
            "max_bytes" => self.max_bytes.is_some(),
            _ => false,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawSla {
    pub critical: Option<u32>,
    pub high: Option<u32>,
    pub medium: Option<u32>,
    pub low: Option<u32>,
}

/// Parses configuration text into the raw form, within
/// [`Bounds::CONFIG`]; the error carries file:line:col. Unknown keys are
/// left for [`structure_problems`].
pub fn parse(file: &str, text: &str) -> Result<RawConfig, Problem> {
    parse_as(file, text)
}

/// Problems of the file's shape that parsing let through: keys the
/// configuration does not know (with a suggestion) and keys written twice
/// in one mapping (serde would keep the last without a word).
pub fn structure_problems(file: &str, locs: &Locations) -> Vec<Problem> {
    let mut out = Vec::new();
    for (segments, pos) in locs.keys() {
        let known = match segments {
            [_] => fields_of::<RawConfig>(),
            [s, _, _] if s == "sources" => fields_of::<RawSource>(),
            [c, _, _] if c == "checks" => fields_of::<RawCheck>(),
            [a, _] if a == "approvals" => fields_of::<RawApprovals>(),
            [a, b, _] if a == "approvals" && b == "approvers" => fields_of::<RawApprovers>(),
            [s, _, k, _] if s == "sources" && k == "sla" => fields_of::<RawSla>(),
            [s, _, k, _] if s == "sources" && k == "approval" => fields_of::<RawApproval>(),
            [s, _, k, _] if s == "sources" && k == "incident_sla" => fields_of::<RawIncidentSla>(),
            _ => continue,
        };
        let key = segments[segments.len() - 1].as_str();
        if known.contains(&key) {
            continue;
        }
        let parent = join_path(&segments[..segments.len() - 1]);
        let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        let mut message = format!(
            "unknown field `{key}`, expected one of {}",
            expected.join(", ")
        );
        if !parent.is_empty() {
            message = format!("{parent}: {message}");
        }
        out.push(Problem {
            file: file.into(),
            line: pos.line,
            col: pos.col,
            hint: unknown_field_hint(&message),
            message,
        });
    }
    for d in locs.duplicates() {
        out.push(Problem {
            file: file.into(),
            line: d.again.line,
            col: d.again.col,
            message: format!(
                "`{}` is written twice, on lines {} and {}",
                d.path, d.first.line, d.again.line
            ),
            hint: Some("YAML keeps only the last of the two: merge them or rename one".into()),
        });
    }
    out
}

/// Field names a derived `Deserialize` struct knows, as serde passes them
/// to the deserializer (renames applied): the one list of valid keys, so
/// a field added to a raw struct is known here without another edit.
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldsOf) {
        Err(Fields(f)) => f,
        Ok(_) => &[],
    }
}

/// A deserializer that only answers "which fields?".
struct FieldsOf;

#[derive(Debug)]
struct Fields(&'static [&'static str]);

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fields {:?}", self.0)
    }
}

impl std::error::Error for Fields {}

impl serde::de::Error for Fields {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Fields(&[])
    }
}

impl<'de> serde::Deserializer<'de> for FieldsOf {
    type Error = Fields;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
        Err(Fields(&[]))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A broken bound as a problem of `file`.
pub fn bound_problem(file: &str, e: &BoundError) -> Problem {
    let (line, col) = e.position().unwrap_or((1, 1));
    Problem {
        file: file.into(),
        line,
        col,
        message: e.to_string(),
        hint: Some(match e {
            BoundError::TooLarge { .. } => "split the file or remove what it does not need".into(),
            BoundError::TooManyAliasNodes { .. } => {
                "write the values out instead of repeating them through aliases (`*name`)".into()
            }
            _ => "cleartrail reads plain, shallow YAML; flatten the structure".into(),
        }),
    }
}

/// Parses YAML text into any raw type within [`Bounds::CONFIG`]; the
/// error carries file:line:col and, for a misspelt key, a suggestion.
pub fn parse_as<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, Problem> {
    parse_as_bounded(file, text, &Bounds::CONFIG)
}

/// [`parse_as`] within the given bounds.
pub fn parse_as_bounded<T: for<'de> Deserialize<'de>>(
    file: &str,
    text: &str,
    bounds: &Bounds,
) -> Result<T, Problem> {
    // A syntax error is left to serde_yaml, which reports it in the words
    // users already see; only a broken bound stops here.
    if let Err(e) = crate::yaml::check(text, bounds)
        && e.is_bound()
    {
        return Err(bound_problem(file, &e));
    }
    if text.trim().is_empty() {
        return Err(Problem {
            file: file.into(),
            line: 1,
            col: 1,
            message: "the configuration is empty".into(),
            hint: Some("start from `cleartrail init`, which writes a commented example".into()),
        });
    }
    serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let full = e.to_string();
        // serde_yaml appends " at line L column C"; the position is shown
        // in front instead.
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_string(),
            None => full,
        };
        let hint = unknown_field_hint(&message);
        Problem {
            file: file.into(),
            line,
            col,
            message,
            hint,
        }
    })
}

/// For "unknown field `x`, expected one of `a`, `b`", suggests the closest.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (field, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(field, c), *c))
        .min()?;
    if best.0 <= 2.max(field.len() / 3) {
        Some(format!("did you mean `{}`?", best.1))
    } else {
        Some(format!("valid keys here: {}", candidates.join(", ")))
    }
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn structure(text: &str) -> Vec<Problem> {
        parse("c.yml", text).unwrap();
        structure_problems("c.yml", &Locations::parse(text))
    }

    #[test]
    fn unknown_keys_are_reported_with_position_and_suggestion() {
        let text = "version: 1\nsources:\n  app:\n    type: git\n    pth: .\nchecks:\n  x:\n    sevrity: off\n";
        let p = structure(text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!((p[0].line, p[0].col), (5, 5), "{}", p[0]);
        assert!(
            p[0].message
                .starts_with("sources.app: unknown field `pth`, expected one of `type`, `path`"),
            "{}",
            p[0]
        );
        assert_eq!(p[0].hint.as_deref(), Some("did you mean `path`?"));
        assert_eq!((p[1].line, p[1].col), (8, 5));
        assert_eq!(p[1].hint.as_deref(), Some("did you mean `severity`?"));
        let top = structure("verison: 1\n");
        assert_eq!((top[0].line, top[0].col), (1, 1));
        assert!(top[0].message.starts_with("unknown field `verison`"));
        assert_eq!(top[0].hint.as_deref(), Some("did you mean `version`?"));
    }

    #[test]
    fn keys_written_twice_name_both_lines() {
        let p = structure("version: 1\nsources:\n  a:\n    type: git\n  a:\n    type: files\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].line, p[0].col), (5, 3));
        assert_eq!(
            p[0].message,
            "`sources.a` is written twice, on lines 3 and 5"
        );
    }

    #[test]
    fn fields_of_sees_renames() {
        assert_eq!(fields_of::<RawCheck>(), ["severity"]);
        assert!(fields_of::<RawSource>().contains(&"type"));
        assert!(fields_of::<RawConfig>().contains(&"out_of_scope"));
    }

    #[test]
    fn broken_bounds_are_problems_with_positions() {
        let deep = format!("version: 1\nperiod:\n{}x\n", "- ".repeat(10_000));
        let p = parse("c.yml", &deep).unwrap_err();
        assert_eq!(p.line, 3, "{p}");
        assert!(p.message.contains("nested deeper than 64 levels"), "{p}");
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
        let p = parse("c.yml", bomb).unwrap_err();
        assert_eq!(p.line, 4, "{p}");
        assert!(p.message.contains("aliases expand to more than"), "{p}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let p = parse("c.yml", "version: 1\nsources: [\n").unwrap_err();
        assert!(p.line >= 2, "{p}");
        let empty = parse("c.yml", "  \n").unwrap_err();
        assert!(empty.message.contains("empty"));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("pth", "path"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
