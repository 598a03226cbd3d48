//! Attacks on the evidence branch, as an adversary with push access would
//! make them: edit any field of an artifact (with or without resealing its
//! digest), delete or move one, forge an object, edit a derived page, drop
//! a record, plant a file. `verify` must name each one with its code and
//! path, exit 1, and every verify code in the registry must be produced by
//! at least one attack here.

mod common;

use cleartrail::artifact::canonical;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

const BRANCH: &str = "cleartrail/evidence";

/// A fixture synced for 2026, ready to be attacked.
fn synced() -> Fixture {
    let f = Fixture::new();
    let out = sync_into(&f, &f.default_config(), &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ok = verify(&f.evidence());
    assert!(ok.is_empty(), "clean branch has findings: {ok:?}");
    f
}

/// (code, path) of every finding; exit 1 when there are any.
fn verify(repo: &Path) -> BTreeSet<(String, String)> {
    verify_with(repo, &[])
}

/// `verify --format json` with extra arguments: the findings as (code,
/// path), the exit code checked against them.
fn verify_with(repo: &Path, extra: &[&str]) -> BTreeSet<(String, String)> {
    let mut args = vec!["--repo", repo.to_str().unwrap()];
    args.extend_from_slice(extra);
    verify_findings(&args)
}

fn has(found: &BTreeSet<(String, String)>, code: &str, path: &str) -> bool {
    found.contains(&(code.to_string(), path.to_string()))
}

fn a_commit_artifact(f: &Fixture) -> String {
    artifact_path(
        &f.evidence(),
        BRANCH,
        "evidence/git/commit",
        &f.commits[2].to_string(),
    )
}

fn doc_at(repo: &Path, path: &str) -> Value {
    serde_json::from_slice(&tree_files(repo, BRANCH)[path]).unwrap()
}

fn write_doc(repo: &Path, path: &str, doc: &Value) {
    tamper(repo, BRANCH, path, Some(&canonical::to_pretty(doc)));
}

/// Each field edited alone, digest left as it was.
fn edit_each_field() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for (field, forged) in [
        (
            "period",
            serde_json::json!({"start": "2025-01-01", "end": "2025-01-01"}),
        ),
        ("url", serde_json::json!("https://evil.example/commit/1")),
        ("title", serde_json::json!("Harmless")),
        (
            "observed",
            serde_json::json!({"committed": "2025-01-01T00:00:00Z"}),
        ),
        ("query", serde_json::json!("app/other")),
        ("content", serde_json::json!({"signed": true})),
    ] {
        let f = synced();
        let path = a_commit_artifact(&f);
        let mut d = doc_at(&f.evidence(), &path);
        d[field] = forged;
        write_doc(&f.evidence(), &path, &d);
        let found = verify(&f.evidence());
        assert!(
            has(&found, "artifact-hash-mismatch", &path),
            "editing `{field}` went unnoticed: {found:?}"
        );
        codes.extend(found.into_iter().map(|(c, _)| c));
    }
    codes
}

#[test]
fn editing_any_field_of_an_artifact_is_caught() {
    edit_each_field();
}

/// The digest is over the document, not its text: the same artifact
/// written another way (a member moved first, `/` escaped) still verifies,
/// and the same rewrite with one character of content changed does not.
#[test]
fn an_artifact_rewritten_without_a_change_still_verifies() {
    let f = synced();
    let repo = f.evidence();
    let path = a_commit_artifact(&f);
    let doc = doc_at(&repo, &path);
    let rewrite = |doc: &Value| {
        let mut members = doc.as_object().unwrap().clone();
        let url = members.remove("url").unwrap();
        let rest = serde_json::to_string(&members).unwrap();
        format!(
            "{{\"url\":{},{}",
            url.to_string().replace('/', "\\/"),
            &rest[1..]
        )
    };
    let text = rewrite(&doc);
    assert!(
        text.starts_with("{\"url\":\"local:app\\/commit\\/"),
        "{text}"
    );
    tamper(&repo, BRANCH, &path, Some(text.as_bytes()));
    let found = verify(&repo);
    assert!(found.is_empty(), "{found:?}");

    let mut edited = doc.clone();
    edited["title"] = Value::String(format!("{}.", edited["title"].as_str().unwrap()));
    tamper(&repo, BRANCH, &path, Some(rewrite(&edited).as_bytes()));
    let found = verify(&repo);
    assert!(has(&found, "artifact-hash-mismatch", &path), "{found:?}");
}

