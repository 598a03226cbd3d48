//! Connectors: one trait for every evidence source, and the plumbing they
//! share (paging, cursors, rate limits).
//!
//! A connector declares its [`Query`]s; the driver ([`collect`]) asks for
//! pages until a query is exhausted, waits out rate limits the source
//! reports, and keeps each query's cursor for the next run. Local sources
//! answer in one page; API sources (GitHub, Jira, Drive) page, send
//! conditional requests and report their limits through the same types.

pub mod files;
pub mod gdrive;
pub mod git;
pub mod github;
pub mod gitrepo;
pub mod http;
pub mod jira;

use crate::artifact::Artifact;
use crate::config::{SourceConfig, SourceSpec};
use crate::period::Period;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One question a connector asks its source, yielding one or more kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Stable identifier within the connector (`history`, `tags`).
    pub id: String,
    /// Kinds of artifact this query yields.
    pub kinds: Vec<String>,
    /// Human-readable description, recorded in collections.
    pub description: String,
    /// Filters applied, recorded in collections.
    pub filters: BTreeMap<String, String>,
    /// True when the query only covers objects dated in the run's period:
    /// a held artifact dated outside the period was not asked about, so its
    /// absence from the answer is not a removal.
    pub period_scoped: bool,
}

/// Where the driver is in a query's pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Opaque cursor from the previous page (`None` for the first page).
    pub cursor: Option<String>,
    /// Validator from the last run, for a conditional request.
    pub etag: Option<String>,
    /// What this query saved at the end of the last run that committed
    /// (`.cleartrail/state.json` on the evidence branch); first page only.
    pub state: Option<String>,
}

/// How much of its scope a query's answer covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    /// Everything in scope: what is held but not returned was removed.
    #[default]
    Complete,
    /// Only what changed since the saved state: nothing held is removed
    /// for being absent.
    Incremental,
    /// Nothing changed since the saved state: the held artifacts stand.
    NotModified,
    /// The query could not be read and was optional: the held artifacts
    /// stand, and the record says why (in its `skipped`).
    NotCollected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Incremental => "incremental",
            Outcome::NotModified => "not-modified",
            Outcome::NotCollected => "not-collected",
        }
    }
}

/// Rate-limit state reported by a source with a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub remaining: u64,
    pub reset_at: DateTime<Utc>,
}

/// Something a query could not read and left out on purpose (a symlink
/// leaving the source root, a device, an unreadable name). Recorded in the
/// collection record and logged, so a gap in the evidence is never silent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    /// Where it is, relative to the source (never an absolute local path).
    pub path: String,
    pub reason: String,
}

/// One page of answers.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Artifact>,
    /// What this page left out, and why.
    pub skipped: Vec<Skipped>,
    /// Cursor of the next page, `None` on the last.
    pub next: Option<String>,
    /// Validator to send next run.
    pub etag: Option<String>,
    pub rate_limit: Option<RateLimit>,
    /// What the answer covers (read from the last page).
    pub outcome: Outcome,
    /// What to save for the next run (read from the last page).
    pub state: Option<String>,
    /// For an incremental answer: prefixes of object ids (`owner/repo/`)
    /// whose objects were all read again, so that one held under such a
    /// prefix and not returned was removed (gathered from every page).
    pub complete_within: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git repository {path}: {context}")]
    Git {
        path: String,
        context: String,
        #[source]
        source: git2::Error,
    },
    #[error("{endpoint}: HTTP {status}: {message}")]
    Http {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error(
        "{endpoint}: rate limit exhausted until {reset_at}, longer than the {max_wait_secs} s this run may wait"
    )]
    RateLimited {
        endpoint: String,
        reset_at: DateTime<Utc>,
        max_wait_secs: u64,
    },
    #[error(
        "{endpoint}: still more pages after {max_pages}; refusing to record a partial result as complete"
    )]
    TooManyPages { endpoint: String, max_pages: u64 },
    #[error("{endpoint}: no answer after {attempts} attempts: {message}")]
    Transport {
        endpoint: String,
        attempts: u32,
        message: String,
    },
    /// The source cannot even start: credentials or endpoints missing or
    /// malformed. The user's to fix (exit 2), unlike what the API answers.
    #[error("{message}")]
    Setup { message: String },
    #[error("query `{query}` is not known to source `{source_name}`")]
    UnknownQuery { source_name: String, query: String },
    #[error("collection task failed: {0}")]
    Task(String),
}

