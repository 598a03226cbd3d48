//! The `jira` source against a local mock of Jira Cloud's REST API v3
//! (wiremock, started by each test): search pages by `nextPageToken`, a
//! changelog longer than the search expands, 429 with `Retry-After`,
//! `ErrorCollection` bodies, the incremental re-run, the checks on the
//! planted exceptions, and credentials that never show; and Jira Data
//! Center's REST v2 search, which pages by `startAt` against `total`.

mod common;

use cleartrail::checks::{self, CheckContext, TicketPolicy};
use cleartrail::connectors::http::{Politeness, Secret};
use cleartrail::connectors::jira::client::{JiraAuth, JiraClient, JiraEnv};
use cleartrail::connectors::jira::{JiraSource, JiraSpec};
use cleartrail::connectors::{self, Limits, Outcome, QueryResult};
use cleartrail::evidence::{Held, Keep};
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "ATATT3xNeverPrintThisJiraToken0123456789";

fn quick() -> Politeness {
    Politeness {
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(10),
        secondary_wait: Duration::from_millis(10),
        max_attempts: 4,
        ..Politeness::default()
    }
}

fn policy() -> TicketPolicy {
    TicketPolicy {
        approval_kinds: ["change".to_string()].into(),
        approval_statuses: vec!["Approved".into()],
        incident_kinds: ["incident".to_string()].into(),
        incident_hours: [("highest", 24), ("high", 72), ("medium", 168), ("low", 336)]
            .into_iter()
            .map(|(k, h)| (k.to_string(), h))
            .collect(),
    }
}

fn spec() -> JiraSpec {
    JiraSpec {
        url: None,
        queries: [
            (
                "change".to_string(),
                "project = CHG ORDER BY created DESC".to_string(),
            ),
            ("incident".to_string(), "project = INC".to_string()),
        ]
        .into(),
        approver_fields: vec!["customfield_10050".into()],
        severity_field: "priority".into(),
        policy: policy(),
        deployment: None,
    }
}

fn source(uri: &str) -> JiraSource {
    let env = JiraEnv {
        base: uri.to_string(),
        auth: JiraAuth::Basic {
            email: "auditbot@acme.example".into(),
            token: Secret::new(TOKEN),
        },
    };
    JiraSource::new(
        "tickets".into(),
        spec(),
        "2026".parse().unwrap(),
        JiraClient::new(&env, None, quick()).unwrap(),
    )
}

fn user(id: &str) -> Value {
    json!({"accountId": id, "displayName": id.to_uppercase(), "active": true})
}

fn moved(at: &str, by: &str, from: &str, to: &str) -> Value {
    json!({"id": at, "author": user(by), "created": at,
           "items": [{"field": "status", "fieldtype": "jira", "fromString": from, "toString": to}]})
}

/// An issue as the search returns it with `expand=changelog`; `total`
/// above the histories given means Jira cut the changelog short.
fn issue(
    key: &str,
    status: (&str, &str),
    extra: Value,
    histories: Vec<Value>,
    total: usize,
) -> Value {
    let mut fields = json!({
        "summary": format!("{key} summary"),
        "status": {"name": status.0, "statusCategory": {"key": status.1}},
        "issuetype": {"name": "Task"},
        "priority": {"name": "Medium"},
        "assignee": user("ann"),
        "reporter": user("rex"),
        "created": "2026-03-01T10:00:00.000+0000",
        "updated": "2026-03-05T10:00:00.000+0000",
        "resolutiondate": null,
        "project": {"key": key.split('-').next().unwrap()},
        "labels": [],
    });
    for (k, v) in extra.as_object().unwrap() {
        fields[k] = v.clone();
    }
    json!({"id": key, "key": key, "self": "x", "fields": fields,
           "changelog": {"startAt": 0, "maxResults": histories.len(), "total": total, "histories": histories}})
}