/// The period moved and the digest recomputed, as a careful forger would:
/// the collection's month digests and the shard give it away.
fn resealed_period() -> BTreeSet<String> {
    let f = synced();
    let path = a_commit_artifact(&f);
    let mut d = doc_at(&f.evidence(), &path);
    d["period"] = serde_json::json!({"start": "2026-03-05", "end": "2026-03-05"});
    d["sha256"] = Value::String(canonical::document_digest(&d));
    write_doc(&f.evidence(), &path, &d);
    let found = verify(&f.evidence());
    assert!(
        has(
            &found,
            "collection-digest-mismatch",
            "collections/git/commit.json"
        ),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|(c, _)| c == "artifact-hash-mismatch"),
        "{found:?}"
    );
    // Into another month: the file no longer sits where its shard says.
    let mut d2 = d.clone();
    d2["period"] = serde_json::json!({"start": "2026-05-05", "end": "2026-05-05"});
    d2["sha256"] = Value::String(canonical::document_digest(&d2));
    write_doc(&f.evidence(), &path, &d2);
    let found = verify(&f.evidence());
    assert!(has(&found, "artifact-misplaced", &path), "{found:?}");
    found.into_iter().map(|(c, _)| c).collect()
}

#[test]
fn a_resealed_period_is_caught_by_shard_and_collection() {
    resealed_period();
}

fn deleted_artifact() -> BTreeSet<String> {
    let f = synced();
    let path = a_commit_artifact(&f);
    tamper(&f.evidence(), BRANCH, &path, None);
    let found = verify(&f.evidence());
    assert!(has(&found, "artifact-missing", &path), "{found:?}");
    assert!(
        has(
            &found,
            "collection-count-mismatch",
            "collections/git/commit.json"
        ),
        "{found:?}"
    );
    found.into_iter().map(|(c, _)| c).collect()
}

#[test]
fn a_deleted_artifact_is_named_by_its_path() {
    deleted_artifact();
}

fn missing_branch() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let r = git2::Repository::init(dir.path()).unwrap();
    // A repository with history, but no evidence branch anywhere.
    commit(&r, &[("README.md", "x\n")], "init", T0, &[]);
    let found = verify(dir.path());
    assert!(
        has(&found, "branch-missing", "refs/heads/cleartrail/evidence"),
        "{found:?}"
    );
    found.into_iter().map(|(c, _)| c).collect()
}

#[test]
fn a_repository_without_the_evidence_branch_fails_verify() {
    missing_branch();
}

