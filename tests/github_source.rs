//! The `github` source against a local mock of the GitHub REST API
//! (wiremock, started by each test): paging by `Link` headers built from
//! the mock's own address, ETags and 304s, rate limits, 5xx bursts, broken
//! connections and bodies cut short, and a token that never shows.

mod common;

use cleartrail::connectors::github::client::{Auth, GithubEnv};
use cleartrail::connectors::github::{GithubSource, GithubSpec};
use cleartrail::connectors::http::{Politeness, Secret};
use cleartrail::connectors::{self, Connector, ConnectorError, Limits, Outcome, QueryResult};
use cleartrail::period::Period;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wiremock::matchers::{header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "ghs_NeverPrintThisToken0123456789abcdef";
/// A secret a secret-scanning alert found: never stored.
const SECRET: &str = "ghp_LeakedSecretTheEvidenceMustNotKeep00";

fn repo(name: &str, id: u64) -> Value {
    let mut r: Value =
        serde_json::from_str(include_str!("fixtures/github/repo.json")).expect("fixture parses");
    r["id"] = json!(id);
    r["name"] = json!(name);
    r["full_name"] = json!(format!("acme-corp/{name}"));
    r["html_url"] = json!(format!("https://github.com/acme-corp/{name}"));
    r
}

fn quick() -> Politeness {
    Politeness {
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(10),
        secondary_wait: Duration::from_millis(10),
        max_attempts: 4,
        ..Politeness::default()
    }
}

fn env_for(uri: &str) -> GithubEnv {
    GithubEnv {
        api: uri.to_string(),
        graphql: format!("{uri}/graphql"),
        auth: Auth::Token(Secret::new(TOKEN)),
    }
}

fn spec(which: &str) -> GithubSpec {
    match which {
        "org" => GithubSpec {
            org: Some("acme-corp".into()),
            exclude: vec!["sandbox-*".into()],
            ..Default::default()
        },
        _ => GithubSpec {
            repos: vec!["acme-corp/payments-api".into()],
            ..Default::default()
        },
    }
}

fn year() -> Period {
    "2026".parse().unwrap()
}

/// Builds the source (which lists the repositories) and collects every
/// query, with what the last run saved.
async fn connect_and_collect(
    uri: &str,
    spec: GithubSpec,
    states: &BTreeMap<String, String>,
) -> Result<(GithubSource, Vec<QueryResult>), ConnectorError> {
    let src =
        GithubSource::connect("gh".into(), spec, year(), &env_for(uri), quick(), states).await?;
    let r = connectors::collect(&src, Limits::default(), chrono::Utc::now, states).await?;
    Ok((src, r))
}

async fn collect(
    server: &MockServer,
    which: &str,
    states: &BTreeMap<String, String>,
) -> (GithubSource, Vec<QueryResult>) {
    connect_and_collect(&server.uri(), spec(which), states)
        .await
        .unwrap()
}

fn query<'a>(r: &'a [QueryResult], id: &str) -> &'a QueryResult {
    r.iter().find(|q| q.query.id == id).unwrap()
}

/// What each query saved, as the next run is given it.
fn saved(r: &[QueryResult]) -> BTreeMap<String, String> {
    r.iter()
        .filter_map(|q| Some((q.label(), q.state.clone()?)))
        .collect()
}

/// The organization's repositories over two pages; page 1 links to page 2
/// at the mock's own address. Each page has its own ETag and answers 304
/// to it.
async fn mount_org(server: &MockServer, page2_etag: &str) {
    let first: Vec<Value> = (0..3).map(|i| repo(&format!("svc-{i}"), 100 + i)).collect();
    let second = vec![repo("sandbox-play", 200), repo("web", 201)];
    let link = format!(
        "<{}/orgs/acme-corp/repos?type=all&per_page=100&page=2>; rel=\"next\", <{}/orgs/acme-corp/repos?type=all&per_page=100&page=2>; rel=\"last\"",
        server.uri(),
        server.uri()
    );
    for (page, etag, body, link) in [
        ("1", "\"p1\"".to_string(), first, Some(link)),
        ("2", page2_etag.to_string(), second, None),
    ] {
        let matcher = |m: wiremock::MockBuilder| {
            if page == "1" {
                m.and(wiremock::matchers::query_param_is_missing("page"))
            } else {
                m.and(query_param("page", page))
            }
        };
        matcher(
            Mock::given(method("GET"))
                .and(path("/orgs/acme-corp/repos"))
                .and(header("if-none-match", etag.as_str())),
        )
        .respond_with(ResponseTemplate::new(304).insert_header("etag", etag.as_str()))
        .with_priority(1)
        .mount(server)
        .await;
        let mut ok = ResponseTemplate::new(200)
            .insert_header("etag", etag.as_str())
            .insert_header("x-ratelimit-remaining", "4999")
            .insert_header("x-ratelimit-reset", "4102444800")
            .set_body_json(body);
        if let Some(l) = link {
            ok = ok.insert_header("link", l.as_str());
        }
        matcher(Mock::given(method("GET")).and(path("/orgs/acme-corp/repos")))
            .respond_with(ok)
            .with_priority(2)
            .mount(server)
            .await;
    }
    mount_members(server).await;
}

fn ids(r: &QueryResult) -> Vec<String> {
    let mut v: Vec<String> = r.items.iter().map(|a| a.object_id.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn lists_every_page_once_then_revalidates_with_conditional_requests() {
    let server = MockServer::start().await;
    mount_org(&server, "\"p2\"").await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let (src, first) = collect(&server, "org", &BTreeMap::new()).await;
    let r = query(&first, "repositories");
    assert_eq!(r.outcome, Outcome::Complete);
    // Every repository exactly once, the excluded one left out.
    assert_eq!(
        ids(r),
        [
            "acme-corp/svc-0",
            "acme-corp/svc-1",
            "acme-corp/svc-2",
            "acme-corp/web"
        ]
    );
    let svc = r
        .items
        .iter()
        .find(|a| a.object_id == "acme-corp/svc-1")
        .unwrap();
    assert_eq!(svc.content["visibility"], "private");
    assert_eq!(svc.content["default_branch"], "main");
    assert_eq!(
        svc.content["security_and_analysis"]["secret_scanning"],
        "enabled"
    );
    assert_eq!(
        svc.content["security_and_analysis"]["dependabot_security_updates"],
        "disabled"
    );
    // Nothing that moves with every push or depends on the token.
    assert!(svc.content.get("pushed_at").is_none() && svc.content.get("permissions").is_none());
    assert_eq!(svc.query, "gh/repositories");
    // Two listing pages, four member lists, three organization-wide alert
    // lists, then per repository: protection, rules and the one ruleset
    // they name, two admin lists, workflow runs, releases and one GraphQL
    // page.
    assert_eq!(
        src.client().polite.counts.requests.load(Ordering::SeqCst),
        2 + 4 + 3 + 4 * (3 + 2 + 1 + 1 + 1)
    );
    let members = query(&first, "members");
    let of = |login: &str| {
        members
            .items
            .iter()
            .find(|a| a.object_id == format!("acme-corp/{login}"))
            .unwrap()
    };
    assert_eq!(of("bob").content["role"], "admin");
    assert_eq!(of("ann").content["role"], "member");
    assert_eq!(of("cy").content["two_factor_disabled"], true);
    assert_eq!(of("ann").content["two_factor_disabled"], false);
    assert_eq!(of("ext").kind, "outside-collaborator");
    assert_eq!(members.items.len(), 4);

    // The next run revalidates the listing with conditional requests only.
    let (src, again) = collect(&server, "org", &saved(&first)).await;
    let r2 = query(&again, "repositories");
    assert_eq!(r2.outcome, Outcome::NotModified);
    assert!(r2.items.is_empty());
    assert_eq!(r2.state, r.state);
    let counts = &src.client().polite.counts;
    // Every REST request of the first run, conditional (GraphQL is the
    // one search, below).
    assert_eq!(
        counts.not_modified.load(Ordering::SeqCst),
        2 + 4 + 3 + 4 * (3 + 2 + 1 + 1)
    );
    for id in [
        "repository-admins",
        "dependabot-alerts",
        "code-scanning-alerts",
        "secret-scanning-alerts",
        "workflow-runs",
        "releases",
    ] {
        assert_eq!(query(&again, id).outcome, Outcome::NotModified, "{id}");
    }
    assert_eq!(query(&again, "members").outcome, Outcome::NotModified);
    let protection = query(&again, "branch-protection");
    assert_eq!(protection.outcome, Outcome::NotModified);
    let listing: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|q| q.url.path() == "/orgs/acme-corp/repos")
        .collect();
    assert_eq!(listing.len(), 4);
    assert!(
        listing[2..]
            .iter()
            .all(|q| q.headers.contains_key("if-none-match"))
    );
}

#[tokio::test]
async fn a_changed_page_lists_everything_again() {
    let server = MockServer::start().await;
    mount_org(&server, "\"p2\"").await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let (_, first) = collect(&server, "org", &BTreeMap::new()).await;
    // Page 2 changes: its ETag is no longer the saved one.
    server.reset().await;
    mount_org(&server, "\"p2-changed\"").await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let (_, again) = collect(&server, "org", &saved(&first)).await;
    let (r1, r2) = (query(&first, "repositories"), query(&again, "repositories"));
    assert_eq!(r2.outcome, Outcome::Complete);
    assert_eq!(ids(r2), ids(r1));
    // Two revalidations (304, then 200), then the two pages in full.
    let listing = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|q| q.url.path() == "/orgs/acme-corp/repos")
        .count();
    assert_eq!(listing, 4);
    assert_ne!(r2.state, r1.state);
}

