//! The `files` source: a folder of documents, typically policies. Every
//! file is hashed and captured byte for byte; Markdown front matter (owner,
//! version, last_reviewed, approved_by, ...) is parsed into the artifact;
//! when the folder is inside a git repository, each file's last change
//! comes from the history (file system times are not evidence: a checkout
//! resets them).

use super::git::{UrlBase, last_changes};
use super::{Connector, ConnectorError, Page, PageRequest, Query, Skipped, blocking};
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

/// A file to collect: its path relative to the source root (with `/`),
/// and where to read it (the file itself, or the resolved target of a
/// link inside the root).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    rel: String,
    read_from: PathBuf,
}

/// What a listing found: the files to collect, sorted, and what it left
/// out on purpose, with the reason.
#[derive(Debug, Default)]
struct Listing {
    files: Vec<Entry>,
    skipped: Vec<Skipped>,
}

/// The source root, resolved once (it may be a link to a folder): an
/// ordinary folder, or an error naming it.
fn resolve_root(path: &Path) -> Result<PathBuf, ConnectorError> {
    let root = path.canonicalize().map_err(io_err(path))?;
    let refuse = |why: String| ConnectorError::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
    };
    if crate::yaml::system_root(&root).is_some() {
        return Err(refuse(format!(
            "resolves to {}, a system folder, not documents",
            root.display()
        )));
    }
    let meta = std::fs::metadata(&root).map_err(io_err(&root))?;
    if !meta.is_dir() {
        return Err(refuse(format!(
            "is {}, not a folder",
            crate::yaml::kind_of(&meta.file_type())
        )));
    }
    Ok(root)
}

/// Every file below `root` (already resolved), leaving out hidden entries
/// and the excluded paths, and skipping with a reason whatever must not or
/// cannot be read: links that leave the root, dangling or looping links,
/// links to folders, devices, FIFOs, sockets, and names that cannot be
/// stored. Nothing that is not a regular file is ever opened. An error
/// reading a folder fails the listing: a folder that cannot be read must
/// not pass for an empty one.
fn list_files(root: &Path, exclude: &[String]) -> Result<Listing, ConnectorError> {
    let mut out = Listing::default();
    let mut stack = vec![String::new()];
    let join = |rel: &str, name: &str| {
        if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        }
    };
    let skip = |out: &mut Listing, path: String, reason: &str| {
        out.skipped.push(Skipped {
            path,
            reason: reason.to_string(),
        })
    };
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .collect::<Result<_, _>>()
            .map_err(io_err(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let os_name = e.file_name();
            let Some(name) = os_name.to_str() else {
                // A lossy name would not open again, nor name one file.
                skip(
                    &mut out,
                    join(&rel, &os_name.to_string_lossy()),
                    "file name is not valid UTF-8; rename it to collect it",
                );
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let key = join(&rel, name);
            if exclude
                .iter()
                .any(|x| key == *x || key.starts_with(&format!("{}/", x.trim_end_matches('/'))))
            {
                continue;
            }
            if name.contains('\\') {
                skip(
                    &mut out,
                    key,
                    "file name contains a backslash, which other systems read as a folder separator; rename it to collect it",
                );
                continue;
            }
            // The entry itself, not what it points to.
            let ft = e.file_type().map_err(io_err(&e.path()))?;
            if ft.is_dir() {
                stack.push(key);
            } else if ft.is_file() {
                out.files.push(Entry {
                    read_from: root.join(&key),
                    rel: key,
                });
            } else if ft.is_symlink() {
                match resolve_link(root, &e.path())? {
                    Ok(target) => out.files.push(Entry {
                        rel: key,
                        read_from: target,
                    }),
                    Err(reason) => skip(&mut out, key, &reason),
                }
            } else {
                let reason = format!(
                    "{}, not a regular file: never opened",
                    crate::yaml::kind_of(&ft)
                );
                skip(&mut out, key, &reason);
            }
        }
    }
    out.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    out.skipped.sort();
    Ok(out)
}

