//! The evidence held on a branch, read back once as parsed artifacts, for
//! mapping, checks, gaps and packets. An optional change set overlays the
//! commit being prepared, so derived files describe exactly what the
//! commit will hold.
//!
//! Each artifact is read and parsed exactly once, its dates parsed once,
//! and the whole is indexed by (source, kind), so evaluation looks only at
//! the artifacts a selector can match.

mod cache;
pub mod lite;

use crate::artifact::{DateSpan, EVIDENCE_DIR, PeriodText};
use crate::store::{ChangeSet, Chunks, Snapshot, StoreError};
use chrono::NaiveDate;
pub use lite::Lite;
use lite::{KeepSeed, Keys};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// One artifact as held: the fields evaluation reads, typed, and the
/// part of `content` that checks and selectors read (see [`Keep`]).
/// 200,000 of these must fit in memory: strings are boxed (no spare
/// capacity), the title, URL, digest and latest timestamp share one
/// allocation, and the few distinct (source, kind, month) are shared.
#[derive(Debug, Clone)]
pub struct Held {
    /// Shared with check exceptions that name it.
    pub id: Arc<str>,
    class: Arc<Class>,
    /// Path of the artifact file in the repository (shared with the
    /// snapshot's index).
    pub path: Arc<str>,
    pub period: Option<DateSpan>,
    /// Title, URL, `sha256` and latest timestamp, end to end; `cuts` are
    /// where the first three end.
    text: Box<str>,
    cuts: [u32; 3],
    pub content: Lite,
    /// The git blob id of the artifact file.
    pub blob: git2::Oid,
    /// Its position in [`Evidence::held`] (set there): per-artifact facts
    /// of an evaluation live in vectors indexed by it, not in maps by id.
    pub pos: u32,
}

/// What many artifacts have in common: source, kind and the month group
/// of their shard (`-` when unsharded).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Class {
    pub source: Arc<str>,
    pub kind: Arc<str>,
    pub group: Arc<str>,
}

/// The fields of a [`Held`] besides its content, as read.
pub struct Parts {
    pub id: Arc<str>,
    pub source: Arc<str>,
    pub kind: Arc<str>,
    pub group: Arc<str>,
    pub path: Arc<str>,
    pub period: Option<DateSpan>,
    pub title: Box<str>,
    pub url: Box<str>,
    pub sha256: Box<str>,
    pub latest: Box<str>,
    pub blob: git2::Oid,
}

/// Which top-level `content` fields to keep in memory: those checks and
/// catalog selectors read, per (source, kind). A change's message and
/// trailers, its author and committer, a commit's whole content, are read
/// by nothing that evaluates, and keeping every field of 200,000 artifacts
/// in memory costs gigabytes.
#[derive(Debug, Clone, Default)]
pub enum Keep {
    /// Everything (small inputs, tests).
    #[default]
    All,
    /// By source, then kind, the fields kept; a kind not listed keeps
    /// none. Nested so a lookup by `&str` allocates nothing: it is made
    /// for every artifact read.
    ByKind(BTreeMap<String, BTreeMap<String, BTreeSet<String>>>),
}

/// What to keep of one (source, kind): `None` for everything, else the
/// fields (`None`: no field).
type KeepOf<'k> = Option<Option<&'k BTreeSet<String>>>;

impl Keep {
    /// Keeps nothing until fields are added.
    pub fn none() -> Self {
        Keep::ByKind(BTreeMap::new())
    }

    /// Adds the fields kept for every kind (`*`) of a source to each of
    /// its kinds named on their own.
    pub fn spread_wildcards(&mut self) {
        if let Keep::ByKind(m) = self {
            for kinds in m.values_mut() {
                let Some(all) = kinds.get("*").cloned() else {
                    continue;
                };
                for fields in kinds.values_mut() {
                    fields.extend(all.iter().cloned());
                }
            }
        }
    }

    /// Keeps `field` of the content of `source`/`kind` artifacts.
    pub fn add(&mut self, source: &str, kind: &str, field: &str) {
        if let Keep::ByKind(m) = self {
            m.entry(source.to_string())
                .or_default()
                .entry(kind.to_string())
                .or_default()
                .insert(field.to_string());
        }
    }