/// Answers with a script of responses, in order, then the last one.
struct Script(std::sync::Mutex<Vec<ResponseTemplate>>);

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        if s.len() > 1 {
            s.remove(0)
        } else {
            s[0].clone()
        }
    }
}

async fn mount_repo_script(server: &MockServer, script: Vec<ResponseTemplate>) {
    Mock::given(method("GET"))
        .and(path("/repos/acme-corp/payments-api"))
        .respond_with(Script(std::sync::Mutex::new(script)))
        .mount(server)
        .await;
}

fn ok_repo() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("etag", "\"r1\"")
        .set_body_json(repo("payments-api", 70001))
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_waited_out_and_counted() {
    let server = MockServer::start().await;
    mount_repo_script(
        &server,
        vec![
            ResponseTemplate::new(429).insert_header("retry-after", "1"),
            ResponseTemplate::new(403).set_body_json(json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
            })),
            ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"),
            ResponseTemplate::new(502),
            ok_repo(),
        ],
    )
    .await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let started = std::time::Instant::now();
    let (src, r) = collect(&server, "repos", &BTreeMap::new()).await;
    assert_eq!(ids(query(&r, "repositories")), ["acme-corp/payments-api"]);
    let counts = &src.client().polite.counts;
    // Five attempts at the repository, then protection, rules and a
    // ruleset, two admin lists, three alert lists, workflow runs, releases
    // and one GraphQL page, once each.
    assert_eq!(counts.requests.load(Ordering::SeqCst), 5 + 11);
    assert_eq!(counts.retries.load(Ordering::SeqCst), 4);
    assert_eq!(server.received_requests().await.unwrap().len(), 5 + 11);
    // Retry-After: 1 was honoured.
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_lasting_failure_names_the_endpoint_and_status() {
    let (err, server) = failure_of(
        ResponseTemplate::new(503).set_body_json(json!({"message": "Service Unavailable"})),
    )
    .await;
    assert_eq!(
        err,
        format!(
            "GET {}/repos/acme-corp/payments-api: HTTP 503: Service Unavailable (after 4 attempts)",
            server.uri()
        )
    );
    assert!(!err.contains(TOKEN));
    // A permission the token lacks is not retried.
    let (err, server) = failure_of(ResponseTemplate::new(404).set_body_json(json!({
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository"
    })))
    .await;
    assert!(err.ends_with("HTTP 404: Not Found"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// The error that ends collecting the named repository from `server`.
async fn collect_error(server: &MockServer) -> String {
    connect_and_collect(&server.uri(), spec("repos"), &BTreeMap::new())
        .await
        .err()
        .expect("collection fails")
        .to_string()
}

/// The error of collecting a named repository that always gets `answer`.
async fn failure_of(answer: ResponseTemplate) -> (String, MockServer) {
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![answer]).await;
    let err = collect_error(&server).await;
    (err, server)
}

#[tokio::test]
async fn the_token_is_sent_only_as_authorization() {
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let (_, r) = collect(&server, "repos", &BTreeMap::new()).await;
    let reqs = server.received_requests().await.unwrap();
    let auth = reqs[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(auth.ends_with(TOKEN), "{auth}");
    assert!(!reqs[0].url.as_str().contains(TOKEN));
    let all = format!("{r:?}");
    assert!(!all.contains(TOKEN));
}

/// Mounts `matching` twice: a 304 for a request that sends `etag` back,
/// and otherwise `body` with that ETag.
async fn mount_revalidated(
    server: &MockServer,
    matching: impl Fn() -> wiremock::MockBuilder,
    etag: &str,
    body: Value,
) {
    matching()
        .and(header("if-none-match", etag))
        .respond_with(ResponseTemplate::new(304).insert_header("etag", etag))
        .with_priority(1)
        .mount(server)
        .await;
    matching()
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("etag", etag)
                .set_body_json(body),
        )
        .with_priority(2)
        .mount(server)
        .await;
}

/// Every default branch protected (the fixture, which allows force
/// pushes) and a ruleset forbidding them, each answer with an ETag that
/// the next run's conditional request gets a 304 for.
async fn mount_protection(server: &MockServer) {
    let protection: Value =
        serde_json::from_str(include_str!("fixtures/github/branch-protection.json")).unwrap();
    let rules = json!([
        {"type": "non_fast_forward", "ruleset_source_type": "Organization", "ruleset_source": "acme-corp", "ruleset_id": 7},
        {"type": "required_status_checks", "ruleset_source_type": "Organization", "ruleset_source": "acme-corp", "ruleset_id": 7,
         "parameters": {"strict_required_status_checks_policy": true, "required_status_checks": [{"context": "security/scan"}]}}
    ]);
    for (pattern, etag, body) in [
        (
            r"^/repos/[^/]+/[^/]+/branches/[^/]+/protection$",
            "\"bp\"",
            protection,
        ),
        (
            r"^/repos/[^/]+/[^/]+/rules/branches/[^/]+$",
            "\"rules\"",
            rules,
        ),
    ] {
        mount_revalidated(
            server,
            || Mock::given(method("GET")).and(path_regex(pattern)),
            etag,
            body,
        )
        .await;
    }
}

/// The organization's members (bob an admin, cy without 2FA) and one
/// outside collaborator, each list with an ETag and a 304 for it.
async fn mount_members(server: &MockServer) {
    let user = |login: &str| {
        json!({"login": login, "id": login.len(), "type": "User", "site_admin": false,
                                   "html_url": format!("https://github.com/{login}")})
    };
    for (query, etag, body) in [
        (None, "\"m\"", json!([user("ann"), user("bob"), user("cy")])),
        (Some(("role", "admin")), "\"a\"", json!([user("bob")])),
        (
            Some(("filter", "2fa_disabled")),
            "\"f\"",
            json!([user("cy")]),
        ),
    ] {
        let base = || {
            let m = Mock::given(method("GET")).and(path("/orgs/acme-corp/members"));
            match query {
                Some((k, v)) => m.and(query_param(k, v)),
                None => m
                    .and(wiremock::matchers::query_param_is_missing("role"))
                    .and(wiremock::matchers::query_param_is_missing("filter")),
            }
        };
        mount_revalidated(server, base, etag, body).await;
    }
    mount_revalidated(
        server,
        || Mock::given(method("GET")).and(path("/orgs/acme-corp/outside_collaborators")),
        "\"o\"",
        json!([user("ext")]),
    )
    .await;
}

/// Every REST list a test does not mount itself answers empty, each with
/// an ETag and a 304 for it (below every test's own mocks).
async fn mount_quiet_rest(server: &MockServer) {
    let ruleset =
        json!({"id": 7, "name": "org baseline", "enforcement": "active", "bypass_actors": []});
    let runs = json!({"total_count": 0, "workflow_runs": []});
    for (pattern, body) in [
        (r"^/repos/[^/]+/[^/]+/collaborators$", json!([])),
        (r"^/repos/[^/]+/[^/]+/rulesets/[0-9]+$", ruleset),
        (
            r"^/(orgs/[^/]+|repos/[^/]+/[^/]+)/(dependabot|code-scanning|secret-scanning)/alerts$",
            json!([]),
        ),
        (r"^/repos/[^/]+/[^/]+/actions/runs$", runs),
        (r"^/repos/[^/]+/[^/]+/releases$", json!([])),
    ] {
        let etag = format!("\"q{}\"", pattern.len());
        Mock::given(method("GET"))
            .and(path_regex(pattern))
            .and(header("if-none-match", etag.as_str()))
            .respond_with(ResponseTemplate::new(304).insert_header("etag", etag.as_str()))
            .with_priority(8)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(pattern))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("etag", etag.as_str())
                    .set_body_json(body),
            )
            .with_priority(9)
            .mount(server)
            .await;
    }
}

