//! The `jira` source: tickets matching named JQL queries, each query an
//! evidence kind (`change`, `incident`, `access-request`, ...).
//!
//! Each issue becomes an artifact with its fields, its approvers (the
//! fields the source names), and its changelog reduced to who moved it to
//! which status, when: the transitions an auditor samples. A query covers
//! the issues active in the period (created by its end, not resolved
//! before its start). Issues are read with Jira's search (Cloud: `POST
//! /rest/api/3/search/jql` by `nextPageToken`; Data Center: `POST
//! /rest/api/2/search` by `startAt`), their changelog expanded, and the
//! rest of a long changelog from `/issue/{key}/changelog` (Cloud) or the
//! issue expanded (Data Center).
//!
//! The query saves the latest update time it saw; the next run asks only
//! for issues updated since (a day earlier, since JQL reads times in the
//! account's own time zone), and records the answer as `incremental`, or
//! `not-modified` when nothing was.

pub mod client;

use super::{Connector, ConnectorError, Outcome, Page, PageRequest, Query};
use crate::artifact::{Artifact, DateSpan};
use crate::period::Period;
use async_trait::async_trait;
use client::JiraClient;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What a `jira` source is configured to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JiraSpec {
    /// The site; `JIRA_BASE_URL` when not set.
    pub url: Option<String>,
    /// Cloud or Data Center; told by the site and credentials when not
    /// set.
    pub deployment: Option<client::Deployment>,
    /// Evidence kind -> JQL.
    pub queries: BTreeMap<String, String>,
    /// Fields (ids such as `customfield_10050`) that name approvers.
    pub approver_fields: Vec<String>,
    /// The field an incident's severity is read from (`priority` by
    /// default: its name).
    pub severity_field: String,
    /// How the checks judge this source's tickets.
    pub policy: crate::checks::TicketPolicy,
}

/// Issues a page asks for (Jira's own cap is 100 with a changelog).
const PAGE_SIZE: u64 = 100;

pub struct JiraSource {
    name: String,
    spec: JiraSpec,
    period: Period,
    client: JiraClient,
}

/// Where a query is in its pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    token: Option<String>,
    /// The incremental lower bound this walk uses, if any.
    since: Option<String>,
    /// The latest `updated` seen so far.
    high: Option<String>,
    /// Issues seen so far.
    seen: u64,
}

/// What a query saves: the latest update seen, and what it depends on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Saved {
    scope: String,
    since: String,
    /// The keys the query matched at the end of the last run: one gone
    /// since (deleted, moved, no longer matching) is a removal that no
    /// `updated >=` search can show, so the query is read whole.
    #[serde(default)]
    keys: Vec<String>,
}

impl JiraSource {
    pub fn new(name: String, spec: JiraSpec, period: Period, client: JiraClient) -> JiraSource {
        JiraSource {
            name,
            spec,
            period,
            client,
        }
    }

    pub fn client(&self) -> &JiraClient {
        &self.client
    }

    /// The query's JQL bounded to the issues active in the period, ordered
    /// by key (the user's own `ORDER BY` is dropped: the order is ours).
    fn scoped_jql(&self, jql: &str) -> String {
        let base = match order_by_at(jql) {
            Some(i) => jql[..i].trim(),
            None => jql.trim(),
        };
        // A JQL date is the start of that day: `created <` the day after
        // the period takes in its last day.
        format!(
            "({base}) AND created < \"{}\" AND (resolved >= \"{}\" OR resolved is EMPTY) ORDER BY key ASC",
            self.period.end() + chrono::Days::new(1),
            self.period.start()
        )
    }

