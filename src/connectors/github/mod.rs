//! The `github` source: evidence from the GitHub API.
//!
//! Collected so far: the `repository` kind (each repository in scope with
//! the settings an auditor asks about: visibility, default branch,
//! archived, the security features enabled). Repositories come from the
//! organization's list (`org`, filtered by `include`/`exclude` name
//! patterns) and from `repos` named one by one.
//!
//! Every page of a listing is fetched with its validator saved in the
//! query's state. The next run revalidates the saved pages with
//! conditional requests: when every one answers 304, the query is
//! *not modified* and the held artifacts stand; when any changed, the
//! listing is fetched again in full, so that a repository that left it is
//! seen to be gone.

pub mod client;

use super::http::{Politeness, Reply, next_link};
use super::{Connector, ConnectorError, Outcome, Page, PageRequest, Query};
use crate::artifact::Artifact;
use async_trait::async_trait;
use client::{GithubClient, GithubEnv};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What a `github` source is configured to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GithubSpec {
    /// The organization whose repositories are listed.
    pub org: Option<String>,
    /// Repositories named one by one (`owner/name`), always in scope.
    pub repos: Vec<String>,
    /// Name patterns (`*`, `?`) for the organization's list; empty: all.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl GithubSpec {
    /// Whether the organization's repository `name` is in scope.
    fn wants(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob(p, name)))
            && !self.exclude.iter().any(|p| glob(p, name))
    }

    fn names_explicitly(&self, full_name: &str) -> bool {
        self.repos.iter().any(|r| r.eq_ignore_ascii_case(full_name))
    }

    /// What the saved listing state depends on besides GitHub's answers.
    fn scope(&self) -> String {
        format!(
            "org={};repos={};include={};exclude={}",
            self.org.as_deref().unwrap_or(""),
            self.repos.join(","),
            self.include.join(","),
            self.exclude.join(",")
        )
    }
}

/// `*` any run of characters, `?` one; the whole name must match.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

pub struct GithubSource {
    name: String,
    spec: GithubSpec,
    client: GithubClient,
}

impl GithubSource {
    pub fn connect(
        name: String,
        spec: GithubSpec,
        env: &GithubEnv,
        rules: Politeness,
    ) -> Result<GithubSource, ConnectorError> {
        Ok(GithubSource {
            name,
            spec,
            client: GithubClient::new(env, rules)?,
        })
    }

    /// Requests made so far (for progress, tests and the benchmark).
    pub fn client(&self) -> &GithubClient {
        &self.client
    }
}

/// A listing's pages as last fetched in full: the query's saved state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Saved {
    scope: String,
    pages: Vec<SavedPage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct SavedPage {
    url: String,
    etag: Option<String>,
}

/// Where a listing is, between the driver's pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Cursor {
    /// Revalidating saved page `i`.
    Check {
        saved: Saved,
        i: usize,
    },
    /// Fetching in full: the organization page at `url`, then the named
    /// repositories from `repo`.
    Org {
        url: String,
        seen: Vec<SavedPage>,
    },
    Repo {
        j: usize,
        seen: Vec<SavedPage>,
    },
}

#[async_trait]
impl Connector for GithubSource {
    fn source_type(&self) -> &'static str {
        "github"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn queries(&self) -> Vec<Query> {
        let mut filters = BTreeMap::new();
        if let Some(org) = &self.spec.org {
            filters.insert("org".into(), org.clone());
        }
        for (k, v) in [
            ("repos", &self.spec.repos),
            ("include", &self.spec.include),
            ("exclude", &self.spec.exclude),
        ] {
            if !v.is_empty() {
                filters.insert(k.into(), v.join(","));
            }
        }
        vec![Query {
            id: "repositories".into(),
            kinds: vec!["repository".into()],
            description: "repositories in scope and their settings".into(),
            filters,
            period_scoped: false,
        }]
    }

    async fn fetch(&self, query: &Query, page: PageRequest) -> Result<Page, ConnectorError> {
        match query.id.as_str() {
            "repositories" => self.repositories(page).await,
            other => Err(ConnectorError::UnknownQuery {
                source_name: self.name.clone(),
                query: other.into(),
            }),
        }
    }
}

impl GithubSource {
    fn start_full(&self) -> Cursor {
        match &self.spec.org {
            Some(org) => Cursor::Org {
                url: self
                    .client
                    .url(&format!("/orgs/{org}/repos?type=all&per_page=100")),
                seen: Vec::new(),
            },
            None => Cursor::Repo {
                j: 0,
                seen: Vec::new(),
            },
        }
    }

