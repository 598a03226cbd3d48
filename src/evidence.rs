//! The evidence held on a branch, read back once as parsed artifacts, for
//! mapping, checks, gaps and packets. An optional change set overlays the
//! commit being prepared, so derived files describe exactly what the
//! commit will hold.
//!
//! Each artifact is read and parsed exactly once, its dates parsed once,
//! and the whole is indexed by (source, kind), so evaluation looks only at
//! the artifacts a selector can match.

use crate::artifact::{DateSpan, EVIDENCE_DIR};
use crate::store::{ChangeSet, Snapshot, StoreError};
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// One artifact as held: the fields evaluation reads, typed, and the
/// part of `content` that checks and selectors read (see [`Keep`]).
#[derive(Debug, Clone)]
pub struct Held {
    pub id: String,
    pub source: String,
    pub kind: String,
    /// Path of the artifact file in the repository.
    pub path: String,
    pub period: Option<DateSpan>,
    pub title: String,
    pub url: String,
    pub sha256: String,
    /// The month group of its shard (`-` when unsharded).
    pub group: String,
    /// The latest of the object's own timestamps (RFC 3339, UTC).
    pub latest: String,
    pub content: Value,
}

/// Which top-level `content` fields to keep in memory: those checks and
/// catalog selectors read. A change's message and trailers, its author and
/// committer, are read by nothing that evaluates, and keeping every field of
/// 100,000 artifacts as parsed JSON costs gigabytes.
#[derive(Debug, Clone, Default)]
pub enum Keep {
    /// Everything (small inputs, tests).
    #[default]
    All,
    Fields(std::collections::HashSet<String>),
}

impl Keep {
    fn retain(&self, content: &mut Value) {
        if let (Keep::Fields(keep), Value::Object(m)) = (self, content) {
            m.retain(|k, _| keep.contains(k));
        }
    }
}

impl Held {
    /// From a parsed artifact document.
    pub fn from_document(path: String, mut doc: Value, keep: &Keep) -> Option<Held> {
        let text = |doc: &Value, k: &str| doc[k].as_str().map(str::to_string);
        let mut content = doc["content"].take();
        keep.retain(&mut content);
        Some(Held {
            id: text(&doc, "id")?,
            source: text(&doc, "source")?,
            kind: text(&doc, "kind")?,
            period: DateSpan::from_json(&doc["period"]),
            title: text(&doc, "title").unwrap_or_default(),
            url: text(&doc, "url").unwrap_or_default(),
            sha256: text(&doc, "sha256").unwrap_or_default(),
            group: crate::artifact::group_of_shard(doc["shard"].as_str()),
            latest: doc["observed"]
                .as_object()
                .and_then(|m| m.values().filter_map(Value::as_str).max())
                .unwrap_or("")
                .to_string(),
            path,
            content,
        })
    }

    fn parse(path: String, bytes: &[u8], keep: &Keep) -> Option<Held> {
        Self::from_document(path, serde_json::from_slice(bytes).ok()?, keep)
    }

    /// The last day the artifact is evidence for.
    pub fn period_end(&self) -> Option<NaiveDate> {
        self.period.map(|p| p.end)
    }

    /// The first day the artifact is evidence for.
    pub fn period_start(&self) -> Option<NaiveDate> {
        self.period.map(|p| p.start)
    }

    pub fn content(&self) -> &Value {
        &self.content
    }

    /// Looks up a dotted path in `content`.
    pub fn field(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self.content(), |v, k| v.get(k))
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The latest of the object's own timestamps (RFC 3339 in UTC, so
    /// they order as strings), `""` when it has none.
    pub fn latest_observed(&self) -> &str {
        &self.latest
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Every parseable artifact, sorted by id, with an index by (source, kind).
#[derive(Debug, Default)]
pub struct Evidence {
    pub held: Vec<Held>,
    by_kind: HashMap<(String, String), Vec<usize>>,
    by_id: HashMap<String, usize>,
}

impl Evidence {
    pub fn new(mut held: Vec<Held>) -> Self {
        held.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_kind: HashMap<(String, String), Vec<usize>> = HashMap::new();
        let mut by_id = HashMap::with_capacity(held.len());
        for (i, h) in held.iter().enumerate() {
            by_kind
                .entry((h.source.clone(), h.kind.clone()))
                .or_default()
                .push(i);
            by_id.insert(h.id.clone(), i);
        }
        Evidence {
            held,
            by_kind,
            by_id,
        }
    }

    /// The artifacts of one source type and kind, in id order.
    pub fn of_kind<'a>(&'a self, source: &str, kind: &str) -> impl Iterator<Item = &'a Held> {
        self.by_kind
            .get(&(source.to_string(), kind.to_string()))
            .into_iter()
            .flatten()
            .map(|&i| &self.held[i])
    }

    pub fn get(&self, id: &str) -> Option<&Held> {
        self.by_id.get(id).map(|&i| &self.held[i])
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Held> {
        self.held.iter()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// Every parseable artifact under `evidence/`. Unparseable files are left
/// to `verify` to report.
pub fn load(
    snapshot: &Snapshot<'_>,
    overlay: Option<&ChangeSet>,
    keep: &Keep,
) -> Result<Evidence, StoreError> {
    let mut files: BTreeMap<String, Option<&[u8]>> = BTreeMap::new();
    let mut oids: HashMap<String, git2::Oid> = HashMap::new();
    for (path, oid) in snapshot.files_under(EVIDENCE_DIR)? {
        if path.ends_with(".json") {
            oids.insert(path.clone(), oid);
            files.insert(path, None);
        }
    }
    let prefix = format!("{EVIDENCE_DIR}/");
    if let Some(cs) = overlay {
        for (path, change) in cs.iter() {
            if !path.starts_with(&prefix) || !path.ends_with(".json") {
                continue;
            }
            match change {
                Some(bytes) => {
                    files.insert(path.clone(), Some(bytes.as_slice()));
                }
                None => {
                    files.remove(path);
                }
            }
        }
    }
    // Reading (inflating) and parsing is the cost; two threads, each with
    // its own handle on the repository, halve it on a 2-core runner.
    let files: Vec<(String, Option<&[u8]>)> = files.into_iter().collect();
    let half = files.len() / 2;
    let (first, second) = files.split_at(half);
    let git_dir = snapshot.git_dir().to_path_buf();
    let read_part = |part: &[(String, Option<&[u8]>)],
                     read: &dyn Fn(git2::Oid) -> Result<Vec<u8>, StoreError>|
     -> Result<Vec<Held>, StoreError> {
        let mut out = Vec::with_capacity(part.len());
        for (path, bytes) in part {
            let parsed = match bytes {
                Some(b) => Held::parse(path.clone(), b, keep),
                None => Held::parse(path.clone(), &read(oids[path])?, keep),
            };
            out.extend(parsed);
        }
        Ok(out)
    };
    let (a, b) = std::thread::scope(|scope| {
        let other = scope.spawn(|| -> Result<Vec<Held>, StoreError> {
            let repo = git2::Repository::open(&git_dir).map_err(|e| StoreError::Git {
                context: format!("opening {} on a reader thread", git_dir.display()),
                source: e,
            })?;
            read_part(second, &|oid| {
                repo.find_blob(oid)
                    .map(|b| b.content().to_vec())
                    .map_err(|e| StoreError::Git {
                        context: format!("reading blob {oid}"),
                        source: e,
                    })
            })
        });
        let mine = read_part(first, &|oid| snapshot.read_blob(oid));
        (mine, other.join().expect("reader thread panicked"))
    });
    let mut out = a?;
    out.extend(b?);
    Ok(Evidence::new(out))
}
