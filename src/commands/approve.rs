//! `cleartrail approve --pr N`: after an evidence pull request merged, its
//! reviews are judged by the configured policy and each approving review
//! becomes a signed record on the default branch: the in-toto statement
//! over every file the pull request added or changed, and its Sigstore
//! bundle. Too few approvals write nothing and exit 1 with each reason.

use crate::approvals::bundle::{ACTIONS_ISSUER, KeySigner, Signed, Signer, Trust};
use crate::approvals::policy::{self, Person, Policy, PullRequest, Review};
use crate::approvals::record::{Digest, Repository, Statement, Subject};
use crate::cli::{ApproveArgs, GlobalArgs};
use crate::config::{ApprovalsConfig, Signing};
use crate::connectors::ConnectorError;
use crate::connectors::github::client::{GithubClient, GithubEnv};
use crate::connectors::http::{Politeness, Secret};
use crate::error::{Error, ExitStatus};
use crate::store::{Author, ChangeSet, CommitOutcome};
use anyhow::Context as _;
use serde_json::Value;
use std::fmt::Write as _;

/// The signing key of key mode: a PKCS#8 P-256 key in PEM, from the
/// environment only (a secret never lives in the repository).
pub const KEY_VAR: &str = "CLEARTRAIL_SIGNING_KEY";

