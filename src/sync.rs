//! Sync: collect from every configured source, normalize, and commit what
//! changed to the evidence branch.
//!
//! Collection happens once; planning (what to add, change, remove, and
//! the completeness record of each collection) and the commit are retried
//! on top of the new tip when another writer moved the branch meanwhile,
//! so neither writer's work is lost.

use crate::artifact::{
    self, Artifact, CollectionRecord, DateSpan, EVIDENCE_DIR, GroupDigest, QueryRecord,
    TOMBSTONE_SCHEMA, TOMBSTONES_DIR, canonical, group_of_shard, set_digest,
};
use crate::config::Config;
use crate::connectors::{self, ConnectorError, Limits, Outcome, QueryResult};
use crate::period::Period;
use crate::store::{
    Author, ChangeSet, CommitOutcome, CommitSpec, Content, Snapshot, Store, StoreError, blob_id,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Schema of `.cleartrail/state.json`.
pub const STATE_SCHEMA: &str = "cleartrail.state/v1";

/// How many times a lost race for the branch is retried on the new tip.
/// Every round of a race has a winner, so this many writers starting
/// together all land; a short, growing, jittered pause between attempts
/// keeps them from colliding in lockstep.
pub const MAX_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("collecting from source `{source_name}`")]
    Collect {
        source_name: String,
        #[source]
        source: ConnectorError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("source `{source_name}` returned `{id}` twice")]
    DuplicateId { source_name: String, id: String },
    #[error(
        "{path}: held artifact is not valid JSON, cannot plan around it ({reason}); run `cleartrail verify`"
    )]
    CorruptArtifact { path: String, reason: String },
    #[error(transparent)]
    Derive(#[from] crate::audit::AuditError),
    #[error(
        "refusing to start a new history for the evidence branch `{branch}`: {reason}\n  hint: {hint}"
    )]
    WouldFork {
        branch: String,
        reason: String,
        hint: String,
    },
}

/// Files derived from the evidence about to be committed (checks,
/// mappings, index), given the base snapshot, the planned changes and
/// whether they touch evidence. `None` deletes a derived file that is no
/// longer produced.
pub type Derive<'a> = dyn Fn(&Snapshot<'_>, &ChangeSet, bool) -> Result<Vec<(String, Option<Content>)>, SyncError>
    + 'a;

/// Counts of what a sync did to one (source, kind).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct KindStats {
    pub source: String,
    pub kind: String,
    pub collected: u64,
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub held: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub branch: String,
    pub period: String,
    /// The new commit, when one was made.
    pub commit: Option<String>,
    /// The branch tip after the sync.
    pub tip: Option<String>,
    pub kinds: Vec<KindStats>,
    /// How many attempts the commit took (more than one after a race).
    pub attempts: usize,
}

impl SyncReport {
    pub fn totals(&self) -> (u64, u64, u64) {
        self.kinds.iter().fold((0, 0, 0), |(a, c, r), k| {
            (a + k.added, c + k.changed, r + k.removed)
        })
    }
}

/// Run-wide inputs to a sync.
pub struct SyncOptions {
    pub period: Period,
    pub now: DateTime<Utc>,
    pub limits: Limits,
    /// Every source name the configuration has (also those `--source`
    /// leaves out of this run). Evidence held for any other name is of a
    /// source that was renamed or removed, and is tombstoned. `None`: keep
    /// such evidence (a library caller that syncs a partial configuration).
    pub configured: Option<BTreeSet<String>>,
}

