//! Findings: verify failures (and, later, failed checks and gaps) as
//! diagnostics with a stable code, a severity and a location, rendered as
//! text, JSON or GitHub workflow annotations by one printer.

pub mod codes;

use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A configured severity: a [`Severity`], or `off` to silence a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    On(Severity),
    Off,
}

impl std::str::FromStr for Level {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "error" => Level::On(Severity::Error),
            "warning" => Level::On(Severity::Warning),
            "note" => Level::On(Severity::Note),
            "off" => Level::Off,
            _ => return Err(()),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable kebab-case code.
    pub code: &'static str,
    pub severity: Severity,
    /// Path inside the evidence repository (or a file on disk).
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }
}

/// Output formats for findings and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
    /// GitHub workflow commands (`::error file=...::`), for annotations.
    Github,
}

/// Text: one line per finding, `severity[code]: path: message`.
pub fn render_text(diags: &[Diagnostic]) -> String {
    let mut s = String::new();
    for d in diags {
        let loc = match d.line {
            Some(l) => format!("{}:{l}", d.path),
            None => d.path.clone(),
        };
        let _ = writeln!(
            s,
            "{}[{}]: {loc}: {}",
            d.severity.as_str(),
            d.code,
            d.message
        );
    }
    s
}

pub fn render_markdown(diags: &[Diagnostic]) -> String {
    let mut s = String::from("| severity | code | path | message |\n|---|---|---|---|\n");
    for d in diags {
        let _ = writeln!(
            s,
            "| {} | `{}` | `{}` | {} |",
            d.severity.as_str(),
            d.code,
            d.path,
            d.message.replace('|', "\\|")
        );
    }
    s
}

/// Escapes a value for a workflow command property or message.
fn gh_escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

pub fn render_github(diags: &[Diagnostic]) -> String {
    let mut s = String::new();
    for d in diags {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "notice",
        };
        let line = d.line.map(|l| format!(",line={l}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "::{level} file={}{line},title={}::{}",
            gh_escape(&d.path, true),
            gh_escape(d.code, true),
            gh_escape(&d.message, false)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_annotations_escape_properties_and_messages() {
        let d = Diagnostic {
            code: "artifact-hash-mismatch",
            severity: Severity::Error,
            path: "evidence/a,b:c.json".into(),
            line: Some(3),
            message: "50% off\nsecond line".into(),
        };
        assert_eq!(
            render_github(std::slice::from_ref(&d)),
            "::error file=evidence/a%2Cb%3Ac.json,line=3,title=artifact-hash-mismatch::50%25 off%0Asecond line\n"
        );
        assert_eq!(
            render_text(&[d]),
            "error[artifact-hash-mismatch]: evidence/a,b:c.json:3: 50% off\nsecond line\n"
        );
    }
}