/// The contract every evidence source implements.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The connector type (`git`, `files`, `github`, ...): the `source` of
    /// every artifact it yields.
    fn source_type(&self) -> &'static str;
    /// The configured source name.
    fn name(&self) -> &str;
    /// The queries this source answers for the run.
    fn queries(&self) -> Vec<Query>;
    /// Fetches one page of one query.
    async fn fetch(&self, query: &Query, page: PageRequest) -> Result<Page, ConnectorError>;
    /// Whether the driver may run this source's queries at the same time.
    /// An API source says yes: its requests share one bound on those in
    /// flight, so a query paging through a list one page at a time leaves
    /// the others room instead of idling the connection. A local source
    /// says no: its queries compete for the same CPU and memory.
    fn concurrent_queries(&self) -> bool {
        false
    }
    /// Requests left in the rate budget, as the source last reported it
    /// (for progress).
    fn rate_remaining(&self) -> Option<u64> {
        None
    }
}

/// How the driver treats rate limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a rate-limit reset before failing the run.
    pub max_wait: Duration,
    /// A page-count safety net against a source that never ends.
    pub max_pages: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_wait: Duration::from_secs(15 * 60),
            max_pages: 100_000,
        }
    }
}

/// What one query returned.
#[derive(Debug)]
pub struct QueryResult {
    pub source_type: &'static str,
    pub source_name: String,
    pub query: Query,
    pub pages: u64,
    pub items: Vec<Artifact>,
    /// What the query left out, and why, sorted.
    pub skipped: Vec<Skipped>,
    /// Validator of the last page, for the next run's state.
    pub etag: Option<String>,
    pub outcome: Outcome,
    /// What the query was given from the last run.
    pub since: Option<String>,
    /// What to save for the next run.
    pub state: Option<String>,
    /// See [`Page::complete_within`].
    pub complete_within: Vec<String>,
}

impl QueryResult {
    /// The stable label of the query (`<source name>/<query id>`): the
    /// `query` of its artifacts and its key in the saved state.
    pub fn label(&self) -> String {
        format!("{}/{}", self.source_name, self.query.id)
    }
}

/// Runs every query of one connector to the end. `states` holds what each
/// query saved last time, by label (`<source name>/<query id>`).
pub async fn collect(
    connector: &dyn Connector,
    limits: Limits,
    now: impl Fn() -> DateTime<Utc>,
    states: &BTreeMap<String, String>,
) -> Result<Vec<QueryResult>, ConnectorError> {
    let out = collect_with(connector, limits, now, states, |items| items).await?;
    Ok(out
        .into_iter()
        .map(|(mut r, pages)| {
            r.items = pages.into_iter().flatten().collect();
            r
        })
        .collect())
}

/// [`collect`], with each page's artifacts handed to `convert` (off the
/// async executor) as soon as they are stamped, and only what it returns
/// kept: a large source is never in memory as parsed artifacts at once.
/// The results' `items` are empty; the converted pages come beside them.
pub async fn collect_with<T: Send + 'static>(
    connector: &dyn Connector,
    limits: Limits,
    now: impl Fn() -> DateTime<Utc>,
    states: &BTreeMap<String, String>,
    convert: fn(Vec<Artifact>) -> T,
) -> Result<Vec<(QueryResult, Vec<T>)>, ConnectorError> {
    let queries = connector.queries();
    if connector.concurrent_queries() {
        let all = queries
            .into_iter()
            .map(|q| collect_query(connector, q, limits, &now, states, convert));
        // Every query to its end, then the first failure in query order:
        // which error a run reports must not depend on timing.
        return futures_util::future::join_all(all)
            .await
            .into_iter()
            .collect();
    }
    let mut out = Vec::new();
    for q in queries {
        out.push(collect_query(connector, q, limits, &now, states, convert).await?);
    }
    Ok(out)
}

