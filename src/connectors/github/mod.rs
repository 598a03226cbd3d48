//! The `github` source: evidence from the GitHub API.
//!
//! Collected so far:
//! - `repository`: each repository in scope with the settings an auditor
//!   asks about (visibility, default branch, archived, the security
//!   features enabled). Repositories come from the organization's list
//!   (`org`, filtered by `include`/`exclude` name patterns) and from
//!   `repos` named one by one. They are listed when the source is built,
//!   since every per-repository query needs them.
//! - `pull-request`: the change population, every pull request merged in
//!   the period with its reviews and the commit each review was on, read
//!   through GraphQL (100 pull requests and their reviews a request; REST
//!   would need one more request per pull request).
//!
//! Every page of the repository listing is fetched with its validator
//! saved in the query's state. The next run revalidates the saved pages
//! with conditional requests: when every one answers 304, the query is
//! *not modified* and the held artifacts stand; when any changed, the
//! listing is fetched again in full, so that a repository that left it is
//! seen to be gone.

mod activity;
pub mod client;
mod pages;
mod security;

use super::http::{Politeness, Reply, next_link};
use super::{Connector, ConnectorError, Outcome, Page, PageRequest, Query};
use crate::artifact::{Artifact, DateSpan};
use crate::period::Period;
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
    /// Queries (by id) whose permission error is recorded as "not
    /// collected" instead of failing the run.
    pub optional: std::collections::BTreeSet<String>,
    /// Days an alert may stay open, by severity (read by the checks).
    pub sla: crate::checks::Sla,
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
    period: Period,
    client: GithubClient,
    listing: Listing,
    /// Index into the listing by lower-case name.
    by_lower_name: std::collections::HashMap<String, usize>,
}

/// The repositories in scope, as listed when the source was built.
struct Listing {
    /// `owner/name` of each repository in scope, sorted.
    names: Vec<String>,
    /// The default branch of each, in the same order.
    branches: Vec<String>,
    /// Their artifacts, when the listing was fetched (not when every page
    /// answered 304: the held ones stand).
    items: Option<Vec<Artifact>>,
    /// What to save for the next run.
    state: Saved,
}

/// The query label whose state holds the repository listing.
const REPOSITORIES: &str = "repositories";

impl GithubSource {
    /// Builds the source: reads nothing but the repository listing, which
    /// every per-repository query needs (revalidated with the state the
    /// `repositories` query saved, when there is one).
    pub async fn connect(
        name: String,
        spec: GithubSpec,
        period: Period,
        env: &GithubEnv,
        rules: Politeness,
        states: &BTreeMap<String, String>,
    ) -> Result<GithubSource, ConnectorError> {
        let client = GithubClient::connect(env, rules).await?;
        let saved = states
            .get(&format!("{name}/{REPOSITORIES}"))
            .and_then(|s| serde_json::from_str::<Saved>(s).ok())
            .filter(|s| s.scope == spec.scope() && !s.pages.is_empty());
        let listing = list_repositories(&client, &spec, saved).await?;
        let by_lower_name = listing
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_ascii_lowercase(), i))
            .collect();
        Ok(GithubSource {
            name,
            spec,
            period,
            client,
            listing,
            by_lower_name,
        })
    }

    /// Requests made so far (for progress, tests and the benchmark).
    pub fn client(&self) -> &GithubClient {
        &self.client
    }
}

/// A listing's pages as last fetched in full, and the repositories they
/// gave: the `repositories` query's saved state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Saved {
    scope: String,
    pages: Vec<SavedPage>,
    repos: Vec<String>,
    branches: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct SavedPage {
    url: String,
    etag: Option<String>,
}

/// Pages of lists (each start URL followed through its `Link` pages) or
/// single objects, as fetched in full: each body with the index of its
/// start.
type Bodies = Vec<(usize, Value)>;

/// Revalidates `saved` pages with conditional requests (`None` when every
/// one answered 304), or fetches every start URL in full with the pages
/// to save for next time. One changed page refetches all: that answer
/// alone cannot say what left the listing.
async fn revalidate_or_fetch(
    client: &GithubClient,
    starts: &[String],
    saved: Option<&[SavedPage]>,
) -> Result<Option<(Bodies, Vec<SavedPage>)>, ConnectorError> {
    if let Some(saved) = saved
        && pages::unchanged(client, saved).await?
    {
        return Ok(None);
    }
    let mut bodies = Vec::new();
    let mut saved = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let (b, p) = pages::fetch_pages(client, start, None).await?;
        bodies.extend(b.into_iter().map(|b| (i, b)));
        saved.extend(p);
    }
    Ok(Some((bodies, saved)))
}