pub fn run(g: &GlobalArgs, args: &ApproveArgs) -> Result<ExitStatus, Error> {
    let config = super::load_config(g)?;
    let ap = config.approvals.clone().ok_or_else(|| {
        Error::usage(anyhow::anyhow!(
            "{}: no `approvals:` section: who approves, how many, and how records are signed",
            config.file.display()
        ))
    })?;
    // Never from a pull request's own jobs: their workflow file and ref
    // are the author's to choose.
    if let Ok(event) = std::env::var("GITHUB_EVENT_NAME")
        && event.starts_with("pull_request")
    {
        return Err(Error::usage(anyhow::anyhow!(
            "approve runs on the default branch after the merge (a `push` or `workflow_run` event), never from a `{event}` job, whose workflow the pull request's author controls"
        )));
    }
    let rt = super::runtime()?;
    // Signing material first: nothing is fetched that could not be signed.
    let signer = rt.block_on(signer(&ap))?;
    let store = super::open_store(g)?;
    let env = GithubEnv::from_env().map_err(Error::usage)?;
    let in_repo = config_in_repository(g, &store);
    let number = match args.pr {
        Some(n) => n,
        None => match rt
            .block_on(pr_of_event(&env, &ap.repository))
            .map_err(|e| match e {
                ConnectorError::Setup { .. } => Error::usage(e),
                e => Error::runtime(anyhow::Error::new(e).context(format!(
                    "finding the pull request this event merged in {}",
                    ap.repository
                ))),
            })? {
            Some(n) => n,
            None => {
                super::emit("this event merged no pull request: nothing to approve\n");
                return Ok(ExitStatus::Ok);
            }
        },
    };
    let (pr, reviews, policy) = rt
        .block_on(fetch(&env, &ap, number, |base| {
            policy_before(
                &store,
                in_repo.as_deref(),
                &super::config_path(g),
                base,
                &ap,
            )
        }))
        .map_err(|e| match e {
            ConnectorError::Setup { .. } => Error::usage(e),
            e => Error::runtime(anyhow::Error::new(e).context(format!(
                "reading pull request #{} of {}",
                number, ap.repository
            ))),
        })?;
    let judgement = policy::judge(&pr, &reviews, &policy);
    if !judgement.approved() {
        let mut s = format!(
            "pull request #{} is not approved: {} of {} required approvals",
            pr.number,
            judgement.approving.len(),
            judgement.required
        );
        for (r, why) in &judgement.refused {
            let _ = write!(s, "\n  review {}: {why}", r.id);
        }
        s.push('\n');
        super::emit(&s);
        return Ok(ExitStatus::Findings);
    }
    let subjects = subjects(&store, &pr)?;
    let repository = Repository {
        name: ap.repository.clone(),
        id: ap.repository_id,
    };
    // With --push the records go on the remote's newest tip: the checkout
    // may be of an older commit (another merge landed since).
    let sync_with_remote = || -> Result<(), Error> {
        if let Some(remote) = &args.push {
            let theirs = super::fetch_branch(&store, remote, &ap.default_branch, &env)
                .map_err(|e| Error::runtime(anyhow::Error::new(e)))?;
            if !store
                .fast_forward(&ap.default_branch, theirs)
                .map_err(Error::runtime)?
            {
                return Err(Error::runtime(anyhow::anyhow!(
                    "the local `{}` has commits `{remote}/{}` lacks: records are pushed only on top of the remote's branch",
                    ap.default_branch,
                    ap.default_branch
                )));
            }
        }
        Ok(())
    };
    let tip_now = || -> Result<git2::Oid, Error> {
        store
            .branch_tip(&ap.default_branch)
            .map_err(Error::runtime)?
            .ok_or_else(|| {
                Error::usage(anyhow::anyhow!(
                    "the default branch `{}` does not exist here: records are committed to it (set `approvals.default_branch`)",
                    ap.default_branch
                ))
            })
    };
    sync_with_remote()?;
    let tip = tip_now()?;
    let current = store.snapshot(Some(tip)).map_err(Error::runtime)?;
    // (record path, statement, bundle path, bundle), signed once.
    let mut signed: Vec<(String, Vec<u8>, String, Vec<u8>)> = Vec::new();
    for review in &judgement.approving {
        let statement = Statement::new(
            &repository,
            &pr,
            review,
            &judgement,
            &policy.described,
            subjects.iter().map(|(s, _)| s.clone()).collect(),
            subjects
                .iter()
                .map(|(s, blob)| (s.name.clone(), blob.clone()))
                .collect(),
        );
        let bytes = statement.to_bytes();
        let stem = statement.stem();
        let record = format!("{stem}.intoto.json");
        // A record already there stands: it is never signed again nor
        // replaced (a later run may judge with other settings or a newer
        // tool, which must not rewrite what was signed then).
        if current.read(&record).map_err(Error::runtime)?.is_some() {
            continue;
        }
        let subject = statement
            .subject
            .first()
            .and_then(|s| crate::approvals::verify::hex32(&s.digest.sha256))
            .ok_or_else(|| {
                Error::usage(anyhow::anyhow!(
                    "pull request #{} added or changed no file: there is nothing to approve",
                    pr.number
                ))
            })?;
        let bundle = rt.block_on(signer.sign(&bytes, subject))?;
        signed.push((
            record,
            bytes,
            format!("{stem}.sigstore.json"),
            format!("{bundle}\n").into_bytes(),
        ));
    }
    // A push that loses a race with another merge is tried again on the
    // tip that won, with the same signed records.
    const ATTEMPTS: usize = 3;
    let mut tip = tip;
    let mut attempt = 0;
    let (written, commit) = loop {
        attempt += 1;
        let current = store.snapshot(Some(tip)).map_err(Error::runtime)?;
        let mut cs = ChangeSet::new();
        let mut written = Vec::new();
        for (record, bytes, bundle_at, bundle) in &signed {
            if current.read(record).map_err(Error::runtime)?.is_some() {
                continue;
            }
            cs.put(record.clone(), bytes.clone());
            cs.put(bundle_at.clone(), bundle.clone());
            written.push(record.clone());
        }
        if let RecordSigner::Keyless(k) = &signer
            && !written.is_empty()
        {
            let root_json = &k.root_json;
            // The root that verifies these records, kept with them: verify
            // works offline years later, after the instance rotated its
            // keys.
            let at = format!("{}/trusted_root.json", crate::approvals::record::ROOT);
            if current.read(&at).map_err(Error::runtime)?.as_deref() != Some(root_json.as_bytes()) {
                cs.put(at, root_json.clone().into_bytes());
            }
        }
        if written.is_empty() {
            super::emit(&format!(
                "pull request #{}: its {} approving reviews are already recorded: no commit\n",
                pr.number,
                judgement.approving.len()
            ));
            return Ok(ExitStatus::Ok);
        }
        let message = format!(
            "cleartrail approve: pull request #{} ({} approvals)\n\n{}\n",
            pr.number,
            written.len(),
            written.join("\n")
        );
        let out = store
            .commit(
                &ap.default_branch,
                Some(tip),
                Some(tip),
                &cs,
                &message,
                &Author::default(),
            )
            .map_err(Error::runtime)?;
        let CommitOutcome::Committed { commit: c, .. } = out else {
            break (written, String::from("(unchanged)"));
        };
        let Some(remote) = &args.push else {
            break (written, c.to_string());
        };
        match super::push_branch(&store, remote, c, &ap.default_branch, &env) {
            Ok(()) => break (written, c.to_string()),
            Err(e) => {
                // Unpublished records are withdrawn (they are pushed from
                // the next tip, or the next run signs them again).
                if let Err(r) = store.rewind(&ap.default_branch, c, tip) {
                    tracing::warn!("could not withdraw the records' commit {c}: {r}");
                }
                if matches!(e, crate::store::PushError::Behind { .. }) && attempt < ATTEMPTS {
                    tracing::warn!("{e}; committing the records again on the new tip");
                    sync_with_remote()?;
                    tip = tip_now()?;
                    continue;
                }
                return Err(Error::runtime(anyhow::Error::new(e)));
            }
        }
    };
    let pushed = args.push.as_deref().filter(|_| commit != "(unchanged)");
    let mut s = format!(
        "pull request #{}: {} approval records over {} files committed to {} ({})\n",
        pr.number,
        written.len(),
        subjects.len(),
        ap.default_branch,
        &commit[..commit.len().min(12)]
    );
    for w in &written {
        let _ = writeln!(s, "  {w}");
    }
    if let Some(remote) = pushed {
        let _ = writeln!(s, "pushed {} to {remote}", ap.default_branch);
    }
    super::emit(&s);
    Ok(ExitStatus::Ok)
}

