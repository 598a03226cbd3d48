//! Offline verification of an evidence branch: every artifact re-hashed,
//! every captured document re-hashed, every collection's digest recomputed
//! from the files actually present. Each mismatch is a [`Diagnostic`] with a
//! stable code and the path; nothing here needs a network or a credential.

use crate::artifact::{
    ARTIFACT_SCHEMA, Artifact, COLLECTION_SCHEMA, COLLECTIONS_DIR, EVIDENCE_DIR, canonical, path,
    set_digest,
};
use crate::diag::Diagnostic;
use crate::store::{Snapshot, StoreError};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Codes of verify findings, with what each means.
pub const CODES: &[(&str, &str)] = &[
    (
        "artifact-invalid",
        "an artifact file is not valid JSON or lacks a required field",
    ),
    (
        "artifact-hash-mismatch",
        "an artifact's `content` does not hash to its recorded `sha256`",
    ),
    (
        "artifact-misplaced",
        "an artifact file is not at the path its id maps to",
    ),
    (
        "captured-missing",
        "the captured document an artifact names is not beside it",
    ),
    (
        "captured-hash-mismatch",
        "a captured document's bytes do not hash to the recorded SHA-256",
    ),
    (
        "collection-invalid",
        "a collection record is not valid JSON or lacks a required field",
    ),
    (
        "collection-digest-mismatch",
        "the artifacts held do not match a collection record's digest",
    ),
    (
        "collection-count-mismatch",
        "the number of artifacts held does not match a collection record's count",
    ),
    (
        "collection-missing",
        "artifacts are held for a source and kind that has no collection record",
    ),
];

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub commit: String,
    pub artifacts: u64,
    pub captured: u64,
    pub collections: u64,
    pub findings: Vec<Diagnostic>,
}

const REQUIRED: &[&str] = &[
    "schema",
    "id",
    "source",
    "kind",
    "object_id",
    "url",
    "title",
    "period",
    "observed",
    "content",
    "query",
    "sha256",
];