    /// What to keep of one (source, kind): `None` for everything.
    fn of(&self, source: &str, kind: &str) -> KeepOf<'_> {
        match self {
            Keep::All => None,
            // `*`: every kind of the source (jira's kinds are its queries'
            // names, known only from a configuration).
            Keep::ByKind(m) => Some(
                m.get(source)
                    .and_then(|k| k.get(kind).or_else(|| k.get("*"))),
            ),
        }
    }

    /// What to keep of the artifact at `path`, by the source and kind
    /// folders it is in (`evidence/<source>/<kind>/...`).
    fn of_path(&self, path: &str) -> KeepOf<'_> {
        let mut parts = path
            .strip_prefix(EVIDENCE_DIR)
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or("")
            .split('/');
        let source = parts.next().unwrap_or("");
        let kind = parts.next().unwrap_or("");
        self.of(source, kind)
    }
}

impl Held {
    /// From a parsed artifact document (tests and small inputs: it goes
    /// through the document's bytes, as artifacts read from git do).
    pub fn from_document(path: String, doc: Value, keep: &Keep) -> Option<Held> {
        let bytes = serde_json::to_vec(&doc).ok()?;
        let blob = crate::store::blob_id(&bytes);
        Self::parse(path.into(), &bytes, blob, keep, &mut Keys::default())
    }

    /// From the bytes of an artifact file, in one pass: `content` members
    /// that `keep` rejects are skipped without being built. What to keep
    /// depends on the source and kind, which come after `content` (keys
    /// are sorted): they are guessed from the path, and in the rare case
    /// the document disagrees with its path (`verify` reports it), parsed
    /// again with its own. `None` when the file is not an artifact.
    fn parse(
        path: Arc<str>,
        bytes: &[u8],
        blob: git2::Oid,
        keep: &Keep,
        keys: &mut Keys,
    ) -> Option<Held> {
        let guess = keep.of_path(&path);
        let doc = Self::parse_doc(bytes, guess, keys)?;
        let (source, kind) = (doc.source.clone()?, doc.kind.clone()?);
        let fields = keep.of(&source, &kind);
        // The same entry of `keep` (or both "everything"/"nothing").
        let entry = |k: KeepOf<'_>| k.map(|f| f.map(std::ptr::from_ref));
        let doc = if entry(fields) == entry(guess) {
            doc
        } else {
            Self::parse_doc(bytes, fields, keys)?
        };
        let content = doc.content;
        let parts = Parts {
            id: doc.id?.into(),
            source,
            kind,
            group: doc.group,
            path,
            period: doc.period,
            title: doc.title.unwrap_or_default(),
            url: doc.url.unwrap_or_default(),
            sha256: doc.sha256.unwrap_or_default(),
            latest: doc.latest,
            blob,
        };
        Some(Held::new(parts, content, keys))
    }

    /// Puts an artifact together, sharing its class through `keys`.
    pub fn new(p: Parts, content: Lite, keys: &mut Keys) -> Held {
        let mut text =
            String::with_capacity(p.title.len() + p.url.len() + p.sha256.len() + p.latest.len());
        let mut cuts = [0u32; 3];
        for (i, s) in [&p.title, &p.url, &p.sha256].into_iter().enumerate() {
            text.push_str(s);
            cuts[i] = text.len() as u32;
        }
        text.push_str(&p.latest);
        Held {
            id: p.id,
            class: keys.class(Class {
                source: p.source,
                kind: p.kind,
                group: p.group,
            }),
            path: p.path,
            period: p.period,
            text: text.into_boxed_str(),
            cuts,
            content,
            blob: p.blob,
            pos: 0,
        }
    }

    pub fn source(&self) -> &str {
        &self.class.source
    }

    pub fn kind(&self) -> &str {
        &self.class.kind
    }

    /// The month group of its shard (`-` when unsharded).
    pub fn group(&self) -> &str {
        &self.class.group
    }

    fn text_part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.cuts[i - 1] as usize };
        let end = self.cuts.get(i).map_or(self.text.len(), |&c| c as usize);
        &self.text[start..end]
    }

    fn parse_doc(bytes: &[u8], fields: KeepOf<'_>, keys: &mut Keys) -> Option<Doc> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let doc = DocSeed { keys, fields }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(doc)
    }

    /// The last day the artifact is evidence for.
    pub fn period_end(&self) -> Option<NaiveDate> {
        self.period.map(|p| p.end)
    }

    /// The first day the artifact is evidence for.
    pub fn period_start(&self) -> Option<NaiveDate> {
        self.period.map(|p| p.start)
    }

    pub fn content(&self) -> &Lite {
        &self.content
    }

    /// Looks up a dotted path in `content`.
    pub fn field(&self, path: &str) -> Option<&Lite> {
        path.split('.').try_fold(self.content(), |v, k| v.get(k))
    }

    pub fn title(&self) -> &str {
        self.text_part(0)
    }

    pub fn url(&self) -> &str {
        self.text_part(1)
    }

    /// The latest of the object's own timestamps (RFC 3339 in UTC, so
    /// they order as strings), `""` when it has none.
    pub fn latest_observed(&self) -> &str {
        self.text_part(3)
    }

    pub fn sha256(&self) -> &str {
        self.text_part(2)
    }
}

