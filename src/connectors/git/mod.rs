//! The `git` source: a local repository read with git2.
//!
//! Kinds it yields:
//! - `change`: each commit of the branch's first-parent history committed
//!   in the period: what reached the branch, one change per merged pull
//!   request, squash or direct push ([`change`] says how it is told).
//! - `commit`: every commit reachable from the branch committed in the
//!   period, side-branch commits included (`first_parent` says which),
//!   for authorship and signature facts. Not a change population.
//! - `tag`: tags dated in the period (tagger date, or the commit date of
//!   a lightweight tag).
//! - `codeowners`: the CODEOWNERS file at the tip.
//!
//! A read error never removes evidence: an object that is missing or cannot
//! be read fails the source, naming it. A shallow clone is refused (its
//! history is cut short, so a population would look complete and not be);
//! an empty repository yields nothing and says so.

pub mod change;
pub mod signature;

use super::{Connector, ConnectorError, Outcome, Page, PageRequest, Query, Skipped, blocking};
use crate::artifact::{Artifact, Captured, DateSpan};
use crate::period::Period;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use git2::{Commit, ErrorCode, ObjectType, Oid, Repository};
use serde_json::{Value, json};
use signature::Verifier;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use super::gitrepo::{UrlBase, decode, git_err, last_changes, rfc3339, time_utc, web_url};

