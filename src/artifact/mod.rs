//! The evidence model: one normalized [`Artifact`] per source object, its
//! canonical file form, where it lives in the evidence repository, and the
//! [`CollectionRecord`] that proves what a collection returned.
//!
//! An artifact file (schema `cleartrail.artifact/v2`) is JSON with the
//! fields `schema`, `id`, `source`, `kind`, `object_id`, `url`, `title`,
//! `period`, `observed`, `content`, `query`, `shard` and `sha256`. The
//! `sha256` is the SHA-256 of the RFC 8785 (JSON Canonicalization Scheme)
//! form of the whole document without the `sha256` field itself, so no
//! field (a period, a URL, a timestamp) can be edited without changing it.
//! Nothing volatile (no collection time) is ever written, so the same
//! source state gives byte-identical files.

pub mod canonical;
pub mod path;

use chrono::NaiveDate;
use serde_json::{Map, Value, json};
use sha2::Digest;
use std::collections::BTreeMap;

pub const ARTIFACT_SCHEMA: &str = "cleartrail.artifact/v2";
pub const COLLECTION_SCHEMA: &str = "cleartrail.collection/v2";
pub const TOMBSTONE_SCHEMA: &str = "cleartrail.tombstone/v1";

/// Top-level folders of the evidence repository layout.
pub const EVIDENCE_DIR: &str = "evidence";
pub const COLLECTIONS_DIR: &str = "collections";
pub const TOMBSTONES_DIR: &str = "tombstones";
pub const STATE_PATH: &str = ".cleartrail/state.json";
/// Top-level folders ClearTrail alone writes on the evidence branch.
pub const OWNED_FOLDERS: &[&str] = &[
    EVIDENCE_DIR,
    COLLECTIONS_DIR,
    TOMBSTONES_DIR,
    "checks",
    "mappings",
    "listings",
    "packets",
    ".cleartrail",
];

/// The layout version of the evidence branch (see [`LAYOUT_VERSION`]).
pub const LAYOUT_PATH: &str = ".cleartrail/layout.json";
/// Version 2: artifacts of period-scoped queries are sharded by month and
/// bucket (`<kind dir>/<yyyy-mm>/<bucket>/<object path>.json`); digests
/// cover the whole artifact (RFC 8785).
pub const LAYOUT_VERSION: u32 = 2;

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

    pub fn to_json(self) -> Value {
        json!({"start": self.start.to_string(), "end": self.end.to_string()})
    }

    /// Reads `{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}`.
    pub fn from_json(v: &Value) -> Option<Self> {
        Self::parse(v["start"].as_str()?, v["end"].as_str()?)
    }

    /// A span from its two days as written, `YYYY-MM-DD` each.
    pub fn parse(start: &str, end: &str) -> Option<Self> {
        Some(DateSpan {
            start: parse_day(start)?,
            end: parse_day(end)?,
        })
    }
}

/// An artifact's `period` as its file writes it, borrowed from the file's
/// text by readers that deserialize artifacts without a `Value` tree.
#[derive(serde::Deserialize)]
pub struct PeriodText<'a> {
    #[serde(borrow)]
    pub start: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub end: std::borrow::Cow<'a, str>,
}

impl PeriodText<'_> {
    /// The span, when both days are well formed.
    pub fn span(&self) -> Option<DateSpan> {
        DateSpan::parse(&self.start, &self.end)
    }
}

/// A day exactly as artifacts write it, `YYYY-MM-DD`; anything else is
/// `None`. Readers of 200,000 artifacts parse two days each, and chrono's
/// format-string parser cost more than the rest of reading a period.
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
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
    /// Which configured query found it (`<source name>/<query id>`),
    /// stamped by the driver.
    pub query: String,
    /// The shard folder (`<yyyy-mm>/<bucket>`) for objects of a
    /// period-scoped query, stamped by the driver; `None` keeps the object
    /// path directly under the kind folder.
    pub shard: Option<String>,
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
        Self::base_path_of(
            &self.source,
            &self.kind,
            self.shard.as_deref(),
            &self.object_id,
        )
    }

    /// Where an artifact with these fields lives (without extension): the
    /// one rule that writers and `verify` share.
    pub fn base_path_of(source: &str, kind: &str, shard: Option<&str>, object_id: &str) -> String {
        Self::base_path_in(&Self::kind_dir(source, kind), shard, object_id)
    }

    /// [`Artifact::base_path_of`] below a [`Artifact::kind_dir`] already
    /// made (`verify` makes it once per source and kind).
    pub fn base_path_in(kind_dir: &str, shard: Option<&str>, object_id: &str) -> String {
        let obj = path::escape_object_path(object_id);
        match shard {
            Some(s) => format!("{kind_dir}/{s}/{obj}"),
            None => format!("{kind_dir}/{obj}"),
        }
    }

    /// Stamps the month-and-bucket shard from the period start (objects
    /// without a period stay unsharded).
    pub fn stamp_shard(&mut self) {
        self.shard = self
            .period
            .map(|p| path::month_shard(p.start, &self.object_id));
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

    /// The JSON document and its `sha256` (over every other field), as
    /// bytes.
    pub fn to_document(&self) -> (Value, [u8; 32]) {
        let content = self.full_content();
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
            "shard": self.shard,
        });
        let sha = canonical::document_digest_bytes(&doc);
        let mut doc = doc;
        doc["sha256"] = Value::String(canonical::hex(&sha));
        (doc, sha)
    }

    /// The bytes of the artifact file, and its digest.
    pub fn to_bytes(&self) -> (Vec<u8>, [u8; 32]) {
        let (doc, sha) = self.to_document();
        (canonical::to_pretty(&doc), sha)
    }
}