/// GraphQL answers with no merged pull request, for every repository, and
/// every other REST list is empty.
async fn mount_no_pulls(server: &MockServer) {
    mount_quiet_rest(server).await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {
                "repository": {"pullRequests": {"pageInfo": {"hasNextPage": false, "endCursor": null}, "nodes": []}},
                "search": {"issueCount": 0, "pageInfo": {"hasNextPage": false, "endCursor": null}, "nodes": []},
                "rateLimit": {"cost": 1, "remaining": 4999, "resetAt": "2100-01-01T00:00:00Z"}
            }
        })))
        .mount(server)
        .await;
}

fn pr(number: u64, merged: &str, updated: &str, head: &str, reviews: Value) -> Value {
    let total = reviews.as_array().map_or(0, Vec::len);
    json!({
        "number": number,
        "title": format!("Change {number}"),
        "url": format!("https://github.com/acme-corp/payments-api/pull/{number}"),
        "createdAt": "2026-01-02T09:00:00Z",
        "updatedAt": updated,
        "mergedAt": merged,
        "author": {"login": "ann", "__typename": "User"},
        "mergedBy": {"login": "ann"},
        "baseRefName": "main",
        "headRefOid": head,
        "mergeCommit": {"oid": format!("m{number}")},
        "reviews": {"totalCount": total, "nodes": reviews}
    })
}

fn gql_review(who: &str, state: &str, commit: &str) -> Value {
    json!({"author": {"login": who, "__typename": if who.ends_with("[bot]") { "Bot" } else { "User" }},
           "state": state, "submittedAt": "2026-03-01T10:00:00Z", "commit": {"oid": commit}})
}

/// Serves the merged pull requests of acme-corp/payments-api over two
/// GraphQL pages, newest update first, the second reaching back before
/// the period.
struct Pulls;

impl Respond for Pulls {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let v = &body["variables"];
        if body["query"].as_str().unwrap().contains("search(") {
            // The next run: what was updated since the last one.
            assert_eq!(
                v["q"],
                "repo:acme-corp/payments-api is:pr is:merged updated:>=2026-06-02T10:00:00+00:00"
            );
            let in_repo = |mut p: Value, repo: &str| {
                p["repository"] = json!({ "nameWithOwner": repo });
                p
            };
            // (number, merged and updated, head, approved by bob)
            let [fresh, again, elsewhere] = [
                (13, "2026-07-01T10:00:00Z", "h13", true),
                (12, "2026-06-02T10:00:00Z", "h12", true),
                (1, "2026-07-01T10:00:00Z", "x1", false),
            ]
            .map(|(n, t, head, approved)| {
                let reviews = if approved {
                    json!([gql_review("bob", "APPROVED", head)])
                } else {
                    json!([])
                };
                pr(n, t, t, head, reviews)
            });
            return ResponseTemplate::new(200).set_body_json(json!({
                "data": {
                    "search": {"issueCount": 3, "pageInfo": {"hasNextPage": false, "endCursor": null},
                               "nodes": [
                                   in_repo(fresh, "acme-corp/payments-api"),
                                   in_repo(again, "acme-corp/payments-api"),
                                   in_repo(elsewhere, "acme-corp/not-in-scope"),
                               ]},
                    "rateLimit": {"cost": 1, "remaining": 4990, "resetAt": "2100-01-01T00:00:00Z"}
                }
            }));
        }
        assert!(
            body["query"]
                .as_str()
                .unwrap()
                .contains("pullRequests(states: MERGED")
        );
        assert_eq!(
            (v["owner"].as_str(), v["name"].as_str()),
            (Some("acme-corp"), Some("payments-api"))
        );
        let (nodes, next) = match v["after"].as_str() {
            None => (
                vec![
                    // Approved on the merged head.
                    pr(
                        12,
                        "2026-06-02T10:00:00Z",
                        "2026-06-02T10:00:00Z",
                        "h12",
                        json!([gql_review("bob", "APPROVED", "h12")]),
                    ),
                    // Approved before its last push.
                    pr(
                        11,
                        "2026-05-02T10:00:00Z",
                        "2026-05-02T10:00:00Z",
                        "h11-b",
                        json!([gql_review("bob", "APPROVED", "h11-a")]),
                    ),
                    // Approved by a bot only.
                    pr(
                        10,
                        "2026-04-02T10:00:00Z",
                        "2026-04-02T10:00:00Z",
                        "h10",
                        json!([gql_review("helper[bot]", "APPROVED", "h10")]),
                    ),
                ],
                Some("c1"),
            ),
            Some("c1") => (
                vec![
                    // More reviews than one GraphQL page: read by REST.
                    {
                        let mut p = pr(
                            9,
                            "2026-02-02T10:00:00Z",
                            "2026-02-02T10:00:00Z",
                            "h9",
                            json!([]),
                        );
                        p["reviews"]["totalCount"] = json!(101);
                        p
                    },
                    // Merged before the period, updated in it: not in scope.
                    pr(
                        8,
                        "2025-12-20T10:00:00Z",
                        "2026-01-05T10:00:00Z",
                        "h8",
                        json!([]),
                    ),
                    // Updated before the period: the last page needed.
                    pr(
                        7,
                        "2025-11-02T10:00:00Z",
                        "2025-11-02T10:00:00Z",
                        "h7",
                        json!([]),
                    ),
                ],
                Some("c2"),
            ),
            Some(other) => panic!("page after {other} was not needed"),
        };
        ResponseTemplate::new(200)
            .insert_header("x-ratelimit-remaining", "4990")
            .insert_header("x-ratelimit-reset", "4102444800")
            .set_body_json(json!({
                "data": {
                    "repository": {"pullRequests": {
                        "pageInfo": {"hasNextPage": next.is_some(), "endCursor": next},
                        "nodes": nodes
                    }},
                    "rateLimit": {"cost": 1, "remaining": 4990, "resetAt": "2100-01-01T00:00:00Z"}
                }
            }))
    }
}