    /// What the saved state depends on: the site, the account reading
    /// it (another sees other issues), the JQL, the period and the fields
    /// read.
    fn scope(&self, jql: &str) -> String {
        use sha2::Digest as _;
        let text = format!(
            "{}\n{}\n{}\n{}\n{}",
            self.client.site(),
            self.client.identity(),
            self.scoped_jql(jql),
            self.spec.approver_fields.join(","),
            self.spec.severity_field
        );
        let digest = sha2::Sha256::digest(text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn fields(&self) -> Vec<String> {
        let mut f: Vec<String> = [
            "summary",
            "status",
            "issuetype",
            "priority",
            "assignee",
            "reporter",
            "created",
            "updated",
            "resolutiondate",
            "resolution",
            "labels",
            "project",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        f.extend(self.spec.approver_fields.iter().cloned());
        f.push(self.spec.severity_field.clone());
        f.sort();
        f.dedup();
        f
    }

    /// The keys the query matches now, sorted: a search for keys alone,
    /// up to 5,000 a page.
    async fn keys(&self, jql: &str) -> Result<Vec<String>, ConnectorError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let jql = self.scoped_jql(jql);
        let fields = ["key".to_string()];
        loop {
            let page = self
                .client
                .search(&jql, &fields, false, 5000, token.as_deref())
                .await?;
            for i in &page.issues {
                if let Some(k) = i["key"].as_str() {
                    out.push(k.to_string());
                }
            }
            token = page.next;
            if token.is_none() {
                break;
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Every status transition of an issue: the histories the search
    /// expanded, or, when Jira cut them short, all of them page by page.
    async fn histories(&self, issue: &Value) -> Result<Vec<Value>, ConnectorError> {
        let cl = &issue["changelog"];
        let held = cl["histories"].as_array().cloned().unwrap_or_default();
        let total = cl["total"].as_u64().unwrap_or(held.len() as u64);
        if total as usize <= held.len() {
            return Ok(held);
        }
        let key = issue["key"].as_str().unwrap_or_default();
        if self.client.deployment == client::Deployment::DataCenter {
            // Data Center has no changelog endpoint of its own; the issue
            // expanded gives every history.
            let url = self
                .client
                .url(&format!("/issue/{key}?fields=key&expand=changelog"));
            let whole = self.client.get(&url).await?;
            return Ok(whole["changelog"]["histories"]
                .as_array()
                .cloned()
                .unwrap_or_default());
        }
        let mut out = Vec::new();
        let mut start = 0u64;
        loop {
            let url = self.client.url(&format!(
                "/issue/{key}/changelog?startAt={start}&maxResults=100"
            ));
            let page = self.client.get(&url).await?;
            let values = page["values"].as_array().cloned().unwrap_or_default();
            let n = values.len() as u64;
            out.extend(values);
            start += n;
            // The end: Jira says so, or the total is reached, or a page
            // is empty (a server whose `isLast` never turns true must not
            // be read forever).
            let last = page["isLast"].as_bool() == Some(true)
                || page["total"].as_u64().is_some_and(|t| start >= t)
                || (page["isLast"].is_null() && page["total"].is_null());
            if last || n == 0 {
                break;
            }
        }
        Ok(out)
    }

    fn artifact(&self, kind: &str, issue: &Value, histories: &[Value]) -> Option<Artifact> {
        let key = issue["key"].as_str()?;
        let f = &issue["fields"];
        // A user: Cloud's `accountId`, Data Center's `name` (a user
        // object has `self` or `key` beside it).
        let person = |v: &Value| -> Value {
            let id = v["accountId"].as_str().or_else(|| {
                (v["self"].is_string() || v["key"].is_string())
                    .then(|| v["name"].as_str())
                    .flatten()
            });
            match id {
                Some(id) => json!({"account_id": id, "name": v["displayName"]}),
                None => Value::Null,
            }
        };
        // Approver fields: users named (a user picker), or Jira Service
        // Management approvals, of which only the approvers who decided
        // `approved` on an approval whose final decision is `approved`.
        let mut approvers: Vec<Value> = Vec::new();
        for field in &self.spec.approver_fields {
            let values: Vec<&Value> = match &f[field] {
                Value::Array(a) => a.iter().collect(),
                v if v.is_object() => vec![v],
                _ => Vec::new(),
            };
            for v in values {
                if v.get("finalDecision").is_some() || v.get("approvers").is_some() {
                    if v["finalDecision"] != "approved" {
                        continue;
                    }
                    for a in v["approvers"].as_array().into_iter().flatten() {
                        if a["approverDecision"] == "approved" {
                            approvers.push(person(&a["approver"]));
                        }
                    }
                } else {
                    approvers.push(person(v));
                }
            }
        }
        approvers.retain(|a| !a.is_null());
        let mut transitions: Vec<Value> = Vec::new();
        for h in histories {
            for item in h["items"].as_array().into_iter().flatten() {
                if item["field"] == "status" {
                    // In UTC, whatever zone the reading account is in:
                    // the same ticket gives the same bytes, and times
                    // compare as text.
                    let at = h["created"]
                        .as_str()
                        .and_then(jira_time)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                    transitions.push(json!({
                        "at": at,
                        "by": person(&h["author"]),
                        "from": item["fromString"],
                        "to": item["toString"],
                        "history": h["id"],
                    }));
                }
            }
        }
        // Oldest first, as an auditor reads a ticket's story; ties by
        // history id, whichever endpoint gave them.
        transitions.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["at"].as_str().unwrap_or("").to_string(),
                    v["history"]
                        .as_str()
                        .unwrap_or("")
                        .parse::<u64>()
                        .unwrap_or(0),
                )
            };
            key(a).cmp(&key(b))
        });
        let severity = match &f[&self.spec.severity_field] {
            Value::Object(o) => o
                .get("name")
                .or_else(|| o.get("value"))
                .cloned()
                .unwrap_or(Value::Null),
            other => other.clone(),
        };
        let created = f["created"].as_str().and_then(jira_time);
        let resolved = f["resolutiondate"].as_str().and_then(jira_time);
        let updated = f["updated"].as_str().and_then(jira_time);
        // Every issue has both; an answer without them is kept by the
        // time it has.
        let start = created.or(updated)?.date_naive();
        let end = resolved
            .or(updated)
            .map_or(start, |t| t.date_naive())
            .max(start);
        let iso = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        };
        let mut observed = BTreeMap::new();
        for (k, t) in [
            ("created", created),
            ("updated", updated),
            ("resolved", resolved),
        ] {
            if let Some(t) = iso(t) {
                observed.insert(k.to_string(), t);
            }
        }
        Some(Artifact {
            source: "jira".into(),
            kind: kind.into(),
            // The source's name first: two sites may both have an OPS-1.
            object_id: format!("{}/{key}", self.name),
            url: self.client.browse(key),
            title: format!("{key}: {}", f["summary"].as_str().unwrap_or_default()),
            period: Some(DateSpan { start, end }),
            observed,
            content: json!({
                "key": key,
                "project": f["project"]["key"],
                "issue_type": f["issuetype"]["name"],
                "summary": f["summary"],
                "status": f["status"]["name"],
                "status_category": f["status"]["statusCategory"]["key"],
                "priority": f["priority"]["name"],
                "severity": severity,
                "assignee": person(&f["assignee"]),
                "reporter": person(&f["reporter"]),
                "created": iso(created),
                "updated": iso(updated),
                "resolved": iso(resolved),
                "resolution": f["resolution"]["name"],
                "labels": f["labels"],
                "approvers": approvers,
                "transitions": transitions,
            }),
            query: String::new(),
            shard: None,
            captured: None,
        })
    }
}