fn changes() -> (Vec<Value>, Vec<Value>) {
    let done = ("Done", "done");
    let resolved = json!({"resolutiondate": "2026-03-04T10:00:00.000+0000"});
    let page1 = vec![
        // Approved by bob, not the assignee: passes.
        issue(
            "CHG-1",
            done,
            resolved.clone(),
            vec![
                moved("2026-03-02T10:00:00.000+0000", "bob", "Open", "Approved"),
                moved("2026-03-04T10:00:00.000+0000", "ann", "Approved", "Done"),
            ],
            2,
        ),
        // Approved by its own assignee: an exception.
        issue(
            "CHG-2",
            done,
            resolved.clone(),
            vec![
                moved("2026-03-02T10:00:00.000+0000", "ann", "Open", "Approved"),
                moved("2026-03-04T10:00:00.000+0000", "ann", "Approved", "Done"),
            ],
            2,
        ),
    ];
    let page2 = vec![
        // No approval, and a changelog longer than the search gave.
        issue(
            "CHG-3",
            done,
            resolved.clone(),
            vec![moved(
                "2026-03-02T10:00:00.000+0000",
                "ann",
                "Open",
                "In Progress",
            )],
            3,
        ),
        // Not done: not in the population.
        issue(
            "CHG-4",
            ("In Progress", "indeterminate"),
            json!({}),
            vec![],
            0,
        ),
        // An approver field names carol.
        issue(
            "CHG-5",
            done,
            json!({"resolutiondate": "2026-03-04T10:00:00.000+0000", "customfield_10050": [user("carol")]}),
            vec![moved("2026-03-04T10:00:00.000+0000", "ann", "Open", "Done")],
            1,
        ),
    ];
    (page1, page2)
}

fn incidents() -> Vec<Value> {
    let inc = |key: &str, priority: &str, created: &str, resolved: Option<&str>| {
        issue(
            key,
            if resolved.is_some() {
                ("Resolved", "done")
            } else {
                ("Open", "new")
            },
            json!({"priority": {"name": priority}, "created": created, "resolutiondate": resolved,
                   "updated": resolved.unwrap_or(created)}),
            vec![],
            0,
        )
    };
    vec![
        // 24 hours for High (72 allowed).
        inc(
            "INC-1",
            "High",
            "2026-03-01T00:00:00.000+0000",
            Some("2026-03-02T00:00:00.000+0000"),
        ),
        // 48 hours for Highest (24 allowed).
        inc(
            "INC-2",
            "Highest",
            "2026-03-01T00:00:00.000+0000",
            Some("2026-03-03T00:00:00.000+0000"),
        ),
        // Open since 20 December (Medium: 168 hours).
        inc("INC-3", "Medium", "2026-12-20T00:00:00.000+0000", None),
    ]
}

/// The search: CHG over two pages (the second by token), INC in one; a
/// search with `updated >=` (a re-run) finds nothing new. The first
/// request of all is told to wait (429).
struct Search {
    first: Mutex<bool>,
    bodies: Mutex<Vec<Value>>,
    /// CHG-5 deleted upstream.
    deleted: Mutex<bool>,
}

impl Respond for Search {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        self.bodies.lock().unwrap().push(body.clone());
        if std::mem::replace(&mut *self.first.lock().unwrap(), false) {
            return ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .insert_header("x-ratelimit-reset", "2026-11-30T10:00Z")
                .set_body_json(json!({"errorMessages": ["Rate limit exceeded."], "errors": {}}));
        }
        let jql = body["jql"].as_str().unwrap();
        let ok = |issues: Vec<Value>, next: Option<&str>| {
            let mut b = json!({"issues": issues, "isLast": next.is_none()});
            if let Some(n) = next {
                b["nextPageToken"] = json!(n);
            }
            ResponseTemplate::new(200).set_body_json(b)
        };
        if jql.contains("updated >=") {
            return ok(vec![], None);
        }
        let (p1, mut p2) = changes();
        if *self.deleted.lock().unwrap() {
            p2.retain(|i| i["key"] != "CHG-5");
        }
        if jql.starts_with("(project = CHG)") {
            match body["nextPageToken"].as_str() {
                None => ok(p1, Some("CHG-page-2")),
                Some("CHG-page-2") => ok(p2, None),
                Some(other) => ResponseTemplate::new(400)
                    .set_body_json(json!({"errorMessages": [format!("bad token {other}")]})),
            }
        } else {
            ok(incidents(), None)
        }
    }
}

