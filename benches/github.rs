//! The GitHub source at the size of a mid-size organization, as a user
//! runs it: `cleartrail run` against a local mock of GitHub (wiremock)
//! that answers every request after a fixed latency (50 ms by default),
//! for an organization of 200 repositories and 20,000 pull requests merged
//! in the period (100 each, two reviews each).
//!
//! Each repository also has 50 completed workflow runs on its default
//! branch and 6 releases in the period, and the organization 1,000
//! Dependabot, 500 code-scanning and 100 secret-scanning alerts.
//!
//! Reported: requests made against the minimum pages needed (two listing
//! pages, four member lists, the alert lists' pages, then per repository
//! its branch protection, the rules that apply to its default branch, two
//! admin lists, one page of workflow runs, one of releases and one
//! GraphQL page), wall time of the whole command
//! and of collection alone (from the run's own log), peak RSS, and the
//! floor `pages x latency / concurrency`; then the same for a re-run with
//! no upstream change, which must send only conditional requests and one
//! search, and make no commit. Run with `cargo bench --bench github`
//! (`-- --repos N --per-repo M --latency-ms L` to change the size).

#[path = "support/measure.rs"]
mod measure;

use measure::measure;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use wiremock::matchers::{header, method, path, path_regex, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_cleartrail");
/// Requests in flight per token (connectors/http.rs).
const CONCURRENCY: f64 = 8.0;
/// 2026-11-30T00:00:00Z.
const NOW: i64 = 1_796_083_200;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn repo(i: u64) -> Value {
    json!({
        "id": 10_000 + i, "name": format!("svc-{i:03}"), "full_name": format!("acme-bench/svc-{i:03}"),
        "private": true, "visibility": "private", "html_url": format!("https://github.com/acme-bench/svc-{i:03}"),
        "fork": false, "archived": false, "disabled": false, "is_template": false, "default_branch": "main",
        "created_at": "2024-01-01T00:00:00Z", "pushed_at": "2026-11-01T00:00:00Z",
        "security_and_analysis": {"secret_scanning": {"status": "enabled"}}
    })
}

/// The merged pull requests of one repository, newest update first.
struct Pulls {
    per_repo: u64,
    latency: Duration,
}

impl Respond for Pulls {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).expect("a GraphQL request");
        let ok = |data: Value| {
            ResponseTemplate::new(200)
                .set_delay(self.latency)
                .insert_header("x-ratelimit-remaining", "4000")
                .insert_header("x-ratelimit-reset", "4102444800")
                .set_body_json(json!({ "data": data }))
        };
        if body["query"].as_str().unwrap_or("").contains("search(") {
            return ok(
                json!({"search": {"issueCount": 0, "pageInfo": {"hasNextPage": false, "endCursor": null}, "nodes": []}}),
            );
        }
        let name = body["variables"]["name"].as_str().unwrap_or("").to_string();
        let nodes: Vec<Value> = (0..self.per_repo)
            .map(|k| {
                // Spread over the year, newest first.
                let day = 300 - (k * 290 / self.per_repo.max(1));
                let t = chrono::DateTime::from_timestamp(1_767_225_600 + day as i64 * 86_400, 0)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let head = format!("{:040x}", (k + 1) * 7919 + name.len() as u64);
                json!({
                    "number": self.per_repo - k, "title": format!("Change {k} of {name}"),
                    "url": format!("https://github.com/acme-bench/{name}/pull/{}", self.per_repo - k),
                    "createdAt": t, "updatedAt": t, "mergedAt": t,
                    "author": {"login": "dev", "__typename": "User"}, "mergedBy": {"login": "dev"},
                    "baseRefName": "main", "headRefOid": head, "mergeCommit": {"oid": head},
                    "reviews": {"totalCount": 2, "nodes": [
                        {"author": {"login": "rev", "__typename": "User"}, "state": "APPROVED", "submittedAt": t, "commit": {"oid": head}},
                        {"author": {"login": "ci[bot]", "__typename": "Bot"}, "state": "COMMENTED", "submittedAt": t, "commit": {"oid": head}}
                    ]}
                })
            })
            .collect();
        ok(json!({"repository": {"pullRequests": {
            "pageInfo": {"hasNextPage": false, "endCursor": null}, "nodes": nodes}}}))
    }
}