/// What signs the records.
enum RecordSigner {
    Key(KeySigner),
    Keyless(Box<KeylessSigner>),
}

struct KeylessSigner {
    config: crate::config::Keyless,
    token: sigstore_oidc::IdentityToken,
    trust: Trust,
    /// The trusted root's JSON, committed beside the records.
    root_json: String,
    identity: String,
    approvals: ApprovalsConfig,
}

impl RecordSigner {
    /// Signs a statement; a keyless bundle is verified at once against
    /// the trusted root and the workflow identity, so a record that could
    /// not verify is never committed.
    async fn sign(&self, statement: &[u8], subject: [u8; 32]) -> Result<String, Error> {
        match self {
            RecordSigner::Key(k) => k.sign_statement(statement).map_err(Error::runtime),
            RecordSigner::Keyless(k) => {
                let KeylessSigner {
                    config,
                    token,
                    trust,
                    identity,
                    approvals,
                    ..
                } = &**k;
                use sigstore_sign::{SigningContext, SigningServices};
                let mut services = SigningServices::new(&config.fulcio_url, &config.rekor_url);
                if let Some(tsa) = &config.tsa_url {
                    services = services.with_tsa_url(tsa);
                }
                let bundle = SigningContext::new(services)
                    .signer(token.clone())
                    .sign_raw_statement(statement)
                    .await
                    .map_err(|e| {
                        Error::runtime(anyhow::anyhow!(
                            "signing with Fulcio {} and Rekor {}: {e}",
                            config.fulcio_url,
                            config.rekor_url
                        ))
                    })?
                    .to_json()
                    .map_err(Error::runtime)?;
                let verified = trust
                    .verify(
                        &bundle,
                        Signed::Sha256(subject),
                        &Signer::Keyless {
                            issuer: ACTIONS_ISSUER.into(),
                            identity: identity.clone(),
                        },
                    )
                    .map_err(|e| {
                        Error::usage(anyhow::anyhow!(
                            "the signed record does not verify as {identity}: {e} (is this the approve workflow `{}` on `{}`, and `trusted_root` the instance's?)",
                            config.workflow,
                            identity.rsplit('@').next().unwrap_or_default()
                        ))
                    })?;
                let problems = crate::approvals::verify::claim_problems(&verified, approvals);
                if !problems.is_empty() {
                    return Err(Error::usage(anyhow::anyhow!(
                        "the signed record would not verify: {}",
                        problems.join("; ")
                    )));
                }
                Ok(bundle)
            }
        }
    }
}

