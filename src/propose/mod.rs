//! What an evidence pull request asks a reviewer to approve, and its body:
//! the artifacts it adds, changes and removes, grouped by the controls the
//! catalogs map them to, with a field-by-field diff of each change
//! ("`content.required_approving_review_count`: 2 → 0"), the checks that
//! fail, and the gaps that would remain after the merge.
//!
//! A body stays within GitHub's limit at any size of change: when the full
//! listing would not fit, the body summarizes (counts per control and per
//! kind) and links to listing pages committed on the branch under
//! [`LISTING_DIR`], [`PART_ROWS`] rows each. Everything is sorted and
//! nothing depends on the time, so the same diff gives the same body and
//! pages, and a run with nothing new changes neither.

use crate::artifact::EVIDENCE_DIR;
use crate::controls::evaluate::{ControlStatus, FrameworkStatus, Scope, matches_conditions};
use crate::controls::{Catalogs, Selector};
use crate::evidence::{Held, Keep};
use crate::store::{Delta, Snapshot, StoreError};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// GitHub refuses a pull request body longer than this (characters).
pub const BODY_LIMIT: usize = 65_536;
/// Where the listing pages of a change too large for its body live.
pub const LISTING_DIR: &str = ".cleartrail/proposal";
/// Rows per listing page: a page GitHub renders quickly.
pub const PART_ROWS: usize = 1000;
/// Field changes shown per artifact before "and N more".
const FIELDS_SHOWN: usize = 6;
/// A value is cut to this many characters in a field change.
const VALUE_CHARS: usize = 60;

/// Added, changed or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Added,
    Changed,
    Removed,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Added => "added",
            Op::Changed => "changed",
            Op::Removed => "removed",
        }
    }
}

/// One field that changed, as shown: its path and both values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: String,
    pub new: String,
}

/// One artifact of the pull request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArtifactChange {
    pub op: Op,
    pub path: String,
    pub source: String,
    pub kind: String,
    /// The source object's id (for an added artifact, described from the
    /// evaluation, its artifact id): shown when it has no title, and for
    /// a removed artifact, which has no file to link to.
    pub object_id: String,
    pub title: String,
    pub url: String,
    /// `framework:control`, sorted.
    pub controls: Vec<String>,
    /// For a change: what differs, at most [`FIELDS_SHOWN`].
    pub fields: Vec<FieldChange>,
    /// How many more fields differ than are shown.
    pub more_fields: usize,
    /// Codes of error-level checks that list it as an exception.
    pub failing: Vec<String>,
}

/// Counts of one kind of file outside `evidence/` (derived files,
/// collection records, tombstones).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

impl Counts {
    fn add(&mut self, op: Op) {
        match op {
            Op::Added => self.added += 1,
            Op::Changed => self.changed += 1,
            Op::Removed => self.removed += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.added + self.changed + self.removed
    }
}

/// A check that fails on the proposed branch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailingCheck {
    pub code: String,
    pub severity: String,
    pub description: String,
    pub exceptions: usize,
    pub population: u64,
}

/// A control that would not be covered after the merge.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Gap {
    pub framework: String,
    pub id: String,
    pub title: String,
    pub status: String,
    pub reason: String,
}

/// Where the body's links point.
#[derive(Debug, Clone)]
pub struct Links {
    /// `https://github.com/owner/name` (the web root of the repository).
    pub web: String,
    /// The branch the pull request comes from.
    pub branch: String,
    /// The branch it goes into.
    pub base_branch: String,
    /// The commit file links point into: the head the body describes, so
    /// links keep working after the branch is deleted on merge.
    pub rev: String,
}

impl Links {
    /// The web address of a file at [`Links::rev`].
    pub fn file(&self, path: &str) -> String {
        format!("{}/blob/{}/{path}", self.web, self.rev)
    }
}

/// Everything the body and the listing say.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub period: String,
    pub base: git2::Oid,
    pub head: git2::Oid,
    pub artifacts: Vec<ArtifactChange>,
    /// Other files by top-level folder (or file).
    pub other: BTreeMap<String, Counts>,
    pub failing: Vec<FailingCheck>,
    pub gaps: Vec<Gap>,
    /// How many artifacts of each (source, kind) the new side holds.
    pub held_by_kind: BTreeMap<(String, String), usize>,
    /// Added artifacts of kinds that are all new, counted rather than
    /// kept one by one (see [`Bulk`]).
    pub bulk: BTreeMap<(String, String), Bulk>,
}