/// Sorts by id, then path: the same artifact at two paths (a copy `verify`
/// reports) must not make the order depend on how it was read. The
/// writer's artifacts come mostly sorted already (its cache keeps this
/// order, and a run adds a few): positions are sorted by a stable sort,
/// which takes runs that are in order as they are (an unstable sort of
/// 200,000 artifacts compared ids a million times more), and the
/// artifacts are then moved into place along the permutation's cycles,
/// without a second vector of them.
fn sort_held(held: &mut [Held]) {
    let mut order: Vec<u32> = (0..held.len() as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&held[a as usize], &held[b as usize]);
        a.id.cmp(&b.id).then_with(|| a.path.cmp(&b.path))
    });
    // `order[i]` is where the artifact that belongs at `i` is now.
    for start in 0..held.len() {
        if order[start] as usize == start {
            continue;
        }
        let mut i = start;
        loop {
            let from = order[i] as usize;
            order[i] = i as u32;
            if from == start {
                break;
            }
            held.swap(i, from);
            i = from;
        }
    }
}

/// Every parseable artifact, sorted by id, with an index by (source, kind).
#[derive(Debug, Default)]
pub struct Evidence {
    pub held: Vec<Held>,
    by_kind: HashMap<(Arc<str>, Arc<str>), Vec<u32>>,
}

impl Evidence {
    pub fn new(mut held: Vec<Held>) -> Self {
        sort_held(&mut held);
        let mut by_kind: HashMap<(Arc<str>, Arc<str>), Vec<u32>> = HashMap::new();
        for (i, h) in held.iter_mut().enumerate() {
            h.pos = i as u32;
            by_kind
                .entry((h.class.source.clone(), h.class.kind.clone()))
                .or_default()
                .push(i as u32);
        }
        Evidence { held, by_kind }
    }

