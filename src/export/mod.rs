//! Exports of a committed packet and their verification: the export
//! record (`export-manifest.json`, every exported file with its Drive id
//! and SHA-256), the packet as its committed manifest lists it, and the
//! comparison of a copy (a Drive folder read through the API, or a
//! downloaded folder on disk) against that packet, as verify findings.
//!
//! Layout of an export, in the folder given and the same on disk once
//! downloaded: one folder per period (its label), holding the packet's
//! files at their packet paths, `export-manifest.json`, and `superseded/`
//! for files a later packet no longer has (moved there, never deleted).

pub mod gdrive;

use crate::artifact::canonical;
use crate::diag::Diagnostic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const RECORD_SCHEMA: &str = "cleartrail.export/v1";
/// The export record's name in the period folder.
pub const RECORD_FILE: &str = "export-manifest.json";
/// The folder, inside the period folder, of files no longer in the packet.
pub const SUPERSEDED: &str = "superseded";

/// One file of a packet: its path in the packet folder and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// `export-manifest.json`: what an export put where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRecord {
    pub schema: String,
    pub period: String,
    /// The folder given to `export`.
    pub folder: String,
    /// The period's folder inside it.
    pub period_folder: String,
    pub evidence_commit: String,
    /// SHA-256 of the packet's `manifest.json`.
    pub packet_manifest_sha256: String,
    pub files: Vec<ExportedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedFile {
    pub path: String,
    /// The Drive file id.
    pub id: String,
    pub sha256: String,
    pub size: u64,
}

impl ExportRecord {
    /// The record's bytes: canonical, so an unchanged export gives the
    /// same file and is not uploaded again.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical::to_pretty(&canonical::value_of(self))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error(
        "no packet for {period} on {rev} ({root}/manifest.json is missing): render and commit it with `cleartrail packet --period {period}`"
    )]
    Missing {
        period: String,
        rev: String,
        root: String,
    },
    #[error("{path}: not a readable packet manifest")]
    Unreadable { path: String },
}

/// The committed packet under `root` (e.g. `packets/2026`) as its
/// manifest lists it, the manifest itself included. The branch's own
/// verification checks the files against the manifest; an export is
/// compared with the manifest.
pub fn committed_packet(
    snapshot: &crate::store::Snapshot<'_>,
    root: &str,
    period: &str,
    rev: &str,
) -> anyhow::Result<(Vec<Expected>, String)> {
    let mp = format!("{root}/manifest.json");
    let Some(bytes) = snapshot.read(&mp)? else {
        return Err(PacketError::Missing {
            period: period.to_string(),
            rev: rev.to_string(),
            root: root.to_string(),
        }
        .into());
    };
    let (mut expected, commit) =
        manifest_entries(&bytes).ok_or(PacketError::Unreadable { path: mp.clone() })?;
    expected.push(Expected {
        path: "manifest.json".into(),
        sha256: canonical::sha256_hex(&bytes),
        size: bytes.len() as u64,
    });
    expected.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((expected, commit))
}

