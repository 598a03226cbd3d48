//! Phase one: the configuration exactly as written, rejecting unknown keys.

use super::Problem;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub severity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

/// Parses YAML text into the raw form; the error carries file:line:col.
pub fn parse(file: &str, text: &str) -> Result<RawConfig, Problem> {
    parse_as(file, text)
}

/// Parses YAML text into any raw type that rejects unknown fields; the
/// error carries file:line:col and, for a misspelt key, a suggestion.
pub fn parse_as<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, Problem> {
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

    #[test]
    fn unknown_keys_are_rejected_with_position_and_suggestion() {
        let text = "version: 1\nsources:\n  app:\n    type: git\n    pth: .\n";
        let p = parse("c.yml", text).unwrap_err();
        assert_eq!((p.line, p.col), (5, 5), "{p}");
        assert!(p.message.contains("unknown field `pth`"), "{p}");
        assert_eq!(p.hint.as_deref(), Some("did you mean `path`?"));
        let top = parse("c.yml", "verison: 1\n").unwrap_err();
        assert_eq!((top.line, top.col), (1, 1));
        assert_eq!(top.hint.as_deref(), Some("did you mean `version`?"));
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