/// Where GitHub looks for CODEOWNERS, in its order of precedence.
pub const CODEOWNERS_PATHS: &[&str] = &[".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];

#[derive(Clone)]
pub struct GitSource {
    name: String,
    path: PathBuf,
    branch: Option<String>,
    period: Period,
    allowed_signers: Option<PathBuf>,
    gpg_keyring: Option<PathBuf>,
    /// The branch and tip, resolved once so every query of a run reads the
    /// same commit and the collection records name it.
    tip: Arc<OnceLock<Result<Tip, CachedError>>>,
    /// The history query's walk, made on its first page and read by the
    /// later ones: artifacts are built a page at a time, so a history of
    /// 100,000 commits is never in memory as parsed artifacts at once.
    walk: Arc<std::sync::Mutex<Option<Arc<Walk>>>>,
}

/// What the history query found: the commits to record, newest first.
struct Walk {
    /// (commit, on the first-parent line), in the order artifacts go out.
    commits: Vec<(Oid, bool)>,
    outcome: Outcome,
    state: String,
}

/// Commits per page of the history query (two artifacts each, at most).
const HISTORY_PAGE: usize = 2_000;

/// A resolution error kept for every query of the run: (path, context,
/// libgit2's message).
type CachedError = (String, String, String);

/// The branch read and its tip (`None`: the branch has no commits yet).
#[derive(Debug, Clone)]
struct Tip {
    branch: String,
    oid: Option<Oid>,
}

impl GitSource {
    pub fn new(name: String, path: PathBuf, branch: Option<String>, period: Period) -> Self {
        GitSource {
            name,
            path,
            branch,
            period,
            allowed_signers: None,
            gpg_keyring: None,
            tip: Arc::default(),
            walk: Arc::default(),
        }
    }

    /// Keys to verify signatures against: an SSH `allowed_signers` file and
    /// an armored OpenPGP keyring. Without them, signatures are `unknown`.
    pub fn with_keys(
        mut self,
        allowed_signers: Option<PathBuf>,
        gpg_keyring: Option<PathBuf>,
    ) -> Self {
        self.allowed_signers = allowed_signers;
        self.gpg_keyring = gpg_keyring;
        self
    }

    fn open(&self) -> Result<Repository, ConnectorError> {
        let p = &self.path;
        crate::store::limit_mapped_packs();
        let repo = Repository::open(p).map_err(git_err(p, "opening"))?;
        if repo.is_shallow() {
            return Err(ConnectorError::Git {
                path: p.display().to_string(),
                context: "it is a shallow clone: history before its boundary is missing, so \
                          the period's changes would look complete and not be; fetch the full \
                          history (`git fetch --unshallow`) or point the source at a full clone"
                    .into(),
                source: git2::Error::from_str("shallow repository"),
            });
        }
        Ok(repo)
    }

    fn resolve(&self) -> Result<Tip, ConnectorError> {
        let repo = self.open()?;
        let p = &self.path;
        match &self.branch {
            Some(b) => {
                let found = repo.find_branch(b, git2::BranchType::Local).or_else(|_| {
                    repo.find_branch(&format!("origin/{b}"), git2::BranchType::Remote)
                });
                match found {
                    Ok(r) => {
                        let oid = r
                            .get()
                            .peel_to_commit()
                            .map_err(git_err(p, format!("reading the tip of branch `{b}`")))?
                            .id();
                        Ok(Tip {
                            branch: b.clone(),
                            oid: Some(oid),
                        })
                    }
                    Err(_) if repo.is_empty().unwrap_or(false) => Ok(Tip {
                        branch: b.clone(),
                        oid: None,
                    }),
                    Err(e) => Err(git_err(p, format!("branch `{b}` not found"))(e)),
                }
            }
            None => match repo.head() {
                Ok(head) => {
                    let name = head.shorthand().unwrap_or("HEAD").to_string();
                    let oid = head
                        .peel_to_commit()
                        .map_err(git_err(p, "reading the commit HEAD points at"))?
                        .id();
                    Ok(Tip {
                        branch: name,
                        oid: Some(oid),
                    })
                }
                Err(e) if e.code() == ErrorCode::UnbornBranch => {
                    let name = repo
                        .find_reference("HEAD")
                        .ok()
                        .and_then(|r| r.symbolic_target().ok().flatten().map(str::to_string))
                        .map(|t| t.trim_start_matches("refs/heads/").to_string())
                        .unwrap_or_else(|| "HEAD".into());
                    Ok(Tip {
                        branch: name,
                        oid: None,
                    })
                }
                Err(e) => Err(git_err(p, "reading HEAD")(e)),
            },
        }
    }

    fn tip(&self) -> Result<Tip, ConnectorError> {
        self.tip
            .get_or_init(|| {
                self.resolve().map_err(|e| match e {
                    ConnectorError::Git {
                        path,
                        context,
                        source,
                    } => (path, context, source.message().to_string()),
                    other => (
                        self.path.display().to_string(),
                        other.to_string(),
                        String::new(),
                    ),
                })
            })
            .clone()
            .map_err(|(path, context, message)| ConnectorError::Git {
                path,
                context,
                source: git2::Error::from_str(&message),
            })
    }

    /// The `query` an artifact records: which query of which source found
    /// it. Stable across runs on purpose: the tip and the period dates live
    /// in the collection record, and putting them here would rewrite every
    /// held artifact whenever the branch moves.
    fn artifact_query(&self, query: &Query) -> String {
        let branch = query.filters.get("branch").map(String::as_str);
        match (query.id.as_str(), branch) {
            ("history", Some(b)) => format!("{}: first-parent history of {b}", self.name),
            ("codeowners", Some(b)) => format!("{}: CODEOWNERS of {b}", self.name),
            ("tags", _) => format!("{}: tags", self.name),
            (id, _) => format!("{}: {id}", self.name),
        }
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(
            &self.name,
            self.allowed_signers.clone(),
            self.gpg_keyring.clone(),
        )
    }

    /// What the history query saves for the next run: everything its
    /// answer depends on (tool version, period, the signing keys named,
    /// branch) and the tip it read. `None` for a branch with no commits.
    fn history_state(&self, urls: &UrlBase, branch: &str, tip: Oid) -> String {
        let keys: String = [&self.allowed_signers, &self.gpg_keyring]
            .iter()
            .map(|k| match k {
                Some(p) => std::fs::read(p)
                    .map(|b| crate::artifact::canonical::sha256_hex(&b))
                    .unwrap_or_else(|_| "unreadable".into()),
                None => "-".into(),
            })
            .collect::<Vec<_>>()
            .join(",");
        // Every artifact's URL starts with it: another remote means other
        // URLs for what is already held.
        let url_base = crate::artifact::canonical::sha256_hex(urls.commit("").as_bytes());
        format!(
            "v1 tool={} period={}..{} keys={keys} urls={} branch={branch} tip={tip}",
            env!("CARGO_PKG_VERSION"),
            self.period.start(),
            self.period.end(),
            &url_base[..16]
        )
    }

    /// The first-parent history and every commit reachable from the tip,
    /// committed in the period. With the state saved by the last run: "not
    /// modified" when the tip and everything else are the same, only the
    /// new commits when the old tip is on the new tip's first-parent line
    /// (a fast-forward), and a complete answer otherwise (a force-push, a
    /// new period, other keys).
    fn walk(&self, saved: Option<&str>) -> Result<Walk, ConnectorError> {
        let p = &self.path;
        let repo = self.open()?;
        let Tip { branch, oid } = self.tip()?;
        let Some(tip) = oid else {
            return Ok(Walk {
                commits: Vec::new(),
                outcome: Outcome::Complete,
                state: String::new(),
            });
        };
        let urls = UrlBase::of(&repo, &self.name);
        let state = self.history_state(&urls, &branch, tip);
        if saved == Some(state.as_str()) {
            return Ok(Walk {
                commits: Vec::new(),
                outcome: Outcome::NotModified,
                state,
            });
        }
        // The old tip, when only the tip differs.
        let old_tip = saved.and_then(|s| {
            let (prefix, old) = s.rsplit_once(" tip=")?;
            let (now_prefix, _) = state.rsplit_once(" tip=")?;
            (prefix == now_prefix)
                .then(|| Oid::from_str(old).ok())
                .flatten()
        });
        // The first-parent line from the tip (down to the old tip when
        // there is one): what reached the branch.
        let mut first_parent = HashSet::new();
        let mut at = Some(tip);
        let mut reached_old = false;
        while let Some(oid) = at {
            if Some(oid) == old_tip {
                reached_old = true;
                break;
            }
            let c = repo.find_commit(oid).map_err(git_err(
                p,
                format!("reading commit {oid} of {branch}: missing or unreadable"),
            ))?;
            first_parent.insert(oid);
            at = c.parent_ids().next();
        }
        // Not a fast-forward (the old tip is not on the line): the walk
        // went to the root, and the answer is complete.
        let (outcome, hide) = match old_tip {
            Some(old) if reached_old => (Outcome::Incremental, Some(old)),
            _ => (Outcome::Complete, None),
        };
        // Commits reachable from the tip (and not from the old tip), each
        // read by id so a missing or unreadable object fails the source
        // naming it (a revwalk would only say that something was not found).
        // After a fast-forward, libgit2's walk of `tip ^old` lists the new
        // commits without visiting the whole history below the old tip.
        let mut stack = Vec::new();
        let mut seen: HashSet<Oid> = HashSet::from([tip]);
        match hide {
            Some(old) => {
                let what = format!("walking history from {tip} down to {old}");
                let mut w = repo.revwalk().map_err(git_err(p, &what))?;
                w.push(tip).map_err(git_err(p, &what))?;
                w.hide(old).map_err(git_err(p, &what))?;
                for o in w {
                    stack.push(o.map_err(git_err(p, &what))?);
                }
            }
            None => stack.push(tip),
        }
        let walking = hide.is_none();
        // (newest first by commit time, then id): the order artifacts go out.
        let mut found: Vec<(i64, Oid, bool)> = Vec::new();
        while let Some(oid) = stack.pop() {
            let commit = repo.find_commit(oid).map_err(git_err(
                p,
                format!(
                    "reading commit {oid} (reachable from {branch} at {tip}): missing or unreadable"
                ),
            ))?;
            if walking {
                for parent in commit.parent_ids() {
                    if seen.insert(parent) {
                        stack.push(parent);
                    }
                }
            }
            if !self
                .period
                .contains_time(time_utc(commit.committer().when()))
            {
                continue;
            }
            found.push((
                commit.committer().when().seconds(),
                oid,
                first_parent.contains(&oid),
            ));
        }
        found.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Ok(Walk {
            commits: found.into_iter().map(|(_, oid, on)| (oid, on)).collect(),
            outcome,
            state,
        })
    }

    /// The artifacts of commits `range` of `walk`: a change for each commit
    /// on the first-parent line, a commit for each.
    fn history_page(
        &self,
        walk: &Walk,
        range: std::ops::Range<usize>,
        query: &Query,
    ) -> Result<Vec<Artifact>, ConnectorError> {
        let p = &self.path;
        let repo = self.open()?;
        let urls = UrlBase::of(&repo, &self.name);
        let mut verifier = self.verifier();
        let mut out = Vec::with_capacity(range.len() * 2);
        for &(oid, on_line) in &walk.commits[range] {
            let commit = repo.find_commit(oid).map_err(git_err(
                p,
                format!("reading commit {oid}: missing or unreadable"),
            ))?;
            let facts = self.facts(&repo, &commit, &mut verifier)?;
            if on_line {
                out.push(self.change_artifact(&facts, &urls, query));
            }
            out.push(self.commit_artifact(&facts, on_line, &urls, query));
        }
        Ok(out)
    }

    /// One page of the history query: the walk is made on the first page
    /// (cursor `None`) and kept for the next ones (cursor = first commit).
    fn history(&self, query: &Query, page: &PageRequest) -> Result<Page, ConnectorError> {
        let walk = match &page.cursor {
            None => {
                let w = Arc::new(self.walk(page.state.as_deref())?);
                *self.walk.lock().expect("walk lock") = Some(w.clone());
                w
            }
            Some(_) => self
                .walk
                .lock()
                .expect("walk lock")
                .clone()
                .ok_or_else(|| ConnectorError::UnknownQuery {
                    source_name: self.name.clone(),
                    query: format!("{} (a page without its first)", query.id),
                })?,
        };
        let start: usize = match &page.cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| ConnectorError::UnknownQuery {
                source_name: self.name.clone(),
                query: format!("{} (cursor {c})", query.id),
            })?,
        };
        let end = (start + HISTORY_PAGE).min(walk.commits.len());
        let items = self.history_page(&walk, start.min(end)..end, query)?;
        let next = (end < walk.commits.len()).then(|| end.to_string());
        if next.is_none() {
            // The last page: the walk is not needed any more.
            *self.walk.lock().expect("walk lock") = None;
        }
        Ok(Page {
            items,
            outcome: walk.outcome,
            state: (!walk.state.is_empty()).then(|| walk.state.clone()),
            next,
            ..Page::default()
        })
    }

    /// What every artifact of a commit records, read once.
    fn facts(
        &self,
        repo: &Repository,
        c: &Commit<'_>,
        verifier: &mut Verifier,
    ) -> Result<CommitFacts, ConnectorError> {
        let p = &self.path;
        let id = c.id();
        let encoding = c.message_encoding().ok().flatten().map(str::to_string);
        let enc = encoding.as_deref();
        let message = decode(c.message_bytes(), enc);
        let summary = change::subject(&message);
        let signature = match c.header_field_bytes("gpgsig") {
            Ok(_) => {
                let (sig, data) = repo
                    .extract_signature(&id, None)
                    .map_err(git_err(p, format!("reading the signature of commit {id}")))?;
                let parsed = signature::parse(&sig);
                let outcome =
                    verifier.verify(&parsed, &sig, &data, time_utc(c.committer().when()))?;
                signature::to_json(Some(&parsed), Some(&outcome))
            }
            Err(e) if e.code() == ErrorCode::NotFound => signature::to_json(None, None),
            Err(e) => return Err(git_err(p, format!("reading the header of commit {id}"))(e)),
        };
        Ok(CommitFacts {
            sha: id.to_string(),
            parents: c.parent_ids().map(|p| p.to_string()).collect(),
            author: person(&c.author(), enc),
            committer: person(&c.committer(), enc),
            authored: time_utc(c.author().when()),
            committed: time_utc(c.committer().when()),
            trailers: change::trailers(&message),
            signature,
            encoding: encoding.filter(|e| !e.eq_ignore_ascii_case("utf-8")),
            summary,
            message,
        })
    }

    fn artifact(
        &self,
        kind: &str,
        f: &CommitFacts,
        content: Value,
        urls: &UrlBase,
        query: &Query,
    ) -> Artifact {
        Artifact {
            source: "git".into(),
            kind: kind.into(),
            object_id: format!("{}/{}", self.name, f.sha),
            url: urls.commit(&f.sha),
            title: f.summary.clone(),
            period: Some(DateSpan::day(f.committed.date_naive())),
            observed: BTreeMap::from([
                ("authored".into(), rfc3339(f.authored)),
                ("committed".into(), rfc3339(f.committed)),
            ]),
            content,
            query: self.artifact_query(query),
            shard: None,
            captured: None,
        }
    }

    /// What every artifact of a commit says about it, change or commit.
    fn commit_content(f: &CommitFacts, extra: Value) -> Value {
        let mut content = json!({
            "sha": f.sha,
            "parents": f.parents,
            "author": f.author,
            "committer": f.committer,
            "signature": f.signature,
            "summary": f.summary,
            "message": f.message,
            "trailers": f.trailers,
        });
        if let (Some(m), Value::Object(e)) = (content.as_object_mut(), extra) {
            m.extend(e);
        }
        f.add_encoding(&mut content);
        content
    }

    fn change_artifact(&self, f: &CommitFacts, urls: &UrlBase, query: &Query) -> Artifact {
        let c = change::classify(&f.summary, &f.message, f.parents.len(), &f.trailers);
        let content = Self::commit_content(
            f,
            json!({
                "change_type": c.change_type,
                "pull_request": c.pull_request.as_ref().map(change::PullRequest::to_json),
                "reviewers": c.reviewers,
                "review_trace": c.review_trace_json(),
            }),
        );
        self.artifact("change", f, content, urls, query)
    }

    fn commit_artifact(
        &self,
        f: &CommitFacts,
        first_parent: bool,
        urls: &UrlBase,
        query: &Query,
    ) -> Artifact {
        let content = Self::commit_content(f, json!({ "first_parent": first_parent }));
        self.artifact("commit", f, content, urls, query)
    }

    fn tags(&self, query: &Query) -> Result<(Vec<Artifact>, Vec<Skipped>), ConnectorError> {
        let p = &self.path;
        let repo = self.open()?;
        let urls = UrlBase::of(&repo, &self.name);
        let mut skipped = Vec::new();
        let mut names = Vec::new();
        let refs = repo
            .references_glob("refs/tags/*")
            .map_err(git_err(p, "listing tags"))?;
        for r in refs {
            let r = r.map_err(git_err(p, "listing tags"))?;
            match std::str::from_utf8(r.name_bytes()) {
                Ok(n) => names.push(n.trim_start_matches("refs/tags/").to_string()),
                Err(_) => skipped.push(Skipped {
                    path: String::from_utf8_lossy(r.name_bytes()).into_owned(),
                    reason: "tag name is not UTF-8".into(),
                }),
            }
        }
        names.sort_unstable();
        let mut verifier = self.verifier();
        let mut out = Vec::new();
        for name in &names {
            let name = name.as_str();
            let r = repo
                .find_reference(&format!("refs/tags/{name}"))
                .map_err(git_err(p, format!("reading tag {name}")))?;
            let Some(first) = r.target() else {
                skipped.push(Skipped {
                    path: format!("refs/tags/{name}"),
                    reason: "symbolic tag reference".into(),
                });
                continue;
            };
            // Follow tags of tags down to what they name; the outermost tag
            // object is the one the tag name points at.
            let mut obj = repo
                .find_object(first, None)
                .map_err(git_err(p, format!("reading object {first} of tag {name}")))?;
            let mut annotated = None;
            while obj.kind() == Some(ObjectType::Tag) {
                let t = obj.as_tag().expect("a tag object").clone();
                let next = t.target_id();
                annotated.get_or_insert(t);
                obj = repo.find_object(next, None).map_err(git_err(
                    p,
                    format!("reading object {next} named by tag {name}"),
                ))?;
            }
            let Some(target) = obj.as_commit() else {
                // Tags of trees or blobs carry no release evidence; say so.
                skipped.push(Skipped {
                    path: format!("refs/tags/{name}"),
                    reason: format!(
                        "names a {}, not a commit",
                        obj.kind().map_or("object", |k| k.str())
                    ),
                });
                continue;
            };
            let date = annotated
                .as_ref()
                .and_then(|t| t.tagger())
                .map(|s| time_utc(s.when()))
                .unwrap_or_else(|| time_utc(target.committer().when()));
            if !self.period.contains_time(date) {
                continue;
            }
            let (message, sig) = match &annotated {
                Some(t) => {
                    let odb = repo
                        .odb()
                        .map_err(git_err(p, "opening the object database"))?;
                    let raw = odb.read(t.id()).map_err(git_err(
                        p,
                        format!("reading tag object {} ({name})", t.id()),
                    ))?;
                    let (message, sig) = split_tag_signature(t.message_bytes().unwrap_or_default());
                    let sig = match (sig, signature_start(raw.data())) {
                        (Some(sig), Some(at)) => {
                            let parsed = signature::parse(sig);
                            let outcome = verifier.verify(&parsed, sig, &raw.data()[..at], date)?;
                            signature::to_json(Some(&parsed), Some(&outcome))
                        }
                        _ => signature::to_json(None, None),
                    };
                    (Some(String::from_utf8_lossy(message).into_owned()), sig)
                }
                None => (None, signature::to_json(None, None)),
            };
            let content = json!({
                "name": name,
                "target": target.id().to_string(),
                "annotated": annotated.is_some(),
                "tag_object": annotated.as_ref().map(|t| t.id().to_string()),
                "tagger": annotated.as_ref().and_then(|t| t.tagger()).map(|s| person(&s, None)),
                "message": message,
                "signature": sig,
            });
            out.push(Artifact {
                source: "git".into(),
                kind: "tag".into(),
                object_id: format!("{}/{name}", self.name),
                url: urls.tag(name),
                title: format!("tag {name}"),
                period: Some(DateSpan::day(date.date_naive())),
                observed: BTreeMap::from([("tagged".into(), rfc3339(date))]),
                content,
                query: self.artifact_query(query),
                shard: None,
                captured: None,
            });
        }
        Ok((out, skipped))
    }

    fn codeowners(&self, query: &Query) -> Result<Vec<Artifact>, ConnectorError> {
        let p = &self.path;
        let repo = self.open()?;
        let Some(tip) = self.tip()?.oid else {
            return Ok(Vec::new());
        };
        let urls = UrlBase::of(&repo, &self.name);
        let tree = repo
            .find_commit(tip)
            .and_then(|c| c.tree())
            .map_err(git_err(p, format!("reading the tree of commit {tip}")))?;
        let mut found = None;
        for path in CODEOWNERS_PATHS {
            match tree.get_path(Path::new(path)) {
                Ok(e) => {
                    let blob = repo
                        .find_blob(e.id())
                        .map_err(git_err(p, format!("reading {path} (blob {})", e.id())))?;
                    found = Some((*path, blob.content().to_vec()));
                    break;
                }
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(git_err(p, format!("reading {path} at {tip}"))(e)),
            }
        }
        let Some((path, blob)) = found else {
            return Ok(Vec::new());
        };
        let changed = last_changes(&repo, tip, &[path.to_string()])?;
        let (change_sha, change_time) = changed
            .get(path)
            .cloned()
            .unwrap_or_else(|| (tip.to_string(), Utc.timestamp_opt(0, 0).unwrap()));
        let text = String::from_utf8_lossy(&blob);
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let pattern = parts.next().unwrap_or_default();
            let owners: Vec<&str> = parts.collect();
            rules.push(json!({"line": i + 1, "pattern": pattern, "owners": owners}));
        }
        let content = json!({
            "path": path,
            "commit": change_sha,
            "rules": rules,
        });
        Ok(vec![Artifact {
            source: "git".into(),
            kind: "codeowners".into(),
            object_id: format!("{}/{path}", self.name),
            url: urls.blob(&change_sha, path),
            title: format!("CODEOWNERS ({path})"),
            period: Some(DateSpan::day(change_time.date_naive())),
            observed: BTreeMap::from([("last_changed".into(), rfc3339(change_time))]),
            content,
            query: self.artifact_query(query),
            shard: None,
            captured: Some(Captured { bytes: blob }),
        }])
    }
}