async fn mount(server: &MockServer) -> &'static Search {
    let search: &'static Search = Box::leak(Box::new(Search {
        first: Mutex::new(true),
        bodies: Mutex::new(Vec::new()),
        deleted: Mutex::new(false),
    }));
    struct Shared(&'static Search);
    impl Respond for Shared {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            self.0.respond(req)
        }
    }
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(Shared(search))
        .mount(server)
        .await;
    // CHG-3's whole changelog, two pages, oldest first.
    for (start, last, values) in [
        (
            "0",
            false,
            vec![
                moved("2026-03-02T10:00:00.000+0000", "ann", "Open", "In Progress"),
                moved(
                    "2026-03-03T10:00:00.000+0000",
                    "ann",
                    "In Progress",
                    "Review",
                ),
            ],
        ),
        (
            "2",
            true,
            vec![moved(
                "2026-03-04T10:00:00.000+0000",
                "ann",
                "Review",
                "Done",
            )],
        ),
    ] {
        Mock::given(method("GET"))
            .and(path("/rest/api/3/issue/CHG-3/changelog"))
            .and(query_param("startAt", start))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "startAt": start.parse::<u64>().unwrap(), "maxResults": 2, "total": 3,
                "isLast": last, "values": values
            })))
            .mount(server)
            .await;
    }
    search
}

fn query<'a>(r: &'a [QueryResult], id: &str) -> &'a QueryResult {
    r.iter().find(|q| q.query.id == id).unwrap()
}

