//! Git helpers shared by connectors that read a local repository (the
//! `git` source and the `files` source's history lookups): stable web or
//! `local:` addresses of objects, the commit that last changed a path,
//! times in UTC, and decoding of text in a commit's declared encoding.
//!
//! Nothing here ever puts an absolute local path into an address: moving
//! the evidence repository or the source must change no artifact byte.

use super::ConnectorError;
use chrono::{DateTime, TimeZone, Utc};
use git2::{ErrorCode, Oid, Repository};
use std::collections::HashMap;
use std::path::Path;

/// A closure turning a git2 error into a [`ConnectorError`] naming the
/// repository and what was being read.
pub fn git_err(
    path: &Path,
    context: impl Into<String>,
) -> impl FnOnce(git2::Error) -> ConnectorError {
    let path = path.display().to_string();
    let context = context.into();
    move |source| ConnectorError::Git {
        path,
        context,
        source,
    }
}

/// A git time in UTC (offsets vary by committer, not by object).
pub fn time_utc(t: git2::Time) -> DateTime<Utc> {
    Utc.timestamp_opt(t.seconds(), 0)
        .single()
        .unwrap_or_default()
}

/// RFC 3339 with seconds and `Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Decodes text of a commit or tag written in `encoding` (its `encoding`
/// header; `None` means UTF-8). ISO-8859-1 maps byte for byte to the first
/// 256 code points; an encoding we do not know is read as lossy UTF-8, and
/// the artifact records the declared name so a reader can tell.
pub fn decode(bytes: &[u8], encoding: Option<&str>) -> String {
    match encoding.map(|e| e.trim().to_ascii_lowercase()) {
        Some(e) if LATIN1_NAMES.contains(&e.as_str()) => bytes.iter().map(|b| *b as char).collect(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Names git and iconv accept for ISO-8859-1.
const LATIN1_NAMES: &[&str] = &[
    "iso-8859-1",
    "iso8859-1",
    "iso_8859-1",
    "iso88591",
    "latin1",
    "latin-1",
    "l1",
];

/// Where objects of a source can be looked at: the forge's web pages when
/// the repository's `origin` is a forge, else a `local:<source name>`
/// address that names the object by id and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlBase {
    base: String,
    forge: bool,
}

impl UrlBase {
    /// The base of `repo`, a source configured as `source`.
    pub fn of(repo: &Repository, source: &str) -> Self {
        if let Ok(remote) = repo.find_remote("origin")
            && let Ok(url) = remote.url()
            && let Some(web) = web_url(url)
        {
            return UrlBase {
                base: web,
                forge: true,
            };
        }
        UrlBase {
            base: format!("local:{source}"),
            forge: false,
        }
    }

    pub fn commit(&self, sha: &str) -> String {
        format!("{}/commit/{sha}", self.base)
    }

    pub fn tag(&self, name: &str) -> String {
        if self.forge {
            format!("{}/releases/tag/{name}", self.base)
        } else {
            format!("{}/tag/{name}", self.base)
        }
    }

    pub fn blob(&self, sha: &str, path: &str) -> String {
        format!("{}/blob/{sha}/{path}", self.base)
    }
}

/// `https://host/owner/repo` for https and ssh remotes of a forge; `None`
/// for local paths and shapes we cannot read safely.
///
/// Remote URLs can carry secrets: user info (`token@host`), query strings,
/// `;` parameters, or a token as a path segment. Only the scheme, host and
/// the repository path survive: the segments up to one ending in `.git`,
/// each looking like a name and not like a token; two of them (`owner/repo`)
/// on any host but GitLab's, which allows subgroups (`group/sub/repo`), and
/// Azure DevOps' `org/project/_git/repo`.
pub fn web_url(remote: &str) -> Option<String> {
    let remote = remote.split(['?', '#', ';']).next().unwrap_or_default();
    let (host, path) = if let Some(rest) = remote
        .strip_prefix("https://")
        .or_else(|| remote.strip_prefix("http://"))
    {
        // Everything up to the last `@` is user info, even when a password
        // holds a `/` it should have escaped.
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        rest.split_once('/')?
    } else if let Some(rest) = remote.strip_prefix("ssh://") {
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        let (host, path) = rest.split_once('/')?;
        (host.split(':').next()?, path)
    } else if !remote.contains("://")
        && let Some((user_host, path)) = remote.split_once(':')
    {
        // scp-like `git@host:owner/repo`; a bare `C:` drive has no user.
        (user_host.rsplit_once('@').map(|(_, h)| h)?, path)
    } else {
        return None;
    };
    let host = host.to_ascii_lowercase();
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if !host_ok {
        return None;
    }
    let mut segments = Vec::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if let Some(repo) = seg.strip_suffix(".git") {
            segments.push(repo);
            break;
        }
        segments.push(seg);
    }
    segments.retain(|s| !token_like(s));
    // GitLab groups nest; Azure DevOps paths are `org/project/_git/repo`.
    let nested = host.contains("gitlab") || segments.contains(&"_git");
    let keep = if nested {
        segments.len()
    } else {
        2.min(segments.len())
    };
    // Owner and repository are the last segments: anything in front of
    // them on a two-segment forge is not part of the repository's name.
    let path = &segments[segments.len() - keep..];
    if path.len() < 2 || !path.iter().all(|s| name_like(s)) {
        return None;
    }
    Some(format!("https://{host}/{}", path.join("/")))
}

/// A path segment that can be an owner, group or repository name.
fn name_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A segment that looks like a credential rather than a name: a known
/// token prefix, or a long run of letters and digits with no separator.
fn token_like(s: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "gldt-",
        "glcbt-",
        "glptt-",
        "x-access-token",
        "x-token-auth",
        "oauth2",
    ];
    let lower = s.to_ascii_lowercase();
    PREFIXES.iter().any(|p| lower.starts_with(p))
        || !name_like(s)
        || (s.len() >= 30 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The entry at `path` in `tree`: `None` when it is truly absent, an error
/// when it could not be read.
fn entry_id(
    tree: &git2::Tree<'_>,
    path: &str,
    repo_path: &Path,
    commit: Oid,
) -> Result<Option<Oid>, ConnectorError> {
    match tree.get_path(Path::new(path)) {
        Ok(e) => Ok(Some(e.id())),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git_err(
            repo_path,
            format!("reading `{path}` in commit {commit}"),
        )(e)),
    }
}

/// For each path, the commit (first-parent history from `tip`) that last
/// changed it, with that commit's time. Paths never found are left out;
/// an object that cannot be read fails the lookup, naming it.
pub fn last_changes(
    repo: &Repository,
    tip: Oid,
    paths: &[String],
) -> Result<HashMap<String, (String, DateTime<Utc>)>, ConnectorError> {
    let rp = repo.path();
    let mut pending: Vec<&String> = paths.iter().collect();
    let mut out = HashMap::new();
    let mut commit = repo
        .find_commit(tip)
        .map_err(git_err(rp, format!("reading commit {tip}")))?;
    while !pending.is_empty() {
        let id = commit.id();
        let tree = commit
            .tree()
            .map_err(git_err(rp, format!("reading the tree of commit {id}")))?;
        let parent = match commit.parent_ids().next() {
            Some(pid) => Some(
                repo.find_commit(pid)
                    .map_err(git_err(rp, format!("reading commit {pid}, parent of {id}")))?,
            ),
            None => None,
        };
        let parent_tree = match &parent {
            Some(pc) => Some(pc.tree().map_err(git_err(
                rp,
                format!("reading the tree of commit {}", pc.id()),
            ))?),
            None => None,
        };
        let mut still = Vec::with_capacity(pending.len());
        for path in pending {
            let here = entry_id(&tree, path, rp, id)?;
            let before = match &parent_tree {
                Some(t) => entry_id(t, path, rp, id)?,
                None => None,
            };
            if here.is_some() && here != before {
                out.insert(
                    path.clone(),
                    (id.to_string(), time_utc(commit.committer().when())),
                );
            } else if here.is_some() {
                still.push(path);
            }
            // Absent here means it is not in the committed history we walk
            // (untracked, or deleted): no date to give.
        }
        pending = still;
        match parent {
            Some(pc) => commit = pc,
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls_from_remotes() {
        let cases = [
            ("https://github.com/o/r.git", Some("https://github.com/o/r")),
            ("git@github.com:o/r.git", Some("https://github.com/o/r")),
            (
                "ssh://git@gitlab.example:2222/g/r",
                Some("https://gitlab.example/g/r"),
            ),
            (
                "https://gitlab.com/group/sub/project.git",
                Some("https://gitlab.com/group/sub/project"),
            ),
            (
                "https://org@dev.azure.com/org/proj/_git/repo",
                Some("https://dev.azure.com/org/proj/_git/repo"),
            ),
            ("/home/me/repo", None),
            ("../relative", None),
            ("file:///srv/git/r.git", None),
            ("C:\\repos\\r", None),
        ];
        for (remote, want) in cases {
            assert_eq!(web_url(remote).as_deref(), want, "{remote}");
        }
    }

    #[test]
    fn secrets_in_remote_urls_do_not_survive() {
        let cases = [
            "https://x-access-token:SECRET1@github.com/o/r",
            "https://github.com/o/r.git?access_token=SECRET1#frag",
            "https://github.com/o/r;token=SECRET1",
            "https://github.com/o/r.git;SECRET1",
            "https://github.com/ghp_SECRET1abcdefghijklmnopqrstuvwxyz/o/r.git",
            "https://github.com/o/r.git/SECRET1",
            "https://host.example/SECRET1AbCdEfGhIjKlMnOpQrStUvWxYz0123/o/r.git",
            "https://gitlab.com/glpat-SECRET1xyz/group/sub/r.git",
            "https://oauth2:SECRET1@gitlab.com/group/r.git",
            "https://user:SECRET1/x@github.com/o/r.git",
        ];
        for remote in cases {
            let url = web_url(remote);
            assert!(
                url.as_deref().is_none_or(|u| !u.contains("SECRET1")),
                "{remote} -> {url:?}"
            );
        }
        assert_eq!(
            web_url("https://github.com/o/r;token=SECRET1").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            web_url("https://github.com/ghp_SECRET1abcdefghijklmnopqrstuvwxyz/o/r.git").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            web_url("https://gitlab.com/glpat-SECRET1xyz/group/sub/r.git").as_deref(),
            Some("https://gitlab.com/group/sub/r")
        );
        assert_eq!(
            web_url("https://host.example/SECRET1AbCdEfGhIjKlMnOpQrStUvWxYz0123/o/r.git")
                .as_deref(),
            Some("https://host.example/o/r")
        );
    }

    #[test]
    fn latin1_messages_are_decoded_by_their_header() {
        assert_eq!(decode(b"caf\xe9", Some("ISO-8859-1")), "café");
        assert_eq!(decode("café".as_bytes(), None), "café");
        assert_eq!(decode("café".as_bytes(), Some("UTF-8")), "café");
    }

    #[test]
    fn local_addresses_name_the_source_not_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let urls = UrlBase::of(&repo, "app");
        assert_eq!(urls.commit("abc"), "local:app/commit/abc");
        assert_eq!(urls.tag("v1"), "local:app/tag/v1");
        assert_eq!(urls.blob("abc", "a/b.md"), "local:app/blob/abc/a/b.md");
        repo.remote("origin", "https://t0ken@github.com/o/r.git")
            .unwrap();
        let urls = UrlBase::of(&repo, "app");
        assert_eq!(urls.commit("abc"), "https://github.com/o/r/commit/abc");
        assert_eq!(urls.tag("v1"), "https://github.com/o/r/releases/tag/v1");
    }
}