/// Revalidates the saved listing, or lists in full: the organization's
/// pages (following `Link`), then each repository named one by one.
async fn list_repositories(
    client: &GithubClient,
    spec: &GithubSpec,
    saved: Option<Saved>,
) -> Result<Listing, ConnectorError> {
    let mut starts: Vec<String> = spec
        .org
        .iter()
        .map(|org| client.url(&format!("/orgs/{org}/repos?type=all&per_page=100")))
        .collect();
    let from_org = starts.len();
    starts.extend(
        spec.repos
            .iter()
            .map(|full| client.url(&format!("/repos/{full}"))),
    );
    let Some((bodies, pages)) =
        revalidate_or_fetch(client, &starts, saved.as_ref().map(|s| s.pages.as_slice())).await?
    else {
        let saved = saved.expect("only a saved listing revalidates");
        return Ok(Listing {
            names: saved.repos.clone(),
            branches: saved.branches.clone(),
            items: None,
            state: saved,
        });
    };
    let mut items = Vec::new();
    for (i, body) in &bodies {
        let url = &starts[*i];
        if *i < from_org {
            for r in body.as_array().into_iter().flatten() {
                let name = r["name"].as_str().unwrap_or_default();
                let full = r["full_name"].as_str().unwrap_or_default();
                if spec.wants(name) && !spec.names_explicitly(full) {
                    items.push(repository(r, url)?);
                }
            }
        } else {
            items.push(repository(body, url)?);
        }
    }
    items.sort_by(|a, b| a.object_id.cmp(&b.object_id));
    let names: Vec<String> = items.iter().map(|a| a.object_id.clone()).collect();
    let branches: Vec<String> = items
        .iter()
        .map(|a| {
            a.content["default_branch"]
                .as_str()
                .unwrap_or("main")
                .to_string()
        })
        .collect();
    Ok(Listing {
        state: Saved {
            scope: spec.scope(),
            pages,
            repos: names.clone(),
            branches: branches.clone(),
        },
        names,
        branches,
        items: Some(items),
    })
}

/// Where the pull-request query is.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum PrCursor {
    /// Walking the listing's repositories: a first run, or one whose scope
    /// changed.
    Walk(Walk),
    /// Searching the pull requests updated since the last run's high
    /// water mark: one request when nothing changed.
    Search {
        after: Option<String>,
        since: String,
        high: String,
    },
}

/// A walk over the repositories' merged pull requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Walk {
    /// Repositories with more pages: (index in the listing, GraphQL
    /// cursor), the next taken from the end.
    pending: Vec<(usize, Option<String>)>,
    /// The first repository not started yet.
    next_repo: usize,
    /// The latest update time seen so far.
    high: Option<String>,
}

/// What the pull-request query saves: the latest update time of any
/// merged pull request it has seen (taken from the data, so a run with
/// nothing new saves the same state), and what that depends on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PrSaved {
    scope: String,
    since: String,
}

/// The pages of listings a query revalidates: its saved state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PagesSaved {
    scope: String,
    pages: Vec<SavedPage>,
}

/// Saved in place of a validator for a request that answered 404.
const ABSENT: &str = "absent";

/// One evidence query of the source.
pub struct QueryDef {
    /// Its id: the query label's second half, and its name under
    /// `optional:` (with `_` for `-`).
    pub id: &'static str,
    pub kinds: &'static [&'static str],
    pub description: &'static str,
    /// What a token needs to read it, named when it cannot.
    pub permission: &'static str,
    pub period_scoped: bool,
    /// Read for an organization only (`org`).
    pub org_only: bool,
    /// A filter recorded beside the source's own.
    pub filter: Option<(&'static str, &'static str)>,
}

/// Every query of a github source, in the order they run.
pub const QUERIES: &[QueryDef] = &[
    QueryDef {
        id: REPOSITORIES,
        kinds: &["repository"],
        description: "repositories in scope and their settings",
        permission: "the repository permission `Metadata: read`",
        period_scoped: false,
        org_only: false,
        filter: None,
    },
    QueryDef {
        id: "members",
        kinds: &["member", "outside-collaborator"],
        description: "organization members with their role and whether 2FA is off, and outside collaborators",
        permission: "the organization permission `Members: read`",
        period_scoped: false,
        org_only: true,
        filter: None,
    },
    QueryDef {
        id: "repository-admins",
        kinds: &["repository-admins"],
        description: "who has admin on each repository, and which of them are outside collaborators",
        permission: "push access to each repository (fine-grained: `Metadata: read`; classic: `repo` and `read:org`)",
        period_scoped: false,
        org_only: false,
        filter: Some(("permission", "admin")),
    },
    QueryDef {
        id: "branch-protection",
        kinds: &["branch-protection"],
        description: "what protects each default branch: branch protection, the rulesets that apply and who may bypass them",
        permission: "the repository permission `Administration: read`",
        period_scoped: false,
        org_only: false,
        filter: None,
    },
    QueryDef {
        id: "pull-requests",
        kinds: &["pull-request"],
        description: "pull requests merged in the period, with their reviews",
        permission: "the repository permission `Pull requests: read`",
        period_scoped: true,
        org_only: false,
        filter: Some(("state", "merged in the period")),
    },
    QueryDef {
        id: "dependabot-alerts",
        kinds: &["dependabot-alert"],
        description: "Dependabot alerts in every state, with who dismissed them",
        permission: "the repository permission `Dependabot alerts: read`",
        period_scoped: false,
        org_only: false,
        filter: None,
    },
    QueryDef {
        id: "code-scanning-alerts",
        kinds: &["code-scanning-alert"],
        description: "code-scanning alerts in every state, with who dismissed them",
        permission: "the repository permission `Code scanning alerts: read`",
        period_scoped: false,
        org_only: false,
        filter: None,
    },
    QueryDef {
        id: "secret-scanning-alerts",
        kinds: &["secret-scanning-alert"],
        description: "secret-scanning alerts in every state, with who resolved them (never the secret)",
        permission: "the repository permission `Secret scanning alerts: read`",
        period_scoped: false,
        org_only: false,
        filter: None,
    },
    QueryDef {
        id: "workflow-runs",
        kinds: &["workflow-run"],
        description: "completed workflow runs on each default branch, created in the period",
        permission: "the repository permission `Actions: read`",
        period_scoped: true,
        org_only: false,
        filter: Some(("branch", "default")),
    },
    QueryDef {
        id: "releases",
        kinds: &["release"],
        description: "releases published in the period",
        permission: "the repository permission `Contents: read`",
        period_scoped: true,
        org_only: false,
        filter: None,
    },
];