/// Collects every configured source concurrently, serializing each page of
/// artifacts as it arrives (see [`prepare_items`]): the results (with empty
/// `items`) and, for each, its prepared artifacts.
pub async fn collect_all(
    config: &Config,
    opts: &SyncOptions,
    states: &BTreeMap<String, String>,
) -> Result<(Vec<QueryResult>, Vec<Vec<PreparedItem>>), SyncError> {
    let mut set = tokio::task::JoinSet::new();
    for src in &config.sources {
        let src = src.clone();
        let period = opts.period.clone();
        let limits = opts.limits;
        let states = states.clone();
        set.spawn(async move {
            let started = std::time::Instant::now();
            // Closes the source's progress group even if the task panics,
            // so that the sources waiting for the group are shown.
            struct Done(Option<String>);
            impl Drop for Done {
                fn drop(&mut self) {
                    if let Some(name) = self.0.take() {
                        crate::progress::get().source_done(&name, "failed");
                    }
                }
            }
            let mut done = Done(Some(src.name.clone()));
            let r = match connectors::connect(&src, &period, &states).await {
                Ok(conn) => {
                    connectors::collect_with(
                        conn.as_ref(),
                        limits,
                        crate::clock::now,
                        &states,
                        prepare_items,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            let summary = match &r {
                Ok(results) => format!(
                    "{} artifacts in {:.1?}",
                    results
                        .iter()
                        .flat_map(|(_, p)| p)
                        .map(Vec::len)
                        .sum::<usize>(),
                    started.elapsed()
                ),
                Err(e) => format!("failed: {e}"),
            };
            done.0 = None;
            crate::progress::get().source_done(&src.name, &summary);
            (src.name, r)
        });
    }
    let mut all = Vec::new();
    let mut first_err = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((_, Ok(results))) => all.extend(results),
            Ok((name, Err(e))) => {
                first_err.get_or_insert(SyncError::Collect {
                    source_name: name,
                    source: e,
                });
            }
            Err(e) => {
                first_err.get_or_insert(SyncError::Collect {
                    source_name: "?".into(),
                    source: ConnectorError::Task(e.to_string()),
                });
            }
        }
    }
    crate::progress::get().clear();
    if let Some(e) = first_err {
        return Err(e);
    }
    // Join order is arbitrary; plans must not depend on it.
    all.sort_by(|a, b| (&a.0.source_name, &a.0.query.id).cmp(&(&b.0.source_name, &b.0.query.id)));
    Ok(all
        .into_iter()
        .map(|(r, pages)| {
            let mut items = Vec::with_capacity(pages.iter().map(Vec::len).sum());
            items.extend(pages.into_iter().flatten());
            (r, items)
        })
        .unzip())
}

/// Collects, plans and commits, retrying the plan on a lost race.
pub async fn sync(
    store: &Store,
    config: &Config,
    opts: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let states = match store.branch_tip(&config.branch)? {
        Some(tip) => read_states(&store.snapshot(Some(tip))?)?,
        None => BTreeMap::new(),
    };
    let (results, prepared) = collect_all(config, opts, &states).await?;
    commit_prepared(store, &config.branch, &results, &prepared, opts, None)
}

/// Plans, adds the derived files, and commits it all in one commit.
/// `results[i]` carries the metadata of the query whose artifacts are
/// `prepared[i]` (see [`collect_all`]).
pub fn commit_prepared(
    store: &Store,
    branch: &str,
    results: &[QueryResult],
    prepared: &[Vec<PreparedItem>],
    opts: &SyncOptions,
    derived: Option<&Derive<'_>>,
) -> Result<SyncReport, SyncError> {
    let started = std::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tip = store.branch_tip(branch)?;
        let base = Base::choose(store, branch, tip)?;
        let snapshot = store.snapshot_tree(base.tree);
        let mut plan = plan(&snapshot, results, prepared, opts)?;
        // A branch behind a default branch that moved on is rebuilt on it
        // only when there is something to commit: a run with nothing new
        // makes no commit, whatever happened on the default branch.
        let (base, snapshot) = match (&base.diverged, plan.changed()) {
            (Some((_, d)), true) => {
                let grafted = base.graft(store, *d)?;
                let snap = store.snapshot_tree(grafted.tree);
                plan = self::plan(&snap, results, prepared, opts)?;
                (grafted, snap)
            }
            _ => (base, snapshot),
        };
        tracing::debug!("planned at {:.2?}", started.elapsed());
        // Planning freed its working sets; reading the evidence next
        // happens on other threads, which cannot reuse them.
        crate::memory::release_freed();
        if let Some(derive_files) = derived {
            // On a new base every derived file is written again: the
            // default branch's copies may be older.
            let evidence_changed = plan.evidence_changed() || base.rebuilt;
            for (path, content) in derive_files(&snapshot, &plan.changes, evidence_changed)? {
                match content {
                    Some(c) if snapshot.try_blob_id(&path)? != Some(c.blob_id()) => {
                        plan.changes.put_content(path, c)
                    }
                    None if snapshot.try_blob_id(&path)?.is_some() => plan.changes.delete(path),
                    _ => {}
                }
            }
        }
        tracing::debug!("derived files at {:.2?}", started.elapsed());
        let author = Author {
            time: opts.now,
            ..Author::default()
        };
        let message = plan.message(&opts.period, opts.now);
        let outcome = if plan.changed() {
            store.commit_with(&CommitSpec {
                branch,
                expected: tip,
                parents: base.parents.clone(),
                base_tree: base.tree,
                changes: &plan.changes,
                message: &message,
                author: &author,
            })
        } else {
            Ok(CommitOutcome::Unchanged { tip })
        };
        tracing::debug!("committed at {:.2?}", started.elapsed());
        match outcome {
            Ok(out) => {
                let (commit, tip) = match out {
                    CommitOutcome::Committed { commit, .. } => {
                        (Some(commit.to_string()), Some(commit.to_string()))
                    }
                    CommitOutcome::Unchanged { tip } => (None, tip.map(|t| t.to_string())),
                };
                return Ok(SyncReport {
                    branch: branch.to_string(),
                    period: opts.period.to_string(),
                    commit,
                    tip,
                    kinds: plan.stats.into_values().collect(),
                    attempts: attempt,
                });
            }
            Err(e) if e.is_race() && attempt < MAX_ATTEMPTS => {
                tracing::warn!(
                    "{e}; planning again on the new tip (attempt {})",
                    attempt + 1
                );
                std::thread::sleep(race_pause(attempt));
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Top-level names ClearTrail owns on the evidence branch: when the branch
/// is rebuilt on the default branch, these come from the branch and
/// everything else from the default branch.
pub const OWNED: &[&str] = &[
    artifact::OWNED_FOLDERS[0],
    artifact::OWNED_FOLDERS[1],
    artifact::OWNED_FOLDERS[2],
    artifact::OWNED_FOLDERS[3],
    artifact::OWNED_FOLDERS[4],
    artifact::OWNED_FOLDERS[5],
    artifact::OWNED_FOLDERS[6],
    artifact::OWNED_FOLDERS[7],
    // Generated at the root, beside the default branch's own files.
    "README.md",
];

/// What a commit is built on.
struct Base {
    /// The tree the changes apply to.
    tree: Option<git2::Oid>,
    parents: Vec<git2::Oid>,
    /// The branch tip and the default branch's tip, when the default
    /// branch has commits the evidence branch lacks and the evidence branch
    /// has commits the default branch lacks.
    diverged: Option<(git2::Oid, git2::Oid)>,
    /// Whether the tree was rebuilt on the default branch.
    rebuilt: bool,
}

/// Whether two commits differ in any top-level entry ClearTrail owns.
fn owned_differ(store: &Store, a: git2::Oid, b: git2::Oid) -> Result<bool, SyncError> {
    let repo = store.repo();
    let tree = |c: git2::Oid| {
        repo.find_commit(c)
            .and_then(|c| c.tree())
            .map_err(|e| StoreError::Git {
                context: format!("reading commit {c}"),
                source: e,
            })
    };
    let (ta, tb) = (tree(a)?, tree(b)?);
    Ok(OWNED
        .iter()
        .any(|name| ta.get_name(name).map(|e| e.id()) != tb.get_name(name).map(|e| e.id())))
}

impl Base {
    /// - No branch yet: fork from the default branch (so its pull request
    ///   shares history), unless the branch exists on a remote or the
    ///   clone is shallow: starting a new history there would fork one
    ///   that exists.
    /// - The default branch holds the branch tip (its pull request was
    ///   merged): build on the default branch.
    /// - Otherwise on the branch tip, noting when the default branch moved
    ///   on meanwhile.
    fn choose(store: &Store, branch: &str, tip: Option<git2::Oid>) -> Result<Base, SyncError> {
        let own_ref = format!("refs/heads/{branch}");
        let default = store
            .default_branch_tip()?
            .filter(|(name, _)| *name != own_ref)
            .map(|(_, oid)| oid);
        let tree_of = |c: git2::Oid| store.commit_tree(c).map(Some);
        match tip {
            None => {
                if let Some((remote_ref, _)) = store.remote_tips(branch)?.into_iter().next() {
                    return Err(SyncError::WouldFork {
                        branch: branch.to_string(),
                        reason: format!("it exists as `{remote_ref}` but not locally"),
                        hint: format!(
                            "fetch it first: `git fetch {} {branch}:{branch}`",
                            remote_ref
                                .strip_prefix("refs/remotes/")
                                .and_then(|r| r.split('/').next())
                                .unwrap_or("origin")
                        ),
                    });
                }
                if store.is_shallow() {
                    return Err(SyncError::WouldFork {
                        branch: branch.to_string(),
                        reason: "the repository is a shallow clone, which may simply not have fetched it".into(),
                        hint: format!(
                            "fetch it (`git fetch origin {branch}:{branch}`) or, if the remote has none yet, the whole history (`git fetch --unshallow`; `fetch-depth: 0` in actions/checkout)"
                        ),
                    });
                }
                Ok(Base {
                    tree: default.map(tree_of).transpose()?.flatten(),
                    parents: default.into_iter().collect(),
                    diverged: None,
                    rebuilt: false,
                })
            }
            Some(b) => {
                // Only ever asked of two different commits (`d != b`).
                let descends = |a: git2::Oid, of: git2::Oid| store.contains(a, of);
                match default {
                    Some(d) if d != b && descends(d, b)? => Ok(Base {
                        tree: tree_of(d)?,
                        parents: vec![d],
                        diverged: None,
                        // Derive again only if the default branch changed
                        // what ClearTrail owns (a merged pull request
                        // brings exactly the branch's own files).
                        rebuilt: owned_differ(store, d, b)?,
                    }),
                    Some(d) if d != b && !descends(b, d)? => Ok(Base {
                        tree: tree_of(b)?,
                        parents: vec![b],
                        diverged: Some((b, d)),
                        rebuilt: false,
                    }),
                    _ => Ok(Base {
                        tree: tree_of(b)?,
                        parents: vec![b],
                        diverged: None,
                        rebuilt: false,
                    }),
                }
            }
        }
    }

    /// The default branch's files with ClearTrail's own from the branch,
    /// committed as a merge of both.
    fn graft(&self, store: &Store, default: git2::Oid) -> Result<Base, SyncError> {
        let (b, _) = self.diverged.expect("graft needs a diverged base");
        let tree = store.graft(
            Some(store.commit_tree(default)?),
            Some(store.commit_tree(b)?),
            OWNED,
        )?;
        Ok(Base {
            tree,
            parents: vec![b, default],
            diverged: None,
            rebuilt: true,
        })
    }
}

/// A pause before attempt `attempt + 1`: 5 ms times the attempt, plus up
/// to as much again of jitter from the clock's nanoseconds and the process
/// id (no random source needed to break lockstep).
fn race_pause(attempt: usize) -> std::time::Duration {
    let base = 5 * attempt as u64;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let jitter = (nanos ^ u64::from(std::process::id()).wrapping_mul(2_654_435_761)) % (base + 1);
    std::time::Duration::from_millis(base + jitter)
}

/// What a sync will write.
pub struct Plan {
    pub changes: ChangeSet,
    pub stats: BTreeMap<(String, String), KindStats>,
}

impl Plan {
    /// True when anything other than the cursor state changes: a run that
    /// only moved cursors has nothing new and makes no commit.
    pub fn changed(&self) -> bool {
        self.changes.iter().any(|(p, _)| p != artifact::STATE_PATH)
    }

    /// True when evidence, collection records or tombstones change.
    pub fn evidence_changed(&self) -> bool {
        self.changes.iter().any(|(p, _)| {
            [EVIDENCE_DIR, artifact::COLLECTIONS_DIR, TOMBSTONES_DIR]
                .iter()
                .any(|d| p.starts_with(d) && p.as_bytes().get(d.len()) == Some(&b'/'))
        })
    }

    fn message(&self, period: &Period, now: DateTime<Utc>) -> String {
        let (a, c, r) = self.stats.values().fold((0, 0, 0), |(a, c, r), k| {
            (a + k.added, c + k.changed, r + k.removed)
        });
        let mut m =
            format!("cleartrail sync: {a} added, {c} changed, {r} removed\n\nperiod: {period}\n");
        for k in self.stats.values() {
            m.push_str(&format!(
                "{}/{}: +{} ~{} -{} (held {})\n",
                k.source, k.kind, k.added, k.changed, k.removed, k.held
            ));
        }
        m.push_str(&format!(
            "\nrun: {}\n",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
        m
    }
}

/// An artifact serialized once, ready to be compared with the branch and
/// written: its file bytes and digests, without the parsed values (which
/// cost several times the bytes in memory).
pub struct PreparedItem {
    pub id: Box<str>,
    /// Source, kind and month group, shared by the items of a batch.
    pub class: Arc<ItemClass>,
    /// Shared with the change set and the judged evidence.
    pub json_path: Arc<str>,
    /// The file, deflated as it will go into the pack.
    pub bytes: Content,
    /// The artifact's digest (`sha256`), as bytes.
    pub sha: [u8; 32],
    /// The git blob id of `bytes`.
    pub blob: git2::Oid,
    /// The first day it is evidence for.
    pub start: Option<NaiveDate>,
    /// Captured document, boxed: most items have none.
    pub captured: Option<Box<CapturedItem>>,
}

/// What the prepared items of a batch have in common.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ItemClass {
    pub source: String,
    pub kind: String,
    /// The month group of the shard (`-` when unsharded).
    pub group: String,
}

impl PreparedItem {
    /// The digest in hex, as artifacts and records write it.
    pub fn sha_hex(&self) -> String {
        artifact::canonical::hex(&self.sha)
    }
}

/// A captured document as prepared: (path, bytes, blob id).
pub type CapturedItem = (String, Arc<[u8]>, git2::Oid);

impl PreparedItem {
    /// Serializes and deflates a run of artifacts, in order.
    fn of_all(part: &[Artifact]) -> Vec<Self> {
        let serialized: Vec<(Vec<u8>, [u8; 32])> = part.iter().map(Artifact::to_bytes).collect();
        let packed =
            crate::store::pack::Packed::many_spilled(serialized.iter().map(|(b, _)| b.as_slice()));
        let mut shared: HashSet<Arc<ItemClass>> = HashSet::new();
        let mut share = |c: ItemClass| -> Arc<ItemClass> {
            if let Some(a) = shared.get(&c) {
                return a.clone();
            }
            let a = Arc::new(c);
            shared.insert(a.clone());
            a
        };
        part.iter()
            .zip(serialized)
            .zip(packed)
            .map(|((a, (_, sha)), packed)| PreparedItem {
                id: a.id().into_boxed_str(),
                class: share(ItemClass {
                    source: a.source.clone(),
                    kind: a.kind.clone(),
                    group: group_of_shard(a.shard.as_deref()),
                }),
                json_path: a.json_path().into(),
                blob: packed.oid,
                bytes: Content::Packed(Arc::new(packed)),
                sha,
                start: a.period.map(|p| p.start),
                captured: match (a.captured_path(), &a.captured) {
                    (Some(p), Some(c)) => {
                        Some(Box::new((p, c.bytes.as_slice().into(), blob_id(&c.bytes))))
                    }
                    _ => None,
                },
            })
            .collect()
    }
}

/// Serializes artifacts on two threads, a chunk at a time, dropping each
/// chunk once serialized: the parsed form and the bytes of many artifacts
/// are never both in memory whole.
pub fn prepare_items(items: Vec<Artifact>) -> Vec<PreparedItem> {
    const CHUNK: usize = 4096;
    let mut items = items.into_iter();
    let mut out = Vec::with_capacity(items.len());
    loop {
        let chunk: Vec<Artifact> = items.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let (a, b) = chunk.split_at(chunk.len() / 2);
        let (pa, pb) = std::thread::scope(|scope| {
            let other = scope.spawn(|| PreparedItem::of_all(b));
            let mine = PreparedItem::of_all(a);
            (mine, other.join().expect("serializer thread panicked"))
        });
        out.extend(pa);
        out.extend(pb);
    }
    out
}

/// Where the tombstone of the artifact file at `path` lives.
fn tombstone_path(path: &str) -> String {
    let rel = path
        .strip_prefix(&format!("{EVIDENCE_DIR}/"))
        .unwrap_or(path);
    format!("{TOMBSTONES_DIR}/{rel}")
}

/// The month group of an artifact path below `kind_dir`: `yyyy-mm` when the
/// path is sharded (`<kind dir>/<yyyy-mm>/<bucket>/...`), else `-`.
fn group_of_path(kind_dir: &str, path: &str) -> String {
    let rest = path
        .strip_prefix(kind_dir)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or("");
    let mut segs = rest.split('/');
    match (segs.next(), segs.next(), segs.next()) {
        (Some(m), Some(b), Some(_)) if is_month(m) && is_bucket(b) => m.to_string(),
        _ => "-".to_string(),
    }
}

fn is_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7 && b[4] == b'-' && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
}

fn is_bucket(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// First and last day of a `yyyy-mm` group.
fn month_span(group: &str) -> Option<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::parse_from_str(&format!("{group}-01"), "%Y-%m-%d").ok()?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    Some((first, next.pred_opt()?))
}

/// The saved query states on the branch (`.cleartrail/state.json`), each
/// kept only when the query's collection record saved the same state: an
/// edited state file (a tip moved past a commit, say, so that it is never
/// collected) costs a complete collection instead of hiding evidence.
pub fn read_states(snapshot: &Snapshot<'_>) -> Result<BTreeMap<String, String>, SyncError> {
    let Some(bytes) = snapshot.read(artifact::STATE_PATH)? else {
        return Ok(BTreeMap::new());
    };
    // A damaged state only costs a complete collection.
    let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut recorded: BTreeMap<String, String> = BTreeMap::new();
    for (path, _) in snapshot.files_under(artifact::COLLECTIONS_DIR)? {
        for q in existing_record(snapshot, &path)?
            .map(|e| e.queries)
            .unwrap_or_default()
        {
            if let Some(st) = q.state {
                recorded.insert(format!("{}/{}", q.source_name, q.query_id), st);
            }
        }
    }
    Ok(doc["queries"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let v = v.as_str()?;
                    (recorded.get(k).map(String::as_str) == Some(v))
                        .then(|| (k.clone(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// An existing collection record, as far as planning needs it.
#[derive(Default)]
struct Existing {
    queries: Vec<QueryRecord>,
    groups: BTreeMap<String, GroupDigest>,
    tombstones: Option<GroupDigest>,
}

fn parse_groups(v: &Value) -> BTreeMap<String, GroupDigest> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(g, d)| {
                    Some((
                        g.clone(),
                        GroupDigest {
                            count: d["count"].as_u64()?,
                            digest: d["digest"].as_str()?.to_string(),
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn existing_record(snapshot: &Snapshot<'_>, path: &str) -> Result<Option<Existing>, SyncError> {
    let Some(bytes) = snapshot.read(path)? else {
        return Ok(None);
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
        // `verify` reports a damaged record; this run rebuilds it.
        return Ok(None);
    };
    if doc["schema"] != artifact::COLLECTION_SCHEMA {
        return Ok(None);
    }
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let queries = doc["queries"]
        .as_array()
        .map(|qs| {
            qs.iter()
                .map(|q| QueryRecord {
                    source_name: text(&q["source_name"]),
                    query_id: text(&q["query_id"]),
                    period: DateSpan::from_json(&q["period"]),
                    query: text(&q["query"]),
                    outcome: text(&q["outcome"]),
                    since: q["since"].as_str().map(str::to_string),
                    state: q["state"].as_str().map(str::to_string),
                    groups: parse_groups(&q["groups"]),
                    filters: q["filters"]
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                        .unwrap_or_default(),
                    pages: q["pages"].as_u64().unwrap_or_default(),
                    count: q["count"].as_u64().unwrap_or_default(),
                    digest: text(&q["digest"]),
                    skipped: q["skipped"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|s| (text(&s["path"]), text(&s["reason"])))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let groups = parse_groups(&doc["groups"]);
    let tombstones = Some(GroupDigest {
        count: doc["tombstones"]["count"].as_u64().unwrap_or(u64::MAX),
        digest: text(&doc["tombstones"]["digest"]),
    })
    .filter(|t| t.count != u64::MAX);
    Ok(Some(Existing {
        queries,
        groups,
        tombstones,
    }))
}

/// Count and [`set_digest`] of the tombstones under `dir`, as they will be
/// after `changes`.
fn tombstone_digest(
    snapshot: &Snapshot<'_>,
    changes: &ChangeSet,
    dir: &str,
) -> Result<GroupDigest, SyncError> {
    let mut files: BTreeMap<String, Option<Vec<u8>>> = snapshot
        .files_under(dir)?
        .into_iter()
        .map(|(p, _)| (p, None))
        .collect();
    for (p, c) in changes.iter() {
        if p.starts_with(dir) && p.as_bytes().get(dir.len()) == Some(&b'/') {
            match c {
                Some(b) => {
                    files.insert(p.to_string(), Some(b.bytes().into_owned()));
                }
                None => {
                    files.remove(p);
                }
            }
        }
    }
    let mut lines = Vec::with_capacity(files.len());
    for (p, bytes) in files {
        let bytes = match bytes {
            Some(b) => b,
            None => snapshot.read(&p)?.unwrap_or_default(),
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        lines.push((
            v["id"].as_str().unwrap_or_default().to_string(),
            v["last_sha256"].as_str().unwrap_or_default().to_string(),
        ));
    }
    Ok(GroupDigest {
        count: lines.len() as u64,
        digest: set_digest(lines.iter().map(|(i, s)| (i.as_str(), s.as_str()))),
    })
}

/// Count and [`set_digest`] of some lines.
fn line_digest<'a>(lines: impl Iterator<Item = &'a Line>) -> GroupDigest {
    let pairs: Vec<(&str, &str)> = lines.map(|l| (l.id.as_str(), l.sha.as_str())).collect();
    GroupDigest {
        count: pairs.len() as u64,
        digest: set_digest(pairs.iter().copied()),
    }
}

/// What planning reads from a held artifact it did not get back this run.
struct HeldIdentity {
    id: String,
    sha: String,
    start: Option<NaiveDate>,
    /// `<source name>/<query id>` of the query that found it.
    query: String,
}

fn read_identity(
    snapshot: &Snapshot<'_>,
    path: &str,
    oid: git2::Oid,
) -> Result<HeldIdentity, SyncError> {
    /// The four members planning reads, left as raw JSON text: the rest
    /// of the artifact (its content above all) is skipped unbuilt, which a
    /// month of 10,000 held artifacts read again after new commits
    /// noticed.
    #[derive(serde::Deserialize)]
    struct Members<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        sha256: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        query: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        period: Option<&'a serde_json::value::RawValue>,
    }
    let bytes = snapshot.read_blob(oid)?;
    let corrupt = |reason: String| SyncError::CorruptArtifact {
        path: path.to_string(),
        reason,
    };
    let m: Members<'_> = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let field = |k: &str, raw: Option<&serde_json::value::RawValue>| {
        raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
            .ok_or_else(|| corrupt(format!("no `{k}`")))
    };
    let start = m
        .period
        .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .and_then(|p| p["start"].as_str().and_then(crate::artifact::parse_day));
    Ok(HeldIdentity {
        id: field("id", m.id)?,
        sha: field("sha256", m.sha256)?,
        start,
        query: field("query", m.query)?,
    })
}

/// One artifact returned this run, as planning keeps it.
struct Returned {
    id: String,
    sha: String,
    group: String,
    /// The query label (`<source name>/<query id>`) that returned it.
    label: String,
    start: Option<NaiveDate>,
    /// Added or changed by this run.
    new: bool,
}

/// A held artifact as a line of a digest, with what decides which query's
/// set it belongs to.
struct Line {
    id: String,
    sha: String,
    label: String,
    start: Option<NaiveDate>,
}

/// How the queries of this run cover one (source, kind).
struct Scope<'r> {
    /// Per source name: the results that yielded this kind.
    by_source: BTreeMap<&'r str, Vec<&'r QueryResult>>,
}

impl Scope<'_> {
    /// Whether this run asked about a held object of `source_name` dated
    /// `start`, so that its absence from the answers is a removal.
    fn asked(
        &self,
        source_name: &str,
        id: &str,
        start: Option<NaiveDate>,
        period: &Period,
    ) -> bool {
        // `source:kind:object`
        let object = id.splitn(3, ':').nth(2).unwrap_or_default();
        self.by_source.get(source_name).is_some_and(|rs| {
            rs.iter().any(|r| {
                let whole = r.outcome == Outcome::Complete
                    || (r.outcome == Outcome::Incremental
                        && r.complete_within
                            .iter()
                            .any(|p| object.starts_with(p.as_str())));
                whole && (!r.query.period_scoped || start.is_some_and(|d| period.contains(d)))
            })
        })
    }

    /// Whether a whole month could hold objects this run asked about.
    fn may_ask_in(&self, group: &str, period: &Period) -> bool {
        let complete = self.by_source.values().flatten().filter(|r| {
            r.outcome == Outcome::Complete
                || (r.outcome == Outcome::Incremental && !r.complete_within.is_empty())
        });
        let mut any = false;
        for r in complete {
            any = true;
            if !r.query.period_scoped {
                return true;
            }
        }
        if !any {
            return false;
        }
        match month_span(group) {
            Some((first, last)) => first <= period.end() && last >= period.start(),
            None => true,
        }
    }
}

/// Compares collected results with the branch and produces the change set,
/// tombstones for removed objects and a completeness record per kind.
///
/// Cost grows with what was returned plus what changed: held artifacts are
/// located through the snapshot's path index; a held artifact is read only
/// when this run may have removed it (it was asked about and not returned),
/// or when its month group changed and its digest is needed.
pub fn plan(
    snapshot: &Snapshot<'_>,
    results: &[QueryResult],
    prepared: &[Vec<PreparedItem>],
    opts: &SyncOptions,
) -> Result<Plan, SyncError> {
    let (period, now) = (&opts.period, opts.now);
    let configured = opts.configured.as_ref();
    let mut changes = ChangeSet::new();
    let mut stats: BTreeMap<(String, String), KindStats> = BTreeMap::new();
    let mut returned: BTreeMap<(String, String), HashMap<String, Returned>> = BTreeMap::new();
    let mut returned_paths: HashSet<String> = HashSet::new();
    let mut query_records: BTreeMap<(String, String), Vec<QueryRecord>> = BTreeMap::new();
    let mut scopes: BTreeMap<(String, String), Scope<'_>> = BTreeMap::new();
    let mut states = read_states(snapshot)?;

    for (ri, r) in results.iter().enumerate() {
        if let Some(st) = &r.state {
            states.insert(r.label(), st.clone());
        }
        let mut per_kind: BTreeMap<&str, Vec<(String, String)>> = r
            .query
            .kinds
            .iter()
            .map(|k| (k.as_str(), Vec::new()))
            .collect();
        for kind in &r.query.kinds {
            scopes
                .entry((r.source_type.to_string(), kind.clone()))
                .or_insert_with(|| Scope {
                    by_source: BTreeMap::new(),
                })
                .by_source
                .entry(r.source_name.as_str())
                .or_default()
                .push(r);
        }
        for item in &prepared[ri] {
            let key = (item.class.source.clone(), item.class.kind.clone());
            let st = stats.entry(key.clone()).or_insert_with(|| KindStats {
                source: item.class.source.clone(),
                kind: item.class.kind.clone(),
                ..Default::default()
            });
            st.collected += 1;
            let json_path = &item.json_path;
            if !returned_paths.insert(json_path.to_string()) {
                return Err(SyncError::DuplicateId {
                    source_name: r.source_name.clone(),
                    id: item.id.to_string(),
                });
            }
            // An object that comes back is no longer removed.
            let tomb = tombstone_path(json_path);
            if snapshot.try_blob_id(&tomb)?.is_some() {
                changes.delete(tomb);
            }
            let new = match snapshot.try_blob_id(json_path)? {
                None => {
                    st.added += 1;
                    changes.put_content(json_path.clone(), item.bytes.clone());
                    true
                }
                Some(old) if old != item.blob => {
                    st.changed += 1;
                    changes.put_content(json_path.clone(), item.bytes.clone());
                    true
                }
                Some(_) => false,
            };
            if let Some((cp, bytes, blob)) = item.captured.as_deref() {
                returned_paths.insert(cp.clone());
                if snapshot.try_blob_id(cp)? != Some(*blob) {
                    changes.put(cp.clone(), bytes.clone());
                }
            } else if new {
                // Captured before, not now (the file grew past the limit,
                // or the source no longer hands it over): the old content
                // must not stay beside a record that says it is not there.
                let cp = json_path.trim_end_matches(".json");
                if snapshot.try_blob_id(cp)?.is_some() {
                    changes.delete(cp.to_string());
                }
            }
            let sha = item.sha_hex();
            per_kind
                .entry(item.class.kind.as_str())
                .or_default()
                .push((item.id.to_string(), sha.clone()));
            returned.entry(key).or_default().insert(
                json_path.to_string(),
                Returned {
                    id: item.id.to_string(),
                    sha,
                    group: item.class.group.clone(),
                    label: r.label(),
                    start: item.start,
                    new,
                },
            );
        }
        for (kind, entries) in per_kind {
            let key = (r.source_type.to_string(), kind.to_string());
            stats.entry(key.clone()).or_insert_with(|| KindStats {
                source: r.source_type.to_string(),
                kind: kind.to_string(),
                ..Default::default()
            });
            if r.outcome == Outcome::NotModified {
                // The last record of this query stands (see below).
                query_records.entry(key).or_default();
                continue;
            }
            query_records.entry(key).or_default().push(QueryRecord {
                source_name: r.source_name.clone(),
                query_id: r.query.id.clone(),
                period: r.query.period_scoped.then(|| DateSpan {
                    start: period.start(),
                    end: period.end(),
                }),
                query: r.query.description.clone(),
                outcome: r.outcome.as_str().to_string(),
                since: match r.outcome {
                    Outcome::Incremental => r.since.clone(),
                    _ => None,
                },
                state: r.state.clone(),
                groups: BTreeMap::new(),
                filters: r.query.filters.clone(),
                pages: r.pages,
                count: entries.len() as u64,
                digest: set_digest(entries.iter().map(|(i, s)| (i.as_str(), s.as_str()))),
                skipped: r
                    .skipped
                    .iter()
                    .map(|s| (s.path.clone(), s.reason.clone()))
                    .collect(),
            });
        }
    }

    // Collections that hold evidence of a source no longer configured are
    // cleaned up too, even when no configured source yields their kind.
    if let Some(names) = configured {
        for (path, _) in snapshot.files_under(artifact::COLLECTIONS_DIR)? {
            let Some((src, kind)) = path
                .strip_prefix(&format!("{}/", artifact::COLLECTIONS_DIR))
                .and_then(|r| r.strip_suffix(".json"))
                .and_then(|r| r.split_once('/'))
            else {
                continue;
            };
            let key = (src.to_string(), kind.to_string());
            if query_records.contains_key(&key) {
                continue;
            }
            let orphaned = existing_record(snapshot, &path)?
                .is_some_and(|e| e.queries.iter().any(|q| !names.contains(&q.source_name)));
            if orphaned {
                stats.entry(key.clone()).or_insert_with(|| KindStats {
                    source: src.to_string(),
                    kind: kind.to_string(),
                    ..Default::default()
                });
                query_records.insert(key, Vec::new());
            }
        }
    }

    // Removals, and the completeness record of every (source, kind) this
    // run collected.
    for (key, mut recs) in query_records {
        let (src, kind) = &key;
        let kind_dir = Artifact::kind_dir(src, kind);
        let record_path = CollectionRecord::path(src, kind);
        let existing = existing_record(snapshot, &record_path)?;
        let existing_tombs = existing.as_ref().and_then(|e| e.tombstones.clone());
        let scope = scopes.get(&key);
        let unconfigured = |name: &str| configured.is_some_and(|c| !c.contains(name));
        // Evidence of a renamed or removed source may sit in any month.
        let orphans = existing
            .as_ref()
            .is_some_and(|e| e.queries.iter().any(|q| unconfigured(&q.source_name)));
        let mut back = returned.remove(&key).unwrap_or_default();
        // Month groups whose digest must be recomputed.
        let mut dirty: BTreeSet<String> = back
            .values()
            .filter(|r| r.new)
            .map(|r| r.group.clone())
            .collect();
        if existing.is_none() {
            dirty.extend(back.values().map(|r| r.group.clone()));
        }
        // Held but not returned, by group: (path, blob) to read if needed.
        let mut others: BTreeMap<String, Vec<(String, git2::Oid)>> = BTreeMap::new();
        let mut kept: BTreeMap<String, Vec<Line>> = BTreeMap::new();
        let mut removed = 0u64;
        for (path, oid) in snapshot.files_under(&kind_dir)? {
            if !path.ends_with(".json") || back.contains_key(&path) {
                continue;
            }
            let group = group_of_path(&kind_dir, &path);
            if !orphans && !scope.is_some_and(|s| s.may_ask_in(&group, period)) {
                others.entry(group).or_default().push((path, oid));
                continue;
            }
            let held = read_identity(snapshot, &path, oid)?;
            let source_name = held.query.split('/').next().unwrap_or_default();
            let gone = unconfigured(source_name);
            if gone || scope.is_some_and(|s| s.asked(source_name, &held.id, held.start, period)) {
                removed += 1;
                dirty.insert(group);
                changes.delete(path.clone());
                let captured = path.trim_end_matches(".json").to_string();
                if snapshot.try_blob_id(&captured)?.is_some() && !returned_paths.contains(&captured)
                {
                    changes.delete(captured);
                }
                let tomb = json!({
                    "schema": TOMBSTONE_SCHEMA,
                    "id": held.id,
                    "path": path,
                    "last_sha256": held.sha,
                    "removed_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "reason": if gone {
                        format!("its source `{source_name}` is no longer configured")
                    } else {
                        format!("no longer returned by its source for period {period}")
                    },
                });
                changes.put(tombstone_path(&path), canonical::to_pretty(&tomb));
            } else {
                kept.entry(group).or_default().push(Line {
                    id: held.id,
                    sha: held.sha,
                    label: held.query,
                    start: held.start,
                });
            }
        }
        let mut groups: BTreeMap<String, GroupDigest> = existing
            .as_ref()
            .map(|e| e.groups.clone())
            .unwrap_or_default();
        let all_groups: BTreeSet<String> = back
            .values()
            .map(|r| r.group.clone())
            .chain(others.keys().cloned())
            .chain(kept.keys().cloned())
            .collect();
        groups.retain(|g, _| all_groups.contains(g));
        // Every held line of each recomputed group, for the queries' own
        // group digests below.
        let incremental = recs
            .iter()
            .any(|r| r.outcome == Outcome::Incremental.as_str());
        let mut recomputed: BTreeMap<String, Vec<Line>> = BTreeMap::new();
        for g in &all_groups {
            if !dirty.contains(g) && groups.contains_key(g) {
                continue;
            }
            let mut lines: Vec<Line> = back
                .values()
                .filter(|r| &r.group == g)
                .map(|r| Line {
                    id: r.id.clone(),
                    sha: r.sha.clone(),
                    label: r.label.clone(),
                    start: r.start,
                })
                .collect();
            lines.extend(kept.remove(g).unwrap_or_default());
            for (path, oid) in others.remove(g).unwrap_or_default() {
                let h = read_identity(snapshot, &path, oid)?;
                lines.push(Line {
                    id: h.id,
                    sha: h.sha,
                    label: h.query,
                    start: h.start,
                });
            }
            groups.insert(g.clone(), line_digest(lines.iter()));
            if incremental {
                recomputed.insert(g.clone(), lines);
            }
        }
        // Each query that ran keeps, per month, a digest over everything
        // it has found that is held: after an incremental answer as after a
        // complete one, so `verify` can always check a query's set.
        let previous: BTreeMap<(String, String), BTreeMap<String, GroupDigest>> = existing
            .as_ref()
            .map(|e| {
                e.queries
                    .iter()
                    .map(|q| {
                        (
                            (q.source_name.clone(), q.query_id.clone()),
                            q.groups.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for rec in recs.iter_mut() {
            let label = format!("{}/{}", rec.source_name, rec.query_id);
            let in_scope = |start: Option<NaiveDate>| {
                rec.period
                    .is_none_or(|p| start.is_some_and(|d| p.start <= d && d <= p.end))
            };
            if rec.outcome == Outcome::Complete.as_str() {
                let mut by_group: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
                for r in back
                    .values()
                    .filter(|r| r.label == label && in_scope(r.start))
                {
                    by_group
                        .entry(r.group.as_str())
                        .or_default()
                        .push((r.id.as_str(), r.sha.as_str()));
                }
                rec.groups = by_group
                    .into_iter()
                    .map(|(g, pairs)| {
                        let digest = GroupDigest {
                            count: pairs.len() as u64,
                            digest: set_digest(pairs.iter().copied()),
                        };
                        (g.to_string(), digest)
                    })
                    .collect();
            } else {
                let mut qg = previous
                    .get(&(rec.source_name.clone(), rec.query_id.clone()))
                    .cloned()
                    .unwrap_or_default();
                for (g, lines) in &recomputed {
                    let mine: Vec<&Line> = lines
                        .iter()
                        .filter(|l| l.label == label && in_scope(l.start))
                        .collect();
                    if mine.is_empty() {
                        qg.remove(g);
                    } else {
                        qg.insert(g.clone(), line_digest(mine.into_iter()));
                    }
                }
                rec.groups = qg;
            }
        }
        back.clear();
        // Queries not run, or answered "not modified", keep their last
        // record: the collection still holds what they found.
        let ran: BTreeSet<(String, String)> = recs
            .iter()
            .map(|r| (r.source_name.clone(), r.query_id.clone()))
            .collect();
        if let Some(e) = existing {
            recs.extend(e.queries.into_iter().filter(|q| {
                !ran.contains(&(q.source_name.clone(), q.query_id.clone()))
                    && !unconfigured(&q.source_name)
            }));
        }
        recs.sort_by(|a, b| (&a.source_name, &a.query_id).cmp(&(&b.source_name, &b.query_id)));
        // Tombstones of this kind: recounted when this run adds or drops
        // one (or the record has none yet), else as recorded.
        let tomb_dir = format!("{TOMBSTONES_DIR}/{}", &kind_dir[EVIDENCE_DIR.len() + 1..]);
        let tomb_changed = changes.iter().any(|(p, _)| {
            p.starts_with(&tomb_dir) && p.as_bytes().get(tomb_dir.len()) == Some(&b'/')
        });
        let tombstones = match existing_tombs {
            Some(t) if !tomb_changed => t,
            _ => tombstone_digest(snapshot, &changes, &tomb_dir)?,
        };
        let record = CollectionRecord {
            source: src.clone(),
            kind: kind.clone(),
            queries: recs,
            groups,
            tombstones,
        };
        let bytes = record.to_bytes();
        if snapshot.try_blob_id(&record_path)? != Some(blob_id(&bytes)) {
            changes.put(record_path, bytes);
        }
        if let Some(st) = stats.get_mut(&key) {
            st.removed += removed;
            st.held = record.count();
        }
    }

    let layout = canonical::to_pretty(&json!({
        "schema": "cleartrail.layout/v1",
        "version": artifact::LAYOUT_VERSION,
        "artifact_schema": artifact::ARTIFACT_SCHEMA,
        "collection_schema": artifact::COLLECTION_SCHEMA,
    }));
    if snapshot.try_blob_id(artifact::LAYOUT_PATH)? != Some(blob_id(&layout)) {
        changes.put(artifact::LAYOUT_PATH, layout);
    }

    if !states.is_empty() {
        let doc = json!({
            "schema": STATE_SCHEMA,
            "note": "what each query saved for the next run (cursors, validators); not evidence, never a secret",
            "queries": states,
        });
        let bytes = canonical::to_pretty(&doc);
        if snapshot.try_blob_id(artifact::STATE_PATH)? != Some(blob_id(&bytes)) {
            changes.put(artifact::STATE_PATH, bytes);
        }
    }

    Ok(Plan { changes, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_owns_every_folder_cleartrail_writes_and_its_readme() {
        assert_eq!(
            &OWNED[..artifact::OWNED_FOLDERS.len()],
            artifact::OWNED_FOLDERS
        );
        assert_eq!(OWNED.len(), artifact::OWNED_FOLDERS.len() + 1);
        assert_eq!(OWNED.last(), Some(&"README.md"));
    }

    #[test]
    fn month_groups_come_from_sharded_paths_only() {
        let dir = "evidence/git/change";
        assert_eq!(
            group_of_path(dir, "evidence/git/change/2026-03/ab/app/x.json"),
            "2026-03"
        );
        // A source named like a month, unsharded: not a group.
        assert_eq!(
            group_of_path(dir, "evidence/git/change/2026-03/x.json"),
            "-"
        );
        assert_eq!(
            group_of_path(dir, "evidence/git/change/2026-03/zz/app/x.json"),
            "-"
        );
        assert_eq!(
            month_span("2026-02"),
            Some((
                NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
            ))
        );
    }
}