async fn mock(repos: u64, per_repo: u64, latency: Duration) -> MockServer {
    let server = MockServer::start().await;
    let list: Vec<Value> = (0..repos).map(repo).collect();
    mount_paged(
        &server,
        "/orgs/acme-bench/repos",
        "type=all&",
        &list,
        latency,
    )
    .await;
    // The organization's four member lists, one page each.
    for list in ["members", "outside_collaborators"] {
        Mock::given(method("GET"))
            .and(path(format!("/orgs/acme-bench/{list}")))
            .and(header("if-none-match", "\"people\""))
            .respond_with(ResponseTemplate::new(304).set_delay(latency))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/orgs/acme-bench/{list}")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_delay(latency)
                    .insert_header("etag", "\"people\"")
                    .set_body_json(json!([{"login": "dev", "type": "User", "html_url": "https://github.com/dev"}])),
            )
            .with_priority(2)
            .mount(&server)
            .await;
    }
    // Every default branch protected, each answer with an ETag.
    let protection = json!({
        "required_pull_request_reviews": {"required_approving_review_count": 1, "dismiss_stale_reviews": true},
        "enforce_admins": {"enabled": true},
        "allow_force_pushes": {"enabled": false},
        "allow_deletions": {"enabled": false},
        "required_status_checks": {"contexts": ["ci"]}
    });
    for (pattern, etag, body) in [
        (
            r"^/repos/[^/]+/[^/]+/branches/[^/]+/protection$",
            "\"bp\"",
            protection,
        ),
        (
            r"^/repos/[^/]+/[^/]+/rules/branches/[^/]+$",
            "\"rules\"",
            json!([]),
        ),
    ] {
        Mock::given(method("GET"))
            .and(path_regex(pattern))
            .and(header("if-none-match", etag))
            .respond_with(ResponseTemplate::new(304).set_delay(latency))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(pattern))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_delay(latency)
                    .insert_header("etag", etag)
                    .set_body_json(body),
            )
            .with_priority(2)
            .mount(&server)
            .await;
    }
    // Per repository: two admin lists, workflow runs and releases, one
    // page each.
    let admins = json!([{"login": "lead", "type": "User", "role_name": "admin"}]);
    let runs = |name: &str| {
        let runs: Vec<Value> = (0..RUNS)
            .map(|k| {
                let t = chrono::DateTime::from_timestamp(1_767_225_600 + (k as i64 + 1) * 5 * 86_400, 0)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                json!({"id": k + 1, "name": "CI", "path": ".github/workflows/ci.yml", "run_number": k + 1,
                       "run_attempt": 1, "event": "push", "head_branch": "main", "head_sha": format!("{:040x}", k + 1),
                       "status": "completed", "conclusion": "success", "actor": {"login": "dev"},
                       "created_at": t, "updated_at": t, "run_started_at": t,
                       "html_url": format!("https://github.com/acme-bench/{name}/actions/runs/{}", k + 1)})
            })
            .collect();
        json!({"total_count": RUNS, "workflow_runs": runs})
    };
    let releases: Vec<Value> = (0..RELEASES)
        .map(|k| {
            let t = format!("2026-{:02}-15T00:00:00Z", 2 * k + 1);
            json!({"id": k + 1, "tag_name": format!("v1.{k}.0"), "name": format!("v1.{k}.0"), "draft": false,
                   "prerelease": false, "target_commitish": "main", "author": {"login": "dev"},
                   "created_at": t, "published_at": t, "html_url": "https://github.com/acme-bench/x/releases"})
        })
        .collect();
    struct PerRepo<F: Fn(&str) -> Value + Send + Sync>(F, Duration, &'static str);
    impl<F: Fn(&str) -> Value + Send + Sync> Respond for PerRepo<F> {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            if req
                .headers
                .get("if-none-match")
                .and_then(|v| v.to_str().ok())
                == Some(self.2)
            {
                return ResponseTemplate::new(304).set_delay(self.1);
            }
            let name = req.url.path().split('/').nth(3).unwrap_or("").to_string();
            ResponseTemplate::new(200)
                .set_delay(self.1)
                .insert_header("etag", self.2)
                .set_body_json((self.0)(&name))
        }
    }
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/collaborators$"))
        .respond_with(PerRepo(
            move |_: &str| admins.clone(),
            latency,
            "\"admins\"",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/actions/runs$"))
        .respond_with(PerRepo(runs, latency, "\"runs\""))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/releases$"))
        .respond_with(PerRepo(
            move |_: &str| Value::Array(releases.clone()),
            latency,
            "\"releases\"",
        ))
        .mount(&server)
        .await;
    // The organization's alerts, 100 a page.
    for (kind, count) in ALERTS {
        let alerts: Vec<Value> = (0..count)
            .map(|n| {
                let repo = format!("acme-bench/svc-{:03}", n % repos);
                json!({"number": n + 1, "state": if n % 3 == 0 { "open" } else { "fixed" },
                       "created_at": "2026-03-01T00:00:00Z",
                       "fixed_at": if n % 3 == 0 { None } else { Some("2026-03-05T00:00:00Z") },
                       "security_advisory": {"severity": "high", "summary": "advisory"},
                       "rule": {"id": "js/x", "severity": "error", "security_severity_level": "high"},
                       "secret_type": "token", "repository": {"full_name": repo},
                       "html_url": format!("https://github.com/{repo}/security/{kind}/{}", n + 1)})
            })
            .collect();
        mount_paged(
            &server,
            &format!("/orgs/acme-bench/{kind}/alerts"),
            "",
            &alerts,
            latency,
        )
        .await;
    }
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(Pulls { per_repo, latency })
        .mount(&server)
        .await;
    server
}

/// A list at `list_path` served 100 a page, each page with its own ETag
/// (a 304 for it) and, but the last, a `Link` to the next at the mock's
/// own address (`page=N`, after the query text `query`).
async fn mount_paged(
    server: &MockServer,
    list_path: &str,
    query: &str,
    items: &[Value],
    latency: Duration,
) {
    let pages = (items.len() as u64).div_ceil(100).max(1);
    for p in 1..=pages {
        let lo = ((p - 1) * 100) as usize;
        let hi = (p as usize * 100).min(items.len());
        let etag = format!("\"{list_path}-{p}\"");
        let mut ok = ResponseTemplate::new(200)
            .set_delay(latency)
            .insert_header("etag", etag.as_str())
            .set_body_json(&items[lo..hi]);
        if p < pages {
            let next = format!(
                "<{}{list_path}?{query}per_page=100&page={}>; rel=\"next\"",
                server.uri(),
                p + 1
            );
            ok = ok.insert_header("link", next.as_str());
        }
        let base = || {
            let m = Mock::given(method("GET")).and(path(list_path));
            if p == 1 {
                m.and(query_param_is_missing("page"))
            } else {
                m.and(query_param("page", p.to_string()))
            }
        };
        base()
            .and(header("if-none-match", etag.as_str()))
            .respond_with(ResponseTemplate::new(304).set_delay(latency))
            .with_priority(1)
            .mount(server)
            .await;
        base().respond_with(ok).with_priority(2).mount(server).await;
    }
}

/// Workflow runs and releases of each repository in the period.
const RUNS: u64 = 50;
const RELEASES: u64 = 6;
/// The organization's alerts by kind.
const ALERTS: [(&str, u64); 3] = [
    ("dependabot", 1000),
    ("code-scanning", 500),
    ("secret-scanning", 100),
];

/// Collection time from the run's own log (`-vv`).
fn collected_in(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.split_once("collected ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let repos = arg("--repos", 200);
    let per_repo = arg("--per-repo", 100);
    let latency = Duration::from_millis(arg("--latency-ms", 50));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(mock(repos, per_repo, latency));
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("cleartrail.yml");
    std::fs::write(
        &cfg,
        "version: 1\nperiod: 2026\nsources:\n  gh:\n    type: github\n    org: acme-bench\n",
    )
    .unwrap();
    let ev = work.path().join("evidence");
    let run = || {
        let mut c = Command::new(BIN);
        c.args(["-vv", "run", "--config"])
            .arg(&cfg)
            .arg("--repo")
            .arg(&ev)
            .env("GITHUB_API_URL", server.uri())
            .env("GITHUB_TOKEN", "bench-token")
            .env("SOURCE_DATE_EPOCH", NOW.to_string())
            .env_remove("GITHUB_ACTIONS");
        c
    };
    let requests = || rt.block_on(server.received_requests()).unwrap_or_default();
    // The listing, the member lists and the alert pages; per repository
    // two protection requests, two admin lists, runs, releases and the
    // pull-request pages.
    let alert_pages: u64 = ALERTS.iter().map(|(_, n)| n.div_ceil(100)).sum();
    let pages_needed = repos.div_ceil(100)
        + 4
        + alert_pages
        + repos * (2 + 2 + 1 + 1 + per_repo.div_ceil(100).max(1));
    let floor = pages_needed as f64 * latency.as_secs_f64() / CONCURRENCY;

    eprintln!(
        "cold run: {repos} repositories, {} merged pull requests, {} ms a response...",
        repos * per_repo,
        latency.as_millis()
    );
    let cold = measure(&mut run());
    let cold_reqs = requests();
    let cold_non_304 = cold_reqs.len();
    eprintln!("re-run with no upstream change...");
    let again = measure(&mut run());
    assert!(
        again.stdout.contains("nothing new: no commit"),
        "{}",
        again.stdout
    );
    let all = requests();
    let rerun = &all[cold_reqs.len()..];
    let rerun_conditional = rerun
        .iter()
        .filter(|r| r.headers.contains_key("if-none-match"))
        .count();
    let rerun_non_304 = rerun.len() - rerun_conditional;

    println!();
    println!(
        "GitHub source benchmark: {repos} repositories, {} pull requests merged in the period, {} ms latency, {CONCURRENCY} requests in flight",
        repos * per_repo,
        latency.as_millis()
    );
    println!("| measure | value | target |");
    println!("|---|--:|---|");
    println!(
        "| pages needed (listing, member lists, alert pages; per repository protection, rules, two admin lists, runs, releases and one GraphQL page) | {pages_needed} | |"
    );
    println!(
        "| requests, cold run | {cold_non_304} ({:.2}x pages) | <= 1.1x |",
        cold_non_304 as f64 / pages_needed as f64
    );
    println!("| floor (pages x latency / concurrency) | {floor:.2} s | |");
    println!(
        "| wall, whole cold run | {:.2} s ({:.2}x floor) | |",
        cold.wall.as_secs_f64(),
        cold.wall.as_secs_f64() / floor
    );
    println!(
        "| collection alone (from the run's log) | {} | <= 1.2x floor |",
        collected_in(&cold.stderr)
    );
    println!(
        "| peak RSS, cold run | {} MiB | <= 150 MB |",
        cold.peak_rss_kib / 1024
    );
    println!(
        "| re-run: requests | {} ({rerun_conditional} conditional, {rerun_non_304} other: {:.1}% of the cold run's) | <= 2% non-304 |",
        rerun.len(),
        100.0 * rerun_non_304 as f64 / cold_non_304 as f64
    );
    println!(
        "| re-run: wall, peak RSS | {:.2} s, {} MiB | no commit |",
        again.wall.as_secs_f64(),
        again.peak_rss_kib / 1024
    );
}