/// The files a packet manifest lists, and the evidence commit it names.
pub fn manifest_entries(bytes: &[u8]) -> Option<(Vec<Expected>, String)> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if doc["schema"] != crate::packet::MANIFEST_SCHEMA {
        return None;
    }
    let commit = doc["evidence_commit"].as_str()?.to_string();
    let files = doc["files"]
        .as_array()?
        .iter()
        .map(|f| {
            Some(Expected {
                path: f["path"].as_str()?.to_string(),
                sha256: f["sha256"].as_str()?.to_string(),
                size: f["size"].as_u64()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((files, commit))
}

/// What a copy holds at one packet path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A file and its SHA-256 (and its Drive id, for a Drive copy).
    File { sha256: String, id: Option<String> },
    /// Something at the path that is not a plain file (a folder, a
    /// symlink, a native Google file), with what it is.
    Other(String),
}

/// A copy of a period folder: what it holds at each path, the export
/// record excluded, the superseded folder left out.
#[derive(Debug, Default)]
pub struct Copy {
    pub held: BTreeMap<String, Vec<Held>>,
    /// The export records found (one, in a faithful copy).
    pub records: Vec<Vec<u8>>,
}

/// Compares a copy with the packet: every packet file present once with
/// its digest, nothing else; and the copy's export record (when there is
/// one) agrees with the packet and with the ids found. `at` names a path
/// of the copy for a finding.
pub fn compare(
    expected: &[Expected],
    evidence_commit: &str,
    copy: &Copy,
    at: &dyn Fn(&str) -> String,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for e in expected {
        listed.insert(e.path.as_str());
        let held = copy.held.get(&e.path).map(Vec::as_slice).unwrap_or(&[]);
        match held {
            [] => out.push(Diagnostic::error(
                "export-missing",
                at(&e.path),
                format!(
                    "the packet lists {} (sha256 {}), the export does not hold it",
                    e.path, e.sha256
                ),
            )),
            [Held::File { sha256, .. }] if *sha256 == e.sha256 => {}
            [Held::File { sha256, .. }] => out.push(Diagnostic::error(
                "export-mismatch",
                at(&e.path),
                format!(
                    "hashes to {sha256}, the packet's manifest lists {}",
                    e.sha256
                ),
            )),
            [Held::Other(what)] => out.push(Diagnostic::error(
                "export-mismatch",
                at(&e.path),
                format!("is {what}, not the packet's file (sha256 {})", e.sha256),
            )),
            many => out.push(Diagnostic::error(
                "export-mismatch",
                at(&e.path),
                format!(
                    "{} files share this path: a reader cannot tell which is the packet's",
                    many.len()
                ),
            )),
        }
    }
    for (path, held) in &copy.held {
        if !listed.contains(path.as_str()) {
            let what = match held.as_slice() {
                [Held::Other(what)] => what.clone(),
                _ => "a file".to_string(),
            };
            out.push(Diagnostic::error(
                "export-extra",
                at(path),
                format!("{what} that the packet does not list"),
            ));
        }
    }
    let path = at(RECORD_FILE);
    let bytes = match copy.records.as_slice() {
        [] => {
            out.push(Diagnostic::error(
                "export-missing",
                path,
                "the export has no record of what it holds (each file's Drive id and digest)",
            ));
            return out;
        }
        [one] => one,
        many => {
            out.push(Diagnostic::error(
                "export-mismatch",
                path,
                format!(
                    "{} export records: a reader cannot tell which is the export's",
                    many.len()
                ),
            ));
            return out;
        }
    };
    {
        match serde_json::from_slice::<ExportRecord>(bytes) {
            Ok(r) if r.schema != RECORD_SCHEMA => out.push(Diagnostic::error(
                "export-mismatch",
                path,
                format!("unknown schema `{}`", r.schema),
            )),
            Ok(r) => record_findings(&r, expected, evidence_commit, copy, &path, &mut out),
            Err(e) => out.push(Diagnostic::error(
                "export-mismatch",
                path,
                format!("not a readable export record: {e}"),
            )),
        }
    }
    out
}

/// The export record must describe the packet and the files found.
fn record_findings(
    r: &ExportRecord,
    expected: &[Expected],
    evidence_commit: &str,
    copy: &Copy,
    path: &str,
    out: &mut Vec<Diagnostic>,
) {
    let mut bad = |m: String| out.push(Diagnostic::error("export-mismatch", path, m));
    if r.evidence_commit != evidence_commit {
        bad(format!(
            "records evidence commit {}, the packet was rendered from {evidence_commit}",
            r.evidence_commit
        ));
    }
    let want: BTreeMap<&str, &str> = expected
        .iter()
        .map(|e| (e.path.as_str(), e.sha256.as_str()))
        .collect();
    let recorded: BTreeMap<&str, &ExportedFile> =
        r.files.iter().map(|f| (f.path.as_str(), f)).collect();
    if want.get("manifest.json") != Some(&r.packet_manifest_sha256.as_str()) {
        bad(format!(
            "records packet manifest {}, the packet's manifest.json hashes otherwise",
            r.packet_manifest_sha256
        ));
    }
    for (p, sha) in &want {
        match recorded.get(p) {
            None => bad(format!("does not list {p}")),
            Some(f) if f.sha256 != *sha => bad(format!(
                "lists {p} with sha256 {}, the packet's is {sha}",
                f.sha256
            )),
            Some(f) => {
                // A recorded id that is not the file found at the path
                // means the record describes another copy.
                let ids: Vec<&str> = copy
                    .held
                    .get(*p)
                    .into_iter()
                    .flatten()
                    .filter_map(|h| match h {
                        Held::File { id: Some(id), .. } => Some(id.as_str()),
                        _ => None,
                    })
                    .collect();
                if !ids.is_empty() && !ids.contains(&f.id.as_str()) {
                    bad(format!(
                        "lists {p} as Drive file {}, the folder holds {}",
                        f.id,
                        ids.join(", ")
                    ));
                }
            }
        }
    }
    for p in recorded.keys() {
        if !want.contains_key(p) {
            bad(format!("lists {p}, which the packet does not"));
        }
    }
}

/// A downloaded copy of a period folder on disk. Symlinks are never
/// followed: a link is reported as what it is, wherever it points.
pub fn read_dir_copy(dir: &Path) -> std::io::Result<Copy> {
    let mut copy = Copy::default();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = pending.pop() {
        let mut entries = std::fs::read_dir(&d)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let kind = e.file_type()?;
            if kind.is_symlink() {
                let target = std::fs::read_link(e.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                copy.held
                    .entry(rel)
                    .or_default()
                    .push(Held::Other(format!("a symlink to {target}")));
            } else if kind.is_dir() {
                if !(prefix.is_empty() && name == SUPERSEDED) {
                    pending.push((e.path(), rel));
                }
            } else if kind.is_file() && prefix.is_empty() && name == RECORD_FILE {
                copy.records.push(std::fs::read(e.path())?);
            } else if kind.is_file() {
                let bytes = std::fs::read(e.path())?;
                copy.held.entry(rel).or_default().push(Held::File {
                    sha256: canonical::sha256_hex(&bytes),
                    id: None,
                });
            } else {
                copy.held
                    .entry(rel)
                    .or_default()
                    .push(Held::Other("not a regular file".into()));
            }
        }
    }
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(path: &str, sha: &str) -> Expected {
        Expected {
            path: path.into(),
            sha256: sha.into(),
            size: 1,
        }
    }

    fn file(sha: &str, id: &str) -> Held {
        Held::File {
            sha256: sha.into(),
            id: Some(id.into()),
        }
    }

    #[test]
    fn a_faithful_copy_has_no_findings_and_each_difference_one() {
        let expected = vec![exp("a.md", "aa"), exp("manifest.json", "mm")];
        let mut copy = Copy::default();
        copy.held.insert("a.md".into(), vec![file("aa", "1")]);
        copy.held
            .insert("manifest.json".into(), vec![file("mm", "2")]);
        let record = ExportRecord {
            schema: RECORD_SCHEMA.into(),
            period: "2026".into(),
            folder: "top".into(),
            period_folder: "p".into(),
            evidence_commit: "c".into(),
            packet_manifest_sha256: "mm".into(),
            files: vec![
                ExportedFile {
                    path: "a.md".into(),
                    id: "1".into(),
                    sha256: "aa".into(),
                    size: 1,
                },
                ExportedFile {
                    path: "manifest.json".into(),
                    id: "2".into(),
                    sha256: "mm".into(),
                    size: 1,
                },
            ],
        };
        copy.records = vec![record.to_bytes()];
        let at = |p: &str| format!("drive:{p}");
        assert_eq!(compare(&expected, "c", &copy, &at), vec![]);

        let codes = |c: &Copy, commit: &str| -> Vec<(&'static str, String)> {
            compare(&expected, commit, c, &at)
                .into_iter()
                .map(|d| (d.code, d.path))
                .collect()
        };
        let mut changed = Copy {
            held: copy.held.clone(),
            records: copy.records.clone(),
        };
        changed.held.insert("a.md".into(), vec![file("zz", "1")]);
        assert_eq!(
            codes(&changed, "c"),
            vec![("export-mismatch", "drive:a.md".to_string())]
        );
        changed.held.remove("a.md");
        changed.held.insert("b.md".into(), vec![file("bb", "3")]);
        assert_eq!(
            codes(&changed, "c"),
            vec![
                ("export-missing", "drive:a.md".to_string()),
                ("export-extra", "drive:b.md".to_string())
            ]
        );
        // Another copy's record, or a record of another commit.
        let mut other = Copy {
            held: copy.held.clone(),
            records: copy.records.clone(),
        };
        other.held.insert("a.md".into(), vec![file("aa", "9")]);
        assert_eq!(
            codes(&other, "c"),
            vec![("export-mismatch", "drive:export-manifest.json".to_string())]
        );
        assert_eq!(
            codes(&copy, "d"),
            vec![("export-mismatch", "drive:export-manifest.json".to_string())]
        );
        // Two files at one path.
        let mut twice = Copy {
            held: copy.held.clone(),
            records: copy.records.clone(),
        };
        twice
            .held
            .insert("a.md".into(), vec![file("aa", "1"), file("aa", "4")]);
        assert_eq!(
            codes(&twice, "c"),
            vec![("export-mismatch", "drive:a.md".to_string())]
        );
        // No record, or two.
        let none = Copy {
            held: copy.held.clone(),
            records: vec![],
        };
        assert_eq!(
            codes(&none, "c"),
            vec![("export-missing", "drive:export-manifest.json".to_string())]
        );
        let two = Copy {
            held: copy.held.clone(),
            records: vec![copy.records[0].clone(), copy.records[0].clone()],
        };
        assert_eq!(
            codes(&two, "c"),
            vec![("export-mismatch", "drive:export-manifest.json".to_string())]
        );
    }
}