/// The OIDC token of keyless signing: `SIGSTORE_ID_TOKEN`, else the
/// workflow's own (GitHub Actions with `id-token: write`).
pub const TOKEN_VAR: &str = "SIGSTORE_ID_TOKEN";

async fn signer(ap: &ApprovalsConfig) -> Result<RecordSigner, Error> {
    match &ap.signing {
        Signing::Key { public_key } => {
            let pem = Secret::from_env(KEY_VAR).ok_or_else(|| {
                Error::usage(anyhow::anyhow!(
                    "`signing: key` signs with the PKCS#8 P-256 key in {KEY_VAR} (PEM), which is not set"
                ))
            })?;
            let signer = KeySigner::from_pem(pem.expose())
                .context(KEY_VAR)
                .map_err(Error::usage)?;
            let configured = std::fs::read_to_string(public_key)
                .with_context(|| format!("reading {}", public_key.display()))
                .map_err(Error::usage)?;
            let matches = signer
                .is_pair_of(&configured)
                .with_context(|| format!("{}", public_key.display()))
                .map_err(Error::usage)?;
            if !matches {
                return Err(Error::usage(anyhow::anyhow!(
                    "the key in {KEY_VAR} is not the one {} holds: records it signed would not verify",
                    public_key.display()
                )));
            }
            Ok(RecordSigner::Key(signer))
        }
        Signing::Keyless(k) => {
            let root_json = match &k.trusted_root {
                Some(p) => crate::yaml::read_text(p)
                    .with_context(|| format!("reading the trusted root {}", p.display()))
                    .map_err(Error::usage)?,
                None => sigstore_verify::trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.to_string(),
            };
            let trust = Trust::from_json(&root_json).map_err(Error::usage)?;
            let token = match Secret::from_env(TOKEN_VAR) {
                Some(t) => sigstore_oidc::IdentityToken::from_jwt(t.expose())
                    .map_err(|e| Error::usage(anyhow::anyhow!("{TOKEN_VAR}: {e}")))?,
                None => sigstore_oidc::IdentityToken::detect_ambient()
                    .await
                    .map_err(|e| Error::usage(anyhow::anyhow!("{e}")))?
                    .ok_or_else(|| {
                        Error::usage(anyhow::anyhow!(
                            "keyless signing needs an OIDC token: run in GitHub Actions with `permissions: id-token: write`, or set {TOKEN_VAR}"
                        ))
                    })?,
            };
            Ok(RecordSigner::Keyless(Box::new(KeylessSigner {
                config: k.clone(),
                token,
                trust,
                root_json,
                identity: ap.workflow_identity().unwrap_or_default(),
                approvals: ap.clone(),
            })))
        }
    }
}