#[tokio::test]
async fn merged_pull_requests_of_the_period_with_every_review() {
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    mount_protection(&server).await;
    mount_quiet_rest(&server).await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(Pulls)
        .mount(&server)
        .await;
    // Pull request 9's 101 reviews, over two REST pages.
    let reviews: Vec<Value> = (0..101)
        .map(|i| {
            json!({"id": i, "user": {"login": format!("r{i}"), "type": "User"}, "state": "COMMENTED",
                   "commit_id": "h9", "submitted_at": format!("2026-02-01T10:{:02}:{:02}Z", i / 60, i % 60)})
        })
        .collect();
    let mut last = reviews[100].clone();
    last["state"] = json!("APPROVED");
    Mock::given(method("GET"))
        .and(path("/repos/acme-corp/payments-api/pulls/9/reviews"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(vec![last]))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme-corp/payments-api/pulls/9/reviews"))
        .and(wiremock::matchers::query_param_is_missing("page"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    format!(
                        "<{}/repos/acme-corp/payments-api/pulls/9/reviews?per_page=100&page=2>; rel=\"next\"",
                        server.uri()
                    )
                    .as_str(),
                )
                .set_body_json(&reviews[..100]),
        )
        .mount(&server)
        .await;
    let (src, r) = collect(&server, "repos", &BTreeMap::new()).await;
    let pulls = query(&r, "pull-requests");
    assert_eq!(
        ids(pulls),
        [
            "acme-corp/payments-api/10",
            "acme-corp/payments-api/11",
            "acme-corp/payments-api/12",
            "acme-corp/payments-api/9"
        ]
    );
    // One listing request, two GraphQL pages, two REST review pages, and
    // the ten REST requests of the other per-repository queries.
    assert_eq!(
        src.client().polite.counts.requests.load(Ordering::SeqCst),
        1 + 2 + 2 + 10
    );
    let p9 = pulls
        .items
        .iter()
        .find(|a| a.object_id.ends_with("/9"))
        .unwrap();
    assert_eq!(p9.content["reviews"].as_array().unwrap().len(), 101);
    assert_eq!(p9.content["reviews"][100]["state"], "APPROVED");
    let p12 = pulls
        .items
        .iter()
        .find(|a| a.object_id.ends_with("/12"))
        .unwrap();
    assert_eq!(p12.content["head_sha"], "h12");
    assert_eq!(p12.content["reviews"][0]["commit"], "h12");
    assert_eq!(p12.content["author"]["login"], "ann");
    assert_eq!(p12.period.unwrap().start.to_string(), "2026-06-02");
    assert_eq!(p12.shard.as_deref().map(|s| &s[..7]), Some("2026-06"));
    assert_eq!(p12.query, "gh/pull-requests");
    assert_eq!(pulls.outcome, Outcome::Complete);

    // The next run searches for what was updated since the latest update
    // seen, once, and adds only what is new (and in scope).
    Mock::given(method("GET"))
        .and(path("/repos/acme-corp/payments-api"))
        .and(header("if-none-match", "\"r1\""))
        .respond_with(ResponseTemplate::new(304).insert_header("etag", "\"r1\""))
        .with_priority(1)
        .mount(&server)
        .await;
    let before = server.received_requests().await.unwrap().len();
    let (src, again) = collect(&server, "repos", &saved(&r)).await;
    let pulls2 = query(&again, "pull-requests");
    assert_eq!(pulls2.outcome, Outcome::Incremental);
    assert_eq!(
        ids(pulls2),
        ["acme-corp/payments-api/12", "acme-corp/payments-api/13"]
    );
    // One search, and the first run's eleven REST requests, each
    // conditional now.
    assert_eq!(
        src.client().polite.counts.requests.load(Ordering::SeqCst),
        1 + 11
    );
    assert_eq!(server.received_requests().await.unwrap().len(), before + 12);
    let state: Value = serde_json::from_str(pulls2.state.as_deref().unwrap()).unwrap();
    assert_eq!(state["since"], "2026-07-01T10:00:00Z");
}

#[tokio::test]
async fn graphql_errors_fail_with_their_message_and_rate_limits_are_waited_out() {
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    mount_protection(&server).await;
    mount_quiet_rest(&server).await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(Script(std::sync::Mutex::new(vec![
            ResponseTemplate::new(200).set_body_json(json!({
                "data": null,
                "errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]
            })).insert_header("retry-after", "0"),
            ResponseTemplate::new(200).set_body_json(json!({
                "data": {"repository": null},
                "errors": [{"type": "NOT_FOUND", "path": ["repository"], "message": "Could not resolve to a Repository with the name 'acme-corp/payments-api'."}]
            })),
        ])))
        .mount(&server)
        .await;
    let err = collect_error(&server).await;
    assert_eq!(
        err,
        format!(
            "POST {}/graphql: HTTP 404: GraphQL: Could not resolve to a Repository with the name 'acme-corp/payments-api'. (reading pull-requests needs the repository permission `Pull requests: read`)",
            server.uri()
        )
    );
    // The rate-limited GraphQL request and its retry, which failed.
    let graphql = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/graphql")
        .count();
    assert_eq!(graphql, 2);
}

/// The named repository, whose default branch's classic protection gets
/// `classic` and to which no ruleset applies.
async fn unprotected_server(classic: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    mount_no_pulls(&server).await;
    Mock::given(method("GET"))
        .and(path(
            "/repos/acme-corp/payments-api/branches/main/protection",
        ))
        .respond_with(classic)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme-corp/payments-api/rules/branches/main"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn branch_protection_combines_classic_protection_and_rulesets() {
    // Protected by both: the ruleset forbids the force pushes that the
    // classic protection allows, and adds a required check.
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let (_, r) = collect(&server, "repos", &BTreeMap::new()).await;
    let p = &query(&r, "branch-protection").items[0];
    assert_eq!(p.object_id, "acme-corp/payments-api");
    assert_eq!(p.content["branch"], "main");
    assert_eq!(p.content["protected"], true);
    assert_eq!(p.content["requires_pull_request"], true);
    assert_eq!(p.content["required_approving_review_count"], 1);
    assert_eq!(p.content["dismiss_stale_reviews"], true);
    assert_eq!(p.content["allow_force_pushes"], false);
    assert_eq!(p.content["allow_deletions"], false);
    assert_eq!(
        p.content["required_status_checks"],
        json!(["ci/build", "ci/test", "security/scan"])
    );

    // Not protected at all: classic protection answers 404.
    let server = unprotected_server(
        ResponseTemplate::new(404).set_body_json(json!({"message": "Branch not protected"})),
    )
    .await;
    let (_, r) = collect(&server, "repos", &BTreeMap::new()).await;
    let p = &query(&r, "branch-protection").items[0];
    assert_eq!(p.content["protected"], false);
    assert_eq!(p.content["requires_pull_request"], false);
    assert_eq!(p.content["allow_force_pushes"], true);

    // A token without the permission: the error says which one.
    let server = unprotected_server(
        ResponseTemplate::new(403)
            .set_body_json(json!({"message": "Resource not accessible by integration"})),
    )
    .await;
    let err = collect_error(&server).await;
    assert!(
        err.ends_with("HTTP 403: Resource not accessible by integration (reading branch-protection needs the repository permission `Administration: read`)"),
        "{err}"
    );
}

/// The source of the one named repository, as `env` reaches it.
async fn connect_named_repo(env: &GithubEnv) -> GithubSource {
    GithubSource::connect(
        "gh".into(),
        spec("repos"),
        year(),
        env,
        quick(),
        &BTreeMap::new(),
    )
    .await
    .unwrap()
}

/// A GitHub App: the JWT made from its private key is exchanged for an
/// installation token, which every later request carries.
#[tokio::test]
async fn a_github_app_is_exchanged_for_an_installation_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(&key).unwrap();
    let server = MockServer::start().await;
    /// Each exchange gives a new token.
    struct Tokens(std::sync::atomic::AtomicU64);
    impl Respond for Tokens {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            ResponseTemplate::new(201).set_body_json(json!({
                "token": format!("ghs_InstallationToken{n}"),
                "expires_at": "2100-01-01T00:00:00Z",
                "permissions": {"administration": "read", "contents": "read", "pull_requests": "read"},
                "repository_selection": "all"
            }))
        }
    }
    Mock::given(method("POST"))
        .and(path("/app/installations/4242/access_tokens"))
        .respond_with(Tokens(Default::default()))
        .mount(&server)
        .await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let mut env = GithubEnv {
        api: server.uri(),
        graphql: format!("{}/graphql", server.uri()),
        auth: Auth::App {
            app_id: 77,
            installation_id: 4242,
            private_key: Secret::new(pem.clone()),
            refresh_after: cleartrail::connectors::github::client::TOKEN_REFRESH,
        },
    };
    let src = connect_named_repo(&env).await;
    let r = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(ids(query(&r, "repositories")), ["acme-corp/payments-api"]);
    let reqs = server.received_requests().await.unwrap();
    let auth = |q: &Request| {
        q.headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    let exchange = reqs
        .iter()
        .find(|q| q.url.path().starts_with("/app/"))
        .expect("an exchange");
    // A JWT: three parts, signed with the App's key, never the key itself.
    let jwt = auth(exchange);
    assert!(
        jwt.starts_with("Bearer ") && jwt.matches('.').count() == 2,
        "{jwt}"
    );
    // Exchanged once: every request carries that token.
    assert_eq!(
        reqs.iter()
            .filter(|q| q.url.path().starts_with("/app/"))
            .count(),
        1
    );
    for q in reqs.iter().filter(|q| !q.url.path().starts_with("/app/")) {
        assert_eq!(auth(q), "Bearer ghs_InstallationToken1", "{}", q.url);
    }
    assert!(!format!("{r:?}").contains("PRIVATE KEY"));

    // A run that outlasts its token exchanges the key again: here every
    // token is old at once, so each request follows a fresh exchange and
    // carries the newest token.
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/4242/access_tokens"))
        .respond_with(Tokens(Default::default()))
        .mount(&server)
        .await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let Auth::App { refresh_after, .. } = &mut env.auth else {
        unreachable!()
    };
    *refresh_after = Duration::ZERO;
    let src = connect_named_repo(&env).await;
    let requests = src.client().polite.counts.requests.load(Ordering::SeqCst);
    assert_eq!(requests, 1);
    let reqs = server.received_requests().await.unwrap();
    let used: Vec<String> = reqs
        .iter()
        .filter(|q| !q.url.path().starts_with("/app/"))
        .map(auth)
        .collect();
    // The exchange at connect, then one before the listing request.
    assert_eq!(used, ["Bearer ghs_InstallationToken2"]);
    assert_eq!(
        reqs.iter()
            .filter(|q| q.url.path().starts_with("/app/"))
            .count(),
        2
    );
}