/// Digest over a set of artifacts: SHA-256 of the lines `<id> <sha256>\n`
/// sorted by id. The empty set has the digest of the empty string, so "no
/// results" is a checkable fact. Collection records keep one such digest
/// per month group ([`group_of_shard`]) and a digest over the groups
/// ([`groups_digest`]), so a run re-reads only the months that changed.
pub fn set_digest<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut lines: Vec<(&str, &str)> = entries.into_iter().collect();
    lines.sort_unstable();
    // Hashed as it goes, through a small buffer: the text of 100,000
    // lines is never built, and the hasher is not called four times a line.
    let mut hasher = sha2::Sha256::new();
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    for (id, sha) in lines {
        if buf.len() + id.len() + sha.len() + 2 > buf.capacity() {
            hasher.update(&buf);
            buf.clear();
        }
        buf.extend_from_slice(id.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(sha.as_bytes());
        buf.push(b'\n');
    }
    hasher.update(&buf);
    canonical::hex(&hasher.finalize())
}

/// The group (month) of a shard, `-` for unsharded artifacts.
pub fn group_of_shard(shard: Option<&str>) -> String {
    match shard {
        Some(s) => s.split('/').next().unwrap_or(s).to_string(),
        None => "-".to_string(),
    }
}

/// One group of a collection: how many artifacts, and their [`set_digest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDigest {
    pub count: u64,
    pub digest: String,
}

/// SHA-256 of the lines `<group> <count> <digest>\n`, sorted by group.
pub fn groups_digest(groups: &BTreeMap<String, GroupDigest>) -> String {
    let mut buf = String::new();
    for (g, d) in groups {
        buf.push_str(&format!("{g} {} {}\n", d.count, d.digest));
    }
    canonical::sha256_hex(buf.as_bytes())
}

/// What one configured query returned during a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRecord {
    /// The configured source name.
    pub source_name: String,
    /// The query's id within its connector (`history`, `documents`).
    pub query_id: String,
    /// The run's period, for a period-scoped query: the objects it asked
    /// about are those dated in it.
    pub period: Option<DateSpan>,
    /// Human-readable description of the query.
    pub query: String,
    /// `complete` or `incremental` (what the last answer covered).
    pub outcome: String,
    /// For an incremental answer: the saved state it started from.
    pub since: Option<String>,
    /// The state the query saved for the next run (also in
    /// `.cleartrail/state.json`, which is trusted only when it agrees).
    pub state: Option<String>,
    /// Per month group: everything this query has found that is held (in
    /// its period), whether its last answer was complete or incremental.
    pub groups: BTreeMap<String, GroupDigest>,
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
    /// Per month group: the artifacts of this source and kind held.
    pub groups: BTreeMap<String, GroupDigest>,
    /// The tombstones of this source and kind: how many, and [`set_digest`]
    /// over their `<id> <last_sha256>` lines, so a deleted tombstone (an
    /// object's disappearance erased) is noticed.
    pub tombstones: GroupDigest,
}

impl CollectionRecord {
    /// Number of artifacts of this source and kind held on the branch.
    pub fn count(&self) -> u64 {
        self.groups.values().map(|g| g.count).sum()
    }

    /// [`groups_digest`] over every group held.
    pub fn digest(&self) -> String {
        groups_digest(&self.groups)
    }
}