/// The pull request, its reviews, and the policy with teams resolved to
/// their members.
/// The pull request the workflow's event merged, for `approve` without
/// `--pr` in GitHub Actions (`GITHUB_EVENT_NAME`, `GITHUB_EVENT_PATH`):
/// - `push`: the pull request whose merge commit the push brought
///   (`payload.after`);
/// - `workflow_run`: the same for the commit the finished run was for;
/// - `workflow_dispatch`: its `pr` input.
///
/// `None` when the commit merged no pull request (a direct push).
async fn pr_of_event(env: &GithubEnv, repo: &str) -> Result<Option<u64>, ConnectorError> {
    let setup = |message: String| ConnectorError::Setup { message };
    let (Ok(name), Ok(path)) = (
        std::env::var("GITHUB_EVENT_NAME"),
        std::env::var("GITHUB_EVENT_PATH"),
    ) else {
        return Err(setup(
            "which pull request? Pass --pr N (or run in GitHub Actions, where the event names it)"
                .into(),
        ));
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| setup(format!("reading the event payload {path}: {e}")))?;
    let event: Value = serde_json::from_str(&text)
        .map_err(|e| setup(format!("the event payload {path} is not JSON: {e}")))?;
    let sha = match name.as_str() {
        "push" => event["after"].as_str(),
        "workflow_run" => event["workflow_run"]["head_sha"].as_str(),
        "workflow_dispatch" => {
            let input = &event["inputs"]["pr"];
            let n = input
                .as_u64()
                .or_else(|| input.as_str().and_then(|s| s.trim().parse().ok()));
            return n.map(Some).ok_or_else(|| {
                setup(format!(
                    "a workflow_dispatch of approve needs a numeric `pr` input (payload {path})"
                ))
            });
        }
        other => {
            return Err(setup(format!(
                "approve cannot tell the pull request from a `{other}` event: pass --pr N, or run it on `push` to the default branch or `workflow_run`"
            )));
        }
    }
    .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    .ok_or_else(|| setup(format!("the `{name}` payload {path} names no commit")))?;
    let client = GithubClient::connect(env, Politeness::default()).await?;
    let url = client.url(&format!("/repos/{repo}/commits/{sha}/pulls?per_page=100"));
    let prs: Vec<Value> = client.get_json(&url).await?;
    // The pull request this commit merged, not one that merely contains it.
    Ok(prs
        .iter()
        .filter(|p| p["merge_commit_sha"].as_str() == Some(sha) && !p["merged_at"].is_null())
        .filter_map(|p| p["number"].as_u64())
        .min())
}

/// The configuration file's path inside the evidence repository, when
/// it lives there (the usual `cleartrail.yml` at its root).
fn config_in_repository(g: &GlobalArgs, store: &crate::store::Store) -> Option<String> {
    let file = std::fs::canonicalize(super::config_path(g)).ok()?;
    let root = std::fs::canonicalize(store.repo().workdir()?).ok()?;
    let rel = file.strip_prefix(&root).ok()?;
    Some(rel.to_str()?.replace('\\', "/"))
}