/// Files that are not what they claim to be.
fn malformed() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut record = |found: BTreeSet<(String, String)>| {
        codes.extend(found.into_iter().map(|(c, _)| c));
    };

    let f = synced();
    let repo = f.evidence();
    let path = a_commit_artifact(&f);
    tamper(&repo, BRANCH, &path, Some(b"{ not json"));
    let found = verify(&repo);
    assert!(has(&found, "artifact-invalid", &path), "{found:?}");
    record(found);

    // Valid JSON apart from a title that is not UTF-8 (a field verify
    // reads nothing else from), digest left as it was.
    let f = synced();
    let repo = f.evidence();
    let path = a_commit_artifact(&f);
    let bytes = tree_files(&repo, BRANCH)[&path].clone();
    let text = String::from_utf8(bytes).unwrap();
    let at = text.find("\"title\": \"").unwrap() + "\"title\": \"".len();
    let mut forged = text.into_bytes();
    forged.insert(at, 0xff);
    tamper(&repo, BRANCH, &path, Some(&forged));
    let found = verify(&repo);
    assert!(has(&found, "artifact-invalid", &path), "{found:?}");
    record(found);

    // Moved, intact, to another folder.
    let f = synced();
    let repo = f.evidence();
    let path = a_commit_artifact(&f);
    let bytes = tree_files(&repo, BRANCH)[&path].clone();
    tamper(&repo, BRANCH, &path, None);
    let moved = path.replace("/app/", "/other/");
    tamper(&repo, BRANCH, &moved, Some(&bytes));
    let found = verify(&repo);
    assert!(has(&found, "artifact-misplaced", &moved), "{found:?}");
    record(found);

    // The captured document beside a policy has one byte flipped.
    let f = synced();
    let repo = f.evidence();
    let doc = "evidence/files/document/policies/org-chart.csv";
    let mut bytes = tree_files(&repo, BRANCH)[doc].clone();
    bytes[0] ^= 1;
    tamper(&repo, BRANCH, doc, Some(&bytes));
    let found = verify(&repo);
    assert!(has(&found, "captured-hash-mismatch", doc), "{found:?}");
    record(found);

    // The captured document beside a policy is gone.
    let f = synced();
    let repo = f.evidence();
    let doc = "evidence/files/document/policies/org-chart.csv";
    tamper(&repo, BRANCH, doc, None);
    let found = verify(&repo);
    assert!(
        has(&found, "captured-missing", &format!("{doc}.json")),
        "{found:?}"
    );
    record(found);

    // A collection record replaced by garbage, another one deleted.
    let f = synced();
    let repo = f.evidence();
    tamper(&repo, BRANCH, "collections/git/tag.json", Some(b"[]"));
    tamper(&repo, BRANCH, "collections/files/document.json", None);
    let found = verify(&repo);
    assert!(
        has(&found, "collection-invalid", "collections/git/tag.json"),
        "{found:?}"
    );
    assert!(
        has(&found, "collection-missing", "evidence/files/document"),
        "{found:?}"
    );
    // The derived manifest still lists the deleted record? No: records are
    // evidence, and the README that summarizes them still verifies.
    record(found);

    // A well-formed artifact planted where it belongs, sealed, but never
    // collected: no listing names it, and its month no longer adds up.
    let f = synced();
    let repo = f.evidence();
    let mut d = doc_at(&repo, &a_commit_artifact(&f));
    let fake = "ab".repeat(20);
    d["object_id"] = Value::String(format!("app/{fake}"));
    d["id"] = Value::String(format!("git:commit:app/{fake}"));
    let start =
        chrono::NaiveDate::parse_from_str(d["period"]["start"].as_str().unwrap(), "%Y-%m-%d")
            .unwrap();
    let shard = cleartrail::artifact::path::month_shard(start, &format!("app/{fake}"));
    d["shard"] = Value::String(shard.clone());
    d["sha256"] = Value::String(canonical::document_digest(&d));
    let planted = format!(
        "{}.json",
        cleartrail::artifact::Artifact::base_path_of(
            "git",
            "commit",
            Some(&shard),
            &format!("app/{fake}")
        )
    );
    write_doc(&repo, &planted, &d);
    let found = verify(&repo);
    assert!(has(&found, "artifact-unlisted", &planted), "{found:?}");
    assert!(
        !found
            .iter()
            .any(|(c, p)| p == &planted && c != "artifact-unlisted"),
        "{found:?}"
    );
    record(found);

    // A query's recorded answer no longer on the branch, though the month
    // totals were rewritten to match.
    let f = synced();
    let repo = f.evidence();
    let mut rec = doc_at(&repo, "collections/git/commit.json");
    rec["queries"][0]["count"] = serde_json::json!(99);
    write_doc(&repo, "collections/git/commit.json", &rec);
    let found = verify(&repo);
    assert!(
        has(
            &found,
            "collection-query-mismatch",
            "collections/git/commit.json"
        ),
        "{found:?}"
    );
    record(found);
    codes
}

#[test]
fn malformed_and_misplaced_files_have_their_own_codes() {
    malformed();
}