    async fn repositories(&self, req: PageRequest) -> Result<Page, ConnectorError> {
        let cursor = match (&req.cursor, &req.state) {
            (Some(c), _) => serde_json::from_str(c).map_err(|e| {
                ConnectorError::Task(format!("{}: unreadable cursor: {e}", self.name))
            })?,
            (None, Some(state)) => match serde_json::from_str::<Saved>(state) {
                Ok(saved) if saved.scope == self.spec.scope() && !saved.pages.is_empty() => {
                    Cursor::Check { saved, i: 0 }
                }
                // Another scope, or a state of an older form: list anew.
                _ => self.start_full(),
            },
            (None, None) => self.start_full(),
        };
        let cont = |c: Cursor| Some(serde_json::to_string(&c).expect("a cursor serializes"));
        match cursor {
            Cursor::Check { saved, i } => {
                let at = &saved.pages[i];
                let reply = self.client.get(&at.url, at.etag.as_deref()).await?;
                if reply.status != 304 {
                    // Something changed: the listing is fetched again in
                    // full (this answer alone cannot say what left it).
                    return Ok(Page {
                        next: cont(self.start_full()),
                        ..Page::default()
                    });
                }
                if i + 1 < saved.pages.len() {
                    return Ok(Page {
                        next: cont(Cursor::Check { saved, i: i + 1 }),
                        ..Page::default()
                    });
                }
                Ok(Page {
                    outcome: Outcome::NotModified,
                    state: Some(serde_json::to_string(&saved).expect("state serializes")),
                    ..Page::default()
                })
            }
            Cursor::Org { url, mut seen } => {
                let reply = self.client.get(&url, None).await?;
                let list: Vec<Value> = parse(&reply, &url)?;
                seen.push(SavedPage {
                    url: url.clone(),
                    etag: reply.header("etag").map(str::to_string),
                });
                let items = list
                    .iter()
                    .filter(|r| {
                        let name = r["name"].as_str().unwrap_or_default();
                        let full = r["full_name"].as_str().unwrap_or_default();
                        self.spec.wants(name) && !self.spec.names_explicitly(full)
                    })
                    .map(|r| repository(r, &url))
                    .collect::<Result<Vec<_>, _>>()?;
                let next = match next_link(&reply) {
                    Some(url) => Cursor::Org { url, seen },
                    None => Cursor::Repo { j: 0, seen },
                };
                Ok(self.then(items, next))
            }
            Cursor::Repo { j, mut seen } => {
                let Some(full) = self.spec.repos.get(j) else {
                    return Ok(self.then(Vec::new(), Cursor::Repo { j, seen }));
                };
                let url = self.client.url(&format!("/repos/{full}"));
                let reply = self.client.get(&url, None).await?;
                let r: Value = parse(&reply, &url)?;
                seen.push(SavedPage {
                    url: url.clone(),
                    etag: reply.header("etag").map(str::to_string),
                });
                let items = vec![repository(&r, &url)?];
                Ok(self.then(items, Cursor::Repo { j: j + 1, seen }))
            }
        }
    }

    /// A page of a full listing, and what follows it: the last page (no
    /// named repository left) carries the state to revalidate next run.
    fn then(&self, items: Vec<Artifact>, next: Cursor) -> Page {
        if let Cursor::Repo { j, seen } = &next
            && *j >= self.spec.repos.len()
        {
            let saved = Saved {
                scope: self.spec.scope(),
                pages: seen.clone(),
            };
            return Page {
                items,
                state: Some(serde_json::to_string(&saved).expect("state serializes")),
                ..Page::default()
            };
        }
        Page {
            items,
            next: Some(serde_json::to_string(&next).expect("a cursor serializes")),
            ..Page::default()
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(reply: &Reply, url: &str) -> Result<T, ConnectorError> {
    serde_json::from_slice(&reply.body).map_err(|e| ConnectorError::Http {
        endpoint: format!("GET {url}"),
        status: reply.status,
        message: format!("unexpected body: {e}"),
    })
}

/// One repository, as the list and the single-repository endpoints both
/// give it, reduced to settings that change only when someone changes
/// them (no push times, counters or the token's own permissions).
fn repository(r: &Value, url: &str) -> Result<Artifact, ConnectorError> {
    let bad = |what: &str| ConnectorError::Http {
        endpoint: format!("GET {url}"),
        status: 200,
        message: format!("a repository without {what}"),
    };
    let full = r["full_name"].as_str().ok_or_else(|| bad("`full_name`"))?;
    let security: BTreeMap<String, Value> = r["security_and_analysis"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.get("status").cloned().unwrap_or(Value::Null)))
                .collect()
        })
        .unwrap_or_default();
    let visibility = r["visibility"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            if r["private"].as_bool() == Some(true) {
                "private".into()
            } else {
                "public".into()
            }
        });
    let mut observed = BTreeMap::new();
    if let Some(c) = r["created_at"].as_str() {
        observed.insert("created_at".into(), c.to_string());
    }
    Ok(Artifact {
        source: "github".into(),
        kind: "repository".into(),
        object_id: full.to_string(),
        url: r["html_url"].as_str().unwrap_or_default().to_string(),
        title: full.to_string(),
        period: None,
        observed,
        content: json!({
            "full_name": full,
            "id": r["id"],
            "visibility": visibility,
            "archived": r["archived"].as_bool().unwrap_or(false),
            "disabled": r["disabled"].as_bool().unwrap_or(false),
            "fork": r["fork"].as_bool().unwrap_or(false),
            "is_template": r["is_template"].as_bool().unwrap_or(false),
            "default_branch": r["default_branch"],
            "security_and_analysis": security,
        }),
        query: String::new(),
        shard: None,
        captured: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_whole_names() {
        assert!(glob("*", "api"));
        assert!(glob("sandbox-*", "sandbox-1"));
        assert!(!glob("sandbox-*", "my-sandbox-1"));
        assert!(glob("a?i", "api"));
        assert!(!glob("a?i", "apii"));
        assert!(glob("*-svc", "billing-svc"));
    }

    #[test]
    fn include_and_exclude_select_the_organizations_repositories() {
        let spec = GithubSpec {
            include: vec!["*".into()],
            exclude: vec!["sandbox-*".into()],
            ..GithubSpec::default()
        };
        assert!(spec.wants("api"));
        assert!(!spec.wants("sandbox-x"));
    }

    #[test]
    fn graphql_endpoint_follows_the_api_base() {
        assert_eq!(
            client::graphql_url("https://api.github.com"),
            "https://api.github.com/graphql"
        );
        assert_eq!(
            client::graphql_url("https://ghe.example.com/api/v3"),
            "https://ghe.example.com/api/graphql"
        );
    }
}