/// The added artifacts of a kind whose artifacts are all new, when the
/// change is too large for a full body anyway (a first proposal of
/// 100,000 artifacts): no row would name them (the listing links to the
/// kind's own), so only their counts are kept, by control.
#[derive(Debug, Clone, Default)]
pub struct Bulk {
    pub added: usize,
    /// `framework:control` -> how many map to it.
    pub controls: BTreeMap<String, usize>,
    /// How many map to no control.
    pub unmapped: usize,
}

impl Proposal {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for a in &self.artifacts {
            c.add(a.op);
        }
        c.added += self.bulk.values().map(|b| b.added).sum::<usize>();
        c
    }

    /// Whether the pull request would change anything at all.
    pub fn is_empty(&self) -> bool {
        self.artifacts.is_empty()
            && self.bulk.is_empty()
            && self.other.values().all(|c| c.total() == 0)
    }

    /// The pull request's title.
    pub fn title(&self) -> String {
        let c = self.counts();
        format!(
            "Evidence for {}: {} added, {} changed, {} removed",
            self.period, c.added, c.changed, c.removed
        )
    }
}

/// Catalog selectors by (source, kind), each with the control it serves.
pub struct ControlIndex<'a> {
    by_kind: HashMap<(&'a str, &'a str), Vec<(&'a Selector, String)>>,
    titles: BTreeMap<String, &'a str>,
    /// Frameworks in catalog order, which groups follow.
    frameworks: Vec<&'a str>,
}

impl<'a> ControlIndex<'a> {
    /// The selectors of every in-scope control of the frameworks in scope.
    pub fn new(catalogs: &'a Catalogs, scope: &Scope) -> Self {
        let mut by_kind: HashMap<(&str, &str), Vec<(&Selector, String)>> = HashMap::new();
        let mut titles = BTreeMap::new();
        for f in &catalogs.frameworks {
            if !scope.frameworks.contains(&f.id) {
                continue;
            }
            for c in &f.controls {
                if scope.out.contains_key(&(f.id.clone(), c.id.clone())) {
                    continue;
                }
                let key = format!("{}:{}", f.id, c.id);
                titles.insert(key.clone(), c.title.as_str());
                for r in &c.requirements {
                    for s in &r.any_of {
                        by_kind
                            .entry((s.source.as_str(), s.kind.as_str()))
                            .or_default()
                            .push((s, key.clone()));
                    }
                }
            }
        }
        let frameworks = catalogs.frameworks.iter().map(|f| f.id.as_str()).collect();
        ControlIndex {
            by_kind,
            titles,
            frameworks,
        }
    }

    /// `framework:control` of every control a selector of which matches.
    fn controls_of(&self, h: &Held) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for (sel, key) in self
            .by_kind
            .get(&(h.source(), h.kind()))
            .into_iter()
            .flatten()
        {
            if matches_conditions(sel, h) {
                out.insert(key.clone());
            }
        }
        out.into_iter().collect()
    }

    fn framework_rank(&self, f: &str) -> usize {
        self.frameworks
            .iter()
            .position(|x| *x == f)
            .unwrap_or(usize::MAX)
    }

    fn title(&self, key: &str) -> &str {
        self.titles.get(key).copied().unwrap_or("")
    }
}

/// The fields of an artifact file a row shows; `content` is skipped
/// unread.
#[derive(serde::Deserialize)]
struct Meta {
    id: String,
    source: String,
    kind: String,
    #[serde(default)]
    object_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    url: String,
}

