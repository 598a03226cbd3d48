//! Offline verification of an evidence branch: every file the branch holds
//! is accounted for. Artifacts are re-hashed over the whole document (RFC
//! 8785), must sit at the path their id and shard map to, and captured
//! documents must match; collection records are recomputed per month group
//! and per query from the artifacts actually present; tombstones must be
//! well formed; derived files (check results, mappings, pages, README) must
//! match the digests their manifest records; any other file in a folder
//! ClearTrail owns is a stray. Each problem is a [`Diagnostic`] with a
//! stable code and the path; an unreadable object is a finding, not the
//! end of the run. Nothing here needs a network or a credential.

use crate::artifact::{
    ARTIFACT_SCHEMA, Artifact, COLLECTION_SCHEMA, COLLECTIONS_DIR, DateSpan, EVIDENCE_DIR,
    GroupDigest, LAYOUT_PATH, LAYOUT_VERSION, PeriodText, TOMBSTONE_SCHEMA, TOMBSTONES_DIR,
    canonical, group_of_shard, groups_digest, path, set_digest,
};
use crate::diag::Diagnostic;
use crate::store::{Chunks, ReadBlob, Snapshot, StoreError, file_position, folder_range};
use chrono::NaiveDate;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub use crate::diag::codes::VERIFY as CODES;

/// Where derived files record their digests.
pub const DERIVED_PATH: &str = ".cleartrail/derived.json";
pub const DERIVED_SCHEMA: &str = "cleartrail.derived/v1";

/// Top-level folders that ClearTrail writes; anything in them that no
/// record accounts for is a stray.
pub use crate::artifact::OWNED_FOLDERS;

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub commit: String,
    pub artifacts: u64,
    pub captured: u64,
    pub collections: u64,
    pub tombstones: u64,
    pub derived: u64,
    pub findings: Vec<Diagnostic>,
}

impl VerifyReport {
    fn finding(&mut self, code: &'static str, path: impl Into<String>, msg: impl Into<String>) {
        self.findings.push(Diagnostic::error(code, path, msg));
    }
}

/// The fields of an artifact file that verify reads, borrowed from its
/// bytes: parsing 200,000 artifacts into `Value` trees was a large part of
/// its time. Every field of the schema must be present (`period` and
/// `shard` may be null); the digest itself covers the whole document.
#[derive(serde::Deserialize)]
struct ArtifactView<'a> {
    #[serde(borrow)]
    schema: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    object_id: Cow<'a, str>,
    #[serde(rename = "url")]
    _url: IgnoredAny,
    #[serde(rename = "title")]
    _title: IgnoredAny,
    #[serde(borrow, deserialize_with = "nullable")]
    period: Option<PeriodText<'a>>,
    #[serde(rename = "observed")]
    _observed: IgnoredAny,
    #[serde(borrow)]
    content: &'a RawValue,
    #[serde(borrow)]
    query: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "nullable")]
    shard: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sha256: Cow<'a, str>,
}

/// A field that must be present but may be null (serde treats a missing
/// `Option` as `None` unless it is read through a function like this).
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// The message of an `object-unreadable` finding, with libgit2's reason
/// (a missing object, or content that does not hash to its id).
fn unreadable(e: StoreError) -> String {
    format!("cannot read its object: {:#}", anyhow::Error::new(e))
}

/// The files of the branch, sorted by path (the snapshot's own index):
/// a lookup is a binary search, a folder is one contiguous range, and a
/// file's position stands for it in [`Marks`]. Hashing 200,000 paths into
/// sets cost more than every lookup verify makes.
#[derive(Clone, Copy)]
struct Files<'a>(&'a [(Arc<str>, git2::Oid)]);

impl<'a> Files<'a> {
    fn find(self, path: &str) -> Option<usize> {
        file_position(self.0, path)
    }

    fn path(self, i: usize) -> &'a str {
        &self.0[i].0
    }

    fn oid(self, i: usize) -> git2::Oid {
        self.0[i].1
    }

    /// The positions of the files below `folder` (no trailing slash).
    fn folder(self, folder: &str) -> std::ops::Range<usize> {
        folder_range(self.0, |(p, _)| p, folder)
    }

    /// (position, path, blob id) of the files below `folder`.
    fn in_folder(self, folder: &str) -> impl Iterator<Item = (usize, &'a str, git2::Oid)> {
        self.folder(folder)
            .map(move |i| (i, self.path(i), self.oid(i)))
    }
}

