//! Conditional reading of REST lists, shared by every GitHub query that
//! keeps validators between runs: a list followed through its `Link`
//! pages, the revalidation of pages saved last run, and the runner of a
//! query made repository by repository, which reads again only the
//! repositories whose answers changed.

use super::client::GithubClient;
use super::{ABSENT, GithubSource, SavedPage, parse};
use crate::artifact::Artifact;
use crate::connectors::http::next_link;
use crate::connectors::{ConnectorError, Outcome, Page, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;

/// Every page of the list at `start` (following `Link`), with the pages
/// to save. With `absent`, a 404 whose message says that (GitHub's
/// "Branch not protected") is an empty list, saved as [`ABSENT`]: the
/// same 404 next run is no change. Any other 404 (a repository the token
/// cannot see) is the error it is.
pub(super) async fn fetch_pages(
    client: &GithubClient,
    start: &str,
    absent: Option<&str>,
) -> Result<(Vec<Value>, Vec<SavedPage>), ConnectorError> {
    let mut bodies = Vec::new();
    let mut pages = Vec::new();
    let mut next = Some(start.to_string());
    while let Some(url) = next {
        let reply = match client.get(&url, None).await {
            Err(ConnectorError::Http {
                status: 404,
                message,
                ..
            }) if absent.is_some_and(|a| message.to_ascii_lowercase().contains(a)) => {
                pages.push(SavedPage {
                    url,
                    etag: Some(ABSENT.into()),
                });
                break;
            }
            other => other?,
        };
        bodies.push(parse(&reply, &url)?);
        pages.push(SavedPage {
            url: url.clone(),
            etag: reply.header("etag").map(str::to_string),
        });
        next = next_link(&reply);
    }
    Ok((bodies, pages))
}

/// Whether every saved page is as it was: each answers 304 to its
/// validator (a page saved as [`ABSENT`] answers 404 again). Stops at the
/// first change, since one changed page is read again with all of them.
pub(super) async fn unchanged(
    client: &GithubClient,
    saved: &[SavedPage],
) -> Result<bool, ConnectorError> {
    if saved.is_empty() {
        return Ok(false);
    }
    for page in saved {
        let absent = page.etag.as_deref() == Some(ABSENT);
        // ABSENT is never sent as a validator.
        let etag = page.etag.as_deref().filter(|_| !absent);
        match client.get(&page.url, etag).await {
            Ok(r) if r.status == 304 => {}
            Err(ConnectorError::Http { status: 404, .. }) if absent => {}
            Ok(_) | Err(ConnectorError::Http { status: 404, .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The saved state of a query made repository by repository: the pages
/// each repository's answer came in, with their validators.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct RepoPagesSaved {
    pub scope: String,
    pub repos: BTreeMap<String, Vec<SavedPage>>,
}

impl GithubSource {
    /// Runs a query repository by repository, as many at once as requests
    /// may be in flight. `fetch` reads repository `i` in full (its
    /// artifacts, whose object ids start with `owner/name/` or are
    /// `owner/name`, and the pages they came from). With last run's state
    /// (same `scope`), each repository's pages are revalidated first and
    /// only a repository with a change is read again: the answer is
    /// *incremental*, complete within each repository read again (what is
    /// held of it and not returned was removed; what is held of the
    /// others stands), or *not modified* when nothing changed anywhere.
    pub(super) async fn per_repo<'a, F, Fut>(
        &'a self,
        req: &PageRequest,
        scope: String,
        fetch: F,
    ) -> Result<Page, ConnectorError>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<(Vec<Artifact>, Vec<SavedPage>), ConnectorError>> + 'a,
    {
        use futures_util::StreamExt as _;
        let saved = req
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str::<RepoPagesSaved>(s).ok())
            .filter(|s| s.scope == scope);
        let in_flight = self.client.polite.rules().concurrency.max(1);
        let answers: Vec<_> = futures_util::stream::iter(0..self.listing.names.len())
            .map(|i| {
                let before = saved
                    .as_ref()
                    .and_then(|s| s.repos.get(&self.listing.names[i]));
                let fetched = fetch(i);
                async move {
                    if let Some(before) = before
                        && unchanged(&self.client, before).await?
                    {
                        return Ok::<_, ConnectorError>((None, before.clone()));
                    }
                    let (items, pages) = fetched.await?;
                    Ok((Some(items), pages))
                }
            })
            .buffered(in_flight)
            .collect()
            .await;
        let mut items = Vec::new();
        let mut reread = Vec::new();
        let mut repos = BTreeMap::new();
        for (i, answer) in answers.into_iter().enumerate() {
            let (found, pages) = answer?;
            let name = &self.listing.names[i];
            if let Some(found) = found {
                reread.push(format!("{name}/"));
                items.extend(found);
            }
            repos.insert(name.clone(), pages);
        }
        let outcome = match (&saved, reread.is_empty()) {
            (None, _) => Outcome::Complete,
            (Some(_), true) => Outcome::NotModified,
            (Some(_), false) => Outcome::Incremental,
        };
        let state =
            serde_json::to_string(&RepoPagesSaved { scope, repos }).expect("state serializes");
        Ok(Page {
            items,
            outcome,
            state: Some(state),
            complete_within: if outcome == Outcome::Incremental {
                reread
            } else {
                Vec::new()
            },
            ..Page::default()
        })
    }
}