/// The artifacts of a diff of `evidence/`, read from both snapshots.
/// `held` is the evidence of the new side as evaluated (its selectors'
/// fields kept), which maps an added or changed artifact to controls
/// without parsing it again; `failing` maps artifact ids to the
/// error-level checks listing them. Only a changed artifact is parsed
/// whole, on both sides, for its field changes.
#[allow(clippy::too_many_arguments)]
pub fn artifact_changes(
    deltas: Vec<Delta>,
    old: &Snapshot<'_>,
    new: &Snapshot<'_>,
    held: &crate::evidence::Evidence,
    index: &ControlIndex<'_>,
    failing: &HashMap<&str, Vec<&'static str>>,
    bulk_kinds: &BTreeSet<(String, String)>,
    bulk: &mut BTreeMap<(String, String), Bulk>,
) -> Result<Vec<ArtifactChange>, StoreError> {
    // An added artifact is described from the evaluation alone: at a
    // first proposal of 100,000 artifacts, reading each file again (and
    // having git hash it again) was most of the time.
    let by_path: HashMap<&str, &Held> = held.iter().map(|h| (&*h.path, h)).collect();
    let mut out = Vec::with_capacity(deltas.len());
    for d in &deltas {
        // Captured documents beside an artifact are part of it: its
        // digest covers theirs.
        if !d.path.ends_with(".json") {
            continue;
        }
        let fails = |id: &str| -> Vec<String> {
            let mut f: Vec<String> = failing
                .get(id)
                .map(|v| v.iter().map(|c| c.to_string()).collect())
                .unwrap_or_default();
            f.sort();
            f.dedup();
            f
        };
        let now = by_path.get(d.path.as_str()).filter(|_| d.new.is_some());
        if let (None, Some(h)) = (d.old, now) {
            let kind = (h.source().to_string(), h.kind().to_string());
            if bulk_kinds.contains(&kind) {
                let b = bulk.entry(kind).or_default();
                b.added += 1;
                let controls = index.controls_of(h);
                if controls.is_empty() {
                    b.unmapped += 1;
                }
                for c in controls {
                    *b.controls.entry(c).or_insert(0) += 1;
                }
                continue;
            }
            out.push(ArtifactChange {
                op: Op::Added,
                path: d.path.clone(),
                source: h.source().to_string(),
                kind: h.kind().to_string(),
                object_id: h.id.to_string(),
                title: h.title().to_string(),
                url: h.url().to_string(),
                controls: index.controls_of(h),
                fields: Vec::new(),
                more_fields: 0,
                failing: fails(&h.id),
            });
            continue;
        }
        let bytes =
            |snap: &Snapshot<'_>, id: Option<git2::Oid>| -> Result<Option<Vec<u8>>, StoreError> {
                id.map(|id| snap.read_blob(id)).transpose()
            };
        let (before, after) = (bytes(old, d.old)?, bytes(new, d.new)?);
        let (op, side) = match (&before, &after) {
            (None, Some(b)) => (Op::Added, b),
            (Some(_), Some(b)) => (Op::Changed, b),
            (Some(a), None) => (Op::Removed, a),
            (None, None) => continue,
        };
        // Not an artifact (a stray file verify reports): not listed.
        let Ok(meta) = serde_json::from_slice::<Meta>(side) else {
            continue;
        };
        let controls = match (op, now) {
            (Op::Added | Op::Changed, Some(h)) => index.controls_of(h),
            _ => serde_json::from_slice::<Value>(side)
                .ok()
                .and_then(|doc| Held::from_document(d.path.clone(), doc, &Keep::All))
                .map(|h| index.controls_of(&h))
                .unwrap_or_default(),
        };
        let (fields, more_fields) = match (&before, &after) {
            (Some(a), Some(b)) => match (
                serde_json::from_slice::<Value>(a),
                serde_json::from_slice::<Value>(b),
            ) {
                (Ok(a), Ok(b)) => field_changes(&a, &b),
                _ => (Vec::new(), 0),
            },
            _ => (Vec::new(), 0),
        };
        let failing = if op == Op::Removed {
            Vec::new()
        } else {
            fails(&meta.id)
        };
        out.push(ArtifactChange {
            op,
            path: d.path.clone(),
            source: meta.source,
            kind: meta.kind,
            object_id: meta.object_id,
            title: meta.title,
            url: meta.url,
            controls,
            fields,
            more_fields,
            failing,
        });
    }
    Ok(out)
}

/// Counts of the files of a diff outside `evidence/`, by top-level name;
/// the listing pages themselves are left out.
pub fn other_counts(deltas: &[Delta]) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for d in deltas {
        if d.path.starts_with(&format!("{LISTING_DIR}/"))
            || d.path.starts_with(&format!("{EVIDENCE_DIR}/"))
        {
            continue;
        }
        let top = d.path.split('/').next().unwrap_or_default().to_string();
        let op = match (d.old, d.new) {
            (None, _) => Op::Added,
            (_, None) => Op::Removed,
            _ => Op::Changed,
        };
        out.entry(top).or_default().add(op);
    }
    out
}

/// The fields that differ between two artifact documents: `title`,
/// `url`, `period` and every leaf of `content`, in path order; the first
/// [`FIELDS_SHOWN`] and how many more.
pub fn field_changes(old: &Value, new: &Value) -> (Vec<FieldChange>, usize) {
    let mut all = Vec::new();
    for top in ["title", "url", "period"] {
        if old[top] != new[top] {
            all.push(FieldChange {
                field: top.into(),
                old: shown(&old[top]),
                new: shown(&new[top]),
            });
        }
    }
    leaf_changes("content", &old["content"], &new["content"], &mut all);
    // What a reviewer judges first (a setting, a version); digests, links
    // and commit ids that follow from it last.
    all.sort_by_key(|f| identifier_like(&f.field));
    let more = all.len().saturating_sub(FIELDS_SHOWN);
    all.truncate(FIELDS_SHOWN);
    (all, more)
}