/// A set of the branch's files, by position in [`Files`]: those a record
/// accounts for, or those a listing names.
struct Marks(Vec<bool>);

impl Marks {
    fn new(files: Files<'_>) -> Self {
        Marks(vec![false; files.0.len()])
    }

    fn mark(&mut self, i: usize) {
        self.0[i] = true;
    }

    fn has(&self, i: usize) -> bool {
        self.0[i]
    }

    fn extend(&mut self, other: &Marks) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= *b;
        }
    }
}

/// What artifacts of one source, kind and query have in common, made once
/// per thread rather than once per artifact.
struct Class {
    kind_dir: String,
    kind: Box<str>,
    query: Box<str>,
}

/// One thread's [`Class`]es, keyed by `source NUL kind NUL query`.
#[derive(Default)]
struct Classes {
    by_key: HashMap<String, Arc<Class>>,
    key: String,
}

impl Classes {
    fn get(&mut self, source: &str, kind: &str, query: &str) -> Arc<Class> {
        self.key.clear();
        for part in [source, "\0", kind, "\0", query] {
            self.key.push_str(part);
        }
        if let Some(c) = self.by_key.get(self.key.as_str()) {
            return c.clone();
        }
        let class = Arc::new(Class {
            kind_dir: Artifact::kind_dir(source, kind),
            kind: kind.into(),
            query: query.into(),
        });
        self.by_key.insert(self.key.clone(), class.clone());
        class
    }
}

/// What verify keeps of a sound artifact for the collection checks.
struct Seen {
    id: Box<str>,
    sha: Box<str>,
    class: Arc<Class>,
    group: Box<str>,
    start: Option<NaiveDate>,
}