/// Facts of one commit shared by its `change` and `commit` artifacts.
struct CommitFacts {
    sha: String,
    parents: Vec<String>,
    author: Value,
    committer: Value,
    authored: DateTime<Utc>,
    committed: DateTime<Utc>,
    trailers: BTreeMap<String, Vec<String>>,
    signature: Value,
    /// The declared encoding, when not UTF-8.
    encoding: Option<String>,
    summary: String,
    message: String,
}

impl CommitFacts {
    fn add_encoding(&self, content: &mut Value) {
        if let Some(e) = &self.encoding {
            content
                .as_object_mut()
                .expect("object")
                .insert("encoding".into(), json!(e));
        }
    }
}

fn person(sig: &git2::Signature<'_>, encoding: Option<&str>) -> Value {
    json!({
        "name": decode(sig.name_bytes(), encoding),
        "email": decode(sig.email_bytes(), encoding),
        "time": rfc3339(time_utc(sig.when())),
    })
}

const SIGNATURE_MARKERS: &[&[u8]] = &[
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN SSH SIGNATURE-----",
    b"-----BEGIN SIGNED MESSAGE-----",
];

/// Where an in-message signature (of a tag) starts: the last line that
/// begins one, as git reads it.
fn signature_start(data: &[u8]) -> Option<usize> {
    let mut found = None;
    let mut at = 0;
    for line in data.split_inclusive(|b| *b == b'\n') {
        if SIGNATURE_MARKERS.iter().any(|m| line.starts_with(m)) {
            found = Some(at);
        }
        at += line.len();
    }
    found
}

