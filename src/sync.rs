//! Sync: collect from every configured source, normalize, and commit what
//! changed to the evidence branch.
//!
//! Collection happens once; planning (what to add, change, remove, and
//! the completeness record of each collection) and the commit are retried
//! on top of the new tip when another writer moved the branch meanwhile,
//! so neither writer's work is lost.

use crate::artifact::{
    self, Artifact, CollectionRecord, EVIDENCE_DIR, QueryRecord, TOMBSTONE_SCHEMA, TOMBSTONES_DIR,
    canonical, path::escape_name, set_digest,
};
use crate::config::Config;
use crate::connectors::{self, ConnectorError, Limits, QueryResult};
use crate::period::Period;
use crate::store::{Author, ChangeSet, CommitOutcome, Snapshot, Store, StoreError, blob_id};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How many times a lost race for the branch is retried on the new tip.
pub const MAX_ATTEMPTS: usize = 5;

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
}

/// Files derived from the evidence about to be committed (checks,
/// mappings, index), given the base snapshot and the planned changes.
/// `None` deletes a derived file that is no longer produced.
pub type Derive<'a> =
    dyn Fn(&Snapshot<'_>, &ChangeSet) -> Result<Vec<(String, Option<Vec<u8>>)>, SyncError> + 'a;

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
}