/// Whether a field names a digest, link or id rather than a setting.
fn identifier_like(field: &str) -> bool {
    let last = field
        .rsplit('.')
        .next()
        .unwrap_or(field)
        .split('[')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    last == "url"
        || last == "id"
        || last.ends_with("_id")
        || last.ends_with("_url")
        || last.contains("sha")
        || last.contains("commit")
        || last.contains("etag")
        || last.contains("digest")
}

fn leaf_changes(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                leaf_changes(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                leaf_changes(&format!("{path}[{i}]"), p, q, out);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            // Lists that grew or shrank: what came and went, not every
            // shifted index.
            let gone: Vec<String> = x.iter().filter(|v| !y.contains(v)).map(shown).collect();
            let came: Vec<String> = y.iter().filter(|v| !x.contains(v)).map(shown).collect();
            out.push(FieldChange {
                field: path.to_string(),
                old: format!("{} items{}", x.len(), listed("−", &gone)),
                new: format!("{} items{}", y.len(), listed("+", &came)),
            });
        }
        _ => out.push(FieldChange {
            field: path.to_string(),
            old: shown(a),
            new: shown(b),
        }),
    }
}

fn listed(sign: &str, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut s: Vec<String> = items.iter().take(3).map(|i| format!("{sign}{i}")).collect();
    if items.len() > 3 {
        s.push(format!("{sign}{} more", items.len() - 3));
    }
    format!(" ({})", s.join(", "))
}

/// A value as one short line: absent is `∅`, strings unquoted.
fn shown(v: &Value) -> String {
    let s = match v {
        Value::Null => "∅".to_string(),
        Value::String(s) => s.clone(),
        Value::Object(m) => format!("{{{} fields}}", m.len()),
        Value::Array(a) => format!("[{} items]", a.len()),
        other => other.to_string(),
    };
    cut(&s.replace(['\n', '\r'], " "), VALUE_CHARS)
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// Failing checks and gaps from an evaluation of the proposed branch.
pub fn findings(
    checks: &[crate::checks::CheckResult],
    statuses: &[FrameworkStatus],
) -> (Vec<FailingCheck>, Vec<Gap>) {
    let mut failing: Vec<FailingCheck> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| FailingCheck {
            code: c.code.to_string(),
            severity: c.severity.as_str().to_string(),
            description: c.description.to_string(),
            exceptions: c.exceptions.len(),
            population: c.population,
        })
        .collect();
    failing.sort_by(|a, b| (&a.severity, &a.code).cmp(&(&b.severity, &b.code)));
    let gaps = crate::audit::gaps(statuses)
        .into_iter()
        .map(|c: &ControlStatus| Gap {
            framework: c.framework.clone(),
            id: c.id.clone(),
            title: c.title.clone(),
            status: c.status.map(|s| s.as_str()).unwrap_or_default().to_string(),
            reason: c.reason.clone(),
        })
        .collect();
    (failing, gaps)
}

/// Text made safe for a Markdown table cell: no line breaks, no column
/// separators, no HTML, and no `@mention` that would notify someone.
pub fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\n' | '\r' | '\t' => out.push(' '),
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // An entity (`&#64;`) would render as the character it names.
            '&' => out.push_str("&amp;"),
            // A zero-width space keeps `@name` from mentioning, and
            // `#12` (or `org/repo#12`) from linking an issue, notifying
            // its repository, or closing it on merge ("fixes #12").
            '@' => out.push_str("@\u{200b}"),
            '#' if chars.peek().is_some_and(char::is_ascii_digit) => out.push_str("#\u{200b}"),
            c => out.push(c),
        }
    }
    out
}

/// Inline code that survives backticks in the text.
fn code(s: &str) -> String {
    let s = cell(s);
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// A link to a source object: only an `http(s)` URL becomes one, every
/// byte that could end the link, break the table or start markup
/// percent-encoded; anything else stays text.
fn link(text: &str, url: &str) -> String {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return cell(text);
    }
    let mut href = String::with_capacity(url.len());
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'*+,;=%".contains(&b) {
            href.push(b as char);
        } else {
            href.push_str(&format!("%{b:02X}"));
        }
    }
    format!("[{}]({href})", cell(text).replace(['[', ']'], ""))
}

fn short(id: git2::Oid) -> String {
    id.to_string()[..12].to_string()
}