/// A tag message without its signature, and the signature.
fn split_tag_signature(message: &[u8]) -> (&[u8], Option<&[u8]>) {
    match signature_start(message) {
        Some(at) => (&message[..at], Some(&message[at..])),
        None => (message, None),
    }
}

#[async_trait]
impl Connector for GitSource {
    fn source_type(&self) -> &'static str {
        "git"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn queries(&self) -> Vec<Query> {
        let (branch, tip) = match self.tip() {
            Ok(Tip {
                branch,
                oid: Some(oid),
            }) => (branch, Some(oid.to_string())),
            Ok(Tip { branch, oid: None }) => (branch, None),
            // The fetch reports the error; the record must not guess.
            Err(_) => (
                self.branch.clone().unwrap_or_else(|| "HEAD".into()),
                Some("unresolved".into()),
            ),
        };
        let tip_filter = tip
            .clone()
            .unwrap_or_else(|| "none: the branch has no commits".into());
        let period = [
            ("period".to_string(), self.period.label().to_string()),
            ("period_start".to_string(), self.period.start().to_string()),
            ("period_end".to_string(), self.period.end().to_string()),
        ];
        let mut history_filters = BTreeMap::from([
            ("branch".to_string(), branch.clone()),
            ("tip".to_string(), tip_filter.clone()),
            ("date".to_string(), "committer date, UTC".to_string()),
        ]);
        history_filters.extend(period.clone());
        let history = match &tip {
            Some(tip) => format!(
                "first-parent history of {branch} at {tip} (changes), and every commit reachable from it (commits), committed {}..{}",
                self.period.start(),
                self.period.end()
            ),
            None => format!("first-parent history of {branch}: the branch has no commits"),
        };
        let mut tag_filters = BTreeMap::from([(
            "date".to_string(),
            "tagger date, or the commit date of a lightweight tag, UTC".to_string(),
        )]);
        tag_filters.extend(period);
        vec![
            Query {
                id: "history".into(),
                kinds: vec!["change".into(), "commit".into()],
                description: history,
                filters: history_filters,
                period_scoped: true,
            },
            Query {
                id: "tags".into(),
                kinds: vec!["tag".into()],
                description: format!(
                    "tags of commits dated {}..{}",
                    self.period.start(),
                    self.period.end()
                ),
                filters: tag_filters,
                period_scoped: true,
            },
            Query {
                id: "codeowners".into(),
                kinds: vec!["codeowners".into()],
                description: match &tip {
                    Some(tip) => format!("CODEOWNERS of {branch} at {tip}"),
                    None => format!("CODEOWNERS of {branch}: the branch has no commits"),
                },
                filters: BTreeMap::from([
                    ("branch".to_string(), branch),
                    ("tip".to_string(), tip_filter),
                    ("paths".to_string(), CODEOWNERS_PATHS.join(", ")),
                ]),
                period_scoped: false,
            },
        ]
    }

