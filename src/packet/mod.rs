//! Packets and rendering: minijinja templates (shipped in the binary from `templates/`,
//! overridden file by file by the evidence repository's own `templates/`),
//! packets for auditors per framework and period with a manifest of every
//! file's SHA-256, and the error that names the template file and line.

use crate::artifact::canonical;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Built-in templates: (name, text). Names are paths under `templates/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("readme.md.j2", include_str!("../../templates/readme.md.j2")),
    (
        "control.md.j2",
        include_str!("../../templates/control.md.j2"),
    ),
    (
        "packet/index.md.j2",
        include_str!("../../templates/packet/index.md.j2"),
    ),
    (
        "packet/control.md.j2",
        include_str!("../../templates/packet/control.md.j2"),
    ),
];

pub const MANIFEST_SCHEMA: &str = "cleartrail.manifest/v1";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{file}:{line}: {message}")]
    Template {
        file: String,
        line: usize,
        message: String,
    },
    #[error("cannot read template {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The templates in use, each remembered with the file it came from.
pub struct Templates {
    env: Environment<'static>,
    origin: Vec<(String, String)>,
    /// SHA-256 over every template's name and text, in name order.
    fingerprint: String,
}

fn short(s: String) -> String {
    s.chars().take(12).collect()
}

/// A repository path as a Markdown link target: escaped paths contain
/// `%`, which a browser would decode, so it is itself escaped.
fn href(s: String) -> String {
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace('(', "%28")
        .replace(')', "%29")
}

/// Text safe inside a Markdown table cell.
fn cell(s: String) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

impl Templates {
    /// Built-ins, with any file of the same name under `dir` taking over.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.add_filter("short", short);
        env.add_filter("href", href);
        env.add_filter("cell", cell);
        let mut origin = Vec::new();
        let mut all = String::new();
        for (name, text) in BUILTIN {
            let (file, text) = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(p) => {
                    let t = crate::yaml::read_text(&p).map_err(|source| TemplateError::Read {
                        path: p.display().to_string(),
                        source,
                    })?;
                    (p.display().to_string(), t)
                }
                None => (format!("templates/{name} (built in)"), text.to_string()),
            };
            origin.push((name.to_string(), file.clone()));
            all.push_str(&format!("{name}\n{}\n{text}\n", text.len()));
            env.add_template_owned(name.to_string(), text)
                .map_err(|e| Self::error(&origin, e))?;
        }
        Ok(Templates {
            env,
            origin,
            fingerprint: canonical::sha256_hex(all.as_bytes()),
        })
    }

    /// Changes whenever any template in effect changes.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn error(origin: &[(String, String)], e: minijinja::Error) -> TemplateError {
        let name = e.name().unwrap_or("?").to_string();
        let file = origin
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or(name);
        let mut message = e.kind().to_string();
        if let Some(d) = e.detail() {
            message.push_str(": ");
            message.push_str(d);
        }
        TemplateError::Template {
            file,
            line: e.line().unwrap_or(0),
            message,
        }
    }

    pub fn render<T: Serialize>(&self, name: &str, ctx: &T) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| Self::error(&self.origin, e))?;
        let mut out = tmpl
            .render(Serde(ctx))
            .map_err(|e| Self::error(&self.origin, e))?;
        if !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }
}

/// One rendered file of a packet.
#[derive(Debug, Clone)]
pub struct PacketFile {
    /// Relative to the packet folder.
    pub path: String,
    pub bytes: Vec<u8>,
}

#[derive(Serialize)]
struct ManifestEntry<'a> {
    path: &'a str,
    sha256: String,
    size: usize,
}

/// `manifest.json`: every packet file with its SHA-256 and the evidence
/// commit it was rendered from.
pub fn manifest(files: &[PacketFile], period: &str, commit: &str, as_of: &str) -> PacketFile {
    let entries: Vec<ManifestEntry<'_>> = files
        .iter()
        .map(|f| ManifestEntry {
            path: &f.path,
            sha256: canonical::sha256_hex(&f.bytes),
            size: f.bytes.len(),
        })
        .collect();
    let doc = serde_json::json!({
        "schema": MANIFEST_SCHEMA,
        "period": period,
        "evidence_commit": commit,
        "as_of": as_of,
        "files": canonical::value_of(&entries),
    });
    PacketFile {
        path: "manifest.json".into(),
        bytes: canonical::to_pretty(&doc),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    #[error(
        "{0} is not empty and holds no packet (no manifest.json): choose an empty folder, so the packet's manifest lists exactly what the folder holds"
    )]
    NotAPacket(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Makes `dir` ready for a packet: absent or empty is fine; a folder with a
/// previous packet loses that packet's files (those its manifest lists, and
/// the manifest), so no file of an older packet is left behind unlisted;
/// anything else is refused.
pub fn clear_previous(dir: &Path) -> Result<(), OutDirError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| OutDirError::Io { path, source }
    };
    let mut entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    if entries.next().is_none() {
        return Ok(());
    }
    let manifest = dir.join("manifest.json");
    let listed: Vec<String> = std::fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter(|v| v["schema"] == MANIFEST_SCHEMA)
        .and_then(|v| {
            v["files"].as_array().map(|fs| {
                fs.iter()
                    .filter_map(|f| f["path"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .ok_or_else(|| OutDirError::NotAPacket(dir.display().to_string()))?;
    for rel in listed {
        // Only plain relative paths inside the folder.
        if rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            continue;
        }
        let p = dir.join(&rel);
        match std::fs::remove_file(&p) {
            Ok(()) => {
                // Folders the packet made, once empty.
                let mut parent = p.parent();
                while let Some(d) = parent.filter(|d| *d != dir) {
                    if std::fs::remove_dir(d).is_err() {
                        break;
                    }
                    parent = d.parent();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    std::fs::remove_file(&manifest).map_err(io(&manifest))
}

/// Writes packet files under `dir`, creating folders.
pub fn write_to(dir: &Path, files: &[PacketFile]) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for f in files {
        let p = dir.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &f.bytes)?;
        written.push(p);
    }
    Ok(written)
}

#[derive(Serialize)]
struct PacketIndexContext<'a> {
    framework: &'a crate::controls::evaluate::FrameworkStatus,
    period: &'a str,
    evidence_commit: &'a str,
    as_of: String,
}

#[derive(Serialize)]
struct PacketControlContext<'a> {
    control: &'a crate::controls::evaluate::ControlStatus,
    framework_title: &'a str,
    period: &'a str,
    evidence_commit: &'a str,
    as_of: String,
}

/// Renders packets for the evaluated frameworks (optionally one control),
/// plus the manifest. Paths are relative to the packet folder.
pub fn packet_files(
    audit: &crate::audit::Audit,
    templates: &Templates,
    period: &crate::period::Period,
    as_of: chrono::NaiveDate,
    commit: &str,
    only_control: Option<&str>,
) -> Result<Vec<PacketFile>, TemplateError> {
    let mut files = Vec::new();
    let label = period.label();
    for fs in &audit.statuses {
        let dir = crate::artifact::path::escape_name(&fs.framework);
        if only_control.is_none() {
            let index = templates.render(
                "packet/index.md.j2",
                &PacketIndexContext {
                    framework: fs,
                    period: label,
                    evidence_commit: commit,
                    as_of: as_of.to_string(),
                },
            )?;
            files.push(PacketFile {
                path: format!("{dir}/index.md"),
                bytes: index.into_bytes(),
            });
        }
        for c in fs
            .controls
            .iter()
            .filter(|c| only_control.is_none_or(|id| id == c.id))
        {
            let page = templates.render(
                "packet/control.md.j2",
                &PacketControlContext {
                    control: c,
                    framework_title: &fs.title,
                    period: label,
                    evidence_commit: commit,
                    as_of: as_of.to_string(),
                },
            )?;
            files.push(PacketFile {
                path: format!("{dir}/controls/{}", c.file),
                bytes: page.into_bytes(),
            });
        }
    }
    let manifest = manifest(&files, label, commit, &as_of.to_string());
    files.push(manifest);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_override_names_its_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("packet")).unwrap();
        std::fs::write(
            d.path().join("packet/control.md.j2"),
            "# {{ control.title }}\n\n{% for x in %}\n",
        )
        .unwrap();
        let err = Templates::load(Some(d.path())).err().unwrap().to_string();
        assert!(
            err.contains("packet/control.md.j2:3: syntax error"),
            "{err}"
        );
    }

    #[test]
    fn links_and_cells_are_escaped() {
        assert_eq!(
            href("evidence/a%20b.md.json".into()),
            "evidence/a%2520b.md.json"
        );
        assert_eq!(cell("a | b\nc".into()), "a \\| b c");
    }

    #[test]
    fn an_undefined_variable_is_an_error_not_an_empty_string() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("readme.md.j2"),
            "line one\n{{ frameworks_typo }}\n",
        )
        .unwrap();
        let t = Templates::load(Some(d.path())).unwrap();
        let err = t
            .render("readme.md.j2", &serde_json::json!({"frameworks": []}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("readme.md.j2:2: undefined value"), "{err}");
    }
}