/// The artifacts by control (`framework:control`, then "not mapped"), each
/// group in (op, path) order.
fn by_control<'p>(
    p: &'p Proposal,
    index: &ControlIndex<'_>,
) -> Vec<(String, Vec<&'p ArtifactChange>)> {
    let mut groups: BTreeMap<String, Vec<&ArtifactChange>> = BTreeMap::new();
    let mut unmapped = Vec::new();
    for a in &p.artifacts {
        if a.controls.is_empty() {
            unmapped.push(a);
        }
        for c in &a.controls {
            groups.entry(c.clone()).or_default().push(a);
        }
    }
    let mut out: Vec<(String, Vec<&ArtifactChange>)> = groups.into_iter().collect();
    sort_controls(&mut out, index);
    if !unmapped.is_empty() {
        out.push((String::new(), unmapped));
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| (a.op, &a.path).cmp(&(b.op, &b.path)));
    }
    out
}

fn group_heading(key: &str, index: &ControlIndex<'_>) -> String {
    if key.is_empty() {
        return "Not mapped to any control".into();
    }
    let (f, c) = key.split_once(':').unwrap_or((key, ""));
    format!("{f} {c} · {}", cell(index.title(key)))
}

const TABLE_HEAD: &str = "| | artifact | kind | notes |\n|---|---|---|---|\n";

/// One artifact as a table row; `file` is the address of its file.
fn row(a: &ArtifactChange, file: &str) -> String {
    let mut notes: Vec<String> = Vec::new();
    if !a.failing.is_empty() {
        let f: Vec<String> = a.failing.iter().map(|c| code(c)).collect();
        notes.push(format!("⚠ fails {}", f.join(", ")));
    }
    match a.op {
        Op::Added => {}
        Op::Removed => notes.push("no longer returned by its source".into()),
        // The values are in "What changed", once per artifact.
        Op::Changed if a.fields.is_empty() => notes.push("bytes only".into()),
        Op::Changed => {
            let mut f: Vec<String> = a.fields.iter().map(|f| code(&f.field)).collect();
            if a.more_fields > 0 {
                f.push(format!("{} more", a.more_fields));
            }
            notes.push(f.join(", "));
        }
    }
    format!(
        "| {} | {} | {}/{} | {} |\n",
        a.op.as_str(),
        artifact_cell(a, file),
        cell(&a.source),
        cell(&a.kind),
        notes.join("<br>")
    )
}

/// The artifact's title linked to its source object, and its file.
fn artifact_cell(a: &ArtifactChange, file: &str) -> String {
    let title = if a.title.is_empty() {
        &a.object_id
    } else {
        &a.title
    };
    let file = match a.op {
        Op::Removed => code(&a.object_id),
        _ => format!("[file]({file})"),
    };
    format!("{} · {file}", link(title, &a.url))
}

/// Each changed artifact once, with every shown field's old and new value.
fn changes_section(p: &Proposal, file: &dyn Fn(&str) -> String, max: usize) -> String {
    let changed: Vec<&ArtifactChange> =
        p.artifacts.iter().filter(|a| a.op == Op::Changed).collect();
    if changed.is_empty() {
        return String::new();
    }
    let mut s = String::from("### What changed\n\n");
    for a in changed.iter().take(max) {
        let _ = writeln!(
            s,
            "- {} ({}/{})",
            artifact_cell(a, &file(&a.path)),
            cell(&a.source),
            cell(&a.kind)
        );
        for f in &a.fields {
            let _ = writeln!(
                s,
                "  - {}: {} → {}",
                code(&f.field),
                cell(&f.old),
                cell(&f.new)
            );
        }
        if a.more_fields > 0 {
            let _ = writeln!(s, "  - and {} more fields", a.more_fields);
        }
    }
    if changed.len() > max {
        let _ = writeln!(s, "- and {} more changed artifacts", changed.len() - max);
    }
    s.push('\n');
    s
}

/// The opening lines. Listing pages leave out the commits: they are
/// committed on the branch, so naming its head would change them again.
fn header(p: &Proposal, links: &Links, commits: bool) -> String {
    let c = p.counts();
    let mut s = String::from("<!-- cleartrail:propose -->\n## Evidence to review\n\n");
    let (at_head, at_base) = if commits {
        (
            format!(" at `{}`", short(p.head)),
            format!(" at `{}`", short(p.base)),
        )
    } else {
        Default::default()
    };
    let _ = writeln!(
        s,
        "**{} added, {} changed, {} removed** artifacts for period **{}**: `{}`{at_head} into `{}`{at_base}.\n",
        c.added,
        c.changed,
        c.removed,
        cell(&p.period),
        cell(&links.branch),
        cell(&links.base_branch),
    );
    s.push_str(
        "Approving this pull request approves exactly the files it adds or changes. After the merge, `cleartrail approve` records each approval that meets the policy, signed over their SHA-256.\n\n",
    );
    s
}