/// GitHub's search answers at most 1,000 results; past that the
/// repositories are walked instead.
const SEARCH_LIMIT: u64 = 1000;

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
        QUERIES
            .iter()
            .filter(|q| !q.org_only || self.spec.org.is_some())
            .map(|q| {
                let mut filters = if q.org_only {
                    self.spec
                        .org
                        .iter()
                        .map(|o| ("org".to_string(), o.clone()))
                        .collect()
                } else {
                    filters.clone()
                };
                if let Some((k, v)) = q.filter {
                    filters.insert(k.into(), v.into());
                }
                Query {
                    id: q.id.into(),
                    kinds: q.kinds.iter().map(|k| k.to_string()).collect(),
                    description: q.description.into(),
                    filters,
                    period_scoped: q.period_scoped,
                }
            })
            .collect()
    }

    fn concurrent_queries(&self) -> bool {
        true
    }

    fn rate_remaining(&self) -> Option<u64> {
        self.client.polite.remaining()
    }

    async fn fetch(&self, query: &Query, page: PageRequest) -> Result<Page, ConnectorError> {
        let Some(def) = QUERIES.iter().find(|q| q.id == query.id) else {
            return Err(ConnectorError::UnknownQuery {
                source_name: self.name.clone(),
                query: query.id.clone(),
            });
        };
        let answer = match def.id {
            REPOSITORIES => Ok(self.repositories()),
            "pull-requests" => self.pull_requests(page).await,
            "branch-protection" => self.branch_protection(page).await,
            "members" => self.members(page).await,
            "repository-admins" => self.repository_admins(page).await,
            "dependabot-alerts" => self.alerts(security::Alerts::Dependabot, page).await,
            "code-scanning-alerts" => self.alerts(security::Alerts::CodeScanning, page).await,
            "secret-scanning-alerts" => self.alerts(security::Alerts::SecretScanning, page).await,
            "workflow-runs" => self.workflow_runs(page).await,
            "releases" => self.releases(page).await,
            other => unreachable!("query `{other}` is in QUERIES but not answered"),
        };
        match answer {
            // A token without the permission: GitHub answers 403, or 404
            // where it hides what the token may not see. (A 401 is a bad
            // token, not a missing permission: it fails as it is.)
            Err(ConnectorError::Http {
                endpoint,
                status: status @ (403 | 404),
                message,
            }) => {
                let message = if message.contains(" needs ") {
                    message
                } else {
                    format!("{message} (reading {} needs {})", def.id, def.permission)
                };
                if self.spec.optional.contains(def.id) {
                    tracing::warn!(
                        source = self.name.as_str(),
                        "{}: not collected: {endpoint}: HTTP {status}: {message}",
                        def.id
                    );
                    return Ok(Page {
                        outcome: Outcome::NotCollected,
                        skipped: vec![super::Skipped {
                            path: endpoint,
                            reason: format!("not collected (optional): HTTP {status}: {message}"),
                        }],
                        ..Page::default()
                    });
                }
                Err(ConnectorError::Http {
                    endpoint,
                    status,
                    message,
                })
            }
            other => other,
        }
    }
}

impl GithubSource {
    /// The listing made when the source was built, as one page.
    fn repositories(&self) -> Page {
        let state = Some(serde_json::to_string(&self.listing.state).expect("state serializes"));
        match &self.listing.items {
            Some(items) => Page {
                items: items.clone(),
                state,
                ..Page::default()
            },
            None => Page {
                outcome: Outcome::NotModified,
                state,
                ..Page::default()
            },
        }
    }

