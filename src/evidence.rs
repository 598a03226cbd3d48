//! The evidence held on a branch, read back as parsed artifacts, for
//! mapping, checks, gaps and packets. An optional change set overlays the
//! commit being prepared, so derived files describe exactly what the
//! commit will hold.

use crate::artifact::EVIDENCE_DIR;
use crate::store::{ChangeSet, Snapshot, StoreError};
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::BTreeMap;

/// One artifact as held.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: String,
    pub source: String,
    pub kind: String,
    /// Path of the artifact file in the repository.
    pub path: String,
    pub doc: Value,
}

impl Held {
    /// The last day the artifact is evidence for.
    pub fn period_end(&self) -> Option<NaiveDate> {
        self.doc["period"]["end"]
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    }

    /// The first day the artifact is evidence for.
    pub fn period_start(&self) -> Option<NaiveDate> {
        self.doc["period"]["start"]
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    }

    pub fn content(&self) -> &Value {
        &self.doc["content"]
    }

    /// Looks up a dotted path in `content`.
    pub fn field(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self.content(), |v, k| v.get(k))
    }

    pub fn title(&self) -> &str {
        self.doc["title"].as_str().unwrap_or_default()
    }
}

/// Every parseable artifact under `evidence/`, sorted by id. Unparseable
/// files are left to `verify` to report.
pub fn load(snapshot: &Snapshot<'_>, overlay: Option<&ChangeSet>) -> Result<Vec<Held>, StoreError> {
    let mut files: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for (path, oid) in snapshot.files_under(EVIDENCE_DIR)? {
        if path.ends_with(".json") {
            files.insert(path, None);
            let _ = oid;
        }
    }
    if let Some(cs) = overlay {
        for (path, change) in cs.iter() {
            if !path.starts_with(&format!("{EVIDENCE_DIR}/")) || !path.ends_with(".json") {
                continue;
            }
            match change {
                Some(bytes) => {
                    files.insert(path.clone(), Some(bytes.clone()));
                }
                None => {
                    files.remove(path);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let bytes = match bytes {
            Some(b) => b,
            None => match snapshot.read(&path)? {
                Some(b) => b,
                None => continue,
            },
        };
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let (Some(id), Some(source), Some(kind)) = (
            doc["id"].as_str(),
            doc["source"].as_str(),
            doc["kind"].as_str(),
        ) else {
            continue;
        };
        out.push(Held {
            id: id.to_string(),
            source: source.to_string(),
            kind: kind.to_string(),
            path,
            doc: doc.clone(),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