fn failing_section(p: &Proposal, file: &dyn Fn(&str) -> String, max: usize) -> String {
    let mut s = String::from("### Checks that fail\n\n");
    if p.failing.is_empty() {
        s.push_str("None.\n\n");
        return s;
    }
    for f in p.failing.iter().take(max) {
        let _ = writeln!(
            s,
            "- [{}]({}) ({}): {}: {} of {}",
            code(&f.code),
            file(&crate::checks::CheckResult::path(&f.code)),
            f.severity,
            cell(&f.description),
            f.exceptions,
            f.population
        );
    }
    if p.failing.len() > max {
        let _ = writeln!(s, "- and {} more", p.failing.len() - max);
    }
    s.push('\n');
    s
}

fn gaps_section(p: &Proposal, max: usize, more: &str) -> String {
    let mut s = String::from("### Gaps after the merge\n\n");
    if p.gaps.is_empty() {
        s.push_str("None: every in-scope control is covered.\n\n");
        return s;
    }
    s.push_str("| control | title | status | why |\n|---|---|---|---|\n");
    for g in p.gaps.iter().take(max) {
        let _ = writeln!(
            s,
            "| {} {} | {} | {} | {} |",
            g.framework,
            cell(&g.id),
            cell(&g.title),
            g.status,
            cell(&g.reason)
        );
    }
    if p.gaps.len() > max {
        let _ = writeln!(s, "\nAnd {} more{more}.", p.gaps.len() - max);
    }
    s.push('\n');
    s
}

fn other_section(p: &Proposal) -> String {
    let others: Vec<(&String, &Counts)> = p.other.iter().filter(|(_, c)| c.total() > 0).collect();
    if others.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "### Other files\n\nCollection records, tombstones and the files derived from the evidence (check results, mappings, listings, pages):\n\n",
    );
    for (name, c) in others {
        let _ = writeln!(
            s,
            "- {}: {} added, {} changed, {} removed",
            code(name),
            c.added,
            c.changed,
            c.removed
        );
    }
    s.push('\n');
    s
}

fn footer(p: &Proposal) -> String {
    format!(
        "<sub>cleartrail {} · base {} · head {}</sub>\n",
        env!("CARGO_PKG_VERSION"),
        p.base,
        p.head
    )
}

/// Rows a full body could hold at best: beyond this many, it is not
/// rendered only to be found too long.
pub const BODY_ROWS: usize = 400;

/// The full body, every artifact by control, when it fits in
/// [`BODY_LIMIT`].
fn full_body(p: &Proposal, links: &Links, index: &ControlIndex<'_>) -> Option<String> {
    let rows: usize = p.artifacts.iter().map(|a| a.controls.len().max(1)).sum();
    if rows > BODY_ROWS || !p.bulk.is_empty() {
        return None;
    }
    let file = |path: &str| links.file(path);
    let mut s = header(p, links, true);
    if !p.artifacts.is_empty() {
        s.push_str("### Artifacts by control\n\n");
        for (key, items) in by_control(p, index) {
            let _ = write!(
                s,
                "#### {} ({})\n\n{TABLE_HEAD}",
                group_heading(&key, index),
                items.len()
            );
            for a in items {
                s.push_str(&row(a, &file(&a.path)));
            }
            s.push('\n');
        }
    }
    s.push_str(&changes_section(p, &file, usize::MAX));
    s.push_str(&failing_section(p, &file, usize::MAX));
    s.push_str(&gaps_section(p, usize::MAX, ""));
    s.push_str(&other_section(p));
    s.push_str(&footer(p));
    (s.chars().count() <= BODY_LIMIT).then_some(s)
}

/// Counts per control, as a table (the summary body and the index page),
/// artifacts counted one by one and in bulk alike.
fn control_counts(p: &Proposal, index: &ControlIndex<'_>, max: usize) -> String {
    let mut by: BTreeMap<String, Counts> = BTreeMap::new();
    for (key, items) in by_control(p, index) {
        let c = by.entry(key).or_default();
        for a in items {
            c.add(a.op);
        }
    }
    for b in p.bulk.values() {
        for (key, n) in &b.controls {
            by.entry(key.clone()).or_default().added += n;
        }
        if b.unmapped > 0 {
            by.entry(String::new()).or_default().added += b.unmapped;
        }
    }
    let mut groups: Vec<(String, Counts)> = by.into_iter().collect();
    sort_controls(&mut groups, index);
    let mut s = String::from("| control | added | changed | removed |\n|---|---|---|---|\n");
    for (key, c) in groups.iter().take(max) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            group_heading(key, index),
            c.added,
            c.changed,
            c.removed
        );
    }
    if groups.len() > max {
        let _ = writeln!(s, "\nAnd {} more controls.", groups.len() - max);
    }
    s.push('\n');
    s
}

