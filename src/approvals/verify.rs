//! `verify` of the approval records on a branch: each record's bundle
//! verifies (certificate chain, SCT, log entry or timestamp, for the
//! approve workflow of this repository on its default branch, from a
//! GitHub-hosted runner, with the pinned repository id; or against the
//! configured key), the record file is exactly the signed payload, the
//! reviewer is not the author, the record names this repository, and each
//! approved file is the one approved: its bytes now, or at the head the
//! reviewers approved.

use super::bundle::{ACTIONS_ISSUER, BundleError, Signed, Signer, Trust};
use super::record::{PREDICATE_TYPE, ROOT, STATEMENT_TYPE, Statement};
use crate::artifact::canonical;
use crate::config::{ApprovalsConfig, Signing};
use crate::diag::Diagnostic;
use crate::store::Snapshot;
use std::collections::BTreeMap;

/// What records must satisfy, from the configuration.
pub struct Expect {
    pub config: ApprovalsConfig,
    pub trust: Trust,
    signer: Signer,
}

impl Expect {
    /// The expectations of `config`, its trust read (the trusted root
    /// file, or the public-good root; the public key file).
    pub fn new(config: &ApprovalsConfig) -> Result<Expect, ExpectError> {
        let (trust, signer) = match &config.signing {
            Signing::Key { public_key } => (
                Trust::public_good()?,
                Signer::Key {
                    pem: crate::yaml::read_text(public_key).map_err(|e| ExpectError::Read {
                        path: public_key.display().to_string(),
                        source: e,
                    })?,
                },
            ),
            Signing::Keyless(k) => {
                let trust = match &k.trusted_root {
                    Some(p) => Trust::from_json(&crate::yaml::read_text(p).map_err(|e| {
                        ExpectError::Read {
                            path: p.display().to_string(),
                            source: e,
                        }
                    })?)?,
                    None => Trust::public_good()?,
                };
                (
                    trust,
                    Signer::Keyless {
                        issuer: ACTIONS_ISSUER.into(),
                        identity: config.workflow_identity().unwrap_or_default(),
                    },
                )
            }
        };
        Ok(Expect {
            config: config.clone(),
            trust,
            signer,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// The findings of every record under `approvals/` in `snapshot`;
/// `expect` is `None` when no configuration says how to verify them.
pub fn records(
    snapshot: &Snapshot<'_>,
    repo: &git2::Repository,
    expect: Option<&Expect>,
) -> anyhow::Result<Vec<Diagnostic>> {
    let mut out = Vec::new();
    let files = snapshot.files_under(ROOT)?;
    // stem -> (record, bundle)
    let mut pairs: BTreeMap<String, (Option<git2::Oid>, Option<git2::Oid>)> = BTreeMap::new();
    for (path, oid) in &files {
        if let Some(stem) = path.strip_suffix(".intoto.json") {
            pairs.entry(stem.to_string()).or_default().0 = Some(*oid);
        } else if let Some(stem) = path.strip_suffix(".sigstore.json") {
            pairs.entry(stem.to_string()).or_default().1 = Some(*oid);
        } else if path != &format!("{ROOT}/trusted_root.json") {
            out.push(Diagnostic::error(
                "approval-invalid",
                path,
                "not an approval record, its bundle or the trusted root",
            ));
        }
    }
    if pairs.is_empty() {
        return Ok(out);
    }
    let Some(expect) = expect else {
        out.push(Diagnostic::error(
            "approval-unverifiable",
            ROOT,
            format!(
                "{} approval records, and no `approvals:` configuration to verify them with (who signs, the repository id): pass --config",
                pairs.len()
            ),
        ));
        return Ok(out);
    };
    // Subjects already judged: (path, digest) -> fine; records of one
    // pull request share them.
    let mut judged: BTreeMap<(String, String, Option<String>), bool> = BTreeMap::new();
    for (stem, (record, bundle)) in pairs {
        let record_path = format!("{stem}.intoto.json");
        let bundle_path = format!("{stem}.sigstore.json");
        let (Some(record), Some(bundle)) = (record, bundle) else {
            let (have, missing) = match record {
                Some(_) => (&record_path, &bundle_path),
                None => (&bundle_path, &record_path),
            };
            out.push(Diagnostic::error(
                "approval-invalid",
                have,
                format!("{missing} is missing: a record and its bundle go together"),
            ));
            continue;
        };
        let bytes = snapshot.read_blob(record)?;
        let statement: Statement = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                out.push(Diagnostic::error(
                    "approval-invalid",
                    &record_path,
                    format!("not an approval statement: {e}"),
                ));
                continue;
            }
        };
        if statement.type_ != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
            out.push(Diagnostic::error(
                "approval-invalid",
                &record_path,
                format!(
                    "a `{}` statement of `{}`, not an approval",
                    statement.type_, statement.predicate_type
                ),
            ));
            continue;
        }
        if statement.stem() != stem {
            out.push(Diagnostic::error(
                "approval-invalid",
                &record_path,
                format!(
                    "records review {} of pull request #{}, which belongs at {}.intoto.json",
                    statement.predicate.review_id,
                    statement.predicate.pull_request,
                    statement.stem()
                ),
            ));
        }
        let Some(first) = statement
            .subject
            .first()
            .and_then(|s| hex32(&s.digest.sha256))
        else {
            out.push(Diagnostic::error(
                "approval-invalid",
                &record_path,
                "approves no file",
            ));
            continue;
        };
        let bundle_text = String::from_utf8_lossy(&snapshot.read_blob(bundle)?).into_owned();
        match expect
            .trust
            .verify(&bundle_text, Signed::Sha256(first), &expect.signer)
        {
            Err(e) => out.push(Diagnostic::error(
                "approval-signature",
                &bundle_path,
                format!("does not verify: {e}"),
            )),
            Ok(v) => {
                if v.payload.as_ref().map(|(_, p)| p.as_slice()) != Some(&bytes[..]) {
                    out.push(Diagnostic::error(
                        "approval-payload-mismatch",
                        &record_path,
                        format!("is not the statement {bundle_path} signs"),
                    ));
                }
                if matches!(expect.config.signing, Signing::Keyless(_)) {
                    for why in claim_problems(&v, expect.config.repository_id) {
                        out.push(Diagnostic::error("approval-signature", &bundle_path, why));
                    }
                }
            }
        }
        let p = &statement.predicate;
        if p.reviewer.id == p.author.id || p.reviewer.login.eq_ignore_ascii_case(&p.author.login) {
            out.push(Diagnostic::error(
                "approval-self",
                &record_path,
                format!(
                    "{} approved their own pull request #{}",
                    p.reviewer.login, p.pull_request
                ),
            ));
        }
        if p.repository.id != expect.config.repository_id
            || !p
                .repository
                .name
                .eq_ignore_ascii_case(&expect.config.repository)
        {
            out.push(Diagnostic::error(
                "approval-repository",
                &record_path,
                format!(
                    "records an approval in {} (id {}), not {} (id {})",
                    p.repository.name,
                    p.repository.id,
                    expect.config.repository,
                    expect.config.repository_id
                ),
            ));
        }
        let head = git2::Oid::from_str(&p.head_commit)
            .ok()
            .and_then(|id| repo.find_commit(id).ok())
            .and_then(|c| c.tree().ok());
        for s in &statement.subject {
            let key = (
                s.name.clone(),
                s.digest.sha256.clone(),
                statement.predicate.git_blobs.get(&s.name).cloned(),
            );
            let fine = match judged.get(&key) {
                Some(f) => *f,
                None => {
                    // (sha256, git blob id) of the bytes now and at the head.
                    let digests = |b: &[u8]| {
                        (
                            canonical::sha256_hex(b),
                            git2::Oid::hash_object(git2::ObjectType::Blob, b)
                                .map(|o| o.to_string())
                                .unwrap_or_default(),
                        )
                    };
                    let now = snapshot.read(&s.name)?.map(|b| digests(&b));
                    let then = head
                        .as_ref()
                        .and_then(|t| t.get_path(std::path::Path::new(&s.name)).ok())
                        .and_then(|e| repo.find_blob(e.id()).ok())
                        .map(|b| digests(b.content()));
                    // The sha256 must match, and a gitBlob listed beside it
                    // must be of the same bytes.
                    let agrees = |d: &Option<(String, String)>| {
                        d.as_ref().is_some_and(|(sha, blob)| {
                            *sha == s.digest.sha256
                                && statement
                                    .predicate
                                    .git_blobs
                                    .get(&s.name)
                                    .is_none_or(|g| g == blob)
                        })
                    };
                    let f = agrees(&now) || agrees(&then);
                    judged.insert(key, f);
                    f
                }
            };
            if !fine {
                out.push(Diagnostic::error(
                    "approval-subject-mismatch",
                    &s.name,
                    format!(
                        "{record_path} approved it with sha256 {}, which neither the file now nor at the approved head {} has",
                        s.digest.sha256,
                        &p.head_commit[..p.head_commit.len().min(12)]
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// What a keyless certificate's workflow claims must say beyond its
/// identity: the pinned repository id (a repository deleted and made
/// again under the same name has another), and a GitHub-hosted runner
/// (a self-hosted one is the repository owner's environment).
pub fn claim_problems(v: &super::bundle::Verified, repository_id: u64) -> Vec<String> {
    let mut out = Vec::new();
    let want = repository_id.to_string();
    if v.repository_id.as_deref() != Some(want.as_str()) {
        out.push(format!(
            "signed in repository id {}, not the configured {want}",
            v.repository_id.as_deref().unwrap_or("(none)")
        ));
    }
    if v.runner_environment.as_deref() != Some("github-hosted") {
        out.push(format!(
            "signed on a `{}` runner, not a GitHub-hosted one: its environment is the repository owner's",
            v.runner_environment.as_deref().unwrap_or("unknown")
        ));
    }
    out
}

/// A hex SHA-256 as bytes.
pub fn hex32(h: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if h.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The git blob ids the records under `approvals/` approve (read, not
/// verified: `verify` is what vouches for the records themselves).
pub fn approved_blobs(
    snapshot: &Snapshot<'_>,
) -> anyhow::Result<std::collections::HashSet<git2::Oid>> {
    let mut out = std::collections::HashSet::new();
    for (path, oid) in snapshot.files_under(ROOT)? {
        if !path.ends_with(".intoto.json") {
            continue;
        }
        let Ok(statement) = serde_json::from_slice::<Statement>(&snapshot.read_blob(oid)?) else {
            continue;
        };
        // Only blobs of approved subjects: a path the record lists no
        // digest for approves nothing.
        for s in &statement.subject {
            if let Some(id) = statement
                .predicate
                .git_blobs
                .get(&s.name)
                .and_then(|g| git2::Oid::from_str(g).ok())
            {
                out.insert(id);
            }
        }
    }
    Ok(out)
}