/// Runs one query to its last page.
async fn collect_query<T: Send + 'static>(
    connector: &dyn Connector,
    query: Query,
    limits: Limits,
    now: &impl Fn() -> DateTime<Utc>,
    states: &BTreeMap<String, String>,
    convert: fn(Vec<Artifact>) -> T,
) -> Result<(QueryResult, Vec<T>), ConnectorError> {
    // Provenance is stamped here, once, so that no connector can get it
    // wrong: which query found the object (a stable label, never a
    // volatile description) and, for objects of a period-scoped query,
    // the month shard they live in. The label also keys the saved state.
    let label = format!("{}/{}", connector.name(), query.id);
    let mut req = PageRequest {
        state: states.get(&label).cloned(),
        ..PageRequest::default()
    };
    let since = req.state.clone();
    let mut outcome: Outcome;
    let mut state: Option<String>;
    let mut converted = Vec::new();
    let mut converting: Option<tokio::task::JoinHandle<T>> = None;
    let mut skipped = Vec::new();
    let mut pages = 0u64;
    let mut objects = 0u64;
    let mut complete_within = Vec::new();
    let mut etag = None;
    loop {
        let mut page = connector.fetch(&query, req.clone()).await?;
        pages += 1;
        for item in &mut page.items {
            item.query.clone_from(&label);
            if query.period_scoped {
                item.stamp_shard();
            } else {
                item.shard = None;
            }
        }
        let items = std::mem::take(&mut page.items);
        let n_items = items.len() as u64;
        // Converted while the next page is fetched: an API page spends
        // its time waiting on the network. One page at most waits to
        // be converted, so memory stays bounded.
        if let Some(previous) = converting.take() {
            converted.push(join(previous).await?);
        }
        converting = Some(tokio::task::spawn_blocking(move || convert(items)));
        for s in &page.skipped {
            tracing::warn!(
                source = connector.name(),
                "skipped {}: {}",
                s.path,
                s.reason
            );
        }
        skipped.extend(page.skipped);
        complete_within.extend(page.complete_within);
        objects += n_items;
        crate::progress::get().page(
            connector.name(),
            &query.id,
            pages,
            objects,
            connector.rate_remaining(),
        );
        etag = page.etag.or(etag);
        outcome = page.outcome;
        state = page.state;
        if let Some(rl) = page.rate_limit
            && rl.remaining == 0
            && page.next.is_some()
        {
            let wait = (rl.reset_at - now()).to_std().unwrap_or_default();
            if wait > limits.max_wait {
                return Err(ConnectorError::RateLimited {
                    endpoint: format!("{}:{}", connector.name(), query.id),
                    reset_at: rl.reset_at,
                    max_wait_secs: limits.max_wait.as_secs(),
                });
            }
            tracing::info!(
                source = connector.name(),
                "rate limit reached; waiting {} s for the reset",
                wait.as_secs()
            );
            tokio::time::sleep(wait).await;
        }
        match page.next {
            // A partial answer must never pass for a complete one: what
            // it lacks would be recorded as removed.
            Some(_) if pages >= limits.max_pages => {
                return Err(ConnectorError::TooManyPages {
                    endpoint: format!("{}:{}", connector.name(), query.id),
                    max_pages: limits.max_pages,
                });
            }
            Some(next) => {
                req = PageRequest {
                    cursor: Some(next),
                    ..PageRequest::default()
                };
            }
            None => break,
        }
    }
    if let Some(last) = converting.take() {
        converted.push(join(last).await?);
    }
    crate::progress::get().query_done(
        connector.name(),
        &query.id,
        pages,
        objects,
        outcome.as_str(),
    );
    Ok((
        QueryResult {
            source_type: connector.source_type(),
            source_name: connector.name().to_string(),
            query,
            pages,
            items: Vec::new(),
            skipped: {
                skipped.sort();
                skipped
            },
            etag,
            outcome,
            since,
            state,
            complete_within: {
                complete_within.sort();
                complete_within.dedup();
                complete_within
            },
        },
        converted,
    ))
}