/// Catalog order of frameworks, natural order of control ids (CC2.1
/// before CC10.1), "not mapped" (the empty key) last.
fn sort_controls<T>(groups: &mut [(String, T)], index: &ControlIndex<'_>) {
    groups.sort_by_key(|(k, _)| {
        let (f, c) = k.split_once(':').unwrap_or((k, ""));
        (
            k.is_empty(),
            index.framework_rank(f),
            crate::controls::natural_key(c),
        )
    });
}

/// Counts per (source, kind).
fn by_kind(p: &Proposal) -> BTreeMap<(&str, &str), Counts> {
    let mut by: BTreeMap<(&str, &str), Counts> = BTreeMap::new();
    for a in &p.artifacts {
        by.entry((&a.source, &a.kind)).or_default().add(a.op);
    }
    for ((src, kind), b) in &p.bulk {
        by.entry((src, kind)).or_default().added += b.added;
    }
    by
}

/// Whether every artifact of a kind is new (the kind's listing on the
/// branch is then the list of what it adds).
fn wholly_new(p: &Proposal, kind: (&str, &str), c: &Counts) -> bool {
    if p.bulk
        .contains_key(&(kind.0.to_string(), kind.1.to_string()))
    {
        return true;
    }
    c.changed == 0
        && c.removed == 0
        && p.held_by_kind
            .get(&(kind.0.to_string(), kind.1.to_string()))
            .is_some_and(|n| *n == c.added)
}

/// Counts per kind; with `listing` (relative to the pages), a kind whose
/// artifacts are all new links to its listing instead of being paged.
/// The address of a (source, kind)'s listing.
type KindListing<'a> = &'a dyn Fn(&str, &str) -> String;

fn kind_counts(p: &Proposal, listing: Option<KindListing<'_>>) -> String {
    let mut s = String::from("| kind | added | changed | removed |\n|---|---|---|---|\n");
    for ((src, kind), c) in by_kind(p) {
        let name = format!("{}/{}", cell(src), cell(kind));
        let name = match listing {
            Some(l) if wholly_new(p, (src, kind), &c) => {
                format!("{name}: all new, [listed here]({})", l(src, kind))
            }
            _ => name,
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} |",
            c.added, c.changed, c.removed
        );
    }
    s.push('\n');
    s
}

/// The listing pages to commit with the pull request: none when the full
/// body fits (stale pages are then removed).
pub fn pages(p: &Proposal, links: &Links, index: &ControlIndex<'_>) -> Vec<(String, String)> {
    match full_body(p, links, index) {
        Some(_) => Vec::new(),
        None => listing(p, links, index),
    }
}

/// The pull request body: every artifact by control when that fits in
/// [`BODY_LIMIT`], else a summary that links to the listing pages.
pub fn body(p: &Proposal, links: &Links, index: &ControlIndex<'_>) -> String {
    if let Some(full) = full_body(p, links, index) {
        return full;
    }
    let file = |path: &str| links.file(path);
    let at = links.file(&format!("{LISTING_DIR}/index.md"));
    let mut s = header(p, links, true);
    let _ = writeln!(
        s,
        "This change is too large to list here ({} artifacts). **[The full listing]({at})**, committed with it, names every artifact with its source link and what changed.\n",
        p.artifacts.len()
    );
    s.push_str("### By control\n\n");
    s.push_str(&control_counts(p, index, 150));
    s.push_str("### By kind\n\n");
    s.push_str(&kind_counts(p, None));
    s.push_str(&changes_section(p, &file, 30));
    s.push_str(&failing_section(p, &file, 40));
    s.push_str(&gaps_section(p, 120, " in the listing"));
    s.push_str(&other_section(p));
    s.push_str(&footer(p));
    if s.chars().count() > BODY_LIMIT {
        // Only pathological names get here: cut, and say so.
        let note = format!("\n\n…cut to fit; see [the full listing]({at}).\n");
        let keep = BODY_LIMIT - note.chars().count();
        s = s.chars().take(keep).collect::<String>() + &note;
    }
    s
}

/// Changed artifacts whose values the index shows; the pages name the
/// fields of every one.
const INDEX_CHANGES: usize = 500;