/// Verifies every file of one commit.
pub fn verify(snapshot: &Snapshot<'_>, commit: &str) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        commit: commit.to_string(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let files = Files(snapshot.files_below("")?);
    tracing::debug!(
        "{} files listed in {:.2?}",
        files.0.len(),
        started.elapsed()
    );
    let mut accounted = Marks::new(files);
    let read = |report: &mut VerifyReport, p: &str, oid: git2::Oid| -> Option<Vec<u8>> {
        match snapshot.read_blob(oid) {
            Ok(b) => Some(b),
            Err(e) => {
                report.finding("object-unreadable", p, unreadable(e));
                None
            }
        }
    };

    // Layout version.
    match files.find(LAYOUT_PATH) {
        Some(i) => {
            accounted.mark(i);
            if let Some(b) = read(&mut report, LAYOUT_PATH, files.oid(i)) {
                let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                if v["version"].as_u64() != Some(u64::from(LAYOUT_VERSION)) {
                    report.finding(
                        "layout-unsupported",
                        LAYOUT_PATH,
                        format!(
                            "layout version {} is not the version this cleartrail reads ({LAYOUT_VERSION})",
                            v["version"]
                        ),
                    );
                }
            }
        }
        None if !files.folder(EVIDENCE_DIR).is_empty() => report.finding(
            "layout-unsupported",
            LAYOUT_PATH,
            "the branch holds evidence but no layout version file",
        ),
        None => {}
    }

    // Artifacts and captured documents: reading, parsing and hashing is
    // the cost, split over two threads with a repository handle each.
    let artifacts: Vec<usize> = files
        .folder(EVIDENCE_DIR)
        .filter(|&i| files.path(i).ends_with(".json"))
        .collect();
    // Two threads take chunks of the artifacts; results keep path order.
    const CHUNK: usize = 512;
    let chunks = Chunks::new(artifacts.len(), CHUNK);
    let work = |read: &ReadBlob<'_>| {
        let mut done: Vec<(usize, Vec<Checked>)> = Vec::new();
        let mut classes = Classes::default();
        while let Some(chunk) = chunks.take() {
            let start = chunk.start;
            done.push((
                start,
                artifacts[chunk]
                    .iter()
                    .map(|&i| {
                        check_artifact(files.path(i), files.oid(i), files, read, &mut classes)
                    })
                    .collect(),
            ));
        }
        done
    };
    // Derived files (listings above all) are read and hashed on a third
    // thread meanwhile: on two cores it fills the gaps of the other two.
    let derived_reader = snapshot.reader()?;
    let ([mine, other], (derived_accounted, derived_report, listed)) =
        std::thread::scope(|scope| -> Result<_, StoreError> {
            let derived_files = scope.spawn(move || {
                let mut accounted = Marks::new(files);
                let mut report = VerifyReport::default();
                let listed = derived(
                    &|o| derived_reader.read(o),
                    files,
                    &mut accounted,
                    &mut report,
                );
                (accounted, report, listed)
            });
            let artifacts_checked = snapshot.on_two_threads(work)?;
            Ok((
                artifacts_checked,
                derived_files.join().expect("verify thread panicked"),
            ))
        })?;
    accounted.extend(&derived_accounted);
    report.derived = derived_report.derived;
    report.findings.extend(derived_report.findings);
    let mut chunks = mine;
    chunks.extend(other);
    chunks.sort_unstable_by_key(|(start, _)| *start);
    let mut seen: Vec<Seen> = Vec::with_capacity(artifacts.len());
    for (&i, c) in artifacts
        .iter()
        .zip(chunks.into_iter().flat_map(|(_, c)| c))
    {
        report.artifacts += 1;
        accounted.mark(i);
        report.findings.extend(c.findings);
        if let Some(cp) = c.captured {
            report.captured += 1;
            accounted.mark(cp);
        }
        seen.extend(c.seen);
    }

    // In id order once, so that every set digest below (several per
    // record) sorts input that is sorted already, in linear time.
    seen.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    tracing::debug!(
        "{} artifacts checked at {:.2?}",
        seen.len(),
        started.elapsed()
    );
    collections(snapshot, files, &seen, &mut accounted, &mut report)?;
    tracing::debug!("collection records checked at {:.2?}", started.elapsed());
    tombstones(snapshot, files, &mut accounted, &mut report);
    // Every artifact must be listed: a listing is what an auditor browses,
    // and an artifact slipped in without a row would go unseen there.
    if let Some(listed) = listed {
        for &i in &artifacts {
            if !listed.has(i) {
                report.finding(
                    "artifact-unlisted",
                    files.path(i),
                    "no listing names this artifact: it was added outside cleartrail",
                );
            }
        }
    }
    tracing::debug!("derived files checked at {:.2?}", started.elapsed());
    packets(snapshot, files, &mut accounted, &mut report);

    // Whatever else sits in a folder ClearTrail owns was put there by hand.
    for (i, (p, _)) in files.0.iter().enumerate() {
        let top = p.split('/').next().unwrap_or_default();
        // Listing pages are a reviewer's aid `propose` commits when a pull
        // request's body cannot hold the change; they state no evidence.
        if OWNED_FOLDERS.contains(&top)
            && !accounted.has(i)
            && &**p != crate::artifact::STATE_PATH
            && !crate::propose::is_listing_page(p)
        {
            report.finding(
                "stray-file",
                &**p,
                "no record accounts for this file: it was added outside cleartrail",
            );
        }
    }
    tracing::debug!("every file accounted for at {:.2?}", started.elapsed());
    report
        .findings
        .sort_by(|a, b| (&a.path, a.code, &a.message).cmp(&(&b.path, b.code, &b.message)));
    Ok(report)
}

/// What checking one artifact found.
struct Checked {
    findings: Vec<Diagnostic>,
    /// The position of the captured document it names, when present.
    captured: Option<usize>,
    seen: Option<Seen>,
}