fn ids(r: &QueryResult) -> Vec<String> {
    let mut v: Vec<String> = r.items.iter().map(|a| a.object_id.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn tickets_of_every_page_with_their_whole_changelog_and_the_checks() {
    let server = MockServer::start().await;
    let search = mount(&server).await;
    let src = source(&server.uri());
    let started = std::time::Instant::now();
    let r = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap();
    // Retry-After: 1 was honoured, once.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(src.client().polite.counts.retries.load(Ordering::SeqCst), 1);
    let change = query(&r, "change");
    assert_eq!(
        ids(change),
        [
            "tickets/CHG-1",
            "tickets/CHG-2",
            "tickets/CHG-3",
            "tickets/CHG-4",
            "tickets/CHG-5"
        ]
    );
    assert_eq!(change.outcome, Outcome::Complete);
    assert_eq!(
        ids(query(&r, "incident")),
        ["tickets/INC-1", "tickets/INC-2", "tickets/INC-3"]
    );
    // Requests: the search refused (429) once, then two CHG pages and
    // one INC page, two changelog pages, and the keys each query matched
    // (saved, so that a ticket leaving it is seen next run).
    assert_eq!(
        src.client().polite.counts.requests.load(Ordering::SeqCst),
        1 + 3 + 2 + 3
    );
    let bodies = search.bodies.lock().unwrap().clone();
    let chg = bodies
        .iter()
        .find(|b| b["jql"].as_str().unwrap().starts_with("(project = CHG)"))
        .unwrap();
    // The period bounds the JQL; the user's ORDER BY gives way to ours.
    assert_eq!(
        chg["jql"],
        "(project = CHG) AND created < \"2027-01-01\" AND (resolved >= \"2026-01-01\" OR resolved is EMPTY) ORDER BY key ASC"
    );
    assert_eq!(chg["expand"], "changelog");
    assert!(
        chg["fields"]
            .as_array()
            .unwrap()
            .contains(&json!("customfield_10050"))
    );
    let chg3 = change
        .items
        .iter()
        .find(|a| a.object_id == "tickets/CHG-3")
        .unwrap();
    let moves = moves_of(chg3);
    assert_eq!(moves, ["In Progress", "Review", "Done"]);
    assert_eq!(chg3.url, format!("{}/browse/CHG-3", server.uri()));
    assert_eq!(chg3.content["assignee"]["account_id"], "ann");

    // The checks find exactly what was planted.
    let held: Vec<Held> = r
        .iter()
        .flat_map(|q| q.items.iter())
        .map(|a| Held::from_document(a.json_path(), a.to_document().0, &Keep::All).unwrap())
        .collect();
    let period = "2026".parse().unwrap();
    let tickets: BTreeMap<String, TicketPolicy> = [("tickets".to_string(), policy())].into();
    let cx = CheckContext {
        as_of: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        now: chrono::DateTime::from_timestamp(1_798_761_599, 0).unwrap(),
        period: &period,
        git_sources: Vec::new(),
        alert_sla: &BTreeMap::new(),
        tickets: &tickets,
        git_repos: &BTreeMap::new(),
        severities: &BTreeMap::new(),
    };
    let results = checks::run(&held, &cx);
    let reasons = |code: &str| -> (u64, Vec<String>) {
        let r = results.iter().find(|r| r.code == code).unwrap();
        (
            r.population,
            r.exceptions.iter().map(|e| e.reason.to_string()).collect(),
        )
    };
    assert_eq!(
        reasons("ticket-done-without-approval"),
        (
            4,
            vec![
                "change ticket CHG-2 was done with approval only by its assignee (ANN)".to_string(),
                "change ticket CHG-3 was done with no approval: no move into Approved by anyone but its assignee, and no approver named".to_string(),
            ]
        )
    );
    assert_eq!(
        reasons("incident-past-sla"),
        (
            3,
            vec![
                "incident INC-2 (Highest) opened 2026-03-01 00:00 was resolved 2026-03-03 00:00, after 48 hours: past its 24-hour SLA".to_string(),
                "incident INC-3 (Medium) opened 2026-12-20 00:00 is still open on 2026-12-31, 287 hours: past its 168-hour SLA".to_string(),
            ]
        )
    );

    // The next run asks only for what was updated since, and nothing was.
    let states: BTreeMap<String, String> = r
        .iter()
        .filter_map(|q| Some((q.label(), q.state.clone()?)))
        .collect();
    let before = search.bodies.lock().unwrap().len();
    let again = connectors::collect(&src, Limits::default(), chrono::Utc::now, &states)
        .await
        .unwrap();
    assert_eq!(query(&again, "change").outcome, Outcome::NotModified);
    assert_eq!(query(&again, "incident").outcome, Outcome::NotModified);
    assert_eq!(query(&again, "change").state, query(&r, "change").state);
    // Besides the keys (before and after), one search a query.
    let rerun: Vec<Value> = search.bodies.lock().unwrap()[before..]
        .iter()
        .filter(|b| b["fields"] != json!(["key"]))
        .cloned()
        .collect();
    assert_eq!(rerun.len(), 2);
    // A day before the latest update each query saw: CHG-1's on 5 March,
    // 10:00 UTC; INC-3's on 20 December.
    for (project, since) in [("CHG", "2026-03-04 10:00"), ("INC", "2026-12-19 00:00")] {
        let jql = rerun
            .iter()
            .map(|b| b["jql"].as_str().unwrap())
            .find(|j| j.starts_with(&format!("(project = {project})")))
            .unwrap();
        assert!(
            jql.ends_with(&format!(" AND updated >= \"{since}\" ORDER BY key ASC")),
            "{jql}"
        );
    }

    // CHG-5 deleted upstream: no `updated >=` search can show that, the
    // saved keys do. The query is read whole, and is complete.
    *search.deleted.lock().unwrap() = true;
    let third = connectors::collect(&src, Limits::default(), chrono::Utc::now, &states)
        .await
        .unwrap();
    let change = query(&third, "change");
    assert_eq!(change.outcome, Outcome::Complete);
    assert_eq!(
        ids(change),
        [
            "tickets/CHG-1",
            "tickets/CHG-2",
            "tickets/CHG-3",
            "tickets/CHG-4"
        ]
    );
    assert_eq!(query(&third, "incident").outcome, Outcome::NotModified);
}

#[tokio::test]
async fn errors_name_the_endpoint_and_never_the_credentials() {
    for (status, body, expect) in [
        (
            401,
            json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."], "errors": {}}),
            "HTTP 401: You are not authenticated. Authentication required to perform this operation.",
        ),
        (
            400,
            json!({"errorMessages": [], "errors": {"jql": "Field 'projct' does not exist or you do not have permission to view it."}}),
            "HTTP 400: jql: Field 'projct' does not exist or you do not have permission to view it.",
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/rest/api/3/search/jql"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&server)
            .await;
        let src = source(&server.uri());
        let err = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("POST {}/rest/api/3/search/jql: ", server.uri())),
            "{err}"
        );
        assert!(err.ends_with(expect), "{err}");
        assert!(!err.contains(TOKEN));
        // Basic authentication, as gouqi sets it: never the token itself.
        let reqs = server.received_requests().await.unwrap();
        let auth = reqs[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(auth.starts_with("Basic ") && !auth.contains(TOKEN));
    }
}

/// The whole command: a jira source commits its tickets, a re-run with
/// nothing updated commits nothing, and a refused token exits 3 with the
/// evidence repository as it was; the token is in no output and no file.
#[tokio::test(flavor = "multi_thread")]
async fn run_commits_then_nothing_then_fails_cleanly() {
    let server = MockServer::start().await;
    mount(&server).await;
    let f = Fixture::new();
    let cfg = f.config(&format!(
        "version: 1\nperiod: 2026\nsources:\n  tickets:\n    type: jira\n    url: {}\n    queries:\n      change: project = CHG\n      incident: project = INC\n    approval:\n      fields: [customfield_10050]\n",
        server.uri()
    ));
    let env = [
        ("JIRA_EMAIL", "auditbot@acme.example"),
        ("JIRA_API_TOKEN", TOKEN),
    ];
    let run = || run_env(&cfg, &f.evidence(), &env);
    let mut outputs = vec![run()];
    assert_eq!(code(&outputs[0]), 0, "{}", stderr(&outputs[0]));
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    let tickets: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("evidence/jira/"))
        .collect();
    assert_eq!(tickets.len(), 8, "{tickets:?}");
    let check: Value =
        serde_json::from_slice(&files["checks/ticket-done-without-approval.json"]).unwrap();
    assert_eq!(check["exceptions"].as_array().unwrap().len(), 2, "{check}");
    let commits = commit_count(&f.evidence(), "cleartrail/evidence");

    outputs.push(run());
    let again = outputs.last().unwrap();
    assert_eq!(code(again), 0, "{}", stderr(again));
    assert!(
        stdout(again).contains("nothing new: no commit"),
        "{}",
        stdout(again)
    );
    assert_eq!(commit_count(&f.evidence(), "cleartrail/evidence"), commits);

    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"errorMessages": ["You do not have permission to view these issues."], "errors": {}}),
        ))
        .mount(&server)
        .await;
    let head = git2::Repository::open(f.evidence())
        .unwrap()
        .refname_to_id("refs/heads/cleartrail/evidence")
        .unwrap();
    outputs.push(run());
    let failed = outputs.last().unwrap();
    assert_eq!(code(failed), 3, "{}", stderr(failed));
    assert!(
        stderr(failed).contains("HTTP 403: You do not have permission to view these issues."),
        "{}",
        stderr(failed)
    );
    assert_eq!(
        git2::Repository::open(f.evidence())
            .unwrap()
            .refname_to_id("refs/heads/cleartrail/evidence")
            .unwrap(),
        head
    );
    for o in &outputs {
        assert!(!stdout(o).contains(TOKEN) && !stderr(o).contains(TOKEN));
    }
    for (p, bytes) in tree_files(&f.evidence(), "cleartrail/evidence") {
        assert!(!String::from_utf8_lossy(&bytes).contains(TOKEN), "{p}");
    }
}