/// How collection digests are computed, written into every record.
pub const DIGEST_RULE: &str = "groups: per month of the shard (`-` when unsharded), sha256 of the lines `<id> <sha256>\\n` of every artifact held in it, sorted by id; digest: sha256 of the lines `<group> <count> <digest>\\n` sorted by group; a query's digest: sha256 of the lines `<id> <sha256>\\n` of what it returned";

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
                    "query_id": q.query_id,
                    "period": q.period.map(DateSpan::to_json),
                    "query": q.query,
                    "outcome": q.outcome,
                    "since": q.since,
                    "state": q.state,
                    "groups": q.groups.iter().map(|(g, d)| (g.clone(), json!({"count": d.count, "digest": d.digest}))).collect::<Map<String, Value>>(),
                    "filters": q.filters,
                    "pages": q.pages,
                    "count": q.count,
                    "digest": q.digest,
                    "skipped": q.skipped.iter().map(|(p, r)| json!({"path": p, "reason": r})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let groups: Map<String, Value> = self
            .groups
            .iter()
            .map(|(g, d)| (g.clone(), json!({"count": d.count, "digest": d.digest})))
            .collect();
        let doc = json!({
            "schema": COLLECTION_SCHEMA,
            "source": self.source,
            "kind": self.kind,
            "queries": queries,
            "groups": groups,
            "tombstones": {"count": self.tombstones.count, "digest": self.tombstones.digest},
            "count": self.count(),
            "digest": self.digest(),
            "digest_rule": DIGEST_RULE,
        });
        canonical::to_pretty(&doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    #[test]
    fn parse_day_reads_what_artifacts_write_and_nothing_else() {
        // Every day of a leap year and a common year, as `to_string` writes
        // them, reads back as itself and as chrono's own parser reads it.
        for year in [2024, 2025] {
            let mut d = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
            while d.year() == year {
                let s = d.to_string();
                assert_eq!(parse_day(&s), Some(d), "{s}");
                assert_eq!(NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok(), Some(d));
                d = d.succ_opt().unwrap();
            }
        }
        for bad in [
            "",
            "2025-02-29",
            "2025-13-01",
            "2025-00-10",
            "2025-1-04",
            "2025-01-4",
            "2025/01/04",
            "+2025-01-04",
            "2025-01-04 ",
            "２025-01-04",
            "2025-0a-04",
        ] {
            assert_eq!(parse_day(bad), None, "{bad:?}");
        }
    }

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
            query: "policies/documents".into(),
            shard: None,
            captured: Some(Captured {
                bytes: b"# Access\n".to_vec(),
            }),
        }
    }

    #[test]
    fn sharded_artifacts_live_under_month_and_bucket() {
        let mut a = sample();
        a.kind = "change".into();
        a.object_id = "app/ab12cd34ef".into();
        a.captured = None;
        a.stamp_shard();
        assert_eq!(a.shard.as_deref(), Some("2026-03/ab"));
        assert_eq!(
            a.json_path(),
            "evidence/files/change/2026-03/ab/app/ab12cd34ef.json"
        );
        assert_eq!(group_of_shard(a.shard.as_deref()), "2026-03");
        assert_eq!(group_of_shard(None), "-");
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
    fn artifact_file_is_canonical_and_hash_covers_the_whole_document() {
        let a = sample();
        let (bytes, sha) = a.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("}\n"));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["sha256"], canonical::hex(&sha));
        assert_eq!(canonical::document_digest(&doc), canonical::hex(&sha));
        // Every field but the digest is covered: moving the evidence into
        // another period, or editing any provenance, changes it.
        for (field, forged) in [
            (
                "period",
                json!({"start": "2025-01-01", "end": "2025-01-01"}),
            ),
            ("url", json!("https://elsewhere.example/x")),
            ("title", json!("Other")),
            ("observed", json!({"modified": "2020-01-01T00:00:00Z"})),
            ("query", json!("policies/other")),
            ("object_id", json!("policies/other.md")),
            ("shard", json!("2026-03/aa")),
            ("content", json!({})),
        ] {
            let mut d = doc.clone();
            d[field] = forged;
            assert_ne!(
                canonical::document_digest(&d),
                canonical::hex(&sha),
                "{field} is not covered"
            );
        }
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

    /// The digest is of the sorted lines' text, whatever the buffering:
    /// enough lines to fill the buffer many times, and one line longer
    /// than it.
    #[test]
    fn set_digest_is_the_digest_of_the_sorted_lines() {
        let long = "x".repeat(40_000);
        let mut owned: Vec<(String, String)> = (0..5_000)
            .map(|i| {
                (
                    format!("git:commit:app/{i:040}"),
                    format!("{:064x}", i * 7919),
                )
            })
            .collect();
        owned.push(("git:commit:app/long".to_string(), long));
        let mut text = String::new();
        let mut sorted = owned.clone();
        sorted.sort();
        for (id, sha) in &sorted {
            text.push_str(&format!("{id} {sha}\n"));
        }
        assert_eq!(
            set_digest(owned.iter().rev().map(|(a, b)| (a.as_str(), b.as_str()))),
            canonical::sha256_hex(text.as_bytes())
        );
    }
}