/// Verifies the files of one commit.
pub fn verify(snapshot: &Snapshot<'_>, commit: &str) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        commit: commit.to_string(),
        ..Default::default()
    };
    // (source dir, kind dir) -> id -> sha256, as found in the files.
    let mut held: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    let files = snapshot.files_under(EVIDENCE_DIR)?;
    let paths: BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    let mut captured_paths: BTreeSet<String> = BTreeSet::new();
    for (p, oid) in &files {
        if !p.ends_with(".json") {
            continue;
        }
        let mut segs = p.splitn(4, '/');
        let (_, src_dir, kind_dir) = (
            segs.next(),
            segs.next().unwrap_or(""),
            segs.next().unwrap_or(""),
        );
        report.artifacts += 1;
        let bytes = snapshot.read_blob(*oid)?;
        let doc: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                report.findings.push(Diagnostic::error(
                    "artifact-invalid",
                    p,
                    format!("not valid JSON: {e}"),
                ));
                continue;
            }
        };
        if let Some(missing) = REQUIRED.iter().find(|k| doc.get(**k).is_none()) {
            report.findings.push(Diagnostic::error(
                "artifact-invalid",
                p,
                format!("missing field `{missing}`"),
            ));
            continue;
        }
        if doc["schema"] != ARTIFACT_SCHEMA {
            report.findings.push(Diagnostic::error(
                "artifact-invalid",
                p,
                format!("unknown schema {}", doc["schema"]),
            ));
            continue;
        }
        let recorded = doc["sha256"].as_str().unwrap_or_default().to_string();
        let actual = canonical::digest_value(&doc["content"]);
        if actual != recorded {
            report.findings.push(Diagnostic::error(
                "artifact-hash-mismatch",
                p,
                format!("content hashes to {actual}, but the file records {recorded}"),
            ));
        }
        let (source, kind, object_id) = (
            doc["source"].as_str().unwrap_or_default(),
            doc["kind"].as_str().unwrap_or_default(),
            doc["object_id"].as_str().unwrap_or_default(),
        );
        let id = doc["id"].as_str().unwrap_or_default().to_string();
        let expected_path = format!(
            "{}/{}.json",
            Artifact::kind_dir(source, kind),
            path::escape_object_path(object_id)
        );
        if expected_path != *p || id != format!("{source}:{kind}:{object_id}") {
            report.findings.push(Diagnostic::error(
                "artifact-misplaced",
                p,
                format!("id `{id}` belongs at {expected_path}"),
            ));
        }
        if let Some(cap) = doc["content"].get("captured").filter(|c| c.is_object()) {
            report.captured += 1;
            let cpath = p.trim_end_matches(".json").to_string();
            captured_paths.insert(cpath.clone());
            let want = cap["sha256"].as_str().unwrap_or_default();
            match paths
                .contains(cpath.as_str())
                .then(|| snapshot.read(&cpath))
            {
                Some(Ok(Some(b))) => {
                    let got = canonical::sha256_hex(&b);
                    if got != want {
                        report.findings.push(Diagnostic::error(
                            "captured-hash-mismatch",
                            &cpath,
                            format!("bytes hash to {got}, but {p} records {want}"),
                        ));
                    }
                }
                Some(Err(e)) => return Err(e),
                _ => report.findings.push(Diagnostic::error(
                    "captured-missing",
                    p,
                    format!("captured document {cpath} is missing"),
                )),
            }
        }
        held.entry((src_dir.to_string(), kind_dir.to_string()))
            .or_default()
            .insert(id, recorded);
    }

    for (p, _) in &files {
        if !p.ends_with(".json") && !captured_paths.contains(p) {
            report.findings.push(Diagnostic::error(
                "stray-file",
                p,
                "no artifact names this file: it was added outside cleartrail",
            ));
        }
    }

    let mut recorded_kinds = BTreeSet::new();
    for (p, oid) in snapshot.files_under(COLLECTIONS_DIR)? {
        let Some(rest) = p
            .strip_prefix(&format!("{COLLECTIONS_DIR}/"))
            .and_then(|r| r.strip_suffix(".json"))
        else {
            continue;
        };
        let Some((src_dir, kind_dir)) = rest.split_once('/') else {
            continue;
        };
        report.collections += 1;
        let key = (src_dir.to_string(), kind_dir.to_string());
        recorded_kinds.insert(key.clone());
        let doc: Value = match serde_json::from_slice(&snapshot.read_blob(oid)?) {
            Ok(v) => v,
            Err(e) => {
                report.findings.push(Diagnostic::error(
                    "collection-invalid",
                    &p,
                    format!("not valid JSON: {e}"),
                ));
                continue;
            }
        };
        let (Some(digest), Some(count)) = (doc["digest"].as_str(), doc["count"].as_u64()) else {
            report.findings.push(Diagnostic::error(
                "collection-invalid",
                &p,
                "missing `digest` or `count`",
            ));
            continue;
        };
        if doc["schema"] != COLLECTION_SCHEMA {
            report.findings.push(Diagnostic::error(
                "collection-invalid",
                &p,
                format!("unknown schema {}", doc["schema"]),
            ));
            continue;
        }
        let set = held.get(&key).cloned().unwrap_or_default();
        let actual = set_digest(set.iter().map(|(i, s)| (i.as_str(), s.as_str())));
        if actual != digest {
            let dir = format!("{EVIDENCE_DIR}/{src_dir}/{kind_dir}");
            report.findings.push(Diagnostic::error(
                "collection-digest-mismatch",
                &p,
                format!(
                    "the {} artifacts under {dir} give digest {actual}, the record says {digest} ({count} artifacts): an artifact was removed, added or altered",
                    set.len()
                ),
            ));
        }
        if set.len() as u64 != count {
            report.findings.push(Diagnostic::error(
                "collection-count-mismatch",
                &p,
                format!("{} artifacts held, the record says {count}", set.len()),
            ));
        }
    }
    for (key, set) in &held {
        if !recorded_kinds.contains(key) {
            report.findings.push(Diagnostic::error(
                "collection-missing",
                format!("{EVIDENCE_DIR}/{}/{}", key.0, key.1),
                format!("{} artifacts held without a collection record", set.len()),
            ));
        }
    }
    report
        .findings
        .sort_by(|a, b| (&a.path, a.code).cmp(&(&b.path, b.code)));
    Ok(report)
}
