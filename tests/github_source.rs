//! The `github` source against a local mock of the GitHub REST API
//! (wiremock, started by each test): paging by `Link` headers built from
//! the mock's own address, ETags and 304s, rate limits, 5xx bursts, broken
//! connections and bodies cut short, and a token that never shows.

mod common;

use cleartrail::connectors::github::GithubSource;
use cleartrail::connectors::github::client::{Auth, GithubEnv};
use cleartrail::connectors::http::{Politeness, Secret};
use cleartrail::connectors::{self, Limits, Outcome, QueryResult};
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "ghs_NeverPrintThisToken0123456789abcdef";

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

fn source(server: &MockServer, spec: &str) -> GithubSource {
    let spec = match spec {
        "org" => cleartrail::connectors::github::GithubSpec {
            org: Some("acme-corp".into()),
            exclude: vec!["sandbox-*".into()],
            ..Default::default()
        },
        _ => cleartrail::connectors::github::GithubSpec {
            repos: vec!["acme-corp/payments-api".into()],
            ..Default::default()
        },
    };
    GithubSource::connect("gh".into(), spec, &env_for(&server.uri()), quick()).unwrap()
}

async fn collect(src: &GithubSource, states: &BTreeMap<String, String>) -> Vec<QueryResult> {
    connectors::collect(src, Limits::default(), chrono::Utc::now, states)
        .await
        .unwrap()
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
    let src = source(&server, "org");
    let first = collect(&src, &BTreeMap::new()).await;
    assert_eq!(first.len(), 1);
    let r = &first[0];
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
    assert_eq!(
        src.client().polite.counts.requests.load(Ordering::SeqCst),
        2
    );

    // The next run sends only conditional requests, and they answer 304.
    let states = BTreeMap::from([(r.label(), r.state.clone().expect("state saved"))]);
    let src = source(&server, "org");
    let again = collect(&src, &states).await;
    assert_eq!(again[0].outcome, Outcome::NotModified);
    assert!(again[0].items.is_empty());
    assert_eq!(again[0].state, r.state);
    let counts = &src.client().polite.counts;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 2);
    assert_eq!(counts.not_modified.load(Ordering::SeqCst), 2);
    let conditional = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|q| q.headers.contains_key("if-none-match"))
        .count();
    assert_eq!(conditional, 2);
}

#[tokio::test]
async fn a_changed_page_lists_everything_again() {
    let server = MockServer::start().await;
    mount_org(&server, "\"p2\"").await;
    let first = collect(&source(&server, "org"), &BTreeMap::new()).await;
    let states = BTreeMap::from([(first[0].label(), first[0].state.clone().unwrap())]);
    // Page 2 changes: its ETag is no longer the saved one.
    server.reset().await;
    mount_org(&server, "\"p2-changed\"").await;
    let src = source(&server, "org");
    let again = collect(&src, &states).await;
    assert_eq!(again[0].outcome, Outcome::Complete);
    assert_eq!(ids(&again[0]), ids(&first[0]));
    // Two revalidations (304, then 200), then the two pages in full.
    assert_eq!(
        src.client().polite.counts.requests.load(Ordering::SeqCst),
        4
    );
    assert_ne!(again[0].state, first[0].state);
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
    let src = source(&server, "repos");
    let started = std::time::Instant::now();
    let r = collect(&src, &BTreeMap::new()).await;
    assert_eq!(ids(&r[0]), ["acme-corp/payments-api"]);
    let counts = &src.client().polite.counts;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 5);
    assert_eq!(counts.retries.load(Ordering::SeqCst), 4);
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
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

/// The error of collecting a named repository that always gets `answer`.
async fn failure_of(answer: ResponseTemplate) -> (String, MockServer) {
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![answer]).await;
    let src = source(&server, "repos");
    let err = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    (err, server)
}

#[tokio::test]
async fn the_token_is_sent_only_as_authorization() {
    let server = MockServer::start().await;
    mount_repo_script(&server, vec![ok_repo()]).await;
    let src = source(&server, "repos");
    let r = collect(&src, &BTreeMap::new()).await;
    let reqs = server.received_requests().await.unwrap();
    let auth = reqs[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(auth.ends_with(TOKEN), "{auth}");
    assert!(!reqs[0].url.as_str().contains(TOKEN));
    let all = format!("{:?} {:?}", r[0].items, r[0].state);
    assert!(!all.contains(TOKEN));
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
    let spec = cleartrail::connectors::github::GithubSpec {
        repos: vec!["acme-corp/payments-api".into()],
        ..Default::default()
    };
    let src = GithubSource::connect("gh".into(), spec, &env_for(&uri), quick()).unwrap();
    let r = collect(&src, &BTreeMap::new()).await;
    assert_eq!(ids(&r[0]), ["acme-corp/payments-api"]);
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
    assert!(
        reqs[before..]
            .iter()
            .all(|q| q.headers.contains_key("if-none-match"))
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
    for (p, bytes) in &files {
        assert!(!String::from_utf8_lossy(bytes).contains(TOKEN), "{p}");
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
    let out = cleartrail_guarded(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--repo",
            f.evidence().to_str().unwrap(),
        ],
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
    let spec = cleartrail::connectors::github::GithubSpec {
        org: Some("acme-corp".into()),
        repos: vec!["octocat/Hello-World".into()],
        ..Default::default()
    };
    let src = GithubSource::connect("gh".into(), spec, &env_for(&server.uri()), quick()).unwrap();
    let r = collect(&src, &BTreeMap::new()).await;
    // The list's one repository is also named: it is collected once.
    assert_eq!(ids(&r[0]), ["octocat/Hello-World"]);
    let a = &r[0].items[0];
    assert_eq!(a.url, "https://github.com/octocat/Hello-World");
    assert_eq!(a.content["default_branch"], "master");
    assert_eq!(a.observed["created_at"], "2011-01-26T19:01:12Z");
}