    /// The listing's own spelling of repository `full` (GitHub compares
    /// names ignoring case), if it is in scope.
    fn listed(&self, full: &str) -> Option<&str> {
        self.by_lower_name
            .get(&full.to_ascii_lowercase())
            .map(|&i| self.listing.names[i].as_str())
    }

    /// What a per-repository query's state depends on: the configuration
    /// and the repositories listed.
    fn listing_scope(&self) -> String {
        use sha2::Digest as _;
        // The default branches too: a per-repository query reads URLs
        // made from them, and a new default branch must not be
        // revalidated with the old one's pages.
        let mut h = sha2::Sha256::new();
        for (n, b) in self.listing.names.iter().zip(&self.listing.branches) {
            h.update(format!("{n}\t{b}\n").as_bytes());
        }
        let names = h.finalize();
        format!("{};repos={}", self.spec.scope(), hex(&names))
    }

    /// The pull-request state depends on the period as well: a new period
    /// walks the repositories again.
    fn pr_scope(&self) -> String {
        format!("{};period={}", self.listing_scope(), self.period.label())
    }

    /// One GraphQL page of merged pull requests: by repository, newest
    /// update first (a page whose last pull request was updated before the
    /// period started is the repository's last), or, with a saved state,
    /// by a search for those updated since.
    async fn pull_requests(&self, req: PageRequest) -> Result<Page, ConnectorError> {
        let saved = req
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str::<PrSaved>(s).ok())
            .filter(|s| s.scope == self.pr_scope());
        let cursor: PrCursor = match (&req.cursor, saved) {
            (Some(c), _) => serde_json::from_str(c).map_err(|e| {
                ConnectorError::Task(format!("{}: unreadable cursor: {e}", self.name))
            })?,
            (None, Some(saved)) => PrCursor::Search {
                after: None,
                high: saved.since.clone(),
                since: saved.since,
            },
            (None, None) => PrCursor::Walk(Walk::default()),
        };
        match cursor {
            PrCursor::Walk(walk) => self.walk(walk).await,
            PrCursor::Search { after, since, high } => self.search(after, since, high).await,
        }
    }

    /// One batch of the walk: up to eight times as many repository pages as
    /// requests may be in flight, fetched with that many in flight at every
    /// moment (a walk of 200 repositories one page at a time would wait
    /// out 200 round trips in a row, and batches of exactly that many would
    /// each wait for their slowest).
    async fn walk(&self, mut walk: Walk) -> Result<Page, ConnectorError> {
        use futures_util::StreamExt as _;
        let in_flight = self.client.polite.rules().concurrency.max(1);
        let batch_size = in_flight * 8;
        let mut batch = Vec::new();
        while batch.len() < batch_size {
            if let Some(pending) = walk.pending.pop() {
                batch.push(pending);
            } else if walk.next_repo < self.listing.names.len() {
                batch.push((walk.next_repo, None));
                walk.next_repo += 1;
            } else {
                break;
            }
        }
        let pages: Vec<_> = futures_util::stream::iter(batch)
            .map(|(i, after)| self.repo_page(i, after))
            .buffer_unordered(in_flight)
            .collect()
            .await;
        let mut items = Vec::new();
        for page in pages {
            let (found, next, high) = page?;
            items.extend(found);
            raise(&mut walk.high, high.as_deref());
            walk.pending.extend(next);
        }
        // Pending pages in a stable order: the same answers, the same walk.
        walk.pending.sort();
        walk.pending.reverse();
        if walk.pending.is_empty() && walk.next_repo >= self.listing.names.len() {
            return Ok(self.pr_done(items, walk.high, Outcome::Complete));
        }
        Ok(Page {
            items,
            next: Some(serde_json::to_string(&PrCursor::Walk(walk)).expect("a cursor serializes")),
            ..Page::default()
        })
    }

    /// One GraphQL page of repository `index`'s merged pull requests: those
    /// merged in the period, where the walk goes on (unless this page
    /// reached back before the period) and the latest update seen.
    async fn repo_page(
        &self,
        index: usize,
        after: Option<String>,
    ) -> Result<
        (
            Vec<Artifact>,
            Option<(usize, Option<String>)>,
            Option<String>,
        ),
        ConnectorError,
    > {
        let full = &self.listing.names[index];
        let (owner, repo) = full.split_once('/').unwrap_or((full, ""));
        let data = self
            .client
            .graphql(
                PULLS_QUERY,
                json!({"owner": owner, "name": repo, "after": after}),
            )
            .await?;
        let endpoint = format!(
            "POST {} (pull requests of {full})",
            self.client.graphql_url()
        );
        let prs = &data["repository"]["pullRequests"];
        let nodes = nodes_of(prs, &endpoint)?;
        let mut older = false;
        let mut high = None;
        for n in nodes {
            let updated = n["updatedAt"].as_str();
            if updated
                .and_then(time)
                .is_some_and(|u| u < self.period.start_time())
            {
                older = true;
            }
            raise(&mut high, updated);
        }
        let items = self
            .merged_in_period(nodes, |_| Some(full.clone()), &endpoint)
            .await?;
        let more = prs["pageInfo"]["hasNextPage"].as_bool() == Some(true) && !older;
        let next = more.then(|| {
            (
                index,
                prs["pageInfo"]["endCursor"].as_str().map(str::to_string),
            )
        });
        Ok((items, next, high))
    }

    async fn search(
        &self,
        after: Option<String>,
        since: String,
        high: String,
    ) -> Result<Page, ConnectorError> {
        let scope = match &self.spec.org {
            Some(org) => format!("org:{org}"),
            None => self
                .spec
                .repos
                .iter()
                .map(|r| format!("repo:{r}"))
                .collect::<Vec<_>>()
                .join(" "),
        };
        let q = format!(
            "{scope} is:pr is:merged updated:>={}",
            since.replace('Z', "+00:00")
        );
        let data = self
            .client
            .graphql(SEARCH_QUERY, json!({"q": q, "after": after}))
            .await?;
        let endpoint = format!("POST {} (search `{q}`)", self.client.graphql_url());
        let found = &data["search"];
        if after.is_none() && found["issueCount"].as_u64().unwrap_or(0) > SEARCH_LIMIT {
            // More than a search can list: walk every repository.
            return self.walk(Walk::default()).await;
        }
        let nodes = nodes_of(found, &endpoint)?;
        let mut high = Some(high);
        for n in nodes {
            raise(&mut high, n["updatedAt"].as_str());
        }
        // Only repositories in the listing: the search is organization-wide.
        let items = self
            .merged_in_period(
                nodes,
                |n| {
                    n["repository"]["nameWithOwner"]
                        .as_str()
                        .and_then(|r| self.listed(r))
                        .map(str::to_string)
                },
                &endpoint,
            )
            .await?;
        if found["pageInfo"]["hasNextPage"].as_bool() == Some(true) {
            let next = PrCursor::Search {
                after: found["pageInfo"]["endCursor"].as_str().map(str::to_string),
                since,
                high: high.unwrap_or_default(),
            };
            return Ok(Page {
                items,
                next: Some(serde_json::to_string(&next).expect("a cursor serializes")),
                ..Page::default()
            });
        }
        // Nothing updated after the mark (what sits at it was seen when
        // the mark was taken): the held pull requests stand.
        if high.as_deref() == Some(since.as_str()) {
            return Ok(self.pr_done(Vec::new(), high, Outcome::NotModified));
        }
        Ok(self.pr_done(items, high, Outcome::Incremental))
    }

    /// The artifacts of the pull requests among `nodes` merged in the
    /// period, in a repository `repo_of` accepts.
    async fn merged_in_period(
        &self,
        nodes: &[Value],
        repo_of: impl Fn(&Value) -> Option<String>,
        endpoint: &str,
    ) -> Result<Vec<Artifact>, ConnectorError> {
        let mut items = Vec::new();
        for n in nodes {
            let Some(full) = repo_of(n) else { continue };
            let Some(merged) = n["mergedAt"].as_str().and_then(time) else {
                continue;
            };
            if !self.period.contains_time(merged) {
                continue;
            }
            let mut reviews = n["reviews"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = n["reviews"]["totalCount"].as_u64().unwrap_or(0);
            if total as usize > reviews.len() {
                // More reviews than one GraphQL page holds: the rest by REST.
                let number = n["number"].as_u64().unwrap_or(0);
                reviews = self.all_reviews(&full, number).await?;
            }
            items.push(pull_request(&full, n, &reviews, merged, endpoint)?);
        }
        Ok(items)
    }

    /// The last page of the pull-request query, with the state to save.
    /// With no pull request seen at all, the next run searches from the
    /// start of the period (still one request when nothing was merged).
    fn pr_done(&self, items: Vec<Artifact>, high: Option<String>, outcome: Outcome) -> Page {
        let since = high.unwrap_or_else(|| {
            self.period
                .start_time()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        let state = Some(
            serde_json::to_string(&PrSaved {
                scope: self.pr_scope(),
                since,
            })
            .expect("state serializes"),
        );
        Page {
            items,
            outcome,
            state,
            ..Page::default()
        }
    }

    /// The organization's members (with their role and whether two-factor
    /// authentication is off) and its outside collaborators, revalidated
    /// page by page. Listing members without 2FA takes an owner's token.
    async fn members(&self, req: PageRequest) -> Result<Page, ConnectorError> {
        let Some(org) = &self.spec.org else {
            return Ok(Page::default());
        };
        let starts = [
            "members?per_page=100",
            "members?role=admin&per_page=100",
            "members?filter=2fa_disabled&per_page=100",
            "outside_collaborators?per_page=100",
        ]
        .map(|q| self.client.url(&format!("/orgs/{org}/{q}")));
        let scope = self.spec.scope();
        let saved = req
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str::<PagesSaved>(s).ok())
            .filter(|s| s.scope == scope);
        let fetched = revalidate_or_fetch(
            &self.client,
            &starts,
            saved.as_ref().map(|s| s.pages.as_slice()),
        )
        .await
        .map_err(|e| match e {
            ConnectorError::Http {
                endpoint,
                status: status @ (403 | 422),
                message,
            } if endpoint.contains("2fa_disabled") => ConnectorError::Http {
                endpoint,
                status,
                message: format!(
                    "{message} (listing members without two-factor authentication needs a token of an organization owner)"
                ),
            },
            other => other,
        })?;
        let Some((bodies, pages)) = fetched else {
            let state = serde_json::to_string(&saved).expect("state serializes");
            return Ok(Page {
                outcome: Outcome::NotModified,
                state: Some(state),
                ..Page::default()
            });
        };
        let logins = |start: usize| -> std::collections::BTreeSet<String> {
            bodies
                .iter()
                .filter(|(i, _)| *i == start)
                .flat_map(|(_, b)| b.as_array().cloned().unwrap_or_default())
                .filter_map(|u| u["login"].as_str().map(str::to_string))
                .collect()
        };
        let (admins, no_2fa) = (logins(1), logins(2));
        let mut items = Vec::new();
        for (start, kind) in [(0, "member"), (3, "outside-collaborator")] {
            for (i, body) in &bodies {
                if *i != start {
                    continue;
                }
                for u in body.as_array().into_iter().flatten() {
                    let Some(login) = u["login"].as_str() else {
                        continue;
                    };
                    let mut content = json!({"login": login, "org": org, "type": u["type"]});
                    if kind == "member" {
                        content["role"] = json!(if admins.contains(login) {
                            "admin"
                        } else {
                            "member"
                        });
                        content["two_factor_disabled"] = json!(no_2fa.contains(login));
                    }
                    items.push(Artifact {
                        kind: kind.into(),
                        object_id: format!("{org}/{login}"),
                        url: u["html_url"].as_str().unwrap_or_default().to_string(),
                        title: login.to_string(),
                        content,
                        ..blank()
                    });
                }
            }
        }
        let state = serde_json::to_string(&PagesSaved { scope, pages }).expect("state serializes");
        Ok(Page {
            items,
            state: Some(state),
            ..Page::default()
        })
    }

    /// What protects each repository's default branch. With the pages
    /// saved last run, every request is conditional: a repository whose
    /// answers are all 304 is not read again.
    async fn branch_protection(&self, req: PageRequest) -> Result<Page, ConnectorError> {
        self.per_repo(&req, self.listing_scope(), |i| self.protection_of(i))
            .await
    }

    /// Repository `i`'s default branch: its classic protection (404: none),
    /// the ruleset rules that apply to it, and who may bypass each of
    /// those rulesets.
    async fn protection_of(
        &self,
        i: usize,
    ) -> Result<(Vec<Artifact>, Vec<SavedPage>), ConnectorError> {
        let full = &self.listing.names[i];
        let branch = &self.listing.branches[i];
        // A branch name may hold `#`, `?` or `%`, which a path must escape.
        let esc = activity::query_value(branch);
        let classic = self
            .client
            .url(&format!("/repos/{full}/branches/{esc}/protection"));
        let rules = self
            .client
            .url(&format!("/repos/{full}/rules/branches/{esc}?per_page=100"));
        let (a, b) = futures_util::future::join(
            pages::fetch_pages(&self.client, &classic, Some("not protected")),
            pages::fetch_pages(&self.client, &rules, None),
        )
        .await;
        let (protection, mut saved) = a?;
        let (rule_pages, more) = b?;
        saved.extend(more);
        let rule_list: Vec<Value> = rule_pages
            .into_iter()
            .flat_map(|p| p.as_array().cloned().unwrap_or_default())
            .collect();
        let ids: std::collections::BTreeSet<u64> = rule_list
            .iter()
            .filter_map(|r| r["ruleset_id"].as_u64())
            .collect();
        let mut rulesets = Vec::new();
        for id in ids {
            let url = self.client.url(&format!(
                "/repos/{full}/rulesets/{id}?includes_parents=true"
            ));
            // A ruleset of the organization that the token may not read
            // answers 404: its bypass actors are unknown (`null`).
            let (body, pages) = pages::fetch_pages(&self.client, &url, Some("not found")).await?;
            saved.extend(pages);
            rulesets.push(ruleset(id, body.first()));
        }
        Ok((
            vec![branch_protection(
                full,
                branch,
                protection.first(),
                &rule_list,
                rulesets,
            )],
            saved,
        ))
    }

    /// Every review of one pull request, by REST (GraphQL's shape), for
    /// the rare pull request with more than one page of them.
    async fn all_reviews(&self, full: &str, number: u64) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut next = Some(self.client.url(&format!(
            "/repos/{full}/pulls/{number}/reviews?per_page=100"
        )));
        while let Some(url) = next {
            let reply = self.client.get(&url, None).await?;
            let page: Vec<Value> = parse(&reply, &url)?;
            for r in page {
                out.push(json!({
                    "author": {"login": r["user"]["login"], "__typename": if r["user"]["type"] == "Bot" { "Bot" } else { "User" }},
                    "state": r["state"],
                    "submittedAt": r["submitted_at"],
                    "commit": {"oid": r["commit_id"]},
                }));
            }
            next = next_link(&reply);
        }
        Ok(out)
    }
}