/// The listing pages: an index (the summary, every control's counts, every
/// gap and failing check) and parts of [`PART_ROWS`] rows, one per
/// artifact, by kind. A kind whose artifacts are all new (a first
/// proposal) is not paged: the index links to the kind's own listing on
/// the branch, which names every one of them.
fn listing(p: &Proposal, links: &Links, index: &ControlIndex<'_>) -> Vec<(String, String)> {
    // Pages sit two folders below the root.
    let file = |path: &str| format!("../../{path}");
    let kinds = by_kind(p);
    let mut items: Vec<&ArtifactChange> = p
        .artifacts
        .iter()
        .filter(|a| {
            let k = (a.source.as_str(), a.kind.as_str());
            !wholly_new(p, k, &kinds[&k])
        })
        .collect();
    items.sort_by(|a, b| {
        (&a.source, &a.kind, a.op, &a.path).cmp(&(&b.source, &b.kind, b.op, &b.path))
    });
    let rows: Vec<String> = items.iter().map(|a| row(a, &file(&a.path))).collect();
    let parts: Vec<&[String]> = rows.chunks(PART_ROWS).collect();
    let mut out = Vec::new();
    let mut idx = header(p, links, false);
    if !parts.is_empty() {
        idx.push_str("### Pages\n\n");
        for (i, chunk) in parts.iter().enumerate() {
            let _ = writeln!(
                idx,
                "- [part {}](part-{:04}.md): {} rows",
                i + 1,
                i + 1,
                chunk.len()
            );
        }
        idx.push('\n');
    }
    idx.push_str("### By control\n\n");
    idx.push_str(&control_counts(p, index, usize::MAX));
    idx.push_str("### By kind\n\n");
    let kind_listing = |src: &str, kind: &str| {
        format!(
            "../../{}",
            crate::controls::evaluate::listing_index(src, kind)
        )
    };
    idx.push_str(&kind_counts(p, Some(&kind_listing)));
    idx.push_str(&changes_section(p, &file, INDEX_CHANGES));
    idx.push_str(&failing_section(p, &file, usize::MAX));
    idx.push_str(&gaps_section(p, usize::MAX, ""));
    idx.push_str(&other_section(p));
    out.push((format!("{LISTING_DIR}/index.md"), idx));
    for (i, chunk) in parts.iter().enumerate() {
        let mut s = format!(
            "# Evidence to review: part {} of {}\n\n[All pages](index.md)\n\n{TABLE_HEAD}",
            i + 1,
            parts.len()
        );
        for r in *chunk {
            s.push_str(r);
        }
        out.push((format!("{LISTING_DIR}/part-{:04}.md", i + 1), s));
    }
    out
}

/// Whether `path` is a listing page name `propose` writes.
pub fn is_listing_page(path: &str) -> bool {
    let Some(name) = path.strip_prefix(&format!("{LISTING_DIR}/")) else {
        return false;
    };
    name == "index.md"
        || name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".md"))
            .is_some_and(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_changed_setting_reads_as_old_to_new() {
        let old = json!({"title": "main", "content": {"required_approving_review_count": 2, "checks": ["a", "b"], "x": {"y": true}}});
        let new = json!({"title": "main", "content": {"required_approving_review_count": 0, "checks": ["a"], "x": {"y": true}, "z": "new"}});
        let (f, more) = field_changes(&old, &new);
        assert_eq!(more, 0);
        let shown: Vec<String> = f
            .iter()
            .map(|c| format!("{}: {} -> {}", c.field, c.old, c.new))
            .collect();
        assert_eq!(
            shown,
            [
                "content.checks: 2 items (−b) -> 1 items",
                "content.required_approving_review_count: 2 -> 0",
                "content.z: ∅ -> new",
            ]
        );
    }

    #[test]
    fn many_changed_fields_are_capped() {
        let old =
            json!({"content": {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1, "g": 1, "h": 1}});
        let new =
            json!({"content": {"a": 2, "b": 2, "c": 2, "d": 2, "e": 2, "f": 2, "g": 2, "h": 2}});
        let (f, more) = field_changes(&old, &new);
        assert_eq!((f.len(), more), (FIELDS_SHOWN, 8 - FIELDS_SHOWN));
    }

    #[test]
    fn cells_cannot_break_tables_or_mention() {
        assert_eq!(
            cell("a|b\n@bob <x> &#64;org fixes #12"),
            "a\\|b @\u{200b}bob &lt;x&gt; &amp;#\u{200b}64;org fixes #\u{200b}12"
        );
    }

    #[test]
    fn links_cannot_leave_their_parentheses() {
        assert_eq!(
            link("t", "https://x.test/a b)\n|<c>\\"),
            "[t](https://x.test/a%20b%29%0A%7C%3Cc%3E%5C)"
        );
        assert_eq!(link("t", "javascript:alert(1)"), "t");
    }

    #[test]
    fn only_listing_page_names_are_pages() {
        assert!(is_listing_page(".cleartrail/proposal/index.md"));
        assert!(is_listing_page(".cleartrail/proposal/part-0012.md"));
        assert!(!is_listing_page(".cleartrail/proposal/part-12.md"));
        assert!(!is_listing_page(".cleartrail/proposal/x.md"));
        assert!(!is_listing_page(".cleartrail/state.json"));
    }
}