    async fn fetch(&self, query: &Query, page: PageRequest) -> Result<Page, ConnectorError> {
        let this = self.clone();
        let q = query.clone();
        let (items, skipped, outcome, state, next) = blocking(move || match q.id.as_str() {
            "history" => {
                let p = this.history(&q, &page)?;
                Ok((p.items, Vec::new(), p.outcome, p.state, p.next))
            }
            "tags" => {
                let (items, skipped) = this.tags(&q)?;
                Ok((items, skipped, Outcome::Complete, None, None))
            }
            "codeowners" => Ok((
                this.codeowners(&q)?,
                Vec::new(),
                Outcome::Complete,
                None,
                None,
            )),
            other => Err(ConnectorError::UnknownQuery {
                source_name: this.name.clone(),
                query: other.into(),
            }),
        })
        .await?;
        Ok(Page {
            items,
            skipped,
            outcome,
            state,
            next,
            ..Page::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_signatures_are_split_from_the_message() {
        let msg = b"Release 1\n\nNotes\n-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        let (m, s) = split_tag_signature(msg);
        assert_eq!(m, b"Release 1\n\nNotes\n");
        assert!(s.unwrap().starts_with(b"-----BEGIN PGP"));
        assert_eq!(split_tag_signature(b"plain\n"), (&b"plain\n"[..], None));
    }
}