/// A downloaded export of a committed packet, attacked: a page edited,
/// the manifest removed, a file added, a symlink pointing outside.
fn exported_copy() -> BTreeSet<String> {
    let f = synced();
    let repo = f.evidence();
    let cfg = f.default_config();
    let out = command_with("packet", &cfg, &repo, &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let copy = f.root.path().join("copy");
    let packet: Vec<(String, Vec<u8>)> = tree_files(&repo, BRANCH)
        .into_iter()
        .filter_map(|(p, b)| p.strip_prefix("packets/2026/").map(|r| (r.to_string(), b)))
        .collect();
    for (p, b) in &packet {
        std::fs::create_dir_all(copy.join(p).parent().unwrap()).unwrap();
        std::fs::write(copy.join(p), b).unwrap();
    }
    // The record an export writes beside the packet (ids are Drive's; a
    // folder on disk has none to compare them with).
    let manifest: Value =
        serde_json::from_slice(&packet.iter().find(|(p, _)| p == "manifest.json").unwrap().1)
            .unwrap();
    let record = cleartrail::export::ExportRecord {
        schema: cleartrail::export::RECORD_SCHEMA.into(),
        period: "2026".into(),
        folder: "top".into(),
        period_folder: "p".into(),
        evidence_commit: manifest["evidence_commit"].as_str().unwrap().into(),
        packet_manifest_sha256: canonical::sha256_hex(
            &packet.iter().find(|(p, _)| p == "manifest.json").unwrap().1,
        ),
        files: packet
            .iter()
            .enumerate()
            .map(|(i, (p, b))| cleartrail::export::ExportedFile {
                path: p.clone(),
                id: format!("id{i}"),
                sha256: canonical::sha256_hex(b),
                size: b.len() as u64,
            })
            .collect(),
    };
    std::fs::write(copy.join("export-manifest.json"), record.to_bytes()).unwrap();
    let against = |copy: &Path| {
        verify_with(
            &repo,
            &["--period", "2026", "--against-dir", copy.to_str().unwrap()],
        )
    };
    assert_eq!(against(&copy), BTreeSet::new());
    let page = &packet.iter().find(|(p, _)| p.ends_with(".md")).unwrap().0;
    let at = |p: &str| copy.join(p).display().to_string();
    std::fs::write(copy.join(page), b"# Everything is covered\n").unwrap();
    std::fs::remove_file(copy.join("manifest.json")).unwrap();
    std::fs::write(copy.join("notes.md"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", copy.join("passwd")).unwrap();
    let found = against(&copy);
    assert!(has(&found, "export-mismatch", &at(page)), "{found:?}");
    assert!(
        has(&found, "export-missing", &at("manifest.json")),
        "{found:?}"
    );
    assert!(has(&found, "export-extra", &at("notes.md")), "{found:?}");
    assert!(has(&found, "export-extra", &at("passwd")), "{found:?}");
    assert_eq!(found.len(), 4, "{found:?}");
    found.into_iter().map(|(c, _)| c).collect()
}

/// Derived files, tombstones and folders cleartrail owns.
fn derived_and_strays() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let f = synced();
    let repo = f.evidence();
    let files = tree_files(&repo, BRANCH);
    let mut readme = files["README.md"].clone();
    readme.extend_from_slice(b"\nEverything is covered.\n");
    tamper(&repo, BRANCH, "README.md", Some(&readme));
    let listing = files
        .keys()
        .find(|p| p.starts_with("listings/git/commit/") && !p.ends_with("index.md"))
        .unwrap()
        .clone();
    tamper(&repo, BRANCH, &listing, None);
    tamper(&repo, BRANCH, "checks/planted.json", Some(b"{}"));
    let found = verify(&repo);
    assert!(has(&found, "derived-mismatch", "README.md"), "{found:?}");
    assert!(has(&found, "derived-missing", &listing), "{found:?}");
    assert!(
        has(&found, "stray-file", "checks/planted.json"),
        "{found:?}"
    );
    codes.extend(found.into_iter().map(|(c, _)| c));

    // A removal leaves a tombstone; an edited tombstone is caught, and so
    // is one that claims a present artifact was removed.
    let f = synced();
    let repo = f.evidence();
    std::fs::remove_file(f.src().join("policies/org-chart.csv")).unwrap();
    let out = sync_into(&f, &f.default_config(), &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let tomb = "tombstones/files/document/policies/org-chart.csv.json";
    let mut t = doc_at(&repo, tomb);
    t["path"] = serde_json::json!("evidence/files/document/policies/other.csv.json");
    write_doc(&repo, tomb, &t);
    let fake = "tombstones/files/document/policies/access-control-policy.md.json";
    let mut t2 = t.clone();
    t2["path"] =
        serde_json::json!("evidence/files/document/policies/access-control-policy.md.json");
    write_doc(&repo, fake, &t2);
    let found = verify(&repo);
    assert!(has(&found, "tombstone-invalid", tomb), "{found:?}");
    assert!(has(&found, "tombstone-invalid", fake), "{found:?}");
    codes.extend(found.into_iter().map(|(c, _)| c));
    // Deleting a tombstone erases that an object disappeared: the
    // collection record still counts it.
    tamper(&repo, BRANCH, tomb, None);
    tamper(&repo, BRANCH, fake, None);
    let found = verify(&repo);
    assert!(
        has(
            &found,
            "tombstone-missing",
            "collections/files/document.json"
        ),
        "{found:?}"
    );
    codes.extend(found.into_iter().map(|(c, _)| c));

    // A committed packet, one page edited.
    let f = synced();
    let repo = f.evidence();
    let out = command_with("packet", &f.default_config(), &repo, &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = "packets/2026/soc2/controls/CC8.1.md";
    let mut bytes = tree_files(&repo, BRANCH)[page].clone();
    bytes.extend_from_slice(b"\nCovered.\n");
    tamper(&repo, BRANCH, page, Some(&bytes));
    let found = verify(&repo);
    assert!(has(&found, "packet-mismatch", page), "{found:?}");
    codes.extend(found.into_iter().map(|(c, _)| c));

    // The layout version file says a version this build does not read.
    let f = synced();
    let repo = f.evidence();
    tamper(
        &repo,
        BRANCH,
        ".cleartrail/layout.json",
        Some(b"{\"version\": 99}"),
    );
    let found = verify(&repo);
    assert!(
        has(&found, "layout-unsupported", ".cleartrail/layout.json"),
        "{found:?}"
    );
    codes.extend(found.into_iter().map(|(c, _)| c));
    codes
}

#[test]
fn derived_files_tombstones_and_strays_are_covered() {
    derived_and_strays();
}

/// A loose object replaced under the same id by other content: strict
/// reads notice, where a trusting reader would have served the forgery.
fn forged_object() -> BTreeSet<String> {
    let f = synced();
    let repo = f.evidence();
    let path = a_commit_artifact(&f);
    let mut d = doc_at(&repo, &path);
    d["title"] = serde_json::json!("loose copy");
    d["sha256"] = Value::String(canonical::document_digest(&d));
    // The tamper commit writes a loose blob for the new bytes.
    write_doc(&repo, &path, &d);
    let r = git2::Repository::open(&repo).unwrap();
    let blob = r.revparse_single(&format!("{BRANCH}:{path}")).unwrap().id();
    let hex = blob.to_string();
    let loose = repo.join(".git/objects").join(&hex[..2]).join(&hex[2..]);
    assert!(
        loose.exists(),
        "expected a loose object at {}",
        loose.display()
    );
    // Same id, other content: a valid zlib stream of another blob.
    let forged = b"{\"forged\": true}\n";
    let mut raw = format!("blob {}\0", forged.len()).into_bytes();
    raw.extend_from_slice(forged);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &raw).unwrap();
    let mut perm = std::fs::metadata(&loose).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&loose, perm).unwrap();
    std::fs::write(&loose, z.finish().unwrap()).unwrap();
    let found = verify(&repo);
    assert!(has(&found, "object-unreadable", &path), "{found:?}");
    found.into_iter().map(|(c, _)| c).collect()
}

#[test]
fn a_forged_loose_object_is_caught() {
    forged_object();
}

#[test]
fn every_verify_code_is_produced_by_some_attack() {
    let mut produced = BTreeSet::new();
    for codes in [
        edit_each_field(),
        resealed_period(),
        deleted_artifact(),
        missing_branch(),
        malformed(),
        derived_and_strays(),
        forged_object(),
        exported_copy(),
    ] {
        produced.extend(codes);
    }
    // Attacks on approval records are in tests/approve.rs, which needs
    // signed records to attack.
    let registry: BTreeSet<String> = cleartrail::diag::codes::VERIFY
        .iter()
        .map(|(c, _)| c.to_string())
        .filter(|c| !c.starts_with("approval-"))
        .collect();
    let never: Vec<&String> = registry.difference(&produced).collect();
    assert!(
        never.is_empty(),
        "verify codes no attack produces: {never:?}"
    );
}