#[test]
fn missing_credentials_are_a_usage_error_naming_what_to_set() {
    let f = Fixture::new();
    let cfg = f.config(
        "version: 1\nsources:\n  tickets:\n    type: jira\n    url: https://acme.atlassian.net\n    queries:\n      change: project = CHG\n",
    );
    let out = run_env(
        &cfg,
        &f.evidence(),
        &[
            ("JIRA_API_TOKEN", ""),
            ("JIRA_BEARER_TOKEN", ""),
            ("JIRA_EMAIL", ""),
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("set JIRA_EMAIL and JIRA_API_TOKEN (Jira Cloud), or JIRA_BEARER_TOKEN"),
        "{}",
        stderr(&out)
    );
}

/// Jira's own example search page normalizes (read in place when
/// `CLEARTRAIL_API_FIXTURES` points at the contract fixtures).
#[tokio::test]
async fn the_official_example_search_normalizes() {
    let Some(dir) = std::env::var_os("CLEARTRAIL_API_FIXTURES") else {
        return;
    };
    let p = std::path::Path::new(&dir).join("jira/search-jql.json");
    let example: Value = serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (CLEARTRAIL_API_FIXTURES is set, the data must be there)",
            p.display()
        )
    }))
    .unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(example.clone()))
        .mount(&server)
        .await;
    let src = source(&server.uri());
    let r = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap();
    let keys: Vec<&str> = example["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    // The example's issue has no times (its `updated` is a number): it
    // is recorded as skipped, by key, never dropped in silence.
    let change = query(&r, "change");
    assert!(change.items.is_empty());
    let skipped: Vec<&str> = change.skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(skipped, keys);

    // Jira's example changelog page (a middle page, `isLast: false`, the
    // same on every request here) ends at its `total`, not never.
    let page: Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(&dir).join("jira/issue-changelog-list.json")).unwrap(),
    )
    .unwrap();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/CHG-9/changelog"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page.clone()))
        .mount(&server)
        .await;
    let long = issue("CHG-9", ("Done", "done"), json!({}), vec![], 5);
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"issues": [long], "isLast": true})),
        )
        .mount(&server)
        .await;
    let src = source(&server.uri());
    let r = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap();
    let a = &query(&r, "change").items[0];
    assert_eq!(a.object_id, "tickets/CHG-9");
    let changelog_pages = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|q| q.url.path().ends_with("/changelog"))
        .count();
    // 2 a page up to the total of 5: three pages, for each of the two
    // queries this mock answers alike.
    assert_eq!(changelog_pages, 2 * 3);
}

