//! The evidence model: one normalized [`Artifact`] per source object, its
//! canonical file form, where it lives in the evidence repository, and the
//! [`CollectionRecord`] that proves what a collection returned.
//!
//! An artifact file is canonical JSON with the fields `schema`, `id`,
//! `source`, `kind`, `object_id`, `url`, `title`, `period`, `observed`,
//! `content`, `query` and `sha256` (SHA-256 of the compact canonical form of
//! `content`). Nothing volatile (no collection time) is ever written, so the
//! same source state gives byte-identical files.

pub mod canonical;
pub mod path;

use chrono::NaiveDate;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub const ARTIFACT_SCHEMA: &str = "cleartrail.artifact/v1";
pub const COLLECTION_SCHEMA: &str = "cleartrail.collection/v1";
pub const TOMBSTONE_SCHEMA: &str = "cleartrail.tombstone/v1";

/// Top-level folders of the evidence repository layout.
pub const EVIDENCE_DIR: &str = "evidence";
pub const COLLECTIONS_DIR: &str = "collections";
pub const TOMBSTONES_DIR: &str = "tombstones";
pub const STATE_PATH: &str = ".cleartrail/state.json";

/// The span of time an artifact is evidence for (inclusive days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateSpan {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl DateSpan {
    pub fn day(d: NaiveDate) -> Self {
        DateSpan { start: d, end: d }
    }

    fn to_json(self) -> Value {
        json!({"start": self.start.to_string(), "end": self.end.to_string()})
    }
}

/// Bytes captured from a document source, stored beside the artifact JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
}

/// A normalized evidence item, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// The connector type: `git`, `files`, `github`, `jira`, `gdrive`.
    pub source: String,
    /// What kind of object: `commit`, `merge`, `tag`, `document`, ...
    pub kind: String,
    /// Unique within (source, kind); qualified by the configured source
    /// name for local sources (`app/<sha>`).
    pub object_id: String,
    pub url: String,
    pub title: String,
    pub period: Option<DateSpan>,
    /// The object's own timestamps (RFC 3339), never the collection time.
    pub observed: BTreeMap<String, String>,
    /// Normalized fields; must be deterministic for one source state.
    pub content: Value,
    /// Which configured query found it (`<source name>: <query>`).
    pub query: String,
    pub captured: Option<Captured>,
}

impl Artifact {
    pub fn id(&self) -> String {
        format!("{}:{}:{}", self.source, self.kind, self.object_id)
    }

    /// Folder of all artifacts of this source and kind.
    pub fn kind_dir(source: &str, kind: &str) -> String {
        format!(
            "{EVIDENCE_DIR}/{}/{}",
            path::escape_name(source),
            path::escape_name(kind)
        )
    }

    /// The escaped object path, without extension, relative to the repo.
    pub fn base_path(&self) -> String {
        format!(
            "{}/{}",
            Self::kind_dir(&self.source, &self.kind),
            path::escape_object_path(&self.object_id)
        )
    }

    /// Where the artifact JSON lives.
    pub fn json_path(&self) -> String {
        format!("{}.json", self.base_path())
    }

    /// Where captured bytes live (the object path itself, beside the JSON).
    pub fn captured_path(&self) -> Option<String> {
        self.captured.as_ref().map(|_| self.base_path())
    }

    /// The full `content` as written: the connector's fields plus, for
    /// documents, the captured file's name, size and SHA-256.
    pub fn full_content(&self) -> Value {
        let mut content = self.content.clone();
        if let Some(c) = &self.captured {
            let file = self
                .base_path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let meta = json!({
                "file": file,
                "sha256": canonical::sha256_hex(&c.bytes),
                "size": c.bytes.len(),
            });
            match &mut content {
                Value::Object(m) => {
                    m.insert("captured".into(), meta);
                }
                other => {
                    *other = json!({"value": other.clone(), "captured": meta});
                }
            }
        }
        content
    }

    /// The canonical JSON document and its `sha256`.
    pub fn to_document(&self) -> (Value, String) {
        let content = self.full_content();
        let sha = canonical::digest_value(&content);
        let observed: Map<String, Value> = self
            .observed
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let doc = json!({
            "schema": ARTIFACT_SCHEMA,
            "id": self.id(),
            "source": self.source,
            "kind": self.kind,
            "object_id": self.object_id,
            "url": self.url,
            "title": self.title,
            "period": self.period.map(DateSpan::to_json),
            "observed": observed,
            "content": content,
            "query": self.query,
            "sha256": sha,
        });
        (doc, sha)
    }

    /// The bytes of the artifact file.
    pub fn to_bytes(&self) -> (Vec<u8>, String) {
        let (doc, sha) = self.to_document();
        (canonical::to_pretty(&doc), sha)
    }
}

