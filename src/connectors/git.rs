//! The `git` source: a local repository read with git2. Yields commits and
//! merge commits dated in the period (who wrote and committed them, whether
//! they are signed, what review trace a merge carries), every tag, and the
//! CODEOWNERS file.

use super::{Connector, ConnectorError, Page, PageRequest, Query, blocking};
use crate::artifact::{Artifact, Captured, DateSpan};
use crate::period::Period;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use git2::{Commit, Oid, Repository, Sort};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where GitHub looks for CODEOWNERS, in its order of precedence.
pub const CODEOWNERS_PATHS: &[&str] = &[".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];

pub struct GitSource {
    name: String,
    path: PathBuf,
    branch: Option<String>,
    period: Period,
}

impl GitSource {
    pub fn new(name: String, path: PathBuf, branch: Option<String>, period: Period) -> Self {
        GitSource {
            name,
            path,
            branch,
            period,
        }
    }
}

fn git_err(path: &Path, context: impl Into<String>) -> impl FnOnce(git2::Error) -> ConnectorError {
    let path = path.display().to_string();
    let context = context.into();
    move |source| ConnectorError::Git {
        path,
        context,
        source,
    }
}

/// A git time as RFC 3339 in UTC (offsets vary by committer, not by object).
pub fn time_utc(t: git2::Time) -> DateTime<Utc> {
    Utc.timestamp_opt(t.seconds(), 0)
        .single()
        .unwrap_or_default()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The web address of a repository from its `origin` remote, or a
/// `file://` address of its folder.
pub struct UrlBase(String, bool);

impl UrlBase {
    pub fn of(repo: &Repository) -> Self {
        if let Ok(remote) = repo.find_remote("origin")
            && let Ok(url) = remote.url()
            && let Some(web) = web_url(url)
        {
            return UrlBase(web, true);
        }
        let dir = repo.workdir().unwrap_or_else(|| repo.path());
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        UrlBase(
            format!("file://{}", dir.display().to_string().trim_end_matches('/')),
            false,
        )
    }

    pub fn commit(&self, sha: &str) -> String {
        if self.1 {
            format!("{}/commit/{sha}", self.0)
        } else {
            format!("{}#commit={sha}", self.0)
        }
    }

    pub fn tag(&self, name: &str) -> String {
        if self.1 {
            format!("{}/releases/tag/{name}", self.0)
        } else {
            format!("{}#tag={name}", self.0)
        }
    }

    pub fn blob(&self, sha: &str, path: &str) -> String {
        if self.1 {
            format!("{}/blob/{sha}/{path}", self.0)
        } else {
            format!("{}/{path}#commit={sha}", self.0)
        }
    }
}

/// `https://host/owner/repo` for https and ssh remotes of a forge; `None`
/// for local paths and unknown shapes. Credentials in the URL are dropped.
pub fn web_url(remote: &str) -> Option<String> {
    // Query strings and fragments can carry tokens; they never name a repo.
    let remote = remote.split(['?', '#']).next().unwrap_or_default();
    let trimmed = remote.trim_end_matches('/').trim_end_matches(".git");
    let (host, path) = if let Some(rest) = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
    {
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        rest.split_once('/')?
    } else if let Some(rest) = trimmed.strip_prefix("ssh://") {
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        let (host, path) = rest.split_once('/')?;
        (host.split(':').next()?, path)
    } else if let Some((user_host, path)) = trimmed.split_once(':') {
        let host = user_host.rsplit_once('@').map(|(_, h)| h)?;
        (host, path)
    } else {
        return None;
    };
    if host.is_empty() || path.split('/').filter(|s| !s.is_empty()).count() < 2 {
        return None;
    }
    Some(format!("https://{host}/{}", path.trim_start_matches('/')))
}

fn person(sig: &git2::Signature<'_>) -> Value {
    json!({
        "name": String::from_utf8_lossy(sig.name_bytes()),
        "email": String::from_utf8_lossy(sig.email_bytes()),
        "time": rfc3339(time_utc(sig.when())),
    })
}

/// `gpg`, `ssh` or `x509` from the armor of a commit or tag signature.
fn signature_kind(sig: &[u8]) -> &'static str {
    let s = String::from_utf8_lossy(sig);
    if s.contains("BEGIN SSH SIGNATURE") {
        "ssh"
    } else if s.contains("BEGIN SIGNED MESSAGE") || s.contains("BEGIN CERTIFICATE") {
        "x509"
    } else {
        "gpg"
    }
}

/// Trailers (`Key: value` lines of the last paragraph), keys as written.
pub fn trailers(message: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let last = message.trim_end().rsplit("\n\n").next().unwrap_or("");
    if last == message.trim_end() && !message.contains("\n\n") {
        return out;
    }
    for line in last.lines() {
        if let Some((k, v)) = line.split_once(": ")
            && !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            out.entry(k.to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

/// The pull/merge request a merge commit's message names, if any.
fn pull_request_of(summary: &str, message: &str) -> Option<String> {
    if let Some(rest) = summary.strip_prefix("Merge pull request #") {
        let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !n.is_empty() {
            return Some(format!("#{n}"));
        }
    }
    for line in message.lines() {
        if let Some(rest) = line.trim().strip_prefix("See merge request ") {
            return Some(rest.trim().to_string());
        }
    }
    None
}

const REVIEW_TRAILERS: &[&str] = &["Reviewed-by", "Approved-by", "Reviewed-on"];

impl GitSource {
    fn branch_ref(&self, repo: &Repository) -> Result<(String, Oid), ConnectorError> {
        let p = &self.path;
        match &self.branch {
            Some(b) => {
                let r = repo
                    .find_branch(b, git2::BranchType::Local)
                    .or_else(|_| repo.find_branch(&format!("origin/{b}"), git2::BranchType::Remote))
                    .map_err(git_err(p, format!("branch `{b}` not found")))?;
                let oid = r
                    .get()
                    .peel_to_commit()
                    .map_err(git_err(p, format!("branch `{b}`")))?
                    .id();
                Ok((b.clone(), oid))
            }
            None => {
                let head = repo
                    .head()
                    .map_err(git_err(p, "reading HEAD (an empty repository?)"))?;
                let name = head.shorthand().unwrap_or("HEAD").to_string();
                let oid = head
                    .peel_to_commit()
                    .map_err(git_err(p, "reading HEAD"))?
                    .id();
                Ok((name, oid))
            }
        }
    }

    fn history(&self, query: &Query) -> Result<Vec<Artifact>, ConnectorError> {
        let p = &self.path;
        let repo = Repository::open(p).map_err(git_err(p, "opening"))?;
        let urls = UrlBase::of(&repo);
        let (_, tip) = self.branch_ref(&repo)?;
        let mut walk = repo.revwalk().map_err(git_err(p, "walking history"))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .map_err(git_err(p, "walking history"))?;
        walk.push(tip).map_err(git_err(p, "walking history"))?;
        let mut out = Vec::new();
        for oid in walk {
            let oid = oid.map_err(git_err(p, "walking history"))?;
            let commit = repo
                .find_commit(oid)
                .map_err(git_err(p, format!("reading commit {oid}")))?;
            let when = time_utc(commit.committer().when());
            if !self.period.contains_time(when) {
                continue;
            }
            out.push(self.commit_artifact(&repo, &commit, &urls, query));
        }
        Ok(out)
    }

    fn commit_artifact(
        &self,
        repo: &Repository,
        c: &Commit<'_>,
        urls: &UrlBase,
        query: &Query,
    ) -> Artifact {
        let sha = c.id().to_string();
        let message = String::from_utf8_lossy(c.message_bytes()).into_owned();
        let summary = message.lines().next().unwrap_or("").to_string();
        let signature = repo.extract_signature(&c.id(), None).ok();
        let parents: Vec<String> = c.parent_ids().map(|p| p.to_string()).collect();
        let trailers = trailers(&message);
        let is_merge = parents.len() > 1;
        let mut content = json!({
            "sha": sha,
            "parents": parents,
            "author": person(&c.author()),
            "committer": person(&c.committer()),
            "signed": signature.is_some(),
            "signature_kind": signature.as_ref().map(|(s, _)| signature_kind(s)),
            "summary": summary,
            "message": message,
            "trailers": trailers,
        });
        if is_merge {
            let pr = pull_request_of(&summary, &message);
            let reviewers: Vec<String> = REVIEW_TRAILERS
                .iter()
                .filter(|k| **k != "Reviewed-on")
                .flat_map(|k| trailers.get(*k).cloned().unwrap_or_default())
                .collect();
            let trace = pr.is_some() || REVIEW_TRAILERS.iter().any(|k| trailers.contains_key(*k));
            let m = content.as_object_mut().expect("object");
            m.insert("pull_request".into(), json!(pr));
            m.insert("reviewers".into(), json!(reviewers));
            m.insert("review_trace".into(), json!(trace));
        }
        let committed = time_utc(c.committer().when());
        Artifact {
            source: "git".into(),
            kind: if is_merge { "merge" } else { "commit" }.into(),
            object_id: format!("{}/{sha}", self.name),
            url: urls.commit(&sha),
            title: summary,
            period: Some(DateSpan::day(committed.date_naive())),
            observed: BTreeMap::from([
                ("authored".into(), rfc3339(time_utc(c.author().when()))),
                ("committed".into(), rfc3339(committed)),
            ]),
            content,
            query: format!("{}: {}", self.name, query.description),
            shard: None,
            captured: None,
        }
    }

    fn tags(&self, query: &Query) -> Result<Vec<Artifact>, ConnectorError> {
        let p = &self.path;
        let repo = Repository::open(p).map_err(git_err(p, "opening"))?;
        let urls = UrlBase::of(&repo);
        let names = repo.tag_names(None).map_err(git_err(p, "listing tags"))?;
        let mut out = Vec::new();
        for name in names.iter().filter_map(|n| n.ok().flatten()) {
            let r = repo
                .find_reference(&format!("refs/tags/{name}"))
                .map_err(git_err(p, format!("reading tag {name}")))?;
            let Ok(target) = r.peel_to_commit() else {
                // Tags of trees or blobs carry no release evidence.
                continue;
            };
            let annotated = r.peel_to_tag().ok();
            let (tagger, message, signed, date) = match &annotated {
                Some(t) => {
                    let msg =
                        String::from_utf8_lossy(t.message_bytes().unwrap_or_default()).into_owned();
                    let signed = msg.contains("-----BEGIN ");
                    let date = t.tagger().map(|s| time_utc(s.when()));
                    (t.tagger().map(|s| person(&s)), Some(msg), signed, date)
                }
                None => (None, None, false, None),
            };
            let date = date.unwrap_or_else(|| time_utc(target.committer().when()));
            let content = json!({
                "name": name,
                "target": target.id().to_string(),
                "annotated": annotated.is_some(),
                "tagger": tagger,
                "message": message,
                "signed": signed,
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
                query: format!("{}: {}", self.name, query.description),
                shard: None,
                captured: None,
            });
        }
        Ok(out)
    }

    fn codeowners(&self, query: &Query) -> Result<Vec<Artifact>, ConnectorError> {
        let p = &self.path;
        let repo = Repository::open(p).map_err(git_err(p, "opening"))?;
        let urls = UrlBase::of(&repo);
        let (_, tip) = self.branch_ref(&repo)?;
        let tree = repo
            .find_commit(tip)
            .and_then(|c| c.tree())
            .map_err(git_err(p, "reading the tip tree"))?;
        let Some((path, blob)) = CODEOWNERS_PATHS.iter().find_map(|path| {
            let e = tree.get_path(Path::new(path)).ok()?;
            let b = repo.find_blob(e.id()).ok()?;
            Some((*path, b.content().to_vec()))
        }) else {
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
            query: format!("{}: {}", self.name, query.description),
            shard: None,
            captured: Some(Captured { bytes: blob }),
        }])
    }
}

/// For each path, the commit (first-parent history from `tip`) that last
/// changed it, with that commit's time. Paths never found are left out.
pub fn last_changes(
    repo: &Repository,
    tip: Oid,
    paths: &[String],
) -> Result<HashMap<String, (String, DateTime<Utc>)>, ConnectorError> {
    let rp = repo.path();
    let mut pending: Vec<&String> = paths.iter().collect();
    let mut out = HashMap::new();
    let blob_at =
        |tree: &git2::Tree<'_>, path: &str| tree.get_path(Path::new(path)).ok().map(|e| e.id());
    let mut commit = repo
        .find_commit(tip)
        .map_err(git_err(rp, "reading history"))?;
    while !pending.is_empty() {
        let tree = commit.tree().map_err(git_err(rp, "reading history"))?;
        let parent = commit.parents().next();
        let parent_tree = match &parent {
            Some(pc) => Some(pc.tree().map_err(git_err(rp, "reading history"))?),
            None => None,
        };
        pending.retain(|path| {
            let here = blob_at(&tree, path);
            let before = parent_tree.as_ref().and_then(|t| blob_at(t, path));
            if here.is_some() && here != before {
                out.insert(
                    (*path).clone(),
                    (commit.id().to_string(), time_utc(commit.committer().when())),
                );
                false
            } else {
                // Absent here means it is not in the committed history we
                // walk (untracked, or deleted): no date to give.
                here.is_some()
            }
        });
        match parent {
            Some(pc) => commit = pc,
            None => break,
        }
    }
    Ok(out)
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
        let branch = self.branch.clone().unwrap_or_else(|| "HEAD".into());
        let period_filter = BTreeMap::from([
            ("branch".to_string(), branch.clone()),
            ("period".to_string(), self.period.to_string()),
            ("date".to_string(), "committer date, UTC".to_string()),
        ]);
        vec![
            Query {
                id: "history".into(),
                kinds: vec!["commit".into(), "merge".into()],
                description: format!("commits reachable from {branch}"),
                filters: period_filter,
                period_scoped: true,
            },
            Query {
                id: "tags".into(),
                kinds: vec!["tag".into()],
                description: "tags pointing at commits".into(),
                filters: BTreeMap::new(),
                period_scoped: false,
            },
            Query {
                id: "codeowners".into(),
                kinds: vec!["codeowners".into()],
                description: format!("CODEOWNERS at the tip of {branch}"),
                filters: BTreeMap::from([("paths".to_string(), CODEOWNERS_PATHS.join(", "))]),
                period_scoped: false,
            },
        ]
    }

    async fn fetch(&self, query: &Query, _page: PageRequest) -> Result<Page, ConnectorError> {
        let this = GitSource {
            name: self.name.clone(),
            path: self.path.clone(),
            branch: self.branch.clone(),
            period: self.period.clone(),
        };
        let q = query.clone();
        let items = blocking(move || match q.id.as_str() {
            "history" => this.history(&q),
            "tags" => this.tags(&q),
            "codeowners" => this.codeowners(&q),
            other => Err(ConnectorError::UnknownQuery {
                source_name: this.name.clone(),
                query: other.into(),
            }),
        })
        .await?;
        Ok(Page {
            items,
            ..Page::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls_from_remotes() {
        assert_eq!(
            web_url("https://github.com/o/r.git").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            web_url("git@github.com:o/r.git").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            web_url("ssh://git@gitlab.example:2222/g/r").as_deref(),
            Some("https://gitlab.example/g/r")
        );
        assert_eq!(
            web_url("https://x-access-token:SECRET@github.com/o/r").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            web_url("https://github.com/o/r.git?access_token=SECRET#frag").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(web_url("/home/me/repo"), None);
        assert_eq!(web_url("../relative"), None);
    }

    #[test]
    fn trailers_come_from_the_last_paragraph() {
        let t = trailers(
            "Fix\n\nBody text: not a trailer?\n\nReviewed-by: Ann <a@x>\nSigned-off-by: Bo <b@x>\n",
        );
        assert_eq!(t["Reviewed-by"], ["Ann <a@x>"]);
        assert_eq!(t["Signed-off-by"], ["Bo <b@x>"]);
        assert!(!t.contains_key("Body text"));
        assert!(trailers("Subject: only").is_empty());
    }

    #[test]
    fn pull_request_numbers_from_merge_messages() {
        assert_eq!(
            pull_request_of("Merge pull request #42 from a/b", "").as_deref(),
            Some("#42")
        );
        assert_eq!(
            pull_request_of(
                "Merge branch 'x'",
                "Merge branch 'x'\n\nSee merge request g/r!7\n"
            )
            .as_deref(),
            Some("g/r!7")
        );
        assert_eq!(
            pull_request_of("Merge branch 'x' into main", "Merge branch 'x' into main"),
            None
        );
    }
}