/// Where the JQL's own `ORDER BY` starts: the last one outside a quoted
/// string, words separated by any white space.
fn order_by_at(jql: &str) -> Option<usize> {
    let bytes = jql.as_bytes();
    let mut quote: Option<u8> = None;
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(_) if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None => {
                let word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
                if word_start && jql[i..].len() >= 5 && jql[i..i + 5].eq_ignore_ascii_case("order")
                {
                    let rest = &jql[i + 5..];
                    let trimmed = rest.trim_start();
                    if trimmed.len() < rest.len()
                        && trimmed.len() >= 2
                        && trimmed[..2].eq_ignore_ascii_case("by")
                        && trimmed[2..]
                            .chars()
                            .next()
                            .is_none_or(|c| !c.is_ascii_alphanumeric())
                    {
                        found = Some(i);
                    }
                }
            }
        }
        i += 1;
    }
    found
}

/// Jira's times (`2026-03-01T10:15:30.000+0000`) in UTC.
fn jira_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[async_trait]
impl Connector for JiraSource {
    fn source_type(&self) -> &'static str {
        "jira"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn queries(&self) -> Vec<Query> {
        self.spec
            .queries
            .iter()
            .map(|(kind, jql)| Query {
                id: kind.clone(),
                kinds: vec![kind.clone()],
                description: format!("Jira issues matching `{jql}` active in the period"),
                filters: [
                    ("jql".to_string(), self.scoped_jql(jql)),
                    (
                        "site".to_string(),
                        self.client
                            .browse("")
                            .trim_end_matches("browse/")
                            .to_string(),
                    ),
                ]
                .into(),
                period_scoped: true,
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
        let Some(jql) = self.spec.queries.get(&query.id) else {
            return Err(ConnectorError::UnknownQuery {
                source_name: self.name.clone(),
                query: query.id.clone(),
            });
        };
        let scope = self.scope(jql);
        let mut cursor: Cursor = match &page.cursor {
            Some(c) => serde_json::from_str(c).map_err(|e| {
                ConnectorError::Task(format!("{}: unreadable cursor: {e}", self.name))
            })?,
            None => {
                let mut saved = page
                    .state
                    .as_deref()
                    .and_then(|s| serde_json::from_str::<Saved>(s).ok())
                    .filter(|s| s.scope == scope);
                if let Some(s) = &saved {
                    let now = self.keys(jql).await?;
                    let gone = s
                        .keys
                        .iter()
                        .filter(|k| now.binary_search(k).is_err())
                        .count();
                    if gone > 0 {
                        tracing::info!(
                            source = self.name.as_str(),
                            "{}: {gone} ticket(s) left the query since the last run; reading it whole",
                            query.id
                        );
                        saved = None;
                    }
                }
                Cursor {
                    token: None,
                    high: saved.as_ref().map(|s| s.since.clone()),
                    since: saved.map(|s| s.since),
                    seen: 0,
                }
            }
        };
        let mut effective = self.scoped_jql(jql);
        if let Some(since) = cursor.since.as_deref().and_then(jira_time) {
            // JQL reads times in the account's time zone: a day earlier
            // covers every zone; what comes back unchanged changes nothing.
            let from = since - chrono::Duration::days(1);
            let order = effective.rfind(" ORDER BY").unwrap_or(effective.len());
            effective.insert_str(
                order,
                &format!(" AND updated >= \"{}\"", from.format("%Y-%m-%d %H:%M")),
            );
        }
        let answer = self
            .client
            .search(
                &effective,
                &self.fields(),
                true,
                PAGE_SIZE,
                cursor.token.as_deref(),
            )
            .await?;
        let issues = answer.issues;
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for issue in &issues {
            let histories = self.histories(issue).await?;
            let Some(a) = self.artifact(&query.id, issue, &histories) else {
                skipped.push(super::Skipped {
                    path: issue["key"].as_str().unwrap_or("?").to_string(),
                    reason: "the answer has no key, or neither a created nor an updated time"
                        .into(),
                });
                continue;
            };
            {
                if let Some(u) = a.observed.get("updated")
                    && cursor.high.as_deref().is_none_or(|h| u.as_str() > h)
                {
                    cursor.high = Some(u.clone());
                }
                items.push(a);
            }
        }
        cursor.seen += issues.len() as u64;
        if let Some(token) = answer.next {
            cursor.token = Some(token);
            return Ok(Page {
                items,
                skipped,
                next: Some(serde_json::to_string(&cursor).expect("a cursor serializes")),
                ..Page::default()
            });
        }
        let outcome = match (&cursor.since, cursor.seen) {
            (None, _) => Outcome::Complete,
            (Some(_), 0) => Outcome::NotModified,
            (Some(_), _) => Outcome::Incremental,
        };
        let since = cursor.high.clone().unwrap_or_else(|| {
            self.period
                .start_time()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        let keys = self.keys(jql).await?;
        Ok(Page {
            items,
            skipped,
            outcome,
            state: Some(
                serde_json::to_string(&Saved { scope, since, keys }).expect("state serializes"),
            ),
            ..Page::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jqls_own_order_by_is_found_outside_strings() {
        let q = "project = CHG order  BY created";
        assert_eq!(order_by_at(q), Some(14));
        assert_eq!(order_by_at("summary ~ \"work order by vendor\""), None);
        assert_eq!(order_by_at("summary ~ \"order by\" ORDER BY key"), Some(21));
        assert_eq!(order_by_at("reorder = 1"), None);
    }

    #[test]
    fn jira_times_read_with_their_offset() {
        let t = jira_time("2026-03-01T10:15:30.000+0100").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T09:15:30+00:00");
        assert!(jira_time("yesterday").is_none());
    }
}