/// A server that answers each connection with `reply` (raw bytes), then
/// closes it: broken connections and bodies cut short, which an HTTP mock
/// library cannot send.
fn raw_server(replies: Vec<&'static [u8]>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let reply = replies[i.min(replies.len() - 1)];
            let _ = conn.write_all(reply);
            let _ = conn.flush();
            // Dropping the socket closes the connection mid-answer.
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_reset_connection_and_a_truncated_body_are_retried() {
    let body = serde_json::to_string(&repo("payments-api", 70001)).unwrap();
    let whole: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let cut: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            body.len(),
            &body[..body.len() / 2]
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    // First connection: closed without a word. Second: half a body.
    let uri = raw_server(vec![b"", cut, whole]);
    let src = GithubSource::connect(
        "gh".into(),
        spec("repos"),
        year(),
        &env_for(&uri),
        quick(),
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let page = src
        .fetch(&src.queries()[0], Default::default())
        .await
        .unwrap();
    let got: Vec<&str> = page.items.iter().map(|a| a.object_id.as_str()).collect();
    assert_eq!(got, ["acme-corp/payments-api"]);
    let counts = &src.client().polite.counts;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 3);
    assert_eq!(counts.retries.load(Ordering::SeqCst), 2);
}

/// The whole command: `run` with a github source commits the
/// repositories, a second run with no upstream change sends only
/// conditional requests and commits nothing, and a fatal API error leaves
/// the evidence repository as it was. The token appears in no output and
/// no file.
#[tokio::test(flavor = "multi_thread")]
async fn run_commits_revalidates_and_fails_cleanly() {
    let server = MockServer::start().await;
    mount_org(&server, "\"p2\"").await;
    // A leaked secret GitHub found: the alert is evidence, the secret not.
    mount_list(
        &server,
        "/orgs/acme-corp/secret-scanning/alerts",
        "\"ss\"",
        json!([{"number": 1, "state": "open", "created_at": "2026-11-01T00:00:00Z",
                "secret_type": "github_personal_access_token", "secret": SECRET,
                "repository": {"full_name": "acme-corp/web"}}]),
    )
    .await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let f = Fixture::new();
    let cfg = f.config(
        "version: 1\nsources:\n  gh:\n    type: github\n    org: acme-corp\n    exclude: [sandbox-*]\n",
    );
    let env = [
        ("GITHUB_API_URL", server.uri()),
        ("GITHUB_TOKEN", TOKEN.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = |cmd: &'static str| {
        vec![
            cmd.to_string(),
            "--config".into(),
            cfg.to_str().unwrap().into(),
            "--repo".into(),
            f.evidence().to_str().unwrap().into(),
        ]
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        cleartrail_guarded(&a, &env)
    };
    let mut outputs = Vec::new();
    let out = run(args("run"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    outputs.push(out);
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    assert!(
        files.contains_key("evidence/github/repository/acme-corp/web.json"),
        "{:?}",
        files.keys().collect::<Vec<_>>()
    );
    assert!(!files.keys().any(|k| k.contains("sandbox")));
    let commits = commit_count(&f.evidence(), "cleartrail/evidence");
    let before = server.received_requests().await.unwrap().len();

    let out = run(args("run"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing new: no commit"),
        "{}",
        stdout(&out)
    );
    assert_eq!(commit_count(&f.evidence(), "cleartrail/evidence"), commits);
    let reqs = server.received_requests().await.unwrap();
    // Only conditional requests, and one search for what was updated.
    for q in &reqs[before..] {
        if q.url.path() == "/graphql" {
            let body: Value = serde_json::from_slice(&q.body).unwrap();
            assert!(
                body["variables"]["q"]
                    .as_str()
                    .unwrap()
                    .contains("updated:>="),
                "{body}"
            );
        } else {
            assert!(q.headers.contains_key("if-none-match"), "{}", q.url);
        }
    }
    assert_eq!(
        reqs[before..]
            .iter()
            .filter(|q| q.url.path() == "/graphql")
            .count(),
        1
    );

    // One pull request merged since, approved by its author alone: the
    // next run adds exactly it, and the check names it.
    let mut merged = pr(
        5,
        "2026-11-20T10:00:00Z",
        "2026-11-20T10:00:00Z",
        "h5",
        json!([gql_review("ann", "APPROVED", "h5")]),
    );
    merged["repository"] = json!({"nameWithOwner": "acme-corp/web"});
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(wiremock::matchers::body_string_contains("search("))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {
                "search": {"issueCount": 1, "pageInfo": {"hasNextPage": false, "endCursor": null}, "nodes": [merged]},
                "rateLimit": {"cost": 1, "remaining": 4990, "resetAt": "2100-01-01T00:00:00Z"}
            }
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    let out = run(args("run"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(1 added, 0 changed, 0 removed)"),
        "{}",
        stdout(&out)
    );
    outputs.push(out);
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    let pulls: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("evidence/github/pull-request/"))
        .collect();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].starts_with("evidence/github/pull-request/2026-11/"));
    assert!(pulls[0].ends_with("/acme-corp/web/5.json"), "{}", pulls[0]);
    let check: Value =
        serde_json::from_slice(&files["checks/pr-merged-without-independent-approval.json"])
            .unwrap();
    assert_eq!(check["population"], 1);
    assert_eq!(check["passed"], false);
    let text = check.to_string();
    assert!(
        text.contains("pull request acme-corp/web#5 was approved only by its author or a bot"),
        "{text}"
    );
    let mfa = String::from_utf8_lossy(&files["checks/member-without-2fa.json"]).into_owned();
    assert!(
        mfa.contains("cy, a member of acme-corp, has two-factor authentication off"),
        "{mfa}"
    );

    let verify = run(vec![
        "verify".into(),
        "--repo".into(),
        f.evidence().to_str().unwrap().into(),
    ]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
    outputs.push(verify);

    // The API now refuses the token: exit 3, nothing written.
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest"
        })))
        .mount(&server)
        .await;
    let head = git2::Repository::open(f.evidence())
        .unwrap()
        .refname_to_id("refs/heads/cleartrail/evidence")
        .unwrap();
    let out = run(args("run"));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("HTTP 401: Bad credentials"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("/orgs/acme-corp/repos"),
        "{}",
        stderr(&out)
    );
    let repo = git2::Repository::open(f.evidence()).unwrap();
    assert_eq!(
        repo.refname_to_id("refs/heads/cleartrail/evidence")
            .unwrap(),
        head
    );

    // No token anywhere: outputs, every file of the branch, the git folder.
    outputs.push(out);
    for o in &outputs {
        assert!(!stdout(o).contains(TOKEN) && !stderr(o).contains(TOKEN));
    }
    assert!(
        files
            .keys()
            .any(|k| k.starts_with("evidence/github/secret-scanning-alert/")),
        "{:?}",
        files.keys().collect::<Vec<_>>()
    );
    for (p, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(TOKEN) && !text.contains(SECRET), "{p}");
    }
    let mut stack = vec![f.evidence()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                assert!(
                    !String::from_utf8_lossy(&b).contains(TOKEN),
                    "{}",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn missing_credentials_are_a_usage_error_naming_what_to_set() {
    let f = Fixture::new();
    let cfg = f.config("version: 1\nsources:\n  gh:\n    type: github\n    org: acme-corp\n");
    let out = run_env(
        &cfg,
        &f.evidence(),
        &[
            ("GITHUB_TOKEN", ""),
            ("GITHUB_API_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("set GITHUB_TOKEN"),
        "{}",
        stderr(&out)
    );
    assert!(!f.evidence().exists());
}

/// The official example payloads, read in place when CI points at them:
/// the organization's repository list and a single repository both
/// normalize.
#[tokio::test]
async fn official_example_payloads_normalize() {
    let Some(dir) = std::env::var_os("CLEARTRAIL_API_FIXTURES") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir).join("github");
    let read = |name: &str| -> Value {
        let p = dir.join(name);
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (CLEARTRAIL_API_FIXTURES is set, the data must be there)",
                p.display()
            )
        }))
        .unwrap()
    };
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme-corp/repos"))
        .respond_with(ResponseTemplate::new(200).set_body_json(read("repos-list-for-org.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World"))
        .respond_with(ResponseTemplate::new(200).set_body_json(read("repo-get.json")))
        .mount(&server)
        .await;
    mount_members(&server).await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let spec = GithubSpec {
        org: Some("acme-corp".into()),
        repos: vec!["octocat/Hello-World".into()],
        ..Default::default()
    };
    let (_, r) = connect_and_collect(&server.uri(), spec, &BTreeMap::new())
        .await
        .unwrap();
    let r = query(&r, "repositories");
    // The list's one repository is also named: it is collected once.
    assert_eq!(ids(r), ["octocat/Hello-World"]);
    let a = &r.items[0];
    assert_eq!(a.url, "https://github.com/octocat/Hello-World");
    assert_eq!(a.content["default_branch"], "master");
    assert_eq!(a.observed["created_at"], "2011-01-26T19:01:12Z");

    // The per-repository kinds, from the official examples, for the one
    // repository (period 2013, when its release was published).
    let server = MockServer::start().await;
    let repo = "/repos/octocat/Hello-World";
    for (p, file) in [
        (String::new(), "repo-get.json"),
        (
            "/dependabot/alerts".into(),
            "dependabot-alerts-repo-list.json",
        ),
        (
            "/code-scanning/alerts".into(),
            "code-scanning-alerts-repo-list.json",
        ),
        (
            "/secret-scanning/alerts".into(),
            "secret-scanning-alerts-repo-list.json",
        ),
        ("/collaborators".into(), "repo-collaborators-list.json"),
        (
            "/branches/master/protection".into(),
            "branch-protection-get.json",
        ),
        ("/rules/branches/master".into(), "branch-rules-get.json"),
        ("/actions/runs".into(), "workflow-runs-list.json"),
        ("/releases".into(), "releases-list.json"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("{repo}{p}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(read(file)))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/octocat/Hello-World/rulesets/[0-9]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(read("ruleset-get.json")))
        .mount(&server)
        .await;
    mount_no_pulls(&server).await;
    let spec = GithubSpec {
        repos: vec!["octocat/Hello-World".into()],
        ..Default::default()
    };
    let src = GithubSource::connect(
        "gh".into(),
        spec,
        "2013".parse().unwrap(),
        &env_for(&server.uri()),
        quick(),
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let r = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap();
    let dependabot = query(&r, "dependabot-alerts");
    assert_eq!(
        ids(dependabot),
        ["octocat/Hello-World#1", "octocat/Hello-World#2"]
    );
    let dismissed = dependabot
        .items
        .iter()
        .find(|a| a.content["number"] == 2)
        .unwrap();
    assert_eq!(dismissed.content["severity"], "high");
    assert_eq!(dismissed.content["state"], "dismissed");
    assert_eq!(dismissed.content["resolution"], "tolerable_risk");
    assert!(dismissed.content["closed_by"].is_string());
    let code = query(&r, "code-scanning-alerts");
    assert_eq!(code.items.len(), 2);
    assert!(code.items.iter().all(|a| a.content["severity"] == "high"));
    let secret = &query(&r, "secret-scanning-alerts").items[0];
    assert_eq!(secret.content["resolution"], "false_positive");
    assert_eq!(secret.content["severity"], "critical");
    let example_secret = read("secret-scanning-alerts-repo-list.json")[0]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !serde_json::to_string(&secret.to_document().0)
            .unwrap()
            .contains(&example_secret)
    );
    // The example collaborator has write, not admin.
    let admins = &query(&r, "repository-admins").items[0];
    assert_eq!(admins.content["admins"], json!([]));
    let bp = &query(&r, "branch-protection").items[0];
    assert_eq!(bp.content["protected"], true);
    assert_eq!(
        bp.content["rulesets"][0]["bypass_actors"][0]["actor_type"],
        "Team"
    );
    // The example run is still queued, and from 2020.
    assert!(query(&r, "workflow-runs").items.is_empty());
    assert_eq!(
        ids(query(&r, "releases")),
        ["octocat/Hello-World/releases/1"]
    );
}

/// A list at `p` answering `body` on every run (ETag, 304 for it), above
/// the quiet defaults.
async fn mount_list(server: &MockServer, p: &str, etag: &str, body: Value) {
    let p = p.to_string();
    mount_revalidated(
        server,
        move || Mock::given(method("GET")).and(path(p.as_str())),
        etag,
        body,
    )
    .await;
}

fn dependabot(
    repo: &str,
    number: u64,
    severity: &str,
    state: &str,
    created: &str,
    closed: Option<&str>,
) -> Value {
    json!({
        "number": number, "state": state, "created_at": created,
        "fixed_at": if state == "fixed" { closed } else { None },
        "dismissed_at": if state == "dismissed" { closed } else { None },
        "dismissed_by": if state == "dismissed" { json!({"login": "bob"}) } else { Value::Null },
        "dismissed_reason": if state == "dismissed" { Some("tolerable_risk") } else { None },
        "security_advisory": {"ghsa_id": format!("GHSA-{number}"), "summary": format!("advisory {number}"), "severity": severity},
        "dependency": {"package": {"name": "left-pad", "ecosystem": "npm"}, "manifest_path": "package-lock.json"},
        "html_url": format!("https://github.com/{repo}/security/dependabot/{number}"),
        "repository": {"full_name": repo},
    })
}

/// Alerts of every kind over two pages, repository admins, a ruleset's
/// bypass actors, workflow runs and releases: each collected once, with
/// the planted exceptions (and only those) found by `alert-past-sla` and
/// `outside-collaborator-with-admin`; a secret never reaches an artifact.
#[tokio::test]
async fn alerts_admins_runs_and_releases_and_their_checks() {
    let server = MockServer::start().await;
    mount_org(&server, "\"p2\"").await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    // Dependabot: two pages, the second linked at the mock's address.
    let next = format!(
        "<{}/orgs/acme-corp/dependabot/alerts?per_page=100&after=c2>; rel=\"next\"",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/orgs/acme-corp/dependabot/alerts"))
        .and(query_param("after", "c2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            // Dismissed after 100 days, past the 90 of medium.
            dependabot(
                "acme-corp/web",
                3,
                "medium",
                "dismissed",
                "2026-02-01T00:00:00Z",
                Some("2026-05-12T00:00:00Z")
            ),
            // An excluded repository's alert is not evidence.
            dependabot(
                "acme-corp/sandbox-play",
                4,
                "critical",
                "open",
                "2026-01-01T00:00:00Z",
                None
            ),
            // Fixed late, but before the period: not judged.
            dependabot(
                "acme-corp/svc-2",
                5,
                "low",
                "fixed",
                "2024-01-01T00:00:00Z",
                Some("2025-06-01T00:00:00Z")
            ),
        ])))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme-corp/dependabot/alerts"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", next.as_str())
                .set_body_json(json!([
                    // Open all year: past the 7 days of critical.
                    dependabot(
                        "acme-corp/svc-0",
                        1,
                        "critical",
                        "open",
                        "2026-01-01T00:00:00Z",
                        None
                    ),
                    // Fixed in 10 days: within the 30 of high.
                    dependabot(
                        "acme-corp/svc-1",
                        2,
                        "high",
                        "fixed",
                        "2026-03-01T00:00:00Z",
                        Some("2026-03-11T00:00:00Z")
                    ),
                ])),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    mount_list(
        &server,
        "/orgs/acme-corp/code-scanning/alerts",
        "\"cs\"",
        json!([{
            "number": 7, "state": "open", "created_at": "2026-12-01T00:00:00Z",
            "rule": {"id": "js/zipslip", "severity": "warning", "description": "Zip slip"},
            "tool": {"name": "CodeQL"}, "html_url": "https://github.com/acme-corp/svc-0/code-scanning/7",
            "repository": {"full_name": "acme-corp/svc-0"}
        }]),
    )
    .await;
    mount_list(
        &server,
        "/orgs/acme-corp/secret-scanning/alerts",
        "\"ss\"",
        json!([
            {"number": 9, "state": "resolved", "resolution": "revoked", "created_at": "2026-04-01T00:00:00Z",
             "resolved_at": "2026-04-03T00:00:00Z", "resolved_by": {"login": "bob"},
             "secret_type": "github_personal_access_token", "secret_type_display_name": "GitHub Personal Access Token",
             "secret": "ghp_PlantedSecretNeverToBeStored0000", "repository": {"full_name": "acme-corp/web"}},
            {"number": 10, "state": "open", "created_at": "2026-12-20T00:00:00Z",
             "secret_type": "aws_access_key_id", "secret": "AKIAPLANTEDNEVERSTORED",
             "repository": {"full_name": "acme-corp/svc-1"}}
        ]),
    )
    .await;
    let user = |login: &str, role: &str| json!({"login": login, "type": "User", "role_name": role});
    mount_list(
        &server,
        "/repos/acme-corp/svc-1/collaborators",
        "\"c1\"",
        json!([user("bob", "admin"), user("ext", "admin")]),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme-corp/svc-1/collaborators"))
        .and(query_param("affiliation", "outside"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([user("ext", "admin")])))
        .with_priority(1)
        .mount(&server)
        .await;
    mount_list(
        &server,
        "/repos/acme-corp/svc-0/rulesets/7",
        "\"rs\"",
        json!({"id": 7, "name": "protect main", "enforcement": "active",
               "bypass_actors": [{"actor_id": 5, "actor_type": "Team", "bypass_mode": "always"}]}),
    )
    .await;
    let run = |id: u64, created: &str| {
        json!({"id": id, "name": "CI", "path": ".github/workflows/ci.yml", "run_number": id, "run_attempt": 1,
               "event": "push", "head_branch": "main", "head_sha": format!("{id:040}"), "status": "completed",
               "conclusion": "success", "actor": {"login": "ann"}, "created_at": created,
               "html_url": format!("https://github.com/acme-corp/web/actions/runs/{id}")})
    };
    mount_list(
        &server,
        "/repos/acme-corp/web/actions/runs",
        "\"wr\"",
        json!({"total_count": 2, "workflow_runs": [run(41, "2026-06-01T00:00:00Z"), run(42, "2026-06-02T00:00:00Z")]}),
    )
    .await;
    let release = |id: u64, tag: &str, published: Option<&str>, draft: bool| {
        json!({"id": id, "tag_name": tag, "name": tag, "draft": draft, "prerelease": false,
               "target_commitish": "main", "author": {"login": "ann"}, "created_at": "2025-01-01T00:00:00Z",
               "published_at": published, "html_url": format!("https://github.com/acme-corp/web/releases/{tag}")})
    };
    mount_list(
        &server,
        "/repos/acme-corp/web/releases",
        "\"rel\"",
        json!([
            release(3, "v3", None, true),
            release(2, "v2", Some("2026-05-01T00:00:00Z"), false),
            release(1, "v1", Some("2025-05-01T00:00:00Z"), false),
        ]),
    )
    .await;

    let (_, r) = collect(&server, "org", &BTreeMap::new()).await;
    assert_eq!(
        ids(query(&r, "dependabot-alerts")),
        [
            "acme-corp/svc-0#1",
            "acme-corp/svc-1#2",
            "acme-corp/svc-2#5",
            "acme-corp/web#3"
        ]
    );
    let dismissed = query(&r, "dependabot-alerts")
        .items
        .iter()
        .find(|a| a.object_id == "acme-corp/web#3")
        .unwrap();
    assert_eq!(dismissed.content["closed_by"], "bob");
    assert_eq!(dismissed.content["resolution"], "tolerable_risk");
    assert_eq!(
        ids(query(&r, "code-scanning-alerts")),
        ["acme-corp/svc-0#7"]
    );
    assert_eq!(
        query(&r, "code-scanning-alerts").items[0].content["severity"],
        "medium"
    );
    let secrets = query(&r, "secret-scanning-alerts");
    assert_eq!(ids(secrets), ["acme-corp/svc-1#10", "acme-corp/web#9"]);
    for a in &secrets.items {
        let text = serde_json::to_string(&a.to_document().0).unwrap();
        assert!(
            !text.contains("PlantedSecret") && !text.contains("AKIAPLANTED"),
            "{text}"
        );
    }
    let admins = query(&r, "repository-admins");
    assert_eq!(admins.items.len(), 4);
    let svc1 = admins
        .items
        .iter()
        .find(|a| a.object_id == "acme-corp/svc-1")
        .unwrap();
    assert_eq!(
        svc1.content["admins"],
        json!([
            {"login": "bob", "type": "User", "role_name": "admin", "outside_collaborator": false},
            {"login": "ext", "type": "User", "role_name": "admin", "outside_collaborator": true}
        ])
    );
    let bp = query(&r, "branch-protection");
    let svc0 = bp
        .items
        .iter()
        .find(|a| a.object_id == "acme-corp/svc-0")
        .unwrap();
    assert_eq!(
        svc0.content["rulesets"],
        json!([{"ruleset_id": 7, "name": "protect main", "enforcement": "active",
                "bypass_actors": [{"actor_id": 5, "actor_type": "Team", "bypass_mode": "always"}]}])
    );
    assert_eq!(
        ids(query(&r, "workflow-runs")),
        [
            "acme-corp/web/actions/runs/41",
            "acme-corp/web/actions/runs/42"
        ]
    );
    assert_eq!(ids(query(&r, "releases")), ["acme-corp/web/releases/2"]);

    // The checks find exactly the planted exceptions.
    let held: Vec<cleartrail::evidence::Held> = r
        .iter()
        .flat_map(|q| q.items.iter())
        .map(|a| {
            let (doc, _) = a.to_document();
            cleartrail::evidence::Held::from_document(
                a.json_path(),
                doc,
                &cleartrail::evidence::Keep::All,
            )
            .unwrap()
        })
        .collect();
    let period = year();
    let severities = BTreeMap::new();
    let sla = BTreeMap::new();
    let cx = cleartrail::checks::CheckContext {
        as_of: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        now: chrono::DateTime::from_timestamp(1_798_761_599, 0).unwrap(),
        period: &period,
        git_sources: Vec::new(),
        alert_sla: &sla,
        tickets: &Default::default(),
        git_repos: &BTreeMap::new(),
        severities: &severities,
    };
    let results = cleartrail::checks::run(&held, &cx);
    let exceptions = |code: &str| -> Vec<String> {
        let r = results.iter().find(|r| r.code == code).unwrap();
        r.exceptions
            .iter()
            .map(|e| format!("{}", e.reason))
            .collect()
    };
    let sla_results = results.iter().find(|r| r.code == "alert-past-sla").unwrap();
    // Not svc-2#5, closed before the period.
    assert_eq!(sla_results.population, 6);
    assert_eq!(
        exceptions("alert-past-sla"),
        [
            "dependabot alert acme-corp/svc-0#1 (critical) opened 2026-01-01 is still open on 2026-12-31, 364 days: past its 7-day SLA",
            "dependabot alert acme-corp/web#3 (medium) opened 2026-02-01 was closed (tolerable_risk) on 2026-05-12, after 100 days: past its 90-day SLA",
            "secret-scanning alert acme-corp/svc-1#10 (critical) opened 2026-12-20 is still open on 2026-12-31, 11 days: past its 7-day SLA",
        ]
    );
    assert_eq!(
        exceptions("outside-collaborator-with-admin"),
        ["acme-corp/svc-1: outside collaborator ext has admin"]
    );
    // A looser SLA for the organization clears the late dismissal.
    let sla: BTreeMap<String, cleartrail::checks::Sla> = [(
        "acme-corp".to_string(),
        cleartrail::checks::Sla {
            medium: 120,
            ..Default::default()
        },
    )]
    .into();
    let cx = cleartrail::checks::CheckContext {
        alert_sla: &sla,
        tickets: &Default::default(),
        ..cx
    };
    let results = cleartrail::checks::run(&held, &cx);
    let r = results.iter().find(|r| r.code == "alert-past-sla").unwrap();
    assert_eq!(r.exceptions.len(), 2);
}

/// A kind the token may not read fails the run naming the permission, or,
/// listed under `optional:`, is recorded as not collected with the reason.
#[tokio::test]
async fn an_optional_kind_the_token_cannot_read_is_not_collected() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme-corp/secret-scanning/alerts"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/secret-scanning"
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    mount_org(&server, "\"p2\"").await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let err = connect_and_collect(&server.uri(), spec("org"), &BTreeMap::new())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.ends_with("HTTP 403: Resource not accessible by integration (reading secret-scanning-alerts needs the repository permission `Secret scanning alerts: read`)"),
        "{err}"
    );
    let mut optional = spec("org");
    optional.optional.insert("secret-scanning-alerts".into());
    let (_, r) = connect_and_collect(&server.uri(), optional, &BTreeMap::new())
        .await
        .unwrap();
    let q = query(&r, "secret-scanning-alerts");
    assert_eq!(q.outcome, Outcome::NotCollected);
    assert!(q.items.is_empty() && q.state.is_none());
    assert_eq!(q.skipped.len(), 1);
    assert!(
        q.skipped[0]
            .path
            .ends_with("/orgs/acme-corp/secret-scanning/alerts?per_page=100&hide_secret=true")
    );
    assert!(
        q.skipped[0]
            .reason
            .starts_with("not collected (optional): HTTP 403"),
        "{}",
        q.skipped[0].reason
    );
    // The other kinds are collected as ever.
    assert_eq!(query(&r, "dependabot-alerts").outcome, Outcome::Complete);
}