    /// The artifacts of one source type and kind, in id order.
    pub fn of_kind<'a>(&'a self, source: &str, kind: &str) -> impl Iterator<Item = &'a Held> {
        self.by_kind
            .get(&(Arc::from(source), Arc::from(kind)))
            .into_iter()
            .flatten()
            .map(|&i| &self.held[i as usize])
    }

    /// By id (the artifacts are sorted by id).
    pub fn get(&self, id: &str) -> Option<&Held> {
        self.held
            .binary_search_by(|h| (*h.id).cmp(id))
            .ok()
            .map(|i| &self.held[i])
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
/// to `verify` to report. With `use_cache` (the writer only), artifacts
/// parsed by an earlier run are taken from the repository's cache by blob
/// id instead of being read and parsed again (see `evidence/cache.rs`);
/// the cache rewrite, when one is due, is returned for the caller to do.
pub fn load(
    snapshot: &Snapshot<'_>,
    overlay: Option<&ChangeSet>,
    keep: &Keep,
    use_cache: bool,
) -> Result<(Evidence, Option<CacheWrite>), StoreError> {
    /// Where an artifact's bytes come from.
    enum From<'a> {
        Held(git2::Oid),
        Overlay(&'a crate::store::Content),
    }
    let mut files: Vec<(Arc<str>, From<'_>)> = snapshot
        .files_below(EVIDENCE_DIR)?
        .iter()
        .filter(|(p, _)| p.ends_with(".json"))
        .map(|(p, oid)| (p.clone(), From::Held(*oid)))
        .collect();
    let prefix = format!("{EVIDENCE_DIR}/");
    if let Some(cs) = overlay {
        // Both are sorted by path: merge them in one pass.
        let mut out = Vec::with_capacity(files.len());
        let mut held = files.into_iter().peekable();
        for (path, change) in cs.iter_shared() {
            if !path.starts_with(&prefix) || !path.ends_with(".json") {
                continue;
            }
            while held.peek().is_some_and(|(p, _)| **p < **path) {
                out.extend(held.next());
            }
            if held.peek().is_some_and(|(p, _)| **p == **path) {
                held.next();
            }
            if let Some(bytes) = change {
                out.push((path.clone(), From::Overlay(bytes)));
            }
        }
        out.extend(held);
        files = out;
    }
    let cache_file = use_cache.then(|| cache::path(snapshot.git_dir()));
    let fingerprint = cache::fingerprint(keep);
    // Hits are kept in place in the cache's own vector, which is sized for
    // every artifact: it becomes the result, and the artifacts parsed anew
    // are appended to it. Two vectors of 200,000 held artifacts were a
    // large part of a run's peak. Lookups go through a sorted index of
    // blob ids: sorting the artifacts themselves moves 200 bytes each.
    let mut out = match &cache_file {
        Some(f) => cache::read(f, &fingerprint, files.len()),
        None => Vec::new(),
    };
    let from_cache = out.len();
    let mut stale = 0;
    if !out.is_empty() {
        let mut by_blob: Vec<(git2::Oid, u32)> = out
            .iter()
            .enumerate()
            .map(|(i, h)| (h.blob, i as u32))
            .collect();
        by_blob.sort_unstable();
        let mut used = vec![false; out.len()];
        let mut again = Vec::new();
        files.retain(|(path, from)| match from {
            From::Held(oid) => match by_blob
                .binary_search_by(|(b, _)| b.cmp(oid))
                .map(|k| by_blob[k].1 as usize)
            {
                Ok(i) if !used[i] => {
                    used[i] = true;
                    out[i].path = path.clone();
                    false
                }
                // The same bytes at a second path.
                Ok(i) => {
                    let mut h = out[i].clone();
                    h.path = path.clone();
                    again.push(h);
                    false
                }
                Err(_) => true,
            },
            From::Overlay(_) => true,
        });
        let mut i = 0;
        out.retain(|_| {
            i += 1;
            used[i - 1]
        });
        stale = from_cache - out.len();
        out.extend(again);
    }
    let parsed_anew = files.len();
    out.reserve_exact(parsed_anew);
    // Reading (inflating) and parsing is the cost, shared by two threads.
    // They append to `out` a batch at a time, so the parsed artifacts are
    // never in two vectors at once.
    const BATCH: usize = 512;
    let sink = std::sync::Mutex::new(&mut out);
    let chunks = Chunks::new(files.len(), BATCH);
    let [a, b] = snapshot.on_two_threads(|read| -> Result<(), StoreError> {
        let mut keys = Keys::default();
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(chunk) = chunks.take() {
            for (path, from) in &files[chunk] {
                let parsed = match from {
                    From::Overlay(c) => {
                        Held::parse(path.clone(), &c.bytes(), c.blob_id(), keep, &mut keys)
                    }
                    From::Held(oid) => {
                        Held::parse(path.clone(), &read(*oid)?, *oid, keep, &mut keys)
                    }
                };
                batch.extend(parsed);
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut batch);
        }
        Ok(())
    })?;
    a?;
    b?;
    let cache = cache_file
        .filter(|_| parsed_anew > 0 || stale > 0)
        .map(|file| CacheWrite { file, fingerprint });
    Ok((Evidence::new(out), cache))
}

/// A rewrite of the writer's cache that [`load`] found due, left to the
/// caller so that it can overlap it with evaluation: writing the compact
/// form of 200,000 artifacts is a tenth of a run after new commits.
pub struct CacheWrite {
    file: std::path::PathBuf,
    fingerprint: String,
}

impl CacheWrite {
    pub fn write(self, held: &Evidence) {
        cache::write(&self.file, &self.fingerprint, &held.held);
    }
}

/// The fields of an artifact document that [`Held`] keeps.
struct Doc {
    id: Option<Box<str>>,
    source: Option<Arc<str>>,
    kind: Option<Arc<str>>,
    period: Option<DateSpan>,
    title: Option<Box<str>>,
    url: Option<Box<str>>,
    sha256: Option<Box<str>>,
    group: Arc<str>,
    latest: Box<str>,
    content: Lite,
}

struct DocSeed<'k> {
    keys: &'k mut Keys,
    fields: KeepOf<'k>,
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_> {
    type Value = Doc;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_> {
    type Value = Doc;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an artifact document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
        #[derive(serde::Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Id,
            Title,
            Url,
            Sha256,
            Source,
            Kind,
            Shard,
            Period,
            Observed,
            Content,
            #[serde(other)]
            Other,
        }
        type Text = Option<Box<str>>;
        let mut doc = Doc {
            id: None,
            source: None,
            kind: None,
            period: None,
            title: None,
            url: None,
            sha256: None,
            group: self.keys.intern("-"),
            latest: Box::from(""),
            content: Lite::Null,
        };
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Id => doc.id = map.next_value::<Text>()?,
                Field::Title => doc.title = map.next_value::<Text>()?,
                Field::Url => doc.url = map.next_value::<Text>()?,
                Field::Sha256 => doc.sha256 = map.next_value::<Text>()?,
                Field::Source => {
                    doc.source = map.next_value::<Text>()?.map(|s| self.keys.intern(&s))
                }
                Field::Kind => doc.kind = map.next_value::<Text>()?.map(|s| self.keys.intern(&s)),
                Field::Shard => {
                    let shard = map.next_value::<Text>()?;
                    doc.group = self
                        .keys
                        .intern(&crate::artifact::group_of_shard(shard.as_deref()));
                }
                Field::Period => {
                    let span = map.next_value::<Option<PeriodText<'de>>>()?;
                    doc.period = span.and_then(|m| m.span());
                }
                Field::Observed => {
                    let times = map.next_value::<BTreeMap<Box<str>, Value>>()?;
                    doc.latest = times
                        .values()
                        .filter_map(Value::as_str)
                        .max()
                        .unwrap_or("")
                        .into();
                }
                Field::Content => {
                    let fields = self.fields;
                    let accept = |k: &str| fields.is_none_or(|f| f.is_some_and(|f| f.contains(k)));
                    doc.content = map.next_value_seed(KeepSeed {
                        keys: &mut *self.keys,
                        keep: Some(&accept),
                    })?;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(source: &str, kind: &str) -> Value {
        json!({
            "id": format!("{source}:{kind}:x"), "source": source, "kind": kind,
            "title": "t", "url": "u", "sha256": "s",
            "content": {"sha": "abc", "message": "long text nobody judges", "rules": [1]},
        })
    }

    fn keep() -> Keep {
        let mut k = Keep::none();
        k.add("git", "change", "sha");
        k.add("git", "codeowners", "rules");
        k
    }

    #[test]
    fn keeps_per_kind_only_the_fields_named_for_it() {
        let change = Held::from_document(
            "evidence/git/change/x.json".into(),
            doc("git", "change"),
            &keep(),
        )
        .unwrap();
        assert_eq!(change.field("sha").and_then(Lite::as_str), Some("abc"));
        assert!(change.field("message").is_none());
        assert!(change.field("rules").is_none());
        let tag = Held::from_document("evidence/git/tag/x.json".into(), doc("git", "tag"), &keep())
            .unwrap();
        assert!(
            tag.content().get("sha").is_none(),
            "a kind not named keeps nothing"
        );
        let all = Held::from_document(
            "evidence/git/tag/x.json".into(),
            doc("git", "tag"),
            &Keep::All,
        )
        .unwrap();
        assert!(all.field("message").is_some());
    }

    #[test]
    fn a_document_in_another_kinds_folder_is_kept_by_its_own_kind() {
        // The path says change (keep `sha`); the document is codeowners
        // (keep `rules`): what the document says decides.
        let h = Held::from_document(
            "evidence/git/change/x.json".into(),
            doc("git", "codeowners"),
            &keep(),
        )
        .unwrap();
        assert_eq!(h.kind(), "codeowners");
        assert!(h.field("rules").is_some());
        assert!(h.field("sha").is_none());
    }

    /// Moving artifacts along the permutation puts them in the order a
    /// plain sort gives, from any starting order: sorted with a shuffled
    /// tail (the writer's case), reversed, shuffled, with an artifact at
    /// two paths.
    #[test]
    fn artifacts_sort_by_id_then_path_from_any_order() {
        let held = |id: &str, path: &str| {
            let mut d = doc("git", "change");
            d["id"] = json!(id);
            Held::from_document(path.into(), d, &keep()).unwrap()
        };
        let mut seed = 7u64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let ids: Vec<(String, String)> = (0..300)
            .map(|i| {
                (
                    format!("git:change:{:03}", i / 2 * 7 % 150),
                    format!("p/{i:03}"),
                )
            })
            .collect();
        let mut want = ids.clone();
        want.sort();
        let mut orders: Vec<Vec<(String, String)>> = vec![want.clone()];
        let mut tail = want.clone();
        tail[280..].reverse();
        orders.push(tail);
        let mut rev = want.clone();
        rev.reverse();
        orders.push(rev);
        let mut shuffled = want.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, next(i + 1));
        }
        orders.push(shuffled);
        for order in orders {
            let mut hs: Vec<Held> = order.iter().map(|(i, p)| held(i, p)).collect();
            sort_held(&mut hs);
            let got: Vec<(String, String)> = hs
                .iter()
                .map(|h| (h.id.to_string(), h.path.to_string()))
                .collect();
            assert_eq!(got, want);
        }
    }
}
