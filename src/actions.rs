//! The one place that knows the GitHub Actions environment: whether we run
//! in it, the job summary (`$GITHUB_STEP_SUMMARY`) and step outputs
//! (`$GITHUB_OUTPUT`). Annotations are rendered by [`crate::diag`]; this
//! module only decides where things go.

use anyhow::Context as _;
use std::io::Write as _;

/// Whether this process runs as a GitHub Actions step.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Appends to the file a workflow variable names (`GITHUB_STEP_SUMMARY`,
/// `GITHUB_OUTPUT`); nothing when it is not set.
fn append(var: &str, text: &str) -> anyhow::Result<()> {
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
}

/// Adds Markdown to the job summary.
pub fn append_summary(markdown: &str) -> anyhow::Result<()> {
    append("GITHUB_STEP_SUMMARY", markdown)
}

/// Sets step outputs. Values are single lines; a newline would start a
/// new output, so it is refused rather than written.
pub fn set_outputs(pairs: &[(&str, String)]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (k, v) in pairs {
        anyhow::ensure!(!v.contains('\n'), "output `{k}` would span lines");
        text.push_str(&format!("{k}={v}\n"));
    }
    append("GITHUB_OUTPUT", &text)
}
