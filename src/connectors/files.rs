//! The `files` source: a folder of documents, typically policies. Every
//! file is hashed and captured byte for byte; Markdown front matter (owner,
//! version, last_reviewed, approved_by, ...) is parsed into the artifact;
//! when the folder is inside a git repository, each file's last change
//! comes from the history (file system times are not evidence: a checkout
//! resets them).

use super::git::{UrlBase, last_changes};
use super::{Connector, ConnectorError, Page, PageRequest, Query, blocking};
use crate::artifact::{Artifact, Captured, DateSpan};
use async_trait::async_trait;
use chrono::NaiveDate;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml_rust2::Yaml;

pub struct FilesSource {
    name: String,
    path: PathBuf,
    exclude: Vec<String>,
}

impl FilesSource {
    pub fn new(name: String, path: PathBuf, exclude: Vec<String>) -> Self {
        FilesSource {
            name,
            path,
            exclude,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ConnectorError {
    let path = path.display().to_string();
    move |source| ConnectorError::Io { path, source }
}

/// Relative paths (with `/`) of every file below `root`, sorted, leaving out
/// hidden entries and the excluded paths.
fn list_files(root: &Path, exclude: &[String]) -> Result<Vec<String>, ConnectorError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .collect::<Result<_, _>>()
            .map_err(io_err(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                // A lossy name would not open again: say which file it is.
                return Err(ConnectorError::Io {
                    path: e.path().display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "file name is not valid UTF-8; rename it to collect it",
                    ),
                });
            };
            if name.starts_with('.') {
                continue;
            }
            let child = rel.join(&name);
            let key = child.to_string_lossy().replace('\\', "/");
            if exclude
                .iter()
                .any(|x| key == *x || key.starts_with(&format!("{}/", x.trim_end_matches('/'))))
            {
                continue;
            }
            let mut ft = e.file_type().map_err(io_err(&e.path()))?;
            if ft.is_symlink() {
                // A linked file is collected as what it points to; a linked
                // folder is not followed (it could loop), and says so.
                let target = std::fs::metadata(e.path()).map_err(io_err(&e.path()))?;
                if target.is_dir() {
                    tracing::warn!("{}: a link to a folder is not followed", e.path().display());
                    continue;
                }
                ft = target.file_type();
            }
            if ft.is_dir() {
                stack.push(child);
            } else if ft.is_file() {
                out.push(key);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The result of reading a document's front matter.
#[derive(Debug, PartialEq)]
pub enum FrontMatter {
    None,
    Parsed(Value),
    /// The problem, with the line in the file where it is.
    Invalid(String),
}

/// Parses YAML front matter (between a first line `---` and the next line
/// `---` or `...`) into JSON with sorted keys. Dates stay strings.
pub fn front_matter(text: &str) -> FrontMatter {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    match lines.next() {
        Some(first) if first.trim_end() == "---" => {}
        _ => return FrontMatter::None,
    }
    let mut yaml = String::new();
    let mut closed = false;
    for line in lines {
        let t = line.trim_end();
        if t == "---" || t == "..." {
            closed = true;
            break;
        }
        yaml.push_str(line);
    }
    if !closed {
        return FrontMatter::Invalid(
            "line 1: front matter opened with `---` is never closed".into(),
        );
    }
    match yaml_rust2::YamlLoader::load_from_str(&yaml) {
        Ok(docs) => match docs.into_iter().next() {
            None | Some(Yaml::Null) => FrontMatter::Parsed(json!({})),
            Some(h @ Yaml::Hash(_)) => FrontMatter::Parsed(yaml_to_json(h)),
            Some(_) => FrontMatter::Invalid(
                "line 2: front matter must be a mapping of keys to values".into(),
            ),
        },
        Err(e) => {
            // The front matter starts on line 2 of the file.
            FrontMatter::Invalid(format!("line {}: {}", e.marker().line() + 1, e.info()))
        }
    }
}

/// YAML to JSON, keeping every scalar as written where JSON would change
/// it: a version `2.10` stays the string "2.10", never the number 2.1.
fn yaml_to_json(y: Yaml) -> Value {
    match y {
        Yaml::Real(s) | Yaml::String(s) => Value::String(s),
        Yaml::Integer(i) => json!(i),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(a) => Value::Array(a.into_iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s,
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => "?".to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

fn media_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "md" | "markdown" => "text/markdown",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "yml" | "yaml" => "application/yaml",
        "pdf" => "application/pdf",
        "html" | "htm" => "text/html",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}

fn first_heading(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("# "))
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn date_field(fm: &Value, key: &str) -> Option<NaiveDate> {
    fm.get(key)?
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
}

/// The git context of a folder: the repository, its HEAD, and the folder's
/// path inside it.
struct InRepo {
    repo: git2::Repository,
    prefix: String,
    urls: UrlBase,
}

fn find_repo(folder: &Path, source: &str) -> Option<InRepo> {
    let repo = git2::Repository::discover(folder).ok()?;
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let rel = folder
        .canonicalize()
        .ok()?
        .strip_prefix(&workdir)
        .ok()?
        .to_path_buf();
    let prefix = rel.to_string_lossy().replace('\\', "/");
    let urls = UrlBase::of(&repo, source);
    Some(InRepo { repo, prefix, urls })
}

impl FilesSource {
    fn documents(&self, query: &Query) -> Result<Vec<Artifact>, ConnectorError> {
        let files = list_files(&self.path, &self.exclude)?;
        let git = find_repo(&self.path, &self.name);
        let repo_path = |rel: &str| match &git {
            Some(g) if !g.prefix.is_empty() => format!("{}/{rel}", g.prefix),
            _ => rel.to_string(),
        };
        let changes = match &git {
            Some(g) => match g.repo.head().ok().and_then(|h| h.peel_to_commit().ok()) {
                Some(tip) => {
                    let paths: Vec<String> = files.iter().map(|f| repo_path(f)).collect();
                    last_changes(&g.repo, tip.id(), &paths)?
                }
                None => Default::default(),
            },
            None => Default::default(),
        };
        let mut out = Vec::with_capacity(files.len());
        for rel in &files {
            let abs = self.path.join(rel);
            let bytes = std::fs::read(&abs).map_err(io_err(&abs))?;
            let is_markdown = matches!(media_type(rel), "text/markdown");
            let text = is_markdown.then(|| String::from_utf8_lossy(&bytes).into_owned());
            let (fm, fm_error) = match text.as_deref().map(front_matter) {
                Some(FrontMatter::Parsed(v)) => (Some(v), None),
                Some(FrontMatter::Invalid(e)) => {
                    tracing::warn!("{}: {e}", abs.display());
                    (None, Some(e))
                }
                _ => (None, None),
            };
            let change = changes.get(&repo_path(rel));
            let mut observed = BTreeMap::new();
            if let Some((_, t)) = change {
                observed.insert(
                    "last_changed".to_string(),
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
            }
            let reviewed = fm.as_ref().and_then(|v| date_field(v, "last_reviewed"));
            if let Some(d) = reviewed {
                observed.insert("last_reviewed".to_string(), d.to_string());
            }
            let period = reviewed
                .or_else(|| change.map(|(_, t)| t.date_naive()))
                .map(DateSpan::day);
            let title = fm
                .as_ref()
                .and_then(|v| v.get("title")?.as_str().map(str::to_string))
                .or_else(|| text.as_deref().and_then(first_heading))
                .unwrap_or_else(|| rel.rsplit('/').next().unwrap_or(rel).to_string());
            let url = match (&git, change) {
                (Some(g), Some((sha, _))) => g.urls.blob(sha, &repo_path(rel)),
                _ => {
                    let canon = abs.canonicalize().unwrap_or(abs.clone());
                    format!("file://{}", canon.display())
                }
            };
            let content = json!({
                "path": rel,
                "media_type": media_type(rel),
                "front_matter": fm,
                "front_matter_error": fm_error,
                "last_changed_commit": change.map(|(sha, _)| sha.clone()),
            });
            out.push(Artifact {
                source: "files".into(),
                kind: "document".into(),
                object_id: format!("{}/{rel}", self.name),
                url,
                title,
                period,
                observed,
                content,
                query: format!("{}: {}", self.name, query.description),
                shard: None,
                captured: Some(Captured { bytes }),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Connector for FilesSource {
    fn source_type(&self) -> &'static str {
        "files"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn queries(&self) -> Vec<Query> {
        let mut filters = BTreeMap::from([("hidden".to_string(), "skipped".to_string())]);
        if !self.exclude.is_empty() {
            filters.insert("exclude".into(), self.exclude.join(", "));
        }
        vec![Query {
            id: "documents".into(),
            kinds: vec!["document".into()],
            description: "every file in the folder".into(),
            filters,
            period_scoped: false,
        }]
    }

    async fn fetch(&self, query: &Query, _page: PageRequest) -> Result<Page, ConnectorError> {
        let this = FilesSource::new(self.name.clone(), self.path.clone(), self.exclude.clone());
        let q = query.clone();
        let items = blocking(move || this.documents(&q)).await?;
        Ok(Page {
            items,
            ..Page::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_is_parsed_with_sorted_keys() {
        let fm = front_matter(
            "---\ntitle: Access\nowner: CISO\nlast_reviewed: 2026-03-14\ntopics: [a, b]\n---\n# Body\n",
        );
        let FrontMatter::Parsed(v) = fm else {
            panic!("{fm:?}")
        };
        assert_eq!(v["owner"], "CISO");
        assert_eq!(v["last_reviewed"], "2026-03-14");
        assert_eq!(v["topics"], json!(["a", "b"]));
        assert_eq!(
            date_field(&v, "last_reviewed"),
            NaiveDate::from_ymd_opt(2026, 3, 14)
        );
    }

    #[test]
    fn scalars_keep_their_written_form() {
        let FrontMatter::Parsed(v) =
            front_matter("---\nversion: 2.10\nrev: 3\ndraft: false\n---\n")
        else {
            panic!()
        };
        assert_eq!(v, json!({"version": "2.10", "rev": 3, "draft": false}));
    }

    #[test]
    fn missing_and_broken_front_matter() {
        assert_eq!(front_matter("# Just a doc\n"), FrontMatter::None);
        assert_eq!(
            front_matter("---\n---\nbody"),
            FrontMatter::Parsed(json!({}))
        );
        match front_matter("---\ntitle: x\nowner: [unclosed\n---\n") {
            FrontMatter::Invalid(e) => assert!(e.starts_with("line "), "{e}"),
            other => panic!("{other:?}"),
        }
        match front_matter("---\ntitle: x\n") {
            FrontMatter::Invalid(e) => assert!(e.contains("never closed")),
            other => panic!("{other:?}"),
        }
        match front_matter("---\n- a list\n---\n") {
            FrontMatter::Invalid(e) => assert!(e.contains("mapping")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listing_skips_hidden_and_excluded_and_is_sorted() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "b.md",
            "a/z.txt",
            "a/y.md",
            ".hidden",
            "drafts/x.md",
            "a/.git/config",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let files = list_files(d.path(), &["drafts".to_string()]).unwrap();
        assert_eq!(files, ["a/y.md", "a/z.txt", "b.md"]);
    }
}