/// Checks one artifact file: readable, well formed, sealed, in place, and
/// its captured document intact.
fn check_artifact(
    p: &str,
    oid: git2::Oid,
    files: Files<'_>,
    read: &ReadBlob<'_>,
    classes: &mut Classes,
) -> Checked {
    let mut out = Checked {
        findings: Vec::new(),
        captured: None,
        seen: None,
    };
    let mut finding = |code: &'static str, path: &str, msg: String| {
        out.findings.push(Diagnostic::error(code, path, msg));
    };
    let bytes = match read(oid) {
        Ok(b) => b,
        Err(e) => {
            finding("object-unreadable", p, unreadable(e));
            return out;
        }
    };
    // Checked as text first: serde skips the fields it ignores without
    // checking their UTF-8, and the digest reads the text as it is.
    let Ok(text) = std::str::from_utf8(&bytes) else {
        finding("artifact-invalid", p, "not UTF-8 text".to_string());
        return out;
    };
    let doc: ArtifactView<'_> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            finding("artifact-invalid", p, format!("not a valid artifact: {e}"));
            return out;
        }
    };
    if doc.schema != ARTIFACT_SCHEMA {
        finding(
            "artifact-invalid",
            p,
            format!("unknown schema {:?}", doc.schema),
        );
        return out;
    }
    let actual = canonical::file_document_digest(text)
        .map(|d| canonical::hex(&d))
        .unwrap_or_default();
    if actual != doc.sha256 {
        finding(
            "artifact-hash-mismatch",
            p,
            format!(
                "the document hashes to {actual}, but it records {}: a field was edited",
                doc.sha256
            ),
        );
    }
    let (source, kind, object_id) = (&*doc.source, &*doc.kind, &*doc.object_id);
    let class = classes.get(source, kind, &doc.query);
    let id = &*doc.id;
    let period = doc.period.as_ref().and_then(PeriodText::span);
    let shard = doc.shard.as_deref();
    let at = |shard: Option<&str>| {
        format!(
            "{}.json",
            Artifact::base_path_in(&class.kind_dir, shard, object_id)
        )
    };
    // The shard a sharded artifact must have, from its own period: the
    // path it belongs at follows from that shard, not from the one it says.
    let due_shard = shard.map(|_| period.map(|s| path::month_shard(s.start, object_id)));
    let id_ok = id
        .strip_prefix(source)
        .and_then(|r| r.strip_prefix(':'))
        .and_then(|r| r.strip_prefix(kind))
        .and_then(|r| r.strip_prefix(':'))
        == Some(object_id);
    if !id_ok {
        finding(
            "artifact-misplaced",
            p,
            format!("its id `{id}` is not `{source}:{kind}:{object_id}`"),
        );
    } else if due_shard.as_ref().is_some_and(|d| d.as_deref() != shard) {
        let period_text =
            period.map_or_else(|| "none".to_string(), |s| format!("{}..{}", s.start, s.end));
        let due = due_shard.flatten();
        finding(
            "artifact-misplaced",
            p,
            format!(
                "its shard {} does not match its period {period_text} (shard {}): it belongs at {}",
                shard.unwrap_or("none"),
                due.as_deref().unwrap_or("none"),
                at(due.as_deref().or(shard)),
            ),
        );
    } else {
        let expected = at(shard);
        if expected != p {
            finding(
                "artifact-misplaced",
                p,
                format!("id `{id}` belongs at {expected}"),
            );
        }
    }
    // Only documents of a files source carry a `captured` member; the
    // rest of `content` is covered by the digest and needs no parse.
    let content = doc.content.get();
    let captured = content
        .contains("\"captured\"")
        .then(|| serde_json::from_str::<Value>(content).ok())
        .flatten();
    if let Some(cap) = captured
        .as_ref()
        .and_then(|c| c.get("captured"))
        .filter(|c| c.is_object())
    {
        let cpath = p.trim_end_matches(".json").to_string();
        let want = cap["sha256"].as_str().unwrap_or_default();
        match files.find(&cpath) {
            Some(ci) => {
                match read(files.oid(ci)) {
                    Ok(b) => {
                        let got = canonical::sha256_hex(&b);
                        if got != want {
                            finding(
                                "captured-hash-mismatch",
                                &cpath,
                                format!("bytes hash to {got}, but {p} records {want}"),
                            );
                        }
                    }
                    Err(e) => finding("object-unreadable", &cpath, unreadable(e)),
                }
                out.captured = Some(ci);
            }
            None => finding(
                "captured-missing",
                p,
                format!("captured document {cpath} is missing"),
            ),
        }
    }
    out.seen = Some(Seen {
        id: id.into(),
        sha: doc.sha256.into(),
        group: group_of_shard(shard).into(),
        class,
        start: period.map(|s| s.start),
    });
    out
}