/// Collects every configured source concurrently.
pub async fn collect_all(
    config: &Config,
    opts: &SyncOptions,
) -> Result<Vec<QueryResult>, SyncError> {
    let mut set = tokio::task::JoinSet::new();
    for src in &config.sources {
        let conn = connectors::from_config(src, &opts.period);
        let limits = opts.limits;
        let name = src.name.clone();
        set.spawn(async move {
            let r = connectors::collect(conn.as_ref(), limits, crate::clock::now).await;
            (name, r)
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
    if let Some(e) = first_err {
        return Err(e);
    }
    // Join order is arbitrary; plans must not depend on it.
    all.sort_by(|a, b| (&a.source_name, &a.query.id).cmp(&(&b.source_name, &b.query.id)));
    Ok(all)
}

/// Collects, plans and commits, retrying the plan on a lost race.
pub async fn sync(
    store: &Store,
    config: &Config,
    opts: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let results = collect_all(config, opts).await?;
    commit_results(store, &config.branch, &results, opts)
}

/// Plans and commits already-collected results.
pub fn commit_results(
    store: &Store,
    branch: &str,
    results: &[QueryResult],
    opts: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    commit_with(store, branch, results, opts, None)
}

/// Plans, adds the derived files, and commits it all in one commit.
pub fn commit_with(
    store: &Store,
    branch: &str,
    results: &[QueryResult],
    opts: &SyncOptions,
    derived: Option<&Derive<'_>>,
) -> Result<SyncReport, SyncError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tip = store.branch_tip(branch)?;
        // A new evidence branch forks from HEAD, so that its pull request
        // shares history with the default branch.
        let base = match tip {
            Some(t) => Some(t),
            None => store.resolve("HEAD").ok(),
        };
        let snapshot = store.snapshot(base)?;
        let mut plan = plan(&snapshot, results, &opts.period, opts.now)?;
        if let Some(derive_files) = derived {
            for (path, bytes) in derive_files(&snapshot, &plan.changes)? {
                match bytes {
                    Some(b) if snapshot.blob_id(&path) != Some(blob_id(&b)) => {
                        plan.changes.put(path, b)
                    }
                    None if snapshot.blob_id(&path).is_some() => plan.changes.delete(path),
                    _ => {}
                }
            }
        }
        let author = Author {
            time: opts.now,
            ..Author::default()
        };
        let message = plan.message(&opts.period, opts.now);
        let outcome = if plan.changed() {
            store.commit(branch, tip, base, &plan.changes, &message, &author)
        } else {
            Ok(CommitOutcome::Unchanged { tip })
        };
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
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
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

/// Where the tombstone of the artifact file at `path` lives.
fn tombstone_path(path: &str) -> String {
    let rel = path
        .strip_prefix(&format!("{EVIDENCE_DIR}/"))
        .unwrap_or(path);
    format!("{TOMBSTONES_DIR}/{rel}")
}

/// Query records of an existing collection record.
fn existing_queries(snapshot: &Snapshot<'_>, path: &str) -> Result<Vec<QueryRecord>, SyncError> {
    let Some(bytes) = snapshot.read(path)? else {
        return Ok(Vec::new());
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
        // `verify` reports a damaged record; this run rewrites it.
        return Ok(Vec::new());
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok(doc["queries"]
        .as_array()
        .map(|qs| {
            qs.iter()
                .map(|q| QueryRecord {
                    source_name: text(&q["source_name"]),
                    query: text(&q["query"]),
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
        .unwrap_or_default())
}

/// An artifact's id, sha256 and period start, as read back from the branch.
type Identity = (String, String, Option<NaiveDate>);

fn identity(
    known: &mut HashMap<String, Identity>,
    snapshot: &Snapshot<'_>,
    path: &str,
    oid: git2::Oid,
) -> Result<Identity, SyncError> {
    if let Some(found) = known.get(path) {
        return Ok(found.clone());
    }
    let found = read_identity(snapshot, path, oid)?;
    known.insert(path.to_string(), found.clone());
    Ok(found)
}

fn read_identity(
    snapshot: &Snapshot<'_>,
    path: &str,
    oid: git2::Oid,
) -> Result<Identity, SyncError> {
    let bytes = snapshot.read_blob(oid)?;
    let corrupt = |reason: String| SyncError::CorruptArtifact {
        path: path.to_string(),
        reason,
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| corrupt("no `id`".into()))?
        .to_string();
    let sha = v["sha256"]
        .as_str()
        .ok_or_else(|| corrupt("no `sha256`".into()))?
        .to_string();
    let start = v["period"]["start"]
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok());
    Ok((id, sha, start))
}

/// Compares collected results with the branch and produces the change set,
/// tombstones for removed objects and a completeness record per kind.
pub fn plan(
    snapshot: &Snapshot<'_>,
    results: &[QueryResult],
    period: &Period,
    now: DateTime<Utc>,
) -> Result<Plan, SyncError> {
    let mut changes = ChangeSet::new();
    let mut stats: BTreeMap<(String, String), KindStats> = BTreeMap::new();
    // (source, kind) -> id -> sha256 for everything returned this run.
    let mut returned: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    let mut returned_paths: BTreeSet<String> = BTreeSet::new();
    let mut query_records: BTreeMap<(String, String), Vec<QueryRecord>> = BTreeMap::new();

    for r in results {
        let mut per_kind: BTreeMap<&str, Vec<(String, String)>> = r
            .query
            .kinds
            .iter()
            .map(|k| (k.as_str(), Vec::new()))
            .collect();
        for item in &r.items {
            let key = (item.source.clone(), item.kind.clone());
            let st = stats.entry(key.clone()).or_insert_with(|| KindStats {
                source: item.source.clone(),
                kind: item.kind.clone(),
                ..Default::default()
            });
            st.collected += 1;
            let (bytes, sha) = item.to_bytes();
            let id = item.id();
            let json_path = item.json_path();
            if !returned_paths.insert(json_path.clone()) {
                return Err(SyncError::DuplicateId {
                    source_name: r.source_name.clone(),
                    id,
                });
            }
            // An object that comes back is no longer removed.
            let tomb = tombstone_path(&json_path);
            if snapshot.blob_id(&tomb).is_some() {
                changes.delete(tomb);
            }
            let new_id = blob_id(&bytes);
            match snapshot.blob_id(&json_path) {
                None => {
                    st.added += 1;
                    changes.put(json_path, bytes);
                }
                Some(old) if old != new_id => {
                    st.changed += 1;
                    changes.put(json_path, bytes);
                }
                Some(_) => {}
            }
            if let (Some(cp), Some(c)) = (item.captured_path(), &item.captured) {
                returned_paths.insert(cp.clone());
                if snapshot.blob_id(&cp) != Some(blob_id(&c.bytes)) {
                    changes.put(cp, c.bytes.clone());
                }
            }
            per_kind
                .entry(item.kind.as_str())
                .or_default()
                .push((id.clone(), sha.clone()));
            returned.entry(key).or_default().insert(id, sha);
        }
        for (kind, entries) in per_kind {
            let key = (r.source_type.to_string(), kind.to_string());
            stats.entry(key.clone()).or_insert_with(|| KindStats {
                source: r.source_type.to_string(),
                kind: kind.to_string(),
                ..Default::default()
            });
            returned.entry(key.clone()).or_default();
            query_records.entry(key).or_default().push(QueryRecord {
                source_name: r.source_name.clone(),
                query: r.query.description.clone(),
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

    // Removals: held artifacts in the scope of a query that were not returned.
    let mut scoped: HashMap<String, bool> = HashMap::new();
    for r in results {
        for kind in &r.query.kinds {
            let dir = format!(
                "{}/{}",
                Artifact::kind_dir(r.source_type, kind),
                escape_name(&r.source_name)
            );
            let entry = scoped.entry(dir).or_insert(false);
            *entry |= r.query.period_scoped;
        }
    }
    let mut removed_ids: BTreeSet<String> = BTreeSet::new();
    // Held artifacts not returned this run are read once, for both the
    // removal check and the collection digest.
    let mut known: HashMap<String, Identity> = HashMap::new();
    let mut scoped_dirs: Vec<(&String, &bool)> = scoped.iter().collect();
    scoped_dirs.sort();
    for (dir, period_scoped) in scoped_dirs {
        for (path, oid) in snapshot.files_under(dir)? {
            if !path.ends_with(".json") || returned_paths.contains(&path) {
                continue;
            }
            let (id, sha, start) = identity(&mut known, snapshot, &path, oid)?;
            if *period_scoped && !start.is_some_and(|d| period.contains(d)) {
                // Not asked about this run: outside the period.
                continue;
            }
            let mut parts = id.splitn(3, ':');
            let (src, kind) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let st = stats
                .entry((src.to_string(), kind.to_string()))
                .or_default();
            st.removed += 1;
            changes.delete(path.clone());
            let captured = path.trim_end_matches(".json").to_string();
            if snapshot.blob_id(&captured).is_some() && !returned_paths.contains(&captured) {
                changes.delete(captured);
            }
            let tomb = json!({
                "schema": TOMBSTONE_SCHEMA,
                "id": id,
                "last_sha256": sha,
                "removed_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "reason": format!("no longer returned by its source for period {period}"),
            });
            changes.put(tombstone_path(&path), canonical::to_pretty(&tomb));
            removed_ids.insert(id);
        }
    }

    // Completeness records over everything held per (source, kind).
    for (key, recs) in query_records {
        let (src, kind) = &key;
        let mut held: BTreeMap<String, String> = returned.get(&key).cloned().unwrap_or_default();
        for (path, oid) in snapshot.files_under(&Artifact::kind_dir(src, kind))? {
            if !path.ends_with(".json") || returned_paths.contains(&path) {
                continue;
            }
            let (id, sha, _) = identity(&mut known, snapshot, &path, oid)?;
            if !removed_ids.contains(&id) {
                held.entry(id).or_insert(sha);
            }
        }
        let mut recs = recs;
        // Sources not collected this run (`--source`) keep their last
        // record: the collection still holds their artifacts.
        let path = CollectionRecord::path(src, kind);
        let ran: BTreeSet<String> = recs.iter().map(|r| r.source_name.clone()).collect();
        recs.extend(
            existing_queries(snapshot, &path)?
                .into_iter()
                .filter(|q| !ran.contains(&q.source_name)),
        );
        recs.sort_by(|a, b| (&a.source_name, &a.query).cmp(&(&b.source_name, &b.query)));
        let record = CollectionRecord {
            source: src.clone(),
            kind: kind.clone(),
            queries: recs,
            count: held.len() as u64,
            digest: set_digest(held.iter().map(|(i, s)| (i.as_str(), s.as_str()))),
        };
        let bytes = record.to_bytes();
        if snapshot.blob_id(&path) != Some(blob_id(&bytes)) {
            changes.put(path, bytes);
        }
        if let Some(st) = stats.get_mut(&key) {
            st.held = held.len() as u64;
        }
    }

    Ok(Plan { changes, stats })
}