/// In GitHub Actions the collection is logged in one group per source,
/// with a line as each query ends, on stderr; the token is shown only to
/// the runner's `::add-mask::` (on stderr), which hides it from the log.
#[tokio::test(flavor = "multi_thread")]
async fn actions_log_a_group_per_source_and_mask_the_token() {
    let server = MockServer::start().await;
    mount_org(&server, "\"p2\"").await;
    mount_no_pulls(&server).await;
    mount_protection(&server).await;
    let f = Fixture::new();
    let cfg = f.config(
        "version: 1\nsources:\n  gh:\n    type: github\n    org: acme-corp\n    exclude: [sandbox-*]\n",
    );
    let uri = server.uri();
    let out = run_env(
        &cfg,
        &f.evidence(),
        &[
            ("GITHUB_API_URL", uri.as_str()),
            ("GITHUB_TOKEN", TOKEN),
            ("GITHUB_ACTIONS", "true"),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let group: Vec<&str> = err
        .lines()
        .skip_while(|l| *l != "::group::Collecting gh")
        .take_while(|l| *l != "::endgroup::")
        .collect();
    assert!(!group.is_empty(), "{err}");
    for q in [
        "repositories",
        "members",
        "branch-protection",
        "pull-requests",
        "releases",
    ] {
        assert!(
            group
                .iter()
                .any(|l| l.starts_with(&format!("gh/{q}: complete, "))),
            "{q}: {group:?}"
        );
    }
    assert!(group.last().unwrap().starts_with("gh: "), "{group:?}");
    // The mask goes to stderr, ahead of any line that could show the
    // token; stdout, which a caller may keep as data, never has it.
    let masked: Vec<&str> = err.lines().filter(|l| l.contains(TOKEN)).collect();
    assert_eq!(masked, [format!("::add-mask::{TOKEN}")]);
    assert!(err.starts_with(&format!("::add-mask::{TOKEN}\n")), "{err}");
    assert!(!stdout(&out).contains(TOKEN));
}

/// Mounts the organization with one release list for `web` (ETag `etag`).
async fn mount_org_with_releases(server: &MockServer, etag: &str, tags: &[(u64, &str)]) {
    mount_org(server, "\"p2\"").await;
    mount_no_pulls(server).await;
    mount_protection(server).await;
    let releases: Vec<Value> = tags
        .iter()
        .map(|(id, tag)| {
            json!({"id": id, "tag_name": tag, "draft": false, "prerelease": false,
                   "published_at": "2026-05-01T00:00:00Z", "created_at": "2026-05-01T00:00:00Z",
                   "author": {"login": "ann"}, "html_url": format!("https://github.com/acme-corp/web/releases/{tag}")})
        })
        .collect();
    mount_list(
        server,
        "/repos/acme-corp/web/releases",
        etag,
        json!(releases),
    )
    .await;
}

/// A per-repository query reads again only the repositories that changed,
/// and within those its answer is complete: a release deleted upstream is
/// removed (tombstoned) by the next run, while the other repositories'
/// evidence stands. A feature switched off in one repository is recorded
/// as skipped there, not a failure of the whole query.
#[tokio::test(flavor = "multi_thread")]
async fn a_repository_read_again_is_complete_within_itself() {
    let server = MockServer::start().await;
    mount_org_with_releases(&server, "\"r1\"", &[(1, "v1"), (2, "v2")]).await;
    let f = Fixture::new();
    let cfg = f.config(
        "version: 1\nperiod: 2026\nsources:\n  gh:\n    type: github\n    org: acme-corp\n    exclude: [sandbox-*]\n",
    );
    let uri = server.uri();
    let env = [("GITHUB_API_URL", uri.as_str()), ("GITHUB_TOKEN", TOKEN)];
    let run = || run_env(&cfg, &f.evidence(), &env);
    let out = run();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let releases = |files: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
        files
            .keys()
            .filter(|k| k.starts_with("evidence/github/release/") && k.ends_with(".json"))
            .cloned()
            .collect()
    };
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    assert_eq!(releases(&files).len(), 2, "{:?}", releases(&files));

    // v2 deleted upstream: the list of `web` changed, the others did not.
    server.reset().await;
    mount_org_with_releases(&server, "\"r2\"", &[(1, "v1")]).await;
    let out = run();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(0 added, 0 changed, 1 removed)"),
        "{}",
        stdout(&out)
    );
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    let kept = releases(&files);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].ends_with("/acme-corp/web/releases/1.json"),
        "{kept:?}"
    );
    let record: Value = serde_json::from_slice(&files["collections/github/release.json"]).unwrap();
    assert_eq!(record["queries"][0]["outcome"], "incremental", "{record}");
    assert!(
        files
            .keys()
            .any(|k| k.starts_with("tombstones/github/release/") && k.contains("releases/2")),
        "{:?}",
        files
            .keys()
            .filter(|k| k.starts_with("tombstones"))
            .collect::<Vec<_>>()
    );
    let verify = cleartrail_guarded(&["verify", "--repo", f.evidence().to_str().unwrap()], &[]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));

    // One repository named outside the organization has Dependabot off.
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    mount_protection(&server).await;
    Mock::given(method("GET"))
        .and(path("/repos/acme-corp/payments-api/dependabot/alerts"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"message": "Dependabot alerts are disabled for this repository."}),
        ))
        .with_priority(1)
        .mount(&server)
        .await;
    mount_no_pulls(&server).await;
    let (_, r) = collect(&server, "repos", &BTreeMap::new()).await;
    let q = query(&r, "dependabot-alerts");
    assert_eq!(q.outcome, Outcome::Complete);
    assert_eq!(q.skipped.len(), 1);
    assert_eq!(
        q.skipped[0].reason,
        "HTTP 403: Dependabot alerts are disabled for this repository."
    );
}