/// Data Center: a personal access token, REST v2 `POST /search` paged by
/// `startAt` (the server gives two issues a page, fewer than asked), user
/// objects with `name` and `key` instead of `accountId`, and a changelog
/// cut short read whole from the issue expanded. Nothing goes to v3.
#[tokio::test]
async fn data_center_searches_by_start_at_with_a_bearer_token() {
    const PAT: &str = "NjQ2NeverPrintThisDataCenterToken";
    let server = MockServer::start().await;
    let dc_user = |name: &str| json!({"name": name, "key": format!("JIRAUSER{name}"), "displayName": name.to_uppercase(), "self": "x"});
    let uri = server.uri();
    let dc_issue = move |n: usize| {
        let mut i = issue(
            &format!("CHG-{n}"),
            ("Done", "done"),
            json!({"resolutiondate": "2026-03-04T10:00:00.000+0000", "assignee": dc_user("ann"), "reporter": dc_user("rex")}),
            vec![
                json!({"id": "1", "author": dc_user("bob"), "created": "2026-03-02T10:00:00.000+0000",
                "items": [{"field": "status", "fieldtype": "jira", "fromString": "Open", "toString": "Approved"}]}),
            ],
            if n == 3 { 2 } else { 1 },
        );
        i["self"] = json!(format!("{uri}/rest/api/2/issue/{n}"));
        i
    };
    let bodies: &'static Mutex<Vec<Value>> = Box::leak(Box::new(Mutex::new(Vec::new())));
    Mock::given(method("POST"))
        .and(path("/rest/api/2/search"))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {PAT}").as_str(),
        ))
        .respond_with(move |req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            bodies.lock().unwrap().push(body.clone());
            let start = body["startAt"].as_u64().unwrap() as usize;
            let (total, list): (usize, Vec<Value>) =
                if body["jql"].as_str().unwrap().contains("CHG") {
                    (5, (1..=5).map(&dc_issue).collect())
                } else {
                    (0, vec![])
                };
            let page: Vec<Value> = list.into_iter().skip(start).take(2).collect();
            ResponseTemplate::new(200).set_body_json(
                json!({"startAt": start, "maxResults": 2, "total": total, "issues": page}),
            )
        })
        .expect(6..)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/CHG-3"))
        .and(query_param("expand", "changelog"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"key": "CHG-3", "changelog": {"startAt": 0, "maxResults": 2, "total": 2, "histories": [
            {"id": "1", "author": dc_user("bob"), "created": "2026-03-02T10:00:00.000+0000",
             "items": [{"field": "status", "fieldtype": "jira", "fromString": "Open", "toString": "Approved"}]},
            {"id": "2", "author": dc_user("ann"), "created": "2026-03-04T10:00:00.000+0000",
             "items": [{"field": "status", "fieldtype": "jira", "fromString": "Approved", "toString": "Done"}]}
        ]}})))
        .expect(1)
        .mount(&server)
        .await;
    let env = JiraEnv {
        base: server.uri(),
        auth: JiraAuth::Bearer(Secret::new(PAT)),
    };
    // A PAT on a host of one's own is Data Center, without being told.
    let client = JiraClient::new(&env, None, quick()).unwrap();
    assert_eq!(
        client.deployment,
        cleartrail::connectors::jira::client::Deployment::DataCenter
    );
    let src = JiraSource::new("tickets".into(), spec(), "2026".parse().unwrap(), client);
    let r = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap();
    let change = query(&r, "change");
    assert_eq!(
        ids(change),
        [
            "tickets/CHG-1",
            "tickets/CHG-2",
            "tickets/CHG-3",
            "tickets/CHG-4",
            "tickets/CHG-5"
        ],
        "every issue exactly once across startAt pages"
    );
    assert_eq!(change.outcome, Outcome::Complete);
    let chg3 = change
        .items
        .iter()
        .find(|a| a.object_id == "tickets/CHG-3")
        .unwrap();
    let moves = moves_of(chg3);
    assert_eq!(moves, ["Approved", "Done"]);
    assert_eq!(chg3.content["assignee"]["account_id"], "ann");
    let starts: Vec<u64> = bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| {
            b["jql"].as_str().unwrap().contains("CHG") && b["expand"] == json!(["changelog"])
        })
        .map(|b| b["startAt"].as_u64().unwrap())
        .collect();
    assert_eq!(
        starts,
        [0, 2, 4],
        "each page starts after what the last gave"
    );
    assert!(!format!("{r:?}").contains(PAT));

    // Atlassian's own hosts are Cloud whatever the token.
    let cloud = JiraEnv {
        base: "https://acme.atlassian.net".into(),
        auth: JiraAuth::Bearer(Secret::new(PAT)),
    };
    assert_eq!(
        cleartrail::connectors::jira::client::Deployment::detect(&cloud),
        cleartrail::connectors::jira::client::Deployment::Cloud
    );
}

/// The statuses a ticket artifact moved to, oldest first.
fn moves_of(a: &cleartrail::artifact::Artifact) -> Vec<&str> {
    a.content["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect()
}