/// The approval policy a pull request is judged by: the one its base
/// commit held, so that a pull request cannot lower the bar it must pass
/// (fewer approvals, other approvers) by editing the configuration it
/// merges. A configuration kept outside the repository is taken as is.
fn policy_before(
    store: &crate::store::Store,
    in_repo: Option<&str>,
    file: &std::path::Path,
    base: &str,
    current: &ApprovalsConfig,
) -> Result<ApprovalsConfig, ConnectorError> {
    let Some(rel) = in_repo else {
        return Ok(current.clone());
    };
    let setup = |message: String| ConnectorError::Setup { message };
    let oid = git2::Oid::from_str(base).map_err(|_| {
        setup(format!(
            "the pull request's base `{base}` is not a commit id"
        ))
    })?;
    let snapshot = store.snapshot(Some(oid)).map_err(|e| {
        setup(format!(
            "the pull request's base commit {base} is not in this repository ({e}): fetch the default branch's full history"
        ))
    })?;
    let text = snapshot
        .read(rel)
        .map_err(|e| setup(format!("reading {rel} at {base}: {e}")))?
        .ok_or_else(|| {
            setup(format!(
                "{rel} did not exist at the pull request's base {base}: the approval policy must be on the default branch before the pull request it judges"
            ))
        })?;
    let text =
        String::from_utf8(text).map_err(|_| setup(format!("{rel} at {base} is not UTF-8")))?;
    // Read as if from the file itself, so relative paths (a public key,
    // a trusted root) resolve as the current configuration's do.
    let before = crate::config::load_str_for_reading(file, &text)
        .map_err(|e| setup(format!("{rel} at the pull request's base {base}: {e}")))?;
    let Some(before) = before.approvals else {
        return Err(setup(format!(
            "{rel} had no `approvals:` section at the pull request's base {base}: the approval policy must be on the default branch before the pull request it judges"
        )));
    };
    // What the records are about and how they are signed cannot change
    // in the pull request they judge: its reviews would be read from
    // another repository, or records signed by other means.
    if (
        &before.repository,
        before.repository_id,
        &before.default_branch,
        &before.signing,
    ) != (
        &current.repository,
        current.repository_id,
        &current.default_branch,
        &current.signing,
    ) {
        return Err(setup(format!(
            "the pull request changed `repository`, `repository_id`, `default_branch` or the signing settings of `approvals:` in {rel}: approve it with the configuration before it (`--config` a copy of {rel} at {base})"
        )));
    }
    if (&before.users, &before.teams, before.required)
        != (&current.users, &current.teams, current.required)
    {
        tracing::warn!(
            "pull request changed the approval policy in {rel}: it is judged by the policy before it ({}, {} required)",
            before.described(),
            before.required
        );
    }
    Ok(before)
}

async fn fetch(
    env: &GithubEnv,
    ap: &ApprovalsConfig,
    number: u64,
    policy_of: impl FnOnce(&str) -> Result<ApprovalsConfig, ConnectorError>,
) -> Result<(PullRequest, Vec<Review>, Policy), ConnectorError> {
    let client = GithubClient::connect(env, Politeness::default()).await?;
    let repo = &ap.repository;
    let url = client.url(&format!("/repos/{repo}/pulls/{number}"));
    let pr: Value = serde_json::from_slice(&client.get(&url, None).await?.body).unwrap_or_default();
    let bad = |what: &str| ConnectorError::Http {
        endpoint: format!("GET {url}"),
        status: 200,
        message: format!("the pull request has no {what}"),
    };
    if pr["merged"].as_bool() != Some(true) {
        return Err(ConnectorError::Setup {
            message: format!(
                "pull request #{number} of {repo} is not merged: approvals are recorded once the evidence is on the default branch"
            ),
        });
    }
    let person = |v: &Value| -> Option<Person> {
        Some(Person {
            login: v["login"].as_str()?.to_string(),
            id: v["id"].as_u64()?,
            kind: v["type"].as_str().unwrap_or("User").to_string(),
        })
    };
    let pull = PullRequest {
        number,
        author: person(&pr["user"]).ok_or_else(|| bad("author"))?,
        head_sha: pr["head"]["sha"]
            .as_str()
            .ok_or_else(|| bad("head"))?
            .to_string(),
        base_sha: pr["base"]["sha"]
            .as_str()
            .ok_or_else(|| bad("base"))?
            .to_string(),
    };
    // Evidence reaches the default branch through the pull request; one
    // into another branch approves nothing there.
    if let Some(base_ref) = pr["base"]["ref"].as_str()
        && base_ref != ap.default_branch
    {
        return Err(ConnectorError::Setup {
            message: format!(
                "pull request #{number} merged into `{base_ref}`, not the default branch `{}`",
                ap.default_branch
            ),
        });
    }
    // Who may approve, and how many, as the base commit said.
    let ap = &policy_of(&pull.base_sha)?;
    let mut reviews = Vec::new();
    for r in pages(
        &client,
        client.url(&format!(
            "/repos/{repo}/pulls/{number}/reviews?per_page=100"
        )),
    )
    .await?
    {
        // A pending review has no submission and no state to count.
        let (Some(id), Some(reviewer), Some(state)) =
            (r["id"].as_u64(), person(&r["user"]), r["state"].as_str())
        else {
            continue;
        };
        reviews.push(Review {
            id,
            reviewer,
            state: state.to_string(),
            commit_id: r["commit_id"].as_str().unwrap_or_default().to_string(),
            submitted_at: r["submitted_at"].as_str().unwrap_or_default().to_string(),
        });
    }
    let approvers = if ap.users.is_empty() && ap.teams.is_empty() {
        None
    } else {
        let mut all: std::collections::BTreeSet<String> = ap.users.iter().cloned().collect();
        for (org, slug) in &ap.teams {
            let url = client.url(&format!("/orgs/{org}/teams/{slug}/members?per_page=100"));
            for m in pages(&client, url).await? {
                if let Some(l) = m["login"].as_str() {
                    all.insert(l.to_ascii_lowercase());
                }
            }
        }
        Some(all)
    };
    Ok((
        pull,
        reviews,
        Policy {
            approvers,
            required: ap.required,
            described: ap.described(),
        },
    ))
}