/// What is read of every merged pull request, by both queries below.
macro_rules! merged_pull_request {
    () => {
        "fragment Merged on PullRequest {
  number title url createdAt updatedAt mergedAt
  author { login __typename }
  mergedBy { login }
  baseRefName headRefOid
  mergeCommit { oid }
  reviews(first: 100) {
    totalCount
    nodes { author { login __typename } state submittedAt commit { oid } }
  }
}
"
    };
}

/// Pull requests found by a search, with the repository each belongs to.
const SEARCH_QUERY: &str = concat!(
    "query($q: String!, $after: String) {
  search(query: $q, type: ISSUE, first: 100, after: $after) {
    issueCount
    pageInfo { hasNextPage endCursor }
    nodes { ... on PullRequest { repository { nameWithOwner } ...Merged } }
  }
  rateLimit { cost remaining resetAt }
}
",
    merged_pull_request!()
);

/// Merged pull requests of one repository with their reviews; 100 a page,
/// most recently updated first. The rate limit's cost rides along.
const PULLS_QUERY: &str = concat!(
    "query($owner: String!, $name: String!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequests(states: MERGED, first: 100, after: $after, orderBy: {field: UPDATED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes { ...Merged }
    }
  }
  rateLimit { cost remaining resetAt }
}
",
    merged_pull_request!()
);