/// Recomputes every collection record from the artifacts present.
fn collections(
    snapshot: &Snapshot<'_>,
    files: Files<'_>,
    seen: &[Seen],
    accounted: &mut Marks,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    // Both maps are built at once, and the records checked on two
    // threads: after the artifacts, this was the part of `verify` that ran
    // on one core. Each map is in id order, as `seen` is.
    let seen_by = std::thread::scope(|scope| {
        let by_query = scope.spawn(|| {
            let mut by_query: HashMap<(&str, &str, &str), Vec<&Seen>> = HashMap::new();
            for s in seen {
                by_query
                    .entry((&s.class.kind_dir, &s.class.kind, &s.class.query))
                    .or_default()
                    .push(s);
            }
            by_query
        });
        let mut held: BTreeMap<&str, BTreeMap<&str, Lines<'_>>> = BTreeMap::new();
        for s in seen {
            held.entry(s.class.kind_dir.as_str())
                .or_default()
                .entry(&s.group)
                .or_default()
                .push((&s.id, &s.sha));
        }
        SeenBy {
            held,
            by_query: by_query.join().expect("verify thread panicked"),
        }
    });
    let records: Vec<(usize, &str, git2::Oid)> = files.in_folder(COLLECTIONS_DIR).collect();
    for &(i, _, _) in &records {
        accounted.mark(i);
    }
    let chunks = Chunks::new(records.len(), 1);
    let parts = snapshot.on_two_threads(|read| {
        let mut report = VerifyReport::default();
        let mut recorded_dirs: BTreeSet<String> = BTreeSet::new();
        while let Some(chunk) = chunks.take() {
            for &(_, p, oid) in &records[chunk] {
                check_record(
                    p,
                    oid,
                    read,
                    files,
                    &seen_by,
                    &mut report,
                    &mut recorded_dirs,
                );
            }
        }
        (report, recorded_dirs)
    })?;
    let mut recorded_dirs = BTreeSet::new();
    for (part, dirs) in parts {
        report.collections += part.collections;
        report.findings.extend(part.findings);
        recorded_dirs.extend(dirs);
    }
    for (dir, groups) in &seen_by.held {
        if !recorded_dirs.contains(*dir) {
            report.finding(
                "collection-missing",
                *dir,
                format!(
                    "{} artifacts held without a collection record",
                    groups.values().map(Vec::len).sum::<usize>()
                ),
            );
        }
    }
    Ok(())
}

/// (id, sha256) lines of a set digest.
type Lines<'a> = Vec<(&'a str, &'a str)>;

/// What one thread needs to check a collection record: the artifacts
/// seen, by kind folder and month group, and by (kind folder, kind, query).
struct SeenBy<'a> {
    held: BTreeMap<&'a str, BTreeMap<&'a str, Lines<'a>>>,
    by_query: HashMap<(&'a str, &'a str, &'a str), Vec<&'a Seen>>,
}

