//! Per-repository evidence read by REST, repository by repository with
//! the pages of each revalidated next run (see [`GithubSource::per_repo`]):
//! who administers each repository, the completed workflow runs on its
//! default branch, and its releases, the last two in the period only.

use super::pages::fetch_pages;
use super::{GithubSource, SavedPage, blank, observed, parse, time};
use crate::artifact::{Artifact, DateSpan};
use crate::connectors::http::next_link;
use crate::connectors::{ConnectorError, Page, PageRequest};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// GitHub lists at most 1,000 workflow runs for a filtered request; a
/// time range with more is split in two until each half has fewer.
const RUNS_LIMIT: u64 = 1000;

/// A value made safe for a URL's query (branch names may hold `&`, `#`,
/// `+` or spaces).
pub(super) fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl GithubSource {
    /// Who has admin on each repository (directly, through a team or as
    /// an organization owner), and which of them are outside
    /// collaborators: one artifact per repository, so that a removed
    /// admin is seen to be gone.
    pub(super) async fn repository_admins(&self, req: PageRequest) -> Result<Page, ConnectorError> {
        self.per_repo(&req, self.listing_scope(), |i| self.admins_of(i))
            .await
    }

    async fn admins_of(&self, i: usize) -> Result<(Vec<Artifact>, Vec<SavedPage>), ConnectorError> {
        let full = &self.listing.names[i];
        let all = self.client.url(&format!(
            "/repos/{full}/collaborators?permission=admin&per_page=100"
        ));
        let outside = self.client.url(&format!(
            "/repos/{full}/collaborators?affiliation=outside&permission=admin&per_page=100"
        ));
        let (a, b) = futures_util::future::join(
            fetch_pages(&self.client, &all, None),
            fetch_pages(&self.client, &outside, None),
        )
        .await;
        let (all_pages, mut saved) = a?;
        let (outside_pages, more) = b?;
        saved.extend(more);
        let users = |pages: &[Value]| -> Vec<Value> {
            pages
                .iter()
                .flat_map(|p| p.as_array().cloned().unwrap_or_default())
                .collect()
        };
        let outsiders: BTreeSet<String> = users(&outside_pages)
            .iter()
            .filter_map(|u| u["login"].as_str().map(str::to_string))
            .collect();
        let mut admins: BTreeMap<String, Value> = BTreeMap::new();
        for u in users(&all_pages).iter().chain(users(&outside_pages).iter()) {
            let Some(login) = u["login"].as_str() else {
                continue;
            };
            // Asked for admins only; a server that ignores the filter still
            // says who is one.
            if u["permissions"]["admin"] == Value::Bool(false) {
                continue;
            }
            admins.insert(
                login.to_string(),
                json!({
                    "login": login,
                    "type": u["type"],
                    "role_name": u["role_name"],
                    "outside_collaborator": outsiders.contains(login),
                }),
            );
        }
        let count = admins.len();
        Ok((
            vec![Artifact {
                kind: "repository-admins".into(),
                object_id: full.clone(),
                url: format!("https://github.com/{full}/settings/access"),
                title: format!("{full}: {count} with admin"),
                content: json!({
                    "repository": full,
                    "admins": admins.into_values().collect::<Vec<_>>(),
                }),
                ..blank()
            }],
            saved,
        ))
    }

    /// Completed workflow runs on each default branch, created in the
    /// period.
    pub(super) async fn workflow_runs(&self, req: PageRequest) -> Result<Page, ConnectorError> {
        self.per_repo(&req, self.pr_scope(), |i| self.runs_of(i))
            .await
    }

    async fn runs_of(&self, i: usize) -> Result<(Vec<Artifact>, Vec<SavedPage>), ConnectorError> {
        let full = &self.listing.names[i];
        let branch = query_value(&self.listing.branches[i]);
        let end = self.period.end_time_exclusive() - chrono::Duration::seconds(1);
        let mut ranges = vec![(self.period.start_time(), end)];
        let mut runs: BTreeMap<u64, Artifact> = BTreeMap::new();
        let mut saved = Vec::new();
        let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        while let Some((from, to)) = ranges.pop() {
            let url = self.client.url(&format!(
                "/repos/{full}/actions/runs?branch={branch}&status=completed&exclude_pull_requests=true&created={}..{}&per_page=100",
                stamp(from),
                stamp(to)
            ));
            // The first page says how many there are: over the limit, the
            // range is halved before any more of it is read.
            let first = self.client.get(&url, None).await?;
            let body: Value = parse(&first, &url)?;
            let total = body["total_count"].as_u64().unwrap_or(0);
            if total > RUNS_LIMIT {
                if to - from < chrono::Duration::minutes(1) {
                    return Err(ConnectorError::Http {
                        endpoint: format!("GET {url}"),
                        status: 200,
                        message: format!(
                            "{total} workflow runs within one minute; GitHub lists at most {RUNS_LIMIT} for one request, so the rest cannot be read"
                        ),
                    });
                }
                let mid = from + (to - from) / 2;
                ranges.push((mid + chrono::Duration::seconds(1), to));
                ranges.push((from, mid));
                continue;
            }
            saved.push(SavedPage {
                url: url.clone(),
                etag: first.header("etag").map(str::to_string),
            });
            let mut bodies = vec![body];
            if let Some(next) = next_link(&first) {
                let (more, pages) = fetch_pages(&self.client, &next, None).await?;
                bodies.extend(more);
                saved.extend(pages);
            }
            for r in bodies
                .iter()
                .flat_map(|b| b["workflow_runs"].as_array().into_iter().flatten())
            {
                if let Some(a) = self.workflow_run(full, r) {
                    runs.insert(r["id"].as_u64().unwrap_or_default(), a);
                }
            }
        }
        Ok((runs.into_values().collect(), saved))
    }

    fn workflow_run(&self, full: &str, r: &Value) -> Option<Artifact> {
        // Asked for completed runs only; one still queued or running has
        // no conclusion yet and is read once it has.
        if r["status"] != "completed" {
            return None;
        }
        let created = r["created_at"].as_str().and_then(time)?;
        if !self.period.contains_time(created) {
            return None;
        }
        let id = r["id"].as_u64()?;
        let login = |k: &str| r[k]["login"].clone();
        Some(Artifact {
            kind: "workflow-run".into(),
            object_id: format!("{full}/actions/runs/{id}"),
            url: r["html_url"].as_str().unwrap_or_default().to_string(),
            title: format!(
                "{full}: {} #{} {}",
                r["name"].as_str().unwrap_or("workflow"),
                r["run_number"],
                r["conclusion"].as_str().unwrap_or("")
            ),
            period: Some(DateSpan::day(created.date_naive())),
            observed: observed(r, &["created_at", "updated_at"]),
            content: json!({
                "repository": full,
                "id": id,
                "workflow": r["name"],
                "path": r["path"],
                "run_number": r["run_number"],
                "run_attempt": r["run_attempt"],
                "event": r["event"],
                "branch": r["head_branch"],
                "head_sha": r["head_sha"],
                "status": r["status"],
                "conclusion": r["conclusion"],
                "actor": login("actor"),
                "triggering_actor": login("triggering_actor"),
                "created_at": r["created_at"],
                "run_started_at": r["run_started_at"],
                "updated_at": r["updated_at"],
            }),
            ..blank()
        })
    }

    /// Releases published in the period (drafts are not releases yet).
    pub(super) async fn releases(&self, req: PageRequest) -> Result<Page, ConnectorError> {
        self.per_repo(&req, self.pr_scope(), |i| self.releases_of(i))
            .await
    }

    async fn releases_of(
        &self,
        i: usize,
    ) -> Result<(Vec<Artifact>, Vec<SavedPage>), ConnectorError> {
        let full = &self.listing.names[i];
        let url = self
            .client
            .url(&format!("/repos/{full}/releases?per_page=100"));
        let (bodies, saved) = fetch_pages(&self.client, &url, None).await?;
        let mut items = Vec::new();
        for r in bodies
            .iter()
            .flat_map(|b| b.as_array().into_iter().flatten())
        {
            let Some(published) = r["published_at"].as_str().and_then(time) else {
                continue;
            };
            if r["draft"].as_bool() == Some(true) || !self.period.contains_time(published) {
                continue;
            }
            let Some(id) = r["id"].as_u64() else { continue };
            let tag = r["tag_name"].as_str().unwrap_or_default();
            items.push(Artifact {
                kind: "release".into(),
                object_id: format!("{full}/releases/{id}"),
                url: r["html_url"].as_str().unwrap_or_default().to_string(),
                title: format!("{full} {tag}"),
                period: Some(DateSpan::day(published.date_naive())),
                observed: observed(r, &["published_at"]),
                content: json!({
                    "repository": full,
                    "id": id,
                    "tag_name": tag,
                    "name": r["name"],
                    "target_commitish": r["target_commitish"],
                    "prerelease": r["prerelease"],
                    "immutable": r["immutable"],
                    "author": r["author"]["login"],
                    "created_at": r["created_at"],
                    "published_at": r["published_at"],
                }),
                ..blank()
            });
        }
        Ok((items, saved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_are_escaped_in_queries() {
        assert_eq!(query_value("main"), "main");
        assert_eq!(query_value("release/1.0"), "release/1.0");
        assert_eq!(query_value("a&b #c+d"), "a%26b%20%23c%2Bd");
    }
}