/// Digest over a set of artifacts: SHA-256 of the lines `<id> <sha256>\n`
/// sorted by id. The empty set has the digest of the empty string, so "no
/// results" is a checkable fact.
pub fn set_digest<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut lines: Vec<(&str, &str)> = entries.into_iter().collect();
    lines.sort_unstable();
    let mut buf = String::new();
    for (id, sha) in lines {
        buf.push_str(id);
        buf.push(' ');
        buf.push_str(sha);
        buf.push('\n');
    }
    canonical::sha256_hex(buf.as_bytes())
}

/// What one configured query returned during a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRecord {
    /// The configured source name.
    pub source_name: String,
    /// Human-readable description of the query.
    pub query: String,
    /// Filters applied (period, branch, ...), as strings.
    pub filters: BTreeMap<String, String>,
    pub pages: u64,
    pub count: u64,
    /// Digest over the (id, sha256) list this query returned.
    pub digest: String,
    /// What the query left out on purpose, as (path, reason).
    pub skipped: Vec<(String, String)>,
}

/// Completeness proof for one (source, kind): what was asked and what the
/// evidence branch holds for it after the collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRecord {
    pub source: String,
    pub kind: String,
    pub queries: Vec<QueryRecord>,
    /// Number of artifacts of this source and kind held on the branch.
    pub count: u64,
    /// [`set_digest`] over every artifact of this source and kind held.
    pub digest: String,
}

impl CollectionRecord {
    pub fn path(source: &str, kind: &str) -> String {
        format!(
            "{COLLECTIONS_DIR}/{}/{}.json",
            path::escape_name(source),
            path::escape_name(kind)
        )
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let queries: Vec<Value> = self
            .queries
            .iter()
            .map(|q| {
                json!({
                    "source_name": q.source_name,
                    "query": q.query,
                    "filters": q.filters,
                    "pages": q.pages,
                    "count": q.count,
                    "digest": q.digest,
                    "skipped": q.skipped.iter().map(|(p, r)| json!({"path": p, "reason": r})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = json!({
            "schema": COLLECTION_SCHEMA,
            "source": self.source,
            "kind": self.kind,
            "queries": queries,
            "count": self.count,
            "digest": self.digest,
            "digest_rule": "sha256 of the lines `<id> <sha256>\\n` of every artifact held, sorted by id",
        });
        canonical::to_pretty(&doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Artifact {
        Artifact {
            source: "files".into(),
            kind: "document".into(),
            object_id: "policies/access control.md".into(),
            url: "file:///x/access%20control.md".into(),
            title: "Access Control".into(),
            period: Some(DateSpan::day(NaiveDate::from_ymd_opt(2026, 3, 14).unwrap())),
            observed: BTreeMap::from([("modified".into(), "2026-03-14T10:00:00Z".into())]),
            content: json!({"front_matter": {"owner": "CISO"}}),
            query: "policies: files under policies".into(),
            captured: Some(Captured {
                bytes: b"# Access\n".to_vec(),
            }),
        }
    }

    #[test]
    fn layout_paths_follow_the_escaping_rule() {
        let a = sample();
        assert_eq!(a.id(), "files:document:policies/access control.md");
        assert_eq!(
            a.json_path(),
            "evidence/files/document/policies/access%20control.md.json"
        );
        assert_eq!(
            a.captured_path().as_deref(),
            Some("evidence/files/document/policies/access%20control.md")
        );
        assert_eq!(
            CollectionRecord::path("git", "commit"),
            "collections/git/commit.json"
        );
    }

    #[test]
    fn artifact_file_is_canonical_and_hash_covers_content() {
        let a = sample();
        let (bytes, sha) = a.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("}\n"));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["sha256"], sha);
        assert_eq!(canonical::digest_value(&doc["content"]), sha);
        assert_eq!(
            doc["content"]["captured"]["sha256"],
            canonical::sha256_hex(b"# Access\n")
        );
        assert_eq!(doc["content"]["captured"]["file"], "access%20control.md");
        // Re-serializing the parsed file gives the same bytes: the form is fixed.
        assert_eq!(canonical::to_pretty(&doc), bytes);
        // Same input, same bytes.
        assert_eq!(sample().to_bytes().0, bytes);
        // Keys come out sorted.
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn changing_content_changes_the_hash_but_not_the_id() {
        let a = sample();
        let mut b = sample();
        b.content = json!({"front_matter": {"owner": "CTO"}});
        assert_eq!(a.id(), b.id());
        assert_ne!(a.to_bytes().1, b.to_bytes().1);
    }

    #[test]
    fn set_digest_is_order_independent_and_empty_is_defined() {
        let d1 = set_digest([("b", "2"), ("a", "1")]);
        let d2 = set_digest([("a", "1"), ("b", "2")]);
        assert_eq!(d1, d2);
        assert_ne!(d1, set_digest([("a", "1")]));
        assert_eq!(set_digest(std::iter::empty()), canonical::sha256_hex(b""));
    }
}