/// Resolves a link once: `Ok(Ok(target))` for a regular file inside the
/// root, `Ok(Err(reason))` for a link to skip. Never opens the target. The
/// reasons name no absolute path: they are recorded in the evidence.
fn resolve_link(root: &Path, link: &Path) -> Result<Result<PathBuf, String>, ConnectorError> {
    let target = match std::fs::canonicalize(link) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(
                "dangling symbolic link: its target does not exist".into()
            ));
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Err("symbolic link loop: it never resolves to a file".into()));
        }
        Err(e) => return Err(io_err(link)(e)),
    };
    if let Some(sys) = crate::yaml::system_root(&target) {
        return Ok(Err(format!(
            "symbolic link into {sys}, the machine's own state, not a document: never read"
        )));
    }
    if !target.starts_with(root) {
        return Ok(Err(
            "symbolic link to a place outside the source folder: never read".into(),
        ));
    }
    let meta = std::fs::metadata(&target).map_err(io_err(link))?;
    if meta.is_dir() {
        return Ok(Err(
            "symbolic link to a folder: not followed (the folder's files are collected at their own path)"
                .into(),
        ));
    }
    if !meta.is_file() {
        return Ok(Err(format!(
            "symbolic link to {}, not a regular file: never opened",
            crate::yaml::kind_of(&meta.file_type())
        )));
    }
    Ok(Ok(target))
}