/// Every item of a list GitHub pages by `Link: rel="next"`.
async fn pages(client: &GithubClient, first: String) -> Result<Vec<Value>, ConnectorError> {
    let mut out = Vec::new();
    let mut url = Some(first);
    while let Some(u) = url {
        let reply = client.get(&u, None).await?;
        let page: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        out.extend(page.as_array().cloned().unwrap_or_default());
        url = crate::connectors::http::next_link(&reply);
    }
    Ok(out)
}

/// Every file the pull request added or changed, with the SHA-256 of its
/// bytes at the head the reviewers approved (and its git blob id): read
/// from the repository's own objects, so the digests are of exactly what
/// was reviewed.
fn subjects(
    store: &crate::store::Store,
    pr: &PullRequest,
) -> Result<Vec<(Subject, String)>, Error> {
    let repo = store.repo();
    let tree = |sha: &str, which: &str| -> Result<git2::Tree<'_>, Error> {
        git2::Oid::from_str(sha)
            .and_then(|id| repo.find_commit(id))
            .and_then(|c| c.tree())
            .map_err(|e| {
                Error::usage(anyhow::anyhow!(
                    "the pull request's {which} commit {sha} is not in this repository ({}): fetch it first (`git fetch origin pull/{}/head`)",
                    e.message(),
                    pr.number
                ))
            })
    };
    // From where the pull request branched: GitHub's base sha may have
    // moved on since, and a plain diff would then "approve" the default
    // branch's later changes in reverse.
    let fork = git2::Oid::from_str(&pr.base_sha)
        .and_then(|b| git2::Oid::from_str(&pr.head_sha).and_then(|h| repo.merge_base(b, h)))
        .map(|o| o.to_string())
        .unwrap_or_else(|_| pr.base_sha.clone());
    let (base, head) = (tree(&fork, "base")?, tree(&pr.head_sha, "head")?);
    let diff = repo
        .diff_tree_to_tree(Some(&base), Some(&head), None)
        .map_err(|e| Error::runtime(anyhow::Error::new(e).context("comparing base and head")))?;
    let mut out = Vec::new();
    for d in diff.deltas() {
        if !matches!(
            d.status(),
            git2::Delta::Added | git2::Delta::Modified | git2::Delta::Renamed | git2::Delta::Copied
        ) {
            continue;
        }
        let file = d.new_file();
        let Some(path) = file.path().and_then(|p| p.to_str()) else {
            continue;
        };
        let blob = repo.find_blob(file.id()).map_err(|e| {
            Error::runtime(anyhow::Error::new(e).context(format!("reading {path} at the head")))
        })?;
        out.push((
            Subject {
                name: path.to_string(),
                digest: Digest {
                    sha256: crate::artifact::canonical::sha256_hex(blob.content()),
                },
            },
            file.id().to_string(),
        ));
    }
    Ok(out)
}
