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

/// The records under `approvals/`, paired with their bundles by stem;
/// files that are neither are findings.
struct Pairs {
    pairs: BTreeMap<String, (Option<git2::Oid>, Option<git2::Oid>)>,
    stray: Vec<Diagnostic>,
}

fn pairs(snapshot: &Snapshot<'_>) -> anyhow::Result<Pairs> {
    let mut pairs: BTreeMap<String, (Option<git2::Oid>, Option<git2::Oid>)> = BTreeMap::new();
    let mut stray = Vec::new();
    for (path, oid) in snapshot.files_under(ROOT)? {
        if let Some(stem) = path.strip_suffix(".intoto.json") {
            pairs.entry(stem.to_string()).or_default().0 = Some(oid);
        } else if let Some(stem) = path.strip_suffix(".sigstore.json") {
            pairs.entry(stem.to_string()).or_default().1 = Some(oid);
        } else if path != format!("{ROOT}/trusted_root.json") {
            stray.push(Diagnostic::error(
                "approval-invalid",
                path,
                "not an approval record, its bundle or the trusted root",
            ));
        }
    }
    Ok(Pairs { pairs, stray })
}

/// One record judged on what its signature vouches for: a readable
/// approval statement at its own path, a bundle that verifies for the
/// configured signer and signs exactly this file, a reviewer who is not
/// the author, this repository. The statement comes back only when there
/// is no finding.
fn judge_record(
    snapshot: &Snapshot<'_>,
    expect: &Expect,
    stem: &str,
    record: Option<git2::Oid>,
    bundle: Option<git2::Oid>,
    out: &mut Vec<Diagnostic>,
) -> anyhow::Result<Option<Statement>> {
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
        return Ok(None);
    };
    let before = out.len();
    let bytes = snapshot.read_blob(record)?;
    let statement: Statement = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            out.push(Diagnostic::error(
                "approval-invalid",
                &record_path,
                format!("not an approval statement: {e}"),
            ));
            return Ok(None);
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
        return Ok(None);
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
        return Ok(None);
    };
    let bundle_text = String::from_utf8_lossy(&snapshot.read_blob(bundle)?).into_owned();
    match expect
        .trust
        .verify(&bundle_text, Signed::Sha256(first), &expect.signer)
    {
        Err(e) => {
            // Nothing an unsigned record says is worth judging further.
            out.push(Diagnostic::error(
                "approval-signature",
                &bundle_path,
                format!("does not verify: {e}"),
            ));
            return Ok(None);
        }
        Ok(v) => {
            if v.payload.as_ref().map(|(_, p)| p.as_slice()) != Some(&bytes[..]) {
                out.push(Diagnostic::error(
                    "approval-payload-mismatch",
                    &record_path,
                    format!("is not the statement {bundle_path} signs"),
                ));
            }
            if matches!(expect.config.signing, Signing::Keyless(_)) {
                for why in claim_problems(&v, &expect.config) {
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
    Ok((out.len() == before).then_some(statement))
}

/// The findings of every record under `approvals/` in `snapshot`;
/// `expect` is `None` when no configuration says how to verify them.
pub fn records(
    snapshot: &Snapshot<'_>,
    repo: &git2::Repository,
    expect: Option<&Expect>,
) -> anyhow::Result<Vec<Diagnostic>> {
    let Pairs { pairs, stray } = pairs(snapshot)?;
    let mut out = stray;
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
    // Subjects already judged: (path, digest, blob id, head) -> fine;
    // records of one pull request share them.
    let mut judged: BTreeMap<(String, String, Option<String>, String), bool> = BTreeMap::new();
    for (stem, (record, bundle)) in pairs {
        let Some(statement) = judge_record(snapshot, expect, &stem, record, bundle, &mut out)?
        else {
            continue;
        };
        let record_path = format!("{stem}.intoto.json");
        let p = &statement.predicate;
        let head = git2::Oid::from_str(&p.head_commit)
            .ok()
            .and_then(|id| repo.find_commit(id).ok())
            .and_then(|c| c.tree().ok());
        for s in &statement.subject {
            let blob_id = p.git_blobs.get(&s.name).cloned();
            let key = (
                s.name.clone(),
                s.digest.sha256.clone(),
                blob_id.clone(),
                p.head_commit.clone(),
            );
            let fine = match judged.get(&key) {
                Some(f) => *f,
                None => {
                    // The version approved: the file now, at the approved
                    // head, or (a squash merge leaves no head behind) the
                    // blob the record names. Its SHA-256 must be the
                    // subject's, and a blob id listed must be its own.
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
                    let named = blob_id
                        .as_deref()
                        .and_then(|g| git2::Oid::from_str(g).ok())
                        .and_then(|id| repo.find_blob(id).ok())
                        .map(|b| digests(b.content()));
                    let agrees = |d: &Option<(String, String)>| {
                        d.as_ref().is_some_and(|(sha, blob)| {
                            *sha == s.digest.sha256 && blob_id.as_ref().is_none_or(|g| g == blob)
                        })
                    };
                    let f = agrees(&now) || agrees(&then) || agrees(&named);
                    judged.insert(key, f);
                    f
                }
            };
            if !fine {
                out.push(Diagnostic::error(
                    "approval-subject-mismatch",
                    &s.name,
                    format!(
                        "{record_path} approved it with sha256 {}, which neither the file now, nor at the approved head {}, nor the blob the record names has",
                        s.digest.sha256,
                        p.head_commit.get(..12).unwrap_or(&p.head_commit)
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// The (git blob id -> paths) that approval records approve, from the
/// records whose signature, payload, reviewer and repository verify (the
/// content of each subject is `verify`'s to check): what `gaps` and
/// `packet` count as approved. A file is approved at its path only.
pub fn approved(snapshot: &Snapshot<'_>, expect: &Expect) -> anyhow::Result<Approved> {
    let mut out = Approved::new();
    let mut ignored = Vec::new();
    for (stem, (record, bundle)) in pairs(snapshot)?.pairs {
        if let Some(statement) =
            judge_record(snapshot, expect, &stem, record, bundle, &mut ignored)?
        {
            for s in &statement.subject {
                if let Some(id) = statement
                    .predicate
                    .git_blobs
                    .get(&s.name)
                    .and_then(|g| git2::Oid::from_str(g).ok())
                {
                    out.entry(id).or_default().insert(s.name.clone().into());
                }
            }
        }
    }
    Ok(out)
}

/// [`approved`] for the records on `branch` (none when it does not exist).
pub fn approved_at(
    store: &crate::store::Store,
    branch: &str,
    expect: &Expect,
) -> anyhow::Result<Approved> {
    match store.branch_tip(branch)? {
        Some(tip) => approved(&store.snapshot(Some(tip))?, expect),
        None => Ok(Approved::new()),
    }
}

/// Approved file versions: git blob id -> the paths it is approved at.
pub type Approved = std::collections::HashMap<git2::Oid, std::collections::HashSet<Box<str>>>;

/// What a keyless certificate's workflow claims must say beyond its
/// identity: the pinned repository id (a repository deleted and made
/// again under the same name has another), a GitHub-hosted runner (a
/// self-hosted one is the repository owner's environment), the default
/// branch as the source ref, the approve workflow itself as the build
/// configuration (not a workflow on another branch calling it), and no
/// pull request event.
pub fn claim_problems(v: &super::bundle::Verified, config: &ApprovalsConfig) -> Vec<String> {
    let mut out = Vec::new();
    let want = config.repository_id.to_string();
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
    let branch = format!("refs/heads/{}", config.default_branch);
    if v.source_ref.as_deref() != Some(branch.as_str()) {
        out.push(format!(
            "signed from `{}`, not the default branch `{branch}`",
            v.source_ref.as_deref().unwrap_or("(no ref)")
        ));
    }
    if let (Some(build), Some(identity)) = (v.build_config.as_deref(), config.workflow_identity())
        && build != identity
    {
        out.push(format!(
            "signed by the workflow run of `{build}`, which called the approve workflow: only the approve workflow itself may sign"
        ));
    }
    if let Some(t) = v.trigger.as_deref()
        && t.starts_with("pull_request")
    {
        out.push(format!(
            "signed in a `{t}` run, whose workflow the pull request's author controls"
        ));
    }
    out
}

/// A hex SHA-256 as bytes.
pub fn hex32(h: &str) -> Option<[u8; 32]> {
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