/// Reads a listed file. `Ok(None)` when it is gone (removed since the
/// listing: a true absence) or was swapped for something that is not a
/// regular file (with the reason); any other error fails the source,
/// naming the file, so that a read error never passes for a removal.
fn read_entry(
    root: &Path,
    entry: &Entry,
) -> Result<Result<Vec<u8>, Option<String>>, ConnectorError> {
    use crate::yaml::ReadError;
    use std::io::Read;
    let named = root.join(&entry.rel);
    let mut file = match crate::yaml::open_regular(&entry.read_from, false) {
        Ok(f) => f,
        Err(ReadError::NotFound) => return Ok(Err(None)),
        Err(ReadError::NotAFile(kind)) => {
            return Ok(Err(Some(format!(
                "became {kind} while collecting: never read"
            ))));
        }
        Err(ReadError::Io(e)) => return Err(io_err(&named)(e)),
        Err(other) => {
            return Err(ConnectorError::Io {
                path: named.display().to_string(),
                source: std::io::Error::other(other.to_string()),
            });
        }
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_err(&named))?;
    Ok(Ok(bytes))
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
    // Anyone who can commit to the folder writes this text: bound it
    // before yaml-rust2 builds a tree (it recurses per level and copies a
    // node per alias).
    match crate::yaml::check(&yaml, &crate::yaml::Bounds::FRONT_MATTER) {
        Ok(()) => {}
        Err(e) => {
            // The front matter starts on line 2 of the file.
            let line = e.position().map_or(2, |(l, _)| l + 1);
            return FrontMatter::Invalid(format!("line {line}: {e}"));
        }
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
    fn documents(&self, query: &Query) -> Result<(Vec<Artifact>, Vec<Skipped>), ConnectorError> {
        let root = resolve_root(&self.path)?;
        let Listing { files, mut skipped } = list_files(&root, &self.exclude)?;
        let git = find_repo(&root, &self.name);
        let repo_path = |rel: &str| match &git {
            Some(g) if !g.prefix.is_empty() => format!("{}/{rel}", g.prefix),
            _ => rel.to_string(),
        };
        let changes = match &git {
            Some(g) => match g.repo.head().ok().and_then(|h| h.peel_to_commit().ok()) {
                Some(tip) => {
                    let paths: Vec<String> = files.iter().map(|f| repo_path(&f.rel)).collect();
                    last_changes(&g.repo, tip.id(), &paths)?
                }
                None => Default::default(),
            },
            None => Default::default(),
        };
        let mut out = Vec::with_capacity(files.len());
        for entry in &files {
            let rel = &entry.rel;
            let bytes = match read_entry(&root, entry)? {
                Ok(b) => b,
                Err(None) => continue,
                Err(Some(reason)) => {
                    skipped.push(Skipped {
                        path: rel.clone(),
                        reason,
                    });
                    continue;
                }
            };
            let is_markdown = matches!(media_type(rel), "text/markdown");
            let text = is_markdown.then(|| String::from_utf8_lossy(&bytes).into_owned());
            let (fm, fm_error) = match text.as_deref().map(front_matter) {
                Some(FrontMatter::Parsed(v)) => (Some(v), None),
                Some(FrontMatter::Invalid(e)) => {
                    tracing::warn!("{}: {e}", root.join(rel).display());
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
                // Never a local path: the evidence must not change when
                // the folder moves, nor tell where a runner keeps it.
                _ => format!(
                    "local:{}/{}",
                    self.name,
                    rel.split('/')
                        .map(crate::artifact::path::escape_segment)
                        .collect::<Vec<_>>()
                        .join("/")
                ),
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
        skipped.sort();
        Ok((out, skipped))
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
        let (items, skipped) = blocking(move || this.documents(&q)).await?;
        Ok(Page {
            items,
            skipped,
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
        let listing = list_files(d.path(), &["drafts".to_string()]).unwrap();
        let rels: Vec<&str> = listing.files.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, ["a/y.md", "a/z.txt", "b.md"]);
        assert!(listing.skipped.is_empty());
    }

    fn skipped(l: &Listing) -> Vec<(&str, &str)> {
        l.skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect()
    }

    #[cfg(unix)]
    #[test]
    fn links_are_resolved_once_and_only_followed_inside_the_root() {
        use std::os::unix::fs::symlink;
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret.txt"), "outside").unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/real.md"), "inside").unwrap();
        symlink("sub/real.md", root.join("inside.md")).unwrap();
        symlink("../secret.txt", root.join("out.txt")).unwrap();
        symlink("/proc/self/environ", root.join("env.txt")).unwrap();
        symlink("nowhere", root.join("dangling.md")).unwrap();
        symlink("loop-b", root.join("loop-a")).unwrap();
        symlink("loop-a", root.join("loop-b")).unwrap();
        symlink("sub", root.join("folder-link")).unwrap();
        symlink(".", root.join("sub/self")).unwrap();
        let root = root.canonicalize().unwrap();
        let l = list_files(&root, &[]).unwrap();
        let rels: Vec<(&str, &Path)> = l
            .files
            .iter()
            .map(|e| (e.rel.as_str(), e.read_from.as_path()))
            .collect();
        let real = root.join("sub/real.md");
        assert_eq!(
            rels,
            [
                ("inside.md", real.as_path()),
                ("sub/real.md", real.as_path())
            ]
        );
        let s = skipped(&l);
        let paths: Vec<&str> = s.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            paths,
            [
                "dangling.md",
                "env.txt",
                "folder-link",
                "loop-a",
                "loop-b",
                "out.txt",
                "sub/self"
            ]
        );
        assert!(s[0].1.starts_with("dangling symbolic link"), "{s:?}");
        assert!(s[1].1.starts_with("symbolic link into /proc"), "{s:?}");
        assert!(s[2].1.starts_with("symbolic link to a folder"), "{s:?}");
        assert!(s[3].1.starts_with("symbolic link loop"), "{s:?}");
        assert!(s[5].1.contains("outside the source folder"), "{s:?}");
        // Nothing recorded names a place on this machine.
        let tmp = outer.path().to_string_lossy().into_owned();
        assert!(
            s.iter()
                .all(|(p, r)| !p.starts_with('/') && !r.contains(&tmp))
        );
    }

    #[cfg(unix)]
    #[test]
    fn fifos_and_sockets_are_skipped_without_being_opened() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe.md");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
        std::os::unix::fs::symlink("pipe.md", d.path().join("to-pipe.md")).unwrap();
        std::fs::write(d.path().join("ok.md"), "x").unwrap();
        // A FIFO opened for reading would block here until a writer came.
        let l = list_files(&d.path().canonicalize().unwrap(), &[]).unwrap();
        assert_eq!(l.files.len(), 1);
        assert_eq!(
            skipped(&l),
            [
                ("pipe.md", "a FIFO, not a regular file: never opened"),
                ("sock", "a socket, not a regular file: never opened"),
                (
                    "to-pipe.md",
                    "symbolic link to a FIFO, not a regular file: never opened"
                ),
            ]
        );
        // Swapped for a FIFO after listing: refused without blocking.
        let entry = Entry {
            rel: "pipe.md".into(),
            read_from: fifo,
        };
        match read_entry(d.path(), &entry).unwrap() {
            Err(Some(reason)) => assert!(reason.contains("a FIFO"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn unstorable_names_are_skipped_not_fatal() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(
            d.path()
                .join("a")
                .join(std::ffi::OsStr::from_bytes(b"caf\xe9.md")),
            "x",
        )
        .unwrap();
        std::fs::write(d.path().join("back\\slash.md"), "x").unwrap();
        std::fs::write(d.path().join("fine.md"), "x").unwrap();
        let l = list_files(d.path(), &[]).unwrap();
        assert_eq!(l.files.len(), 1);
        let s = skipped(&l);
        assert_eq!(s[0].0, "a/caf\u{fffd}.md");
        assert!(s[0].1.contains("not valid UTF-8"));
        assert_eq!(s[1].0, "back\\slash.md");
        assert!(s[1].1.contains("backslash"));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_that_cannot_be_read_fails_the_source_naming_it() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        // An error other than absence while opening (here ENOTDIR, which
        // any user gets) is an error of the source, not a skip.
        std::fs::write(d.path().join("plain.md"), "x").unwrap();
        let entry = Entry {
            rel: "plain.md".into(),
            read_from: d.path().join("plain.md/inner"),
        };
        let err = read_entry(d.path(), &entry).unwrap_err().to_string();
        assert!(err.contains("plain.md"), "{err}");
        assert!(err.contains("Not a directory"), "{err}");
        let f = d.path().join("locked.md");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::read(&f).is_ok() {
            // Running as root: permissions do not stop reads.
            return;
        }
        let src = FilesSource::new("docs".into(), d.path().into(), vec![]);
        let q = src.queries().remove(0);
        let err = src.documents(&q).unwrap_err().to_string();
        assert!(err.contains("locked.md"), "{err}");
        assert!(err.contains("ermission denied"), "{err}");
    }

    #[test]
    fn front_matter_that_breaks_a_bound_is_an_error_not_a_crash() {
        crate::yaml::in_child_process(
            "connectors::files::tests::front_matter_that_breaks_a_bound_is_an_error_not_a_crash",
            || {
                let deep = format!("---\ntitle: x\nlist:\n{}x\n---\n", "- ".repeat(10_000));
                match front_matter(&deep) {
                    FrontMatter::Invalid(e) => {
                        assert_eq!(e, "line 4: YAML nested deeper than 64 levels")
                    }
                    other => panic!("{other:?}"),
                }
                let mut bomb =
                    String::from("---\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
                for (n, p) in ('b'..='i').zip('a'..) {
                    bomb.push_str(&format!(
                        "{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                    ));
                }
                bomb.push_str("---\n");
                match front_matter(&bomb) {
                    FrontMatter::Invalid(e) => {
                        assert_eq!(e, "line 5: YAML aliases expand to more than 1000 nodes")
                    }
                    other => panic!("{other:?}"),
                }
                let big = format!("---\nbody: \"{}\"\n---\n", "x".repeat(70_000));
                match front_matter(&big) {
                    FrontMatter::Invalid(e) => {
                        assert!(e.contains("larger than the 65536 bytes"), "{e}")
                    }
                    other => panic!("{other:?}"),
                }
            },
        );
    }
}