/// Builds the connector for a configured source. API sources read their
/// credentials and endpoints from the environment here, and fail with
/// [`ConnectorError::Setup`] before any request when they are missing.
/// `states` are what queries saved last run: a source that reads while it
/// is built (the GitHub repository listing) revalidates with them.
pub async fn connect(
    src: &SourceConfig,
    period: &Period,
    states: &BTreeMap<String, String>,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(match &src.spec {
        SourceSpec::Git(crate::config::GitSpec {
            path,
            branch,
            allowed_signers,
            gpg_keyring,
        }) => Arc::new(
            git::GitSource::new(
                src.name.clone(),
                path.clone(),
                branch.clone(),
                period.clone(),
            )
            .with_keys(allowed_signers.clone(), gpg_keyring.clone()),
        ),
        SourceSpec::Files(crate::config::FilesSpec { path, exclude }) => Arc::new(
            files::FilesSource::new(src.name.clone(), path.clone(), exclude.clone()),
        ),
        SourceSpec::Gdrive(spec) => Arc::new(gdrive::GdriveSource::new(
            src.name.clone(),
            spec.clone(),
            gdrive::client::GdriveClient::connect(
                &gdrive::client::GdriveEnv::from_env(spec.api_url.as_deref())?,
                gdrive::client::politeness(),
            )
            .await?,
        )),
        SourceSpec::Jira(spec) => Arc::new(jira::JiraSource::new(
            src.name.clone(),
            spec.clone(),
            period.clone(),
            jira::client::JiraClient::new(
                &jira::client::JiraEnv::from_env(spec.url.as_deref())?,
                spec.deployment,
                http::Politeness::default(),
            )?,
        )),
        SourceSpec::Github(spec) => Arc::new(
            github::GithubSource::connect(
                src.name.clone(),
                spec.clone(),
                period.clone(),
                &github::client::GithubEnv::from_env()?,
                http::Politeness::default(),
                states,
            )
            .await?,
        ),
    })
}

async fn join<T>(task: tokio::task::JoinHandle<T>) -> Result<T, ConnectorError> {
    task.await.map_err(|e| ConnectorError::Task(e.to_string()))
}

/// Runs blocking work (git, file system) off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A source that pages through numbers and reports a spent rate limit
    /// on the first page.
    struct Paged {
        calls: Mutex<Vec<PageRequest>>,
        reset_in: chrono::Duration,
    }

    #[async_trait]
    impl Connector for Paged {
        fn source_type(&self) -> &'static str {
            "test"
        }
        fn name(&self) -> &str {
            "paged"
        }
        fn queries(&self) -> Vec<Query> {
            vec![Query {
                id: "all".into(),
                kinds: vec!["n".into()],
                description: "numbers".into(),
                filters: BTreeMap::new(),
                period_scoped: false,
            }]
        }
        async fn fetch(&self, _q: &Query, page: PageRequest) -> Result<Page, ConnectorError> {
            self.calls.lock().unwrap().push(page.clone());
            let n: u32 = page
                .cursor
                .as_deref()
                .map(|c| c.parse().unwrap())
                .unwrap_or(0);
            Ok(Page {
                items: Vec::new(),
                next: (n < 2).then(|| (n + 1).to_string()),
                etag: Some(format!("e{n}")),
                rate_limit: (n == 0).then(|| RateLimit {
                    remaining: 0,
                    reset_at: DateTime::from_timestamp(1000, 0).unwrap() + self.reset_in,
                }),
                ..Page::default()
            })
        }
    }

    fn at_1000() -> DateTime<Utc> {
        DateTime::from_timestamp(1000, 0).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn follows_cursors_and_waits_for_a_short_reset() {
        let c = Paged {
            calls: Mutex::new(Vec::new()),
            reset_in: chrono::Duration::seconds(30),
        };
        let started = tokio::time::Instant::now();
        let res = collect(&c, Limits::default(), at_1000, &BTreeMap::new())
            .await
            .unwrap();
        // The clock is paused: only the rate-limit wait advances it, by
        // exactly the 30 s until the reset.
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(30));
        assert_eq!(res[0].pages, 3);
        assert_eq!(res[0].etag.as_deref(), Some("e2"));
        let cursors: Vec<Option<String>> = c
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.cursor.clone())
            .collect();
        assert_eq!(cursors, [None, Some("1".into()), Some("2".into())]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_never_ends_fails_instead_of_truncating() {
        let c = Paged {
            calls: Mutex::new(Vec::new()),
            reset_in: chrono::Duration::seconds(1),
        };
        let limits = Limits {
            max_pages: 2,
            ..Limits::default()
        };
        let err = collect(&c, limits, at_1000, &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("still more pages after 2"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_reset_beyond_the_wait_limit_fails_with_the_endpoint() {
        let c = Paged {
            calls: Mutex::new(Vec::new()),
            reset_in: chrono::Duration::hours(2),
        };
        let err = collect(&c, Limits::default(), at_1000, &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("paged:all: rate limit exhausted"),
            "{err}"
        );
    }
}