/// Checks the collection record at `p` against the artifacts seen: its
/// own summary, every month group, its tombstones and each query's set.
/// The kind folder it records goes into `recorded_dirs`.
fn check_record(
    p: &str,
    oid: git2::Oid,
    read: &ReadBlob<'_>,
    files: Files<'_>,
    seen: &SeenBy<'_>,
    report: &mut VerifyReport,
    recorded_dirs: &mut BTreeSet<String>,
) {
    let (held, by_query) = (&seen.held, &seen.by_query);
    let no_groups = BTreeMap::new();
    let prefix = format!("{COLLECTIONS_DIR}/");
    let Some((src_dir, kind_dir)) = p
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(".json"))
        .and_then(|r| r.split_once('/'))
    else {
        report.finding("collection-invalid", p, "not a collection record path");
        return;
    };
    report.collections += 1;
    let dir = format!("{EVIDENCE_DIR}/{src_dir}/{kind_dir}");
    recorded_dirs.insert(dir.clone());
    let doc: Value = match read(oid) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(v) => v,
            Err(e) => {
                report.finding("collection-invalid", p, format!("not valid JSON: {e}"));
                return;
            }
        },
        Err(e) => {
            report.finding("object-unreadable", p, unreadable(e));
            return;
        }
    };
    if doc["schema"] != COLLECTION_SCHEMA {
        report.finding(
            "collection-invalid",
            p,
            format!("unknown schema {}", doc["schema"]),
        );
        return;
    }
    let (Some(digest), Some(count), Some(groups_doc), Some(queries)) = (
        doc["digest"].as_str(),
        doc["count"].as_u64(),
        doc["groups"].as_object(),
        doc["queries"].as_array(),
    ) else {
        report.finding(
            "collection-invalid",
            p,
            "missing `digest`, `count`, `groups` or `queries`",
        );
        return;
    };
    let recorded_groups: BTreeMap<String, GroupDigest> = groups_doc
        .iter()
        .map(|(g, d)| {
            (
                g.clone(),
                GroupDigest {
                    count: d["count"].as_u64().unwrap_or(u64::MAX),
                    digest: d["digest"].as_str().unwrap_or_default().to_string(),
                },
            )
        })
        .collect();
    if groups_digest(&recorded_groups) != digest
        || recorded_groups.values().map(|g| g.count).sum::<u64>() != count
    {
        report.finding(
            "collection-invalid",
            p,
            "its `digest`/`count` do not summarize its own `groups`",
        );
    }
    let present_groups = held.get(dir.as_str()).unwrap_or(&no_groups);
    let names: BTreeSet<&str> = recorded_groups
        .keys()
        .map(String::as_str)
        .chain(present_groups.keys().copied())
        .collect();
    for g in names {
        let lines: &[(&str, &str)] = present_groups.get(g).map_or(&[], Vec::as_slice);
        let actual = set_digest(lines.iter().copied());
        match recorded_groups.get(g) {
            Some(r) if r.digest == actual && r.count == lines.len() as u64 => {}
            Some(r) => {
                if r.count != lines.len() as u64 {
                    report.finding(
                        "collection-count-mismatch",
                        p,
                        format!(
                            "group {g}: {} artifacts under {dir}, the record says {}: an artifact was added or removed",
                            lines.len(),
                            r.count
                        ),
                    );
                }
                if r.digest != actual {
                    report.finding(
                        "collection-digest-mismatch",
                        p,
                        format!(
                            "group {g}: the artifacts under {dir} give digest {actual}, the record says {}: an artifact was removed, added or altered",
                            r.digest
                        ),
                    );
                }
            }
            None => report.finding(
                "collection-count-mismatch",
                p,
                format!(
                    "group {g}: {} artifacts under {dir} that the record does not list",
                    lines.len()
                ),
            ),
        }
    }
    // The tombstones it counts must all still be there: deleting one
    // would erase the record that an object disappeared.
    let tomb_dir = format!("{TOMBSTONES_DIR}/{src_dir}/{kind_dir}");
    let mut tomb_lines: Vec<(String, String)> = Vec::new();
    for (_, _, toid) in files.in_folder(&tomb_dir) {
        let v: Value = read(toid)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        tomb_lines.push((
            v["id"].as_str().unwrap_or_default().to_string(),
            v["last_sha256"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let tomb_digest = set_digest(tomb_lines.iter().map(|(i, s)| (i.as_str(), s.as_str())));
    if doc["tombstones"]["count"].as_u64() != Some(tomb_lines.len() as u64)
        || doc["tombstones"]["digest"].as_str() != Some(tomb_digest.as_str())
    {
        report.finding(
            "tombstone-missing",
            p,
            format!(
                "the record counts {} tombstones (digest {}), {tomb_dir}/ holds {} (digest {tomb_digest}): a tombstone was deleted, added or edited",
                doc["tombstones"]["count"],
                doc["tombstones"]["digest"],
                tomb_lines.len()
            ),
        );
    }
    // Each query's set (everything it found that is held, per month)
    // must still be there, exactly; a complete answer must also be
    // exactly what it returned.
    let kind = doc["kind"].as_str().unwrap_or_default();
    for q in queries {
        let label = format!(
            "{}/{}",
            q["source_name"].as_str().unwrap_or_default(),
            q["query_id"].as_str().unwrap_or_default()
        );
        let span = DateSpan::from_json(&q["period"]);
        let mine: Vec<&Seen> = by_query
            .get(&(dir.as_str(), kind, label.as_str()))
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .copied()
            .filter(|s| span.is_none_or(|sp| s.start.is_some_and(|d| sp.start <= d && d <= sp.end)))
            .collect();
        let mut by_group: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for s in &mine {
            by_group.entry(&s.group).or_default().push((&s.id, &s.sha));
        }
        let actual: serde_json::Map<String, Value> = by_group
            .iter()
            .map(|(g, ls)| {
                (
                    g.to_string(),
                    serde_json::json!({"count": ls.len(), "digest": set_digest(ls.iter().copied())}),
                )
            })
            .collect();
        let recorded = q["groups"].as_object().cloned().unwrap_or_default();
        if recorded != actual {
            let differ: Vec<&String> = recorded
                .keys()
                .chain(actual.keys())
                .filter(|g| recorded.get(*g) != actual.get(*g))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            report.finding(
                "collection-query-mismatch",
                p,
                format!(
                    "query `{label}`: what it found is no longer exactly on the branch in month group(s) {}",
                    differ.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        }
        if q["outcome"] == "complete" {
            let lines: Vec<(&str, &str)> = mine.iter().map(|s| (&*s.id, &*s.sha)).collect();
            let digest = set_digest(lines.iter().copied());
            if q["count"].as_u64() != Some(lines.len() as u64)
                || q["digest"].as_str() != Some(digest.as_str())
            {
                report.finding(
                    "collection-query-mismatch",
                    p,
                    format!(
                        "query `{label}` recorded {} results (digest {}), the branch holds {} of them (digest {digest})",
                        q["count"],
                        q["digest"],
                        lines.len()
                    ),
                );
            }
        }
    }
}

/// Tombstones must be well formed, sit where their artifact was, and not
/// contradict an artifact that is present.
fn tombstones(
    snapshot: &Snapshot<'_>,
    files: Files<'_>,
    accounted: &mut Marks,
    report: &mut VerifyReport,
) {
    let prefix = format!("{TOMBSTONES_DIR}/");
    for (i, p, oid) in files.in_folder(TOMBSTONES_DIR) {
        accounted.mark(i);
        report.tombstones += 1;
        let doc: Option<Value> = snapshot
            .read_blob(oid)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(doc) = doc.filter(|d| d["schema"] == TOMBSTONE_SCHEMA) else {
            report.finding(
                "tombstone-invalid",
                p,
                "not a readable tombstone (cleartrail.tombstone/v1)",
            );
            continue;
        };
        let artifact_path = format!("{EVIDENCE_DIR}/{}", &p[prefix.len()..]);
        let fields_ok = doc["id"].is_string()
            && doc["last_sha256"].is_string()
            && doc["path"].as_str() == Some(artifact_path.as_str());
        if !fields_ok {
            report.finding(
                "tombstone-invalid",
                p,
                format!("its `id`, `last_sha256` or `path` (expected {artifact_path}) is wrong"),
            );
        }
        if files.find(&artifact_path).is_some() {
            report.finding(
                "tombstone-invalid",
                p,
                format!("{artifact_path} is present, yet recorded as removed"),
            );
        }
    }
}

/// Every committed packet must hold exactly what its manifest lists, with
/// the digests it lists: auditors receive these files.
fn packets(
    snapshot: &Snapshot<'_>,
    files: Files<'_>,
    accounted: &mut Marks,
    report: &mut VerifyReport,
) {
    for (mi, mp, moid) in files
        .in_folder("packets")
        .filter(|(_, p, _)| p.ends_with("/manifest.json"))
    {
        accounted.mark(mi);
        let dir = mp.trim_end_matches("manifest.json");
        let doc: Option<Value> = snapshot
            .read_blob(moid)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(entries) = doc
            .as_ref()
            .filter(|d| d["schema"] == crate::packet::MANIFEST_SCHEMA)
            .and_then(|d| d["files"].as_array())
        else {
            report.finding("packet-mismatch", mp, "not a readable packet manifest");
            continue;
        };
        for f in entries {
            let rel = f["path"].as_str().unwrap_or_default();
            let path = format!("{dir}{rel}");
            let at = files.find(&path);
            if let Some(i) = at {
                accounted.mark(i);
            }
            match at.map(|i| snapshot.read_blob(files.oid(i))) {
                Some(Ok(b)) => {
                    let got = canonical::sha256_hex(&b);
                    if f["sha256"].as_str() != Some(got.as_str()) {
                        report.finding(
                            "packet-mismatch",
                            &path,
                            format!("hashes to {got}, {mp} lists {}", f["sha256"]),
                        );
                    }
                }
                Some(Err(e)) => report.finding("object-unreadable", &path, unreadable(e)),
                None => report.finding(
                    "packet-mismatch",
                    &path,
                    format!("listed in {mp} but not on the branch"),
                ),
            }
        }
    }
}

/// Every artifact a (verified) listing names must be present: this names
/// the path of a deleted artifact, which digests alone cannot.
fn missing_listed(
    listing: &str,
    bytes: &[u8],
    files: Files<'_>,
    listed: &mut Marks,
    report: &mut VerifyReport,
) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines().filter(|l| l.starts_with("| ")) {
        // Titles never hold `](` (listings write brackets as entities), so
        // the first one opens the row's link.
        let Some(start) = line.find("](") else {
            continue;
        };
        let rest = &line[start + 2..];
        let Some(end) = rest.find(')') else {
            continue;
        };
        let mut target = &rest[..end];
        while let Some(t) = target.strip_prefix("../") {
            target = t;
        }
        if !target.starts_with("evidence/") {
            continue;
        }
        let target = target.replace("%25", "%");
        if let Some(i) = files.find(&target) {
            listed.mark(i);
        } else {
            report.finding(
                "artifact-missing",
                target,
                format!("listed in {listing} but not on the branch: the artifact was deleted"),
            );
        }
    }
}

/// Derived files must match the digests their manifest records.
/// Returns the artifact paths that verified listings name, when the branch
/// has listings at all.
fn derived(
    read: &ReadBlob<'_>,
    files: Files<'_>,
    accounted: &mut Marks,
    report: &mut VerifyReport,
) -> Option<Marks> {
    let mut listed = Marks::new(files);
    let mut has_listings = false;
    let Some(at) = files.find(DERIVED_PATH) else {
        if !files.folder("checks").is_empty() || !files.folder("mappings").is_empty() {
            report.finding(
                "derived-mismatch",
                DERIVED_PATH,
                "derived files are present but their manifest is missing",
            );
        }
        return None;
    };
    accounted.mark(at);
    let doc: Option<Value> = read(files.oid(at))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(entries) = doc
        .as_ref()
        .filter(|d| d["schema"] == DERIVED_SCHEMA)
        .and_then(|d| d["files"].as_object())
    else {
        report.finding(
            "derived-mismatch",
            DERIVED_PATH,
            "not a readable manifest of derived files",
        );
        return None;
    };
    for (path, want) in entries {
        report.derived += 1;
        let Some(i) = files.find(path) else {
            report.finding(
                "derived-missing",
                path,
                format!("listed in {DERIVED_PATH} but not on the branch"),
            );
            continue;
        };
        accounted.mark(i);
        match read(files.oid(i)) {
            Ok(b) => {
                let got = canonical::sha256_hex(&b);
                if path.starts_with("listings/") {
                    has_listings = true;
                    if Some(got.as_str()) == want.as_str() {
                        missing_listed(path, &b, files, &mut listed, report);
                    }
                }
                if Some(got.as_str()) != want.as_str() {
                    report.finding(
                        "derived-mismatch",
                        path,
                        format!(
                            "hashes to {got}, {DERIVED_PATH} records {want}: edited outside cleartrail"
                        ),
                    );
                }
            }
            Err(e) => report.finding("object-unreadable", path, unreadable(e)),
        }
    }
    has_listings.then_some(listed)
}