/// The `nodes` of a GraphQL connection.
fn nodes_of<'a>(connection: &'a Value, endpoint: &str) -> Result<&'a [Value], ConnectorError> {
    connection["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| ConnectorError::Http {
            endpoint: endpoint.to_string(),
            status: 200,
            message: "no `nodes` in the answer".into(),
        })
}

/// Raises the high water mark to `t` (RFC 3339 times in UTC compare as
/// text).
fn raise(high: &mut Option<String>, t: Option<&str>) {
    if let Some(t) = t
        && high.as_deref().is_none_or(|h| t > h)
    {
        *high = Some(t.to_string());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// One merged pull request: who wrote it, who merged it, the final head
/// commit, and each review with the commit it was on, in order.
fn pull_request(
    full: &str,
    n: &Value,
    reviews: &[Value],
    merged: chrono::DateTime<chrono::Utc>,
    endpoint: &str,
) -> Result<Artifact, ConnectorError> {
    let number = n["number"].as_u64().ok_or_else(|| ConnectorError::Http {
        endpoint: endpoint.to_string(),
        status: 200,
        message: format!("a pull request of {full} without a number"),
    })?;
    let person = |a: &Value| {
        json!({
            "login": a["login"],
            "bot": a["__typename"] == "Bot",
        })
    };
    let mut reviews: Vec<Value> = reviews
        .iter()
        .map(|r| {
            json!({
                "reviewer": person(&r["author"]),
                "state": r["state"],
                "submitted_at": r["submittedAt"],
                "commit": r["commit"]["oid"],
            })
        })
        .collect();
    // Chronological, ties by reviewer: the same answer, the same bytes.
    reviews.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["submitted_at"].as_str().unwrap_or_default().to_string(),
                v["reviewer"]["login"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut observed = BTreeMap::new();
    for (k, v) in [
        ("created_at", &n["createdAt"]),
        ("merged_at", &n["mergedAt"]),
    ] {
        if let Some(t) = v.as_str() {
            observed.insert(k.to_string(), t.to_string());
        }
    }
    Ok(Artifact {
        kind: "pull-request".into(),
        object_id: format!("{full}/{number}"),
        url: n["url"].as_str().unwrap_or_default().to_string(),
        title: n["title"].as_str().unwrap_or_default().to_string(),
        period: Some(DateSpan::day(merged.date_naive())),
        observed,
        content: json!({
            "repository": full,
            "number": number,
            "author": person(&n["author"]),
            "merged_by": n["mergedBy"]["login"],
            "merged_at": n["mergedAt"],
            "base_ref": n["baseRefName"],
            "head_sha": n["headRefOid"],
            "merge_commit_sha": n["mergeCommit"]["oid"],
            "reviews": reviews,
        }),
        ..blank()
    })
}

/// What every github artifact shares, for `..blank()` after the fields
/// an artifact sets (the driver stamps its query and shard).
fn blank() -> Artifact {
    Artifact {
        source: "github".into(),
        kind: String::new(),
        object_id: String::new(),
        url: String::new(),
        title: String::new(),
        period: None,
        observed: BTreeMap::new(),
        content: Value::Null,
        query: String::new(),
        shard: None,
        captured: None,
    }
}

/// The times among `fields` of `v` (those that are strings), for an
/// artifact's `observed`.
fn observed(v: &Value, fields: &[&str]) -> BTreeMap<String, String> {
    fields
        .iter()
        .filter_map(|k| Some((k.to_string(), v[*k].as_str()?.to_string())))
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(reply: &Reply, url: &str) -> Result<T, ConnectorError> {
    serde_json::from_slice(&reply.body).map_err(|e| ConnectorError::Http {
        endpoint: format!("GET {url}"),
        status: reply.status,
        message: format!("unexpected body: {e}"),
    })
}

/// What protects one default branch, from its classic protection (if
/// any) and the ruleset rules that apply to it, reduced to the settings a
/// change-management control rests on; the effective values combine both
/// (a rule can forbid force pushes that protection allows).
fn branch_protection(
    full: &str,
    branch: &str,
    p: Option<&Value>,
    rules: &[Value],
    rulesets: Vec<Value>,
) -> Artifact {
    let enabled = |v: &Value| v["enabled"].as_bool().unwrap_or(false);
    let reviews = p
        .map(|p| &p["required_pull_request_reviews"])
        .filter(|r| r.is_object());
    fn rule<'a>(rules: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
        rules.iter().filter(move |r| r["type"] == kind)
    }
    let pr_rules: Vec<&Value> = rule(rules, "pull_request").collect();
    let approvals = reviews
        .and_then(|r| r["required_approving_review_count"].as_u64())
        .into_iter()
        .chain(
            pr_rules
                .iter()
                .filter_map(|r| r["parameters"]["required_approving_review_count"].as_u64()),
        )
        .max();
    let any = |classic: &str, param: &str| {
        reviews.is_some_and(|r| r[classic].as_bool() == Some(true))
            || pr_rules
                .iter()
                .any(|r| r["parameters"][param].as_bool() == Some(true))
    };
    let mut checks: Vec<String> = p
        .and_then(|p| p["required_status_checks"]["contexts"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .chain(rule(rules, "required_status_checks").flat_map(|r| {
            r["parameters"]["required_status_checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["context"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        }))
        .collect();
    checks.sort();
    checks.dedup();
    let mut applied: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "type": r["type"],
                "ruleset_id": r["ruleset_id"],
                "ruleset_source": r["ruleset_source"],
            })
        })
        .collect();
    applied.sort_by_key(|v| v.to_string());
    applied.dedup();
    let classic_force = p.is_none_or(|p| enabled(&p["allow_force_pushes"]));
    let classic_delete = p.is_none_or(|p| enabled(&p["allow_deletions"]));
    Artifact {
        kind: "branch-protection".into(),
        object_id: full.to_string(),
        url: format!("https://github.com/{full}/settings/branches"),
        title: format!("{full}: {branch}"),
        content: json!({
            "repository": full,
            "branch": branch,
            "protected": p.is_some(),
            "requires_pull_request": reviews.is_some() || !pr_rules.is_empty(),
            "required_approving_review_count": approvals.unwrap_or(0),
            "dismiss_stale_reviews": any("dismiss_stale_reviews", "dismiss_stale_reviews_on_push"),
            "require_code_owner_review": any("require_code_owner_reviews", "require_code_owner_review"),
            "require_last_push_approval": any("require_last_push_approval", "require_last_push_approval"),
            "required_status_checks": checks,
            "enforce_admins": p.is_some_and(|p| enabled(&p["enforce_admins"])),
            "allow_force_pushes": classic_force && rule(rules, "non_fast_forward").next().is_none(),
            "allow_deletions": classic_delete && rule(rules, "deletion").next().is_none(),
            "rules": applied,
            "rulesets": rulesets,
        }),
        ..blank()
    }
}

/// One ruleset that applies to a default branch: who may bypass it.
/// GitHub shows bypass actors only to a token that may administer the
/// ruleset; without them (or without the ruleset, 404) the list is
/// `null`, which is not the same as nobody.
fn ruleset(id: u64, body: Option<&Value>) -> Value {
    let mut actors: Option<Vec<Value>> =
        body.and_then(|b| b["bypass_actors"].as_array()).map(|a| {
            a.iter()
                .map(|x| {
                    json!({
                        "actor_type": x["actor_type"],
                        "actor_id": x["actor_id"],
                        "bypass_mode": x["bypass_mode"],
                    })
                })
                .collect()
        });
    if let Some(a) = &mut actors {
        a.sort_by_key(|v| v.to_string());
    }
    json!({
        "ruleset_id": id,
        "name": body.map(|b| b["name"].clone()),
        "enforcement": body.map(|b| b["enforcement"].clone()),
        "bypass_actors": actors,
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
        kind: "repository".into(),
        object_id: full.to_string(),
        url: r["html_url"].as_str().unwrap_or_default().to_string(),
        title: full.to_string(),
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
        ..blank()
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
